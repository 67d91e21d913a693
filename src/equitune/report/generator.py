"""The research-report generator: the engine computes every figure, the model writes the prose, the fact-check
keeps them honest.

``EnhancedEquityResearchGenerator.generate_comprehensive_report("AAPL")`` gathers the company's data, runs the
finance engine (ratios, WACC, DCF with sensitivity, comparables, price target, scenarios, estimates) through
``equitune.data.context.build_context``, and asks the model for one section per task family the configuration
trains (``data.families``: all six by default; a model trained on executive summaries only is asked for that
section alone, and the report says which sections it leaves out). Each section's prompt is exactly
what the fine-tuned model was trained on: the task family's instruction, a blank line and the family's DATA
block, under ``SYSTEM_PROMPT``.

Every figure of the model's text is then labelled by ``equitune.evaluate.factcheck.fact_check`` and handled by
one policy (``review_section``):

* ``grounded`` and ``derived_correct`` figures stay as written;
* a ``derived_wrong`` figure that plainly names one of the company's headline engine outputs (upside, price
  target, WACC, a margin, ...) is replaced by the engine's value and marked ``[corrected]``; one whose referent
  is ambiguous (a table cell, a line about peers, scenarios or another year) is kept and marked ``[unverified]``;
* an ``unsupported`` figure is kept and marked ``[unverified]``;
* a stated rating that contradicts the engine's is marked ``[engine rating: SELL]``.

Every correction and flag is listed in the report's fact-check appendix, and the corrected text is checked once
more so that no unsupported figure passes unmarked. The rating, price target, upside, estimates table and charts
come from the engine, never from the model. The report is Markdown (tables only) and offline HTML (with SVG
charts from ``equitune.report.charts``); the disclaimer is its last line.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from equitune.data.blocks import data_block, money, mult, pct, price
from equitune.data.families import FAMILY_IDS, get_family
from equitune.data.schema import SYSTEM_PROMPT
from equitune.errors import EquituneError
from equitune.evaluate.factcheck import LABELS, FactCheckResult, FigureCheck, fact_check, line_at, stated_ratings
from equitune.evaluate.readability import Readability, readability
from equitune.evaluate.rubric import REPETITIVE
from equitune.io import atomic_write_text
from equitune.serve import grounding
from equitune.serve.progress import generation_progress
from equitune.serve.runtime import (
    BatchProgress,
    Generation,
    GenerationOptions,
    Message,
    ModelRuntimeError,
    Runtime,
    chat_many,
)
from equitune.train.base_model import EMBEDDED_NAME

if TYPE_CHECKING:
    from equitune.config import EquituneConfig
    from equitune.data.context import ExampleContext
    from equitune.market.models import Company

log = logging.getLogger(__name__)

EMBEDDED_DEFAULT = EMBEDDED_NAME
ReportFormat = Literal["md", "html", "both"]
FORMATS: tuple[str, ...] = ("md", "html", "both")

# Report section titles, in report order (one model call each, from the family of the same identifier).
SECTION_TITLES: dict[str, str] = {
    "executive_summary": "Executive Summary",
    "financial_analysis": "Financial Analysis",
    "valuation": "Valuation",
    "investment_thesis": "Investment Thesis",
    "risk_assessment": "Risk Assessment",
    "industry_analysis": "Industry Analysis",
}

DISCLAIMER = (
    "*This report is for informational purposes only and is not investment advice. Figures come from company "
    "filings and equitune's valuation engine; the text was written by a language model and fact-checked against "
    "them.*"
)

UNVERIFIED = "[unverified]"
CORRECTED = "[corrected]"
_MARKER = re.compile(r"\[(?:unverified|corrected|engine rating: [A-Z ]+)\]")

Opener = Callable[..., Runtime]
_T = TypeVar("_T")


# ------------------------------------------------------------------------------------------------ the model


def _open_runtime(model: str, **kwargs: Any) -> Runtime:
    # Imported here: the factory pulls in the llama.cpp and Ollama runtimes, which tests and --help never need.
    from equitune.serve.factory import open_runtime

    return open_runtime(model, **kwargs)


def default_model_for(config: EquituneConfig) -> str:
    """The model a report uses unless told otherwise: the configured ``export.model_name`` when the model
    registry at ``paths.registry`` holds it, else the embedded default ``smollm2:135m``."""
    from equitune.registry import ModelRegistry, RegistryError

    path = Path(config.paths.registry)
    name = config.export.model_name
    if path.is_file():  # never create a registry just to look in it
        try:
            ModelRegistry(path).get(name)
            return name
        except RegistryError as exc:
            log.info("using %s: %s", EMBEDDED_DEFAULT, exc)
    return EMBEDDED_DEFAULT


class ReportEngine:
    """The model behind a report: which model (``default_model``), where Ollama is (``host``), how to decode
    (``options``, greedy by default), and the runtime, opened on first use and re-opened when ``default_model``
    changes. A ``runtime`` passed in is used for ``default_model`` as it is (and never closed here); ``opener``
    replaces ``equitune.serve.factory.open_runtime`` (called as ``opener(model, ollama_host=, registry=,
    n_ctx=)``)."""

    def __init__(
        self,
        default_model: str = EMBEDDED_DEFAULT,
        *,
        host: str | None = None,
        registry: Path | str | None = None,
        options: GenerationOptions | None = None,
        n_ctx: int = 4096,
        runtime: Runtime | None = None,
        opener: Opener | None = None,
    ):
        self._default_model = _check_model(default_model)
        self.host = host
        self.registry = registry
        self.options = options or GenerationOptions(max_tokens=768, temperature=0.0)
        self.n_ctx = n_ctx
        self._opener = opener or _open_runtime
        self._runtime = runtime
        self._runtime_for = self._default_model if runtime is not None else None
        self._owns_runtime = False

    @property
    def default_model(self) -> str:
        """The model the next section is written with (a registry name:tag, a .gguf path, an Ollama model)."""
        return self._default_model

    @default_model.setter
    def default_model(self, value: str) -> None:
        self._default_model = _check_model(value)

    @property
    def runtime(self) -> Runtime:
        """The open runtime for ``default_model`` (opened now if needed; a runtime for another model is closed)."""
        if self._runtime is None or self._runtime_for != self._default_model:
            self.close()
            log.info("opening model %s", self._default_model)
            self._runtime = self._opener(
                self._default_model, ollama_host=self.host, registry=self.registry, n_ctx=self.n_ctx
            )
            self._runtime_for = self._default_model
            self._owns_runtime = True
        return self._runtime

    def write(self, system: str, prompt: str) -> Generation:
        """One completion of ``prompt`` under the ``system`` prompt with ``options``."""
        messages = [Message("system", system), Message("user", prompt)]
        return self._answer(lambda runtime: runtime.chat(messages, self.options))

    def write_many(
        self,
        system: str,
        prompts: Sequence[str],
        progress: BatchProgress | None = None,
        *,
        grounded: bool = False,
    ) -> list[Generation]:
        """Every prompt completed under the ``system`` prompt with ``options``, all in one batch (decoded together
        by llama.cpp, concurrent requests to a server); the answers in the order of ``prompts``. ``grounded`` adds
        each prompt's DATA-block grammar (``equitune.serve.grounding``); ask ``can_ground`` first."""
        conversations = [[Message("system", system), Message("user", p)] for p in prompts]
        options: GenerationOptions | list[GenerationOptions] = self.options
        if grounded:
            options = [grounding.grounded(self.options, p) for p in prompts]
        return self._answer(
            lambda runtime: chat_many(runtime, conversations, options, batch_size=len(prompts), progress=progress)
        )

    @property
    def can_ground(self) -> bool:
        """Whether the runtime of ``default_model`` applies grounded decoding (opens it if needed)."""
        return grounding.accepts_grammar(self.runtime)

    def _answer(self, call: Callable[[Runtime], _T]) -> _T:
        """``call`` on the open runtime; a client library's own error (HTTP, llama.cpp) becomes a
        ``ModelRuntimeError`` naming the model."""
        runtime = self.runtime
        try:
            return call(runtime)
        except EquituneError:
            raise
        except Exception as exc:
            raise ModelRuntimeError(f"{runtime.name} model '{self._default_model}' failed to answer: {exc}") from exc

    def close(self) -> None:
        """Release a runtime this engine opened (one passed in is left to its owner)."""
        if self._runtime is not None and self._owns_runtime:
            self._runtime.close()
        self._runtime, self._runtime_for, self._owns_runtime = None, None, False

    def __enter__(self) -> ReportEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_model(name: str) -> str:
    cleaned = name.strip() if isinstance(name, str) else ""
    if not cleaned:
        raise ModelRuntimeError(
            "No model given: name a registry name:tag, a .gguf file, smollm2:135m or an Ollama model."
        )
    return cleaned


