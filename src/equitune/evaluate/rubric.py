"""The scoring rubric: a 0-100 score for one research report, built from explicit named checks.

Four categories, weighted as in the original design (``RubricWeights``, from configuration, summing to 1):
financial accuracy 25%, investment reasoning 30%, technical depth 25%, structure quality 20%. Each category is
a list of named checks worth points; a check earns all, part or none of its points and says why, so a reader
sees exactly what a report scored and what it missed. A category's score is the share of the points of its
applicable checks that the report earned (0-100); the total is the weighted sum. Tiers: Excellent 80-100
(production ready), Good 65-79, Acceptable 50-64, Poor below 50.

Financial accuracy rests on the numeric fact-check (``equitune.evaluate.factcheck``): the share of figures
that match the data, a penalty per derived figure that contradicts the engine and per unsupported figure,
the internal-consistency checks, key-fact coverage, terminology and the presence of computed figures. The
other categories check what an institutional report of the task contains, and most of their checks need
figures that match the data, so words alone earn little: a keyword-stuffed text without figures scores Poor.
Wrong numbers also cap the total (``CAPS``, listed with the score): a figure that contradicts the data for the
quantity it names caps it at 79 (not production ready), more than 10% wrong or unsupported figures at 64,
more than 25% at 49 - a well-formatted report with wrong figures must not score as a good one.

Text must read as text (``equitune.evaluate.readability``): repetition, a restated instruction or pasted DATA
block, and figures with no sentence around them are *factor* checks of the structure category, which multiply
its score by the share they earn (a flaw can only cost); so does the coherence check of the reasoning
category (``equitune.data.coherence``: a value compared with or moved to itself, a one-source blend, a direction
against the numbers, a rating against its bands; a quarter off per contradiction). Unreadable text is capped at
49 whatever its figures (``READABILITY_CAPS``): two or more figures stated in a unit their quantity never has,
repetition over 20%, or more than 40% of the words pasted from the DATA block.

Not every check applies to every task (``CHECKS`` / ``APPLIES_TO``): the rating, target-with-upside and
rating-consistency checks apply to the executive summary, valuation, investment thesis and risk assessment (an
industry or financial analysis carries no rating); the DCF check to the valuation, executive summary and risk
assessment (the thesis argues from scenarios); peers and multiples to the valuation and industry analysis;
ratio analysis and judgements to the financial and industry analyses; value creation (ROIC against WACC) to the
financial analysis; relative positioning to the industry analysis; catalysts to the executive summary and
thesis; risk ratings to the risk assessment; sector terms to the industry analysis and risk assessment.

A check also does not apply when the data lacks what it asks for (no DCF could be run, no target could be
formed, the sector is unknown); both kinds are listed as not applicable with the reason. The section, length,
sector-keyword and methodology tables follow what the task families in ``equitune.data.families`` produce, so
that a correct training response of every family scores Excellent.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

from equitune.data.coherence import Incoherence, coherence_issues
from equitune.data.facts import FactSheet
from equitune.data.families import FAMILY_IDS
from equitune.evaluate.factcheck import (
    FactCheckResult,
    FigureCheck,
    RatingBands,
    fact_check,
    normalise_keyword,
    trie_pattern,
)
from equitune.evaluate.readability import NGRAM, Readability, readability
from equitune.evaluate.weights import CATEGORIES as CATEGORIES
from equitune.evaluate.weights import DEFAULT_WEIGHTS as DEFAULT_WEIGHTS
from equitune.evaluate.weights import TIERS as TIERS
from equitune.evaluate.weights import RubricWeights as RubricWeights
from equitune.evaluate.weights import Tier as Tier
from equitune.evaluate.weights import tier_for as tier_for
from equitune.formatting import fmt_pct, fmt_price

if TYPE_CHECKING:
    from equitune.data.context import ExampleContext

# --------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Check:
    """One named check: points earned out of ``points``, passed or not, and why. A ``factor`` check earns no
    points: the category's score is multiplied by its ``earned`` share (1 keeps it whole), so a flaw it finds
    can only take points away."""

    category: str
    name: str
    points: float
    earned: float
    passed: bool
    reason: str
    factor: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "name": self.name,
            "points": self.points,
            "earned": round(self.earned, 3),
            "passed": self.passed,
            "reason": self.reason,
            "factor": self.factor,
        }


@dataclass(frozen=True)
class Skipped:
    """A check that does not apply to this report, and why."""

    category: str
    name: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"category": self.category, "name": self.name, "reason": self.reason}


@dataclass
class CategoryScore:
    """One category: its weight, its 0-100 score and its checks."""

    name: str
    weight: float
    score: float
    checks: list[Check]
    not_applicable: list[Skipped]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "weight": self.weight,
            "score": round(self.score, 2),
            "checks": [c.to_dict() for c in self.checks],
            "not_applicable": [s.to_dict() for s in self.not_applicable],
        }


@dataclass(frozen=True)
class Cap:
    """A ceiling on the total score that a report's numeric errors impose (see ``CAPS``)."""

    name: str
    limit: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "limit": self.limit, "reason": self.reason}


@dataclass
class RubricScore:
    """The score of one report: total, tier, categories with every check, the caps applied, and the fact-check
    behind them. ``uncapped_score`` is the weighted sum before the caps."""

    task: str
    score: float
    tier: str
    tier_meaning: str
    categories: list[CategoryScore]
    fact_check: FactCheckResult
    uncapped_score: float = 0.0
    caps: list[Cap] = field(default_factory=list)
    readability: Readability | None = None

    @property
    def checks(self) -> list[Check]:
        return [c for cat in self.categories for c in cat.checks]

    def failed(self) -> list[Check]:
        """The checks that did not pass (in category order)."""
        return [c for c in self.checks if not c.passed]

    def category(self, name: str) -> CategoryScore:
        return next(c for c in self.categories if c.name == name)

    def to_dict(self, figures: bool = True) -> dict[str, Any]:
        """JSON-ready; ``figures=False`` leaves out the per-figure labels (counts and metrics stay)."""
        fc = self.fact_check.to_dict()
        if not figures:
            fc.pop("checks")
        return {
            "task": self.task,
            "score": round(self.score, 2),
            "tier": self.tier,
            "tier_meaning": self.tier_meaning,
            "uncapped_score": round(self.uncapped_score, 2),
            "caps": [c.to_dict() for c in self.caps],
            "categories": {c.name: c.to_dict() for c in self.categories},
            "fact_check": fc,
            "readability": self.readability.to_dict() if self.readability is not None else None,
        }


# ------------------------------------------------------------------------------------- the report's parts

_HEADER = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*(?:[-*+\u2022]|\d+[.)])\s+\S")
_GOOD = ("grounded", "derived_correct")


