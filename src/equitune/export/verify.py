"""Check that a GGUF behaves in llama.cpp like the PyTorch model it was made from.

For each prompt, rendered with the tokenizer's chat template and a generation prompt, two things are compared:

1. **Tokenisation**: the ids llama.cpp gives the rendered text (special tokens parsed, no BOS added) must equal the
   Hugging Face tokenizer's (``add_special_tokens=False``), and both must agree on whether a BOS token goes in front
   by default. A different tokenisation means the served model sees other input than the trained one.
2. **Greedy continuation**: PyTorch decodes ``n_tokens`` greedily (``generate(do_sample=False)``, stopping after the
   chat's end-of-turn token); llama.cpp decodes greedily (argmax of its logits, no repetition penalty) from its own
   tokenisation, step by step beside it. Agreement is the number of tokens before the first divergence divided by
   ``n_tokens``; continuations identical up to the same end-of-turn agree fully.

   A **near-tie** is not a divergence: where llama.cpp's pick differs from PyTorch's but the two tokens' logits are
   within ``tie_tolerance`` of each other on both sides together (PyTorch's lead of its token plus llama.cpp's lead
   of its own), llama.cpp is given PyTorch's token and the comparison goes on; the position is reported. f16
   weights move logits by a few hundredths, which is enough to swap two candidates that are that close, and after
   such a swap two correct implementations write different texts. A layout bug (wrong q/k permutation, transposed
   LoRA matrices, wrong tokenizer) moves logits by whole units and still counts. ``tie_tolerance=0`` is the strict
   comparison.

The KV cache runs at f32 by default (``kv_cache_f32``): the cache type is a runtime setting, not part of the file,
and an f16 cache adds its own rounding to what is being checked.

What to require of which file (``MIN_AGREEMENT``):

- **f32 / f16 merged GGUF: full agreement** on the first 32 tokens. These hold the merged weights to within f16
  rounding, so a divergence means a conversion bug (tensor layout, tokenizer, template, hyper-parameters).
- **Base GGUF + adapter GGUF: full agreement**, checked on an f16 GGUF of the *same* base weights the adapter was
  merged into (the dequantised float32 base) plus the adapter GGUF, against the PyTorch merged model. This is the
  check that catches a wrong q/k permutation or swapped/transposed ``lora_a``/``lora_b``. The shipped base (the
  Q4_1 GGUF of the embedded model) is not used for it: it holds the same weights, but llama.cpp multiplies Q4_1
  weights with activations quantised to 8 bits, so it is not bit-comparable with PyTorch; measured on a trained
  adapter its texts parted from PyTorch's after 1-14 of 32 tokens, so requiring agreement there would fail correct
  exports. Its agreement can still be reported (``min_agreement_for("q4_1")`` is 0.0).
- **bf16, q8_0 and k-quants: agreement reported, not enforced** (``MIN_AGREEMENT`` 0.0). Quantisation moves logits
  by design, so the texts part after a few tokens with nothing wrong; the tokenisation check still applies. The f16
  (or adapter) check is the one that guards correctness; the quantised number tells how far the quantisation
  moved the model.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from equitune.errors import EquituneError
from equitune.io import atomic_write_json

log = logging.getLogger(__name__)

DEFAULT_PROMPTS: tuple[str, ...] = (
    "Write a one-paragraph investment summary for Apple (AAPL).",
    "What are the main risks for a Tesla (TSLA) shareholder?",
    "Explain in three sentences how a discounted cash flow valuation works.",
    "Rate Microsoft (MSFT) Buy, Hold or Sell and justify it briefly.",
)
"""Short equity-research requests used when no prompts are given."""

DEFAULT_TIE_TOLERANCE = 0.1
"""Logit difference under which two candidate tokens count as tied (see the module docstring)."""

MIN_AGREEMENT: dict[str, float] = {"f32": 1.0, "f16": 1.0, "adapter": 1.0}
"""Required greedy agreement by GGUF type ('adapter' = adapter GGUF on an f16 base); all other types 0.0."""


def min_agreement_for(gguf_type: str) -> float:
    """The agreement to require of a GGUF of ``gguf_type``: 1.0 for f32, f16 and adapter; 0.0 (reported only) for
    bf16 and every quantised type."""
    return MIN_AGREEMENT.get(gguf_type.lower(), 0.0)


class ExportVerificationError(EquituneError):
    """A GGUF does not behave like the model it was exported from (tokenisation or greedy text differ), or llama.cpp
    cannot load it. ``report`` holds the full comparison when one was made."""

    def __init__(self, message: str, report: VerificationReport | None = None):
        super().__init__(message)
        self.report = report


@dataclass
class PromptResult:
    """The comparison for one prompt."""

    prompt: str
    tokenisation_identical: bool
    """Same ids from llama.cpp and the Hugging Face tokenizer, and the same default BOS handling."""
    prompt_tokens_hf: int
    prompt_tokens_gguf: int
    first_token_difference: int | None
    """Index of the first prompt token that differs (None when the tokenisations are identical)."""
    agreeing_tokens: int
    """Generated tokens that agree before the first divergence."""
    n_tokens: int
    agreement: float
    """``agreeing_tokens / n_tokens``, or 1.0 when no divergence (also when both stopped at the same end-of-turn)."""
    reference_text: str
    gguf_text: str
    reference_tokens: list[int] = field(default_factory=list)
    gguf_tokens: list[int] = field(default_factory=list)
    near_ties: list[int] = field(default_factory=list)
    """Generated positions where the two picks differed only by a near-tie (llama.cpp then took PyTorch's token)."""
    logit_gap_at_divergence: float | None = None
    """At the divergence: PyTorch's lead of its token plus llama.cpp's lead of its own (large = a real difference)."""

    def divergence(self) -> str:
        """Where the two outputs part, in a few words, for error messages and logs."""
        ties = f"; {len(self.near_ties)} near-tie(s) at {self.near_ties}" if self.near_ties else ""
        if not self.tokenisation_identical:
            counts = f"{self.prompt_tokens_hf} HF vs {self.prompt_tokens_gguf} llama.cpp tokens"
            return f"tokenisation differs at prompt token {self.first_token_difference} ({counts}){ties}"
        if self.agreement >= 1.0:
            return f"identical{ties}"
        k = self.agreeing_tokens
        ref = self.reference_tokens[k] if k < len(self.reference_tokens) else None
        got = self.gguf_tokens[k] if k < len(self.gguf_tokens) else None
        gap = self.logit_gap_at_divergence
        size = f", logit gap {gap:.3f}" if gap is not None else ""
        return f"diverges at generated token {k}: PyTorch id {ref}, llama.cpp id {got}{size}{ties}"


@dataclass
class VerificationReport:
    """The result of ``verify_gguf``; ``to_dict()`` is JSON-serialisable."""

    gguf_path: str
    lora_path: str | None
    n_tokens: int
    min_agreement: float
    tie_tolerance: float
    prompts: list[PromptResult]
    seconds: float = 0.0

    @property
    def tokenisation_identical(self) -> bool:
        return all(p.tokenisation_identical for p in self.prompts)

    @property
    def min_observed_agreement(self) -> float:
        return min((p.agreement for p in self.prompts), default=1.0)

    @property
    def mean_agreement(self) -> float:
        return sum(p.agreement for p in self.prompts) / len(self.prompts) if self.prompts else 1.0

    @property
    def passed(self) -> bool:
        return self.tokenisation_identical and self.min_observed_agreement >= self.min_agreement

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            passed=self.passed,
            tokenisation_identical=self.tokenisation_identical,
            min_observed_agreement=self.min_observed_agreement,
            mean_agreement=self.mean_agreement,
        )
        return data

    def write_json(self, path: str | Path) -> Path:
        """Write ``to_dict()`` to ``path`` atomically."""
        return atomic_write_json(path, self.to_dict())

    def summary(self) -> str:
        """A headline, then one line per prompt: agreement and where the outputs part (with both texts when so)."""
        what = Path(self.gguf_path).name + (f" + adapter {Path(self.lora_path).name}" if self.lora_path else "")
        tokenisation = "identical" if self.tokenisation_identical else "DIFFERS"
        lines = [
            f"{what}: {'passed' if self.passed else 'FAILED'} (agreement min {self.min_observed_agreement:.2f}, "
            f"mean {self.mean_agreement:.2f}, required {self.min_agreement:.2f}; tokenisation {tokenisation})"
        ]
        for i, result in enumerate(self.prompts, 1):
            lines.append(
                f"  prompt {i}: {result.agreeing_tokens}/{result.n_tokens} tokens agree ({result.agreement:.2f}); "
                f"{result.divergence()}"
            )
            if result.agreement < 1.0 or not result.tokenisation_identical:
                lines.append(f"    PyTorch:   {result.reference_text!r}")
                lines.append(f"    llama.cpp: {result.gguf_text!r}")
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        """Raise ``ExportVerificationError`` (with the summary) unless the verification passed."""
        if not self.passed:
            raise ExportVerificationError(f"GGUF verification failed: {self.summary()}", self)