# ------------------------------------------------------------------------------------------ the fact-check


@dataclass(frozen=True)
class Correction:
    """A figure the model got wrong, replaced by the engine's value."""

    section: str
    start: int  # position of the figure in the model's text
    original: str
    corrected: str
    quantity: str
    fact: str  # the engine fact the corrected value comes from
    reason: str


@dataclass(frozen=True)
class Flag:
    """A figure (or rating) kept in the text but marked, because no fact supports it as written."""

    section: str
    start: int | None  # position in the model's text (None: found when re-checking the corrected text)
    text: str
    kind: Literal["unsupported", "derived_wrong", "rating"]
    reason: str
    expected: tuple[str, ...] = ()


@dataclass
class ReportSection:
    """One model-written section: the prompt, the model's text, its fact-check, and the text as the report prints
    it (corrected, flagged, headings demoted, the model's own disclaimer dropped)."""

    key: str
    title: str
    prompt: str
    text: str
    final: str
    check: FactCheckResult
    corrections: list[Correction] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)
    generation: Generation | None = None

    @property
    def truncated(self) -> bool:
        """Whether the model stopped at the token limit rather than finishing."""
        return self.generation is not None and self.generation.finish_reason == "length"

    @property
    def readability(self) -> Readability:
        """Repetition, restated instruction and bare figures of the model's text (``equitune.evaluate.readability``)."""
        return readability(self.text, self.prompt, self.check.figures)

    def notes(self) -> list[str]:
        """What a reader should know before reading the section: cut short, repetitive, restating its request."""
        found = []
        if self.truncated:
            found.append("The model reached its token limit; this section is cut short.")
        rd = self.readability
        if rd.repetition > REPETITIVE:
            found.append(
                f"The model repeats itself here ({rd.repetition:.0%} of its lines or phrases are repeats); "
                "a rubric scores such text Poor."
            )
        if rd.restates_instruction:
            found.append("The model restates its request here before answering.")
        return found


