"""The header of a GGUF file (metadata and tensor table), read without llama.cpp or the ``gguf`` package.

Plumbing below every stage: the export reads tensor tables to check what it wrote, and the llama.cpp loader
(``equitune.llamacpp``) reads a model's weight types before choosing how to load it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from equitune.errors import EquituneError

FLOAT_TYPES = frozenset({0, 1, 30})
"""ggml type ids of unquantised weights: F32, F16, BF16."""


@dataclass(frozen=True)
class GGUFTensorInfo:
    """Where and what a tensor is in a GGUF file."""

    shape: tuple[int, ...]
    """ggml order: the row length first (a PyTorch (out, in) weight is (in, out) here)."""
    ggml_type: int
    offset: int
    """Absolute position of the tensor's data in the file."""


def read_gguf_tensor_info(path: str | Path) -> tuple[dict[str, Any], dict[str, GGUFTensorInfo]]:
    """The scalar and string metadata (arrays skipped) and the tensor table of a GGUF (v2/v3) file, read from its
    header alone: milliseconds, where ``gguf.GGUFReader`` decodes every vocabulary entry first. A file that ends
    inside its header raises ``EquituneError`` naming it."""
    scalars = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
    string_type, array_type = 8, 9

    with open(path, "rb") as handle:

        def unpack(fmt: str) -> Any:
            data = handle.read(struct.calcsize(fmt))
            if len(data) < struct.calcsize(fmt):
                raise EquituneError(f"{path}: the GGUF header is truncated at byte {handle.tell()}")
            return struct.unpack(fmt, data)[0]

        def text() -> str:
            return handle.read(unpack("<Q")).decode("utf-8", errors="replace")

        def value(kind: int) -> Any:
            if kind == string_type:
                return text()
            if kind == array_type:
                item, count = unpack("<I"), unpack("<Q")
                if item in scalars:
                    handle.seek(count * struct.calcsize(scalars[item]), 1)
                else:
                    for _ in range(count):
                        value(item)
                return None
            if kind not in scalars:
                raise EquituneError(f"{path}: GGUF metadata value of unknown type {kind}")
            return unpack(scalars[kind])

        if handle.read(4) != b"GGUF" or unpack("<I") not in (2, 3):
            raise EquituneError(f"{path} is not a GGUF (v2/v3) file")
        n_tensors, n_kv = unpack("<Q"), unpack("<Q")
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = text()
            found = value(unpack("<I"))
            if found is not None:
                metadata[key] = found
        table: list[tuple[str, tuple[int, ...], int, int]] = []
        for _ in range(n_tensors):
            name = text()
            dims = tuple(unpack("<Q") for _ in range(unpack("<I")))
            table.append((name, dims, unpack("<I"), unpack("<Q")))
        alignment = int(metadata.get("general.alignment", 32))
        start = -(-handle.tell() // alignment) * alignment
    return metadata, {name: GGUFTensorInfo(dims, kind, start + offset) for name, dims, kind, offset in table}
