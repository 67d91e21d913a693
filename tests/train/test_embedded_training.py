"""A few real training steps of the embedded SmolLM2-135M on equitune's own data (slow: ~30 s on 2 cores)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from equitune.config import EquituneConfig
from equitune.data.generator import EquityResearchTrainingDataGenerator
from equitune.train.pipeline import run_training


@pytest.mark.slow
def test_embedded_model_trains_a_few_steps(in_tmp: Path) -> None:
    config = EquituneConfig.model_validate(
        {
            "model_selection": {"base_model": "smollm2:135m"},
            "data": {"families": ["executive_summary"], "seed": 3},
            "training": {
                "batch_size": 1,
                "gradient_accumulation_steps": 1,
                "max_steps": 3,
                "warmup_steps": 0,
                "eval_steps": 3,
                "save_steps": 3,
                "learning_rate": 3e-4,
                "max_seq_length": 2048,
            },
        }
    )
    generator = EquityResearchTrainingDataGenerator(config)
    generator.generate_dynamic_training_examples(120)
    generator.save(in_tmp / "training_data")
    valid = in_tmp / "training_data" / "valid.jsonl"
    valid.write_text("".join(valid.read_text().splitlines(keepends=True)[:2]))  # two held-out examples suffice
    train = in_tmp / "training_data" / "train.jsonl"
    train.write_text("".join(train.read_text().splitlines(keepends=True)[:6]))
    result = run_training(config, progress=False)
    report = json.loads(result.report_path.read_text())
    assert result.steps == 3 and report["base_model"] == "smollm2:135m"
    assert report["val_loss_before"] > 0 and report["val_loss_after"] > 0
    assert report["truncation"]["train"]["examples_dropped"] == 0
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
    assert (result.adapter_dir / "tokenizer_config.json").is_file() or (result.adapter_dir / "tokenizer.json").is_file()
