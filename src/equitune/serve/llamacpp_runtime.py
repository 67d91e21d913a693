"""The embedded runtime: a GGUF model (optionally with a LoRA adapter GGUF) loaded in-process by llama.cpp through
``llama-cpp-python``.

``chat`` applies the chat template stored in the GGUF itself (``tokenizer.chat_template``), so the model sees exactly
the format it was trained with; ``generate`` sends the raw prompt. Temperature 0 is greedy decoding, so equal
requests give equal text.

Timings: llama.cpp's own performance counters give the prompt-evaluation time; the rest of the wall-clock time of
the call (decoding, sampling, detokenising) is the completion time, so ``tokens_per_s`` is what a user waits for.

The model is not thread-safe: use one runtime per thread, one request at a time.
"""

from __future__ import annotations

import os
import random
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from equitune.errors import EquituneError
from equitune.llamacpp import LlamaCppLoadError, open_llama
from equitune.llamacpp import default_threads as default_threads  # re-exported for the server and tests
from equitune.serve.batched import BatchDecoder, LlamaView, SequenceRequest, SequenceResult
from equitune.serve.runtime import (
    DEFAULT_BATCH_SIZE,
    BatchProgress,
    Generation,
    GenerationOptions,
    Message,
    ModelRuntimeError,
    options_for,
)

INSTALL_HINT = "pip install 'equitune[serve]'"
GGUF_TEMPLATE_FORMAT = "chat_template.default"  # llama-cpp-python's name for the GGUF's own chat template


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelRuntimeError(
            f"The llama.cpp runtime needs llama-cpp-python, which is not installed ({exc}); install it with: "
            f"{INSTALL_HINT}"
        ) from None
    return llama_cpp


def _check_gguf(path: Path, what: str) -> None:
    if not path.is_file():
        raise ModelRuntimeError(f"llama.cpp cannot load the {what} {path}: no such file.")
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ModelRuntimeError(f"llama.cpp cannot read the {what} {path}: {exc}.") from None
    if magic != b"GGUF":
        raise ModelRuntimeError(f"llama.cpp cannot load the {what} {path}: it is not a GGUF file (magic {magic!r}).")


def _check_adapter_type(path: Path) -> None:
    from equitune.train.base_model import read_gguf_metadata

    try:
        kind = read_gguf_metadata(path, ["general.type"]).get("general.type")
    except (OSError, ValueError, OverflowError, MemoryError, struct.error, EquituneError) as exc:
        raise ModelRuntimeError(f"The LoRA adapter {path} has a damaged GGUF header ({exc}).") from None
    if kind is not None and kind != "adapter":
        raise ModelRuntimeError(
            f"{path} is not a LoRA adapter GGUF (its general.type is '{kind}'); pass the adapter as lora_path and the "
            "base model as model_path."
        )


