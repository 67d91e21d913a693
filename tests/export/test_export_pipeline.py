"""``run_export`` end to end on a tiny Llama: GGUF files verified by llama.cpp, Modelfile, registry, Ollama."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
import gguf_helpers as helpers  # noqa: E402

from equitune.config import EquituneConfig  # noqa: E402
from equitune.errors import EquituneError  # noqa: E402
from equitune.export.modelfile import parse_modelfile  # noqa: E402
from equitune.export.pipeline import run_export  # noqa: E402
from equitune.registry import ModelRegistry  # noqa: E402
from ollama_stub import closed_port_host  # noqa: E402

pytest.importorskip("llama_cpp")


pytestmark = pytest.mark.skipif(not helpers.converter_available(), reason="llama.cpp's converter is not installed")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A trained-looking run (tiny base saved as a folder, random adapter) and a config pointing at it."""
    root = tmp_path_factory.mktemp("export_project")
    tokenizer = helpers.smollm2_tokenizer()
    base = helpers.tiny_llama(tokenizer)
    base_dir = root / "tiny-base"
    base.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    run = root / "finetuned_models" / "run"
    helpers.write_random_adapter(base, tokenizer, run, base_model=str(base_dir))
    config = EquituneConfig.model_validate(
        {
            "training": {"output_name": "run"},
            "paths": {"finetuned_models": str(root / "finetuned_models"), "registry": str(root / "reg.sqlite")},
            "export": {"formats": ["f16", "q8_0"]},
        }
    )
    return {"root": root, "config": config, "run": run}


def test_export_creates_the_model_in_ollama_and_records_it(project: dict[str, Any], ollama_server: Any) -> None:
    result = run_export(project["config"], create=True, host=ollama_server.host, progress=False)
    assert result.name_tag == "equity_research_llama:v1" and result.created
    names = sorted(p.name for p in result.gguf_files)
    assert names == ["run-f16.gguf", "run-q8_0.gguf"]
    assert result.adapter_gguf is not None and result.adapter_gguf.is_file()
    # verified: f16 exactly, base f16 + adapter exactly, q8_0 reported
    verification = json.loads((result.export_dir / "verification.json").read_text())
    assert verification["run-f16.gguf"]["passed"] and verification["run-f16.gguf"]["min_agreement"] == 1.0
    assert verification["base-f16.gguf + adapter.gguf"]["passed"]
    assert "run-q8_0.gguf" in verification
    # the Modelfile uses the first format and Ollama's rules read it back
    parsed = parse_modelfile(result.modelfile.read_text())
    assert parsed.from_ == "./run-f16.gguf" and parsed.adapter is None
    assert "<|im_end|>" in parsed.parameters["stop"] and parsed.system and "not investment advice" in parsed.system
    # Ollama got the GGUF blob by digest and a create naming it
    creates = ollama_server.requests_to("/api/create", "POST")
    assert len(creates) == 1
    body = creates[0].body
    assert body["model"] == "equity_research_llama:v1" and list(body["files"]) == ["run-f16.gguf"]
    assert body["files"]["run-f16.gguf"] in ollama_server.blobs
    # the registry holds the version, marked as created in Ollama
    version = ModelRegistry(project["config"].paths.registry).get("equity_research_llama:v1")
    assert version.ollama_created and version.base_model.endswith("tiny-base")
    assert {f.kind for f in version.gguf_files} == {"merged", "adapter", "base"}


def test_unreachable_ollama_keeps_the_files_and_prints_the_command(project: dict[str, Any]) -> None:
    result = run_export(
        project["config"], model_name="my_equity_model", create=True, host=closed_port_host(), progress=False
    )
    assert not result.created and result.instructions is not None
    assert result.instructions.startswith("ollama create my_equity_model:v1 -f ")
    assert result.instructions.endswith(str(result.modelfile)) or str(result.export_dir) in result.instructions
    assert result.modelfile.is_file() and all(p.is_file() for p in result.gguf_files)
    assert not ModelRegistry(project["config"].paths.registry).get("my_equity_model:v1").ollama_created


def test_adapter_mode_writes_from_base_plus_adapter(project: dict[str, Any]) -> None:
    result = run_export(project["config"], model_name="adapter_model:a1", mode="adapter", verify=False)
    parsed = parse_modelfile(result.modelfile.read_text())
    assert parsed.from_ == "./base-f16.gguf" and parsed.adapter == "./adapter.gguf"
    assert (result.export_dir / "base-f16.gguf").is_file()


def test_bad_names_and_missing_runs_fail_before_any_work(project: dict[str, Any]) -> None:
    with pytest.raises(EquituneError, match="name"):
        run_export(project["config"], model_name="Bad Name!")
    with pytest.raises(EquituneError, match="adapter"):
        run_export(project["config"], run_name="never-trained")
    with pytest.raises(EquituneError, match="formats"):
        run_export(project["config"], formats=["q2_weird"])