# Where a wrong derived figure is corrected to: the company's own headline value of the quantity the words name.
# Quantities not listed here (multiples, terminal value, generic "growth") have several plausible referents, so a
# wrong figure of theirs is flagged, not corrected.
_CORRECTION_FACTS: dict[str, str] = {
    "price_target": "analysis.target.price_target",
    "upside": "analysis.target.upside",
    "downside": "analysis.target.upside",
    "wacc": "analysis.wacc.wacc",
    "terminal_growth": "analysis.dcf.inputs.terminal_growth",
    "cost_of_equity": "analysis.wacc.cost_of_equity",
    "risk_free_rate": "analysis.wacc.risk_free_rate",
    "equity_risk_premium": "analysis.wacc.equity_risk_premium",
    "debt_weight": "analysis.wacc.debt_weight",
    "dcf_value": "analysis.target.dcf_value_per_share",
    "comps_value": "analysis.target.comps_value_per_share",
    "enterprise_value": "analysis.dcf.enterprise_value",
    "equity_value": "analysis.dcf.equity_value",
    "pv_fcf": "analysis.dcf.sum_pv_fcf",
    "gross_margin": "analysis.ratios.gross_margin",
    "operating_margin": "analysis.ratios.operating_margin",
    "ebitda_margin": "analysis.ratios.ebitda_margin",
    "net_margin": "analysis.ratios.net_margin",
    "fcf_margin": "analysis.ratios.fcf_margin",
    "roic": "analysis.ratios.roic",
    "roe": "analysis.ratios.roe",
    "roa": "analysis.ratios.roa",
    "revenue_growth": "analysis.ratios.revenue_growth",
    "eps_growth": "analysis.ratios.eps_growth",
    "ebitda_growth": "analysis.ratios.ebitda_growth",
    "fcf_conversion": "analysis.ratios.fcf_conversion",
    "net_debt_to_ebitda": "analysis.ratios.net_debt_to_ebitda",
    "interest_coverage": "analysis.ratios.interest_coverage",
    "net_debt": "analysis.ratios.net_debt",
}
_DCF_GROWTH_KEYWORDS = {
    "first-year growth",
    "first-year revenue growth",
    "year-1 revenue growth",
    "year-one revenue growth",
}
# Words that say a line is about something other than the company's headline figure (peers, scenarios, ...).
_OTHER_REFERENT = re.compile(
    r"(?i)\b(?:peers?|median|sector|industry|average|bull|bear|scenarios?|sensitivity|base[\s-]case|quartile)\b"
)
_FISCAL_YEAR = re.compile(r"\bFY(\d{4})(E?)\b")
_FIGURE_FACT_KINDS = {"percent": ("fraction",), "currency": ("per_share", "money"), "multiple": ("multiple",)}


def _write_value(value: float, kind: str, like: str) -> str:
    """An engine value written the way equitune writes figures, signed when the model's figure was."""
    if kind == "fraction":
        return pct(value, signed=like.lstrip("*").startswith(("+", "-", "\u2212")))
    if kind == "per_share":
        return price(value)
    if kind == "money":
        return money(value)
    return mult(value)


def _correction_fact(check: FigureCheck, previous: FigureCheck | None, ctx: ExampleContext, line: str) -> str | None:
    """The engine fact a wrong figure is corrected to, or None when its referent is not certain."""
    if check.quantity is None:
        return None
    if check.keyword == "(upside)":
        # "bear $183.69 (-20.0%)": the upside of the value just named, when that value is known.
        if previous is None:
            return None
        if previous.quantity == "price_target":
            return "analysis.target.upside"
        scenario = next(
            (f for f in previous.facts if re.fullmatch(r"analysis\.scenarios\[\d+\]\.value_per_share", f)), None
        )
        if previous.quantity == "scenario_value" and scenario is not None:
            return scenario.rsplit(".", 1)[0] + ".upside"
        return None
    if line.lstrip().startswith("|") or _OTHER_REFERENT.search(line):
        return None  # a table cell or a line about peers or scenarios: which value it means is not certain
    latest = ctx.company.latest.fiscal_year
    if any(int(year) != latest or estimate for year, estimate in _FISCAL_YEAR.findall(line)):
        return None
    if check.quantity == "revenue_growth" and (check.keyword or "").lower() in _DCF_GROWTH_KEYWORDS:
        return "analysis.dcf.inputs.initial_growth"
    return _CORRECTION_FACTS.get(check.quantity)


def _correction(
    check: FigureCheck, previous: FigureCheck | None, ctx: ExampleContext, text: str
) -> tuple[str, str] | None:
    """(replacement text, fact name) for a derived-wrong figure, or None to flag it instead."""
    name = _correction_fact(check, previous, ctx, line_at(text, check.start))
    fact = ctx.facts.facts.get(name) if name else None
    if fact is None or fact.kind not in _FIGURE_FACT_KINDS.get(check.kind, ()):
        return None
    value = fact.value
    if check.quantity == "downside":
        if value >= 0:
            return None  # the engine sees upside; "downside of x%" cannot be mended by a number
        value = -value if not check.raw.lstrip("*").startswith(("-", "\u2212")) else value
    return _write_value(value, fact.kind, check.raw), fact.name


