"""Tokenisation, prompt masking, padding, truncation and batch order of the training data."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tiny  # noqa: E402

from equitune.errors import DataError  # noqa: E402
from equitune.train.dataset import (  # noqa: E402
    IGNORE_INDEX,
    batch_plan,
    collate,
    end_of_turn_id,
    iterate_batches,
    load_dataset,
    prepare_tokenizer,
    to_messages,
    tokenize_records,
)


def _records(pairs: list[tuple[str, str]]) -> list[tuple[int, list[dict[str, str]]]]:
    return [(i + 1, to_messages(p, r, tiny.SYSTEM)) for i, (p, r) in enumerate(pairs)]


def test_only_assistant_tokens_and_end_of_turn_are_labelled() -> None:
    tok = tiny.make_tokenizer()
    ds = tokenize_records(_records(tiny.EXAMPLES), tok, 512)
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    assert ds.end_of_turn_id == eot
    for example, (prompt, response) in zip(ds.examples, tiny.EXAMPLES, strict=True):
        labelled = [i for i, t in enumerate(example.labels) if t != IGNORE_INDEX]
        # One contiguous span, equal to the input there, ending with <|im_end|>.
        assert labelled == list(range(labelled[0], labelled[-1] + 1))
        assert [example.labels[i] for i in labelled] == [example.input_ids[i] for i in labelled]
        assert example.labels[labelled[-1]] == eot
        assert tok.decode([example.labels[i] for i in labelled]) == response + "<|im_end|>"
        # Everything before it is the prompt (system, user, assistant header) and is masked.
        prompt_text = tok.decode(example.input_ids[: labelled[0]])
        assert prompt_text.endswith("<|im_start|>assistant\n")
        assert prompt in prompt_text and tiny.SYSTEM in prompt_text
        assert response not in prompt_text
        # The template's newline after <|im_end|> is input but not a label.
        assert all(t == IGNORE_INDEX for t in example.labels[labelled[-1] + 1 :])


def test_messages_and_alpaca_files_give_the_same_tokens(tmp_path: Path) -> None:
    tok = tiny.make_tokenizer()
    chat = load_dataset(tiny.write_jsonl(tmp_path / "m.jsonl", tiny.EXAMPLES), tok, 512)
    alpaca = load_dataset(tiny.write_jsonl(tmp_path / "a.jsonl", tiny.EXAMPLES, fmt="alpaca"), tok, 512)
    assert [e.input_ids for e in chat.examples] == [e.input_ids for e in alpaca.examples]
    assert [e.labels for e in chat.examples] == [e.labels for e in alpaca.examples]
    assert chat.sha256 is not None and len(chat.sha256) == 64 and chat.sha256 != alpaca.sha256


def test_invalid_line_is_reported_with_its_number(tmp_path: Path) -> None:
    path = tiny.write_jsonl(tmp_path / "t.jsonl", tiny.EXAMPLES[:2])
    path.write_text(path.read_text() + '{"messages": [{"role": "user", "content": "no answer"}]}\n')
    with pytest.raises(DataError, match="line 3"):
        load_dataset(path, tiny.make_tokenizer(), 512)


def test_pad_token_is_never_the_end_of_turn_token() -> None:
    tok = tiny.make_tokenizer(pad_token="<|im_end|>")  # like SmolLM2-Instruct: pad == eos == <|im_end|>
    assert tok.pad_token_id == end_of_turn_id(tok)
    note = prepare_tokenizer(tok)
    assert note is not None and "<|pad|>" in note
    ds = tokenize_records(_records(tiny.EXAMPLES), tok, 512)
    assert ds.pad_id == tok.pad_token_id != ds.end_of_turn_id
    batch = collate(ds, [0, 3])  # different lengths, so one row is padded
    padded = batch.attention_mask == 0
    assert padded.any()
    assert (batch.input_ids[padded] == ds.pad_id).all() and (batch.labels[padded] == IGNORE_INDEX).all()
    assert int((batch.labels == ds.end_of_turn_id).sum()) == 2  # each row's <|im_end|> is learnt


def test_pad_token_is_added_when_no_special_token_can_serve() -> None:
    tok = tiny.make_tokenizer(pad_token="<|im_end|>")
    tok.unk_token = None
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("equitune.train.dataset.PAD_CANDIDATES", ())
        n = len(tok)
        note = prepare_tokenizer(tok)
    assert note is not None and "added" in note
    assert len(tok) == n + 1 or tok.pad_token == "<|pad|>"
    assert tok.pad_token_id != end_of_turn_id(tok)


def test_truncation_is_counted_and_fully_truncated_examples_are_dropped() -> None:
    tok = tiny.make_tokenizer()
    pairs = [("Rate AAPL.", "AAPL: Buy. " * 12), ("Rate MSFT.", "Hold.")]
    full = tokenize_records(_records(pairs), tok, 4096)
    long_ex, short_ex = full.examples
    prompt_len = next(i for i, t in enumerate(long_ex.labels) if t != IGNORE_INDEX)
    limit = max(len(short_ex.input_ids), prompt_len + 5)
    kept = limit - prompt_len
    assert len(long_ex.input_ids) > limit
    cut = tokenize_records(_records(pairs), tok, limit)
    assert cut.truncation.examples_truncated == 1 and cut.truncation.examples_dropped == 0
    assert cut.truncation.assistant_tokens_lost == long_ex.num_label_tokens - kept
    assert len(cut.examples[0].input_ids) == limit and cut.examples[0].num_label_tokens == kept
    assert cut.examples[1].input_ids == short_ex.input_ids
    # A limit inside the prompt leaves no assistant token: the example is dropped and counted.
    long_prompt = [("Rate AAPL. " * 20, "Buy."), ("Rate MSFT.", "Hold.")]
    dropped = tokenize_records(_records(long_prompt), tok, len(short_ex.input_ids))
    assert dropped.truncation.examples_dropped == 1 and dropped.truncation.dropped_lines == [1]
    assert dropped.truncation.assistant_tokens_lost == tok("Buy.")["input_ids"].__len__() + 1  # + <|im_end|>
    assert len(dropped) == 1 and dropped.examples[0].line == 2


def test_template_that_is_not_prefix_stable_is_an_error() -> None:
    tok = tiny.make_tokenizer()
    # The generation prompt says "assistant" but the rendered turn says "model": masking would be wrong.
    tok.chat_template = tiny.CHATML_TEMPLATE.replace(
        "message['role']", "('model' if message['role'] == 'assistant' else message['role'])"
    )
    with pytest.raises(DataError, match="prefix-stable"):
        tokenize_records(_records(tiny.EXAMPLES[:1]), tok, 512)


def test_batch_order_is_deterministic_complete_and_resumable() -> None:
    tok = tiny.make_tokenizer()
    pairs = [(f"Rate ticker {i}.", "Buy. " * (1 + i % 9)) for i in range(50)]
    ds = tokenize_records(_records(pairs), tok, 512)
    lengths = [len(e.input_ids) for e in ds.examples]
    plan = batch_plan(lengths, 4, seed=7, epoch=0)
    assert plan == batch_plan(lengths, 4, seed=7, epoch=0)
    assert plan != batch_plan(lengths, 4, seed=7, epoch=1) and plan != batch_plan(lengths, 4, seed=8, epoch=0)
    assert sorted(i for b in plan for i in b) == list(range(50))  # every example exactly once
    assert all(len(b) == 4 for b in plan[:-1]) and len(plan[-1]) == 2
    batches = list(iterate_batches(ds, 4, seed=7, epoch=0))
    assert [list(b.indices) for b in batches] == plan
    resumed = list(iterate_batches(ds, 4, seed=7, epoch=0, start=5))
    assert [b.indices for b in resumed] == [b.indices for b in batches[5:]]
    assert all(r.input_ids.equal(b.input_ids) for r, b in zip(resumed, batches[5:], strict=True))
    # Length grouping pads less than batching in plain shuffled order.
    grouped = sum(b.input_ids.numel() - b.num_tokens for b in batches)
    plain = sum(collate(ds, list(range(i, min(i + 4, 50)))).input_ids.numel() for i in range(0, 50, 4))
    assert grouped < plain - sum(lengths)


def test_validation_subset_is_spread_over_the_file_and_the_whole_file_without_a_limit() -> None:
    from equitune.train.dataset import TokenizedDataset, TokenizedExample, TruncationStats
    from equitune.train.pipeline import evenly_spaced

    examples = [TokenizedExample(input_ids=[1, 2], labels=[-100, 2], line=n + 1) for n in range(21)]
    dataset = TokenizedDataset(examples, TruncationStats(max_seq_length=16), pad_id=0, end_of_turn_id=2)
    assert [e.line for e in evenly_spaced(dataset, 8).examples] == [1, 3, 6, 8, 11, 14, 16, 19]
    assert evenly_spaced(dataset, None) is dataset and evenly_spaced(dataset, 21) is dataset
    assert len(dataset) == 21  # the loaded set itself is left whole