def verify_gguf(
    gguf_path: str | Path,
    reference_model: Any,
    tokenizer: Any,
    prompts: Sequence[str] | None = None,
    *,
    lora_path: str | Path | None = None,
    n_tokens: int = 32,
    min_agreement: float = 1.0,
    tie_tolerance: float = DEFAULT_TIE_TOLERANCE,
    system: str | None = None,
    kv_cache_f32: bool = True,
    raise_on_failure: bool = True,
) -> VerificationReport:
    """Compare llama.cpp running ``gguf_path`` (plus the adapter GGUF ``lora_path``) with ``reference_model`` in
    PyTorch on ``prompts`` (``DEFAULT_PROMPTS`` when None), each rendered with ``tokenizer``'s chat template (with
    ``system`` as a system message when given) and a generation prompt; see the module docstring for what is
    compared and what to require of which file (``min_agreement_for``).

    Returns a ``VerificationReport``. When it did not pass (a tokenisation differs, or a prompt's agreement is below
    ``min_agreement``) raises ``ExportVerificationError`` carrying it, unless ``raise_on_failure`` is False. A file
    llama.cpp cannot load raises ``ExportVerificationError`` whatever ``raise_on_failure`` says.
    """
    started = time.perf_counter()
    path = Path(gguf_path)
    if not path.is_file():
        raise ExportVerificationError(f"Cannot verify {path}: no such file")
    if lora_path is not None and not Path(lora_path).is_file():
        raise ExportVerificationError(f"Cannot verify with adapter {lora_path}: no such file")
    if not 0.0 <= min_agreement <= 1.0:
        raise EquituneError(f"min_agreement must be between 0 and 1, not {min_agreement}")
    if n_tokens < 1 or tie_tolerance < 0:
        raise EquituneError(f"n_tokens must be >= 1 and tie_tolerance >= 0 (got {n_tokens}, {tie_tolerance})")
    if lora_path is not None:
        check_adapter_fits(path, Path(lora_path))
    prompt_list = list(prompts) if prompts is not None else list(DEFAULT_PROMPTS)
    if not prompt_list:
        raise EquituneError("verify_gguf needs at least one prompt")
    texts = [_render(tokenizer, prompt, system) for prompt in prompt_list]
    hf_ids = [[int(t) for t in tokenizer(text, add_special_tokens=False)["input_ids"]] for text in texts]
    stop_ids = _stop_ids(tokenizer)
    hf_adds_bos = _hf_adds_bos(tokenizer)
    n_ctx = max(len(ids) for ids in hf_ids) * 2 + n_tokens + 16  # room for a llama.cpp tokenisation that differs

    was_training = bool(getattr(reference_model, "training", False))
    reference_model.eval()
    results: list[PromptResult] = []
    try:
        with _llama(path, lora_path, n_ctx, kv_cache_f32) as llm:
            gguf_adds_bos = str(llm.metadata.get("tokenizer.ggml.add_bos_token", "false")).lower() == "true"
            for prompt, text, ids in zip(prompt_list, texts, hf_ids, strict=True):
                gguf_ids = [int(t) for t in llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)]
                identical = gguf_ids == ids and gguf_adds_bos == hf_adds_bos
                first_diff = None if identical else _first_difference(ids, gguf_ids) if gguf_ids != ids else 0
                ref_tokens, ref_logits = _reference_greedy(reference_model, tokenizer, ids, n_tokens, stop_ids)
                step = _llama_follow(llm, gguf_ids, ref_tokens, ref_logits, n_tokens, stop_ids, tie_tolerance)
                results.append(
                    PromptResult(
                        prompt=prompt,
                        tokenisation_identical=identical,
                        prompt_tokens_hf=len(ids),
                        prompt_tokens_gguf=len(gguf_ids),
                        first_token_difference=first_diff,
                        agreeing_tokens=step.agreeing,
                        n_tokens=n_tokens,
                        agreement=1.0 if step.diverged_at is None else step.diverged_at / n_tokens,
                        reference_text=tokenizer.decode(ref_tokens, skip_special_tokens=False),
                        gguf_text=tokenizer.decode(step.tokens, skip_special_tokens=False),
                        reference_tokens=ref_tokens,
                        gguf_tokens=step.tokens,
                        near_ties=step.near_ties,
                        logit_gap_at_divergence=step.gap,
                    )
                )
    finally:
        if was_training:
            reference_model.train()
    report = VerificationReport(
        gguf_path=str(path),
        lora_path=str(lora_path) if lora_path is not None else None,
        n_tokens=n_tokens,
        min_agreement=min_agreement,
        tie_tolerance=tie_tolerance,
        prompts=results,
        seconds=time.perf_counter() - started,
    )
    (log.info if report.passed else log.warning)("%s", report.summary())
    if raise_on_failure:
        report.raise_if_failed()
    return report