def _rating_mentions(text: str) -> list[tuple[int, int, str]]:
    """(start, end, rating) of each Buy / Hold / Sell the text states as its rating, in order.

    ``stated_ratings`` decides from the 40 characters before a word and the 24 after it; asking it about that
    window alone, with the other rating words in it blanked, gives each statement's position."""
    words = re.compile(
        r"(?<![A-Za-z])(?:BUY|HOLD|SELL|Buy|Hold|Sell|Outperform|Overweight|Neutral|Underperform|Underweight|"
        r"OUTPERFORM|OVERWEIGHT|NEUTRAL|UNDERPERFORM|UNDERWEIGHT)(?![A-Za-z])"
    )
    matches = list(words.finditer(text))
    found = []
    for m in matches:
        lo, hi = max(0, m.start() - 40), min(len(text), m.end() + 24)
        window = list(text[lo:hi])
        for other in matches:
            if other is not m and other.end() > lo and other.start() < hi:
                for i in range(max(other.start(), lo), min(other.end(), hi)):
                    window[i - lo] = " "
        said = stated_ratings("".join(window))
        if said:
            found.append((m.start(), m.end(), said[0]))
    return found


def review_section(text: str, ctx: ExampleContext, *, key: str, title: str, prompt: str = "") -> ReportSection:
    """Fact-check one model-written section and apply the policy of the module docstring: correct what can be
    corrected, mark what cannot, and list both. ``prompt`` is the section's prompt (figures it gave count as
    grounded)."""
    check = fact_check(text, ctx, family=key if key in FAMILY_IDS else None, prompt=prompt)
    corrections: list[Correction] = []
    flags: list[Flag] = []
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement) in the model's text
    figures = check.figures
    for i, fig in enumerate(figures):
        if fig.label == "derived_wrong":
            fixed = _correction(fig, figures[i - 1] if i else None, ctx, text)
            if fixed is not None:
                value, fact = fixed
                corrections.append(Correction(title, fig.start, fig.raw, value, fig.quantity or "", fact, fig.reason))
                edits.append((fig.start, fig.end, f"{value} {CORRECTED}"))
                continue
            flags.append(Flag(title, fig.start, fig.raw, "derived_wrong", fig.reason, fig.expected))
            edits.append((fig.end, fig.end, f" {UNVERIFIED}"))
        elif fig.label == "unsupported":
            flags.append(Flag(title, fig.start, fig.raw, "unsupported", fig.reason, fig.expected))
            edits.append((fig.end, fig.end, f" {UNVERIFIED}"))
    engine_rating = ctx.rating
    for start, end, rating in _rating_mentions(text):
        if rating != engine_rating:
            while text.startswith("*", end):  # after the closing bold markers of "**BUY**"
                end += 1
            reason = f"the text states {rating.upper()}; the engine's rating is {engine_rating.upper()}"
            flags.append(Flag(title, start, text[start:end].strip("*"), "rating", reason, (engine_rating,)))
            edits.append((end, end, f" [engine rating: {engine_rating.upper()}]"))
    final = _apply(text, edits)

    # The corrected text once more: a figure the edits left unsupported (or a correction that reads ambiguously)
    # is marked too, so nothing unverified passes silently.
    recheck = fact_check(final, ctx, prompt=prompt)
    late: list[tuple[int, int, str]] = []
    for fig in recheck.figures:
        if fig.label in ("derived_wrong", "unsupported") and not final.startswith(f" {UNVERIFIED}", fig.end):
            flags.append(Flag(title, None, fig.raw, fig.label, fig.reason, fig.expected))
            late.append((fig.end, fig.end, f" {UNVERIFIED}"))
    final = _apply(final, late)
    return ReportSection(key, title, prompt, text, _tidy(final), check, corrections, flags)


def _apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    """``text`` with each (start, end, replacement) applied; edits do not overlap."""
    for start, end, replacement in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


_HEADING = re.compile(r"(?m)^(#{1,6})(?=\s)")
_DISCLAIMER_LINE = re.compile(r"(?i)investment advice|informational purposes|not a (?:solicitation|recommendation)")


def _tidy(text: str) -> str:
    """Demote the model's headings below the report's section heading and drop its closing disclaimer (the
    report ends with its own)."""
    lines = text.strip().splitlines()
    while lines and (not lines[-1].strip() or _DISCLAIMER_LINE.search(lines[-1])):
        lines.pop()
    body = "\n".join(lines).strip()
    return _HEADING.sub(lambda m: "#" * min(6, len(m.group(1)) + 2), body)


# ------------------------------------------------------------------------------------------------ the report


