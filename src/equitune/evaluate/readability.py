"""Whether an answer reads as text: repetition, a restated instruction, figures without a sentence around them.

The fact-check says whether each figure is right; these measures say whether the text around the figures is
worth reading. A model that loops ("The data also shows that ..." five times), copies its instruction back, or
drops figures on lines of their own writes text a reader throws away, however many of its figures are real.

* **Repetition**, two shares: of the answer's content lines (markdown stripped, case and spaces ignored, at
  least ``MIN_LINE_WORDS`` words; table rows included) that repeat an earlier line, and of its word
  ``NGRAM``-grams (figures included, as written) that repeat an earlier one.
* **Restated instruction**: the longest run of consecutive words of the prompt's instruction (the text before its
  ``DATA`` block) that the answer contains; the answer restates its instruction when that run is at least
  ``RESTATED_WORDS`` words long and at least ``RESTATED_SHARE`` of the instruction.
* **Copied data**: the share of the answer's words that lie in whole lines of the prompt's ``DATA`` block copied
  verbatim (lines of at least ``RESTATED_WORDS`` words): an answer that pastes its data back writes nothing.
* **Bare figures**: figures that sit on a prose line (not a table row or a header) with fewer than
  ``SENTENCE_WORDS`` words besides figures and markdown, and that no quantity keyword names ("$245.99" alone on
  a line). A labelled line ("**Upside:** -31.1%") names its figure and is not bare.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from equitune.data.blocks import split_prompt

NGRAM = 5
MIN_LINE_WORDS = 3
RESTATED_WORDS = 8
RESTATED_SHARE = 0.6
SENTENCE_WORDS = 3

_WORD = re.compile(r"[A-Za-z0-9$%+\-.,/()']+")
_MARKDOWN = re.compile(r"[*_`#>|]+")
_SEPARATOR = re.compile(r"^\s*\|?[\s:|-]*-{2,}[\s:|-]*\|?\s*$")
_FIGURE_TOKEN = re.compile(r"^[-+(\u2212]?\$?\(?[\d.,]+\)?(?:[%x\u00d7]|[kKmMbBtT]n?|bp)?[),;:.]*$")
_HEADER = re.compile(r"^\s*#{1,6}\s")
_BULLET = re.compile(r"^\s*(?:[-*+\u2022]|\d+[.)])\s+")


class _Located(Protocol):
    """A fact-checked figure (``equitune.evaluate.factcheck.FigureCheck`` is one)."""

    @property
    def start(self) -> int: ...
    @property
    def quantity(self) -> str | None: ...
    @property
    def kind(self) -> str: ...


@dataclass(frozen=True)
class Readability:
    """The readability measures of one answer (see the module docstring)."""

    lines: int
    repeated_lines: int
    ngrams: int
    repeated_ngrams: int
    restated_words: int
    restated: str
    instruction_words: int
    copied_words: int
    words: int
    bare_figures: int
    bare_examples: tuple[str, ...] = ()

    @property
    def repeated_line_share(self) -> float:
        """Content lines that repeat an earlier line / content lines (0 without lines)."""
        return self.repeated_lines / self.lines if self.lines else 0.0

    @property
    def repeated_ngram_share(self) -> float:
        """Word n-grams that repeat an earlier one / n-grams (0 for a text shorter than one n-gram)."""
        return self.repeated_ngrams / self.ngrams if self.ngrams else 0.0

    @property
    def repetition(self) -> float:
        """The answer's repetition: the larger of the two shares."""
        return max(self.repeated_line_share, self.repeated_ngram_share)

    @property
    def restates_instruction(self) -> bool:
        """Whether the answer restates its instruction (see the module docstring)."""
        return self.restated_words >= RESTATED_WORDS and self.restated_words >= RESTATED_SHARE * self.instruction_words

    @property
    def copied_share(self) -> float:
        """Words in DATA lines copied whole / the answer's words (0 for an empty answer)."""
        return self.copied_words / self.words if self.words else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "repeated_lines": self.repeated_lines,
            "repeated_line_share": round(self.repeated_line_share, 4),
            "ngrams": self.ngrams,
            "repeated_ngrams": self.repeated_ngrams,
            "repeated_ngram_share": round(self.repeated_ngram_share, 4),
            "repetition": round(self.repetition, 4),
            "restated_words": self.restated_words,
            "restated": self.restated,
            "restates_instruction": self.restates_instruction,
            "copied_share": round(self.copied_share, 4),
            "bare_figures": self.bare_figures,
            "bare_examples": list(self.bare_examples),
        }


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(_MARKDOWN.sub(" ", text))]


