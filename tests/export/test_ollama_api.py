"""Registering a model with Ollama through the official client, against the stand-in Ollama
(``tests/ollama_stub.py``): names, blobs by digest, create progress, server errors, and an unreachable Ollama."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ollama_stub import OllamaStub, closed_port_host

sys.path.insert(0, str(Path(__file__).parent))
import chat_templates as ct  # noqa: E402

from equitune.export import ollama_api  # noqa: E402
from equitune.export.modelfile import (  # noqa: E402
    ModelfileError,
    ModelfileSpec,
    TokenizerInfo,
    convert_chat_template,
    parse_modelfile,
    write_modelfile,
)
from equitune.export.ollama_api import (  # noqa: E402
    DEFAULT_MODEL_NAME,
    CreateProgress,
    ModelNameError,
    OllamaAdaptersUnsupported,
    OllamaAPIError,
    OllamaUnreachable,
    create_from_modelfile,
    create_model,
    delete_model,
    file_digest,
    is_reachable,
    list_models,
    model_tags,
    next_version_name,
    next_version_tag,
    offline_instructions,
    parse_model_name,
    server_version,
    show_model,
    validate_model_name,
)

CONVERTED = convert_chat_template(TokenizerInfo(ct.SMOLLM2, "<|im_start|>", "<|im_end|>"))
PARAMETERS = {"stop": list(CONVERTED.stop), "num_ctx": 4096, "temperature": 0.2, "top_k": 40}


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    """A small file that starts like a GGUF (Ollama checks the magic), unique per test."""
    path = tmp_path / "equity_research_llama.gguf"
    path.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + os.urandom(4096))
    return path


@pytest.fixture
def adapter_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "adapter.gguf"
    path.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + os.urandom(512))
    return path


def _create(server: OllamaStub, gguf: Path, name: str = "equity_research_llama:v1", **kw: Any) -> Any:
    seen: list[CreateProgress] = []
    result = create_model(
        name,
        host=server.host,
        gguf_path=gguf,
        template=CONVERTED.template,
        system="You are an equity research analyst.",
        parameters=PARAMETERS,
        license="apache-2.0",
        progress=seen.append,
        **kw,
    )
    return result, [p.status for p in seen]


# ---------------------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name",
    [
        DEFAULT_MODEL_NAME,
        "equity_research_llama:v2",
        "smollm2:135m",
        "llama3.1:8b-instruct-q4_K_M",
        "myuser/equity-research:latest",
        "registry.example.com:5000/team/equity.research:v10",
        "https://ollama.com/library/llama3:8b",
        "_private",
        "x" * 80 + ":" + "t" * 80,
    ],
)
def test_good_names(name: str) -> None:
    assert validate_model_name(name) == name


@pytest.mark.parametrize(
    ("name", "part"),
    [
        ("", "model"),
        ("equity research", "model"),
        ("-leading-dash", "model"),
        (".hidden", "model"),
        ("model:", "tag"),
        ("model:tag/more", "namespace"),  # the last ':' is before the last '/': no tag; ':' is no namespace char
        ("model:-v1", "tag"),
        ("model:v1!", "tag"),
        ("team.name/model", "namespace"),  # no '.' in a namespace
        ("/model", "namespace"),
        ("a/b/c/model", "host"),  # a host cannot contain '/'
        ("x" * 81, "model"),
        ("model:" + "t" * 81, "tag"),
        ("équity", "model"),
    ],
)
def test_bad_names_say_which_rule(name: str, part: str) -> None:
    with pytest.raises(ModelNameError) as info:
        validate_model_name(name)
    message = str(info.value)
    assert f"the {part} part" in message and "[host/][namespace/]model[:tag]" in message


def test_name_parts_and_versions() -> None:
    parsed = parse_model_name("registry.example.com/team/equity_research_llama:v3")
    assert (parsed.host, parsed.namespace, parsed.model, parsed.tag) == (
        "registry.example.com",
        "team",
        "equity_research_llama",
        "v3",
    )
    assert next_version_tag([]) == "v1"
    assert next_version_tag(["latest", "v1", "V9", "v10", "v2-rc", "x"]) == "v11"
    listed = ["equity_research_llama:v1", "Equity_Research_Llama:v2", "equity_research_llama:latest", "other:v7"]
    assert model_tags("equity_research_llama", listed) == ["v1", "v2", "latest"]
    assert next_version_name("equity_research_llama", listed) == "equity_research_llama:v3"
    assert next_version_name("team/equity_research_llama:v1", listed) == "team/equity_research_llama:v1"


def test_a_bad_name_is_refused_before_any_request(ollama_server: OllamaStub, gguf: Path) -> None:
    with pytest.raises(ModelNameError):
        create_model("bad name", host=ollama_server.host, gguf_path=gguf)
    assert ollama_server.requests == []


# ---------------------------------------------------------------------------------------- create


def test_create_uploads_the_gguf_by_digest_and_reports_every_status(ollama_server: OllamaStub, gguf: Path) -> None:
    result, statuses = _create(ollama_server, gguf)
    digest = "sha256:" + hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert result.files == {gguf.name: digest} and result.uploaded == [gguf.name]
    assert ollama_server.blobs[digest] == gguf.read_bytes()
    blob_requests = [(r.method, r.path) for r in ollama_server.requests_to("/api/blobs/")]
    assert blob_requests == [("HEAD", f"/api/blobs/{digest}"), ("POST", f"/api/blobs/{digest}")]
    create = ollama_server.requests_to("/api/create")[0].body
    assert create["model"] == "equity_research_llama:v1" and create["files"] == {gguf.name: digest}
    assert create["template"] == CONVERTED.template and create["parameters"] == PARAMETERS
    assert create["system"] == "You are an equity research analyst." and create["license"] == ["apache-2.0"]
    assert create["stream"] is True and "from" not in create and "adapters" not in create
    distinct = list(dict.fromkeys(statuses))
    assert distinct[:3] == [f"hashing {gguf.name}", f"uploading {gguf.name}", f"uploaded {gguf.name}"]
    assert "parsing GGUF" in statuses and f"using existing layer {digest}" in statuses
    assert statuses[-2:] == ["writing manifest", "success"] and result.statuses[-1] == "success"
    assert list_models(ollama_server.host) == ["equity_research_llama:v1"]


def test_a_blob_ollama_already_has_is_not_sent_again(ollama_server: OllamaStub, gguf: Path) -> None:
    _create(ollama_server, gguf, "equity_research_llama:v1")
    result, statuses = _create(ollama_server, gguf, "equity_research_llama:v2")
    assert result.uploaded == [] and f"{gguf.name} already in Ollama" in statuses
    assert [r.method for r in ollama_server.requests_to("/api/blobs/")] == ["HEAD", "POST", "HEAD"]
    assert sorted(list_models(ollama_server.host)) == ["equity_research_llama:v1", "equity_research_llama:v2"]


def test_the_stand_in_rejects_a_body_that_does_not_match_its_digest(ollama_server: OllamaStub) -> None:
    claimed = "sha256:" + hashlib.sha256(b"the real file").hexdigest()
    request = urllib.request.Request(f"{ollama_server.host}/api/blobs/{claimed}", data=b"tampered", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 400
    body = json.loads(info.value.read())
    assert body["error"].startswith(f'digest mismatch, expected "{claimed}", got "sha256:')
    bad = urllib.request.Request(f"{ollama_server.host}/api/blobs/sha256:abc", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(bad, timeout=5)
    assert info.value.code == 400 and json.loads(info.value.read()) == {"error": "invalid digest format"}
    assert ollama_server.blobs == {}


def test_a_file_that_changes_between_hashing_and_upload_is_caught(
    ollama_server: OllamaStub, gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ollama_api.file_digest

    def stale(path: Path, on_bytes: Any = None) -> str:
        return "sha256:" + "0" * 64 if path == gguf else real(path, on_bytes)

    monkeypatch.setattr(ollama_api, "file_digest", stale)
    with pytest.raises(ollama_api.OllamaError, match="changed while it was uploaded"):
        _create(ollama_server, gguf)
    assert file_digest(gguf) == "sha256:" + hashlib.sha256(gguf.read_bytes()).hexdigest()


def test_create_from_a_base_model_with_an_adapter(ollama_server: OllamaStub, adapter_gguf: Path) -> None:
    ollama_server.add_model("smollm2:135m", template="{{ .Prompt }}", stop=["<|im_end|>"])
    result = create_model(
        "equity_research_llama:v2",
        host=ollama_server.host,
        base_name="smollm2:135m",
        adapter_path=adapter_gguf,
        template=CONVERTED.template,
        progress=lambda p: None,
    )
    digest = file_digest(adapter_gguf)
    assert result.adapters == {adapter_gguf.name: digest} and result.files == {}
    body = ollama_server.requests_to("/api/create")[0].body
    assert body["from"] == "smollm2:135m" and body["adapters"] == {adapter_gguf.name: digest}
    assert ollama_server.model("equity_research_llama:v2").parameters == {"stop": ["<|im_end|>"]}  # type: ignore[union-attr]


def test_an_ollama_that_refuses_adapters_is_a_distinct_error(ollama_server: OllamaStub, adapter_gguf: Path) -> None:
    ollama_server.adapters_supported = False
    ollama_server.add_model("smollm2:135m")
    with pytest.raises(OllamaAdaptersUnsupported) as info:
        create_model("m", host=ollama_server.host, base_name="smollm2:135m", adapter_path=adapter_gguf)
    assert info.value.status_code == 400 and info.value.message == "LoRA adapters are no longer supported"


def test_server_error_is_shown_with_status_and_message(ollama_server: OllamaStub, gguf: Path) -> None:
    ollama_server.fail("/api/create", 500, "no space left on device")
    with pytest.raises(OllamaAPIError) as info:
        _create(ollama_server, gguf)
    error = info.value
    assert (error.status_code, error.message) == (500, "no space left on device")
    assert str(error) == (
        f"Ollama at {ollama_server.host} answered HTTP 500 to create equity_research_llama:v1: no space left on device"
    )
    assert list_models(ollama_server.host) == []


def test_a_template_ollama_cannot_parse_is_a_400(ollama_server: OllamaStub, gguf: Path) -> None:
    with pytest.raises(OllamaAPIError) as info:
        create_model("m", host=ollama_server.host, gguf_path=gguf, template="{{ if .System }}", progress=lambda p: None)
    assert info.value.status_code == 400 and info.value.message.startswith("template error:")


def test_an_error_line_in_the_create_stream_is_shown_without_a_status(ollama_server: OllamaStub) -> None:
    """Ollama has already answered 200 and streamed a status when pulling the unknown base fails."""
    seen: list[str] = []
    with pytest.raises(OllamaAPIError) as info:
        create_model("m", host=ollama_server.host, base_name="unknown-base", progress=lambda p: seen.append(p.status))
    assert info.value.status_code is None and info.value.message == "pull model manifest: file does not exist"
    assert seen == ["pulling manifest"]
    assert str(info.value) == (
        f"Ollama at {ollama_server.host} answered an error to create m: pull model manifest: file does not exist"
    )


def test_arguments_are_checked_before_any_request(ollama_server: OllamaStub, gguf: Path, tmp_path: Path) -> None:
    with pytest.raises(ollama_api.OllamaError, match="exactly one of"):
        create_model("m", host=ollama_server.host, gguf_path=gguf, base_name="llama3")
    with pytest.raises(ollama_api.OllamaError, match="not found"):
        create_model("m", host=ollama_server.host, gguf_path=tmp_path / "missing.gguf")
    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ollama_api.OllamaError, match="GGUF files"):
        create_model("m", host=ollama_server.host, gguf_path=tmp_path / "model.safetensors")
    with pytest.raises(ModelfileError, match="not a documented Ollama parameter"):
        create_model("m", host=ollama_server.host, gguf_path=gguf, parameters={"mirostat": 1})
    assert ollama_server.requests == []


def test_create_from_a_written_modelfile_resolves_paths_like_ollama_create(
    ollama_server: OllamaStub, gguf: Path
) -> None:
    spec = ModelfileSpec(from_=f"./{gguf.name}", template=CONVERTED.template, stop=CONVERTED.stop, license="MIT")
    modelfile = write_modelfile(spec, gguf.parent)
    result = create_from_modelfile("equity_research_llama:v1", spec, modelfile.parent, ollama_server.host)
    assert result.files == {gguf.name: file_digest(gguf)}
    shown = show_model("equity_research_llama:v1", ollama_server.host)
    assert shown.template == CONVERTED.template and shown.system == spec.system and shown.license == "MIT"
    # Ollama's own `show` Modelfile reads back with the same values
    parsed = parse_modelfile(shown.modelfile)
    assert parsed.template == spec.template and parsed.system == spec.system
    assert parsed.parameters == spec.parameters()


def _post(server: OllamaStub, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(f"{server.host}{path}", data=json.dumps(payload).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read().splitlines()[-1])
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_stand_in_answers_create_errors_like_ollama(ollama_server: OllamaStub) -> None:
    good = ollama_server.add_blob(b"GGUF\x03\x00\x00\x00weights")
    text = ollama_server.add_blob(b"not a gguf")
    unknown = "sha256:" + "1" * 64
    cases = [
        ({"model": "bad name", "files": {"m.gguf": good}}, 400, "invalid model name"),
        ({"model": "m", "files": {"m.gguf": unknown}}, 400, f"open m.gguf: blob {unknown} not found"),
        ({"model": "m", "files": {"m.gguf": "sha256:xyz"}}, 400, "invalid digest format"),
        # "parsing GGUF" is already streamed (HTTP 200) when the check fails: the error comes as the last line
        ({"model": "m", "files": {"m.gguf": text}}, 200, "supplied file was not in GGUF format"),
        ({"model": "m"}, 400, "neither 'from' or 'files' was specified"),
        ({"model": "m", "files": {"m.gguf": good}, "template": "{{ end }}"}, 400, "template error: line 1: unexpected"),
    ]
    for payload, status, message in cases:
        got_status, body = _post(ollama_server, "/api/create", payload)
        assert got_status == status and body["error"].startswith(message), payload
    assert ollama_server.models == {}
    assert _post(ollama_server, "/api/create", {"model": "m", "files": {"m.gguf": good}}) == (
        200,
        {"status": "success"},
    )


def test_rich_progress_shows_bars_and_each_status_once(ollama_server: OllamaStub, gguf: Path) -> None:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=120, force_terminal=False)
    with ollama_api.rich_progress(console) as progress:
        create_model("m", host=ollama_server.host, gguf_path=gguf, progress=progress)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert output.count("writing manifest") == 1 and output.count("success") == 1
    assert f"uploaded {gguf.name}" in output


# ---------------------------------------------------------------------------------------- wrappers


def test_thin_wrappers(ollama_server: OllamaStub, gguf: Path) -> None:
    assert is_reachable(ollama_server.host) and server_version(ollama_server.host) == "0.12.10"
    _create(ollama_server, gguf)
    assert show_model("equity_research_llama:v1", ollama_server.host).family == "llama"
    delete_model("equity_research_llama:v1", ollama_server.host)
    assert list_models(ollama_server.host) == []
    with pytest.raises(OllamaAPIError) as info:
        show_model("equity_research_llama:v1", ollama_server.host)
    assert (info.value.status_code, info.value.message) == (404, "model 'equity_research_llama:v1' not found")
    with pytest.raises(OllamaAPIError) as info:
        delete_model("equity_research_llama:v1", ollama_server.host)
    assert info.value.status_code == 404


def test_create_with_stream_false_answers_one_object(ollama_server: OllamaStub, gguf: Path) -> None:
    digest = ollama_server.add_blob(gguf.read_bytes())
    payload = json.dumps({"model": "m", "files": {"m.gguf": digest}, "stream": False}).encode()
    request = urllib.request.Request(f"{ollama_server.host}/api/create", data=payload, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.loads(response.read()) == {"status": "success"}
    missing = json.dumps({"model": "m2", "stream": False}).encode()
    request = urllib.request.Request(f"{ollama_server.host}/api/create", data=missing, method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 400
    assert json.loads(info.value.read()) == {"error": "neither 'from' or 'files' was specified"}


# ---------------------------------------------------------------------------------------- unreachable


def test_unreachable_ollama_is_a_distinct_error_with_the_host(gguf: Path) -> None:
    host = closed_port_host()
    assert not is_reachable(host, timeout=1)
    for call in (
        lambda: create_model("equity_research_llama", host=host, gguf_path=gguf, progress=lambda p: None),
        lambda: create_model("equity_research_llama", host=host, base_name="smollm2:135m"),
        lambda: list_models(host),
        lambda: server_version(host),
    ):
        with pytest.raises(OllamaUnreachable) as info:
            call()
        assert info.value.host == host and host in str(info.value)


def test_offline_instructions_give_the_exact_command(tmp_path: Path) -> None:
    folder = tmp_path / "finetuned_models" / "equity_research_llama"
    folder.mkdir(parents=True)
    (folder / "Modelfile").write_text("FROM ./model.gguf\n", encoding="utf-8")
    expected = f"ollama create equity_research_llama:v2 -f {folder}/Modelfile"
    assert offline_instructions("equity_research_llama:v2", folder) == expected
    assert offline_instructions("equity_research_llama:v2", folder / "Modelfile") == expected
    spaced = tmp_path / "my models" / "Modelfile"
    assert offline_instructions(DEFAULT_MODEL_NAME, spaced) == f"ollama create {DEFAULT_MODEL_NAME} -f '{spaced}'"
    with pytest.raises(ModelNameError):
        offline_instructions("bad name", folder)
