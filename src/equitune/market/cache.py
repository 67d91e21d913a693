"""On-disk JSON cache and a polite rate limiter, shared by the live market-data providers (EDGAR, yfinance).

The cache keeps one JSON file per key under a folder (default ``~/.cache/equitune/<provider>``, or
``$XDG_CACHE_HOME/equitune/<provider>``), each holding the time it was stored and the value. Entries older
than the cache's ``max_age`` count as absent. Files are written atomically: a temporary file in the same
folder, then a rename, so a crash never leaves a half-written entry.

Clocks and sleeps are injected so that tests can check expiry and rate limiting without waiting.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from equitune.errors import ConfigError

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]

# Keys become relative paths: letters, digits, dot, dash, underscore, with '/' for sub-folders.
_KEY_PATTERN = re.compile(r"[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*")


def default_cache_dir(provider: str) -> Path:
    """The folder where ``provider`` keeps its cache when none is configured."""
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "equitune" / provider


def write_json_atomic(path: Path, value: Any) -> None:
    """Write ``value`` as JSON to ``path`` via a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(value, handle, ensure_ascii=False, allow_nan=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        # Leave no stray temporary file behind; the previous entry (if any) is untouched.
        Path(tmp_name).unlink(missing_ok=True)
        raise


class JsonCache:
    """A folder of JSON entries keyed by strings such as ``"companyfacts/CIK0000320193"``.

    ``max_age`` is in seconds (``None``: entries never expire). ``get`` returns ``None`` for a missing,
    expired or unreadable entry, so ``None`` itself cannot be cached.
    """

    def __init__(self, directory: str | os.PathLike[str], max_age: float | None = 86_400.0, clock: Clock = time.time):
        if max_age is not None and max_age < 0:
            raise ConfigError(f"cache max_age must be >= 0 seconds, got {max_age}")
        self.directory = Path(directory).expanduser()
        self.max_age = max_age
        self._clock = clock

    def path_for(self, key: str) -> Path:
        """The file that holds ``key``."""
        if not _KEY_PATTERN.fullmatch(key) or ".." in key.split("/"):
            raise ValueError(f"invalid cache key {key!r}")
        return self.directory / f"{key}.json"

    def get(self, key: str) -> Any | None:
        """The value cached under ``key``; ``None`` when absent, unreadable or older than ``max_age``."""
        path = self.path_for(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            stored_at = float(entry["stored_at"])
            value = entry["value"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # A cache entry can always be fetched again, so a damaged one is a miss, not an error.
            log.warning("ignoring unreadable cache entry %s (%s)", path, exc)
            return None
        if self.max_age is not None and self._clock() - stored_at > self.max_age:
            return None
        return value

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON-serialisable, not ``None``) under ``key``, atomically."""
        if value is None:
            raise ValueError("None cannot be cached (it means 'absent')")
        write_json_atomic(self.path_for(key), {"stored_at": self._clock(), "key": key, "value": value})

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Keys stored under the folder ``prefix`` (fresh or not)."""
        folder = self.directory / prefix if prefix else self.directory
        if not folder.is_dir():
            return
        for path in sorted(folder.rglob("*.json")):
            yield path.relative_to(self.directory).with_suffix("").as_posix()


class RateLimiter:
    """Allow at most ``max_calls`` calls in any window of ``period`` seconds, sleeping when needed.

    SEC EDGAR asks for at most 10 requests per second; ``acquire()`` before each request keeps a client
    under such a limit. Thread-safe; the clock must be monotonic.
    """

    def __init__(self, max_calls: int, period: float = 1.0, clock: Clock = time.monotonic, sleep: Sleep = time.sleep):
        if max_calls < 1 or period <= 0:
            raise ConfigError(f"rate limit must allow at least 1 call per positive period, got {max_calls}/{period}s")
        self.max_calls = max_calls
        self.period = period
        self._clock = clock
        self._sleep = sleep
        self._calls: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait until one more call is allowed, record it, and return the seconds waited."""
        waited = 0.0
        with self._lock:
            while True:
                now = self._clock()
                while self._calls and now - self._calls[0] >= self.period:
                    self._calls.popleft()
                if len(self._calls) < self.max_calls:
                    self._calls.append(now)
                    return waited
                delay = self.period - (now - self._calls[0])
                self._sleep(delay)
                waited += delay


_SHARED_LIMITERS: dict[str, RateLimiter] = {}
_SHARED_LOCK = threading.Lock()


def shared_limiter(name: str, max_calls: int, period: float = 1.0) -> RateLimiter:
    """One process-wide limiter per service, so that several provider instances together stay polite."""
    with _SHARED_LOCK:
        limiter = _SHARED_LIMITERS.get(name)
        if limiter is None or (limiter.max_calls, limiter.period) != (max_calls, period):
            limiter = RateLimiter(max_calls, period)
            _SHARED_LIMITERS[name] = limiter
        return limiter