@dataclass
class ResearchReport:
    """A finished report: the engine's context, the reviewed model-written sections, and its Markdown and HTML."""

    ticker: str
    context: ExampleContext
    sections: list[ReportSection]
    model: str
    runtime: str
    provider: str
    generated: dt.date
    elapsed_s: float = 0.0
    paths: list[Path] = field(default_factory=list)
    grounded: bool | None = None  # grounded decoding: True applied, False asked for but not possible, None off

    @property
    def company(self) -> Company:
        return self.context.company

    @property
    def figures_summary(self) -> dict[str, int]:
        """Figures of the model's text per fact-check label, over all sections (every label present)."""
        totals: dict[str, int] = dict.fromkeys(LABELS, 0)
        for s in self.sections:
            for label, n in s.check.counts.items():
                totals[label] += n
        return totals

    @property
    def corrections(self) -> list[Correction]:
        return [c for s in self.sections for c in s.corrections]

    @property
    def flags(self) -> list[Flag]:
        return [f for s in self.sections for f in s.flags]

    @property
    def stem(self) -> str:
        """The default file name without suffix: TICKER-YYYY-MM-DD."""
        return f"{self.ticker}-{self.generated.isoformat()}"

    @cached_property
    def markdown(self) -> str:
        return render_markdown(self)

    @cached_property
    def html(self) -> str:
        return render_html(self)

    def save(self, out_dir: str | Path | None = None, format: str = "md") -> list[Path]:
        """Write the report as ``<out_dir>/<TICKER>-<date>.md`` and/or ``.html`` (``format`` md, html or both;
        ``out_dir`` defaults to ./reports); returns the paths, also kept in ``paths``."""
        if format not in FORMATS:
            raise ValueError(f"unknown report format '{format}'; valid: {', '.join(FORMATS)}")
        folder = Path(out_dir) if out_dir is not None else Path("reports")
        written = []
        if format in ("md", "both"):
            written.append(atomic_write_text(folder / f"{self.stem}.md", self.markdown))
        if format in ("html", "both"):
            written.append(atomic_write_text(folder / f"{self.stem}.html", self.html))
        self.paths = [*self.paths, *(p for p in written if p not in self.paths)]
        return written


class EnhancedEquityResearchGenerator:
    """Writes institutional research reports with a model, every figure from the finance engine.

    ``config`` supplies the market-data provider, valuation assumptions, Ollama host, model registry and token
    budget (``evaluation.max_tokens``); ``model`` overrides ``default_model_for(config)``; ``runtime`` injects an
    open ``Runtime`` (served as ``model``), ``universe`` the companies to analyse and draw peers from (default:
    the configured provider's). Change the model at any time with ``generator.ollama_engine.default_model``.
    """

    def __init__(
        self,
        config: EquituneConfig | None = None,
        model: str | None = None,
        *,
        runtime: Runtime | None = None,
        universe: Sequence[Company] | None = None,
        opener: Opener | None = None,
        progress: bool | None = None,
    ):
        from equitune.config import EquituneConfig

        self.config = config or EquituneConfig()
        chosen = model or (runtime.model if runtime is not None else None) or default_model_for(self.config)
        self.ollama_engine = ReportEngine(
            chosen,
            host=self.config.export.ollama_host,
            registry=self.config.paths.registry,
            options=GenerationOptions(
                max_tokens=self.config.evaluation.max_tokens,
                temperature=0.0,
                repeat_penalty=self.config.evaluation.repeat_penalty,
            ),
            n_ctx=self.config.evaluation.n_ctx,
            runtime=runtime,
            opener=opener,
        )
        self._universe = list(universe) if universe is not None else None
        self._provider_name: str = "given universe" if universe is not None else self.config.market.provider
        self.progress = progress

    # The engine's facts --------------------------------------------------------------------------------------

    def company(self, ticker: str) -> tuple[Company, list[Company]]:
        """The company and the universe its peers come from; an unknown ticker is an ``UnknownTickerError``
        naming the closest known tickers."""
        from equitune.market.base import normalise_ticker, unknown_ticker

        if self._universe is None:
            from equitune.market.service import load_universe, provider_from_config

            provider = provider_from_config(self.config.market)
            self._provider_name = provider.name
            company = provider.get(ticker)  # raises UnknownTickerError with the closest tickers
            self._universe = load_universe(provider)
            if all(c.ticker != company.ticker for c in self._universe):
                self._universe.append(company)
            return company, self._universe
        wanted = normalise_ticker(ticker)
        for candidate in self._universe:
            if candidate.ticker == wanted:
                return candidate, self._universe
        raise unknown_ticker(ticker, self._provider_name, [c.ticker for c in self._universe])

    def context(self, ticker: str) -> ExampleContext:
        """Everything the engine computes for ``ticker`` (base case), with its fact sheet."""
        from equitune.data.context import build_context

        company, universe = self.company(ticker)
        return build_context(company, universe, assumptions=self.config.valuation)

    @property
    def section_keys(self) -> list[str]:
        """The sections the model is asked for: the task families the configuration trains, in report order."""
        trained = set(self.config.data.families)
        return [key for key in SECTION_TITLES if key in trained]

    @staticmethod
    def section_prompt(ctx: ExampleContext, key: str) -> str:
        """The prompt of one section, as training built it: the family's instruction, a blank line, its DATA
        block. The phrasing is fixed per company and section, so a report can be reproduced."""
        family = get_family(key)
        rng = random.Random(f"{ctx.ticker}/{key}")
        return f"{family.instruction(ctx, rng)}\n\n{data_block(ctx, list(family.sections))}"

    # The report ----------------------------------------------------------------------------------------------

    def generate_comprehensive_report(
        self,
        ticker: str,
        *,
        format: str = "md",
        out_dir: str | Path | None = None,
        progress: bool | None = None,
    ) -> ResearchReport:
        """Analyse ``ticker`` with the engine, have the model write its sections (``section_keys``), fact-check
        them, and assemble the report; with ``out_dir`` it is also saved there in ``format`` (md, html or both)."""
        if format not in FORMATS:
            raise ValueError(f"unknown report format '{format}'; valid: {', '.join(FORMATS)}")
        began = time.perf_counter()
        ctx = self.context(ticker)
        engine = self.ollama_engine
        sections: list[ReportSection] = []
        show = self.progress if progress is None else progress
        prompts = {key: self.section_prompt(ctx, key) for key in self.section_keys}
        enabled = sys.stderr.isatty() if show is None else show
        with generation_progress(enabled, f"{ctx.ticker}: writing the sections", len(prompts)) as update:
            grounded = self.config.evaluation.grounded_report and engine.can_ground
            generations = engine.write_many(SYSTEM_PROMPT, list(prompts.values()), progress=update, grounded=grounded)
        for key, generation in zip(prompts, generations, strict=True):
            title = SECTION_TITLES[key]
            section = review_section(generation.text.strip(), ctx, key=key, title=title, prompt=prompts[key])
            section.generation = generation
            sections.append(section)
            log.info(
                "%s %s: %d tokens in %.1fs, %d figures, %d corrected, %d flagged",
                ctx.ticker,
                key,
                generation.completion_tokens,
                generation.prompt_seconds + generation.completion_seconds,
                len(section.check.figures),
                len(section.corrections),
                len(section.flags),
            )
        served = engine.runtime
        report = ResearchReport(
            ticker=ctx.ticker,
            context=ctx,
            sections=sections,
            model=engine.default_model,
            runtime=served.name,
            provider=self._provider_name,
            generated=dt.date.today(),
            elapsed_s=time.perf_counter() - began,
            grounded=grounded if self.config.evaluation.grounded_report else None,
        )
        if out_dir is not None:
            report.save(out_dir, format)
        return report

    def close(self) -> None:
        """Release the model."""
        self.ollama_engine.close()

    def __enter__(self) -> EnhancedEquityResearchGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -------------------------------------------------------------------------------------------- the contents


