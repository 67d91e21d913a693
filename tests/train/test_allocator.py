"""glibc's malloc keeps freed memory while training on a CPU (train/allocator.py)."""

from __future__ import annotations

import contextlib
import json
import platform
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tiny  # noqa: E402

from equitune.config import LoraConfig, TrainingConfig  # noqa: E402
from equitune.train import allocator, loop  # noqa: E402
from equitune.train.allocator import retain_freed_memory  # noqa: E402
from equitune.train.dataset import load_dataset  # noqa: E402

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
MB64 = 64 << 20


PROBE = """
import json, resource, torch
from equitune.train.allocator import retain_freed_memory


def faults():  # page faults taken by a 64 MB buffer allocated and filled right after another one was freed
    first = torch.ones(16 << 20)
    del first
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    second = torch.ones(16 << 20)
    taken = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    del second
    return taken


result = {"before": faults()}
with retain_freed_memory() as active:
    # The heap grows for the first few blocks (small allocations in between take pieces of a freed one); then a
    # freed block is there for the next, as a training step's buffers are for the next step.
    result["active"], result["inside"] = active, [faults() for _ in range(12)]
result["after"] = faults()
print(json.dumps(result))
"""


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc settings")
def test_freed_memory_is_reused_inside_and_returned_outside() -> None:
    # A fresh process: what glibc does with a 64 MB block depends on what the process allocated before.
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=300)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    pages = MB64 // resource.getpagesize()
    assert result["active"]
    assert result["before"] > pages // 2  # glibc maps and unmaps a block that large
    assert result["inside"][-1] < pages // 10 and result["inside"][-2] < pages // 10, result
    assert result["after"] > pages // 2  # the defaults again


def test_nothing_changes_when_disabled_or_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    with retain_freed_memory(enabled=False) as active:
        assert not active
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("musl", "1.2"))
    with retain_freed_memory() as active:
        assert not active


def test_cpu_training_runs_inside_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[bool] = []

    @contextlib.contextmanager
    def record(enabled: bool = True) -> Iterator[bool]:
        seen.append(enabled)
        yield False

    monkeypatch.setattr(loop, "retain_freed_memory", record)
    tok = tiny.make_tokenizer()
    data = tiny.write_jsonl(tmp_path / "train.jsonl", tiny.EXAMPLES)
    train_set = load_dataset(data, tok, 64)
    config = TrainingConfig(batch_size=2, max_steps=1, eval_steps=100, save_steps=100, max_seq_length=64)
    model: Any = tiny.make_model(len(tok))
    loop.train(model, tok, train_set, None, config, LoraConfig(rank=4, alpha=8), tmp_path / "out", progress=False)
    assert seen == [True]