def check_adapter_fits(base_gguf: str | Path, adapter_gguf: str | Path) -> None:
    """Raise ``ExportVerificationError`` unless ``adapter_gguf`` is a LoRA adapter GGUF whose tensors fit
    ``base_gguf``: same architecture, every ``X.lora_a``/``X.lora_b`` pair on a tensor ``X`` of the base, shaped
    [in, rank] and [rank, out] (ggml order) for X's [in, out]. llama.cpp checks less than this and can crash on a
    misshapen adapter instead of refusing it."""
    from equitune.export.gguf import read_gguf_tensor_info

    def fail(problem: str) -> ExportVerificationError:
        return ExportVerificationError(f"The adapter {adapter_gguf} does not fit the base {base_gguf}: {problem}")

    try:
        adapter_meta, adapter_tensors = read_gguf_tensor_info(adapter_gguf)
        base_meta, base_tensors = read_gguf_tensor_info(base_gguf)
    except (OSError, struct.error, EquituneError) as exc:
        raise ExportVerificationError(f"Cannot read {adapter_gguf} or {base_gguf} as GGUF: {exc}") from exc
    if adapter_meta.get("general.type") != "adapter" or adapter_meta.get("adapter.type") != "lora":
        raise fail("it is not a LoRA adapter GGUF (general.type / adapter.type)")
    if adapter_meta.get("general.architecture") != base_meta.get("general.architecture"):
        arches = f"{adapter_meta.get('general.architecture')} vs {base_meta.get('general.architecture')}"
        raise fail(f"architectures differ ({arches})")
    base_shapes = {name: list(info.shape) for name, info in base_tensors.items()}
    pairs: dict[str, dict[str, list[int]]] = {}
    for name, info in adapter_tensors.items():
        stem, _, which = name.rpartition(".")
        if which in ("lora_a", "lora_b"):
            pairs.setdefault(stem, {})[which] = list(info.shape)
    if not pairs:
        raise fail("it holds no lora_a/lora_b tensors")
    for stem, pair in sorted(pairs.items()):
        if set(pair) != {"lora_a", "lora_b"}:
            raise fail(f"{stem} has {', '.join(pair)} but not both lora_a and lora_b")
        if stem not in base_shapes:
            raise fail(f"the base has no tensor {stem}")
        weight, a, b = base_shapes[stem], pair["lora_a"], pair["lora_b"]
        if len(a) != 2 or len(b) != 2 or a[0] != weight[0] or b[1] != weight[1] or a[1] != b[0]:
            raise fail(
                f"{stem} is {weight} (ggml order [in, out]) but lora_a is {a} and lora_b is {b}; "
                f"expected lora_a [{weight[0]}, rank] and lora_b [rank, {weight[1]}]"
            )


