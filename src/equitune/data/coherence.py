"""Coherence of a research text: the sentences must not contradict each other or the figures they quote.

The figure check (``equitune.data.validate``) makes sure every number is right; this module makes sure the
sentences built on them make sense. Each rule finds one kind of contradiction a reader would catch at once:

* **self-comparison**: a value compared with, or moved to, itself ("from $106.82 to $106.82", "$99 above
  $99", "upside -18.0% to -18.0%");
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

import bisect
import re
from collections.abc import Callable
from typing import NamedTuple

from equitune.data.numbers import Figure, extract_figures


class Incoherence(NamedTuple):
    """One contradiction: the line of the text (1-based), the rule, and what is wrong."""

    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line} of the response: {self.rule}: {self.message}"


_FIG = (
    r"[-−+]?\s?(?:US)?\$\s?\(?[\d.,]+\)?(?:\s?(?:[kKmMbBtT]|bn|tn|mn|million|billion|trillion)\b)?"
    r"|[-−+(]?[\d.,]+\)?\s?(?:%|x|×| bp)"
)
_FROM_TO = re.compile(rf"\bfrom (?P<a>{_FIG}) to (?P<b>{_FIG})")
_FIG_RE = re.compile(_FIG)
_COMPARE_WORD = re.compile(r"\b(?:above|below|higher than|lower than|a premium to|a discount to|exceeds|short of)\b")
_TO_FROM = re.compile(rf"\bto (?P<new>{_FIG}) from (?P<old>{_FIG})")
_UP_DOWN = re.compile(rf"\b(?P<verb>up|down) from (?P<old>{_FIG})")

_RISE = r"rose|rises|risen|increased|increases|grew|grows|climbed|climbs|raised|lifts|lifted|up"
_RISE_WORDS = dict.fromkeys(_RISE.split("|"), True)
_FALL = r"fell|falls|fallen|declined|declines|decreased|decreases|dropped|drops|cut|cuts|lowered|lowers|down"
# The verb of a move, up to two words before "to X from Y" / "from Y to X" ("rose sharply to", "was cut from").
_VERB_BEFORE = re.compile(rf"\b(?P<verb>{_RISE}|{_FALL})\b(?: \w+){{0,2}} $")
_UP_DOWN_GAP = re.compile(r"\b(?:up|down) from $")
_CLAUSE_BREAK = re.compile(r"[.;:](?!\d)|\n")  # not the point of a decimal
_RATING_WORD = re.compile(r"\*\*(BUY|HOLD|SELL)\*\*")  # the rating as the text states it, in bold
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
    if a.strip() != b.strip():  # the same figure is written the same way; parse only to confirm
        return False
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


_SENTENCE_END = re.compile(r"[.;!?](?=\s+[A-Z*(])|\n")
_COMPARE_WORDS = ("above", "below", "higher than", "lower than", "a premium to", "a discount to", "exceeds", "short of")


_NEGATIVE_CONTEXT = re.compile(
    r"(?:\b(?:DCF|comparables|intrinsic|excess-return|dividend-discount|blended) value(?: per share)? (?:of|is|at) |"
    r"\bvalue per share[:*\s|]*)$"
)


def coherence_issues(text: str, data: str = "", figures: list[Figure] | None = None) -> list[Incoherence]:
    """Every contradiction the rules above find in ``text`` (see the module docstring). The rules on figures
    walk the text's figures (``figures``: those of ``extract_figures(text)``, passed when the caller has them)
    pair by pair and read only the words between neighbours, so the check costs little next to the figure check
    it runs with."""
    out: list[Incoherence] = []
    target = _DATA_TARGET.search(data) if data else None
    rating = target.group("rating") if target else None
    newlines: list[int] = []

    def line_of(position: int) -> int:
        if not newlines:  # built on the first issue only: a clean text never pays for it
            newlines.extend(m.start() for m in re.finditer("\n", text))
            newlines.append(len(text) + 1)
        return bisect.bisect_right(newlines, position) + 1

    def add(position: int, rule: str, message: str) -> None:
        out.append(Incoherence(line_of(position), rule, message))

    figs = [
        f
        for f in (figures if figures is not None else extract_figures(text))
        if f.kind not in ("count", "year", "date")
    ]
    for first, second in zip(figs, figs[1:], strict=False):
        if second.start - first.end > 60 or first.kind != second.kind:
            continue
        gap = text[first.end : second.start]
        if gap == " to ":
            same = first.value == second.value and first.raw.strip() == second.raw.strip()
            if text.endswith("from ", 0, first.start):
                if same:
                    add(
                        first.start,
                        "self-comparison",
                        f"moves a value to itself: from {first.raw.strip()} to {second.raw.strip()}",
                    )
                _direction(text, first.start - 5, second, first, add)
            elif same:
                add(first.start, "self-comparison", f"a range from a value to itself: {first.raw.strip()} to itself")
        elif gap == " from ":
            if text.endswith("to ", 0, first.start):
                _direction(text, first.start - 3, first, second, add)
        elif "\n" in gap:
            continue
        elif gap.endswith("from "):
            if _UP_DOWN_GAP.search(gap) and _CLAUSE_BREAK.search(gap) is None:
                up = gap.endswith("up from ")
                if first.value != second.value and (first.value > second.value) != up:
                    add(
                        first.start,
                        "direction",
                        f"{first.raw.strip()} is {'up' if up else 'down'} from {second.raw.strip()}",
                    )
        elif (
            first.value == second.value
            and first.raw.strip() == second.raw.strip()
            and _COMPARE_WORD.search(gap)
            and _CLAUSE_BREAK.search(gap) is None
        ):
            add(
                first.start,
                "self-comparison",
                f"compares a value with itself: {first.raw.strip()}{gap}{second.raw.strip()}",
            )
    for f in figs:
        if f.kind == "currency" and f.value < 0 and _NEGATIVE_CONTEXT.search(text, max(0, f.start - 60), f.start):
            add(f.start, "negative value", f"a negative per-share value used as a valuation input: {f.raw.strip()}")
    if "blend" in text:
        for number, line in enumerate(text.split("\n"), start=1):
            if "blend" not in line:
                continue
            for sentence in _sentences(line):
                lowered = sentence.casefold()
                if re.search(r"\bblend(?:s|ed|ing)?\b", lowered) and (
                    re.search(r"\balone\b|\bexcluded\b|\bnot meaningful\b", lowered)
                    or re.search(r"[-−]\s?\$\s?\d", sentence)
                ):
                    out.append(
                        Incoherence(
                            number, "single-source blend", f"a blend with one usable value: {sentence.strip()[:160]!r}"
                        )
                    )
    if rating is not None and target is not None:
        lowered = text.casefold()
        for said, phrases in _ARGUMENTS.items():
            if said == rating:
                continue
            for phrase in phrases:
                at = lowered.find(phrase)
                if at >= 0:
                    add(at, "rating", f"argues {said} ({phrase!r}) under a {rating}")
        out.extend(_band_issues(target))
        if "**" in text:
            for m in _RATING_WORD.finditer(text):
                said = m.group(1)
                if said != rating:
                    add(m.start(), "rating", f"the text rates the shares {said}; the data's rating is {rating}")
    return sorted(out, key=lambda i: i.line)


def _figure_before(text: str, position: int) -> str | None:
    """The last figure in the same clause within 60 characters before ``position``."""
    left = text[max(0, position - 60) : position]
    breaks = list(_CLAUSE_BREAK.finditer(left))
    if breaks:
        left = left[breaks[-1].end() :]
    found = _FIG_RE.findall(left)
    return found[-1].strip() if found else None


def _direction(text: str, start: int, new: Figure, old: Figure, add: Callable[[int, str, str], None]) -> None:
    """Flag a rise/fall verb up to two words before a move ("rose to X from Y", "fell from Y to X") whose figures
    (of one kind) go the other way."""
    if new.raw.strip() == old.raw.strip() or new.value == old.value:
        return
    before = _VERB_BEFORE.search(text, max(0, start - 40), max(0, start))
    if before is None:
        return
    rises = _RISE_WORDS.get(before.group("verb"), False)
    if (new.value > old.value) != rises:
        add(start, "direction", f"{before.group('verb')!r} against the figures: {old.raw.strip()} -> {new.raw.strip()}")


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
