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
from typing import Literal, NamedTuple

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
_SCALE = r"(?i:thousand|millions?|billions?|trillion|mm|mn|bn|tn|[kmbt])(?![a-z])"
# The leading character-class lookahead lets the regex engine skip quickly to candidate positions; the
# pattern is case-sensitive except for unit words, which is several times faster than IGNORECASE.
_PATTERN = re.compile(
    rf"""
    (?=[-−+(\$\dF.U])
    (?P<all>
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
            \s?(?P<pct>%|(?i:percent|per\ cent)\b)
          | \s?(?P<bp>(?i:bps?|basis\ points?))\b
          | (?P<mult>[x×])(?![a-z0-9])
          | \s?(?P<gen_scale>{_SCALE})
        )?
    )
    )
    """,
    re.VERBOSE,
)


class Figure(NamedTuple):
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
    cleaned = text.replace(",", "") if "," in text else text
    dot = cleaned.find(".")
    return float(cleaned), (len(cleaned) - dot - 1 if dot >= 0 else 0)


# Digits inside names are not figures: filings (10-K), index names (S&P 500), ordinals (3rd), horizons
# (12-month), technologies (5G), tiers. A generic number next to such a context is skipped.
_NAME_BEFORE = re.compile(r"(?:S&P|Russell|Tier|Level|Phase|Stage|Class|Form|Item|Rule|Section)\s?$")
_NAME_AFTER = re.compile(r"(?:-(?:[KQ]\b|(?i:year|month|week|day|quarter)s?\b)|[A-Za-z])")


def _is_name(text: str, start: int, end: int) -> bool:
    return bool(_NAME_AFTER.match(text, end) or _NAME_BEFORE.search(text, max(0, start - 9), start))


_G = {name: index - 1 for name, index in _PATTERN.groupindex.items()}  # positions in Match.groups()
_MINUS = ("-", "\u2212")


def extract_figures(text: str) -> list[Figure]:
    """Every figure in ``text`` in order of appearance (see the module docstring for the forms).

    Digits inside names (10-K, S&P 500, Q3, 12-month, 5G) are not figures and are skipped."""
    # Research text repeats whole lines (table rows, template sentences), so lines are parsed once and
    # memoised; a figure never spans a line break.
    figures: list[Figure] = []
    append, memo, new = figures.append, _LINES, Figure
    offset = 0
    for line in text.split("\n"):
        parsed = memo.get(line)
        if parsed is None:
            parsed = _parse_line(line)
            if len(memo) >= 100_000:
                memo.clear()
            memo[line] = parsed
        for kind, value, tolerance, estimate, raw, start, end in parsed:
            append(new(raw, kind, value, tolerance, start + offset, end + offset, estimate))
        offset += len(line) + 1
    return figures


_LineFigure = tuple["FigureKind", float, float, bool, str, int, int]
_LINES: dict[str, tuple[_LineFigure, ...]] = {}


def _parse_line(line: str) -> tuple[_LineFigure, ...]:
    found: list[_LineFigure] = []
    cursor = 0
    i_all = _G["all"]
    for g in _PATTERN.findall(line):
        whole = g[i_all]
        start = line.find(whole, cursor)
        end = cursor = start + len(whole)
        kind, value, tolerance, estimate, raw, shift, name_check = _parse(g)
        if name_check and _is_name(line, start, end):
            continue
        found.append((kind, value, tolerance, estimate, raw, start + shift, end))
    return tuple(found)


_Parsed = tuple[FigureKind, float, float, bool, str, int, bool]


def _parse(g: tuple[str, ...]) -> _Parsed:
    """(kind, value, tolerance, estimate, raw, start offset, needs name check) of one matched token."""
    raw = g[_G["all"]].strip()
    if g[_G["generic"]]:
        figure = _generic(g, raw, 0, 0)
        check = not (g[_G["pct"]] or g[_G["mult"]] or g[_G["bp"]])
        return figure.kind, figure.value, figure.tolerance, False, figure.raw, figure.start, check
    if g[_G["currency"]]:
        value, decimals = _number(g[_G["cur_num"]])
        scale_word = g[_G["cur_scale"]]
        scale = _SCALES[scale_word.lower()] if scale_word else 1.0
        negative = bool(g[_G["cur_paren"]]) or g[_G["cur_sign"]] in _MINUS
        signed = -value * scale if negative else value * scale
        return "currency", signed, 0.5 * 10.0**-decimals * scale, False, raw, 0, False
    if g[_G["date"]]:
        try:
            return "date", float(dt.date.fromisoformat(g[_G["date"]]).toordinal()), 0.0, False, raw, 0, False
        except ValueError:  # not a calendar date (2024-13-45): keep it, as an unmatched number
            return "number", float(g[_G["date"]][:4]), 0.0, False, raw, 0, False
    if g[_G["fy"]]:
        year = int(g[_G["fy_year"]])
        year = year + 2000 if year < 100 else year
        return "year", float(year), 0.0, g[_G["fy_est"]] == "E", raw, 0, False
    return "year", float(g[_G["est_year"]]), 0.0, g[_G["est_flag"]] == "E", raw, 0, False


def _generic(g: tuple[str, ...], raw: str, start: int, end: int) -> Figure:
    number = g[_G["gen_num"]]
    value, decimals = _number(number)
    half = 0.5 * 10.0**-decimals
    # "(2.1)%" and "(2.1)" are accounting negatives; "(2.1% of sales" is an opening bracket.
    opened = bool(g[_G["gen_paren"]])
    parenthesised = opened and ")" in g[_G["generic"]]
    negative = parenthesised or g[_G["gen_sign"]] in _MINUS
    if opened and not parenthesised:
        raw, start = raw[1:], start + 1
    sign = -1.0 if negative else 1.0
    if g[_G["pct"]]:
        return Figure(raw, "percent", sign * value / 100, half / 100, start, end)
    if g[_G["bp"]]:
        return Figure(raw, "bp", sign * value / 10_000, half / 10_000, start, end)
    if g[_G["mult"]]:
        return Figure(raw, "multiple", sign * value, half, start, end)
    scale_word = g[_G["gen_scale"]]
    if scale_word:
        scale = _SCALES[scale_word.lower()]
        return Figure(raw, "number", sign * value * scale, half * scale, start, end)
    plain = decimals == 0 and not negative and "," not in number
    if plain and 1900 <= value <= 2100:
        return Figure(raw, "year", value, 0.0, start, end)
    if plain and value < 100:
        # Small bare integers are list counts and horizons ("3 catalysts", "5 years"), not figures to check.
        return Figure(raw, "count", value, 0.0, start, end)
    return Figure(raw, "number", sign * value, half, start, end)
