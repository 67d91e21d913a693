"""A runtime for any OpenAI-compatible server: llama.cpp's server, llama-cpp-python's server, vLLM, LM Studio and
Ollama's ``/v1`` endpoints.

Only the standard library is used (``urllib``), so no HTTP client package is needed. ``chat`` posts to
``/v1/chat/completions`` (the server applies the model's chat template), ``generate`` to ``/v1/completions``, and
``stream_chat`` reads the server-sent events (``data: {...}`` lines ending with ``data: [DONE]``).

Timings: servers built on llama.cpp add a ``timings`` object (``prompt_ms``, ``predicted_ms``) to each answer, which
is used when present; otherwise the whole round trip counts as completion time and ``prompt_seconds`` is 0
(``extra["timing"]`` says which).
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from equitune.serve.runtime import (
    ConcurrentRequests,
    Generation,
    GenerationOptions,
    Message,
    ModelRuntimeError,
)

DEFAULT_TIMEOUT_S = 300.0
_END_OF_STREAM: dict[str, Any] = {}  # yielded (by identity) when a stream closes without "data: [DONE]"


class OpenAIRuntime(ConcurrentRequests):
    """A model served by an OpenAI-compatible HTTP server at ``endpoint`` (``http://host:port``, with or without a
    trailing ``/v1``)."""

    name = "openai"

    def __init__(self, model: str, endpoint: str, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT_S):
        self.model = model
        self.endpoint = normalise_endpoint(endpoint)
        self.api_key = api_key
        self.timeout = timeout

    # ------------------------------------------------------------------------------------ Runtime API

    def chat(self, messages: Sequence[Message], options: GenerationOptions | None = None) -> Generation:
        """Complete a conversation with ``POST /v1/chat/completions``."""
        body = {"messages": [m.as_dict() for m in messages], **self._params(options)}
        start = time.perf_counter()
        data = self._post_json("/chat/completions", body)
        elapsed = time.perf_counter() - start
        choice = _first_choice(data, self.endpoint)
        message = choice.get("message") or {}
        return self._generation(str(message.get("content") or ""), choice, data, elapsed)

    def generate(self, prompt: str, options: GenerationOptions | None = None) -> Generation:
        """Complete a raw prompt with ``POST /v1/completions`` (no chat template)."""
        body = {"prompt": prompt, **self._params(options)}
        start = time.perf_counter()
        data = self._post_json("/completions", body)
        elapsed = time.perf_counter() - start
        choice = _first_choice(data, self.endpoint)
        return self._generation(str(choice.get("text") or ""), choice, data, elapsed)

    def stream_chat(self, messages: Sequence[Message], options: GenerationOptions | None = None) -> Iterator[str]:
        """Complete a conversation with ``"stream": true``, yielding each content delta as it arrives."""
        body = {"messages": [m.as_dict() for m in messages], **self._params(options), "stream": True}
        finished = False
        with self._open("/chat/completions", body) as response:
            for event in _sse_events(response, self.endpoint, self._no_answer):
                if event is _END_OF_STREAM:
                    # Servers that fail mid-request (llama-cpp-python's, on a prompt too long) just close the stream.
                    if finished:
                        return
                    raise ModelRuntimeError(
                        f"OpenAI-compatible server at {self.endpoint} closed the stream for model '{self.model}' "
                        "before the answer was complete (no finish_reason, no data: [DONE]); see the server's log."
                    )
                if "error" in event:
                    raise ModelRuntimeError(
                        f"OpenAI-compatible server at {self.endpoint} failed while streaming model '{self.model}': "
                        f"{_error_text(event)}"
                    )
                for choice in event.get("choices") or ():
                    finished = finished or choice.get("finish_reason") is not None
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        yield str(piece)

    def close(self) -> None:
        """Nothing to release: the server owns the model."""

    # ------------------------------------------------------------------------------------- internals

    def _params(self, options: GenerationOptions | None) -> dict[str, Any]:
        opts = options or GenerationOptions()
        params: dict[str, Any] = {"model": self.model, "max_tokens": opts.max_tokens, "temperature": opts.temperature}
        if opts.top_p is not None:
            params["top_p"] = opts.top_p
        if opts.seed is not None:
            params["seed"] = opts.seed
        if opts.stop:
            params["stop"] = list(opts.stop)
        # Not in OpenAI's API, but accepted by llama.cpp, vLLM and LM Studio; others ignore unknown fields.
        if opts.top_k is not None:
            params["top_k"] = opts.top_k
        if opts.repeat_penalty is not None:
            params["repeat_penalty"] = opts.repeat_penalty
        if opts.grammar is not None:
            raise ModelRuntimeError(
                f"the endpoint {self.endpoint} is not known to apply a grammar (grounded decoding); use the embedded "
                "llama.cpp runtime for it"
            )
        return params

    def _generation(self, text: str, choice: dict[str, Any], data: dict[str, Any], elapsed: float) -> Generation:
        usage = data.get("usage") or {}
        timings = data.get("timings")
        extra: dict[str, Any] = {"endpoint": self.endpoint}
        if isinstance(timings, dict) and "prompt_ms" in timings and "predicted_ms" in timings:
            prompt_s, completion_s = float(timings["prompt_ms"]) / 1000, float(timings["predicted_ms"]) / 1000
            extra["timing"] = "server"
        else:
            prompt_s, completion_s = 0.0, elapsed
            extra["timing"] = "round trip"
        finish = str(choice.get("finish_reason") or "stop")
        return Generation(
            text=text,
            model=str(data.get("model") or self.model),
            runtime=self.name,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            prompt_seconds=prompt_s,
            completion_seconds=completion_s,
            finish_reason="length" if finish == "length" else "stop",
            extra=extra,
        )

    def _post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._open(path, body) as response:
            try:
                raw = response.read()
            except (TimeoutError, ConnectionError) as exc:
                raise self._no_answer(exc) from None
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelRuntimeError(
                f"OpenAI-compatible server at {self.endpoint} answered {path} with something that is not JSON: "
                f"{raw[:200]!r}"
            ) from None
        if not isinstance(data, dict):
            raise ModelRuntimeError(f"OpenAI-compatible server at {self.endpoint} answered {path} with {data!r}.")
        return data

    def _open(self, path: str, body: dict[str, Any]) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = f"{self.endpoint}{path}"
        request = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST")
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            detail = _http_error_detail(exc)
            raise ModelRuntimeError(
                f"OpenAI-compatible server at {self.endpoint} answered HTTP {exc.code} for model '{self.model}' "
                f"({url}){f': {detail}' if detail else ''}"
            ) from None
        except urllib.error.URLError as exc:
            raise ModelRuntimeError(
                f"OpenAI-compatible server at {self.endpoint} is not reachable ({_reason(exc.reason)}); is it "
                "running, and is the endpoint right?"
            ) from None
        except (TimeoutError, ConnectionError) as exc:
            raise self._no_answer(exc) from None

    def _no_answer(self, exc: OSError) -> ModelRuntimeError:
        return ModelRuntimeError(
            f"OpenAI-compatible server at {self.endpoint} stopped answering ({_reason(exc)}; timeout {self.timeout}s)."
        )


def normalise_endpoint(endpoint: str) -> str:
    """``host:port``, ``http://host:port/`` and ``http://host:port/v1`` all become ``http://host:port/v1``."""
    value = endpoint.strip().rstrip("/")
    if not value:
        raise ModelRuntimeError("The OpenAI-compatible endpoint is empty; give a URL such as http://127.0.0.1:8080.")
    if "://" not in value:
        value = f"http://{value}"
    if not value.endswith("/v1"):
        value = f"{value}/v1"
    return value