@dataclass
class _Report:
    """The text cut into lines, headers and bullets, with its fact-check and the context it is checked against."""

    text: str
    lower: str
    family: str
    fc: FactCheckResult
    sheet: FactSheet
    context: ExampleContext | None
    readability: Readability
    lines: list[str] = field(default_factory=list)
    line_starts: list[int] = field(default_factory=list)
    headers: list[tuple[int, str, int]] = field(default_factory=list)  # (level, title, line number)
    by_quantity: dict[str, list[FigureCheck]] = field(default_factory=dict)
    figures_per_line: dict[int, list[FigureCheck]] = field(default_factory=dict)

    prompt: str = ""

    @cached_property
    def lexicon(self) -> dict[str, list[str]]:
        return lexicon(self.lower)

    @cached_property
    def incoherence(self) -> list[Incoherence]:
        """The contradictions ``equitune.data.coherence`` finds, read against the prompt's DATA block."""
        at = self.prompt.find("DATA\n")
        return coherence_issues(self.text, self.prompt[at:] if at >= 0 else "")

    @cached_property
    def by_fact(self) -> dict[str, list[FigureCheck]]:
        found: dict[str, list[FigureCheck]] = {}
        for figure in self.fc.figures:
            if figure.label in _GOOD:
                for name in figure.facts:
                    found.setdefault(name, []).append(figure)
        return found

    @classmethod
    def build(
        cls,
        text: str,
        family: str,
        fc: FactCheckResult,
        sheet: FactSheet,
        context: ExampleContext | None,
        prompt: str = "",
    ) -> _Report:
        rd = readability(text, prompt, fc.figures)
        report = cls(text, text.lower(), family, fc, sheet, context, rd, prompt=prompt)
        offset = 0
        for number, line in enumerate(text.split("\n")):
            report.lines.append(line)
            report.line_starts.append(offset)
            offset += len(line) + 1
            if line.startswith("#"):
                match = _HEADER.match(line)
                if match:
                    report.headers.append((len(match.group(1)), match.group(2).strip("* "), number))
        for figure in fc.figures:
            if figure.quantity:
                report.by_quantity.setdefault(figure.quantity, []).append(figure)
            number = bisect.bisect_right(report.line_starts, figure.start) - 1
            report.figures_per_line.setdefault(number, []).append(figure)
        return report

    def named(self, *quantities: str, good: bool = True) -> list[FigureCheck]:
        """Figures the text names as any of ``quantities`` (only those matching the data when ``good``)."""
        found = [f for q in quantities for f in self.by_quantity.get(q, ())]
        return [f for f in found if f.label in _GOOD] if good else found

    def matching(self, *fact_names: str) -> list[FigureCheck]:
        """Figures that match any of ``fact_names``."""
        return [f for name in fact_names for f in self.by_fact.get(name, ())]

    def good_figures_on(self, line: int) -> list[FigureCheck]:
        return [f for f in self.figures_per_line.get(line, ()) if f.label in _GOOD]

    def bullets(self) -> list[int]:
        return [i for i, line in enumerate(self.lines) if _BULLET.match(line)]

    def table_rows(self) -> int:
        return sum(1 for line in self.lines if line.lstrip().startswith("|") and line.rstrip().endswith("|"))

    def section_lines(self, pattern: re.Pattern[str]) -> list[int]:
        """Line numbers under every level-2+ header matching ``pattern`` (up to the next header)."""
        found: list[int] = []
        marks = [h for h in self.headers if h[0] >= 2]
        for k, (_, title, line) in enumerate(marks):
            if pattern.search(title.lower()):
                end = marks[k + 1][2] if k + 1 < len(marks) else len(self.lines)
                found.extend(range(line + 1, end))
        return found

    def has_fact(self, name: str) -> bool:
        return name in self.sheet.facts


# Outcome of a check: (fraction of its points earned, reason), or a string saying why it does not apply to this
# report (the data lacks what it asks for, or nothing was stated for it to check).
Outcome = tuple[float, str] | str


def _frac(numerator: float, denominator: float) -> float:
    return max(0.0, min(1.0, numerator / denominator)) if denominator > 0 else 0.0


def _raws(figures: list[FigureCheck], limit: int = 4) -> str:
    shown = ", ".join(f.raw for f in figures[:limit])
    return shown + (f" (+{len(figures) - limit} more)" if len(figures) > limit else "")


# --------------------------------------------------------------------------------------- financial accuracy


def _figures_supported(r: _Report) -> Outcome:
    total = len(r.fc.figures)
    if not total:
        return 0.0, "no figures to check against the data"
    share = r.fc.supported / total
    return share, f"{r.fc.supported} of {total} figures match the company's data or the engine ({share:.0%})"


def _derived_correct(r: _Report) -> Outcome:
    wrong = [f for f in r.fc.figures if f.label == "derived_wrong"]
    derived = r.fc.derived
    if not derived:
        return 0.0, "no derived figures (margins, growth, WACC, values, target, upside) quoted"
    if not wrong:
        return 1.0, f"all {derived} derived figures match the engine"
    details = "; ".join(
        f"{f.raw} named as {f.quantity}, the engine gives {' / '.join(f.expected) or 'another value'}"
        for f in wrong[:3]
    )
    return max(
        0.0, 1.0 - 0.4 * len(wrong)
    ), f"{len(wrong)} of {derived} derived figures contradict the engine: {details}"


def _no_unsupported(r: _Report) -> Outcome:
    if not r.fc.figures:
        return 0.0, "no figures to check against the data"
    missing = [f for f in r.fc.figures if f.label == "unsupported"]
    if not missing:
        return 1.0, "no unsupported figures"
    return max(0.0, 1.0 - len(missing) / 3), f"{len(missing)} figure(s) match nothing in the data: {_raws(missing)}"


def _consistency(r: _Report) -> Outcome:
    applied = [c for c in r.fc.consistency if c.status != "skip" and c.name != "rating_matches_bands"]
    if not applied:
        return "no target, price and upside, nor WACC and terminal growth, stated together"
    failed = [c for c in applied if c.status == "fail"]
    reason = "; ".join(c.detail for c in (failed or applied))
    return _frac(len(applied) - len(failed), len(applied)), reason


def _key_facts(r: _Report) -> Outcome:
    keys = r.fc.key_facts
    if not keys:
        return "the data holds none of the task's key facts"
    missing = [k for k in keys if not k.covered]
    covered = len(keys) - len(missing)
    if not missing:
        return 1.0, f"all {len(keys)} key facts stated"
    names = ", ".join(f"{k.name} ({k.expected})" for k in missing[:5])
    return _frac(covered, len(keys)), f"{covered} of {len(keys)} key facts stated; missing: {names}"


# Financial terms (canonical name: spellings), found in one pass over the lower-cased text.
_TERMS: dict[str, tuple[str, ...]] = {
    "EBITDA": ("ebitda",),
    "margin": ("margin", "margins"),
    "free cash flow": ("free cash flow", "fcf"),
    "WACC": ("wacc", "cost of capital"),
    "DCF": ("dcf", "discounted cash flow"),
    "P/E": ("p/e", "price/earnings"),
    "EV/EBITDA": ("ev/ebitda",),
    "ROIC": ("roic", "return on invested capital"),
    "ROE": ("roe", "return on equity"),
    "net debt": ("net debt",),
    "leverage": ("leverage",),
    "cost of equity": ("cost of equity",),
    "terminal value": ("terminal value", "terminal growth"),
    "EPS": ("eps", "earnings per share"),
    "price target": ("price target", "target price"),
    "upside": ("upside", "downside"),
    "interest coverage": ("interest coverage",),
    "capex": ("capex", "capital expenditure"),
    "multiple": ("multiple", "multiples"),
    "valuation": ("valuation",),
}


