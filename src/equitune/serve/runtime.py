"""The ``Runtime`` protocol every text-generation back end implements, and the value types it exchanges.

Evaluation, the report generator and ``equitune chat`` talk to a model only through this protocol, so they work
the same against the embedded llama.cpp runtime, an Ollama server and any OpenAI-compatible endpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from equitune.errors import EquituneError

Role = Literal["system", "user", "assistant"]

DEFAULT_BATCH_SIZE = 16
"""Sequences generated at once by default (``evaluation.batch_size``): on a 2-core CPU the quick-start model's
aggregate tokens/s still rose from 8 to 16 and little beyond (``benchmarks/generation_throughput.py``)."""


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
    grammar: str | None = None  # a GBNF grammar the answer must follow (equitune.serve.grounding builds one)


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


BatchProgress = Callable[[int, int], None]
"""Called as a batch goes on with (requests finished, tokens generated so far)."""


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

    def chat_many(
        self,
        conversations: Sequence[Sequence[Message]],
        options: GenerationOptions | Sequence[GenerationOptions] | None = None,
        *,
        batch_size: int = 1,
        progress: BatchProgress | None = None,
    ) -> list[Generation]:
        """Complete many conversations, up to ``batch_size`` at once (batched decoding in process, concurrent
        requests to a server); the answers in the order of ``conversations``, each as ``chat`` would give it."""
        ...

    def close(self) -> None:
        """Release the model (a no-op for remote runtimes)."""
        ...


def options_for(options: GenerationOptions | Sequence[GenerationOptions] | None, count: int) -> list[GenerationOptions]:
    """One ``GenerationOptions`` per request: the same for all, or one each (then exactly ``count`` of them)."""
    if options is None or isinstance(options, GenerationOptions):
        return [options or GenerationOptions()] * count
    listed = list(options)
    if len(listed) != count:
        raise ValueError(f"{len(listed)} GenerationOptions for {count} requests")
    return listed


def concurrent_chat(
    chat: Callable[[Sequence[Message], GenerationOptions], Generation],
    conversations: Sequence[Sequence[Message]],
    options: GenerationOptions | Sequence[GenerationOptions] | None,
    batch_size: int,
    progress: BatchProgress | None,
) -> list[Generation]:
    """``chat`` on every conversation with up to ``batch_size`` requests in flight at once (a server that runs
    requests in parallel, such as Ollama with ``OLLAMA_NUM_PARALLEL``, decodes them together); the answers in
    the order of ``conversations``. The first failure is raised once the requests in flight have ended."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    opts = options_for(options, len(conversations))
    out: list[Generation | None] = [None] * len(conversations)
    done = tokens = 0
    with ThreadPoolExecutor(max_workers=max(1, min(batch_size, len(conversations) or 1))) as pool:
        futures = {pool.submit(chat, m, o): i for i, (m, o) in enumerate(zip(conversations, opts, strict=True))}
        for future in as_completed(futures):
            generation = future.result()
            out[futures[future]] = generation
            done += 1
            tokens += generation.completion_tokens
            if progress is not None:
                progress(done, tokens)
    return [g for g in out if g is not None]


class ConcurrentRequests:
    """``chat_many`` for a runtime whose ``chat`` is a request to a server: up to ``batch_size`` requests in
    flight (``concurrent_chat``). Ollama decodes parallel requests together up to its ``OLLAMA_NUM_PARALLEL``,
    llama.cpp's server up to its ``--parallel`` slots."""

    def chat(self, messages: Sequence[Message], options: GenerationOptions | None = None) -> Generation:
        raise NotImplementedError

    def chat_many(
        self,
        conversations: Sequence[Sequence[Message]],
        options: GenerationOptions | Sequence[GenerationOptions] | None = None,
        *,
        batch_size: int = 1,
        progress: BatchProgress | None = None,
    ) -> list[Generation]:
        """Complete many conversations with up to ``batch_size`` requests in flight; the answers in the order of
        ``conversations``."""
        return concurrent_chat(self.chat, conversations, options, batch_size, progress)


def chat_many(
    runtime: Runtime,
    conversations: Sequence[Sequence[Message]],
    options: GenerationOptions | Sequence[GenerationOptions] | None = None,
    *,
    batch_size: int = 1,
    progress: BatchProgress | None = None,
) -> list[Generation]:
    """Complete many conversations on any runtime: its own ``chat_many`` (batched decoding, concurrent requests)
    when it has one, otherwise one ``chat`` after another. The answers come in the order of ``conversations``."""
    batched = getattr(runtime, "chat_many", None)
    if callable(batched):
        return list(batched(conversations, options, batch_size=batch_size, progress=progress))
    out: list[Generation] = []
    tokens = 0
    for messages, opts in zip(conversations, options_for(options, len(conversations)), strict=True):
        out.append(runtime.chat(messages, opts))
        tokens += out[-1].completion_tokens
        if progress is not None:
            progress(len(out), tokens)
    return out
