"""The model registry: one SQLite row per exported model version (``name:tag``), with where its files are, how it
was trained, how it scored, whether Ollama has it, and which version of each name is promoted.

The database file lives at ``paths.registry`` (``finetuned_models/registry.sqlite`` by default). Every write runs
in one ``BEGIN IMMEDIATE`` transaction and every connection waits on a busy database instead of failing, so two
processes (an export and an evaluation, say) can use the same file. The schema carries a version number in the
``schema_version`` table; a file written by a newer equitune is refused rather than misread.

A name without a tag, and ``name:latest``, resolve to the promoted version of that name, or to the newest one when
none is promoted. At most one version per name is promoted; a partial unique index makes the database itself
enforce that.
"""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from equitune.errors import EquituneError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0
LATEST = "latest"

GGUFKind = Literal["merged", "adapter", "base"]

_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_VERSION_TAG = re.compile(r"^v(\d+)$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS model_versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    tag TEXT NOT NULL,
    created_at TEXT NOT NULL,
    base_model TEXT NOT NULL,
    adapter_path TEXT,
    adapter_sha256 TEXT,
    gguf_files TEXT NOT NULL DEFAULT '[]',
    modelfile_path TEXT,
    config_hash TEXT,
    training_metrics TEXT NOT NULL DEFAULT '{}',
    evaluation_scores TEXT NOT NULL DEFAULT '{}',
    ollama_created INTEGER NOT NULL DEFAULT 0,
    ollama_host TEXT,
    promoted INTEGER NOT NULL DEFAULT 0,
    UNIQUE (name, tag)
);
CREATE UNIQUE INDEX IF NOT EXISTS one_promoted_per_name ON model_versions (name) WHERE promoted = 1;
"""

_COLUMNS = (
    "id, name, tag, created_at, base_model, adapter_path, adapter_sha256, gguf_files, modelfile_path, config_hash, "
    "training_metrics, evaluation_scores, ollama_created, ollama_host, promoted"
)


class RegistryError(EquituneError):
    """The registry file is unusable or a request contradicts it (duplicate tag, bad name, newer schema)."""


class UnknownModelError(RegistryError):
    """A name or ``name:tag`` is not in the registry; the message lists what is."""


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """The SHA-256 hex digest of a file, read in chunks so a multi-gigabyte GGUF never sits in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class GGUFFile:
    """One GGUF file of a model version: the merged model, a LoRA adapter, or the base model an adapter needs."""

    path: str
    kind: GGUFKind
    quant: str
    sha256: str
    bytes: int

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], kind: GGUFKind, quant: str) -> GGUFFile:
        """Describe an existing file, hashing it and taking its size."""
        file = Path(path).resolve()
        return cls(str(file), kind, quant, sha256_file(file), file.stat().st_size)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "quant": self.quant, "sha256": self.sha256, "bytes": self.bytes}


@dataclass(frozen=True)
class ModelVersion:
    """One exported model version. ``tag=None`` asks ``register`` for the next ``vN``; ``id`` and ``created_at``
    are filled in by the registry."""

    name: str
    base_model: str
    tag: str | None = None
    adapter_path: str | None = None
    adapter_sha256: str | None = None
    gguf_files: tuple[GGUFFile, ...] = ()
    modelfile_path: str | None = None
    config_hash: str | None = None
    training_metrics: dict[str, Any] = field(default_factory=dict)
    evaluation_scores: dict[str, Any] = field(default_factory=dict)
    ollama_created: bool = False
    ollama_host: str | None = None
    promoted: bool = False
    created_at: str | None = None
    id: int | None = None

    @property
    def name_tag(self) -> str:
        """``name:tag`` (the name alone before registration assigned a tag)."""
        return f"{self.name}:{self.tag}" if self.tag else self.name

    def gguf(self, kind: GGUFKind) -> GGUFFile | None:
        """The first GGUF file of ``kind``, or None."""
        return next((file for file in self.gguf_files if file.kind == kind), None)


def split_name_tag(name_tag: str) -> tuple[str, str | None]:
    """Split ``name[:tag]`` into the name and the tag (None when absent). The tag is what follows the last colon,
    so namespaced names (``team/model:v2``) work."""
    value = name_tag.strip()
    name, sep, tag = value.rpartition(":")
    if not sep:
        return value, None
    return name, tag


