"""Finding every figure in a piece of research text.

``extract_figures`` recognises currency (``$391.0B``, ``$1,234 million``, ``-$2.1bn``, ``$(3.4)B``),
percentages (``12.3%``, ``(2.1)%``, ``+13.1%``), basis points (``100 bp``), multiples (``12.3x``,
``12.3×``), fiscal-year labels (``FY2024``, ``FY25E``, ``2025E``), dates (``2024-12-31``) and bare numbers,
each with the precision it was written to, so a checker can decide whether it matches a fact "within
rounding". Everything ``equitune.formatting`` writes is parsed back exactly.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal

FigureKind = Literal["currency", "percent", "bp", "multiple", "year", "date", "number", "count"]

_SCALES: dict[str, float] = {
    "k": 1e3,
    "thousand": 1e3,
    "m": 1e6,
    "mm": 1e6,
    "mn": 1e6,
    "million": 1e6,
    "millions": 1e6,
    "b": 1e9,
    "bn": 1e9,
    "billion": 1e9,
    "billions": 1e9,
    "t": 1e12,
    "tn": 1e12,
    "trillion": 1e12,
}

_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+"
_SCALE = r"(?:thousand|millions?|billions?|trillion|mm|mn|bn|tn|[kmbt])(?![a-z])"
_PATTERN = re.compile(
    rf"""
    (?=[\d$FU(+\-−.])  # cheap first-character filter: every alternative starts with one of these
    (?:
    (?P<date>\b\d{{4}}-\d{{2}}-\d{{2}}\b)
  | (?P<fy>\bFY\s?(?P<fy_year>\d{{4}}|\d{{2}})(?P<fy_est>[EA])?\b)
  | (?P<est>\b(?P<est_year>(?:19|20)\d{{2}})(?P<est_flag>[EA])\b)
  | (?P<currency>
        (?P<cur_sign>[-−+])?\s?(?:US)?\$\s?(?P<cur_paren>\()?(?P<cur_num>{_NUM})(?(cur_paren)\))
        (?:\s?(?P<cur_scale>{_SCALE}))?
    )
  | (?<![A-Za-z0-9_.,])(?P<generic>
        (?P<gen_paren>\()?(?P<gen_sign>[-−+])?(?P<gen_num>{_NUM})\)?
        (?:
            \s?(?P<pct>%)
          | \s?(?P<bp>bps?|basis\ points?)\b
          | (?P<mult>[x×])(?![a-z0-9])
          | \s?(?P<gen_scale>{_SCALE})
        )?
    )
    )
    """,
    re.VERBOSE | re.IGNORECASE,
)


@dataclass(frozen=True)
class Figure:
    """One figure found in text: its value in base units and how precisely it was written.

    Base units: currency in whole currency units (``$12.3B`` -> 12.3e9), percentages and basis points as
    fractions (``12.3%`` -> 0.123, ``100 bp`` -> 0.01), multiples as ratios, years as the year number.
    ``tolerance`` is half a unit of the last digit written, in base units.
    """

    raw: str
    kind: FigureKind
    value: float
    tolerance: float
    start: int
    end: int
    estimate: bool = False

    def matches(self, fact: float, slack: float = 1e-9) -> bool:
        """Whether ``fact`` (in base units) rounds to this figure as written."""
        return abs(self.value - fact) <= self.tolerance * (1 + 1e-6) + slack * max(1.0, abs(fact))


def _number(text: str) -> tuple[float, int]:
    cleaned = text.replace(",", "")
    decimals = len(cleaned.split(".")[1]) if "." in cleaned else 0
    return float(cleaned), decimals


def _half_unit(decimals: int) -> float:
    return 0.5 * 10.0 ** (-decimals)


# Tokens that contain digits but are names, not figures: filings, index names, quarters, ordinals, horizons.
_NOT_FIGURES = re.compile(
    r"""\b10-[KQ]\b|\b8-K\b|\bS&P\s?\d+\b|\bRussell\s\d+\b|\b[QH][1-4]\b|\b\d+(?:st|nd|rd|th)\b
      |\b\d+-(?:year|month|week|day|quarter|K)s?\b|\b(?:Tier|Level|Phase|Stage|Class)\s\d\b|\b\d+G\b""",
    re.VERBOSE | re.IGNORECASE,
)


def extract_figures(text: str) -> list[Figure]:
    """Every figure in ``text`` in order of appearance (see the module docstring for the forms).

    Digits inside names (10-K, S&P 500, Q3, 12-month, 5G) are not figures and are skipped."""
    skipped = [(m.start(), m.end()) for m in _NOT_FIGURES.finditer(text)]
    figures: list[Figure] = []
    for m in _PATTERN.finditer(text):
        start, end = m.start(), m.end()
        if any(s < end and start < e for s, e in skipped):
            continue
        raw = m.group(0).strip()
        if m.group("date"):
            try:
                ordinal = float(dt.date.fromisoformat(m.group("date")).toordinal())
            except ValueError:  # not a calendar date (2024-13-45): keep it, as an unmatched number
                figures.append(Figure(raw, "number", float(m.group("date")[:4]), 0.0, start, end))
                continue
            figures.append(Figure(raw, "date", ordinal, 0.0, start, end))
        elif m.group("fy"):
            year = int(m.group("fy_year"))
            year = year + 2000 if year < 100 else year
            estimate = (m.group("fy_est") or "").upper() == "E"
            figures.append(Figure(raw, "year", float(year), 0.0, start, end, estimate))
        elif m.group("est"):
            estimate = m.group("est_flag").upper() == "E"
            figures.append(Figure(raw, "year", float(m.group("est_year")), 0.0, start, end, estimate))
        elif m.group("currency"):
            value, decimals = _number(m.group("cur_num"))
            scale = _SCALES[m.group("cur_scale").lower()] if m.group("cur_scale") else 1.0
            negative = bool(m.group("cur_paren")) or (m.group("cur_sign") or "") in {"-", "\u2212"}
            signed = -value * scale if negative else value * scale
            figures.append(Figure(raw, "currency", signed, _half_unit(decimals) * scale, start, end))
        else:
            figures.append(_generic(m, raw, start, end))
    return figures


def _generic(m: re.Match[str], raw: str, start: int, end: int) -> Figure:
    value, decimals = _number(m.group("gen_num"))
    # "(2.1)%" and "(2.1)" are accounting negatives; "(2.1% of sales" is an opening bracket.
    parenthesised = bool(m.group("gen_paren")) and ")" in m.group("generic")
    negative = parenthesised or (m.group("gen_sign") or "") in {"-", "\u2212"}
    if m.group("gen_paren") and not parenthesised:
        raw, start = raw[1:], start + 1
    sign = -1.0 if negative else 1.0
    if m.group("pct"):
        return Figure(raw, "percent", sign * value / 100, _half_unit(decimals) / 100, start, end)
    if m.group("bp"):
        return Figure(raw, "bp", sign * value / 10_000, _half_unit(decimals) / 10_000, start, end)
    if m.group("mult"):
        return Figure(raw, "multiple", sign * value, _half_unit(decimals), start, end)
    if m.group("gen_scale"):
        scale = _SCALES[m.group("gen_scale").lower()]
        return Figure(raw, "number", sign * value * scale, _half_unit(decimals) * scale, start, end)
    plain = "," not in m.group("gen_num") and decimals == 0 and not negative
    if plain and 1900 <= value <= 2100:
        return Figure(raw, "year", value, 0.0, start, end)
    if plain and value < 100:
        # Small bare integers are list counts and horizons ("3 catalysts", "5 years"), not figures to check.
        return Figure(raw, "count", value, 0.0, start, end)
    return Figure(raw, "number", sign * value, _half_unit(decimals), start, end)