def load_reference(model_dir: str | Path) -> tuple[Any, Any]:
    """A merged model folder (as ``merge_adapter`` writes it) and its tokenizer, loaded at float32 for
    ``verify_gguf``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(model_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise EquituneError(f"Cannot load the merged model {folder}: {exc}") from exc
    model.eval()
    return model, tokenizer


# ------------------------------------------------------------------------------------------------ internals


def _render(tokenizer: Any, prompt: str, system: str | None) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise EquituneError("The tokenizer has no chat template; the prompts cannot be rendered as the model sees them")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    if not isinstance(text, str):
        raise EquituneError("apply_chat_template(tokenize=False) did not return text")
    return text


def _stop_ids(tokenizer: Any) -> set[int]:
    """Tokens after which both sides stop: the chat's end-of-turn token and eos."""
    from equitune.train.dataset import end_of_turn_id

    stops = {end_of_turn_id(tokenizer)}
    if tokenizer.eos_token_id is not None:
        stops.add(int(tokenizer.eos_token_id))
    return stops


def _hf_adds_bos(tokenizer: Any) -> bool:
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos


@contextlib.contextmanager
def _llama(path: Path, lora_path: str | Path | None, n_ctx: int, kv_cache_f32: bool) -> Iterator[Any]:
    try:
        import llama_cpp

        from equitune.llamacpp import LlamaCppLoadError, open_llama
    except ImportError as exc:
        raise ExportVerificationError(f"Verifying a GGUF needs llama-cpp-python: {exc}") from exc
    what = f"{path}" + (f" with adapter {lora_path}" if lora_path is not None else "")
    cache: dict[str, Any] = (
        {"type_k": llama_cpp.GGML_TYPE_F32, "type_v": llama_cpp.GGML_TYPE_F32} if kv_cache_f32 else {}
    )
    try:
        llm = open_llama(
            path,
            lora_path=str(lora_path) if lora_path is not None else None,
            n_ctx=n_ctx,
            n_batch=n_ctx,
            seed=0,
            verbose=False,
            **cache,
        )
    except (ValueError, RuntimeError, OSError, LlamaCppLoadError) as exc:
        raise ExportVerificationError(
            f"llama.cpp cannot load {what}: {exc} (llama.cpp's log on stderr says why; rerun with verbose logging)"
        ) from exc
    try:
        yield llm
    finally:
        llm.close()


