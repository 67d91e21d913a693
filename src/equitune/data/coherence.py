"""Coherence of a research text: the sentences must not contradict each other or the figures they quote.

The figure check (``equitune.data.validate``) makes sure every number is right; this module makes sure the
sentences built on them make sense. Each rule finds one kind of contradiction a reader would catch at once:

* **self-comparison**: a value compared with, or moved to, itself ("from $106.82 to $106.82", "$99 above
  $99");
* **single-source blend**: a target said to *blend* values while one of them is "alone", excluded or negative;
* **direction**: a stated direction against the numbers ("rose to $5.8B from $6.4B", "up from 12.0%" when the
  figure is lower);
* **rating against its bands**: the rating the text gives against the upside and bands it states, and the
  phrases that argue a rating ("clears our Buy threshold" under a Sell);
* **negative per-share value as an input**: a negative per-share value quoted as a DCF, comparables or
  blended value.

``coherence_issues(text, data)`` returns ``(line, message)`` pairs, ``line`` counted from 1 within ``text``;
``data`` is the prompt's DATA block, from which the rating, the upside and the bands are read.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from equitune.data.numbers import Figure, extract_figures


class Incoherence(NamedTuple):
    """One contradiction: the line of the text (1-based), the rule, and what is wrong."""

    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line} of the response: {self.rule}: {self.message}"


_FIG = r"[-−+]?\s?(?:US)?\$\s?\(?[\d.,]+\)?(?:\s?(?:[kKmMbBtT]|bn|tn|mn|million|billion|trillion)\b)?|[-−+(]?[\d.,]+\)?\s?(?:%|x|×| bp)"
_FROM_TO = re.compile(rf"\bfrom (?P<a>{_FIG}) to (?P<b>{_FIG})")
_COMPARE = re.compile(
    rf"(?P<a>{_FIG})[^.;:\n]{{0,60}}?\b(?P<word>above|below|higher than|lower than|a premium to|a discount to|"
    rf"exceeds|short of)\b[^.;:\n\d$]{{0,40}}?(?P<b>{_FIG})"
)
_RISE = r"rose|rises|risen|increased|increases|grew|grows|climbed|climbs|raised|lifts|lifted|up"
_FALL = r"fell|falls|fallen|declined|declines|decreased|decreases|dropped|drops|cut|cuts|lowered|lowers|down"
_VERB_TO_FROM = re.compile(rf"\b(?P<verb>{_RISE}|{_FALL})\b(?: \w+){{0,2}} to (?P<new>{_FIG}) from (?P<old>{_FIG})")
_VERB_FROM_TO = re.compile(rf"\b(?P<verb>{_RISE}|{_FALL})\b(?: \w+){{0,2}} from (?P<old>{_FIG}) to (?P<new>{_FIG})")
_UP_DOWN_FROM = re.compile(rf"(?P<new>{_FIG})[^.;\n]{{0,40}}?\b(?P<verb>up|down) from (?P<old>{_FIG})")
_RATING_WORD = re.compile(r"\*\*(BUY|HOLD|SELL)\*\*|\b(?:rate[sd]?|rating(?: of| is)?)\s+(?:[A-Z][\w.&' ]+?\s)?\*\*(BUY|HOLD|SELL)\*\*")
_DATA_TARGET = re.compile(
    r"upside (?P<upside>[-−+]?[\d.]+%); rating (?P<rating>BUY|HOLD|SELL|NOT RATED) \(Buy at or above "
    r"(?P<buy>[-−+]?[\d.]+%) upside, Sell below (?P<sell>[-−+]?[\d.]+%)\)"
)
_ARGUMENTS = {
    "BUY": ("clears our buy threshold", "above our buy threshold"),
    "HOLD": ("inside the hold band", "within the hold band"),
    "SELL": ("below our sell threshold", "falls short of our sell threshold"),
}
_NEGATIVE_VALUE = re.compile(
    r"(?:\b(?:DCF|comparables|intrinsic|excess-return|dividend-discount|blended) value(?: per share)? (?:of|is|at) |"
    r"\bvalue per share[:*\s|]*)(?P<fig>[-−]\s?\$\s?[\d.,]+|\$\s?\([\d.,]+\))"
)


def _figure(raw: str) -> Figure | None:
    found = extract_figures(raw.strip())
    return found[0] if found else None


def _same(a: str, b: str) -> bool:
    fa, fb = _figure(a), _figure(b)
    return fa is not None and fb is not None and fa.kind == fb.kind and fa.raw.strip() == fb.raw.strip()


def _compare(a: str, b: str) -> int | None:
    """-1 / 0 / +1 as figure ``a`` is below, level with or above ``b`` (same kind only)."""
    fa, fb = _figure(a), _figure(b)
    if fa is None or fb is None or fa.kind != fb.kind:
        return None
    if fa.raw.strip() == fb.raw.strip():
        return 0
    return (fa.value > fb.value) - (fa.value < fb.value)


def _pct(raw: str) -> float:
    return float(raw.replace("−", "-").replace("%", "")) / 100.0


def _sentences(line: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.;!?])\s+(?=[A-Z*(])", line) if s]


def coherence_issues(text: str, data: str = "") -> list[Incoherence]:
    """Every contradiction the rules above find in ``text`` (see the module docstring)."""
    out: list[Incoherence] = []
    target = _DATA_TARGET.search(data)
    rating = target.group("rating") if target else None
    for number, line in enumerate(text.split("\n"), start=1):
        for sentence in _sentences(line):
            out.extend(Incoherence(number, rule, msg) for rule, msg in _sentence_issues(sentence, rating))
    if target is not None:
        out.extend(_band_issues(target))
        for number, line in enumerate(text.split("\n"), start=1):
            for m in _RATING_WORD.finditer(line):
                said = m.group(1) or m.group(2)
                if said != rating:
                    out.append(
                        Incoherence(number, "rating", f"the text rates the shares {said}; the data's rating is {rating}")
                    )
    return out


def _band_issues(target: re.Match[str]) -> list[Incoherence]:
    """The DATA block's own rating against its upside and bands."""
    rating = target.group("rating")
    if rating == "NOT RATED":
        return []
    upside, buy, sell = (_pct(target.group(k)) for k in ("upside", "buy", "sell"))
    expected = "BUY" if upside >= buy else "SELL" if upside < sell else "HOLD"
    if expected != rating:
        return [
            Incoherence(
                0,
                "rating",
                f"upside {target.group('upside')} gives {expected} under the stated bands, not {rating}",
            )
        ]
    return []