def _estimates_rows(ctx: ExampleContext) -> tuple[list[str], list[list[object]]]:
    r, n = ctx.estimates.reported, ctx.estimates.next_year
    headers = ["", f"FY{r.fiscal_year}", f"FY{n.fiscal_year}{'E' if n.estimate else ''}"]
    rows: list[list[object]] = [
        ["Revenue", money(r.revenue), money(n.revenue)],
        ["Revenue growth", pct(r.revenue_growth, signed=True), pct(n.revenue_growth, signed=True)],
        ["EBITDA margin", pct(r.ebitda_margin), pct(n.ebitda_margin)],
        ["Diluted EPS", price(r.eps), price(n.eps)],
        ["P/E", mult(r.pe), mult(n.pe)],
    ]
    return headers, rows


def _valuation_rows(ctx: ExampleContext) -> tuple[list[str], list[list[object]]]:
    a = ctx.analysis
    t, d = a.target, a.dcf
    rows: list[list[object]] = [
        ["Share price", price(t.price)],
        ["DCF value per share", price(t.dcf_value_per_share)],
        ["Comparables value per share", price(t.comps_value_per_share)],
        ["12-month price target", f"{price(t.price_target)} ({t.blend})"],
        ["Upside", pct(t.upside, signed=True)],
        ["Rating", ctx.rating.upper()],
        ["WACC", pct(a.wacc.wacc)],
        ["Terminal growth", pct(d.inputs.terminal_growth) if d is not None else "n/a"],
    ]
    return ["Engine figure", "Value"], rows


def _scenario_rows(ctx: ExampleContext) -> tuple[list[str], list[list[object]]]:
    t = ctx.analysis.target
    rows: list[list[object]] = [
        ["Current price", price(t.price), "", "", "", ""],
        ["Price target", price(t.price_target), pct(t.upside, signed=True), "", "", ""],
    ]
    for s in ctx.analysis.scenarios:
        rows.append(
            [
                f"{s.name.capitalize()} case",
                price(s.value_per_share),
                pct(s.upside, signed=True),
                pct(s.initial_growth),
                pct(s.fcf_margin),
                pct(s.wacc),
            ]
        )
    return ["", "Value per share", "Upside", "Year-1 growth", "FCF margin", "WACC"], rows


def valuation_ranges(ctx: ExampleContext) -> list[tuple[str, float, float, float | None]]:
    """The "football field" rows: (label, low, high, point) per share for the DCF sensitivity grid, the
    comparables (peer first to third quartile) and the bear-to-bull scenarios; a method without values is left
    out."""
    a = ctx.analysis
    rows: list[tuple[str, float, float, float | None]] = []
    if a.dcf is not None and a.dcf.sensitivity is not None:
        cells = [v for row in a.dcf.sensitivity.values for v in row if v is not None]
        if cells:
            rows.append(("DCF sensitivity (WACC x growth)", min(cells), max(cells), a.dcf.value_per_share))
    comps = a.comparables
    points = [
        v
        for m in comps.multiples
        for v in (m.implied_value_low, m.implied_value_high, m.implied_value_per_share)
        if v is not None
    ]
    if points:
        rows.append(("Comparables (peer Q1 to Q3)", min(points), max(points), comps.value_per_share))
    values = [s.value_per_share for s in a.scenarios if s.value_per_share is not None]
    if values:
        base = next((s.value_per_share for s in a.scenarios if s.name == "base"), None)
        rows.append(("Scenarios (bear to bull)", min(values), max(values), base))
    return rows


