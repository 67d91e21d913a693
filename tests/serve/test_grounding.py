"""Grounded decoding (``equitune.serve.grounding``): the grammar built from a DATA block admits, token by token in
llama.cpp's own grammar sampler, every figure the block writes and rejects every other numeral; generation under
it (one at a time and batched) writes only grounded numerals."""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

from equitune.data.blocks import split_prompt
from equitune.serve.grounding import (
    accepts_grammar,
    allowed_numerals,
    data_numerals,
    grounded,
    grounded_grammar,
    numeral_grammar,
    ungrounded_numerals,
)
from equitune.serve.runtime import GenerationOptions, Message

PROMPT = (
    "Write an executive summary for Invented Widgets Inc. (IWI) with a rating and a 12-month price target.\n\n"
    "DATA\n"
    "Company: Invented Widgets Inc. (IWI) | Industrials / Widgets\n"
    "Price: $93.58 on 2024-12-31 | Market cap: $1,234.5M | Beta: 0.87\n"
    "FY2024: revenue $19.7B (-5.4%), EBITDA $4.05B, FCF -$966M\n"
    "Price target $104.17 vs price $93.58: upside +11.3%; rating HOLD\n"
)
DATA_FIGURES = ["93.58", "1,234.5", "0.87", "2024", "19.7", "5.4", "4.05", "966", "104.17", "11.3", "12", "31"]


def test_numerals_are_read_in_the_form_the_data_writes_them() -> None:
    assert data_numerals("$1,234.5M (-2.0%), 2024-12-31, 7x") == {"1,234.5", "2.0", "2024", "12", "31", "7"}
    block = split_prompt(PROMPT)[1]
    assert block is not None and block.lstrip("\n").startswith("Company:")
    assert set(DATA_FIGURES) <= data_numerals(block)
    allowed = allowed_numerals(PROMPT)
    assert allowed is not None and {"2030", "5", "0"} <= allowed  # years and small counts are always allowed
    assert "93.6" not in allowed and "94" not in allowed
    assert allowed_numerals("What is a reverse DCF?") is None  # nothing to ground
    assert grounded_grammar("What is a reverse DCF?") is None
    options = GenerationOptions(max_tokens=8)
    assert grounded(options, "no data here") is options
    assert grounded(options, PROMPT).grammar == grounded_grammar(PROMPT)


def test_the_grammar_is_a_trie_of_rules() -> None:
    grammar = numeral_grammar(["93.58", "93.6", "9"])
    assert grammar.startswith("root ::= text (num gap)* (num text)?\n")
    assert 'num ::= "9" num-0' in grammar
    assert grammar.count('"9"') == 1  # one path for the shared prefix
    with pytest.raises(ValueError, match="at least one numeral"):
        numeral_grammar(["n/a"])


def test_ungrounded_numerals_lists_the_figures_the_data_does_not_write() -> None:
    allowed = allowed_numerals(PROMPT)
    assert allowed is not None
    assert ungrounded_numerals("Target $104.17 (+11.3%) on FY2024 revenue of $19.7B.", allowed) == []
    assert ungrounded_numerals("Target $104.2, revenue $19.70B, 25 peers.", allowed) == ["104.2", "19.70", "25"]


def test_only_the_embedded_runtime_accepts_a_grammar() -> None:
    from equitune.serve.llamacpp_runtime import LlamaCppRuntime
    from equitune.serve.ollama_runtime import OllamaRuntime, ollama_options
    from equitune.serve.runtime import ModelRuntimeError

    assert LlamaCppRuntime.accepts_grammar is True
    assert not accepts_grammar(OllamaRuntime)
    with pytest.raises(ModelRuntimeError, match="Ollama cannot apply a grammar"):
        ollama_options(GenerationOptions(grammar='root ::= "a"'))


# ------------------------------------------------------------------------------------- llama.cpp, tiny model


