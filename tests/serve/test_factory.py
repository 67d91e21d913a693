"""``open_runtime``: which runtime a model name leads to (endpoint, GGUF path, registry version, embedded default,
Ollama), and the one error that lists every route tried."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from runtime_helpers import Scripted, StandIn, closed_port, openai_stand_in, write_lora_gguf

from equitune.errors import EquituneError
from equitune.registry import GGUFFile, ModelRegistry, ModelVersion
from equitune.serve.factory import local_model_files, open_runtime
from equitune.serve.llamacpp_runtime import LlamaCppRuntime
from equitune.serve.openai_runtime import OpenAIRuntime
from equitune.serve.runtime import GenerationOptions, ModelRuntimeError
from equitune.train.base_model import embedded_gguf_path


@pytest.fixture(autouse=True)
def _no_real_ollama(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never talk to an Ollama that happens to run on this machine."""
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{closed_port()}")


@pytest.fixture(scope="module")
def gguf_path() -> Path:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'equitune[serve]')")
    try:
        return embedded_gguf_path()
    except EquituneError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry.sqlite")


@pytest.fixture
def ollama() -> Iterator[StandIn]:
    """An Ollama stand-in: answers /api/show with 404 until a test scripts it."""
    with openai_stand_in() as state:
        state.scripted["/api/show"] = Scripted(404, {"error": "model not found"})
        yield state


def _has_model(ollama: StandIn) -> None:
    ollama.scripted["/api/show"] = Scripted(200, {"modelfile": "FROM /models/blobs/sha256-00\n", "details": {}})


def _merged(registry: ModelRegistry, path: Path, **fields: object) -> ModelVersion:
    file = GGUFFile(str(path), "merged", "q4_1", "", 0)
    return registry.register(ModelVersion("equity", "smollm2:135m", gguf_files=(file,), **fields))  # type: ignore[arg-type]


def test_endpoint_gives_an_openai_runtime() -> None:
    runtime = open_runtime("equity:v1", endpoint="http://127.0.0.1:8080", api_key="k")
    assert isinstance(runtime, OpenAIRuntime)
    assert (runtime.model, runtime.endpoint, runtime.api_key) == ("equity:v1", "http://127.0.0.1:8080/v1", "k")


@pytest.mark.slow
def test_gguf_path_gives_llama_cpp(gguf_path: Path) -> None:
    runtime = open_runtime(str(gguf_path), n_ctx=256, n_threads=1)
    assert isinstance(runtime, LlamaCppRuntime)
    assert runtime.model_path == gguf_path
    assert runtime.n_ctx == 256
    runtime.close()


def test_missing_gguf_path_names_it(tmp_path: Path) -> None:
    with pytest.raises(ModelRuntimeError, match=f"the GGUF file {tmp_path / 'x.gguf'} does not exist"):
        open_runtime(str(tmp_path / "x.gguf"))


@pytest.mark.slow
def test_embedded_name_gives_the_embedded_gguf(gguf_path: Path) -> None:
    runtime = open_runtime("smollm2:135m", n_ctx=256, n_threads=1)
    assert isinstance(runtime, LlamaCppRuntime)
    assert (runtime.model_path, runtime.model) == (gguf_path, "smollm2:135m")
    runtime.close()


@pytest.mark.slow
def test_registry_version_with_merged_gguf(registry: ModelRegistry, gguf_path: Path) -> None:
    _merged(registry, gguf_path)
    runtime = open_runtime("equity", registry=registry, n_ctx=256, n_threads=1)
    assert isinstance(runtime, LlamaCppRuntime)
    assert (runtime.model_path, runtime.lora_path, runtime.model) == (gguf_path, None, "equity:v1")
    assert runtime.generate("Hello", GenerationOptions(max_tokens=2)).model == "equity:v1"
    runtime.close()


@pytest.mark.slow
def test_registry_given_as_a_path(registry: ModelRegistry, gguf_path: Path) -> None:
    _merged(registry, gguf_path)
    runtime = open_runtime("equity:v1", registry=registry.path, n_ctx=256, n_threads=1)
    assert isinstance(runtime, LlamaCppRuntime)
    runtime.close()


@pytest.mark.slow
def test_registry_adapter_applies_to_the_resolved_base(
    registry: ModelRegistry, gguf_path: Path, tmp_path: Path
) -> None:
    adapter = write_lora_gguf(tmp_path / "adapter.gguf", 0.0)
    registry.register(
        ModelVersion("equity", "smollm2:135m", gguf_files=(GGUFFile(str(adapter), "adapter", "f32", "", 0),))
    )
    runtime = open_runtime("equity:v1", registry=registry, n_ctx=256, n_threads=1)
    assert isinstance(runtime, LlamaCppRuntime)
    assert (runtime.model_path, runtime.lora_path) == (gguf_path, adapter)
    runtime.close()


@pytest.mark.slow
def test_registry_adapter_uses_the_recorded_base_gguf(registry: ModelRegistry, gguf_path: Path, tmp_path: Path) -> None:
    adapter = write_lora_gguf(tmp_path / "adapter.gguf", 0.0)
    base_copy = tmp_path / "base.gguf"
    base_copy.symlink_to(gguf_path)
    files = (GGUFFile(str(adapter), "adapter", "f32", "", 0), GGUFFile(str(base_copy), "base", "q4_1", "", 0))
    registry.register(ModelVersion("equity", "some/unresolvable-base", gguf_files=files))
    runtime = open_runtime("equity", registry=registry, n_ctx=256, n_threads=1)
    assert isinstance(runtime, LlamaCppRuntime)
    assert runtime.model_path == base_copy
    runtime.close()


