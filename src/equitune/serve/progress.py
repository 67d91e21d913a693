"""A progress bar for a batch of generations: requests finished of all, tokens generated per second, time left."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from equitune.serve.runtime import BatchProgress


@contextmanager
def generation_progress(enabled: bool, description: str, total: int) -> Iterator[BatchProgress]:
    """A rich bar (nothing when not ``enabled``) whose callback takes (requests finished, tokens generated) as
    ``chat_many`` reports them; the bar shows ``finished/total``, the aggregate tokens/s and the ETA."""
    if not enabled:
        yield lambda done, tokens: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task(description, total=total, rate="")
    start = time.perf_counter()

    def update(done: int, tokens: int) -> None:
        elapsed = time.perf_counter() - start
        rate: Any = f"{tokens / elapsed:,.0f} tok/s" if elapsed > 0 and tokens else ""
        bar.update(task, completed=done, rate=rate)

    with bar:
        yield update
