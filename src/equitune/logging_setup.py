"""Logging to the console (rich) and to ``logs/ollama_equity_research.log``."""

from __future__ import annotations

import logging
from pathlib import Path

LOG_FILE_NAME = "ollama_equity_research.log"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_dir: str | Path = "logs", level: int = logging.INFO, console: bool = True) -> Path:
    """Configure the ``equitune`` logger once per process; returns the log file path.

    Console output goes through rich (to stderr, so ``--json`` output on stdout stays clean); the file
    handler records everything at DEBUG and above.
    """
    from rich.console import Console
    from rich.logging import RichHandler

    log_path = Path(log_dir) / LOG_FILE_NAME
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("equitune")
    logger.setLevel(logging.DEBUG)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    file_handler = logging.FileHandler(log_path, encoding="utf-8")
    file_handler.setLevel(logging.DEBUG)
    file_handler.setFormatter(logging.Formatter(_FORMAT))
    logger.addHandler(file_handler)
    if console:
        rich_handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)
        rich_handler.setLevel(level)
        logger.addHandler(rich_handler)
    logger.propagate = False
    return log_path
