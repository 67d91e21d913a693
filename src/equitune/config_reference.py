"""Markdown reference of every configuration key, generated from the pydantic models (README embeds it)."""

from __future__ import annotations

import json

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

BEGIN = "<!-- config-reference:begin -->"
END = "<!-- config-reference:end -->"


def _range(field: FieldInfo) -> str:
    parts = []
    for meta in field.metadata:
        for attr, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if isinstance(meta, getattr(annotated_types, attr.capitalize())):
                parts.append(f"{symbol} {getattr(meta, attr)}")
    return ", ".join(parts)


def _rows(instance: BaseModel, prefix: str) -> list[str]:
    # Walk the default instance, so nested sections show their parent's defaults (bull vs bear shifts).
    rows: list[str] = []
    for name, field in type(instance).model_fields.items():
        value = getattr(instance, name)
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            rows.extend(_rows(value, f"{key}."))
            continue
        shown = json.dumps(str(value) if hasattr(value, "__fspath__") else value, default=str)
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{key}` | `{shown}` | {_range(field)} | {description} |")
    return rows


def config_reference_markdown() -> str:
    """The table of every key: dotted name, default, allowed range, meaning."""
    from equitune.config import EquituneConfig

    header = ["| key | default | allowed | meaning |", "| --- | --- | --- | --- |"]
    return "\n".join(header + _rows(EquituneConfig(), "")) + "\n"


def update_readme(path: str = "README.md") -> bool:
    """Rewrite the reference block between the markers in ``path``; True when it changed."""
    from pathlib import Path

    from equitune.io import atomic_write_text

    text = Path(path).read_text(encoding="utf-8")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    updated = f"{head}{BEGIN}\n{config_reference_markdown()}{END}{tail}"
    if updated != text:
        atomic_write_text(path, updated)
    return updated != text


if __name__ == "__main__":
    print("README.md updated" if update_readme() else "README.md already current")
