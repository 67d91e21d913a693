"""QLoRA: the 4-bit configuration, the GGUF -> Hugging Face folder materialisation (on a tiny GGUF written in the
test), the loader's wiring, and the clear error on a machine without CUDA. A real 4-bit run is the ``gpu`` test."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import run_setup  # noqa: E402
import tiny  # noqa: E402
import tiny_gguf  # noqa: E402

from equitune.config import TrainingConfig  # noqa: E402
from equitune.errors import EquituneError  # noqa: E402
from equitune.train import backends, qlora  # noqa: E402
from equitune.train.base_model import ResolvedBase, resolve_base_model  # noqa: E402
from equitune.train.pipeline import run_training  # noqa: E402
from equitune.train.qlora import (  # noqa: E402
    HASH_INDEX,
    SOURCE_FILE,
    bnb_4bit_config,
    default_cache_root,
    gguf_sha256,
    hf_model_source,
    load_qlora_model,
    materialise_gguf,
    qlora_training_config,
)


@pytest.fixture(scope="module")
def tiny_gguf_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A tiny GGUF and the model it was written from."""
    path = tmp_path_factory.mktemp("gguf") / "tiny-model.gguf"
    model, _ = tiny_gguf.write_tiny_gguf(path)
    return path, model


def test_4bit_config_is_nf4_double_quantised_with_bf16_compute() -> None:
    import torch

    config = bnb_4bit_config()
    assert config.load_in_4bit and not config.load_in_8bit
    assert config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.bfloat16


def test_4bit_models_are_trained_without_a_cast() -> None:
    for precision, expected in (("auto", "fp32"), ("bf16", "fp32"), ("fp32", "fp32"), ("fp16", "fp16")):
        config = TrainingConfig(precision=precision, learning_rate=0.01)
        adjusted = qlora_training_config(config)
        assert adjusted.precision == expected
        assert adjusted.learning_rate == 0.01 and config.precision == precision  # a copy, the rest unchanged


def test_default_cache_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_root() == tmp_path / "equitune" / "base_models"