def _first_choice(data: dict[str, Any], endpoint: str) -> dict[str, Any]:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ModelRuntimeError(f"OpenAI-compatible server at {endpoint} answered without choices: {data!r:.300}")
    return choices[0]


def _sse_events(
    response: Any, endpoint: str, no_answer: Callable[[OSError], ModelRuntimeError]
) -> Iterator[dict[str, Any]]:
    """The JSON payloads of a server-sent-event stream's ``data:`` lines, up to ``data: [DONE]``; a stream closed
    without ``data: [DONE]`` ends with ``_END_OF_STREAM``."""
    while True:
        try:
            raw_line = response.readline()
        except (TimeoutError, ConnectionError) as exc:
            raise no_answer(exc) from None
        if not raw_line:
            yield _END_OF_STREAM
            return
        line = raw_line.decode("utf-8").strip()
        if not line.startswith("data:"):
            continue  # blank separators, comments (": ping") and "event:" lines
        payload = line[len("data:") :].strip()
        if payload == "[DONE]":
            return
        try:
            event = json.loads(payload)
        except json.JSONDecodeError:
            raise ModelRuntimeError(
                f"OpenAI-compatible server at {endpoint} streamed an event that is not JSON: {payload:.200}"
            ) from None
        if isinstance(event, dict):
            yield event


def _http_error_detail(exc: urllib.error.HTTPError) -> str:
    """The server's own error message: OpenAI's ``{"error": {"message": ...}}``, ``{"error": "..."}`` (Ollama),
    FastAPI's ``{"detail": ...}``, or the start of the body."""
    try:
        raw = exc.read()
    except OSError:
        return ""
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw[:300].decode("utf-8", "replace").strip()
    if isinstance(payload, dict):
        return _error_text(payload)
    return str(payload)[:300]


def _error_text(payload: dict[str, Any]) -> str:
    error = payload.get("error", payload.get("detail"))
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error if error is not None else payload)


def _reason(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return "timed out"
    return str(reason) or type(reason).__name__
