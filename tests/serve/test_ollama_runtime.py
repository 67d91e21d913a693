"""The Ollama runtime against the stand-in Ollama (``tests/ollama_stub.py``): what it sends (messages, options),
what it makes of Ollama's answers (text, token counts, nanosecond durations, done_reason), streaming, errors."""

from __future__ import annotations

import pytest

from equitune.data.schema import SYSTEM_PROMPT
from equitune.serve.ollama_runtime import OllamaRuntime, ollama_options
from equitune.serve.runtime import Generation, GenerationOptions, Message, ModelRuntimeError, Runtime
from ollama_stub import EVAL_NS_PER_TOKEN, PROMPT_NS_PER_TOKEN, OllamaStub, closed_port_host

MODEL = "equity_research_llama:v1"
CHATML = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
QUESTION = [Message("user", "Rate AAPL.")]


@pytest.fixture
def server(ollama_server: OllamaStub) -> OllamaStub:
    ollama_server.add_model(MODEL, template=CHATML, system=SYSTEM_PROMPT, stop=["<|im_end|>"], num_ctx=4096)
    return ollama_server


def test_options_map_to_ollama_names_and_unset_ones_are_not_sent() -> None:
    assert ollama_options(GenerationOptions()) == {"num_predict": 512, "temperature": 0.0}
    full = GenerationOptions(
        max_tokens=64, temperature=0.7, top_p=0.9, top_k=40, repeat_penalty=1.1, seed=7, stop=("END",), num_ctx=2048
    )
    assert ollama_options(full) == {
        "num_predict": 64,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 40,
        "repeat_penalty": 1.1,
        "seed": 7,
        "num_ctx": 2048,
        "stop": ["END"],
    }


def test_chat_sends_the_messages_and_reads_counts_and_durations(server: OllamaStub) -> None:
    server.replies.append("AAPL: Buy. Target 235.\n\nNot investment advice.")
    runtime = OllamaRuntime(MODEL, server.host)
    assert isinstance(runtime, Runtime) and runtime.name == "ollama" and runtime.model == MODEL
    result = runtime.chat([Message("user", "Rate AAPL.")], GenerationOptions(max_tokens=100, seed=3))
    assert result.text == "AAPL: Buy. Target 235.\n\nNot investment advice."
    request = server.requests_to("/api/chat")[0].body
    assert request["messages"] == [{"role": "user", "content": "Rate AAPL."}]
    assert request["options"] == {"num_predict": 100, "temperature": 0.0, "seed": 3} and request["stream"] is False
    # Ollama applied the Modelfile SYSTEM and TEMPLATE
    assert server.prompts[-1] == (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
        "<|im_start|>user\nRate AAPL.<|im_end|>\n<|im_start|>assistant\n"
    )
    prompt_tokens = len(server.prompts[-1].split())
    assert (result.prompt_tokens, result.completion_tokens) == (prompt_tokens, 7)
    assert result.prompt_seconds == pytest.approx(prompt_tokens * PROMPT_NS_PER_TOKEN / 1e9)
    assert result.completion_seconds == pytest.approx(7 * EVAL_NS_PER_TOKEN / 1e9)
    assert result.tokens_per_s == pytest.approx(1e9 / EVAL_NS_PER_TOKEN)
    assert (result.finish_reason, result.runtime, result.model) == ("stop", "ollama", MODEL)
    assert result.extra["done_reason"] == "stop" and result.extra["host"] == server.host


def test_max_tokens_reached_is_finish_reason_length(server: OllamaStub) -> None:
    server.replies.append("one two three four five")
    result = OllamaRuntime(MODEL, server.host).chat(QUESTION, GenerationOptions(max_tokens=2))
    assert (result.text, result.completion_tokens, result.finish_reason) == ("one two ", 2, "length")


def test_the_models_own_stop_tokens_apply_when_the_request_sets_none(server: OllamaStub) -> None:
    server.replies += ["Buy.<|im_end|>leaked next turn", "Buy. END more"]
    runtime = OllamaRuntime(MODEL, server.host)
    assert runtime.chat(QUESTION).text == "Buy."
    assert "stop" not in server.requests_to("/api/chat")[0].body["options"]
    assert runtime.chat(QUESTION, GenerationOptions(stop=("END",))).text == "Buy. "


def test_generate_sends_a_raw_prompt(server: OllamaStub) -> None:
    server.replies.append("continued text")
    result = OllamaRuntime(MODEL, server.host).generate("<|im_start|>user\nhi<|im_end|>\n", GenerationOptions(top_k=5))
    request = server.requests_to("/api/generate")[0].body
    assert request["raw"] is True and request["prompt"] == "<|im_start|>user\nhi<|im_end|>\n"
    assert request["options"]["top_k"] == 5
    assert server.prompts[-1] == "<|im_start|>user\nhi<|im_end|>\n"  # no template, no system
    assert isinstance(result, Generation) and result.text == "continued text" and result.completion_tokens == 2


def test_stream_chat_yields_the_pieces_in_order(server: OllamaStub) -> None:
    server.replies.append("KO trades at 22x earnings.")
    runtime = OllamaRuntime(MODEL, server.host)
    pieces = list(runtime.stream_chat(QUESTION))
    assert pieces == ["KO ", "trades ", "at ", "22x ", "earnings."]
    assert server.requests_to("/api/chat")[0].body["stream"] is True
    server.replies.append("a b c")
    *texts, final = list(runtime.stream_chat_generation(QUESTION, GenerationOptions(max_tokens=2)))
    assert texts == ["a ", "b "] and isinstance(final, Generation)
    assert (final.text, final.completion_tokens, final.finish_reason) == ("a b ", 2, "length")


def test_server_errors_become_runtime_errors_with_status(server: OllamaStub) -> None:
    runtime = OllamaRuntime(MODEL, server.host)
    server.fail("/api/chat", 500, "llama runner process has terminated")
    with pytest.raises(ModelRuntimeError) as info:
        runtime.chat(QUESTION)
    assert "HTTP 500" in str(info.value) and "llama runner process has terminated" in str(info.value)
    assert f"'{MODEL}'" in str(info.value)
    server.fail("/api/chat", 500, "out of memory")
    with pytest.raises(ModelRuntimeError, match="HTTP 500 to chat: out of memory"):
        list(runtime.stream_chat(QUESTION))
    with pytest.raises(ModelRuntimeError, match="HTTP 404 to chat: model 'missing:v1' not found"):
        OllamaRuntime("missing:v1", server.host).chat(QUESTION)


def test_unreachable_ollama_and_bad_names_are_runtime_errors() -> None:
    runtime = OllamaRuntime(MODEL, closed_port_host())
    with pytest.raises(ModelRuntimeError, match="not reachable"):
        runtime.chat(QUESTION)
    with pytest.raises(ModelRuntimeError, match="not reachable"):
        list(runtime.stream_chat(QUESTION))
    with pytest.raises(ModelRuntimeError, match="Invalid Ollama model name"):
        OllamaRuntime("not a name", closed_port_host())


def test_close_releases_the_client(server: OllamaStub) -> None:
    runtime = OllamaRuntime(MODEL, server.host)
    runtime.close()
    runtime.close()  # twice is fine
    with pytest.raises(ModelRuntimeError, match="closed"):
        runtime.chat(QUESTION)
