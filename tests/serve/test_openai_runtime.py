"""The OpenAI-compatible runtime against a local stand-in server: requests sent, answers parsed, streaming, errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from runtime_helpers import Scripted, StandIn, closed_port, openai_stand_in

from equitune.serve.openai_runtime import OpenAIRuntime, normalise_endpoint
from equitune.serve.runtime import GenerationOptions, Message, ModelRuntimeError, Runtime

CONVERSATION = [Message("system", "You are an analyst."), Message("user", "rate the stock a buy")]


@pytest.fixture
def server() -> Iterator[StandIn]:
    with openai_stand_in() as state:
        yield state


@pytest.fixture
def runtime(server: StandIn) -> OpenAIRuntime:
    return OpenAIRuntime("equity:v1", server.url, timeout=5)


def test_implements_the_runtime_protocol(runtime: OpenAIRuntime) -> None:
    assert isinstance(runtime, Runtime)
    assert runtime.name == "openai"
    assert runtime.model == "equity:v1"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1"),
        ("http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080/v1"),
        ("localhost:11434", "http://localhost:11434/v1"),
    ],
)
def test_endpoint_forms_normalise(given: str, expected: str) -> None:
    assert normalise_endpoint(given) == expected


def test_chat_sends_messages_and_options_and_parses_the_answer(server: StandIn, runtime: OpenAIRuntime) -> None:
    options = GenerationOptions(max_tokens=32, temperature=0.0, top_p=0.9, top_k=40, seed=7, stop=("</s>",))
    generation = runtime.chat(CONVERSATION, options)

    assert generation.text == "echo rate the stock a buy"
    assert generation.finish_reason == "stop"
    assert generation.prompt_tokens == (4 + 2) + (5 + 2)
    assert generation.completion_tokens == 6
    assert generation.runtime == "openai"
    assert generation.model == "equity:v1"
    assert generation.completion_seconds > 0
    assert generation.extra["timing"] == "round trip"

    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    body = request["body"]
    assert body["model"] == "equity:v1"
    assert body["messages"] == [
        {"role": "system", "content": "You are an analyst."},
        {"role": "user", "content": "rate the stock a buy"},
    ]
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["top_k"], body["seed"]) == (
        32,
        0.0,
        0.9,
        40,
        7,
    )
    assert body["stop"] == ["</s>"]
    assert "stream" not in body
    assert request["authorization"] is None


def test_max_tokens_gives_finish_reason_length(runtime: OpenAIRuntime) -> None:
    generation = runtime.chat(CONVERSATION, GenerationOptions(max_tokens=3))
    assert generation.text == "echo rate the"
    assert generation.finish_reason == "length"
    assert generation.completion_tokens == 3


def test_server_timings_are_used_when_present(server: StandIn, runtime: OpenAIRuntime) -> None:
    server.timings = True
    generation = runtime.chat(CONVERSATION)
    assert (generation.prompt_seconds, generation.completion_seconds) == (0.25, 0.5)
    assert generation.tokens_per_s == pytest.approx(6 / 0.5)
    assert generation.extra["timing"] == "server"


def test_generate_uses_the_completions_endpoint(server: StandIn, runtime: OpenAIRuntime) -> None:
    generation = runtime.generate("The price target is", GenerationOptions(max_tokens=10))
    assert generation.text == "echo The price target is"
    assert generation.prompt_tokens == 4
    (request,) = server.requests
    assert request["path"] == "/v1/completions"
    assert request["body"]["prompt"] == "The price target is"
    assert "messages" not in request["body"]


def test_api_key_is_sent_as_bearer_token(server: StandIn) -> None:
    OpenAIRuntime("m", server.url, api_key="sk-test").chat(CONVERSATION)
    assert server.requests[0]["authorization"] == "Bearer sk-test"


def test_stream_chat_yields_pieces_that_join_to_the_full_answer(server: StandIn, runtime: OpenAIRuntime) -> None:
    pieces = list(runtime.stream_chat(CONVERSATION, GenerationOptions(max_tokens=4)))
    assert pieces == ["echo", " rate", " the", " stock"]
    assert server.requests[0]["body"]["stream"] is True
    assert "".join(pieces) == runtime.chat(CONVERSATION, GenerationOptions(max_tokens=4)).text


def test_stream_error_event_raises(server: StandIn, runtime: OpenAIRuntime) -> None:
    server.scripted["/v1/chat/completions"] = Scripted(
        200, b'data: {"error": {"message": "context overflow"}}\n\ndata: [DONE]\n\n'
    )
    with pytest.raises(ModelRuntimeError, match="context overflow"):
        list(runtime.stream_chat(CONVERSATION))


def test_stream_closed_early_is_an_error(server: StandIn, runtime: OpenAIRuntime) -> None:
    # llama-cpp-python's server answers 200 and closes the stream when the request fails (a prompt too long)
    server.scripted["/v1/chat/completions"] = Scripted(200, b"")
    with pytest.raises(ModelRuntimeError, match="closed the stream .* before the answer was complete"):
        list(runtime.stream_chat(CONVERSATION))


def test_stream_without_done_but_finished_is_complete(server: StandIn, runtime: OpenAIRuntime) -> None:
    chunks = [
        b'data: {"choices": [{"delta": {"content": "Buy"}, "finish_reason": null}]}\n\n',
        b'data: {"choices": [{"delta": {}, "finish_reason": "stop"}]}\n\n',
    ]
    server.scripted["/v1/chat/completions"] = Scripted(200, b"".join(chunks))
    assert list(runtime.stream_chat(CONVERSATION)) == ["Buy"]


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (400, {"error": {"message": "max_tokens must be positive", "type": "invalid_request_error"}}, "positive"),
        (404, {"error": "model 'equity:v1' not found"}, "not found"),  # Ollama's shape
        (422, {"detail": [{"loc": ["body", "messages"], "msg": "field required"}]}, "field required"),  # FastAPI
        (500, b"Internal Server Error: CUDA out of memory", "CUDA out of memory"),
        (503, {"error": {"message": "Loading model", "code": 503}}, "Loading model"),
    ],
)
def test_http_errors_carry_status_and_server_message(
    server: StandIn, runtime: OpenAIRuntime, status: int, body: object, message: str
) -> None:
    server.scripted["/v1/chat/completions"] = Scripted(status, body)
    with pytest.raises(ModelRuntimeError, match=rf"HTTP {status} for model 'equity:v1'.*{message}"):
        runtime.chat(CONVERSATION)


def test_answer_that_is_not_json_is_reported(server: StandIn, runtime: OpenAIRuntime) -> None:
    server.scripted["/v1/completions"] = Scripted(200, b"<html>proxy login</html>")
    with pytest.raises(ModelRuntimeError, match="not JSON.*proxy login"):
        runtime.generate("hi")


def test_answer_without_choices_is_reported(server: StandIn, runtime: OpenAIRuntime) -> None:
    server.scripted["/v1/chat/completions"] = Scripted(200, {"object": "chat.completion", "choices": []})
    with pytest.raises(ModelRuntimeError, match="without choices"):
        runtime.chat(CONVERSATION)


def test_unreachable_endpoint_names_the_endpoint() -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    runtime = OpenAIRuntime("m", endpoint, timeout=2)
    with pytest.raises(ModelRuntimeError, match=rf"{endpoint}/v1 is not reachable \(connection refused\)"):
        runtime.chat(CONVERSATION)
    with pytest.raises(ModelRuntimeError, match="not reachable"):
        list(runtime.stream_chat(CONVERSATION))