def _terminology(r: _Report) -> Outcome:
    used = sorted({tag[5:] for tag in r.lexicon if tag.startswith("term:")})
    need = 5
    return _frac(
        len(used), need
    ), f"{len(used)} financial terms used ({', '.join(used[:8]) or 'none'}); {need} expected"


def _calculations(r: _Report) -> Outcome:
    computed = [f for f in r.fc.figures if f.label == "derived_correct"]
    need = 3
    return _frac(len(computed), need), f"{len(computed)} computed figures (ratios, values, growth) quoted correctly"


# ------------------------------------------------------------------------------------- investment reasoning


def _explicit_rating(r: _Report) -> Outcome:
    rating = r.fc.stated.get("rating")
    if rating is None:
        return 0.0, "no Buy / Hold / Sell rating stated"
    return 1.0, f"rating stated: {str(rating).upper()}"


def _rating_matches_engine(r: _Report) -> Outcome:
    engine = r.fc.engine.get("rating")
    if not isinstance(engine, str):
        return "the engine formed no rating for this company"
    stated = r.fc.stated.get("rating")
    if stated is None:
        return 0.0, f"no rating stated (the engine's is {engine.upper()})"
    ok = str(stated) == engine
    return float(ok), f"stated {str(stated).upper()}, the engine's rating is {engine.upper()}"


def _target_with_upside(r: _Report) -> Outcome:
    if r.fc.engine.get("price_target") is None:
        return "the engine formed no price target for this company"
    stated = r.fc.stated
    target, upside = stated.get("price_target"), stated.get("upside")
    if target is None or upside is None:
        missing = [n for n, v in (("price target", target), ("upside", upside)) if v is None]
        return 0.0, f"not stated: {', '.join(missing)}"
    wrong = r.named("price_target", "upside", "downside", good=False)
    wrong = [f for f in wrong if f.label not in _GOOD]
    if wrong:
        return 0.5, f"price target {target} and upside {upside} stated, but {_raws(wrong)} contradict the engine"
    agree = r.fc.agreement
    if agree.get("price_target") is False or agree.get("upside") is False:
        engine_target, engine_upside = r.fc.engine.get("price_target"), r.fc.engine.get("upside")
        truth = (
            f"{fmt_price(engine_target)} and {fmt_pct(engine_upside, signed=True)}"
            if isinstance(engine_target, float) and isinstance(engine_upside, float)
            else "different values"
        )
        return 0.5, f"price target {target} with upside {upside} stated, but the engine's are {truth}"
    return 1.0, f"price target {target} with upside {upside}, as the engine computes them"


def _rating_consistent(r: _Report) -> Outcome:
    check = next(c for c in r.fc.consistency if c.name == "rating_matches_bands")
    if check.status == "skip":
        return 0.0, f"cannot check the rating against the bands: {check.detail}"
    return float(check.status == "pass"), check.detail


_CATALYST_HEADERS = re.compile(r"catalyst|driver|drives|highlight|key points|investment case|why we|what would")


def _catalysts(r: _Report) -> Outcome:
    lines = set(r.section_lines(_CATALYST_HEADERS))
    specific = [i for i in r.bullets() if i in lines and r.good_figures_on(i)]
    need = 2
    if not lines:
        return 0.0, "no catalysts or drivers section"
    return _frac(len(specific), need), f"{len(specific)} catalysts / drivers backed by figures from the data"


_RISK_WORDS = re.compile(r"\brisks?\b|downside|\bbear\b|bear case|sensitivit|stress|worst|harshest")


def _downside(r: _Report) -> Outcome:
    need = 3 if r.family == "risk_assessment" else 1
    lines = [i for i in sorted(r.figures_per_line) if r.good_figures_on(i) and _RISK_WORDS.search(r.lines[i].lower())]
    return _frac(len(lines), need), f"{len(lines)} line(s) quantify downside or risk with figures ({need} expected)"


_LEVEL = re.compile(r"\b(?:low|medium|moderate|high|elevated)\b")


def _risk_ratings(r: _Report) -> Outcome:
    rated = [
        line
        for line in r.lines
        if _LEVEL.search(line.lower()) and ("rating" in line.lower() or line.lstrip().startswith("|"))
    ]
    need = 3
    return _frac(len(rated), need), f"{len(rated)} risks rated Low / Medium / High ({need} expected)"


def _value_creation(r: _Report) -> Outcome:
    for i in range(len(r.lines)):
        quantities = {f.quantity for f in r.good_figures_on(i)}
        if "roic" in quantities and "wacc" in quantities:
            return 1.0, "ROIC compared with the WACC, both matching the data"
    if r.named("roic") or r.named("wacc"):
        return 0.5, "ROIC or WACC stated, but not compared with each other"
    return 0.0, "returns on capital not compared with the cost of capital"


JUDGEMENT_WORDS = (
    "healthy", "weak", "strong", "solid", "thin", "modest", "moderate", "adequate", "elevated", "high", "low",
    "premium", "discount", "above", "below", "outpaced", "trailed", "value-creating", "expanded", "contracted",
    "improved", "deteriorated", "earned", "stretched",
)  # fmt: skip


def _judgements(r: _Report) -> Outcome:
    found = len(r.lexicon.get("judgement", ()))
    need = 3
    return _frac(found, need), f"{found} evaluative judgements (strong / weak, above / below, premium / discount)"


def _relative_positioning(r: _Report) -> Outcome:
    lines = [
        i
        for i, line in enumerate(r.lines)
        if ("median" in line.lower() or "peer" in line.lower()) and len(r.good_figures_on(i)) >= 2
    ]
    need = 3
    return _frac(
        len(lines), need
    ), f"{len(lines)} line(s) set the company's figures against its peers ({need} expected)"


_CONCLUSION = re.compile(r"takeaway|conclusion|bottom line|what it means|summary|our view|thesis|overall|verdict")


def _conclusion(r: _Report) -> Outcome:
    headed = [title for _, title, _ in r.headers if _CONCLUSION.search(title.lower())]
    if headed:
        return 1.0, f"conclusion drawn under '{headed[0]}'"
    if re.search(r"\boverall\b|\bin sum\b|\bwe conclude\b", r.lower):
        return 1.0, "conclusion drawn in the text"
    return 0.0, "no conclusion or takeaway"


CONNECTORS = (
    "so", "because", "therefore", "thus", "hence", "which supports", "which means", "which gives", "which limits",
    "which leaves", "as a result", "driven by", "implies", "implying", "means", "given", "since", "while",
    "whereas", "but",
)  # fmt: skip
_RATING_WORD = re.compile(r"\b(?:buy|hold|sell)\b")
_REASON = re.compile(r"threshold|band|upside|downside|below the current price|above the current price|implied return")


def _justified(lower: str) -> int:
    """Sentences that state a rating and the reason for it ("We rate X SELL: the target sits below the current
    price", "an implied return of +12.2%, which supports a HOLD rating")."""
    count = 0
    for line in lower.split("\n"):
        if ("buy" in line or "hold" in line or "sell" in line) and _RATING_WORD.search(line):
            count += sum(1 for s in line.split(". ") if _RATING_WORD.search(s) and _REASON.search(s))
    return count


def _coherent(r: _Report) -> Outcome:
    issues = r.incoherence
    if not issues:
        return 1.0, "no sentence contradicts another or the figures (equitune.data.coherence)"
    shown = "; ".join(f"line {i.line}: {i.message}" for i in issues[:3])
    return max(0.0, 1.0 - 0.25 * len(issues)), f"{len(issues)} contradiction(s): {shown}"


