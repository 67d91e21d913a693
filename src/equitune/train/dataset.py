"""Training data for the LoRA engine: read JSONL, tokenise with the chat template, mask prompts, batch.

Each example becomes ``input_ids`` (the tokenizer's chat-template rendering of system, user and assistant turns)
and ``labels`` that are ``-100`` everywhere except on the assistant's tokens and the end-of-turn token after
them (so the model learns to stop). The prompt length comes from rendering the conversation without the
assistant turn and with ``add_generation_prompt=True``; the full rendering must start with it (a template that
is not prefix-stable is an error). Truncation to ``max_seq_length`` is counted, never silent, and an example
whose assistant part is cut off entirely is dropped, counted and reported.

``iterate_batches(dataset, batch_size, seed, epoch)`` gives a deterministic, length-grouped order per
(seed, epoch); a run resumes at any (epoch, batch index) with ``start=``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from equitune.data.validate import iter_jsonl, parse_record
from equitune.errors import DataError

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
# End-of-turn tokens of the common chat templates, tried in order before falling back to eos.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")
# Special tokens that may serve as padding when pad is missing or equal to end-of-turn.
PAD_CANDIDATES = ("<|pad|>", "<pad>", "<|finetune_right_pad_id|>", "<|endoftext|>", "<unk>")
ADDED_PAD_TOKEN = "<|pad|>"


@dataclass(frozen=True)
class TokenizedExample:
    """One tokenised example: model input, labels (-100 = no loss) and the JSONL line it came from."""

    input_ids: list[int]
    labels: list[int]
    line: int

    @property
    def num_label_tokens(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE_INDEX)


@dataclass
class TruncationStats:
    """What ``max_seq_length`` cost: examples cut, assistant tokens lost, examples dropped (nothing left)."""

    max_seq_length: int
    examples_truncated: int = 0
    assistant_tokens_lost: int = 0
    examples_dropped: int = 0
    dropped_lines: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_seq_length": self.max_seq_length,
            "examples_truncated": self.examples_truncated,
            "assistant_tokens_lost": self.assistant_tokens_lost,
            "examples_dropped": self.examples_dropped,
            "dropped_lines": self.dropped_lines,
        }


@dataclass
class TokenizedDataset:
    """A tokenised JSONL file (or in-memory records): examples, truncation counts and the source's sha256."""

    examples: list[TokenizedExample]
    truncation: TruncationStats
    pad_id: int
    end_of_turn_id: int
    source: Path | None = None
    sha256: str | None = None

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def num_label_tokens(self) -> int:
        return sum(e.num_label_tokens for e in self.examples)

    @property
    def num_tokens(self) -> int:
        return sum(len(e.input_ids) for e in self.examples)


