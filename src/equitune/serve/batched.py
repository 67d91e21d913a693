"""Many sequences decoded together in one llama.cpp context: the batched path of the embedded runtime.

Decoding one sequence on a CPU reads every weight for every token. Decoding several together reads them once per
step for all of them, so the tokens of one step cost little more than one token did. ``BatchDecoder`` does this
through llama.cpp's ``llama_batch`` / ``llama_decode``, with one sequence id per request:

* **Continuous batching.** ``batch_size`` requests decode at once. When one finishes, the next waiting request
  takes its slot at the following step, so one long answer does not leave the other slots idle.
* **A KV stream per sequence** (``kv_unified = False``): each request attends only to its own cells, laid out as
  they would be if it ran alone (position p in cell p), so the batch does no attention work over the other
  requests' cells and each sequence's attention sums run over the same cells in the same order as one at a time.
* **Shared prefix.** The tokens that begin every prompt of a call (the chat template's opening, a common system
  prompt or instruction) are evaluated once, on a sequence of their own; each request's stream starts as a copy
  of it (``llama_memory_seq_cp``, a copy of the KV data) and evaluates only its own suffix.
* **Per-sequence sampling.** Each request has its own sampler chain, built by llama-cpp-python's own
  ``Llama._init_sampler``: repeat, frequency and presence penalties over the last ``last_n_tokens_size``
  generated tokens, then greedy, or top-k, typical, top-p, min-p, temperature and a seeded draw. It follows
  ``Llama._create_completion`` step by step: end-of-generation tokens, stop strings (the text is cut before the
  first), ``max_tokens``, the wait for a multi-byte UTF-8 character to finish. The same request therefore gets the
  same sampler, the same stops and the same text rules as ``create_completion`` one at a time.
* **A grammar checked, not applied, while greedy.** ``create_completion`` runs a request's grammar over the whole
  vocabulary at every step, which costs more than the step's decoding on a CPU. A greedy request here samples
  without it and asks the grammar only about the token chosen; when the grammar rejects it, the step is sampled
  again with the grammar over every candidate (llama.cpp's own ``common_sampler`` does the same). Penalties only
  scale a logit and the grammar only removes tokens, so the greedy choice is the one the full grammar gives;
  sampled requests keep the full grammar, whose draw the shortcut would change.

How close batched greedy text comes to one-at-a-time text depends on llama.cpp's kernels, not on this code: see
``docs/batched_generation.md`` and ``benchmarks/generation_throughput.py``, which measures it.
"""

from __future__ import annotations

import ctypes
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from equitune.serve.runtime import BatchProgress, ModelRuntimeError

_CTX_ROUND = 256  # llama.cpp pads the KV cache to a multiple of 256 cells


@dataclass(frozen=True)
class SequenceRequest:
    """One prompt as llama-cpp-python's ``create_completion`` would receive it: the prompt's tokens and the
    sampling keywords (``temperature``, ``top_k``, ``top_p``, ``min_p``, ``typical_p``, ``repeat_penalty``,
    ``frequency_penalty``, ``presence_penalty``, ``seed``)."""

    prompt_tokens: tuple[int, ...]
    max_tokens: int
    stop: tuple[str, ...] = ()
    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int = 0
    grammar: str | None = None  # GBNF text, applied after the penalties as create_completion applies it


@dataclass
class SequenceResult:
    """What one request produced, with its timings in seconds from the start of the call."""

    text: str
    tokens: list[int]
    prompt_tokens: int
    finish_reason: str  # "stop" (end of generation or a stop string) or "length"
    started_s: float  # the request took a slot
    first_token_s: float  # its first token was sampled (its prompt was evaluated)
    finished_s: float

    @property
    def prompt_seconds(self) -> float:
        return self.first_token_s - self.started_s

    @property
    def completion_seconds(self) -> float:
        return self.finished_s - self.first_token_s


@dataclass
class _Slot:
    index: int  # position of the request in the call
    seq_id: int
    request: SequenceRequest
    sampler: Any
    started_s: float
    pos: int = 0  # position of the next token to evaluate
    pending: list[int] = field(default_factory=list)  # prompt tokens still to evaluate
    tokens: list[int] = field(default_factory=list)
    text: bytes = b""
    multibyte_fix: int = 0
    last: int | None = None  # the sampled token to evaluate at the next step
    first_token_s: float | None = None
    finish: str = "stop"
    stops: tuple[bytes, ...] = ()  # the request's stop strings, encoded once


def common_prefix(prompts: Sequence[Sequence[int]]) -> int:
    """The number of tokens every prompt begins with, at most the shortest prompt's length minus one (each
    request must evaluate at least one token of its own, whose logits give its first token)."""
    if len(prompts) < 2:
        return 0
    first, limit = prompts[0], min(len(p) for p in prompts) - 1
    n = 0
    while n < limit and all(p[n] == first[n] for p in prompts[1:]):
        n += 1
    return n