def _reasoning(r: _Report) -> Outcome:
    links = len(r.lexicon.get("connector", ()))
    justified = _justified(r.lower)
    need = 1
    return _frac(links + justified, need), (
        f"{links} reasoning links (so, because, which means, ...) and {justified} rating(s) justified in the "
        f"same sentence; at least {need} expected"
    )


# ----------------------------------------------------------------------------------------- technical depth


_INTRINSIC_FACTS = (
    "analysis.dcf.value_per_share",
    "analysis.excess_return.value_per_share",
    "analysis.dividend_discount.value_per_share",
)


def _sector_model(r: _Report) -> bool:
    """Whether the company is valued with a sector model (excess-return or dividend-discount), not a DCF."""
    return r.has_fact(_INTRINSIC_FACTS[1]) or r.has_fact(_INTRINSIC_FACTS[2])


def _dcf(r: _Report) -> Outcome:
    """The intrinsic value of the method the engine uses: the DCF, or for banks, insurers, utilities and REITs
    the excess-return or dividend-discount value."""
    present = [n for n in _INTRINSIC_FACTS if r.has_fact(n)]
    if not present:
        return "no DCF or sector-model value could be computed for this company"
    names = ("dcf_value", "sector_value")
    good = r.named(*names) or r.matching(*present, "analysis.target.dcf_value_per_share")
    wrong = [f for f in r.named(*names, good=False) if f.label not in _GOOD]
    label = "DCF" if present[0] == _INTRINSIC_FACTS[0] else "intrinsic"
    if wrong:
        return 0.3, f"{label} values contradict the engine: {_raws(wrong)}"
    if not good:
        return 0.0, f"no {label} value stated"
    return 1.0, f"{label} value stated ({good[0].raw})"


def _wacc(r: _Report) -> Outcome:
    if not r.has_fact("analysis.wacc.wacc"):
        return "the data has no WACC"
    # A sector model discounts at the cost of equity: stating it is stating the discount rate.
    names = ("wacc", "cost_of_equity") if _sector_model(r) else ("wacc",)
    good = r.named(*names)
    wrong = [f for f in r.named(*names, good=False) if f.label not in _GOOD]
    label = "discount rate" if _sector_model(r) else "WACC"
    if wrong:
        return 0.3, f"{label} figures contradict the engine: {_raws(wrong)}"
    if not good:
        return 0.0, f"no {label} stated"
    return 1.0, f"{label} stated ({good[0].raw})"


def _terminal(r: _Report) -> Outcome:
    if not r.has_fact("analysis.dcf.inputs.terminal_growth"):
        return "no DCF could be run for this company"
    good = r.named("terminal_growth", "terminal_value")
    wrong = [f for f in r.named("terminal_growth", "terminal_value", good=False) if f.label not in _GOOD]
    if wrong:
        return 0.3, f"terminal growth / value figures contradict the engine: {_raws(wrong)}"
    if not good:
        return 0.0, "no terminal growth or terminal value stated"
    return 1.0, f"terminal growth / value stated ({_raws(good, 2)})"


def _peers(r: _Report) -> list[str]:
    if r.context is not None:
        return [p.ticker for p in r.context.peers]
    return sorted({name.split(".")[1] for name in r.sheet.facts if name.startswith("peer.")})


@lru_cache(maxsize=4096)
def _ticker_pattern(tickers: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(t) for t in sorted(tickers, key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z0-9.])({alternatives})(?![A-Za-z0-9])")


def _comparables(r: _Report) -> Outcome:
    peers = _peers(r)
    if not peers:
        return "the data names no peers"
    named = sorted(set(_ticker_pattern(tuple(peers)).findall(r.text)), key=peers.index)
    multiples = {f.quantity for f in r.named("ev_ebitda", "pe", "ev_sales")}
    available = sum(f"industry.company.{m}" in r.sheet.facts for m in ("ev_ebitda", "pe", "ev_sales"))
    need = min(2, len(peers))
    earned = 0.5 * _frac(len(named), need) + 0.5 * _frac(len(multiples), min(2, max(1, available)))
    reason = (
        f"{len(named)} of {len(peers)} peers named ({', '.join(named[:6]) or 'none'}); {len(multiples)} peer multiples"
    )
    return earned, reason


def _sensitivity(r: _Report) -> Outcome:
    grids = (
        "analysis.dcf.sensitivity.values",
        "analysis.excess_return.sensitivity.values",
        "analysis.dividend_discount.sensitivity.values",
    )
    cells = r.matching(*[n for n in r.by_fact if n.startswith(grids)])
    bear = r.matching("analysis.scenarios[0].value_per_share")
    bull = r.matching("analysis.scenarios[2].value_per_share")
    has_grid = any(".sensitivity." in n for n in r.sheet.facts)
    has_scenarios = "analysis.scenarios[0].value_per_share" in r.sheet.facts
    if not has_grid and not has_scenarios:
        return "the data has neither a sensitivity grid nor scenario values"
    parts = []
    if len({c.raw for c in cells}) >= 3:
        parts.append(f"{len({c.raw for c in cells})} sensitivity-grid values")
    if bear and bull:
        parts.append(f"bear {bear[0].raw} and bull {bull[0].raw} scenario values")
    if parts:
        return 1.0, "; ".join(parts)
    if bear or bull or cells:
        return 0.5, "only one scenario value or a single sensitivity value stated"
    return 0.0, "no sensitivity grid or bull / bear scenario values"


def _scenario_drivers(r: _Report) -> Outcome:
    if "analysis.scenarios[0].value_per_share" not in r.sheet.facts:
        return "the data has no scenario values"
    drivers = {
        f.quantity
        for f in r.named("revenue_growth", "growth", "fcf_margin", "wacc")
        if ".scenarios[" in "".join(f.facts)
    }
    need = 3
    return _frac(len(drivers), need), f"{len(drivers)} scenario assumptions stated (growth, FCF margin, WACC)"


