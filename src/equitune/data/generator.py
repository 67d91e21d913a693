"""Generating the training set: grounded examples in six families, validated, split by company, saved.

The recipe: build an ``ExampleContext`` for every company under every market condition (the finance engine
computes everything once), draw (context, family) pairs with equal weight per family and, by default, per
Buy/Hold/Sell rating, render prompt and response, check every figure of every response against the facts
(the build fails on any unsupported figure), then split by company and write JSONL, stats and a card.
"""

from __future__ import annotations

import logging
import math
import random
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from equitune.config import EquituneConfig
from equitune.data.blocks import data_block
from equitune.data.coherence import coherence_issues
from equitune.data.context import ExampleContext, build_contexts
from equitune.data.families import FAMILY_IDS, available_families
from equitune.data.families.common import Family
from equitune.data.schema import Example, Format
from equitune.data.validate import FactSource, Issue, approx_tokens, figures_in, unsupported_figures
from equitune.errors import DataError
from equitune.io import atomic_write_json, atomic_write_text
from equitune.market.models import Company
from equitune.market.sectors import resolve_sector

log = logging.getLogger("equitune.data")
RATINGS = ("Buy", "Hold", "Sell")
SPLITS = ("train", "valid", "test")


@dataclass
class CustomReport:
    """What ``add_custom_examples`` accepted and every unsupported figure, per example (1-based)."""

    added: int = 0
    issues: list[Issue] = field(default_factory=list)
    unsupported: dict[int, list[str]] = field(default_factory=dict)


@dataclass
class DatasetSummary:
    """Where a saved dataset went and what it holds."""

    out_dir: Path
    files: dict[str, Path]
    counts: dict[str, int]
    stats: dict[str, Any]