def test_gguf_is_materialised_once_as_the_same_model(
    tiny_gguf_file: tuple[Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, original = tiny_gguf_file
    resolved = resolve_base_model(str(path))
    assert resolved.route == "gguf"
    cache = tmp_path / "cache"
    folder = materialise_gguf(resolved, cache)

    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert folder == cache / f"{sha[:16]}-{path.stat().st_size}"
    source = json.loads((folder / SOURCE_FILE).read_text())
    assert (source["sha256"], source["size"], source["gguf"]) == (sha, path.stat().st_size, str(path.resolve()))
    assert json.loads((cache / HASH_INDEX).read_text())[str(path.resolve())]["sha256"] == sha
    assert not [p.name for p in cache.iterdir() if p.name.startswith(".")]  # no temporary folder left

    # an ordinary Hugging Face folder with the very same weights and chat template
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert getattr(model.config, "quantization_config", None) is None
    ids = torch.tensor([[1, 5, 6, 7, 2, 30]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, original(ids).logits)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.chat_template == tiny.CHATML_TEMPLATE
    assert tokenizer("Rate AAPL.").input_ids == tiny.make_tokenizer()("Rate AAPL.").input_ids

    # the second time nothing is loaded or written
    def no_load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the GGUF was loaded again")

    monkeypatch.setattr(qlora, "load_base_model", no_load)
    assert materialise_gguf(resolved, cache) == folder
    assert hf_model_source(resolved, cache) == str(folder)


def test_another_gguf_gets_another_folder(tiny_gguf_file: tuple[Path, Any], tmp_path: Path) -> None:
    other = tmp_path / "other.gguf"
    tiny_gguf.write_tiny_gguf(other, seed=1)
    cache = tmp_path / "cache"
    first = materialise_gguf(resolve_base_model(str(tiny_gguf_file[0])), cache)
    second = materialise_gguf(resolve_base_model(str(other)), cache)
    assert first != second and (second / "model.safetensors").is_file()


def test_failed_materialisation_leaves_nothing(
    tiny_gguf_file: tuple[Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class BrokenTokenizer:
        def save_pretrained(self, folder: Any) -> None:
            raise OSError("disk full")

    model = tiny.make_model(len(tiny.make_tokenizer()))
    monkeypatch.setattr(qlora, "load_base_model", lambda resolved, dtype: (model, BrokenTokenizer()))
    cache = tmp_path / "cache"
    with pytest.raises(OSError, match="disk full"):
        materialise_gguf(resolve_base_model(str(tiny_gguf_file[0])), cache)
    assert [p.name for p in cache.iterdir()] == [HASH_INDEX]


def test_ollama_blob_is_keyed_by_the_sha_in_its_name(tmp_path: Path) -> None:
    digest = "ab" * 32
    blob = tmp_path / f"sha256-{digest}"
    blob.write_bytes(b"GGUF not hashed")
    assert gguf_sha256(blob, tmp_path / "cache") == digest
    assert not (tmp_path / "cache" / HASH_INDEX).exists()
    changed = tmp_path / "model.gguf"
    changed.write_bytes(b"GGUF one")
    first = gguf_sha256(changed, tmp_path / "cache")
    changed.write_bytes(b"GGUF two, longer")  # another size: hashed again, not taken from the index
    assert gguf_sha256(changed, tmp_path / "cache") != first == hashlib.sha256(b"GGUF one").hexdigest()


def test_hf_bases_are_not_materialised(tmp_path: Path) -> None:
    base = tiny.save_tiny(tmp_path / "base")
    resolved = resolve_base_model(str(base))
    assert hf_model_source(resolved, tmp_path / "cache") == str(base.resolve())
    uncached = ResolvedBase("org/model", "hf", "org/model", cached=False)
    assert hf_model_source(uncached, tmp_path / "cache") == "org/model"  # downloaded by the backend's loader
    with pytest.raises(EquituneError, match="not a GGUF base"):
        materialise_gguf(resolved, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_loader_asks_for_4bit_from_the_materialised_folder(
    tiny_gguf_file: tuple[Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bitsandbytes needs CUDA, so ``from_pretrained`` is recorded here and loads the tiny model in bf16 instead;
    the rest (source folder, options, ``prepare_model_for_kbit_training``) runs as on a GPU."""
    import torch
    from transformers import AutoModelForCausalLM

    resolved = resolve_base_model(str(tiny_gguf_file[0]))
    folder = materialise_gguf(resolved, tmp_path)  # before from_pretrained is replaced below
    calls: list[tuple[str, dict[str, Any]]] = []
    real = AutoModelForCausalLM.from_pretrained

    def record(source: str, **kwargs: Any) -> Any:
        calls.append((str(source), kwargs))
        return real(source, dtype=kwargs["dtype"])

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", record)
    model, tokenizer = load_qlora_model(resolved, gradient_checkpointing=False, device="cuda:1", cache_root=tmp_path)
    [(source, options)] = calls
    assert source == str(folder)
    config = options["quantization_config"]
    assert (config.load_in_4bit, config.bnb_4bit_quant_type, config.bnb_4bit_use_double_quant) == (True, "nf4", True)
    assert options["dtype"] == torch.bfloat16 and options["device_map"] == {"": "cuda:1"}
    # prepared for k-bit training: base frozen, bf16 weights back in float32 for stable norms and head
    assert not any(p.requires_grad for p in model.parameters())
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert model.name_or_path == model.config._name_or_path == resolved.source  # the adapter names the GGUF
    assert tokenizer.chat_template == tiny.CHATML_TEMPLATE


def test_qlora_without_cuda_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, data = run_setup.make_setup(tmp_path)
    monkeypatch.setattr(backends, "detect_machine", lambda: run_setup.CPU)
    config = run_setup.make_config(tmp_path, "transformers")
    with pytest.raises(EquituneError, match="needs a CUDA GPU with bitsandbytes") as err:
        run_training(config, base_model=str(base), data_dir=data, use_qlora=True, four_bit=True, progress=False)
    assert "plain LoRA" in str(err.value)
    assert not (tmp_path / "finetuned_models").exists()


@pytest.mark.gpu
def test_qlora_trains_the_tiny_gguf_model_on_cuda(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    pytest.importorskip("bitsandbytes")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    _, data = run_setup.make_setup(tmp_path)
    gguf = tmp_path / "tiny.gguf"
    tiny_gguf.write_tiny_gguf(gguf)
    config = run_setup.make_config(tmp_path, "transformers", precision="auto", max_steps=6)
    result = run_training(config, base_model=str(gguf), data_dir=data, name="q", use_qlora=True, four_bit=True)
    report = json.loads(result.report_path.read_text())
    assert report["backend"] == "transformers" and report["quantization"].startswith("4-bit NF4")
    assert report["loop_settings"] == {"precision": "fp32"}
    assert result.val_loss_after is not None and result.val_loss_before is not None
    assert result.val_loss_after < result.val_loss_before
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
