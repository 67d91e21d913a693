"""What a training run leaves beside its adapter: ``metrics.jsonl``, ``loss_curve.png``, ``training_report.json``."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from equitune.io import atomic_write_bytes, atomic_write_json, atomic_write_text

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss_curve.png"
REPORT_FILE = "training_report.json"


class MetricsLog:
    """``metrics.jsonl``: one JSON object per logged step (train lines have ``loss``, eval lines ``val_loss``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rewrite(self, records: Iterable[dict[str, Any]]) -> None:
        """Replace the file with ``records`` (atomically), e.g. the metrics of the checkpoint a run resumes from."""
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in records))

    def append(self, record: dict[str, Any]) -> None:
        # A whole line per write, flushed; a resumed run rewrites the file from its checkpoint anyway.
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_loss_curve(metrics: list[dict[str, Any]], path: Path, title: str = "LoRA training") -> Path:
    """Training loss per step and validation loss at each evaluation, as a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    train = [(m["step"], m["loss"]) for m in metrics if "loss" in m]
    valid = [(m["step"], m["val_loss"]) for m in metrics if "val_loss" in m]
    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.add_subplot()
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", linewidth=1.2)
    if valid:
        ax.plot(*zip(*valid, strict=True), "o-", label="validation loss", linewidth=1.2)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("cross-entropy (assistant tokens)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if train or valid:
        ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return atomic_write_bytes(path, buffer.getvalue())


def write_report(path: Path, report: dict[str, Any]) -> Path:
    """Write ``training_report.json`` atomically."""
    return atomic_write_json(path, report)