# Words that show sector knowledge, per GICS sector (matched on word boundaries in lower case).
SECTOR_TERMS: dict[str, tuple[str, ...]] = {
    "Communication Services": (
        "advertising", "advertisers", "subscribers", "subscriber", "subscription", "churn", "streaming", "content",
        "spectrum", "broadband", "wireless", "audience", "audiences", "engagement", "net-neutrality", "antitrust",
        "privacy", "ad targeting", "arpu", "bundles", "carriers", "5g", "fiber", "copper", "auctions", "networks",
    ),
    "Consumer Discretionary": (
        "consumer spending", "discretionary", "e-commerce", "omnichannel", "same-store", "comparable-store",
        "traffic", "housing", "durable", "brand", "unit growth", "franchise", "minimum-wage", "wages", "tariffs",
        "freight", "marketplace", "fulfilment", "fulfillment", "consumer confidence", "restaurants", "restaurant",
        "retailers", "labour", "food-safety",
    ),
    "Consumer Staples": (
        "defensive", "private label", "private labels", "volumes", "price and mix", "commodity", "packaging",
        "input costs", "trade down", "membership", "brands", "sugar taxes", "labelling", "ingredient",
        "recycling", "merchants", "categories", "own brands", "tariffs", "food-safety",
    ),
    "Energy": (
        "oil", "gas", "crude", "refining", "refiners", "crack spreads", "commodity prices", "upstream",
        "downstream", "integrated", "capital discipline", "energy transition", "production", "reserves",
        "methane", "carbon", "permitting", "renewable-fuel", "emissions", "barrels", "lng", "refined-product",
    ),
    "Financials": (
        "payment", "payments", "network effects", "transaction volumes", "interchange", "cross-border",
        "exchanges", "trading activity", "clearing", "regulatory moats", "fintech", "rate sensitivity", "float",
        "capital and conduct", "credit", "deposits", "cftc", "ratings", "index", "licensing", "consumer-protection",
        "issuance", "market structure",
    ),
    "Health Care": (
        "patent", "patents", "exclusivity", "pipeline", "pipelines", "fda", "approval", "approvals",
        "drug-pricing", "drug", "drugs", "medicare", "biosimilar", "generic", "clinical", "readouts", "payer",
        "payers", "therapeutic", "research", "inflation reduction act", "reimbursement", "patent expiries",
    ),
    "Industrials": (
        "backlog", "backlogs", "defense", "defence", "aerospace", "government budgets", "appropriations",
        "supply chains", "programmes", "programs", "fixed-price", "freight", "railroads", "operating-ratio",
        "industrial production", "order books", "contracts", "surface transportation board", "export controls",
        "safety", "tariffs", "deliveries",
    ),
    "Information Technology": (
        "ai", "semiconductor", "semiconductors", "chip", "chips", "data centres", "data centers", "accelerators",
        "software", "subscription", "cloud", "installed bases", "ecosystems", "switching costs",
        "replacement cycles", "hardware", "export controls", "enterprise it", "licences", "licenses", "upgrade",
        "inventory", "app-store", "digital markets act", "devices", "product cycles", "technology spending",
    ),
    "Materials": (
        "commodity", "fertilisers", "fertilizers", "chemicals", "industrial gases", "coatings", "raw-material",
        "feedstock", "energy costs", "construction", "housing", "automotive", "pricing power",
        "long-term contracts", "agricultural", "cost curve", "chemical-safety", "environmental permits",
        "trade duties", "tariffs", "industrial cycle",
    ),
    "Real Estate": (
        "reit", "reits", "cap rates", "capitalisation rates", "occupancy", "leasing", "rent", "rents", "tenants",
        "tenant", "leases", "escalators", "tower", "towers", "carriers", "ffo", "nav", "distribution requirement",
        "zoning", "property values", "store traffic", "landlords", "rental income",
    ),
    "Utilities": (
        "regulated", "rate base", "rate cases", "allowed returns", "regulators", "grid", "renewables",
        "load growth", "electrification", "data-centre", "bond proxies", "decarbonisation", "decarbonization",
        "wildfire", "storm", "transmission", "generation", "regulatory lag", "cost recovery", "utility",
    ),
}  # fmt: skip


def _sector(r: _Report) -> Outcome:
    sector = r.context.company.sector if r.context is not None else None
    if sector is None or sector not in SECTOR_TERMS:
        return "the company's sector is not known" if sector is None else f"no term table for sector {sector}"
    found = sorted({t.replace("\x00", " ") for t in r.lexicon.get(f"sector:{sector}", ())})
    need = 2
    return _frac(len(found), need), f"{len(found)} {sector} terms ({', '.join(found[:6]) or 'none'})"


# What stating the method looks like, per task (each a pattern; two expected).
METHODOLOGY: dict[str, tuple[tuple[str, str], ...]] = {
    "executive_summary": (
        ("blended target", r"blend|\d+% dcf|weighted"),
        ("DCF", r"\bdcf\b|discounted cash flow"),
        ("comparables", r"comparables|peer multiples|multiples"),
        ("estimates", r"estimate|fy\d{4}e"),
    ),
    "financial_analysis": (
        ("ratio definitions", r"over net income|over interest expense|/net income\)|ebit/interest|less cash"),
        ("year-on-year comparison", r"year on year|year-on-year|against fy\d{4}|from \$"),
        ("cost of capital", r"\bwacc\b|cost of capital"),
    ),
    "valuation": (
        ("CAPM", r"\bcapm\b|cost of equity"),
        ("terminal value method", r"gordon|perpetuity|terminal growth|justified p/b|dividend-discount"),
        ("blend", r"blend|\d+% dcf|\d+% excess-return|\d+% dividend-discount|weight"),
        ("peer median", r"peer median|peer-median"),
    ),
    "investment_thesis": (
        ("scenario assumptions", r"assum|rests on"),
        ("scenarios", r"\bbull\b.*\bbear\b|\bbear\b.*\bbull\b"),
        ("target method", r"\bdcf\b|comparables|blend"),
    ),
    "risk_assessment": (
        ("bear case", r"bear case"),
        ("sensitivity", r"sensitivity|grid"),
        ("risk ratings", r"rating: (?:low|medium|high)|\| (?:low|medium|high) \|"),
    ),
    "industry_analysis": (
        ("peer median", r"peer median"),
        ("ranking", r"\brank|largest|of (?:three|four|five|six|seven)\b"),
        ("peer selection", r"sub-industry|sector|peer group|peers"),
    ),
}
_METHOD_PATTERNS = {
    family: [(name, re.compile(p, re.DOTALL)) for name, p in items] for family, items in METHODOLOGY.items()
}


def _methodology(r: _Report) -> Outcome:
    patterns = _METHOD_PATTERNS.get(r.family, [])
    found = [name for name, pattern in patterns if pattern.search(r.lower)]
    need = 2
    return _frac(len(found), need), f"method stated: {', '.join(found) or 'nothing'}"


_RATIO_QUANTITIES = (
    "gross_margin",
    "operating_margin",
    "ebitda_margin",
    "net_margin",
    "fcf_margin",
    "roic",
    "roe",
    "roa",
    "revenue_growth",
    "eps_growth",
    "ebitda_growth",
    "net_debt_to_ebitda",
    "interest_coverage",
    "fcf_conversion",
    "ev_ebitda",
    "pe",
    "ev_sales",
)


def _ratio_analysis(r: _Report) -> Outcome:
    used = sorted({f.quantity for f in r.named(*_RATIO_QUANTITIES) if f.quantity})
    need = 6
    return _frac(len(used), need), f"{len(used)} ratios stated and correct ({', '.join(used[:8]) or 'none'})"


def _multiples(r: _Report) -> Outcome:
    available = sum(f"industry.company.{m}" in r.sheet.facts for m in ("ev_ebitda", "pe", "ev_sales"))
    if not available:
        return "the data has no valuation multiples for this company"
    used = sorted({f.quantity for f in r.named("ev_ebitda", "pe", "ev_sales") if f.quantity})
    need = min(2, available)
    return _frac(len(used), need), f"{len(used)} valuation multiples stated ({', '.join(used) or 'none'})"


# ----------------------------------------------------------------------------------------- structure quality


def _headers(r: _Report) -> Outcome:
    titles = [h for h in r.headers if h[0] == 1]
    sections = [h for h in r.headers if h[0] >= 2]
    earned = 0.4 * bool(titles) + 0.6 * _frac(len(sections), 3)
    return earned, f"{'a' if titles else 'no'} title, {len(sections)} section headers"


