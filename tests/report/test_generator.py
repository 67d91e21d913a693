"""The research-report generator: prompts as trained, the fact-check policy, assembly, files and the CLI.

A deterministic stand-in runtime answers each section's prompt with the task family's engine-written reference
text, optionally spoiled (a wrong upside and an invented figure, or a contradicting rating), so every test knows
exactly which figures must stand, be corrected or be flagged.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from equitune.config import EquituneConfig
from equitune.data.blocks import data_block, money, mult, pct, price
from equitune.data.context import ExampleContext
from equitune.data.families import FAMILY_IDS, get_family
from equitune.data.schema import SYSTEM_PROMPT
from equitune.errors import UnknownTickerError
from equitune.market.base import get_provider
from equitune.market.models import Company
from equitune.report import generator as gen
from equitune.report.generator import (
    CORRECTED,
    DISCLAIMER,
    EMBEDDED_DEFAULT,
    SECTION_TITLES,
    UNVERIFIED,
    EnhancedEquityResearchGenerator,
    ReportEngine,
    ResearchReport,
    default_model_for,
)
from equitune.serve.runtime import Generation, GenerationOptions, Message, ModelRuntimeError

TICKER = "AAPL"
WRONG_UPSIDE = "+13.1%"
INVENTED = "$12.5B"
INVENTED_SENTENCE = f"\n\nThe company also returned {INVENTED} to shareholders through buybacks last quarter."


@pytest.fixture(scope="module")
def universe() -> list[Company]:
    provider = get_provider("embedded")
    return [provider.get(t) for t in provider.tickers()]


@pytest.fixture(scope="module")
def ctx(universe: list[Company]) -> ExampleContext:
    return EnhancedEquityResearchGenerator(universe=universe, progress=False).context(TICKER)


def reference(ctx: ExampleContext, key: str) -> str:
    """The family's engine-written response: every figure a fact."""
    return get_family(key).respond(ctx, random.Random(7))


def spoil_upside(ctx: ExampleContext, text: str) -> str:
    """The executive summary with a wrong stated upside and an invented figure."""
    true = pct(ctx.analysis.target.upside, signed=True)
    line = f"- **Upside:** {true}"
    assert line in text
    return text.replace(line, f"- **Upside:** {WRONG_UPSIDE}") + INVENTED_SENTENCE


def contradicting(ctx: ExampleContext) -> str:
    return {"Buy": "SELL", "Hold": "BUY", "Sell": "BUY"}.get(ctx.rating, "BUY")


def spoil_rating(ctx: ExampleContext, text: str) -> str:
    line = f"- **Rating:** {ctx.rating.upper()}"
    assert line in text
    return text.replace(line, f"- **Rating:** {contradicting(ctx)}")