class BatchDecoder:
    """Decodes many ``SequenceRequest`` s through one llama.cpp context of its own on ``llm``'s model.

    ``llm`` is a loaded ``llama_cpp.Llama``; its model, thread counts and batch sizes are reused, its own context is
    left alone. The context has ``batch_size + 1`` KV streams (one per slot, one for the shared prefix), each long
    enough for the prefix and the longest request's own prompt and answer; it is kept while later calls fit in it.
    """

    def __init__(self, llm: Any, llama_cpp: Any) -> None:
        self._llm = llm
        self._lib = llama_cpp
        self._ctx: Any = None
        self._ctx_cells = 0
        self._ctx_seqs = 0
        self._piece_buffer = (ctypes.c_char * 32)()
        self._bos = int(llm.token_bos())

    # -------------------------------------------------------------------------------------------- public

    def run(
        self, requests: Sequence[SequenceRequest], batch_size: int, progress: BatchProgress | None = None
    ) -> list[SequenceResult]:
        """Every request decoded, ``batch_size`` at a time; the results in the order of ``requests``."""
        if not requests:
            return []
        batch_size = max(1, min(batch_size, len(requests)))
        n_ctx_seq = int(self._llm.n_ctx())
        for i, r in enumerate(requests):
            if not r.prompt_tokens:
                raise ModelRuntimeError(f"request {i}: the prompt has no tokens")
            if len(r.prompt_tokens) >= n_ctx_seq:
                raise ModelRuntimeError(
                    f"request {i}: the prompt's {len(r.prompt_tokens)} tokens exceed the context window of "
                    f"{n_ctx_seq} tokens"
                )
        limits = [self._max_tokens(r, n_ctx_seq) for r in requests]
        prefix = common_prefix([r.prompt_tokens for r in requests])
        own = max(len(r.prompt_tokens) - prefix + m for r, m in zip(requests, limits, strict=True))
        lib = self._lib
        ctx = self._context(prefix + own + 1, batch_size + 1)
        memory = lib.llama_get_memory(ctx)
        lib.llama_memory_clear(memory, True)
        n_batch = int(self._llm.n_batch)
        batch = lib.llama_batch_init(max(n_batch, batch_size), 0, 1)
        prefix_seq = batch_size  # the shared prefix lives on a sequence no request uses
        start = time.perf_counter()
        results: list[SequenceResult | None] = [None] * len(requests)
        try:
            for at in range(0, prefix, n_batch):
                tokens = requests[0].prompt_tokens[at : min(at + n_batch, prefix)]
                self._decode(ctx, batch, [(tok, at + k, prefix_seq, False) for k, tok in enumerate(tokens)])
            waiting = list(range(len(requests)))[::-1]
            slots: list[_Slot] = []
            free = list(range(batch_size))[::-1]
            finished = generated = 0
            while waiting or slots:
                while waiting and free:
                    index, seq_id = waiting.pop(), free.pop()
                    request = requests[index]
                    if prefix:
                        lib.llama_memory_seq_cp(memory, prefix_seq, seq_id, -1, -1)  # across streams: whole
                    slots.append(
                        _Slot(
                            index=index,
                            seq_id=seq_id,
                            request=request,
                            sampler=self._sampler(request),
                            started_s=time.perf_counter() - start,
                            pos=prefix,
                            pending=list(request.prompt_tokens[prefix:]),
                            stops=tuple(x.encode("utf-8") for x in request.stop),
                        )
                    )
                # One step: a chunk of one request's prompt, alone in its batch and cut where one-at-a-time
                # evaluation cuts it (multiples of n_batch from position 0); then one token of every decoding slot.
                steps: list[tuple[list[tuple[int, int, int, bool]], list[tuple[_Slot, int]]]] = []
                filling = next((slot for slot in slots if slot.pending), None)
                if filling is not None:
                    take = filling.pending[: n_batch - filling.pos % n_batch]
                    del filling.pending[: len(take)]
                    chunk = [
                        (tok, filling.pos + k, filling.seq_id, not filling.pending and k == len(take) - 1)
                        for k, tok in enumerate(take)
                    ]
                    filling.pos += len(take)
                    steps.append((chunk, [(filling, len(chunk) - 1)] if not filling.pending else []))
                decoding = [(slot, slot.last) for slot in slots if slot.last is not None]
                if decoding:
                    steps.append(
                        (
                            [(last, slot.pos, slot.seq_id, True) for slot, last in decoding],
                            [(slot, i) for i, (slot, _) in enumerate(decoding)],
                        )
                    )
                    for slot, _ in decoding:
                        slot.pos += 1
                for entries, sample_at in steps:
                    self._decode(ctx, batch, entries)
                    now = time.perf_counter() - start
                    for slot, at in sample_at:
                        if isinstance(slot.sampler, CheckedGrammar):
                            token = slot.sampler.sample(ctx, at)
                        else:
                            token = int(lib.llama_sampler_sample(slot.sampler.sampler, ctx, at))
                        if slot.first_token_s is None:
                            slot.first_token_s = now
                        before = len(slot.tokens)
                        done = self._accept(slot, token, limits[slot.index])
                        generated += len(slot.tokens) - before
                        if done is not None:
                            results[slot.index] = SequenceResult(
                                text=done.decode("utf-8", errors="ignore"),
                                tokens=list(slot.tokens),
                                prompt_tokens=len(slot.request.prompt_tokens),
                                finish_reason=slot.finish,
                                started_s=slot.started_s,
                                first_token_s=slot.first_token_s,
                                finished_s=time.perf_counter() - start,
                            )
                            lib.llama_memory_seq_rm(memory, slot.seq_id, -1, -1)
                            slot.sampler.close()
                            slots.remove(slot)
                            free.append(slot.seq_id)
                            finished += 1
                if progress is not None:
                    progress(finished, generated)
        finally:
            lib.llama_batch_free(batch)
        return [r for r in results if r is not None]

    def close(self) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            self._lib.llama_free(ctx)

    # ------------------------------------------------------------------------------------------ internals

    @staticmethod
    def _max_tokens(request: SequenceRequest, n_ctx: int) -> int:
        """``max_tokens`` as ``create_completion`` limits it: the rest of the context window when not positive,
        and never past the window."""
        n = len(request.prompt_tokens)
        limit = request.max_tokens if request.max_tokens > 0 else n_ctx - n
        return limit if limit + n < n_ctx else n_ctx - n

    def _context(self, per_sequence: int, seqs: int) -> Any:
        """A context of ``seqs`` KV streams of at least ``per_sequence`` cells each (the current one when it is
        big enough)."""
        per_sequence = -(-per_sequence // _CTX_ROUND) * _CTX_ROUND
        if self._ctx is not None and self._ctx_cells >= per_sequence and self._ctx_seqs >= seqs:
            return self._ctx
        cells = per_sequence * seqs
        self.close()
        lib, base = self._lib, self._llm.context_params
        params = lib.llama_context_default_params()
        for name, _ in type(base)._fields_:
            setattr(params, name, getattr(base, name))
        params.n_ctx = cells
        params.n_seq_max = seqs
        params.kv_unified = False  # a KV stream per sequence: no attention over the other sequences' cells
        ctx = lib.llama_init_from_model(self._llm._model.model, params)
        if not ctx:
            raise ModelRuntimeError(
                f"llama.cpp could not create a context of {cells} cells for {seqs} sequences (out of memory?); "
                "lower evaluation.batch_size"
            )
        self._ctx, self._ctx_cells, self._ctx_seqs = ctx, per_sequence, seqs
        return ctx

    def _decode(self, ctx: Any, batch: Any, entries: Sequence[tuple[int, int, int, bool]]) -> None:
        if not entries:
            return
        for i, (token, pos, seq_id, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq_id
            batch.logits[i] = logits
        batch.n_tokens = len(entries)
        code = int(self._lib.llama_decode(ctx, batch))
        if code != 0:
            raise ModelRuntimeError(
                f"llama.cpp could not decode a batch of {len(entries)} tokens (llama_decode returned {code}: "
                + ("no room in the KV cache" if code == 1 else "error")
                + ")"
            )

    def _sampler(self, request: SequenceRequest) -> Any:
        """The request's sampler chain, built by llama-cpp-python's own ``Llama._init_sampler`` with the request's
        seed, exactly as ``create_completion`` builds it; a greedy request's grammar is checked on the chain's
        choice instead (``CheckedGrammar``)."""
        seeded = LlamaView(self._llm, _seed=request.seed)
        checked = request.grammar is not None and request.temperature == 0.0
        grammar = None
        if request.grammar is not None and not checked:
            grammar = self._lib.llama_grammar.LlamaGrammar.from_string(request.grammar, verbose=False)
        chain = type(self._llm)._init_sampler(
            seeded,
            top_k=request.top_k,
            top_p=request.top_p,
            min_p=request.min_p,
            typical_p=request.typical_p,
            temp=request.temperature,
            repeat_penalty=request.repeat_penalty,
            frequency_penalty=request.frequency_penalty,
            presence_penalty=request.presence_penalty,
            grammar=grammar,
        )
        if checked:
            assert request.grammar is not None
            return CheckedGrammar(self._lib, chain, self._llm._model.vocab, request.grammar, int(self._llm.n_vocab()))
        return chain

    def _accept(self, slot: _Slot, token: int, limit: int) -> bytes | None:
        """``Llama._create_completion``'s rules for one sampled token: the text when the request is finished
        (``slot.finish`` says why), None while it goes on (``slot.last`` is then the token to evaluate next)."""
        lib, vocab = self._lib, self._llm._model.vocab
        slot.last = None
        if lib.llama_vocab_is_eog(vocab, token):
            slot.finish = "stop"
            return slot.text
        slot.tokens.append(token)
        slot.text += self._piece(token, first=len(slot.tokens) == 1)
        tail = slot.text[-3:]
        for k, char in enumerate(tail):
            k = 3 - k
            for num, pattern in ((2, 192), (3, 224), (4, 240)):
                if num > k and pattern & char == pattern:
                    slot.multibyte_fix = num - k
        if slot.multibyte_fix > 0:
            slot.multibyte_fix -= 1
            slot.last = token
            return None
        stops = [s for s in slot.stops if s in slot.text]
        if stops:
            slot.finish = "stop"
            return slot.text[: slot.text.index(stops[0])]
        if len(slot.tokens) >= limit:
            slot.finish = "length"
            return slot.text
        slot.last = token
        return None

    def _piece(self, token: int, first: bool) -> bytes:
        """The token's text as ``LlamaModel.detokenize`` writes it (a leading space after a BOS dropped)."""
        buffer = self._piece_buffer
        n = self._lib.llama_token_to_piece(self._llm._model.vocab, self._lib.llama_token(token), buffer, 32, 0, False)
        piece = buffer.raw[:n]
        if first and token == self._bos and piece[:1] == b" ":
            piece = piece[1:]
        return piece


class LlamaView:
    """``llm`` with some attributes replaced (``LlamaView(llm, _seed=7)``): what llama-cpp-python's own methods
    read as ``self`` when they are run for one request, or with a call caught instead of run."""

    def __init__(self, llm: Any, **replaced: Any) -> None:
        self._llm = llm
        self.__dict__.update(replaced)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)


_TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)


