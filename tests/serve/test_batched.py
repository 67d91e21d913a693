"""Batched generation: ``chat_many`` on every runtime. In llama.cpp (``equitune.serve.batched``) greedy and seeded
sampled answers must be token for token those of one ``chat`` at a time, on a tiny f16 model built here and, marked
slow, on the embedded SmolLM2 GGUF; remote runtimes send the requests concurrently and keep their order."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from equitune.serve.batched import common_prefix
from equitune.serve.runtime import (
    Generation,
    GenerationOptions,
    Message,
    ModelRuntimeError,
    chat_many,
    concurrent_chat,
    options_for,
)
from ollama_stub import OllamaStub

QUESTIONS = [
    "What does a price-to-earnings ratio tell an investor?",
    "Explain free cash flow in one paragraph.",
    "Why does a higher WACC lower a DCF value?",
    "Name two risks for a bank when rates fall.",
    "What is a reverse DCF?",
    "How do analysts pick comparable companies for a valuation, and why does the choice matter so much?",
]


def _conversation(question: str, system: str | None = "You are an equity research analyst.") -> list[Message]:
    return ([Message("system", system)] if system else []) + [Message("user", question)]


# ------------------------------------------------------------------------------------------ no model needed


def test_common_prefix_leaves_every_prompt_a_token_of_its_own() -> None:
    assert common_prefix([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == 2
    assert common_prefix([[1, 2, 3], [1, 2, 3]]) == 2  # identical prompts: the last token is each one's own
    assert common_prefix([[7, 8], [1, 2]]) == 0
    assert common_prefix([[1, 2, 3]]) == 0  # one prompt: nothing to share


def test_options_for_one_or_one_each() -> None:
    greedy = GenerationOptions(max_tokens=8)
    assert options_for(None, 2) == [GenerationOptions(), GenerationOptions()]
    assert options_for(greedy, 3) == [greedy] * 3
    assert options_for([greedy, GenerationOptions()], 2)[1] == GenerationOptions()
    with pytest.raises(ValueError, match="1 GenerationOptions for 2 requests"):
        options_for([greedy], 2)


class _OneAtATime:
    """A runtime with ``chat`` only (as third-party runtimes may be): ``chat_many`` falls back to it."""

    name, model = "fake", "fake"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def chat(self, messages: Any, options: Any = None) -> Generation:
        text = messages[-1].content.upper()
        self.seen.append(text)
        return Generation(text, "fake", "fake", 3, len(text.split()), 0.0, 0.1)


def test_chat_many_falls_back_to_one_chat_after_another_and_reports_progress() -> None:
    runtime = _OneAtATime()
    reports: list[tuple[int, int]] = []
    out = chat_many(
        runtime, [_conversation(q, None) for q in QUESTIONS[:3]], progress=lambda d, t: reports.append((d, t))
    )  # type: ignore[arg-type]
    assert [g.text for g in out] == [q.upper() for q in QUESTIONS[:3]] == runtime.seen
    assert [d for d, _ in reports] == [1, 2, 3]
    assert reports[-1][1] == sum(g.completion_tokens for g in out)


def test_concurrent_chat_keeps_the_order_and_runs_requests_at_once() -> None:
    lock, active, peak = threading.Lock(), [0], [0]

    def chat(messages: Any, options: Any) -> Generation:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05 if "WACC" in messages[-1].content else 0.01)  # finishes out of order
        with lock:
            active[0] -= 1
        return Generation(messages[-1].content, "m", "r", 1, 1, 0.0, 0.0)

    done: list[int] = []
    out = concurrent_chat(chat, [_conversation(q) for q in QUESTIONS], None, 3, lambda d, t: done.append(d))
    assert [g.text for g in out] == QUESTIONS
    assert peak[0] == 3 and done == [1, 2, 3, 4, 5, 6]


def test_concurrent_chat_raises_the_first_failure() -> None:
    def chat(messages: Any, options: Any) -> Generation:
        if "WACC" in messages[-1].content:
            raise ModelRuntimeError("server fell over")
        return Generation("ok", "m", "r", 1, 1, 0.0, 0.0)

    with pytest.raises(ModelRuntimeError, match="server fell over"):
        concurrent_chat(chat, [_conversation(q) for q in QUESTIONS], None, 2, None)


def test_ollama_chat_many_sends_the_requests_concurrently(ollama_server: OllamaStub) -> None:
    from equitune.serve.ollama_runtime import OllamaRuntime

    lock, active, peak = threading.Lock(), [0], [0]

    def reply(prompt: str) -> str:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return "answer to: " + prompt.rsplit("user\n", 1)[-1].split("<|im_end|>")[0]

    template = (
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
    )
    ollama_server.add_model("equity_research_llama:v1", template=template)
    ollama_server.reply_fn = reply
    runtime = OllamaRuntime("equity_research_llama:v1", ollama_server.host)
    out = runtime.chat_many([_conversation(q, None) for q in QUESTIONS], GenerationOptions(max_tokens=32), batch_size=3)
    assert [g.text for g in out] == [f"answer to: {q}" for q in QUESTIONS]
    assert peak[0] == 3
    assert len(ollama_server.requests_to("/api/chat")) == len(QUESTIONS)


def test_openai_chat_many_answers_in_order() -> None:
    from runtime_helpers import openai_stand_in

    from equitune.serve.openai_runtime import OpenAIRuntime

    with openai_stand_in() as server:
        runtime = OpenAIRuntime("equity:v1", server.url, timeout=5)
        out = runtime.chat_many(
            [_conversation(q, None) for q in QUESTIONS], GenerationOptions(max_tokens=64), batch_size=4
        )
    assert [g.text for g in out] == [f"echo {q}" for q in QUESTIONS]
    assert all(g.runtime == "openai" for g in out)


# ------------------------------------------------------------------------------------ llama.cpp, tiny model


def _one_at_a_time(runtime: Any, conversations: list[list[Message]], options: list[GenerationOptions]) -> list[Any]:
    return [runtime.chat(c, o) for c, o in zip(conversations, options, strict=True)]


def _same(batched: list[Generation], single: list[Generation]) -> None:
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.completion_tokens for g in batched] == [g.completion_tokens for g in single]
    assert [g.prompt_tokens for g in batched] == [g.prompt_tokens for g in single]
    assert [g.finish_reason for g in batched] == [g.finish_reason for g in single]


@pytest.mark.parametrize("batch_size", [1, 2, 4, 6])
def test_greedy_batches_equal_one_at_a_time_on_the_tiny_model(tiny: Any, batch_size: int) -> None:
    conversations = [_conversation(q) for q in QUESTIONS]
    # different lengths, so requests finish at different steps and waiting ones take their slots
    options = [GenerationOptions(max_tokens=12 + 7 * i, temperature=0.0, repeat_penalty=1.1) for i in range(6)]
    single = _one_at_a_time(tiny, conversations, options)
    batched = tiny.chat_many(conversations, options, batch_size=batch_size)
    _same(batched, single)
    assert all(g.extra["batched"] for g in batched)


def test_seeded_sampling_in_a_batch_equals_one_at_a_time(tiny: Any) -> None:
    conversations = [_conversation(q) for q in QUESTIONS[:4]]
    options = [GenerationOptions(max_tokens=24, temperature=0.9, top_p=0.95, top_k=40, seed=11 + i) for i in range(4)]
    _same(tiny.chat_many(conversations, options, batch_size=4), _one_at_a_time(tiny, conversations, options))


def test_stop_strings_end_each_sequence_where_chat_ends_it(tiny: Any) -> None:
    conversations = [_conversation(q) for q in QUESTIONS[:3]]
    free = _one_at_a_time(tiny, conversations, [GenerationOptions(max_tokens=30)] * 3)
    stop = free[1].text[8:11]  # a piece of the second answer: it stops there, the others may or may not
    options = [GenerationOptions(max_tokens=30, stop=(stop,))] * 3
    single = _one_at_a_time(tiny, conversations, options)
    batched = tiny.chat_many(conversations, options, batch_size=3)
    _same(batched, single)
    assert batched[1].finish_reason == "stop" and stop not in batched[1].text


def test_generate_many_equals_generate(tiny: Any) -> None:
    prompts = ["The discount rate", "Free cash flow is", "A bank's net interest margin"]
    options = GenerationOptions(max_tokens=16)
    _same(tiny.generate_many(prompts, options, batch_size=3), [tiny.generate(p, options) for p in prompts])


def test_batched_progress_counts_requests_and_tokens(tiny: Any) -> None:
    reports: list[tuple[int, int]] = []
    out = tiny.chat_many(
        [_conversation(q) for q in QUESTIONS[:3]],
        GenerationOptions(max_tokens=10),
        batch_size=2,
        progress=lambda d, t: reports.append((d, t)),
    )
    assert reports[-1] == (3, sum(g.completion_tokens for g in out))
    assert [d for d, _ in reports] == sorted(d for d, _ in reports)


def test_a_prompt_longer_than_the_window_is_refused_before_decoding(tiny: Any) -> None:
    long = "word " * 600
    with pytest.raises(ModelRuntimeError, match=r"request 1: the prompt's \d+ tokens exceed the context window of 512"):
        tiny.chat_many([_conversation("short"), _conversation(long)], GenerationOptions(max_tokens=4))


def test_the_runtime_cannot_batch_after_close(tiny_gguf: Path) -> None:
    from equitune.serve.llamacpp_runtime import LlamaCppRuntime

    runtime = LlamaCppRuntime(tiny_gguf, n_ctx=256, n_threads=1)
    runtime.chat_many([_conversation("hi")], GenerationOptions(max_tokens=2))
    runtime.close()
    with pytest.raises(ModelRuntimeError, match="has been closed"):
        runtime.chat_many([_conversation("hi")], GenerationOptions(max_tokens=2))


# ------------------------------------------------------------------------------------- the embedded model


@pytest.mark.slow
def test_greedy_batches_equal_one_at_a_time_on_the_embedded_model() -> None:
    """Held-out evaluation prompts (about 1,150 tokens each, so several prompt chunks), the evaluation's greedy
    options, four at once. The quantised model's Q8_0 output matrix goes through llamafile's tinyBLAS, whose
    arithmetic depends on the chunk's shape: this fails if the decoder cuts prompt chunks differently from
    one-at-a-time evaluation (see docs/batched_generation.md)."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from equitune.config import EquituneConfig
    from equitune.evaluate.benchmark import generation_options
    from equitune.evaluate.prompts import default_prompts
    from equitune.serve.llamacpp_runtime import LlamaCppRuntime
    from equitune.train.base_model import embedded_gguf_path

    config = EquituneConfig()
    config.evaluation.max_tokens = 48
    options = generation_options(config, 0, 1)
    prompts = default_prompts(config, max_prompts=4)
    conversations = [_conversation(p.prompt, p.system) for p in prompts]
    runtime = LlamaCppRuntime(embedded_gguf_path(), n_ctx=4096)
    try:
        single = [runtime.chat(c, options) for c in conversations]
        _same(runtime.chat_many(conversations, options, batch_size=4), single)
    finally:
        runtime.close()