def _admitted(runtime: Any, grammar: str, text: str) -> bool:
    """Whether llama.cpp's grammar sampler lets ``text`` through, fed token by token as a model would write it."""
    import llama_cpp

    llm = runtime._llm
    sampler = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, grammar.encode(), b"root")
    assert sampler, "llama.cpp could not parse the grammar"
    try:
        for token in llm.tokenize(text.encode(), add_bos=False, special=False):
            data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
            candidates = llama_cpp.llama_token_data_array(data, 1, -1, False)
            llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
            if data[0].logit == float("-inf"):
                return False
            llama_cpp.llama_sampler_accept(sampler, token)
        eog = llm.token_eos()  # the answer may end here
        data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(eog, 0.0, 0.0))
        candidates = llama_cpp.llama_token_data_array(data, 1, -1, False)
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
        return data[0].logit != float("-inf")
    finally:
        llama_cpp.llama_sampler_free(sampler)


def test_the_grammar_admits_every_data_figure_and_rejects_others(tiny: Any) -> None:
    grammar = grounded_grammar(PROMPT)
    assert grammar is not None
    every = "; ".join(f"figure {f}" for f in DATA_FIGURES)
    assert _admitted(tiny, grammar, f"IWI: HOLD. {every}.")
    assert _admitted(tiny, grammar, "## 1. Summary\nTarget $104.17 (+11.3%), price $93.58 as of 2024-12-31.")
    assert _admitted(tiny, grammar, "No figures at all.")
    for wrong in ("$93.6", "$104.2", "$19.70B", "25 peers", "$93.581", "12.5%", "1,234", "0.8"):
        assert not _admitted(tiny, grammar, f"Target {wrong} today."), wrong


def test_grounded_generation_writes_only_data_numerals_one_at_a_time_and_batched(tiny: Any) -> None:
    """A random tiny model writes no digits of its own accord, so its answer is made to hold one numeral: the
    grounding grammar's numeral rules under a root that requires one. Sampled, single and batched alike."""
    allowed = allowed_numerals(PROMPT)
    assert allowed is not None
    rules = numeral_grammar(allowed).split("\n", 1)[1]
    grammar = 'root ::= "Target $" num " today."\n' + rules
    conversation = [Message("user", PROMPT)]
    options = [GenerationOptions(max_tokens=32, temperature=0.8, seed=seed, grammar=grammar) for seed in range(4)]
    single = [tiny.chat(conversation, o) for o in options]
    batched = tiny.chat_many([conversation] * 4, options, batch_size=4)
    for g in single + batched:
        assert g.text.startswith("Target $") and g.text.endswith(" today."), g.text
        numerals = data_numerals(g.text)
        assert len(numerals) == 1 and ungrounded_numerals(g.text, allowed) == [], g.text
    assert [g.text for g in batched] == [g.text for g in single]  # the same seed, the same answer
    free = tiny.chat(conversation, GenerationOptions(max_tokens=32, temperature=0.8, seed=0))
    assert not free.text.startswith("Target $")  # the grammar, not the model, wrote the frame


def test_greedy_batched_decoding_checks_the_grammar_and_picks_what_the_full_grammar_picks(tiny: Any) -> None:
    """Greedy requests in the batched decoder ask the grammar only about the chain's choice and fall back to the
    full grammar when it is rejected; the text must be the one ``create_completion`` writes with the grammar over
    every candidate. The forced frame makes the fallback run (the tiny model never writes "Target $" itself)."""
    allowed = allowed_numerals(PROMPT)
    assert allowed is not None
    rules = numeral_grammar(allowed).split("\n", 1)[1]
    forced = 'root ::= "Target $" num " today."\n' + rules
    conversation = [Message("user", PROMPT)]
    for grammar in (forced, grounded_grammar(PROMPT)):
        options = GenerationOptions(max_tokens=48, temperature=0.0, repeat_penalty=1.1, grammar=grammar)
        single = tiny.chat(conversation, options)
        batched = tiny.chat_many([conversation] * 3, options, batch_size=3)
        assert [g.text for g in batched] == [single.text] * 3
        assert ungrounded_numerals(single.text, allowed) == []
    framed = tiny.chat_many([conversation], GenerationOptions(max_tokens=32, temperature=0.0, grammar=forced))[0]
    assert framed.text.startswith("Target $") and framed.text.endswith(" today."), framed.text


def test_a_grammar_llama_cpp_cannot_parse_is_one_clear_error(tiny: Any) -> None:
    from equitune.serve.runtime import ModelRuntimeError

    options = GenerationOptions(max_tokens=8, temperature=0.0, grammar='root ::= "unterminated')
    with pytest.raises(ModelRuntimeError, match="grammar"):
        tiny.chat_many([[Message("user", "Hello")]], options)