class CheckedGrammar:
    """A greedy sampler chain with a grammar that is asked only about the chain's choice.

    ``sample`` runs the chain (penalties, then greedy) over all candidates and checks the token it picks against the
    grammar with a one-candidate array; only when the grammar rejects it does it run the grammar over every
    candidate and the chain again. Both the chain and the grammar then accept the token. The chosen token is always
    the one ``create_completion`` picks with the grammar in its chain (see the module's notes)."""

    def __init__(self, lib: Any, chain: Any, vocab: Any, grammar: str, n_vocab: int) -> None:
        self._lib = lib
        self.chain = chain
        self._grammar = lib.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
        if not self._grammar:
            chain.close()
            raise ModelRuntimeError("llama.cpp could not parse the request's grammar")
        self._n = n_vocab
        self._cells = (lib.llama_token_data * n_vocab)()
        self._view = np.frombuffer(self._cells, dtype=_TOKEN_DATA)
        self._ids = np.arange(n_vocab, dtype=np.intc)
        self._all = lib.llama_token_data_array(self._cells, n_vocab, -1, False)
        self._one_cell = (lib.llama_token_data * 1)()
        self._one = lib.llama_token_data_array(self._one_cell, 1, -1, False)

    def _fill(self, logits: Any) -> None:
        self._view["id"] = self._ids
        self._view["logit"] = np.ctypeslib.as_array(logits, shape=(self._n,))
        self._view["p"] = 0.0
        self._all.size, self._all.selected, self._all.sorted = self._n, -1, False

    def _chosen(self) -> int:
        if not 0 <= self._all.selected < self._all.size:
            raise ModelRuntimeError("the grammar admits no token at this step")
        return int(self._cells[self._all.selected].id)

    def sample(self, ctx: Any, at: int) -> int:
        lib = self._lib
        logits = lib.llama_get_logits_ith(ctx, at)
        self._fill(logits)
        lib.llama_sampler_apply(self.chain.sampler, ctypes.byref(self._all))
        token = self._chosen()
        self._one_cell[0].id, self._one_cell[0].logit, self._one_cell[0].p = token, 0.0, 0.0
        self._one.size, self._one.selected, self._one.sorted = 1, -1, False
        lib.llama_sampler_apply(self._grammar, ctypes.byref(self._one))
        if not math.isfinite(self._one_cell[0].logit):
            self._fill(logits)
            lib.llama_sampler_apply(self._grammar, ctypes.byref(self._all))
            lib.llama_sampler_apply(self.chain.sampler, ctypes.byref(self._all))
            token = self._chosen()
        lib.llama_sampler_accept(self._grammar, token)
        lib.llama_sampler_accept(self.chain.sampler, token)
        return token

    def close(self) -> None:
        self.chain.close()
        grammar, self._grammar = self._grammar, None
        if grammar:
            self._lib.llama_sampler_free(grammar)