class StandInRuntime:
    """A deterministic ``Runtime``: answers each section prompt with ``answer(ctx, key)``."""

    name = "stand-in"

    def __init__(self, ctx: ExampleContext, answer: Callable[[ExampleContext, str], str], model: str = "stand-in"):
        self.ctx = ctx
        self.answer = answer
        self.model = model
        self.prompts: dict[str, str] = {
            key: EnhancedEquityResearchGenerator.section_prompt(ctx, key) for key in FAMILY_IDS
        }
        self.calls: list[tuple[str, str]] = []
        self.closed = False

    def chat(self, messages: Sequence[Message], options: GenerationOptions | None = None) -> Generation:
        system, user = messages[0].content, messages[-1].content
        key = next(k for k, prompt in self.prompts.items() if prompt == user)
        self.calls.append((system, key))
        text = self.answer(self.ctx, key)
        return Generation(text, self.model, self.name, len(user) // 4, len(text) // 4, 0.01, 0.01)

    def generate(self, prompt: str, options: GenerationOptions | None = None) -> Generation:
        raise NotImplementedError

    def stream_chat(self, messages: Sequence[Message], options: GenerationOptions | None = None) -> Iterator[str]:
        raise NotImplementedError

    def close(self) -> None:
        self.closed = True


def make_report(
    ctx: ExampleContext, universe: list[Company], answer: Callable[[ExampleContext, str], str]
) -> tuple[ResearchReport, StandInRuntime]:
    runtime = StandInRuntime(ctx, answer)
    generator = EnhancedEquityResearchGenerator(runtime=runtime, universe=universe, progress=False)
    return generator.generate_comprehensive_report(TICKER), runtime


def with_wrong_upside(ctx: ExampleContext, key: str) -> str:
    text = reference(ctx, key)
    return spoil_upside(ctx, text) if key == "executive_summary" else text


def with_wrong_rating(ctx: ExampleContext, key: str) -> str:
    text = reference(ctx, key)
    return spoil_rating(ctx, text) if key == "executive_summary" else text


@pytest.fixture(scope="module")
def clean(ctx: ExampleContext, universe: list[Company]) -> tuple[ResearchReport, StandInRuntime]:
    return make_report(ctx, universe, reference)


@pytest.fixture(scope="module")
def spoiled(ctx: ExampleContext, universe: list[Company]) -> ResearchReport:
    return make_report(ctx, universe, with_wrong_upside)[0]


# ---------------------------------------------------------------------------------------------- prompts


def test_each_section_is_prompted_as_in_training(
    clean: tuple[ResearchReport, StandInRuntime], ctx: ExampleContext
) -> None:
    report, runtime = clean
    assert [key for _, key in runtime.calls] == list(SECTION_TITLES)
    assert all(system == SYSTEM_PROMPT for system, _ in runtime.calls)
    for key in FAMILY_IDS:
        family = get_family(key)
        prompt = runtime.prompts[key]
        instruction, block = prompt.split("\n\n", 1)
        assert block == data_block(ctx, list(family.sections))
        assert instruction in {family.instruction(ctx, random.Random(s)) for s in range(200)}
    assert [s.key for s in report.sections] == list(SECTION_TITLES)


def test_only_the_trained_families_are_asked_for_and_the_report_names_the_rest(
    ctx: ExampleContext, universe: list[Company]
) -> None:
    from equitune.config import EquituneConfig

    config = EquituneConfig.model_validate({"data": {"families": ["executive_summary", "valuation"]}})
    runtime = StandInRuntime(ctx, reference)
    generator = EnhancedEquityResearchGenerator(config, runtime=runtime, universe=universe, progress=False)
    report = generator.generate_comprehensive_report(TICKER, format="both")
    assert [key for _, key in runtime.calls] == ["executive_summary", "valuation"]
    assert [s.key for s in report.sections] == ["executive_summary", "valuation"]
    note = "Not requested, because the configuration does not train the model for them (data.families)"
    assert note in report.markdown and "Financial Analysis, Investment Thesis" in report.markdown
    assert "## Financial Analysis" not in report.markdown
    assert "Not requested" in report.html


def test_a_report_of_every_family_names_none_left_out(clean: tuple[ResearchReport, StandInRuntime]) -> None:
    assert "Not requested" not in clean[0].markdown


# ------------------------------------------------------------------------------------------- fact-check


def test_reference_text_passes_untouched(clean: tuple[ResearchReport, StandInRuntime], ctx: ExampleContext) -> None:
    report, _ = clean
    summary = report.figures_summary
    assert summary["derived_wrong"] == 0 and summary["unsupported"] == 0
    assert summary["grounded"] > 0 and summary["derived_correct"] > 0
    assert report.corrections == [] and report.flags == []
    for section in report.sections:
        assert section.text == reference(ctx, section.key)
        assert not re.search(r"\[(?:unverified|corrected|engine rating)", section.final)
        assert len(section.check.figures) == sum(section.check.counts.values()) > 0


def test_wrong_upside_is_corrected_and_listed(spoiled: ResearchReport, ctx: ExampleContext) -> None:
    true = pct(ctx.analysis.target.upside, signed=True)
    summary = spoiled.sections[0]
    assert summary.key == "executive_summary"
    assert [(c.original, c.corrected, c.quantity, c.fact) for c in summary.corrections] == [
        (WRONG_UPSIDE, true, "upside", "analysis.target.upside")
    ]
    assert f"- **Upside:** {true} {CORRECTED}" in summary.final
    assert WRONG_UPSIDE not in summary.final
    assert WRONG_UPSIDE not in spoiled.markdown.split("## Fact-check")[0]
    appendix = spoiled.markdown.split("## Fact-check", 1)[1]
    assert f"| Executive Summary | {WRONG_UPSIDE} | {true} | upside | analysis.target.upside |" in appendix
    assert spoiled.figures_summary["derived_wrong"] == 1


def test_invented_figure_is_flagged_in_text_and_appendix(spoiled: ResearchReport) -> None:
    flags = [f for f in spoiled.flags if f.text == INVENTED]
    assert len(flags) == 1 and flags[0].kind == "unsupported" and flags[0].section == "Executive Summary"
    assert f"{INVENTED} {UNVERIFIED}" in spoiled.sections[0].final
    body, appendix = spoiled.markdown.split("## Fact-check", 1)
    assert f"{INVENTED} {UNVERIFIED}" in body
    assert re.search(rf"\| Executive Summary \| {re.escape(INVENTED)} \| unsupported \|", appendix)
    assert spoiled.figures_summary["unsupported"] == 1
    assert f"{INVENTED} <mark" in spoiled.html


def test_every_figure_is_accounted_for(spoiled: ResearchReport) -> None:
    for section in spoiled.sections:
        handled = {c.start for c in section.corrections} | {f.start for f in section.flags}
        for figure in section.check.figures:
            assert figure.label in ("grounded", "derived_correct") or figure.start in handled, figure


def test_contradicting_rating_is_flagged(ctx: ExampleContext, universe: list[Company]) -> None:
    report, _ = make_report(ctx, universe, with_wrong_rating)
    said, engine = contradicting(ctx), ctx.rating.upper()
    rating_flags = [f for f in report.flags if f.kind == "rating"]
    assert [(f.section, f.text) for f in rating_flags] == [("Executive Summary", said)]
    assert f"- **Rating:** {said} [engine rating: {engine}]" in report.sections[0].final
    assert f"> **Rating: {engine}**" in report.markdown
    assert report.corrections == []


def test_review_section_corrects_a_wrong_target_upside_in_brackets(ctx: ExampleContext) -> None:
    t = ctx.analysis.target
    text = f"Our price target of {price(t.price_target)} ({WRONG_UPSIDE}) reflects the DCF and comparables."
    section = gen.review_section(text, ctx, key="executive_summary", title="Executive Summary")
    assert f"{price(t.price_target)} ({pct(t.upside, signed=True)} {CORRECTED})" in section.final
    assert [c.fact for c in section.corrections] == ["analysis.target.upside"]


def test_review_section_flags_a_wrong_figure_it_cannot_attribute(ctx: ExampleContext) -> None:
    # A table cell could belong to any column: flagged with the engine's values, not rewritten.
    text = "| Metric | Value |\n|---|---:|\n| Operating margin | 97.5% |"
    section = gen.review_section(text, ctx, key="financial_analysis", title="Financial Analysis")
    assert section.corrections == []
    assert [(f.text, f.kind) for f in section.flags] == [("97.5%", "derived_wrong")]
    assert section.flags[0].expected and f"97.5% {UNVERIFIED}" in section.final


def test_review_section_flags_a_figure_in_a_unit_its_quantity_never_has(ctx: ExampleContext) -> None:
    income = money(ctx.company.latest.net_income)  # a real amount, stated as a cost of equity
    text = f"The cost of equity is estimated to be around {income}."
    section = gen.review_section(text, ctx, key="financial_analysis", title="Financial Analysis")
    assert section.corrections == []  # a percentage cannot mend a dollar amount: kept and marked
    assert [(f.text, f.kind) for f in section.flags] == [(income, "derived_wrong")]
    assert "percentage" in section.flags[0].reason and f"{income} {UNVERIFIED}" in section.final


def test_a_repetitive_section_carries_a_note_for_the_reader(ctx: ExampleContext) -> None:
    line = f"The price target is {price(ctx.analysis.target.price_target)}, which we set from the blend."
    looped = gen.review_section("\n".join([line] * 4), ctx, key="executive_summary", title="Executive Summary")
    assert looped.readability.repetition > 0.5
    assert any("repeats itself" in n for n in looped.notes())
    clean = gen.review_section(line, ctx, key="executive_summary", title="Executive Summary")
    assert clean.notes() == []


# ------------------------------------------------------------------------------------------- assembly


def test_header_and_estimates_come_from_the_engine(spoiled: ResearchReport, ctx: ExampleContext) -> None:
    t, c = ctx.analysis.target, ctx.company
    md = spoiled.markdown
    assert md.startswith(f"# {c.name} ({c.ticker}): Equity Research Report\n")
    assert c.sector in md.splitlines()[2] and str(c.price_date) in md.splitlines()[2]
    header = next(line for line in md.splitlines() if line.startswith("> **Rating:"))
    assert header == (
        f"> **Rating: {ctx.rating.upper()}** | **12-month price target: {price(t.price_target)}** | "
        f"**Upside: {pct(t.upside, signed=True)}** | Share price: {price(t.price)}"
    )
    r, n = ctx.estimates.reported, ctx.estimates.next_year
    estimates = md.split("## Estimates", 1)[1].split("##", 1)[0]
    assert f"| Revenue | {money(r.revenue)} | {money(n.revenue)} |" in estimates
    assert f"| Diluted EPS | {price(r.eps)} | {price(n.eps)} |" in estimates
    assert f"| P/E | {mult(r.pe)} | {mult(n.pe)} |" in estimates
    for title in SECTION_TITLES.values():
        assert f"\n## {title}\n" in md
    # The model's own headings sit below the report's section headings.
    assert not re.search(r"(?m)^# ", md.split("\n", 1)[1])


def test_disclaimer_is_the_last_line(spoiled: ResearchReport) -> None:
    assert spoiled.markdown.rstrip("\n").splitlines()[-1] == DISCLAIMER
    main = spoiled.html.split("<main>", 1)[1].split("</main>", 1)[0]
    assert main.rstrip().endswith(f"<em>{DISCLAIMER.strip('*')}</em></p>".replace("'", "&#x27;"))


def test_html_is_offline_with_svg_charts(spoiled: ResearchReport, ctx: ExampleContext) -> None:
    html = spoiled.html
    assert html.startswith("<!DOCTYPE html>")
    assert html.count("<svg") >= 2
    assert "valuation range" in html and "price, price target and scenario values" in html
    assert not re.search(r"""(?i)\b(?:src|href)\s*=\s*["']?\s*(?:https?:|//)""", html)
    assert not re.search(r"(?i)<(?:script|link|img|iframe)\b", html)
    assert "<table" in html and "Fact-check" in html
    # Markdown carries the charts' data as tables, never images.
    assert "<svg" not in spoiled.markdown and "![" not in spoiled.markdown
    assert "## Valuation Range" in spoiled.markdown and "## Price Target and Scenarios" in spoiled.markdown


def test_valuation_ranges_cover_the_three_methods(ctx: ExampleContext) -> None:
    rows = gen.valuation_ranges(ctx)
    assert [label.split(" ")[0] for label, *_ in rows] == ["DCF", "Comparables", "Scenarios"]
    for _, low, high, point in rows:
        assert low <= high and (point is None or low - 1e-9 <= point <= high + 1e-9)


def test_save_writes_named_files(spoiled: ResearchReport, tmp_path: Path) -> None:
    paths = spoiled.save(tmp_path, "both")
    stem = f"{TICKER}-{spoiled.generated.isoformat()}"
    assert [p.name for p in paths] == [f"{stem}.md", f"{stem}.html"]
    assert paths[0].read_text(encoding="utf-8") == spoiled.markdown
    assert paths[1].read_text(encoding="utf-8") == spoiled.html
    assert set(paths) <= set(spoiled.paths)
    with pytest.raises(ValueError, match="pdf"):
        spoiled.save(tmp_path, "pdf")


def test_unknown_ticker_names_the_closest(universe: list[Company]) -> None:
    generator = EnhancedEquityResearchGenerator(universe=universe, progress=False)
    with pytest.raises(UnknownTickerError, match="AAPL"):
        generator.generate_comprehensive_report("AAPK")


def test_unknown_ticker_from_the_configured_provider(in_tmp: Path) -> None:
    with pytest.raises(UnknownTickerError, match="Closest"):
        EnhancedEquityResearchGenerator(progress=False).company("AAPLX")


# ---------------------------------------------------------------------------------------------- engine


def test_engine_opens_lazily_and_reopens_when_the_model_changes(ctx: ExampleContext) -> None:
    opened: list[tuple[str, dict[str, Any]]] = []
    runtimes: list[StandInRuntime] = []

    def opener(model: str, **kwargs: Any) -> StandInRuntime:
        opened.append((model, kwargs))
        runtimes.append(StandInRuntime(ctx, reference, model=model))
        return runtimes[-1]

    engine = ReportEngine("first:v1", host="http://ollama:11434", registry="reg.sqlite", opener=opener)
    assert opened == []
    prompt = EnhancedEquityResearchGenerator.section_prompt(ctx, "valuation")
    assert engine.write(SYSTEM_PROMPT, prompt).model == "first:v1"
    engine.write(SYSTEM_PROMPT, prompt)
    assert [m for m, _ in opened] == ["first:v1"]
    assert opened[0][1]["ollama_host"] == "http://ollama:11434" and opened[0][1]["registry"] == "reg.sqlite"
    engine.default_model = "llama3.1:8b"
    assert engine.write(SYSTEM_PROMPT, prompt).model == "llama3.1:8b"
    assert [m for m, _ in opened] == ["first:v1", "llama3.1:8b"]
    assert runtimes[0].closed and not runtimes[1].closed
    engine.close()
    assert runtimes[1].closed
    assert engine.options.temperature == 0.0
    with pytest.raises(ModelRuntimeError):
        engine.default_model = "  "


def test_engine_names_the_model_when_its_client_fails(ctx: ExampleContext) -> None:
    class Broken(StandInRuntime):
        def chat(self, messages: Sequence[Message], options: GenerationOptions | None = None) -> Generation:
            raise ConnectionError("connection refused")

    engine = ReportEngine("remote:v1", runtime=Broken(ctx, reference, model="remote:v1"))
    with pytest.raises(ModelRuntimeError, match="remote:v1.*connection refused"):
        engine.write(SYSTEM_PROMPT, "hello")


def test_generator_uses_the_config_and_model(in_tmp: Path) -> None:
    cfg = EquituneConfig(evaluation={"max_tokens": 99})
    generator = EnhancedEquityResearchGenerator(cfg, progress=False)
    assert generator.ollama_engine.default_model == EMBEDDED_DEFAULT  # no registry here
    assert generator.ollama_engine.options.max_tokens == 99
    assert generator.ollama_engine.host == cfg.export.ollama_host
    assert EnhancedEquityResearchGenerator(cfg, "mymodel:v2").ollama_engine.default_model == "mymodel:v2"
    assert default_model_for(cfg) == EMBEDDED_DEFAULT


# ------------------------------------------------------------------------------------------------- CLI


def cli_app() -> typer.Typer:
    from equitune.cli_report import register

    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """A group, so that ``report`` is a subcommand as in ``equitune``."""

    register(app)
    return app


def test_cli_writes_the_report(in_tmp: Path, ctx: ExampleContext, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []

    def opener(model: str, **kwargs: Any) -> StandInRuntime:
        opened.append(model)
        return StandInRuntime(ctx, with_wrong_upside, model=model)

    monkeypatch.setattr(gen, "_open_runtime", opener)
    result = CliRunner().invoke(cli_app(), ["report", "aapl", "--format", "both", "--out", "out", "-m", "mine:v1"])
    assert result.exit_code == 0, result.output
    assert opened == ["mine:v1"]
    files = sorted(p.name for p in (in_tmp / "out").iterdir())
    assert len(files) == 2 and files[0].startswith("AAPL-") and {Path(f).suffix for f in files} == {".md", ".html"}
    output = " ".join(result.output.split())
    for name in files:
        assert name in output
    assert "1 derived wrong" in output and "1 unsupported" in output and "1 corrected" in output

    default = CliRunner().invoke(cli_app(), ["report", "AAPL"])
    assert default.exit_code == 0, default.output
    assert opened[-1] == EMBEDDED_DEFAULT
    assert [p.suffix for p in (in_tmp / "reports").iterdir()] == [".md"]


def test_cli_model_error_exits_1(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def opener(model: str, **kwargs: Any) -> StandInRuntime:
        raise ModelRuntimeError(f"Cannot open model '{model}': Ollama at localhost is not running.")

    monkeypatch.setattr(gen, "_open_runtime", opener)
    result = CliRunner().invoke(cli_app(), ["report", "AAPL", "--model", "nope:v9"])
    assert result.exit_code == 1
    assert "Cannot open model 'nope:v9'" in " ".join((result.output + (result.stderr or "")).split())
    assert not (in_tmp / "reports").exists()


def test_cli_rejects_unknown_format_and_ticker(in_tmp: Path) -> None:
    bad_format = CliRunner().invoke(cli_app(), ["report", "AAPL", "--format", "pdf"])
    assert bad_format.exit_code == 2
    unknown = CliRunner().invoke(cli_app(), ["report", "AAPLX"])
    assert unknown.exit_code == 1
    assert "Unknown ticker" in " ".join((unknown.output + (unknown.stderr or "")).split())


# ------------------------------------------------------------------------------------- the real model


@pytest.mark.slow
def test_report_with_the_embedded_default_model(in_tmp: Path, universe: list[Company]) -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'equitune[serve]')")
    from equitune.errors import EquituneError
    from equitune.train.base_model import embedded_gguf_path

    try:
        embedded_gguf_path()
    except EquituneError as exc:
        pytest.skip(f"the embedded SmolLM2 GGUF is not available: {exc}")
    cfg = EquituneConfig(evaluation={"max_tokens": 48})
    with EnhancedEquityResearchGenerator(cfg, universe=universe, progress=False) as generator:
        assert generator.ollama_engine.default_model == EMBEDDED_DEFAULT
        report = generator.generate_comprehensive_report("NVDA", format="both", out_dir=in_tmp / "reports")
    assert report.runtime == "llama.cpp" and len(report.sections) == 6
    assert all(s.generation is not None and s.generation.completion_tokens > 0 for s in report.sections)
    for section in report.sections:
        handled = {c.start for c in section.corrections} | {f.start for f in section.flags}
        for figure in section.check.figures:
            assert figure.label in ("grounded", "derived_correct") or figure.start in handled, figure
    assert report.markdown.rstrip("\n").splitlines()[-1] == DISCLAIMER
    assert report.html.count("<svg") >= 2
    assert sorted(p.suffix for p in report.paths) == [".html", ".md"]