def _reference_greedy(
    model: Any, tokenizer: Any, ids: list[int], n_tokens: int, stop_ids: set[int]
) -> tuple[list[int], list[Any]]:
    """PyTorch's greedy continuation of ``ids`` (ending at a stop token or after ``n_tokens``) and the raw logits
    (float32 numpy vectors) of each step."""
    import torch
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], dtype=torch.long, device=device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(stop_ids)
    config = GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=n_tokens,
        eos_token_id=sorted(stop_ids),
        pad_token_id=pad,
        return_dict_in_generate=True,
        output_logits=True,
    )
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), generation_config=config)
    tokens = [int(t) for t in out.sequences[0, len(ids) :].tolist()]
    for i, token in enumerate(tokens):
        if token in stop_ids:
            tokens = tokens[: i + 1]
            break
    logits = [step[0].float().cpu().numpy() for step in out.logits[: len(tokens)]]
    return tokens, logits


@dataclass
class _Followed:
    tokens: list[int]
    agreeing: int
    diverged_at: int | None
    gap: float | None
    near_ties: list[int]


def _llama_follow(
    llm: Any,
    prompt_ids: list[int],
    ref_tokens: list[int],
    ref_logits: list[Any],
    n_tokens: int,
    stop_ids: set[int],
    tie_tolerance: float,
) -> _Followed:
    """Decode greedily with llama.cpp beside PyTorch's tokens: where its pick differs by no more than a near-tie it
    takes PyTorch's token; from the first real divergence on it continues on its own."""
    import llama_cpp
    import numpy as np

    n_vocab = int(llm.n_vocab())
    tokens: list[int] = []
    near_ties: list[int] = []
    diverged_at: int | None = None
    gap: float | None = None
    llm.reset()
    if not prompt_ids:
        return _Followed(tokens, 0, 0, None, near_ties)
    llm.eval(prompt_ids)
    for i in range(n_tokens):
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
        pick = int(np.argmax(logits))
        if diverged_at is None and i < len(ref_tokens) and pick != ref_tokens[i]:
            want, ref = ref_tokens[i], ref_logits[i]
            if want < n_vocab and pick < len(ref):
                difference = float(logits[pick] - logits[want]) + float(ref[want] - ref[pick])
            else:
                difference = float("inf")
            if difference <= tie_tolerance:
                near_ties.append(i)
                pick = want
            else:
                diverged_at, gap = i, difference
        tokens.append(pick)
        if pick in stop_ids or len(tokens) >= n_tokens:
            break
        llm.eval([pick])
    if diverged_at is None and tokens != ref_tokens[: len(tokens)]:
        diverged_at = _common_prefix(tokens, ref_tokens)  # PyTorch stopped while llama.cpp went on, or the reverse
    if diverged_at is None and len(tokens) < len(ref_tokens):
        diverged_at = len(tokens)
    agreeing = diverged_at if diverged_at is not None else len(tokens)
    return _Followed(tokens, agreeing, diverged_at, gap, near_ties)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _first_difference(a: Sequence[int], b: Sequence[int]) -> int:
    n = _common_prefix(a, b)
    return n if n < max(len(a), len(b)) else min(len(a), len(b))
