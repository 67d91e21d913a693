"""GGUF export of an adapter on the real embedded SmolLM2-135M (slow: about a minute on 2 cores)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import gguf_helpers as helpers  # noqa: E402

from equitune.errors import EquituneError  # noqa: E402
from equitune.export.adapter_gguf import write_adapter_gguf  # noqa: E402
from equitune.export.gguf import convert_to_gguf, converter_dir  # noqa: E402
from equitune.export.merge import merge_adapter, save_base_model  # noqa: E402
from equitune.export.verify import load_reference, min_agreement_for, verify_gguf  # noqa: E402
from equitune.train.base_model import load_base_model, resolve_base_model  # noqa: E402
from equitune.train.dataset import prepare_tokenizer  # noqa: E402


@pytest.mark.slow
def test_embedded_model_exports_merged_and_adapter_ggufs_that_run_like_pytorch(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    try:
        converter_dir()
    except EquituneError as exc:
        pytest.skip(str(exc))
    base, tokenizer = load_base_model(resolve_base_model("smollm2:135m"))
    prepare_tokenizer(tokenizer)
    # a random adapter, large enough to change the greedy text, in the layout training leaves
    adapter = helpers.write_random_adapter(
        base, tokenizer, tmp_path / "run", std=0.03, rank=16, alpha=32, base_model="smollm2:135m"
    )

    merged = merge_adapter(adapter, None, tmp_path / "merged")  # the base named by run/training_report.json
    merged_f16 = convert_to_gguf(merged, tmp_path / "merged-f16.gguf", "f16")
    reference, reference_tokenizer = load_reference(merged)
    report = verify_gguf(merged_f16, reference, reference_tokenizer, min_agreement=min_agreement_for("f16"))
    assert report.passed and report.min_observed_agreement == 1.0

    base_f16 = convert_to_gguf(save_base_model(base, tmp_path / "base", tokenizer), tmp_path / "base-f16.gguf")
    adapter_file = write_adapter_gguf(adapter, merged, tmp_path / "adapter.gguf")
    assert helpers.gguf_fields(adapter_file)["adapter.lora.alpha"] == pytest.approx(32.0)
    with_adapter = verify_gguf(
        base_f16, reference, reference_tokenizer, lora_path=adapter_file, min_agreement=min_agreement_for("adapter")
    )
    assert with_adapter.passed and with_adapter.min_observed_agreement == 1.0
    without = verify_gguf(base_f16, reference, reference_tokenizer, raise_on_failure=False)
    assert without.min_observed_agreement < 1.0  # the adapter changes the text, so the check above saw it
