"""The SQLite model registry: versions, tags, promotion, deletion, evaluation scores, schema and two processes."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from equitune.registry import (
    SCHEMA_VERSION,
    GGUFFile,
    ModelRegistry,
    ModelVersion,
    RegistryError,
    UnknownModelError,
    sha256_file,
    split_name_tag,
)


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models" / "registry.sqlite")


def _version(name: str = "equity", tag: str | None = None, **fields: object) -> ModelVersion:
    return ModelVersion(name=name, base_model="smollm2:135m", tag=tag, **fields)  # type: ignore[arg-type]


def test_sha256_file_matches_hashlib_across_chunks(tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000  # 1.28 MB: several 64 KiB chunks
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_file(path, chunk_bytes=65536) == hashlib.sha256(data).hexdigest()


def test_gguf_file_from_path_hashes_and_sizes(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 100)
    file = GGUFFile.from_path(path, "merged", "q4_k_m")
    assert file.bytes == 104
    assert file.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert file.path == str(path.resolve())


def test_register_round_trips_every_field(registry: ModelRegistry) -> None:
    gguf = GGUFFile("/m/merged.gguf", "merged", "q8_0", "ab" * 32, 123)
    adapter = GGUFFile("/m/adapter.gguf", "adapter", "f16", "cd" * 32, 45)
    stored = registry.register(
        _version(
            adapter_path="/m/adapter",
            adapter_sha256="ef" * 32,
            gguf_files=(gguf, adapter),
            modelfile_path="/m/Modelfile",
            config_hash="c0ffee",
            training_metrics={"steps": 60, "val_loss_before": 2.5, "val_loss_after": 1.25, "tokens_per_s": 812.5},
            ollama_created=True,
            ollama_host="http://127.0.0.1:11434",
        )
    )
    assert stored.tag == "v1"
    assert stored.name_tag == "equity:v1"
    assert stored.id is not None and stored.created_at is not None

    got = registry.get("equity:v1")
    assert got == stored
    assert got.gguf("merged") == gguf
    assert got.gguf("adapter") == adapter
    assert got.gguf("base") is None
    assert got.training_metrics["val_loss_after"] == 1.25
    assert got.ollama_created is True


def test_next_tag_counts_up_and_skips_custom_tags(registry: ModelRegistry) -> None:
    assert registry.next_tag("equity") == "v1"
    registry.register(_version())
    registry.register(_version(tag="experiment"))
    assert registry.next_tag("equity") == "v2"
    assert registry.register(_version()).tag == "v2"
    registry.register(_version(tag="v7"))
    assert registry.next_tag("equity") == "v8"
    assert registry.next_tag("other") == "v1"


def test_duplicate_tag_is_refused(registry: ModelRegistry) -> None:
    registry.register(_version(tag="v1"))
    with pytest.raises(RegistryError, match=r"'equity:v1' is already registered"):
        registry.register(_version(tag="v1"))


@pytest.mark.parametrize("name", ["", "-bad", "has space", "a:b"])
def test_invalid_names_are_refused(registry: ModelRegistry, name: str) -> None:
    with pytest.raises(RegistryError, match="Invalid model name"):
        registry.register(_version(name=name))


def test_latest_is_a_reserved_tag(registry: ModelRegistry) -> None:
    with pytest.raises(RegistryError, match="reserved"):
        registry.register(_version(tag="latest"))


def test_list_orders_by_name_then_age(registry: ModelRegistry) -> None:
    registry.register(_version("zeta"))
    registry.register(_version("alpha"))
    registry.register(_version("alpha"))
    assert [v.name_tag for v in registry.list()] == ["alpha:v1", "alpha:v2", "zeta:v1"]
    assert [v.name_tag for v in registry.list("alpha")] == ["alpha:v1", "alpha:v2"]
    assert registry.list("missing") == []
    assert registry.names() == ["alpha", "zeta"]


def test_bare_name_and_latest_resolve_to_newest_then_promoted(registry: ModelRegistry) -> None:
    registry.register(_version())
    registry.register(_version())
    assert registry.get("equity").tag == "v2"
    assert registry.get("equity:latest").tag == "v2"

    registry.promote("equity:v1")
    registry.register(_version())  # newer, but not promoted
    assert registry.get("equity").tag == "v1"
    assert registry.get("equity:latest").tag == "v1"
    assert registry.get("equity:v3").promoted is False


def test_exactly_one_promoted_per_name(registry: ModelRegistry) -> None:
    for _ in range(3):
        registry.register(_version())
    registry.register(_version("other"))
    registry.promote("other:v1")
    for tag in ("v1", "v3", "v2", "v2"):
        registry.promote(f"equity:{tag}")
        promoted = [v.tag for v in registry.list("equity") if v.promoted]
        assert promoted == [tag]
    assert registry.get("other").promoted is True  # another name is untouched

    registry.register(_version(promoted=True))  # registering promoted demotes the previous one
    assert [v.tag for v in registry.list("equity") if v.promoted] == ["v4"]


def test_database_itself_enforces_one_promoted(registry: ModelRegistry) -> None:
    registry.register(_version(promoted=True))
    registry.register(_version())
    db = sqlite3.connect(registry.path)
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("UPDATE model_versions SET promoted = 1 WHERE tag = 'v2'")
    db.close()


def test_unknown_names_and_tags_give_errors_naming_them(registry: ModelRegistry) -> None:
    with pytest.raises(UnknownModelError, match=r"'ghost' is not in the registry .*the registry is empty"):
        registry.get("ghost")
    registry.register(_version())
    registry.register(_version("other"))
    with pytest.raises(UnknownModelError, match=r"'ghost:v1' is not in the registry.*known models: equity, other"):
        registry.get("ghost:v1")
    with pytest.raises(UnknownModelError, match=r"'equity' has no tag 'v9'.*its tags: v1"):
        registry.promote("equity:v9")
    with pytest.raises(UnknownModelError, match="ghost"):
        registry.delete("ghost")
    with pytest.raises(UnknownModelError, match="ghost"):
        registry.record_evaluation("ghost:v1", {"score": 1})


def test_record_evaluation_merges_scores(registry: ModelRegistry) -> None:
    registry.register(_version())
    registry.record_evaluation("equity:v1", {"rubric": 0.5, "fact_check": 0.9})
    updated = registry.record_evaluation("equity", {"rubric": 0.75})
    assert updated.evaluation_scores == {"rubric": 0.75, "fact_check": 0.9}
    assert registry.get("equity:v1").evaluation_scores == {"rubric": 0.75, "fact_check": 0.9}


def test_record_ollama(registry: ModelRegistry) -> None:
    registry.register(_version())
    registry.record_ollama("equity:v1", "http://h:11434")
    got = registry.get("equity:v1")
    assert (got.ollama_created, got.ollama_host) == (True, "http://h:11434")


def test_delete_keeps_files_unless_asked(registry: ModelRegistry, tmp_path: Path) -> None:
    merged = tmp_path / "merged.gguf"
    merged.write_bytes(b"GGUF")
    registry.register(_version(gguf_files=(GGUFFile(str(merged), "merged", "q8_0", "", 4),)))
    assert registry.delete("equity:v1") == []
    assert merged.exists()
    assert registry.list() == []


def test_delete_with_files_spares_base_and_shared_files(registry: ModelRegistry, tmp_path: Path) -> None:
    adapter_dir = tmp_path / "adapter"
    adapter_dir.mkdir()
    (adapter_dir / "adapter_model.safetensors").write_bytes(b"x")
    adapter_gguf, base, shared, modelfile = (tmp_path / n for n in ("a.gguf", "base.gguf", "shared.gguf", "Modelfile"))
    for path in (adapter_gguf, base, shared, modelfile):
        path.write_bytes(b"GGUF")
    files = (
        GGUFFile(str(adapter_gguf), "adapter", "f16", "", 4),
        GGUFFile(str(base), "base", "q4_1", "", 4),
        GGUFFile(str(shared), "merged", "q8_0", "", 4),
    )
    registry.register(
        _version(adapter_path=str(adapter_dir), gguf_files=files, modelfile_path=str(modelfile), promoted=True)
    )
    registry.register(_version(gguf_files=(GGUFFile(str(shared), "merged", "q8_0", "", 4),)))

    removed = registry.delete("equity:v1", remove_files=True)

    assert sorted(removed) == sorted([adapter_dir, adapter_gguf, modelfile])
    assert not adapter_dir.exists() and not adapter_gguf.exists() and not modelfile.exists()
    assert base.exists(), "a base model's GGUF is never deleted"
    assert shared.exists(), "a file another version uses is kept"
    assert [v.name_tag for v in registry.list()] == ["equity:v2"]
    assert registry.get("equity").tag == "v2"  # the promoted one is gone: newest wins


def test_schema_version_is_stored_and_newer_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    assert ModelRegistry(path).schema_version() == SCHEMA_VERSION
    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()
    with pytest.raises(RegistryError, match=rf"schema version {SCHEMA_VERSION + 1}, newer"):
        ModelRegistry(path)


def test_reopening_keeps_rows_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    ModelRegistry(path).register(_version())
    again = ModelRegistry(path)
    assert [v.name_tag for v in again.list()] == ["equity:v1"]
    db = sqlite3.connect(path)
    assert db.execute("SELECT COUNT(*) FROM schema_version").fetchone() == (1,)
    db.close()


def test_a_file_that_is_not_sqlite_gives_a_registry_error(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(RegistryError, match=str(path)):
        ModelRegistry(path)


def test_two_connections_see_each_others_writes(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    first, second = ModelRegistry(path), ModelRegistry(path)
    first.register(_version())
    assert second.get("equity").tag == "v1"
    second.promote("equity:v1")
    assert first.get("equity:v1").promoted


def test_concurrent_registrations_get_distinct_tags(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    ModelRegistry(path)
    errors: list[BaseException] = []

    def register_many() -> None:
        registry = ModelRegistry(path)
        try:
            for _ in range(10):
                registry.register(_version())
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=register_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    tags = sorted(int(str(v.tag)[1:]) for v in ModelRegistry(path).list("equity"))
    assert tags == list(range(1, 41))


def test_another_process_registers_while_this_one_holds_the_file(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    registry = ModelRegistry(path)
    registry.register(_version())
    code = (
        "import sys; from equitune.registry import ModelRegistry, ModelVersion; "
        "r = ModelRegistry(sys.argv[1]); print(r.register(ModelVersion('equity', 'smollm2:135m')).tag)"
    )
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "v2"
    assert [v.tag for v in registry.list("equity")] == ["v1", "v2"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("equity", ("equity", None)), ("equity:v2", ("equity", "v2")), ("team/equity:latest", ("team/equity", "latest"))],
)
def test_split_name_tag(value: str, expected: tuple[str, str | None]) -> None:
    assert split_name_tag(value) == expected
