"""Grounded decoding: a grammar, built per prompt, that lets a model write only the numerals of its DATA block.

A small model copies figures badly: it writes $93.7B where the data says $93.58, or a growth rate no line gives.
The fact-check finds those afterwards; grounded decoding keeps them from being written. ``grounded_grammar``
builds a llama.cpp grammar (GBNF) from the prompt's ``DATA`` block: the answer is free text, except that every
numeral in it (a maximal run of digits, with ``.`` decimals and ``,`` thousands groups) must be

* written in the DATA block in exactly that form (``93.58``, ``19.7``, ``2024``, ``31``: the forms the data uses,
  so a rounded ``93.6`` or a made-up ``94.00`` is not admitted), or
* a year from ``YEARS`` or a small count from ``SMALL_COUNTS`` (list numbers, "5-year", "12-month", "Q4").

The grammar says nothing about units or about which quantity a figure is attached to: ``$19.7B`` where the data
gives ``19.7%`` passes it, and the fact-check still judges that. A numeral is a trie of grammar rules, one rule per
trie node, so llama.cpp follows one path per prefix instead of one per allowed figure.

The embedded llama.cpp runtime applies the grammar (``GenerationOptions.grammar``) to single and batched
requests; Ollama cannot (its ``format`` takes JSON schemas only), so callers ask ``accepts_grammar`` first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from equitune.data.blocks import split_prompt
from equitune.serve.runtime import GenerationOptions

YEARS = range(1990, 2041)
"""Years a text may always name (fiscal years, "by 2030")."""

SMALL_COUNTS = range(0, 13)
"""Counts a text may always use: list numbers, "5-year", "10 years", "12-month", "Q4"."""

NUMERAL = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
"""A numeral as the grammar sees one: digits, optional thousands groups, an optional decimal part."""


def data_numerals(text: str) -> set[str]:
    """Every numeral written in ``text``, in the form it is written (``"$1,234.5M (-2.0%)"`` -> 1,234.5 and 2.0)."""
    return {m.group(0) for m in NUMERAL.finditer(text)}


def allowed_numerals(prompt: str) -> set[str] | None:
    """The numerals an answer to ``prompt`` may write: its DATA block's, the years and the small counts; None when
    the prompt has no DATA block (then there is nothing to ground the answer in)."""
    block = split_prompt(prompt)[1]
    if block is None:
        return None
    return data_numerals(block) | {str(y) for y in YEARS} | {str(n) for n in SMALL_COUNTS}


def _literal(char: str) -> str:
    return '"' + char.replace("\\", "\\\\").replace('"', '\\"') + '"'


def numeral_grammar(numerals: Iterable[str]) -> str:
    """A GBNF grammar of texts whose numerals are all in ``numerals`` (see the module docstring).

    ``root`` is text without digits, then numerals each followed by a gap: a gap is at least one character that is
    not a digit, and not a lone ``.`` or ``,`` (so ``12`` and ``5`` cannot be joined into ``12.5``).
    """
    allowed = sorted({n for n in numerals if NUMERAL.fullmatch(n)})
    if not allowed:
        raise ValueError("a numeral grammar needs at least one numeral")
    trie: dict[str, Any] = {}
    for numeral in allowed:
        node = trie
        for char in numeral:
            node = node.setdefault(char, {})
        node[""] = {}  # a numeral ends here
    rules: list[str] = []

    def rule(node: dict[str, Any], name: str) -> None:
        branches = []
        for k, (char, child) in enumerate(sorted((c, n) for c, n in node.items() if c)):
            child_name = f"{name}-{k}"
            if any(c for c in child):
                rule(child, child_name)
                branches.append(f"{_literal(char)} {child_name}")
            else:
                branches.append(_literal(char))
        body = " | ".join(branches)
        if "" in node:
            body = f"({body})?"
        rules.append(f"{name} ::= {body}")

    rule(trie, "num")
    head = [
        "root ::= text (num gap)* (num text)?",
        "text ::= [^0-9]*",
        "gap ::= [^0-9.,] [^0-9]* | [.,] [^0-9]+",
    ]
    return "\n".join(head + rules[::-1]) + "\n"


def grounded_grammar(prompt: str) -> str | None:
    """The grammar of answers to ``prompt`` that write only its DATA block's numerals (plus years and small
    counts); None when the prompt has no DATA block."""
    numerals = allowed_numerals(prompt)
    return numeral_grammar(numerals) if numerals is not None else None


def accepts_grammar(runtime: object) -> bool:
    """Whether ``runtime`` applies ``GenerationOptions.grammar`` (the embedded llama.cpp runtime does)."""
    return bool(getattr(runtime, "accepts_grammar", False))


def grounded(options: GenerationOptions, prompt: str) -> GenerationOptions:
    """``options`` with the grammar of ``prompt``'s DATA block (unchanged when the prompt has none)."""
    grammar = grounded_grammar(prompt)
    return options if grammar is None else replace(options, grammar=grammar)


def ungrounded_numerals(text: str, numerals: Iterable[str]) -> list[str]:
    """The numerals of ``text`` (as ``NUMERAL`` reads them) that are not in ``numerals``, in order: empty for a
    text a grammar from ``numerals`` let through."""
    allowed = set(numerals)
    return [m.group(0) for m in NUMERAL.finditer(text) if m.group(0) not in allowed]
