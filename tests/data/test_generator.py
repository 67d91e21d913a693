"""The training-data generator: grounding, balance, splits by company, formats and outputs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from equitune.config import EquituneConfig
from equitune.data.families import FAMILY_IDS, available_families
from equitune.data.generator import EquityResearchTrainingDataGenerator, split_companies
from equitune.data.numbers import extract_figures
from equitune.data.schema import Example
from equitune.data.validate import validate_file
from equitune.errors import DataError, EquituneError


@pytest.fixture(scope="module")
def generator() -> EquityResearchTrainingDataGenerator:
    gen = EquityResearchTrainingDataGenerator(seed=7)
    gen.generate_dynamic_training_examples(240)
    return gen


@pytest.fixture(scope="module")
def saved(generator: EquityResearchTrainingDataGenerator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data")
    generator.save(out)
    return out


def test_every_response_figure_is_a_fact(generator: EquityResearchTrainingDataGenerator) -> None:
    contexts = {(c.ticker, c.condition.name): c for c in generator.contexts()}
    checked = 0
    for example in generator.examples:
        facts = contexts[(example.ticker or "", example.condition)].facts
        for figure in extract_figures(example.response):
            assert facts.check(figure), (example.family, example.ticker, figure.raw)
            checked += 1
    assert checked > 20 * len(generator.examples)


def test_every_response_figure_is_given_in_the_prompt(generator: EquityResearchTrainingDataGenerator) -> None:
    """The model learns to select and copy figures, never to compute them."""
    for example in generator.examples:
        given = extract_figures(example.prompt)
        for figure in extract_figures(example.response):
            if figure.kind == "count":
                continue
            assert any(g.kind == figure.kind and figure.matches(g.value) for g in given), (
                example.family,
                example.ticker,
                figure.raw,
            )


def test_families_and_ratings_are_balanced(generator: EquityResearchTrainingDataGenerator) -> None:
    families = Counter(e.family for e in generator.examples)
    ratings = Counter(e.rating for e in generator.examples)
    n_families = len(available_families())
    assert set(families) == {f.name for f in available_families()}
    assert max(families.values()) - min(families.values()) <= 240 // n_families // 4 + 1
    assert set(ratings) == {"Buy", "Hold", "Sell"}
    assert max(ratings.values()) - min(ratings.values()) <= 1


def test_ratings_come_from_the_engine(generator: EquityResearchTrainingDataGenerator) -> None:
    contexts = {(c.ticker, c.condition.name): c for c in generator.contexts()}
    for example in generator.examples:
        ctx = contexts[(example.ticker or "", example.condition)]
        assert example.rating == ctx.analysis.target.rating
        if example.family in {"executive_summary", "valuation"}:  # the families that state the call
            assert example.rating is not None and example.rating.upper() in example.response


def test_market_conditions_are_represented(generator: EquityResearchTrainingDataGenerator) -> None:
    conditions = Counter(e.condition for e in generator.examples)
    assert {"base", "rates_up_100bp", "recession"} <= set(conditions)
    shocked = next(e for e in generator.examples if e.condition == "rates_up_100bp")
    assert "+100 bp" in shocked.prompt


def test_every_response_ends_with_a_disclaimer(generator: EquityResearchTrainingDataGenerator) -> None:
    for example in generator.examples:
        last = example.response.strip().splitlines()[-1].lower()
        assert "not investment advice" in last or "not a solicitation" in last


def test_split_is_by_company(saved: Path) -> None:
    tickers = {}
    for split in ("train", "valid", "test"):
        lines = (saved / f"{split}.jsonl").read_text().splitlines()
        assert lines, split
        tickers[split] = {json.loads(line)["ticker"] for line in lines}
    assert not tickers["train"] & tickers["test"]
    assert not tickers["train"] & tickers["valid"]
    assert not tickers["valid"] & tickers["test"]


def test_split_companies_is_deterministic_80_10_10() -> None:
    tickers = [f"T{i:02d}" for i in range(60)]
    first = split_companies(tickers, 3, 0.8, 0.1)
    assert first == split_companies(list(reversed(tickers)), 3, 0.8, 0.1)
    assert Counter(first.values()) == {"train": 48, "valid": 6, "test": 6}
    assert first != split_companies(tickers, 4, 0.8, 0.1)


def test_saved_files_validate_and_stats_match(saved: Path) -> None:
    stats = json.loads((saved / "stats.json").read_text())
    total = 0
    for split in ("train", "valid", "test"):
        report = validate_file(saved / f"{split}.jsonl")
        assert report.ok, report.format()
        assert report.lines == stats["splits"][split]
        total += report.lines
    assert stats["examples"] == total == 240
    assert stats["unsupported_figures"] == 0 and stats["figures_checked"] > 0
    assert sum(stats["ratings"].values()) == 240
    card = (saved / "dataset_card.md").read_text()
    assert "Test companies" in card and "not investment advice" in card


def test_messages_format(saved: Path) -> None:
    record = json.loads((saved / "train.jsonl").read_text().splitlines()[0])
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant"]
    assert record["family"] in FAMILY_IDS and record["ticker"] and len(record["id"]) == 40
    assert "DATA" in record["messages"][1]["content"]


def test_alpaca_format(generator: EquityResearchTrainingDataGenerator, tmp_path: Path) -> None:
    generator.save(tmp_path, fmt="alpaca")
    record = json.loads((tmp_path / "train.jsonl").read_text().splitlines()[0])
    assert set(record) >= {"instruction", "input", "output", "family", "ticker"}
    assert record["input"].startswith("DATA")
    assert validate_file(tmp_path / "train.jsonl").ok


@pytest.mark.parametrize("fmt", ["messages", "alpaca"])
def test_files_load_with_hugging_face_datasets(
    generator: EquityResearchTrainingDataGenerator, tmp_path: Path, fmt: str
) -> None:
    datasets = pytest.importorskip("datasets")
    generator.save(tmp_path, fmt=fmt)  # type: ignore[arg-type]
    files = {split: str(tmp_path / f"{split}.jsonl") for split in ("train", "valid", "test")}
    loaded = datasets.load_dataset("json", data_files=files, cache_dir=str(tmp_path / "cache"))
    assert loaded["train"].num_rows == len((tmp_path / "train.jsonl").read_text().splitlines())
    column = "messages" if fmt == "messages" else "output"
    assert column in loaded["train"].column_names


def test_sector_examples_use_aliases() -> None:
    gen = EquityResearchTrainingDataGenerator(seed=1)
    examples = gen.add_sector_examples("technology", 12)
    sectors = {c.ticker: c.sector for c in gen.universe}
    assert len(examples) == 12
    assert {sectors[e.ticker or ""] for e in examples} == {"Information Technology"}
    with pytest.raises(EquituneError, match="Valid GICS sectors"):
        gen.add_sector_examples("crypto", 3)


def test_custom_examples_are_validated() -> None:
    gen = EquityResearchTrainingDataGenerator(seed=1)
    report = gen.add_custom_examples(
        [
            {
                "instruction": "Apple's FY2024 revenue?",
                "response": "Revenue was $391.0B in FY2024.",
                "ticker": "AAPL",
            },
            {"instruction": "Apple?", "response": "Revenue was $123.4T and margin 612.5%.", "ticker": "AAPL"},
            {"instruction": "Given revenue of $10.0B, summarise.", "response": "Revenue of $10.0B."},
            {"instruction": "No response"},
        ]
    )
    assert report.added == 2
    assert report.unsupported == {2: ["$123.4T", "612.5%"]}
    assert [(i.line, i.field) for i in report.issues] == [(2, "response"), (4, "response")]
    assert [e.source for e in gen.examples] == ["custom", "custom"]


def test_nothing_to_save_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no examples"):
        EquityResearchTrainingDataGenerator().save(tmp_path)


def test_balance_can_be_switched_off() -> None:
    config = EquituneConfig.model_validate({"data": {"balance_ratings": False}})
    gen = EquityResearchTrainingDataGenerator(config, seed=2)
    gen.generate_dynamic_training_examples(30)
    assert len(gen.examples) == 30


def test_example_identity_is_stable() -> None:
    a = Example("valuation", "AAPL", "base", "Sell", "req", "DATA", "resp")
    b = Example("valuation", "AAPL", "base", "Sell", "req", "DATA", "resp")
    assert a.id == b.id and a.prompt == "req\n\nDATA"
