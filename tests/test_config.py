from __future__ import annotations

import json
from pathlib import Path

import pytest

from equitune.config import (
    EquituneConfig,
    TrainingConfig,
    apply_overrides,
    load_config,
    parse_override,
    save_config,
)
from equitune.errors import ConfigError

ORIGINAL_KEYS = {
    "lora_config": {
        "rank": 16,
        "alpha": 32,
        "dropout": 0.1,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
    },
    "model_selection": {
        "base_model": "llama3.1:8b",
        "alternatives": {"fast": "llama2:7b", "quality": "llama3.1:70b", "efficient": "mistral:7b"},
    },
}


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data, indent=2))
    return path


def test_defaults_are_the_original_design(in_tmp: Path) -> None:
    cfg = load_config()
    assert cfg.lora_config.model_dump() == ORIGINAL_KEYS["lora_config"]
    assert cfg.model_selection.model_dump() == ORIGINAL_KEYS["model_selection"]
    assert (cfg.training.learning_rate, cfg.training.batch_size, cfg.training.num_epochs) == (2e-5, 4, 3)
    assert (cfg.training.warmup_steps, cfg.training.gradient_accumulation_steps) == (100, 8)
    assert [str(p) for p in cfg.paths.model_dump().values()] == [
        "training_data",
        "finetuned_models",
        "evaluation_results",
        "finetuning_workflow",
        "logs",
        "finetuned_models/registry.sqlite",
    ]
    assert cfg.export.model_name == "equity_research_llama"  # the original design's Ollama model name


@pytest.mark.parametrize("name", ["finetune_config.json", "configs/quickstart.json"])
def test_shipped_config_files_parse(repo_root: Path, name: str) -> None:
    cfg = load_config(repo_root / name)
    assert isinstance(cfg, EquituneConfig)


def test_shipped_finetune_config_has_original_values(repo_root: Path) -> None:
    raw = json.loads((repo_root / "finetune_config.json").read_text())
    assert raw["lora_config"] == ORIGINAL_KEYS["lora_config"]
    assert raw["model_selection"] == ORIGINAL_KEYS["model_selection"]
    cfg = load_config(repo_root / "finetune_config.json")
    assert cfg.training == TrainingConfig()  # the shipped file spells out the original design's defaults


def test_quickstart_uses_embedded_model(repo_root: Path) -> None:
    assert load_config(repo_root / "configs/quickstart.json").model_selection.base_model == "smollm2:135m"


def test_unknown_key_names_key_file_line_and_closest(in_tmp: Path) -> None:
    path = _write(in_tmp / "c.json", {"training": {"learnig_rate": 0.001}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert "training.learnig_rate" in text
    assert str(path) in text
    assert "line 3" in text
    assert "did you mean 'learning_rate'" in text


def test_unknown_top_level_section(in_tmp: Path) -> None:
    path = _write(in_tmp / "c.json", {"lora_confg": {}})
    with pytest.raises(ConfigError, match="did you mean 'lora_config'"):
        load_config(path)


def test_invalid_value_names_field_value_and_range(in_tmp: Path) -> None:
    path = _write(in_tmp / "c.json", {"lora_config": {"dropout": 1.5}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert "lora_config.dropout = 1.5" in text
    assert "allowed range: 0 <= value < 1" in text


def test_every_error_is_reported_at_once(in_tmp: Path) -> None:
    path = _write(in_tmp / "c.json", {"training": {"batch_size": 0, "warmup_steps": -1}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "training.batch_size = 0" in str(err.value)
    assert "training.warmup_steps = -1" in str(err.value)


def test_yaml_is_accepted(in_tmp: Path) -> None:
    path = in_tmp / "c.yaml"
    path.write_text("lora_config:\n  rank: 8\ntraining:\n  batch_size: 2\n")
    cfg = load_config(path)
    assert (cfg.lora_config.rank, cfg.training.batch_size) == (8, 2)


def test_malformed_json_names_line(in_tmp: Path) -> None:
    path = in_tmp / "c.json"
    path.write_text('{\n  "training": {\n    "batch_size": 4,\n  }\n}\n')
    with pytest.raises(ConfigError, match=r"c\.json, line 4"):
        load_config(path)


def test_missing_file(in_tmp: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(in_tmp / "nope.json")


def test_layering_defaults_file_flags(in_tmp: Path) -> None:
    path = _write(in_tmp / "c.json", {"training": {"batch_size": 2, "learning_rate": 0.001}})
    cfg = load_config(path, {"training.batch_size": 16})
    assert cfg.training.batch_size == 16  # flag beats file
    assert cfg.training.learning_rate == 0.001  # file beats default
    assert cfg.training.num_epochs == 3  # default


def test_default_file_in_working_directory_is_used(in_tmp: Path) -> None:
    _write(in_tmp / "finetune_config.json", {"lora_config": {"rank": 4}})
    assert load_config().lora_config.rank == 4


def test_bad_override_value_is_named(in_tmp: Path) -> None:
    with pytest.raises(ConfigError, match=r"command line: training.batch_size = \"many\""):
        load_config(None, {"training.batch_size": "many"})


def test_parse_override() -> None:
    assert parse_override("training.batch_size=8") == ("training.batch_size", 8)
    assert parse_override("model_selection.base_model=smollm2:135m") == (
        "model_selection.base_model",
        "smollm2:135m",
    )
    with pytest.raises(ConfigError):
        parse_override("no-equals-sign")


def test_apply_overrides_does_not_mutate() -> None:
    data = {"training": {"batch_size": 2}}
    assert apply_overrides(data, {"training.batch_size": 3})["training"]["batch_size"] == 3
    assert data["training"]["batch_size"] == 2


def test_save_round_trip(in_tmp: Path) -> None:
    cfg = load_config(None, {"lora_config.rank": 32, "valuation.terminal_growth": 0.02})
    path = save_config(cfg, in_tmp / "out" / "resolved.json")
    assert load_config(path) == cfg
    assert not list((in_tmp / "out").glob(".*tmp"))