class LlamaCppRuntime:
    """A GGUF model served in-process by llama.cpp.

    ``lora_path`` is a LoRA adapter in GGUF form applied on top of ``model_path``; ``chat_format`` overrides the
    GGUF's chat template with one of llama-cpp-python's named formats (``chatml``, ``llama-3``, ...);
    ``n_threads=None`` uses every CPU this process may run on; ``seed`` makes sampled (temperature > 0) output
    reproducible when a request gives no seed of its own. ``display_name`` is what ``model`` reports (default: the
    GGUF path).
    """

    name = "llama.cpp"
    accepts_grammar = True  # GenerationOptions.grammar is applied by llama.cpp's grammar sampler

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        lora_path: str | os.PathLike[str] | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        chat_format: str | None = None,
        seed: int = 0,
        verbose: bool = False,
        display_name: str | None = None,
    ):
        self.model_path = Path(model_path).expanduser()
        self.lora_path = Path(lora_path).expanduser() if lora_path is not None else None
        self.model = display_name or str(self.model_path)
        self.seed = seed
        self._batch: BatchDecoder | None = None  # made at the first chat_many / generate_many
        _check_gguf(self.model_path, "model")
        if self.lora_path is not None:
            _check_gguf(self.lora_path, "LoRA adapter")
            _check_adapter_type(self.lora_path)
        self._llama_cpp = _import_llama_cpp()
        try:
            self._llm: Any = open_llama(
                self.model_path,
                lora_path=str(self.lora_path) if self.lora_path is not None else None,
                n_ctx=n_ctx,
                n_threads=n_threads or default_threads(),
                chat_format=chat_format,
                seed=seed,
                verbose=verbose,
            )
        except (ValueError, RuntimeError, OSError, LlamaCppLoadError) as exc:
            adapter = f" with the LoRA adapter {self.lora_path}" if self.lora_path is not None else ""
            raise ModelRuntimeError(f"llama.cpp failed to load {self.model_path}{adapter}: {exc}") from None
        # llama-cpp-python 0.3.x does not notice when llama.cpp fails to read an adapter (a NULL pointer is not None)
        if self.lora_path is not None and not getattr(self._llm, "_lora_adapter", True):
            self.close()
            raise ModelRuntimeError(
                f"llama.cpp could not load the LoRA adapter {self.lora_path} onto {self.model_path}; is it an adapter "
                "GGUF written for this base model (convert_lora_to_gguf.py)?"
            )
        if chat_format is None and "tokenizer.chat_template" in self._llm.metadata:
            # llama-cpp-python may swap a GGUF template for a built-in look-alike; use the file's own one
            self._llm.chat_format = GGUF_TEMPLATE_FORMAT
        self.chat_format: str | None = self._llm.chat_format
        self.n_ctx: int = int(self._llm.n_ctx())

    # ------------------------------------------------------------------------------------ Runtime API

    def chat(self, messages: Sequence[Message], options: GenerationOptions | None = None) -> Generation:
        """Complete a conversation with the GGUF's chat template applied."""
        opts = options or GenerationOptions()
        llm = self._loaded()
        response = self._timed(
            lambda: llm.create_chat_completion(messages=[m.as_dict() for m in messages], **self._params(opts))
        )
        data, prompt_s, completion_s = response
        choice = data["choices"][0]
        return self._generation(str(choice["message"].get("content") or ""), choice, data, prompt_s, completion_s)

    def generate(self, prompt: str, options: GenerationOptions | None = None) -> Generation:
        """Complete a raw prompt; special tokens written in it (``<|im_start|>``) are read as special tokens."""
        opts = options or GenerationOptions()
        llm = self._loaded()
        data, prompt_s, completion_s = self._timed(lambda: llm.create_completion(prompt=prompt, **self._params(opts)))
        choice = data["choices"][0]
        return self._generation(str(choice.get("text") or ""), choice, data, prompt_s, completion_s)

    def stream_chat(self, messages: Sequence[Message], options: GenerationOptions | None = None) -> Iterator[str]:
        """Complete a conversation, yielding text pieces as llama.cpp decodes them."""
        opts = options or GenerationOptions()
        llm = self._loaded()
        try:
            chunks = llm.create_chat_completion(
                messages=[m.as_dict() for m in messages], stream=True, **self._params(opts)
            )
            for chunk in chunks:
                piece = chunk["choices"][0]["delta"].get("content")
                if piece:
                    yield piece
        except ValueError as exc:  # prompt longer than the context window
            raise ModelRuntimeError(f"llama.cpp could not complete the chat with {self.model}: {exc}") from None

    def chat_many(
        self,
        conversations: Sequence[Sequence[Message]],
        options: GenerationOptions | Sequence[GenerationOptions] | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: BatchProgress | None = None,
    ) -> list[Generation]:
        """Complete many conversations, ``batch_size`` decoding together in one llama.cpp context (see
        ``equitune.serve.batched``); the answers in the order of ``conversations``."""
        opts = options_for(options, len(conversations))
        requests = [self._chat_request(m, o) for m, o in zip(conversations, opts, strict=True)]
        return self._run_batch(requests, batch_size, progress)

    def generate_many(
        self,
        prompts: Sequence[str],
        options: GenerationOptions | Sequence[GenerationOptions] | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: BatchProgress | None = None,
    ) -> list[Generation]:
        """Complete many raw prompts together (the batched ``generate``)."""
        opts = options_for(options, len(prompts))
        requests = [self._raw_request(p, o) for p, o in zip(prompts, opts, strict=True)]
        return self._run_batch(requests, batch_size, progress)

    def close(self) -> None:
        """Free the model and its context; later requests raise ``ModelRuntimeError``."""
        batch, self._batch = self._batch, None
        if batch is not None:
            batch.close()
        llm, self._llm = self._llm, None
        if llm is not None and hasattr(llm, "close"):
            llm.close()

    def __enter__(self) -> LlamaCppRuntime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --------------------------------------------------------------------------------------- helpers

    def tokenize(self, text: str) -> list[int]:
        """The tokens llama.cpp reads for ``text`` as a prompt (BOS added when the model wants one, special tokens
        recognised), i.e. what ``generate`` counts as prompt tokens."""
        return list(self._loaded().tokenize(text.encode("utf-8"), add_bos=True, special=True))

    def _chat_request(self, messages: Sequence[Message], opts: GenerationOptions) -> SequenceRequest:
        """The request ``chat`` would send to ``create_completion``: llama-cpp-python's own chat handler formats and
        tokenises the conversation and adds the template's stop strings; its completion call is caught, not run."""
        llm = self._loaded()
        try:
            type(llm).create_chat_completion(
                LlamaView(llm, create_completion=_capture),
                messages=[m.as_dict() for m in messages],
                **self._params(opts),
            )
        except _Captured as captured:
            return _request_of(captured.kwargs, llm)
        except ValueError as exc:
            raise ModelRuntimeError(f"llama.cpp could not format the chat for {self.model}: {exc}") from None
        raise ModelRuntimeError(f"llama.cpp's chat handler for {self.model} did not call create_completion")

    def _raw_request(self, prompt: str, opts: GenerationOptions) -> SequenceRequest:
        """The request ``generate`` sends: the prompt tokenised as ``create_completion`` does for text."""
        llm = self._loaded()
        bos = int(llm.token_bos())
        head = [bos] if llm._model.add_bos_token() and bos != -1 else []
        tokens = (head + list(llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))) if prompt else [bos]
        return _request_of({**self._params(opts), "prompt": tokens}, llm)

    def _run_batch(
        self, requests: list[SequenceRequest], batch_size: int, progress: BatchProgress | None
    ) -> list[Generation]:
        llm = self._loaded()
        if self._batch is None:
            self._batch = BatchDecoder(llm, self._llama_cpp)
        results = self._batch.run(requests, batch_size, progress)
        return [self._batched_generation(r) for r in results]

    def _batched_generation(self, result: SequenceResult) -> Generation:
        return Generation(
            text=result.text,
            model=self.model,
            runtime=self.name,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=len(result.tokens),
            prompt_seconds=result.prompt_seconds,
            completion_seconds=result.completion_seconds,
            finish_reason=result.finish_reason,
            extra={
                "model_path": str(self.model_path),
                "lora_path": str(self.lora_path) if self.lora_path else None,
                "batched": True,
                "first_token_s": result.first_token_s,
                "finished_s": result.finished_s,
            },
        )

    def _loaded(self) -> Any:
        if self._llm is None:
            raise ModelRuntimeError(f"The llama.cpp runtime for {self.model} has been closed.")
        return self._llm

    def _params(self, opts: GenerationOptions) -> dict[str, Any]:
        # GenerationOptions.num_ctx is ignored: llama.cpp fixes the context size when the model is loaded (n_ctx).
        params: dict[str, Any] = {
            "max_tokens": opts.max_tokens,
            "temperature": opts.temperature,
            "seed": opts.seed if opts.seed is not None else self.seed,
            "stop": list(opts.stop),
        }
        if opts.top_p is not None:
            params["top_p"] = opts.top_p
        if opts.top_k is not None:
            params["top_k"] = opts.top_k
        if opts.repeat_penalty is not None:
            params["repeat_penalty"] = opts.repeat_penalty
        if opts.grammar is not None:
            params["grammar"] = self._llama_cpp.llama_grammar.LlamaGrammar.from_string(opts.grammar, verbose=False)
        return params

    def _timed(self, call: Callable[[], Any]) -> tuple[dict[str, Any], float, float]:
        """Run a non-streaming completion; returns its answer, prompt-evaluation seconds and completion seconds."""
        ctx = self._loaded().ctx
        self._llama_cpp.llama_perf_context_reset(ctx)
        start = time.perf_counter()
        try:
            data = call()
        except ValueError as exc:  # prompt longer than the context window
            raise ModelRuntimeError(f"llama.cpp could not complete the request to {self.model}: {exc}") from None
        elapsed = time.perf_counter() - start
        prompt_s = min(elapsed, float(self._llama_cpp.llama_perf_context(ctx).t_p_eval_ms) / 1000.0)
        return data, prompt_s, elapsed - prompt_s

    def _generation(
        self, text: str, choice: dict[str, Any], data: dict[str, Any], prompt_s: float, completion_s: float
    ) -> Generation:
        usage = data.get("usage") or {}
        return Generation(
            text=text,
            model=self.model,
            runtime=self.name,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            prompt_seconds=prompt_s,
            completion_seconds=completion_s,
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            extra={"model_path": str(self.model_path), "lora_path": str(self.lora_path) if self.lora_path else None},
        )