def _bullets(r: _Report) -> Outcome:
    bullets, rows = len(r.bullets()), r.table_rows()
    ok = bullets >= 3 or rows >= 3
    return (1.0 if ok else _frac(bullets, 3)), f"{bullets} bullet points, {rows} table rows"


# The sections each task's report is expected to carry: (key, pattern on the header), matched in this order, each
# header used once (so "DCF Sensitivity" counts as the sensitivity section, not as the DCF one). The keys are those
# of the family templates' header tables; the patterns accept their variants and the usual synonyms.
SECTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "executive_summary": (
        ("estimates", r"estimate|financial summary|key financials|forecast"),
        ("rating", r"rating|recommendation|price target"),
        ("key points", r"key points|highlight|drive|catalyst|investment case"),
        ("summary", r"summary|view|thesis|takeaway|bottom line|conclusion"),
    ),
    "financial_analysis": (
        ("ratios", r"\bratios?\b|key metrics"),
        ("cash flow", r"cash"),
        ("growth", r"growth"),
        ("leverage", r"leverage|balance.sheet|liquidity|solvency"),
        ("returns", r"return|efficiency"),
        ("profitability", r"profitab|margin"),
        ("takeaways", r"takeaway|summary|snapshot|overview|conclusion|highlight"),
    ),
    "valuation": (
        ("sensitivity", r"sensitivit"),
        ("assumptions", r"assumption|input|driver"),
        ("DCF", r"\bdcf\b|discounted cash flow|enterprise value|intrinsic|value per share"),
        ("comparables", r"compar|relative valuation|peer|multiple"),
        ("price target", r"target|valuation conclusion|rating"),
        ("summary", r"summary|bottom line|conclusion|overview|our view"),
    ),
    "investment_thesis": (
        ("scenario table", r"scenario (?:summary|analysis|values|table)|^scenarios$"),
        ("bull case", r"bull|upside scenario"),
        ("bear case", r"bear|downside scenario"),
        ("base case", r"\bbase\b"),
        ("catalysts", r"catalyst"),
        ("thesis", r"thesis|summary|our view|investment case"),
    ),
    "risk_assessment": (
        ("regulatory risk", r"regulat|policy"),
        ("downside", r"downside|\bbear\b|sensitivit"),
        ("financial risk", r"financial|balance.sheet|leverage|credit"),
        ("business risk", r"business|operating"),
        ("risk summary", r"summary|matrix|overview|overall"),
    ),
    "industry_analysis": (
        ("benchmarking", r"benchmark|operating metrics|metrics vs|scorecard"),
        ("competitive position", r"competitive position|ranks|positioning|market share|\bwhere\b"),
        ("relative valuation", r"valuation|multiples"),
        ("industry dynamics", r"dynamics|backdrop|drivers|industry|structure"),
        ("takeaway", r"takeaway|what it means|conclusion|bottom line|summary|outlook"),
        ("peer set", r"peer|comparable|compare against|competitors"),
    ),
}
_SECTION_PATTERNS = {family: [(key, re.compile(p)) for key, p in items] for family, items in SECTIONS.items()}


def sections_found(text: str, family: str) -> dict[str, str | None]:
    """Each expected section of ``family`` -> the header that provides it (None when missing)."""
    headers = [
        m.group(2).strip("* ").lower() for m in map(_HEADER.match, text.split("\n")) if m and len(m.group(1)) >= 2
    ]
    used: set[int] = set()
    found: dict[str, str | None] = {}
    for key, pattern in _SECTION_PATTERNS[family]:
        found[key] = None
        for k, title in enumerate(headers):
            if k not in used and pattern.search(title):
                used.add(k)
                found[key] = title
                break
    return found


def _sections(r: _Report) -> Outcome:
    found = sections_found(r.text, r.family)
    missing = [k for k, v in found.items() if v is None]
    present = len(found) - len(missing)
    reason = f"{present} of {len(found)} expected sections" + (f"; missing: {', '.join(missing)}" if missing else "")
    return _frac(present, len(found)), reason


# Sensible length of each task's report in characters (the family templates write from about the middle of
# each band; a model's report may be terser or fuller within it).
LENGTH_BANDS: dict[str, tuple[int, int]] = {
    "executive_summary": (700, 3500),
    "financial_analysis": (2000, 9000),
    "valuation": (2500, 10000),
    "investment_thesis": (1500, 7000),
    "risk_assessment": (1700, 8000),
    "industry_analysis": (2000, 9000),
}


def _length(r: _Report) -> Outcome:
    low, high = LENGTH_BANDS[r.family]
    n = len(r.text.strip())
    if low <= n <= high:
        return 1.0, f"{n} characters, within {low}-{high}"
    if n < low:
        return _frac(n, low), f"{n} characters, short of the {low}-{high} expected"
    return _frac(high, n), f"{n} characters, longer than the {low}-{high} expected"


_DISCLAIMER = re.compile(
    r"not (?:\w+ ){0,2}(?:investment|financial) advice|for informational purposes|informational purposes only|"
    r"not (?:a )?(?:solicitation|recommendation to (?:buy|sell))"
)


def _disclaimer(r: _Report) -> Outcome:
    last = next((line for line in reversed(r.lines) if line.strip()), "")
    if _DISCLAIMER.search(last.lower()):
        return 1.0, "the last line says it is not investment advice"
    if _DISCLAIMER.search(r.lower):
        return 0.5, "a disclaimer is present but is not the last line"
    return 0.0, "no disclaimer that this is not investment advice"


# Readability (``equitune.evaluate.readability``): the task families' reference answers repeat at most 7% of
# their word 5-grams and no line, restate no instruction and copy at most 8% of their words from the DATA block.
REPETITION_FREE = 0.10  # full points up to this repetition
REPETITION_NONE = 0.30  # no points from this repetition
COPIED_FREE = 0.15  # full points up to this share of words copied from the DATA block
COPIED_NONE = 0.50


def _no_repetition(r: _Report) -> Outcome:
    rd = r.readability
    if not rd.ngrams:
        return "too short to measure repetition"
    earned = 1.0 - _frac(rd.repetition - REPETITION_FREE, REPETITION_NONE - REPETITION_FREE)
    return earned, (
        f"{rd.repeated_lines} of {rd.lines} lines repeat an earlier line ({rd.repeated_line_share:.0%}); "
        f"{rd.repeated_ngram_share:.0%} of word {NGRAM}-grams repeat"
    )


def _own_words(r: _Report) -> Outcome:
    rd = r.readability
    if rd.restates_instruction:
        return 0.0, f"restates its instruction ({rd.restated_words} words: '{rd.restated}')"
    earned = 1.0 - _frac(rd.copied_share - COPIED_FREE, COPIED_NONE - COPIED_FREE)
    return earned, f"{rd.copied_share:.0%} of its words are DATA lines copied whole; the instruction is not restated"


def _figures_in_sentences(r: _Report) -> Outcome:
    rd = r.readability
    if not r.fc.figures:
        return "no figures"
    if not rd.bare_figures:
        return 1.0, "every figure is named or sits in a sentence"
    shown = "; ".join(f"'{line[:60]}'" for line in rd.bare_examples)
    return 1.0 - _frac(rd.bare_figures, 3), f"{rd.bare_figures} figure(s) with no sentence or name around them: {shown}"