class EquityResearchTrainingDataGenerator:
    """Builds grounded equity-research training examples from company fundamentals (see module docs).

    ``generate_dynamic_training_examples``, ``add_sector_examples`` and ``add_custom_examples`` append to
    ``examples``; ``save`` validates the split and writes ``train/valid/test.jsonl``, ``stats.json`` and
    ``dataset_card.md``.
    """

    def __init__(
        self,
        config: EquituneConfig | None = None,
        universe: list[Company] | None = None,
        seed: int | None = None,
        families: Iterable[str] | None = None,
    ) -> None:
        self.config = config or EquituneConfig()
        if universe is None:
            from equitune.market.providers.embedded import load_snapshot

            universe = list(load_snapshot().values())
        self.universe = universe
        self.seed = self.config.data.seed if seed is None else seed
        self.rng = random.Random(self.seed)
        wanted = list(families) if families is not None else list(self.config.data.families)
        self.families: list[Family] = [f for f in available_families() if f.name in wanted]
        if not self.families:
            raise DataError(f"no task families available among {wanted}")
        self.examples: list[Example] = []
        self.figures_checked = 0
        self._contexts: list[ExampleContext] | None = None
        # Sampling state persists across calls, so generating in chunks draws the same balanced sequence.
        self._drawn = 0
        self._family_cycle: list[Family] = []
        self._used: set[tuple[str, str, str]] = set()
        self._blocks: dict[tuple[str, str, str], str] = {}

    # ------------------------------------------------------------------------------------------- contexts

    def contexts(self) -> list[ExampleContext]:
        """Every company under every configured condition, computed once."""
        if self._contexts is None:
            self._contexts = build_contexts(self.universe, self.config.data.conditions, self.config.valuation)
        return self._contexts

    def _pools(self, sector: str | None) -> dict[str | None, list[ExampleContext]]:
        pool = [c for c in self.contexts() if sector is None or c.company.sector == sector]
        if not pool:
            raise DataError(f"no companies in sector '{sector}'")
        if not self.config.data.balance_ratings:
            return {None: pool}
        by_rating: dict[str | None, list[ExampleContext]] = defaultdict(list)
        for ctx in pool:
            if ctx.analysis.target.rating is not None:
                by_rating[ctx.analysis.target.rating].append(ctx)
        return dict(by_rating)

    # ------------------------------------------------------------------------------------------- generation

    def render(self, ctx: ExampleContext, family: Family, rng: random.Random | None = None) -> Example:
        """One example of ``family`` for ``ctx``, every figure checked against the context's facts."""
        rng = rng or self.rng
        request = family.instruction(ctx, rng)
        # The data block is deterministic per (company, condition, family): render it once.
        key = (ctx.ticker, ctx.condition.name, family.name)
        data = self._blocks.get(key)
        if data is None:
            data = self._blocks[key] = data_block(ctx, list(family.sections))
        response = family.respond(ctx, rng)
        example = Example(
            family=family.name,
            ticker=ctx.ticker,
            condition=ctx.condition.name,
            rating=ctx.analysis.target.rating,
            request=request,
            data=data,
            response=response,
        )
        figures = figures_in(response)
        missing = unsupported_figures(figures, ctx.facts)
        self.figures_checked += len(figures)
        if missing:
            raise DataError(
                f"generated {family.name} example for {ctx.ticker} ({ctx.condition.name}) has unsupported "
                f"figures: {', '.join(f.raw for f in missing)}"
            )
        problems = coherence_issues(response, data, figures)
        if problems:
            raise DataError(
                f"generated {family.name} example for {ctx.ticker} ({ctx.condition.name}) is incoherent: "
                + "; ".join(str(p) for p in problems[:5])
            )
        return example

    def generate_dynamic_training_examples(self, num_examples: int = 500, sector: str | None = None) -> list[Example]:
        """Generate ``num_examples`` examples (all sectors, or one GICS sector), balanced across families and,
        when ``data.balance_ratings``, across Buy/Hold/Sell; returns the new examples (also appended)."""
        if num_examples < 1:
            raise DataError("num_examples must be at least 1")
        pools = self._pools(sector)
        ratings = sorted(pools, key=lambda r: RATINGS.index(r) if r in RATINGS else -1)
        new: list[Example] = []
        for _ in range(num_examples):
            if not self._family_cycle:
                self._family_cycle = self.rng.sample(self.families, len(self.families))
            family = self._family_cycle.pop()
            pool = pools[ratings[self._drawn % len(ratings)]]
            self._drawn += 1
            ctx = self.rng.choice(pool)
            for _ in range(8):  # prefer a (company, condition, family) not drawn yet
                if (ctx.ticker, ctx.condition.name, family.name) not in self._used:
                    break
                ctx = self.rng.choice(pool)
            self._used.add((ctx.ticker, ctx.condition.name, family.name))
            new.append(self.render(ctx, family))
        self.examples.extend(new)
        log.debug("generated %d examples (%s)", len(new), sector or "all sectors")
        return new

    def add_sector_examples(self, sector: str, count: int) -> list[Example]:
        """Add ``count`` examples of one sector; ``sector`` is a GICS name or alias ('technology')."""
        return self.generate_dynamic_training_examples(count, sector=resolve_sector(sector))

    def add_custom_examples(self, examples: list[dict[str, Any]]) -> CustomReport:
        """Add your own ``{"instruction", "response"}`` examples (optional ``input`` data block, ``ticker``,
        ``condition``, ``family``). Each is validated like generated data: the report lists every figure not
        supported by the company's facts or the prompt. Examples with issues are reported and not added."""
        report = CustomReport()
        facts = FactSource(self.universe)
        for number, item in enumerate(examples, start=1):
            problems = self._check_custom(number, item)
            if problems:
                report.issues.extend(problems)
                continue
            ticker = item.get("ticker")
            condition = item.get("condition", "base")
            request, data = item["instruction"].strip(), (item.get("input") or "").strip()
            example = Example(
                family=item.get("family", "custom"),
                ticker=ticker.upper() if ticker else None,
                condition=condition,
                rating=None,
                request=request,
                data=data,
                response=item["response"].strip(),
                source="custom",
            )
            missing = unsupported_figures(example.response, facts.sheet(example.ticker, condition), example.prompt)
            if missing:
                report.unsupported[number] = [f.raw for f in missing]
                report.issues.append(
                    Issue(number, "response", f"unsupported figures: {', '.join(f.raw for f in missing)}")
                )
                continue
            self.examples.append(example)
            report.added += 1
        return report

    @staticmethod
    def _check_custom(number: int, item: Any) -> list[Issue]:
        if not isinstance(item, dict):
            return [Issue(number, "(example)", "must be an object with instruction and response")]
        problems = []
        for name in ("instruction", "response"):
            value = item.get(name)
            if not isinstance(value, str) or not value.strip():
                problems.append(Issue(number, name, "missing or empty"))
        family = item.get("family", "custom")
        if family not in (*FAMILY_IDS, "custom"):
            problems.append(Issue(number, "family", f"unknown family {family!r}"))
        return problems

    # ------------------------------------------------------------------------------------------- saving

    def split_of(self) -> dict[str, str]:
        """Company -> split, deterministic from the seed: whole companies go to train, valid or test."""
        return split_companies(
            [c.ticker for c in self.universe],
            self.seed,
            self.config.data.train_fraction,
            self.config.data.valid_fraction,
        )

    def save(self, out_dir: str | Path | None = None, fmt: Format | None = None) -> DatasetSummary:
        """Write train/valid/test JSONL (split by company), stats.json and dataset_card.md to ``out_dir``
        (default: ``paths.training_data``), atomically; returns where and what."""
        if not self.examples:
            raise DataError("no examples to save: generate or add examples first")
        out = Path(out_dir) if out_dir is not None else self.config.paths.training_data
        fmt = fmt or self.config.data.format
        split = self.split_of()
        parts: dict[str, list[Example]] = {name: [] for name in SPLITS}
        for example in self.examples:
            parts[split.get(example.ticker or "", "train")].append(example)
        files = {}
        for name in SPLITS:
            lines = "".join(_json_line(e.to_record(fmt)) for e in parts[name])
            files[name] = atomic_write_text(out / f"{name}.jsonl", lines)
        stats = dataset_stats(self, parts, split)
        files["stats"] = atomic_write_json(out / "stats.json", stats)
        files["card"] = atomic_write_text(out / "dataset_card.md", dataset_card(stats, fmt))
        log.info("wrote %s", ", ".join(f"{k}={len(v)}" for k, v in parts.items()))
        return DatasetSummary(out, files, {k: len(v) for k, v in parts.items()}, stats)

    save_training_data = save