def _counts_rows(report: ResearchReport) -> tuple[list[str], list[list[object]]]:
    headers = ["Section", "Figures", "Grounded", "Derived correct", "Derived wrong", "Unsupported", "Corrected"]
    headers.append("Flagged")
    rows: list[list[object]] = []
    for s in report.sections:
        c = s.check.counts
        rows.append([s.title, len(s.check.figures), *(c[label] for label in LABELS), len(s.corrections), len(s.flags)])
    total = report.figures_summary
    rows.append(
        [
            "All sections",
            sum(total.values()),
            *(total[label] for label in LABELS),
            len(report.corrections),
            len(report.flags),
        ]
    )
    return headers, rows


def _correction_rows(report: ResearchReport) -> tuple[list[str], list[list[object]]]:
    rows: list[list[object]] = [[c.section, c.original, c.corrected, c.quantity, c.fact] for c in report.corrections]
    return ["Section", "Model wrote", "Corrected to", "Quantity", "Engine source"], rows


def _flag_rows(report: ResearchReport) -> tuple[list[str], list[list[object]]]:
    rows: list[list[object]] = [
        [f.section, f.text, f.kind.replace("_", " "), f.reason, ", ".join(f.expected) or "-"] for f in report.flags
    ]
    return ["Section", "As written", "Label", "Why", "Engine values"], rows


POLICY = (
    "Every figure in the model-written sections was checked against the company's reported data and the finance "
    "engine's outputs. Grounded and derived-correct figures stand as written. A derived figure that contradicts "
    "the engine is replaced by the engine's value and marked [corrected] when the quantity it names is "
    "unambiguous, and otherwise kept and marked [unverified]. A figure no fact supports is kept and marked "
    "[unverified]. A stated rating that contradicts the engine's is marked with the engine's rating. The rating, "
    "price target, upside, estimates and charts of this report come from the engine, not from the model."
)


def _sources(report: ResearchReport) -> list[str]:
    ctx = report.context
    c, a = ctx.company, ctx.analysis
    peers = "; ".join(f"{p.ticker} ({p.source}, as of {p.as_of})" for p in ctx.peers) or "none"
    w = a.wacc
    return [
        f"Company data: {c.source}; record as of {c.as_of} (provider: {report.provider}).",
        f"Share price: {price(a.market.price)} on {c.price_date or c.as_of}.",
        f"Peers ({a.comparables.group}): {peers}.",
        "Valuation: equitune finance engine (ratios, CAPM WACC, DCF with WACC x terminal-growth sensitivity, "
        f"peer multiples, blended price target, bull/base/bear scenarios); risk-free rate {pct(w.risk_free_rate)}, "
        f"equity risk premium {pct(w.equity_risk_premium)}; rating bands {a.target.rating_bands}.",
        f"Text: written by {report.model} ({report.runtime}) from the engine's figures, then fact-checked"
        + _grounding_note(report.grounded, report.runtime)
        + ".",
    ]


def _grounding_note(grounded: bool | None, runtime: str) -> str:
    if grounded is None:
        return ""
    if grounded:
        return "; grounded decoding: the model could write only numerals of each section's DATA block, years and counts"
    return f"; grounded decoding was asked for, but the {runtime} runtime cannot apply it"


def _left_out(report: ResearchReport) -> str:
    """The sentence naming the sections the model was not asked for (empty when it wrote all of them)."""
    written = {s.key for s in report.sections}
    missing = [title for key, title in SECTION_TITLES.items() if key not in written]
    if not missing:
        return ""
    return (
        f"Written by the model: {', '.join(s.title for s in report.sections) or 'no section'}. Not requested, because "
        f"the configuration does not train the model for them (data.families): {', '.join(missing)}."
    )


def _title(report: ResearchReport) -> str:
    return f"{report.company.name} ({report.ticker}): Equity Research Report"


def _subtitle(report: ResearchReport) -> str:
    c, a = report.company, report.context.analysis
    return (
        f"{c.sector} / {c.sub_industry} | Price {price(a.market.price)} on {c.price_date or c.as_of} | "
        f"Data as of {c.as_of} | Generated {report.generated.isoformat()} with {report.model}"
    )


def _headline(report: ResearchReport) -> tuple[list[str], list[list[object]]]:
    t = report.context.analysis.target
    headers = ["Rating", "12-month price target", "Upside", "Share price"]
    return headers, [[report.context.rating.upper(), price(t.price_target), pct(t.upside, signed=True), price(t.price)]]


# ------------------------------------------------------------------------------------------------ markdown