# The words the rubric looks for (financial terms, judgements, reasoning links, sector terms), found in one pass.
_LEXICON: dict[str, set[str]] = {}


def _lexicon_add(tag: str, words: tuple[str, ...]) -> None:
    for word in words:
        _LEXICON.setdefault(normalise_keyword(word), set()).add(tag)


for _name, _spellings in _TERMS.items():
    _lexicon_add(f"term:{_name}", _spellings)
_lexicon_add("judgement", JUDGEMENT_WORDS)
_lexicon_add("connector", CONNECTORS)
for _sector_name, _terms in SECTOR_TERMS.items():
    _lexicon_add(f"sector:{_sector_name}", _terms)
_LEXICON_FIRST = re.escape("".join(sorted({w[0] for w in _LEXICON})))
_LEXICON_RX = re.compile(f"(?=[{_LEXICON_FIRST}])(?<![a-z0-9])" + trie_pattern(sorted(_LEXICON)) + "(?![a-z0-9])")


def lexicon(lower: str) -> dict[str, list[str]]:
    """Tag -> every occurrence (normalised) in ``lower`` of the words of that tag."""
    found: dict[str, list[str]] = {}
    spellings = _SPELLINGS
    for match in _LEXICON_RX.finditer(lower):
        spelled = match.group(0)
        word = spellings.get(spelled)
        if word is None:
            if len(spellings) >= 10_000:
                spellings.clear()
            word = spellings[spelled] = normalise_keyword(spelled)
        for tag in _LEXICON.get(word, ()):
            if tag in found:
                found[tag].append(word)
            else:
                found[tag] = [word]
    return found


_SPELLINGS: dict[str, str] = {}


# ------------------------------------------------------------------------------------------ the check table

_ALL = frozenset(FAMILY_IDS)
_RATED = frozenset({"executive_summary", "valuation", "investment_thesis", "risk_assessment"})


@dataclass(frozen=True)
class CheckSpec:
    """A rubric check: its category, name, points, the task families it applies to and what it says."""

    category: str
    name: str
    points: float
    applies_to: frozenset[str]
    run: Callable[[_Report], Outcome]
    description: str
    pass_at: float = 0.999  # the share of its points a check must earn to pass
    factor: bool = False  # multiplies the category's score by the share it earns instead of adding points


CHECKS: tuple[CheckSpec, ...] = (
    # Financial accuracy: the fact-check.
    CheckSpec("financial_accuracy", "figures_supported", 40, _ALL, _figures_supported,
              "share of figures that match the company's data or the engine's outputs", pass_at=0.98),
    CheckSpec("financial_accuracy", "derived_figures_correct", 25, _ALL, _derived_correct,
              "derived figures quoted and none contradicting the engine (-10 points each)"),
    CheckSpec("financial_accuracy", "no_unsupported_figures", 15, _ALL, _no_unsupported,
              "no figure that matches nothing in the data (-5 points each)"),
    CheckSpec("financial_accuracy", "internal_consistency", 10, _ALL, _consistency,
              "stated upside = stated target / price - 1; stated WACC above stated terminal growth"),
    CheckSpec("financial_accuracy", "key_facts", 10, _ALL, _key_facts,
              "the task's key facts stated (see factcheck.KEY_FACTS)", pass_at=0.8),
    CheckSpec("financial_accuracy", "terminology", 5, _ALL, _terminology, "correct financial terminology"),
    CheckSpec("financial_accuracy", "calculations", 5, _ALL, _calculations, "computed figures presented"),
    # Investment reasoning.
    CheckSpec("investment_reasoning", "explicit_rating", 20, _RATED, _explicit_rating, "a Buy / Hold / Sell rating"),
    CheckSpec("investment_reasoning", "rating_matches_engine", 15, _RATED, _rating_matches_engine,
              "the rating is the engine's"),
    CheckSpec("investment_reasoning", "target_with_upside", 20, _RATED, _target_with_upside,
              "a price target with the upside to it, both right"),
    CheckSpec("investment_reasoning", "rating_consistent_with_upside", 20, _RATED, _rating_consistent,
              "the rating is the one the configured bands give for the stated upside"),
    CheckSpec("investment_reasoning", "catalysts", 15, frozenset({"executive_summary", "investment_thesis"}),
              _catalysts, "specific catalysts or drivers, each backed by a figure"),
    CheckSpec("investment_reasoning", "risk_and_downside", 15, _RATED, _downside,
              "risks and downside quantified with figures"),
    CheckSpec("investment_reasoning", "risk_ratings", 15, frozenset({"risk_assessment"}), _risk_ratings,
              "each risk rated Low / Medium / High"),
    CheckSpec("investment_reasoning", "value_creation", 20, frozenset({"financial_analysis"}), _value_creation,
              "returns on capital set against the cost of capital"),
    CheckSpec("investment_reasoning", "relative_positioning", 20, frozenset({"industry_analysis"}),
              _relative_positioning, "the company's figures set against the peer median"),
    CheckSpec("investment_reasoning", "judgements", 15, frozenset({"financial_analysis", "industry_analysis"}),
              _judgements, "figures read as strong or weak, above or below"),
    CheckSpec("investment_reasoning", "conclusion", 10, frozenset({"financial_analysis", "industry_analysis"}),
              _conclusion, "a conclusion or takeaway"),
    CheckSpec("investment_reasoning", "coherent", 1, _ALL, _coherent,
              "no self-comparison, one-source blend, direction against the numbers, rating against its bands "
              "(factor 1 - 0.25 per contradiction)", factor=True),
    CheckSpec("investment_reasoning", "reasoning_links", 10, _ALL, _reasoning,
              "explicit reasoning (so, because, which means)"),
    # Technical depth.
    CheckSpec("technical_depth", "dcf", 20, frozenset({"valuation", "executive_summary", "risk_assessment"}), _dcf,
              "a DCF value, right"),
    CheckSpec("technical_depth", "wacc", 15,
              frozenset({"valuation", "financial_analysis", "investment_thesis", "risk_assessment"}), _wacc,
              "the WACC, right"),
    CheckSpec("technical_depth", "terminal_value", 10, frozenset({"valuation", "risk_assessment"}), _terminal,
              "terminal growth or terminal value, right"),
    CheckSpec("technical_depth", "comparables", 15, frozenset({"valuation", "industry_analysis"}), _comparables,
              "peers named (tickers from the data) with their multiples"),
    CheckSpec("technical_depth", "sensitivity", 15,
              frozenset({"valuation", "risk_assessment", "investment_thesis", "executive_summary"}), _sensitivity,
              "a WACC x terminal-growth grid or bull and bear values"),
    CheckSpec("technical_depth", "scenario_drivers", 15, frozenset({"investment_thesis"}), _scenario_drivers,
              "the assumptions behind each scenario (growth, FCF margin, WACC)"),
    CheckSpec("technical_depth", "sector_knowledge", 10, frozenset({"industry_analysis", "risk_assessment"}),
              _sector, "terms specific to the company's GICS sector (SECTOR_TERMS)"),
    CheckSpec("technical_depth", "ratio_analysis", 20, frozenset({"financial_analysis", "industry_analysis"}),
              _ratio_analysis, "ratios (margins, returns, leverage, growth, multiples) stated and right"),
    CheckSpec("technical_depth", "multiples", 10, frozenset({"valuation", "industry_analysis"}), _multiples,
              "valuation multiples stated and right"),
    CheckSpec("technical_depth", "methodology", 10, _ALL, _methodology, "the method stated (METHODOLOGY)"),
    # Structure quality.
    CheckSpec("structure_quality", "headers", 20, _ALL, _headers, "a title and at least three section headers"),
    CheckSpec("structure_quality", "bullets_or_tables", 15, _ALL, _bullets, "bullet points or tables"),
    CheckSpec("structure_quality", "sections", 35, _ALL, _sections, "the task's institutional sections (SECTIONS)"),
    CheckSpec("structure_quality", "length", 15, _ALL, _length, "length within the task's band (LENGTH_BANDS)"),
    CheckSpec("structure_quality", "disclaimer", 15, _ALL, _disclaimer, "last line: not investment advice"),
    # Readability factors: each multiplies the structure score by the share it earns (a flaw only costs).
    CheckSpec("structure_quality", "no_repetition", 1, _ALL, _no_repetition,
              "no repeated lines or phrases (factor 1 up to 10% repetition, 0 from 30%)", factor=True),
    CheckSpec("structure_quality", "own_words", 1, _ALL, _own_words,
              "the instruction not restated, the DATA block not pasted back (factor 0 / 1 - excess copied share)",
              factor=True),
    CheckSpec("structure_quality", "figures_in_sentences", 1, _ALL, _figures_in_sentences,
              "every figure named or in a sentence (factor 1 - bare figures / 3)", factor=True),
)  # fmt: skip
APPLIES_TO: dict[str, frozenset[str]] = {spec.name: spec.applies_to for spec in CHECKS}