@dataclass(frozen=True)
class Batch:
    """A padded micro-batch (right padding): tensors of shape (batch, length)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    indices: tuple[int, ...]

    @property
    def num_label_tokens(self) -> int:
        """Tokens that carry loss after the causal shift (a label at position 0 is never predicted)."""
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())


# ------------------------------------------------------------------------------------------- tokenizer


def end_of_turn_id(tokenizer: Any) -> int:
    """The token that closes an assistant turn: a known chat end-of-turn token in the vocabulary, else eos."""
    vocab = tokenizer.get_vocab()
    for token in END_OF_TURN_TOKENS:
        if token in vocab and token in _special_tokens(tokenizer):
            return int(vocab[token])
    if tokenizer.eos_token_id is None:
        raise DataError("The tokenizer has neither a chat end-of-turn token nor an eos token; cannot mark turn ends.")
    return int(tokenizer.eos_token_id)


def _special_tokens(tokenizer: Any) -> set[str]:
    specials = set(tokenizer.all_special_tokens)
    added = getattr(tokenizer, "get_added_vocab", None)
    if added is not None:
        specials.update(added())
    return specials


def prepare_tokenizer(tokenizer: Any) -> str | None:
    """Make sure padding uses a token other than end-of-turn, so end-of-turn is never confused with padding.

    Reuses an existing special token when there is one; otherwise adds ``<|pad|>`` (the model's embeddings must
    then be resized: ``train`` does it). Returns a sentence saying what changed, or None when nothing did.
    """
    if tokenizer.chat_template is None:
        raise DataError("The tokenizer has no chat template; training needs one to render system/user/assistant.")
    eot = end_of_turn_id(tokenizer)
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != eot:
        return None
    before = tokenizer.pad_token
    vocab = tokenizer.get_vocab()
    specials = _special_tokens(tokenizer)
    for token in PAD_CANDIDATES:
        if token in vocab and token in specials and vocab[token] != eot:
            tokenizer.pad_token = token
            note = f"pad token was {before!r} (same as end-of-turn or unset); now using existing {token!r}"
            break
    else:
        tokenizer.add_special_tokens({"pad_token": ADDED_PAD_TOKEN})
        note = f"pad token was {before!r} (same as end-of-turn or unset); added new special token {ADDED_PAD_TOKEN!r}"
    log.info(note)
    return note


# ------------------------------------------------------------------------------------------- reading


def read_records(path: str | Path) -> list[tuple[int, list[dict[str, str]]]]:
    """Read a training JSONL file (messages or alpaca) into (line, chat messages); errors list every bad line."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: no such file")
    out: list[tuple[int, list[dict[str, str]]]] = []
    problems: list[str] = []
    for line, obj, error in iter_jsonl(file):
        if error is not None:
            problems.append(f"line {line}: {error}")
            continue
        record, issues = parse_record(obj, line)
        if issues:
            problems.extend(str(issue) for issue in issues)
            continue
        system = record.get("system")
        if system is None and isinstance(obj.get("system"), str) and obj["system"].strip():
            system = obj["system"]  # alpaca records carry the system prompt at the top level
        out.append((line, to_messages(record["prompt"], record["response"], system)))
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise DataError(f"{file}: {len(problems)} invalid record(s):\n  {shown}")
    if not out:
        raise DataError(f"{file}: no training examples")
    return out


def to_messages(prompt: str, response: str, system: str | None = None) -> list[dict[str, str]]:
    """A chat conversation: optional system turn, the user's prompt, the assistant's response."""
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": prompt}, {"role": "assistant", "content": response}]


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------- tokenising


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    if not isinstance(text, str):
        raise DataError(f"apply_chat_template(tokenize=False) returned {type(text).__name__}, expected text")
    return text