def test_version_created_in_a_reachable_ollama_runs_there(registry: ModelRegistry, ollama: StandIn) -> None:
    from equitune.serve.ollama_runtime import OllamaRuntime

    _merged(registry, Path("/nowhere/merged.gguf"), ollama_created=True, ollama_host=ollama.url)
    _has_model(ollama)
    runtime = open_runtime("equity", registry=registry)
    assert isinstance(runtime, OllamaRuntime)
    assert runtime.model == "equity:v1"
    assert ollama.requests[-1]["path"] == "/api/show"
    assert ollama.requests[-1]["body"]["model"] == "equity:v1"


def test_ollama_host_argument_overrides_the_recorded_host(registry: ModelRegistry, ollama: StandIn) -> None:
    from equitune.serve.ollama_runtime import OllamaRuntime

    _merged(registry, Path("/nowhere/merged.gguf"), ollama_created=True, ollama_host="http://127.0.0.1:1")
    _has_model(ollama)
    assert isinstance(open_runtime("equity", registry=registry, ollama_host=ollama.url), OllamaRuntime)


@pytest.mark.slow
def test_unreachable_ollama_falls_back_to_the_merged_gguf(registry: ModelRegistry, gguf_path: Path) -> None:
    _merged(registry, gguf_path, ollama_created=True, ollama_host=f"http://127.0.0.1:{closed_port()}")
    runtime = open_runtime("equity", registry=registry, n_ctx=256, n_threads=1)
    assert isinstance(runtime, LlamaCppRuntime)
    runtime.close()


@pytest.mark.slow
def test_prefer_llama_cpp_skips_ollama(registry: ModelRegistry, ollama: StandIn, gguf_path: Path) -> None:
    _merged(registry, gguf_path, ollama_created=True, ollama_host=ollama.url)
    _has_model(ollama)
    runtime = open_runtime("equity", registry=registry, prefer="llama.cpp", n_ctx=256, n_threads=1)
    assert isinstance(runtime, LlamaCppRuntime)
    assert ollama.requests == []
    runtime.close()


def test_prefer_ollama_without_ollama_is_an_error(registry: ModelRegistry, ollama: StandIn, gguf_path: Path) -> None:
    _merged(registry, gguf_path, ollama_created=True, ollama_host=ollama.url)  # Ollama answers 404 for it
    with pytest.raises(ModelRuntimeError, match=rf"with Ollama: .*Ollama at {ollama.url} does not have 'equity:v1'"):
        open_runtime("equity", registry=registry, prefer="ollama")


def test_plain_ollama_model_name(ollama: StandIn) -> None:
    from equitune.serve.ollama_runtime import OllamaRuntime

    _has_model(ollama)
    runtime = open_runtime("llama3.1:8b", ollama_host=ollama.url)
    assert isinstance(runtime, OllamaRuntime)
    assert runtime.model == "llama3.1:8b"


def test_missing_files_of_a_version_are_listed(registry: ModelRegistry, tmp_path: Path) -> None:
    _merged(registry, tmp_path / "gone.gguf")
    with pytest.raises(ModelRuntimeError, match=rf"its merged GGUF {tmp_path / 'gone.gguf'} is missing"):
        open_runtime("equity", registry=registry)


def test_version_without_gguf_is_reported(registry: ModelRegistry) -> None:
    registry.register(ModelVersion("equity", "smollm2:135m", adapter_path="/adapters/equity"))
    with pytest.raises(ModelRuntimeError, match="registry version equity:v1 has no GGUF file"):
        open_runtime("equity:v1", registry=registry, prefer="llama.cpp")


def test_unresolvable_name_lists_every_route_tried(registry: ModelRegistry) -> None:
    registry.register(ModelVersion("equity", "smollm2:135m"))
    with pytest.raises(ModelRuntimeError) as caught:
        open_runtime("ghost:v3", registry=registry)
    message = str(caught.value)
    assert message.startswith("Cannot open model 'ghost:v3': not a .gguf file; ")
    assert "'ghost:v3' is not in the registry" in message and "known models: equity" in message
    assert "not the embedded default" in message
    assert "not reachable (connection refused)" in message


def test_registry_path_that_does_not_exist_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "none" / "registry.sqlite"
    with pytest.raises(ModelRuntimeError, match=f"no model registry at {missing}"):
        open_runtime("equity", registry=missing, prefer="llama.cpp")
    assert not missing.exists()


def test_empty_name_is_an_error() -> None:
    with pytest.raises(ModelRuntimeError, match="No model given"):
        open_runtime("  ")


def test_local_model_files_for_serving(registry: ModelRegistry, gguf_path: Path, tmp_path: Path) -> None:
    adapter = write_lora_gguf(tmp_path / "adapter.gguf", 0.0)
    registry.register(
        ModelVersion("equity", "smollm2:135m", gguf_files=(GGUFFile(str(adapter), "adapter", "f32", "", 0),))
    )
    _merged(registry, gguf_path)
    assert local_model_files("equity:v1", registry=registry) == (gguf_path, adapter)
    assert local_model_files("equity:v2", registry=registry.path) == (gguf_path, None)
    assert local_model_files(str(gguf_path)) == (gguf_path, None)
    assert local_model_files("smollm2:135m") == (gguf_path, None)


def test_local_model_files_lists_what_was_tried(registry: ModelRegistry) -> None:
    with pytest.raises(ModelRuntimeError, match=r"Cannot serve model 'llama3.1' with llama.cpp: not a .gguf file; .*"):
        local_model_files("llama3.1", registry=registry)