class _Captured(Exception):
    def __init__(self, kwargs: dict[str, Any]) -> None:
        super().__init__("create_completion")
        self.kwargs = kwargs


def _capture(**kwargs: Any) -> Any:
    """``create_completion`` as the chat handler sees it in ``_chat_request``: its keywords caught, nothing run."""
    raise _Captured(kwargs)


_UNSUPPORTED = ("logits_processor", "logit_bias", "suffix")


def _request_of(kwargs: dict[str, Any], llm: Any) -> SequenceRequest:
    """A ``SequenceRequest`` from ``create_completion`` keywords (the seed chosen as it chooses one)."""
    for name in _UNSUPPORTED:
        if kwargs.get(name) is not None:
            raise ModelRuntimeError(f"batched decoding does not support '{name}'; use chat() or generate()")
    if int(kwargs.get("mirostat_mode") or 0) != 0:
        raise ModelRuntimeError("batched decoding does not support mirostat sampling; use chat() or generate()")
    stop = kwargs.get("stop") or []
    seed = kwargs.get("seed")
    grammar = kwargs.get("grammar")
    if seed is None:
        seed = random.Random(llm._seed).randint(0, 2**32)
    return SequenceRequest(
        prompt_tokens=tuple(int(t) for t in kwargs["prompt"]),
        max_tokens=int(kwargs.get("max_tokens") or 0),
        stop=tuple([stop] if isinstance(stop, str) else stop),
        temperature=float(kwargs.get("temperature", 0.8)),
        top_k=int(kwargs.get("top_k", 40)),
        top_p=float(kwargs.get("top_p", 0.95)),
        min_p=float(kwargs.get("min_p", 0.05)),
        typical_p=float(kwargs.get("typical_p", 1.0)),
        repeat_penalty=float(kwargs.get("repeat_penalty", 1.0)),
        frequency_penalty=float(kwargs.get("frequency_penalty", 0.0)),
        presence_penalty=float(kwargs.get("presence_penalty", 0.0)),
        seed=int(seed),
        grammar=grammar._grammar if grammar is not None else None,
    )
