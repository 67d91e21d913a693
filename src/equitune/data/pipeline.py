"""The data stage as one call (CLI, root script, workflow), and statistics read back from a data folder."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from equitune.config import EquituneConfig
from equitune.data.generator import DatasetSummary, EquityResearchTrainingDataGenerator, length_distribution
from equitune.data.validate import approx_tokens, iter_jsonl, parse_record
from equitune.errors import DataError


def load_custom(path: Path) -> list[dict[str, Any]]:
    """Custom examples from a JSON list or a JSONL file; malformed lines are errors naming the line."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {exc.lineno}: malformed JSON: {exc.msg}") from None
        if not isinstance(items, list):
            raise DataError(f"{path}: expected a JSON list of examples")
        return items
    items = []
    for line, obj, error in iter_jsonl(path):
        if error is not None:
            raise DataError(f"{path}, line {line}: {error}")
        items.append(obj)
    return items


def generate_dataset(
    config: EquituneConfig,
    sector: str | None = None,
    sector_count: int = 100,
    custom: Path | None = None,
    out_dir: Path | None = None,
    console: Console | None = None,
) -> DatasetSummary:
    """Generate ``data.num_examples`` examples (plus sector and custom ones), validate, split and save.

    Custom examples with any problem stop the run before anything is written, with every problem listed."""
    generator = EquityResearchTrainingDataGenerator(config)
    custom_items = load_custom(custom) if custom is not None else []
    total = config.data.num_examples + (sector_count if sector else 0)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task("engine: valuing companies under each condition", total=None)
        generator.contexts()
        progress.update(task, description="writing and checking examples", total=total, completed=0)
        step = max(1, min(500, total // 50))
        done = 0
        while done < config.data.num_examples:
            n = min(step, config.data.num_examples - done)
            generator.generate_dynamic_training_examples(n)
            done += n
            progress.update(task, completed=done)
        if sector:
            generator.add_sector_examples(sector, sector_count)
            progress.update(task, completed=total)
    if custom_items:
        report = generator.add_custom_examples(custom_items)
        if report.issues:
            lines = "\n".join(f"  example {i.line}: {i.field}: {i.message}" for i in report.issues)
            raise DataError(f"{custom}: {len(report.issues)} problem(s) in custom examples; nothing written:\n{lines}")
    return generator.save(out_dir)


def folder_stats(folder: Path) -> dict[str, Any]:
    """Counts and length distribution read from ``folder``'s train/valid/test JSONL files."""
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    counts: dict[str, Counter[str]] = {key: Counter() for key in ("families", "ratings", "conditions", "sectors")}
    splits: dict[str, int] = {}
    tokens: list[int] = []
    sector_of: dict[str, str] = {}
    try:
        from equitune.market.providers.embedded import load_snapshot

        sector_of = {t: c.sector for t, c in load_snapshot().items()}
    except DataError:
        pass
    for name in ("train", "valid", "test"):
        path = folder / f"{name}.jsonl"
        if not path.is_file():
            continue
        splits[name] = 0
        for line, obj, error in iter_jsonl(path):
            if error is not None:
                raise DataError(f"{path}, line {line}: {error}")
            record, issues = parse_record(obj, line)
            if issues:
                raise DataError(f"{path}: {issues[0]}")
            splits[name] += 1
            counts["families"][obj.get("family") or "custom"] += 1
            counts["ratings"][obj.get("rating") or "n/a"] += 1
            counts["conditions"][obj.get("condition") or "n/a"] += 1
            counts["sectors"][sector_of.get(obj.get("ticker") or "", "other")] += 1
            tokens.append(approx_tokens(record["response"]))
    if not splits:
        raise DataError(f"{folder}: no train/valid/test.jsonl files")
    return {
        "splits": splits,
        **{key: dict(value) for key, value in counts.items()},
        "response_tokens": length_distribution(tokens),
    }