def render_markdown(report: ResearchReport) -> str:
    """The report as Markdown: title, engine header box, estimates, the model's sections, price and valuation
    tables (the charts' data; Markdown embeds no images), the fact-check appendix, data sources, disclaimer."""
    from equitune.report.html import markdown_table

    ctx = report.context
    t = ctx.analysis.target
    parts = [f"# {_title(report)}", f"*{_subtitle(report)}*"]
    parts.append(
        f"> **Rating: {ctx.rating.upper()}** | **12-month price target: {price(t.price_target)}** | "
        f"**Upside: {pct(t.upside, signed=True)}** | Share price: {price(t.price)}\n>\n"
        f"> Target: {t.blend}. Rating bands: {t.rating_bands}. All figures in this box come from the engine."
    )
    parts.append("## Estimates\n\n" + markdown_table(*_estimates_rows(ctx)).rstrip())
    parts.append("## Valuation Summary\n\n" + markdown_table(*_valuation_rows(ctx)).rstrip())
    left_out = _left_out(report)
    if left_out:
        parts.append(f"*{left_out}*")
    for s in report.sections:
        note = "".join(f"\n\n*{n}*" for n in s.notes())
        parts.append(f"## {s.title}\n\n{s.final or '*The model returned no text for this section.*'}{note}")
    parts.append("## Price Target and Scenarios\n\n" + markdown_table(*_scenario_rows(ctx)).rstrip())
    ranges = valuation_ranges(ctx)
    range_rows: list[list[object]] = [[label, price(lo), price(hi), price(v)] for label, lo, hi, v in ranges]
    parts.append(
        "## Valuation Range\n\n"
        + markdown_table(["Method", "Low", "High", "Point value"], range_rows).rstrip()
        + f"\n\nCurrent share price: {price(t.price)}."
    )
    parts.append(_markdown_appendix(report))
    parts.append("## Data Sources\n\n" + "\n".join(f"- {line}" for line in _sources(report)))
    parts.append(DISCLAIMER)
    return "\n\n".join(parts) + "\n"


def _markdown_appendix(report: ResearchReport) -> str:
    from equitune.report.html import markdown_table

    lines = ["## Fact-check", "", POLICY, "", markdown_table(*_counts_rows(report)).rstrip(), "", "### Corrections", ""]
    lines.append(markdown_table(*_correction_rows(report)).rstrip() if report.corrections else "None.")
    lines += ["", "### Flagged figures and ratings", ""]
    lines.append(markdown_table(*_flag_rows(report)).rstrip() if report.flags else "None.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- HTML


def _markdown_to_html(text: str) -> str:
    """The model's Markdown as HTML: raw HTML escaped, links and images off (the page stays offline), tables
    styled like the rest of the report, and the fact-check markers highlighted."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table").disable(["link", "image", "autolink", "reference"])
    rendered = md.render(text).replace("<table>", '<table class="data">')
    return _MARKER.sub(lambda m: f'<mark class="fact-check">{m.group(0)}</mark>', rendered)


def render_html(report: ResearchReport) -> str:
    """The report as one offline HTML page: the Markdown's contents plus SVG charts (price vs target and the
    scenario values; the valuation range with the current price)."""
    from equitune.report import charts
    from equitune.report.html import esc, page, section, table

    ctx = report.context
    a, t = ctx.analysis, ctx.analysis.target
    body = [table(*_headline(report), caption="Engine rating, price target and upside")]
    body.append(f'<p class="muted">Target: {esc(t.blend)}. Rating bands: {esc(t.rating_bands)}.</p>')
    body.append(section("Estimates", table(*_estimates_rows(ctx), numeric={1, 2})))
    body.append(section("Valuation Summary", table(*_valuation_rows(ctx), numeric={1})))
    left_out = _left_out(report)
    if left_out:
        body.append(f'<p class="muted">{esc(left_out)}</p>')
    for s in report.sections:
        content = _markdown_to_html(s.final) if s.final else '<p class="muted">The model returned no text.</p>'
        content += "".join(f'<p class="muted">{esc(n)}</p>' for n in s.notes())
        body.append(section(s.title, content))

    scenarios = {s.name: s.value_per_share for s in a.scenarios}
    bars = charts.bar_chart(
        ["Current price", "Price target", "Bear", "Base", "Bull"],
        {
            "Value per share ($)": [
                t.price,
                t.price_target,
                scenarios.get("bear"),
                scenarios.get("base"),
                scenarios.get("bull"),
            ]
        },
        title=f"{ctx.ticker}: price, price target and scenario values",
        y_label="$ per share",
        value_format="${:,.2f}",
    )
    football = charts.range_chart(
        valuation_ranges(ctx),
        title=f"{ctx.ticker}: valuation range per share",
        x_label="$ per share",
        marker=t.price,
        marker_label=f"Current price {price(t.price)}",
    )
    figures = (
        f'<figure class="chart">{bars}<figcaption class="muted">Current price and the engine\'s price target '
        f"and bear / base / bull scenario values per share.</figcaption></figure>"
        f'<figure class="chart">{football}<figcaption class="muted">Ranges per share from the DCF sensitivity '
        "grid, the peer multiples (first to third quartile) and the scenarios; dots mark each method's point "
        "value, the dashed line the current price.</figcaption></figure>"
        + table(*_scenario_rows(ctx), numeric={1, 2, 3, 4, 5}, caption="Price target and scenarios")
    )
    body.append(section("Charts", figures))

    appendix = [f"<p>{esc(POLICY)}</p>", table(*_counts_rows(report), numeric={1, 2, 3, 4, 5, 6, 7})]
    appendix.append("<h3>Corrections</h3>")
    appendix.append(table(*_correction_rows(report)) if report.corrections else "<p>None.</p>")
    appendix.append("<h3>Flagged figures and ratings</h3>")
    appendix.append(table(*_flag_rows(report)) if report.flags else "<p>None.</p>")
    body.append(section("Fact-check", "\n".join(appendix)))
    body.append(
        section("Data Sources", "<ul>" + "".join(f"<li>{esc(line)}</li>" for line in _sources(report)) + "</ul>")
    )
    body.append(f'<p class="disclaimer"><em>{esc(DISCLAIMER.strip("*"))}</em></p>')
    return page(_title(report), "\n".join(body), subtitle=_subtitle(report))