# ------------------------------------------------------------------------------------------------- scoring


def score_report(
    text: str,
    task: str,
    context_or_facts: ExampleContext | FactSheet,
    weights: RubricWeights = DEFAULT_WEIGHTS,
    *,
    prompt: str = "",
    bands: RatingBands | None = None,
) -> RubricScore:
    """Score ``text``, a report of task family ``task``, against ``context_or_facts`` (an ``ExampleContext``:
    its facts, peers, sector, rating bands; or a bare ``FactSheet``, when the checks that need the context do
    not apply). Figures the ``prompt`` gave count as grounded; ``bands`` overrides the rating bands."""
    if task not in FAMILY_IDS:
        raise ValueError(f"unknown task '{task}'; valid: {', '.join(FAMILY_IDS)}")
    fc = fact_check(text, context_or_facts, family=task, prompt=prompt, bands=bands)
    sheet = context_or_facts if isinstance(context_or_facts, FactSheet) else context_or_facts.facts
    context = None if isinstance(context_or_facts, FactSheet) else context_or_facts
    report = _Report.build(text, task, fc, sheet, context, prompt)
    empty = not text.strip()
    categories = []
    total = 0.0
    weight_of = weights.as_dict()
    for name in CATEGORIES:
        checks: list[Check] = []
        skipped: list[Skipped] = []
        for spec in CHECKS:
            if spec.category != name:
                continue
            if task not in spec.applies_to:
                skipped.append(Skipped(name, spec.name, f"does not apply to {task}"))
                continue
            outcome = (0.0, "empty report") if empty else spec.run(report)
            if isinstance(outcome, str):
                skipped.append(Skipped(name, spec.name, outcome))
                continue
            fraction, reason = outcome
            earned = spec.points * max(0.0, min(1.0, fraction))
            checks.append(Check(name, spec.name, spec.points, earned, fraction >= spec.pass_at, reason, spec.factor))
        additive = [c for c in checks if not c.factor]
        possible = sum(c.points for c in additive)
        score = 100.0 * sum(c.earned for c in additive) / possible if possible else 0.0
        for c in checks:
            if c.factor:
                score *= c.earned / c.points
        categories.append(CategoryScore(name, weight_of[name], score, checks, skipped))
        total += weight_of[name] * score
    caps = caps_for(fc, report.readability)
    score = min([total, *(c.limit for c in caps)])
    tier = tier_for(score)
    return RubricScore(task, score, tier.name, tier.meaning, categories, fc, total, caps, report.readability)


# Numbers decide whether a report can be used: a well-formatted report with wrong figures must not score as a good
# one. ``CAPS``: (name, ceiling, share of figures) - a figure that names a quantity (WACC, target, revenue) and
# contradicts the data caps the score at 79 (Good at best: not production ready); when more than 10% of the
# figures are wrong or unsupported, at 64; more than 25%, at 49 (Poor).
CAPS: tuple[tuple[str, float, float], ...] = (
    ("contradicts_data", 79.0, 0.0),
    ("many_wrong_figures", 64.0, 0.10),
    ("mostly_wrong_figures", 49.0, 0.25),
)
# Text a reader would throw away lands in Poor whatever its figures: figures stated for quantities in units they
# never have, two or more of them ("cost of equity $93.7B", "ROIC: $50.57"), repetition over 20% (the reference
# answers stay under 8%), or more than 40% of its words pasted from the DATA block.
REPETITIVE = 0.20
READABILITY_CAPS: tuple[tuple[str, float, float], ...] = (
    ("misbound_figures", 49.0, 2),
    ("repetitive", 49.0, REPETITIVE),
    ("pasted_data", 49.0, 0.40),
)


def caps_for(fc: FactCheckResult, rd: Readability | None = None) -> list[Cap]:
    """The caps (``CAPS``, ``READABILITY_CAPS``) that the fact-check's errors and the text's readability impose."""
    found = _figure_caps(fc)
    misbound = [f for f in fc.figures if f.misbound]
    for name, limit, threshold in READABILITY_CAPS:
        if name == "misbound_figures":
            if len(misbound) >= threshold:
                found.append(
                    Cap(
                        name,
                        limit,
                        f"{len(misbound)} figures stated in a unit their quantity never has: "
                        + "; ".join(f"{f.raw} as {f.quantity}" for f in misbound[:3]),
                    )
                )
        elif rd is not None and name == "repetitive" and rd.repetition > threshold:
            found.append(Cap(name, limit, f"repetition {rd.repetition:.0%} (over {threshold:.0%})"))
        elif rd is not None and name == "pasted_data" and rd.copied_share > threshold:
            reason = f"{rd.copied_share:.0%} of the words are DATA lines copied whole (over {threshold:.0%})"
            found.append(Cap(name, limit, reason))
    return found


def _figure_caps(fc: FactCheckResult) -> list[Cap]:
    contradicting = [f for f in fc.figures if f.label == "derived_wrong" or (f.label == "unsupported" and f.quantity)]
    bad = fc.count("derived_wrong") + fc.count("unsupported")
    share = bad / len(fc.figures) if fc.figures else 0.0
    found = []
    for name, limit, threshold in CAPS:
        if name == "contradicts_data":
            if contradicting:
                found.append(
                    Cap(
                        name,
                        limit,
                        f"{len(contradicting)} figure(s) contradict the data for the quantity "
                        f"they name: {_raws(contradicting)}",
                    )
                )
        elif share > threshold:
            found.append(
                Cap(
                    name,
                    limit,
                    f"{bad} of {len(fc.figures)} figures ({share:.0%}) are wrong or unsupported (over {threshold:.0%})",
                )
            )
    return found