class ModelRegistry:
    """The SQLite registry of exported model versions at ``path`` (created, with its folder, on first use)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._initialise()

    # ------------------------------------------------------------------------------------------- writes

    def register(self, version: ModelVersion) -> ModelVersion:
        """Add a version; a missing tag becomes the next ``vN`` of its name. Returns the stored row (with ``id``
        and ``created_at``). Registering a promoted version demotes the name's previously promoted one."""
        _check_name(version.name)
        if version.tag is not None:
            _check_tag(version.tag)
        with self._write() as db:
            tag = version.tag if version.tag is not None else _next_tag(db, version.name)
            if self._find(db, version.name, tag) is not None:
                raise RegistryError(f"Model '{version.name}:{tag}' is already registered in {self.path}.")
            if version.promoted:
                db.execute("UPDATE model_versions SET promoted = 0 WHERE name = ?", (version.name,))
            created_at = version.created_at or dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
            cursor = db.execute(
                f"INSERT INTO model_versions ({_COLUMNS}) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    version.name,
                    tag,
                    created_at,
                    version.base_model,
                    version.adapter_path,
                    version.adapter_sha256,
                    _dumps([file.as_dict() for file in version.gguf_files]),
                    version.modelfile_path,
                    version.config_hash,
                    _dumps(version.training_metrics),
                    _dumps(version.evaluation_scores),
                    int(version.ollama_created),
                    version.ollama_host,
                    int(version.promoted),
                ),
            )
        return replace(version, tag=tag, created_at=created_at, id=cursor.lastrowid)

    def promote(self, name_tag: str) -> ModelVersion:
        """Make ``name:tag`` the promoted version of its name (the one ``name`` and ``name:latest`` resolve to),
        demoting whichever was promoted before."""
        with self._write() as db:
            version = self._resolve(db, name_tag)
            db.execute("UPDATE model_versions SET promoted = 0 WHERE name = ? AND promoted = 1", (version.name,))
            db.execute("UPDATE model_versions SET promoted = 1 WHERE id = ?", (version.id,))
        return replace(version, promoted=True)

    def delete(self, name_tag: str, remove_files: bool = False) -> builtins.list[Path]:
        """Remove a version from the registry. With ``remove_files``, also delete its adapter, its merged and adapter
        GGUF files and its Modelfile, except any another version still refers to; base-model GGUF files are never
        deleted. Returns the paths removed. Deleting the promoted version leaves its name with none promoted."""
        with self._write() as db:
            version = self._resolve(db, name_tag)
            db.execute("DELETE FROM model_versions WHERE id = ?", (version.id,))
            still_used = _referenced_paths(self._rows(db, "1 = 1", ()))
        if not remove_files:
            return []
        owned = [version.adapter_path, version.modelfile_path]
        owned += [file.path for file in version.gguf_files if file.kind != "base"]
        removed: list[Path] = []
        for value in owned:
            if not value or value in still_used:
                continue
            path = Path(value)
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            else:
                continue
            removed.append(path)
        return removed

    def record_evaluation(self, name_tag: str, scores: dict[str, Any]) -> ModelVersion:
        """Merge ``scores`` into the version's evaluation scores (a key given again replaces the old value)."""
        with self._write() as db:
            version = self._resolve(db, name_tag)
            merged = {**version.evaluation_scores, **scores}
            db.execute("UPDATE model_versions SET evaluation_scores = ? WHERE id = ?", (_dumps(merged), version.id))
        return replace(version, evaluation_scores=merged)

    def record_ollama(self, name_tag: str, host: str | None, created: bool = True) -> ModelVersion:
        """Record whether the version was created in the Ollama at ``host``."""
        with self._write() as db:
            version = self._resolve(db, name_tag)
            db.execute(
                "UPDATE model_versions SET ollama_created = ?, ollama_host = ? WHERE id = ?",
                (int(created), host, version.id),
            )
        return replace(version, ollama_created=created, ollama_host=host)

    # -------------------------------------------------------------------------------------------- reads

    def get(self, name_tag: str) -> ModelVersion:
        """The version ``name:tag``; a bare name or ``name:latest`` gives the promoted version, else the newest."""
        with self._read() as db:
            return self._resolve(db, name_tag)

    def list(self, name: str | None = None) -> builtins.list[ModelVersion]:
        """Every version (of ``name``, when given), oldest first within each name."""
        with self._read() as db:
            if name is None:
                return self._rows(db, "1 = 1", ())
            return self._rows(db, "name = ?", (name,))

    def names(self) -> builtins.list[str]:
        """The distinct model names, sorted."""
        with self._read() as db:
            return [row[0] for row in db.execute("SELECT DISTINCT name FROM model_versions ORDER BY name")]

    def next_tag(self, name: str) -> str:
        """The tag ``register`` would give the next version of ``name``: ``v1``, ``v2``, ... (one past the highest
        ``vN`` ever seen for the name, so a deleted tag is not reused while a later one exists)."""
        _check_name(name)
        with self._read() as db:
            return _next_tag(db, name)

    def schema_version(self) -> int:
        """The schema version stored in the file."""
        with self._read() as db:
            return _stored_version(db) or 0

    # ---------------------------------------------------------------------------------------- internals

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise RegistryError(f"Cannot open the model registry {self.path}: {exc}.") from exc
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        return db

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        try:
            yield db
        except sqlite3.DatabaseError as exc:
            raise RegistryError(f"The model registry {self.path} could not be read: {exc}.") from exc
        finally:
            db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction that takes the write lock up front, so a read-then-write cannot interleave with
        another process's write."""
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            raise RegistryError(f"The model registry {self.path} refused the change: {exc}.") from exc
        except sqlite3.DatabaseError as exc:
            raise RegistryError(f"The model registry {self.path} could not be updated: {exc}.") from exc
        finally:
            db.close()

    def _initialise(self) -> None:
        with self._write() as db:
            stored = _stored_version(db)
            if stored is not None and stored > SCHEMA_VERSION:
                raise RegistryError(
                    f"The model registry {self.path} has schema version {stored}, newer than this equitune "
                    f"understands ({SCHEMA_VERSION}); upgrade equitune."
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            if stored is None:
                db.execute("DELETE FROM schema_version")
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            # Migrations from older schema versions go here, one step at a time, when version 2 exists.

    def _find(self, db: sqlite3.Connection, name: str, tag: str) -> ModelVersion | None:
        rows = self._rows(db, "name = ? AND tag = ?", (name, tag))
        return rows[0] if rows else None

    def _rows(self, db: sqlite3.Connection, where: str, params: Sequence[Any]) -> builtins.list[ModelVersion]:
        query = f"SELECT {_COLUMNS} FROM model_versions WHERE {where} ORDER BY name, id"
        return [_row_to_version(row) for row in db.execute(query, tuple(params))]

    def _resolve(self, db: sqlite3.Connection, name_tag: str) -> ModelVersion:
        name, tag = split_name_tag(name_tag)
        versions = self._rows(db, "name = ?", (name,))
        if tag is None or tag == LATEST:
            if versions:
                return next((v for v in versions if v.promoted), versions[-1])
        else:
            found = next((v for v in versions if v.tag == tag), None)
            if found is not None:
                return found
        if versions:
            tags = ", ".join(str(v.tag) for v in versions)
            raise UnknownModelError(f"Model '{name}' has no tag '{tag}' in {self.path}; its tags: {tags}.")
        known = [row[0] for row in db.execute("SELECT DISTINCT name FROM model_versions ORDER BY name")]
        listing = f"known models: {', '.join(known)}" if known else "the registry is empty"
        raise UnknownModelError(f"Model '{name_tag}' is not in the registry {self.path}; {listing}.")


# -------------------------------------------------------------------------------------------- helpers


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise RegistryError(
            f"Invalid model name '{name}': use letters, digits, '_', '.', '-' (and '/' between parts), "
            "starting with a letter or digit."
        )


def _check_tag(tag: str) -> None:
    if not _TAG.match(tag):
        raise RegistryError(f"Invalid tag '{tag}': use letters, digits, '_', '.', '-' (at most 128 characters).")
    if tag == LATEST:
        raise RegistryError(f"The tag '{LATEST}' is reserved: it always means the promoted (or newest) version.")


def _next_tag(db: sqlite3.Connection, name: str) -> str:
    numbers = [0]
    for (tag,) in db.execute("SELECT tag FROM model_versions WHERE name = ?", (name,)):
        match = _VERSION_TAG.match(tag)
        if match:
            numbers.append(int(match.group(1)))
    return f"v{max(numbers) + 1}"


def _stored_version(db: sqlite3.Connection) -> int | None:
    exists = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
    if not exists:
        return None
    row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else None


def _referenced_paths(versions: list[ModelVersion]) -> set[str]:
    paths: set[str] = set()
    for version in versions:
        paths.update(p for p in (version.adapter_path, version.modelfile_path) if p)
        paths.update(file.path for file in version.gguf_files)
    return paths


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _row_to_version(row: tuple[Any, ...]) -> ModelVersion:
    (
        row_id,
        name,
        tag,
        created_at,
        base_model,
        adapter_path,
        adapter_sha256,
        gguf_files,
        modelfile_path,
        config_hash,
        training_metrics,
        evaluation_scores,
        ollama_created,
        ollama_host,
        promoted,
    ) = row
    files = tuple(
        GGUFFile(str(f["path"]), f["kind"], str(f.get("quant", "")), str(f.get("sha256", "")), int(f.get("bytes", 0)))
        for f in json.loads(gguf_files)
    )
    return ModelVersion(
        name=name,
        tag=tag,
        base_model=base_model,
        adapter_path=adapter_path,
        adapter_sha256=adapter_sha256,
        gguf_files=files,
        modelfile_path=modelfile_path,
        config_hash=config_hash,
        training_metrics=json.loads(training_metrics),
        evaluation_scores=json.loads(evaluation_scores),
        ollama_created=bool(ollama_created),
        ollama_host=ollama_host,
        promoted=bool(promoted),
        created_at=created_at,
        id=row_id,
    )
