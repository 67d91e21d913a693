"""A tiny tokenizer, model and dataset built offline, shared by the train tests (imported as ``tiny``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]

EXAMPLES = [
    ("Rate AAPL.", "AAPL: Buy. Target 210, upside 12%."),
    ("Rate MSFT.", "MSFT: Hold. Target 420, upside 3%."),
    ("Rate XOM.", "XOM: Sell. Target 95, downside 8%."),
    ("Summarise the valuation of KO.", "KO trades at 22x earnings; DCF value 61 per share."),
    ("Give the risks of TSLA.", "Key risks: margins, competition, execution."),
    ("What is the WACC of JNJ?", "JNJ WACC is 7.1% with a 4.0% risk-free rate."),
]
SYSTEM = "You are an equity research analyst."


def make_tokenizer(pad_token: str = "<|pad|>") -> Any:
    """A byte-level BPE tokenizer trained on a few strings, with ChatML special tokens and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [f"{SYSTEM} {p} {r} system user assistant" for p, r in EXAMPLES] * 4
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    core.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
        unk_token="<|endoftext|>",
        pad_token=pad_token,
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok


def make_model(vocab_size: int, seed: int = 0) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.2,  # larger than the 0.02 default, so a frozen random lm_head can express a fit
    )
    return LlamaForCausalLM(config)


def save_tiny(folder: Path) -> Path:
    """Save the tiny tokenizer and model to ``folder`` (so a subprocess can load exactly the same ones)."""
    tok = make_tokenizer()
    model = make_model(len(tok))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def load_tiny(folder: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


def write_jsonl(path: Path, pairs: list[tuple[str, str]], fmt: str = "messages") -> Path:
    lines = []
    for prompt, response in pairs:
        if fmt == "alpaca":
            record: dict[str, Any] = {"instruction": prompt, "input": "", "output": response, "system": SYSTEM}
        else:
            record = {
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": prompt},
                    {"role": "assistant", "content": response},
                ]
            }
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