def _ids(tokenizer: Any, text: str) -> list[int]:
    # The template already writes every special token (bos included), so the tokenizer must add none.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def tokenize_conversation(
    tokenizer: Any, messages: list[dict[str, str]], eot_id: int, line: int = 0
) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one conversation whose last turn is the assistant's, labels on that turn only.

    The labelled span runs from the end of the prompt (rendered with the generation prompt) up to and including
    the first end-of-turn token after it; anything the template writes after end-of-turn is masked. If the
    template writes no end-of-turn token there, one is appended so the model learns to stop.
    """
    if not messages or messages[-1]["role"] != "assistant":
        raise DataError(f"line {line}: the last message must be the assistant's")
    prompt_text = _render(tokenizer, messages[:-1], generation_prompt=True)
    full_text = _render(tokenizer, messages, generation_prompt=False)
    if not full_text.startswith(prompt_text):
        raise DataError(
            f"line {line}: the chat template is not prefix-stable: the conversation rendered with the assistant "
            "turn does not start with the rendering of the prompt plus generation prompt, so the prompt tokens "
            f"cannot be masked. Prompt rendering ends with {prompt_text[-60:]!r}; full rendering has "
            f"{full_text[len(prompt_text) - 60 : len(prompt_text) + 20]!r} there."
        )
    prompt_ids = _ids(tokenizer, prompt_text)
    full_ids = _ids(tokenizer, full_text)
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise DataError(
            f"line {line}: the chat template is not prefix-stable at the token level: the prompt's tokens are "
            "not a prefix of the conversation's tokens (a merge crosses the prompt/response boundary)."
        )
    start = len(prompt_ids)
    try:
        end = full_ids.index(eot_id, start) + 1
    except ValueError:
        full_ids = [*full_ids, eot_id]
        end = len(full_ids)
    if end - start < 2:
        raise DataError(f"line {line}: the assistant turn has no tokens")
    labels = [IGNORE_INDEX] * len(full_ids)
    labels[start:end] = full_ids[start:end]
    return full_ids, labels


def tokenize_records(
    records: Sequence[tuple[int, list[dict[str, str]]]],
    tokenizer: Any,
    max_seq_length: int,
    *,
    source: Path | None = None,
    sha256: str | None = None,
) -> TokenizedDataset:
    """Tokenise (line, messages) records; truncate to ``max_seq_length``, counting what is cut and dropping
    (with a count and a warning) examples that have no assistant token left."""
    prepare_tokenizer(tokenizer)
    eot = end_of_turn_id(tokenizer)
    stats = TruncationStats(max_seq_length=max_seq_length)
    examples: list[TokenizedExample] = []
    for line, messages in records:
        input_ids, labels = tokenize_conversation(tokenizer, messages, eot, line)
        if len(input_ids) > max_seq_length:
            # A label at position 0 is never predicted, so what survives is labels[1:max_seq_length].
            kept = sum(1 for t in labels[1:max_seq_length] if t != IGNORE_INDEX)
            lost = sum(1 for t in labels if t != IGNORE_INDEX) - kept
            stats.examples_truncated += 1
            stats.assistant_tokens_lost += lost
            if kept == 0:
                stats.examples_dropped += 1
                stats.dropped_lines.append(line)
                continue
            input_ids, labels = input_ids[:max_seq_length], labels[:max_seq_length]
        examples.append(TokenizedExample(input_ids, labels, line))
    where = str(source) if source is not None else "records"
    if stats.examples_truncated:
        log.warning(
            "%s: %d of %d examples truncated to %d tokens (%d assistant tokens lost); %d dropped with no "
            "assistant token left (lines %s)",
            where,
            stats.examples_truncated,
            len(records),
            max_seq_length,
            stats.assistant_tokens_lost,
            stats.examples_dropped,
            stats.dropped_lines[:20],
        )
    if not examples:
        raise DataError(f"{where}: no example left after truncation to {max_seq_length} tokens")
    pad_id = tokenizer.pad_token_id
    assert pad_id is not None and pad_id != eot  # prepare_tokenizer guarantees it
    return TokenizedDataset(examples, stats, int(pad_id), eot, source, sha256)


def load_dataset(path: str | Path, tokenizer: Any, max_seq_length: int) -> TokenizedDataset:
    """Read, validate and tokenise a training JSONL file (messages or alpaca format)."""
    file = Path(path)
    records = read_records(file)
    return tokenize_records(records, tokenizer, max_seq_length, source=file, sha256=file_sha256(file))


# ------------------------------------------------------------------------------------------- batching


def batch_plan(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of one epoch as lists of example indices, deterministic in (seed, epoch).

    Shuffle, cut into buckets of ``batch_size * 32`` examples, sort each bucket by length and split it into
    batches (similar lengths share a batch, so there is little padding), then shuffle the batch order.
    Only the very last batch may be smaller than ``batch_size``.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    bucket = batch_size * 32
    batches: list[list[int]] = []
    for begin in range(0, len(order), bucket):
        chunk = sorted(order[begin : begin + bucket].tolist(), key=lambda i: (lengths[i], i))
        batches.extend(chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size))
    full = [b for b in batches if len(b) == batch_size]
    partial = [b for b in batches if len(b) < batch_size]
    return [full[i] for i in rng.permutation(len(full))] + partial


def batches_per_epoch(dataset: TokenizedDataset, batch_size: int) -> int:
    return -(-len(dataset) // batch_size)


def collate(dataset: TokenizedDataset, indices: Sequence[int]) -> Batch:
    """Right-pad the examples at ``indices`` into one batch."""
    rows = [dataset.examples[i] for i in indices]
    length = max(len(r.input_ids) for r in rows)
    input_ids = torch.full((len(rows), length), dataset.pad_id, dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for r, row in enumerate(rows):
        n = len(row.input_ids)
        input_ids[r, :n] = torch.tensor(row.input_ids)
        labels[r, :n] = torch.tensor(row.labels)
        mask[r, :n] = 1
    return Batch(input_ids, mask, labels, tuple(indices))


def iterate_batches(
    dataset: TokenizedDataset, batch_size: int, seed: int, epoch: int, start: int = 0
) -> Iterator[Batch]:
    """Padded batches of one epoch in the order of ``batch_plan``, beginning at batch index ``start``."""
    plan = batch_plan([len(e.input_ids) for e in dataset.examples], batch_size, seed, epoch)
    for indices in plan[start:]:
        yield collate(dataset, indices)
