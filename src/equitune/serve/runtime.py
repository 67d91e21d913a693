"""The ``Runtime`` protocol every text-generation back end implements, and the value types it exchanges.

Evaluation, the report generator and ``equitune chat`` talk to a model only through this protocol, so they work
the same against the embedded llama.cpp runtime, an Ollama server and any OpenAI-compatible endpoint.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from equitune.errors import EquituneError

Role = Literal["system", "user", "assistant"]


class ModelRuntimeError(EquituneError):
    """A runtime could not load a model or answer a request; the message names the runtime and the model."""


@dataclass(frozen=True)
class Message:
    role: Role
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class GenerationOptions:
    """Decoding options; ``temperature == 0`` means greedy. ``None`` leaves the runtime's own default."""

    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float | None = None
    top_k: int | None = None
    repeat_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    num_ctx: int | None = None


@dataclass(frozen=True)
class Generation:
    """One completed generation with its token counts and timings (seconds)."""

    text: str
    model: str
    runtime: str
    prompt_tokens: int
    completion_tokens: int
    prompt_seconds: float
    completion_seconds: float
    finish_reason: str = "stop"  # "stop" (end-of-turn or stop string) or "length" (max_tokens reached)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        """Generation throughput (completion tokens per second of decoding)."""
        return self.completion_tokens / self.completion_seconds if self.completion_seconds > 0 else 0.0


@runtime_checkable
class Runtime(Protocol):
    """A loaded model behind some back end."""

    name: str  # the runtime kind: "llama.cpp", "ollama", "openai"
    model: str  # the model it serves (a name, a GGUF path, ...)

    def chat(self, messages: Sequence[Message], options: GenerationOptions | None = None) -> Generation:
        """Complete a conversation; the model's chat template is applied by the runtime."""
        ...

    def generate(self, prompt: str, options: GenerationOptions | None = None) -> Generation:
        """Complete a raw prompt (no chat template)."""
        ...

    def stream_chat(self, messages: Sequence[Message], options: GenerationOptions | None = None) -> Iterator[str]:
        """Complete a conversation, yielding text pieces as they are produced."""
        ...

    def close(self) -> None:
        """Release the model (a no-op for remote runtimes)."""
        ...
