"""The ``Runtime`` of a model served by Ollama, through the official ``ollama`` client.

``chat`` and ``stream_chat`` go to ``/api/chat`` (Ollama applies the model's TEMPLATE and SYSTEM);
``generate`` sends a raw prompt to ``/api/generate`` with ``raw: true`` (no template). ``GenerationOptions``
become Ollama ``options``; Ollama's token counts and nanosecond durations become a ``Generation``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from equitune.export.ollama_api import (
    ModelNameError,
    OllamaError,
    client_errors,
    ollama_client,
    resolve_host,
    translate_error,
    validate_model_name,
)
from equitune.serve.runtime import (
    ConcurrentRequests,
    Generation,
    GenerationOptions,
    Message,
    ModelRuntimeError,
)

if TYPE_CHECKING:
    import ollama

_NS = 1e9


def ollama_options(options: GenerationOptions) -> dict[str, Any]:
    """Ollama request ``options`` for ``options``. Options left at None are not sent, so the model's own
    PARAMETERs apply; an empty ``stop`` is not sent either (an empty list would replace the Modelfile's stops).
    A grammar is refused: Ollama's ``format`` constrains answers to a JSON schema only."""
    if options.grammar is not None:
        raise ModelRuntimeError(
            "Ollama cannot apply a grammar (grounded decoding); use the embedded llama.cpp runtime for it"
        )
    out: dict[str, Any] = {"num_predict": options.max_tokens, "temperature": options.temperature}
    for name in ("top_p", "top_k", "repeat_penalty", "seed", "num_ctx"):
        value = getattr(options, name)
        if value is not None:
            out[name] = value
    if options.stop:
        out["stop"] = list(options.stop)
    return out


def to_generation(
    response: ollama.ChatResponse | ollama.GenerateResponse, text: str, model: str, host: str
) -> Generation:
    """A ``Generation`` from Ollama's final response (counts, durations in ns, ``done_reason``)."""
    done_reason = response.done_reason or "stop"
    return Generation(
        text=text,
        model=model,
        runtime="ollama",
        prompt_tokens=int(response.prompt_eval_count or 0),
        completion_tokens=int(response.eval_count or 0),
        prompt_seconds=(response.prompt_eval_duration or 0) / _NS,
        completion_seconds=(response.eval_duration or 0) / _NS,
        finish_reason="length" if done_reason == "length" else "stop",
        extra={
            "done_reason": done_reason,
            "total_seconds": (response.total_duration or 0) / _NS,
            "load_seconds": (response.load_duration or 0) / _NS,
            "host": host,
        },
    )


class OllamaRuntime(ConcurrentRequests):
    """A model an Ollama server runs, addressed by name (``equity_research_llama:v2``)."""

    name = "ollama"

    def __init__(self, model: str, host: str | None = None, timeout: float | None = 600.0) -> None:
        self.model = model
        self.host = resolve_host(host)
        try:
            validate_model_name(model)
            self._client: ollama.Client | None = ollama_client(self.host, timeout)
        except (ModelNameError, OllamaError) as exc:
            raise ModelRuntimeError(f"ollama: cannot serve '{model}': {exc}") from exc

    def _live(self) -> ollama.Client:
        if self._client is None:
            raise ModelRuntimeError(f"ollama: the runtime for '{self.model}' was closed")
        return self._client

    def _fail(self, exc: BaseException, operation: str) -> ModelRuntimeError:
        error = translate_error(exc, self.host, operation)
        return ModelRuntimeError(f"ollama: model '{self.model}': {error}")

    def chat(self, messages: Sequence[Message], options: GenerationOptions | None = None) -> Generation:
        """Complete a conversation; Ollama applies the model's template (and its SYSTEM when none is given)."""
        client = self._live()
        try:
            response = client.chat(
                model=self.model,
                messages=[m.as_dict() for m in messages],
                options=ollama_options(options or GenerationOptions()),
                stream=False,
            )
        except client_errors() as exc:
            raise self._fail(exc, "chat") from exc
        return to_generation(response, response.message.content or "", self.model, self.host)

    def generate(self, prompt: str, options: GenerationOptions | None = None) -> Generation:
        """Complete ``prompt`` as it is (``raw``: no template, no system prompt)."""
        client = self._live()
        try:
            response = client.generate(
                model=self.model,
                prompt=prompt,
                raw=True,
                options=ollama_options(options or GenerationOptions()),
                stream=False,
            )
        except client_errors() as exc:
            raise self._fail(exc, "generate") from exc
        return to_generation(response, response.response or "", self.model, self.host)

    def stream_chat(self, messages: Sequence[Message], options: GenerationOptions | None = None) -> Iterator[str]:
        """Complete a conversation, yielding the text pieces as Ollama streams them."""
        client = self._live()
        try:
            for part in client.chat(
                model=self.model,
                messages=[m.as_dict() for m in messages],
                options=ollama_options(options or GenerationOptions()),
                stream=True,
            ):
                if part.message.content:
                    yield part.message.content
        except client_errors() as exc:
            raise self._fail(exc, "chat") from exc

    def stream_chat_generation(
        self, messages: Sequence[Message], options: GenerationOptions | None = None
    ) -> Iterator[str | Generation]:
        """Like ``stream_chat``, then the ``Generation`` (full text, counts, timings) as the last item."""
        client = self._live()
        pieces: list[str] = []
        try:
            for part in client.chat(
                model=self.model,
                messages=[m.as_dict() for m in messages],
                options=ollama_options(options or GenerationOptions()),
                stream=True,
            ):
                if part.message.content:
                    pieces.append(part.message.content)
                    yield part.message.content
                if part.done:
                    yield to_generation(part, "".join(pieces), self.model, self.host)
        except client_errors() as exc:
            raise self._fail(exc, "chat") from exc

    def close(self) -> None:
        """Close the HTTP connection pool (the model stays loaded in Ollama)."""
        if self._client is not None:
            self._client.close()
            self._client = None