def _json_line(record: dict[str, Any]) -> str:
    import json

    return json.dumps(record, ensure_ascii=False) + "\n"


def split_companies(tickers: list[str], seed: int, train: float, valid: float) -> dict[str, str]:
    """Assign whole companies to train/valid/test by a seeded shuffle (at least one company in each split
    when there are three or more)."""
    ordered = sorted(set(tickers))
    random.Random(seed).shuffle(ordered)
    n = len(ordered)
    n_valid = max(1, round(n * valid)) if n >= 3 and valid > 0 else 0
    n_test = max(1, n - round(n * train) - n_valid) if n >= 3 else 0
    n_train = n - n_valid - n_test
    labels = ["train"] * n_train + ["valid"] * n_valid + ["test"] * n_test
    return dict(zip(ordered, labels, strict=True))


def _shingles(text: str, n: int = 5) -> set[str]:
    words = text.lower().split()
    return {" ".join(words[i : i + n]) for i in range(max(0, len(words) - n + 1))}


def near_duplicates(parts: dict[str, list[Example]], threshold: float = 0.8) -> list[dict[str, Any]]:
    """Pairs (train vs valid/test, same family) whose responses share at least ``threshold`` of their word
    5-grams (Jaccard), i.e. held-out examples that may leak through templated wording.

    Exact, but fast through prefix filtering: two sets with Jaccard >= t must share one of the rarest
    ``|A| - ceil(t * |A|) + 1`` shingles of each, so only pairs sharing a rare shingle are compared."""
    shingles = {id(e): _shingles(e.response) for name in SPLITS for e in parts[name]}
    frequency: Counter[str] = Counter(s for group in shingles.values() for s in group)

    def prefix(example: Example) -> list[str]:
        ordered = sorted(shingles[id(example)], key=lambda s: (frequency[s], s))
        keep = len(ordered) - math.ceil(threshold * len(ordered)) + 1
        return ordered[: max(keep, 0)]

    index: dict[tuple[str, str], list[Example]] = defaultdict(list)
    for example in parts["train"]:
        for s in prefix(example):
            index[(example.family, s)].append(example)
    found = []
    for split in ("valid", "test"):
        for example in parts[split]:
            mine = shingles[id(example)]
            candidates = {id(o): o for s in prefix(example) for o in index.get((example.family, s), [])}
            for other in candidates.values():
                theirs = shingles[id(other)]
                union = len(mine | theirs)
                score = len(mine & theirs) / union if union else 0.0
                if score >= threshold:
                    found.append(
                        {
                            "split": split,
                            "id": example.id,
                            "train_id": other.id,
                            "family": example.family,
                            "jaccard": round(score, 3),
                        }
                    )
    return found