def _sentence_issues(sentence: str, rating: str | None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for m in _FROM_TO.finditer(sentence):
        if _same(m.group("a"), m.group("b")):
            out.append(("self-comparison", f"moves a value to itself: {m.group(0)!r}"))
    for m in _COMPARE.finditer(sentence):
        if _same(m.group("a"), m.group("b")):
            out.append(("self-comparison", f"compares a value with itself: {m.group(0)!r}"))
    lowered = sentence.casefold()
    if re.search(r"\bblend(?:s|ed|ing)?\b", lowered) and (
        re.search(r"\balone\b|\bexcluded\b|\bnot meaningful\b", lowered)
        or re.search(r"[-−]\s?\$\s?\d", sentence)
    ):
        out.append(("single-source blend", f"a blend with one usable value: {sentence.strip()[:160]!r}"))
    for pattern in (_VERB_TO_FROM, _VERB_FROM_TO, _UP_DOWN_FROM):
        for m in pattern.finditer(sentence):
            rises = re.fullmatch(_RISE, m.group("verb")) is not None
            order = _compare(m.group("new"), m.group("old"))
            if order is None or order == 0:
                continue
            if (order > 0) != rises:
                out.append(("direction", f"{m.group('verb')!r} against the figures: {m.group(0)!r}"))
    if rating is not None:
        for said, phrases in _ARGUMENTS.items():
            if said != rating and any(p in lowered for p in phrases):
                out.append(("rating", f"argues {said} ({next(p for p in phrases if p in lowered)!r}) under a {rating}"))
    for m in _NEGATIVE_VALUE.finditer(sentence):
        out.append(("negative value", f"a negative per-share value used as a valuation input: {m.group(0)!r}"))
    return out