def instruction_of(prompt: str) -> str:
    """The prompt's instruction: its text before the DATA block (all of it when it has none)."""
    return split_prompt(prompt)[0]


def repeated_lines(text: str) -> tuple[int, int]:
    """(content lines, lines that repeat an earlier one)."""
    seen: set[str] = set()
    lines = repeats = 0
    for line in text.split("\n"):
        if _SEPARATOR.match(line):
            continue
        words = _words(_BULLET.sub("", line))
        if len(words) < MIN_LINE_WORDS:
            continue
        key = " ".join(words)
        lines += 1
        if key in seen:
            repeats += 1
        seen.add(key)
    return lines, repeats


def repeated_ngrams(text: str, n: int = NGRAM) -> tuple[int, int]:
    """(word n-grams, n-grams that repeat an earlier one)."""
    words = _words(text)
    seen: set[tuple[str, ...]] = set()
    total = repeats = 0
    for i in range(len(words) - n + 1):
        gram = tuple(words[i : i + n])
        total += 1
        if gram in seen:
            repeats += 1
        seen.add(gram)
    return total, repeats


def restated(text: str, prompt: str) -> tuple[int, str]:
    """The longest run of consecutive instruction words the answer contains: (its length, the words)."""
    instruction = _words(instruction_of(prompt))
    answer = _words(text)
    if not instruction or not answer:
        return 0, ""
    # Longest common substring over words (dynamic programming; both sides are short).
    best, end = 0, 0
    previous = [0] * (len(answer) + 1)
    for i in range(1, len(instruction) + 1):
        current = [0] * (len(answer) + 1)
        word = instruction[i - 1]
        for j in range(1, len(answer) + 1):
            if answer[j - 1] == word:
                current[j] = previous[j - 1] + 1
                if current[j] > best:
                    best, end = current[j], i
        previous = current
    return best, " ".join(instruction[end - best : end])


def copied_words(text: str, prompt: str) -> int:
    """Words of the answer that lie in whole DATA lines it copies verbatim."""
    block = split_prompt(prompt)[1]
    if block is None:
        return 0
    answer = " " + " ".join(_words(text)) + " "
    copied = 0
    for line in block.split("\n"):
        words = _words(line)
        if len(words) >= RESTATED_WORDS:
            copied += answer.count(" " + " ".join(words) + " ") * len(words)
    return copied


def bare_figures(text: str, figures: Iterable[_Located]) -> list[str]:
    """The lines of figures that no quantity names and no sentence surrounds (see the module docstring)."""
    found: list[str] = []
    for figure in figures:
        if figure.quantity is not None or figure.kind in ("year", "date"):
            continue
        start = text.rfind("\n", 0, figure.start) + 1
        end = text.find("\n", figure.start)
        line = text[start : end if end >= 0 else len(text)]
        stripped = line.strip()
        if stripped.startswith("|") or _HEADER.match(line):
            continue
        words = [w for w in _MARKDOWN.sub(" ", stripped).split() if not _FIGURE_TOKEN.match(w)]
        if len(words) < SENTENCE_WORDS:
            found.append(stripped)
    return found


def readability(text: str, prompt: str = "", figures: Iterable[_Located] = ()) -> Readability:
    """Every measure of the module docstring for one answer; ``figures`` are its fact-checked figures."""
    lines, line_repeats = repeated_lines(text)
    grams, gram_repeats = repeated_ngrams(text)
    run_words, run = restated(text, prompt) if prompt else (0, "")
    copied = copied_words(text, prompt) if prompt else 0
    bare = bare_figures(text, figures)
    return Readability(
        lines=lines,
        repeated_lines=line_repeats,
        ngrams=grams,
        repeated_ngrams=gram_repeats,
        restated_words=run_words,
        restated=run,
        instruction_words=len(_words(instruction_of(prompt))),
        copied_words=copied,
        words=len(_words(text)),
        bare_figures=len(bare),
        bare_examples=tuple(dict.fromkeys(bare))[:3],
    )