def length_distribution(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "min": ordered[0],
        "p50": ordered[len(ordered) // 2],
        "p90": ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))],
        "max": ordered[-1],
        "mean": round(statistics.fmean(ordered), 1),
    }


def dataset_stats(
    generator: EquityResearchTrainingDataGenerator, parts: dict[str, list[Example]], split: dict[str, str]
) -> dict[str, Any]:
    """Counts per split, family, sector, rating and condition; length distribution; the engine's own rating
    distribution before balancing; near-duplicates across splits; validation totals."""
    examples = [e for name in SPLITS for e in parts[name]]
    sectors = {c.ticker: c.sector for c in generator.universe}
    engine_ratings = Counter(ctx.analysis.target.rating or "Not rated" for ctx in generator.contexts() if ctx.is_base)
    duplicates = near_duplicates(parts)
    companies = defaultdict(list)
    for ticker, name in split.items():
        companies[name].append(ticker)
    return {
        "examples": len(examples),
        "splits": {name: len(parts[name]) for name in SPLITS},
        "companies": {name: sorted(companies[name]) for name in SPLITS},
        "families": dict(Counter(e.family for e in examples)),
        "sectors": dict(Counter(sectors.get(e.ticker or "", "custom") for e in examples)),
        "ratings": dict(Counter(e.rating or "n/a" for e in examples)),
        "conditions": dict(Counter(e.condition for e in examples)),
        "sources": dict(Counter(e.source for e in examples)),
        "engine_ratings_base_case": dict(engine_ratings),
        "balance": (
            "examples drawn with equal weight per Buy/Hold/Sell rating across all market-condition variants"
            if generator.config.data.balance_ratings
            else "examples drawn uniformly over companies and conditions (no rating balance)"
        ),
        "response_tokens": length_distribution([approx_tokens(e.response) for e in examples]),
        "response_chars": length_distribution([len(e.response) for e in examples]),
        "figures_checked": generator.figures_checked,
        "unsupported_figures": 0,
        "near_duplicates": {"threshold": 0.8, "count": len(duplicates), "pairs": duplicates[:50]},
        "seed": generator.seed,
    }


def dataset_card(stats: dict[str, Any], fmt: str) -> str:
    """A markdown dataset card from ``stats``."""

    def table(title: str, counts: dict[str, int]) -> str:
        rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        return f"| {title} | examples |\n|---|---:|\n{rows}"

    tokens = stats["response_tokens"]
    return f"""# equitune training data

Institutional-style equity research examples in six task families, grounded in company fundamentals from
Form 10-K filings (equitune's embedded snapshot) and the outputs of equitune's finance engine (ratios, WACC,
DCF with sensitivity, comparables, price target, rating, scenarios, market-condition variants). Every figure in
every response was checked against those facts: {stats["figures_checked"]} figures checked,
{stats["unsupported_figures"]} unsupported. Prompts carry a DATA block with the figures the response uses.

- Format: `{fmt}` JSONL (see `equitune.data.schema`); seed {stats["seed"]}.
- Splits by company (no company appears in more than one split): train {stats["splits"]["train"]},
  valid {stats["splits"]["valid"]}, test {stats["splits"]["test"]} examples.
- Test companies: {", ".join(stats["companies"]["test"])}.
- Rating balance: {stats["balance"]}. The engine's base-case ratings over the companies were
  {stats["engine_ratings_base_case"]}; the dataset's are {stats["ratings"]}.
- Response length (estimated tokens): min {tokens.get("min")}, median {tokens.get("p50")}, p90 {tokens.get("p90")},
  max {tokens.get("max")}.
- Near-duplicate responses across splits (word 5-gram Jaccard >= 0.8): {stats["near_duplicates"]["count"]}.
- Every response ends with a disclaimer: this data is not investment advice.

{table("family", stats["families"])}

{table("rating", stats["ratings"])}

{table("condition", stats["conditions"])}

{table("sector", stats["sectors"])}
"""
