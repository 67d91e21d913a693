"""Production monitoring: log the reports a deployed model generates, score them daily, alert when quality drops.

A production service calls ``log_production_output`` for every report it generates; each call appends one JSON
line to ``monitoring.log_file`` in the ``equitune evaluate --score`` format with its ``timestamp`` (an optional
field there, required here), so the log can also be rescored as it is with ``equitune evaluate --score``::

    {"ticker": "AAPL", "task": "valuation", "prompt": "...", "output": "...", "model": "equity-research:q4",
     "condition": "base", "id": "3f2c...", "meta": {"request": 17}, "timestamp": "2025-01-02T09:30:00+00:00"}

``evaluate_recent_outputs`` (``equitune monitor --since 1d --threshold 65``) reads the log, keeps the lines whose
timestamp falls in ``[now - since, now]``, scores them with the rubric and the numeric fact-check against the
company's data (no model is loaded), and stores the day's summary in ``monitoring.scores_file``: one line per UTC
day and set of models, replaced (atomically) when the monitor runs again that day. ``monitor`` does that and,
when the mean score is below the threshold, calls ``trigger_retraining_alert``, which appends an alert record to
``monitoring.alerts_file`` and runs ``monitoring.alert_command`` and/or POSTs to ``monitoring.alert_webhook``.

Bad log lines are never skipped silently. A bad line whose timestamp can be read and lies in the window is listed
with its line number in ``MonitorResult.bad_lines`` and counted in the daily record; one outside the window belongs
to another run. A bad line whose timestamp cannot be read (malformed JSON, a blank line, a missing or unreadable
timestamp) belongs to no window: it is listed in ``MonitorResult.undated_bad_lines`` (and counted apart in the
daily record) on every run until the log is repaired, but never counted as a window's bad line, so one broken line
cannot fail every later day. Bad lines do not fail a run that also has valid lines, because one malformed write
must not hide a day of production quality; a window that holds bad lines and no valid line at all raises
``OutputsFileError``, since then the log itself is broken. A window with no line at all, or only undated bad lines
besides lines of other windows, has no outputs. Bytes that are not UTF-8 make their line bad (read with U+FFFD in
their place), and a log that cannot be read raises ``DataError`` naming it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import statistics
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from equitune.data.families import FAMILY_IDS
from equitune.errors import ConfigError, DataError
from equitune.evaluate.scoring import (
    ContextSource,
    LineProblem,
    OutputRecord,
    OutputsFileError,
    ScoredOutput,
    parse_output_line,
    score_records,
    summarise,
)
from equitune.evaluate.weights import tier_for
from equitune.io import atomic_write_text

if TYPE_CHECKING:
    from equitune.config import EquituneConfig

log = logging.getLogger(__name__)

UTC = dt.timezone.utc
ALERT_COMMAND_TIMEOUT_S = 60.0
ALERT_WEBHOOK_TIMEOUT_S = 10.0
WORST_TASKS = 3
UNNAMED_MODEL = "(unnamed)"  # what ``summarise`` calls a record without a model

_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


# ----------------------------------------------------------------------------------------------- helpers


def _config(config: EquituneConfig | None) -> EquituneConfig:
    if config is None:
        from equitune.config import EquituneConfig

        config = EquituneConfig()
    return config


def _utc(when: dt.datetime | None) -> dt.datetime:
    """``when`` (default: now) as an aware UTC datetime; a naive datetime is taken to be UTC already."""
    if when is None:
        return dt.datetime.now(UTC)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _iso(when: dt.datetime) -> str:
    return _utc(when).isoformat(timespec="seconds")


def parse_timestamp(text: str) -> dt.datetime:
    """An ISO-8601 timestamp as an aware UTC datetime (``Z`` accepted; no offset means UTC); ValueError if bad."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"  # fromisoformat accepts 'Z' only from Python 3.11
    return _utc(dt.datetime.fromisoformat(value))


def parse_since(text: str) -> dt.timedelta:
    """A window length such as ``30m``, ``12h``, ``1d``, ``7d`` or ``2w`` (also ``s``; decimals allowed).

    Raises ``ConfigError`` naming the accepted forms for anything else, including zero."""
    match = _SINCE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(
            f"invalid window {text!r}: expected a number and a unit (s, m, h, d, w), e.g. 30m, 12h, 1d, 7d, 2w"
        )
    amount = float(match.group(1))
    if amount <= 0:
        raise ConfigError(f"invalid window {text!r}: it must be longer than zero")
    return dt.timedelta(**{_UNITS[match.group(2).lower()]: amount})


def format_since(window: dt.timedelta) -> str:
    """A short form of a window length (``1d``, ``36h``, ``90m``, ``45s``), the inverse of ``parse_since``."""
    seconds = window.total_seconds()
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _since(since: str | dt.timedelta | None, config: EquituneConfig) -> dt.timedelta:
    if since is None:
        since = config.monitoring.since
    if isinstance(since, dt.timedelta):
        if since <= dt.timedelta(0):
            raise ConfigError(f"invalid window {since}: it must be longer than zero")
        return since
    return parse_since(since)


def _append_line(path: Path, line: str) -> None:
    """Append one complete line to ``path`` (created with its folder), flushed and fsynced.

    O_APPEND with one ``write`` of the whole line keeps lines from concurrent writers whole on local file
    systems; a short write (rare: disk full, signals) is finished rather than left as half a record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        # A file that does not end in a newline (edited by hand, or a crash elsewhere) would glue this record
        # onto its last line; start a new line so only the old line is bad.
        size = os.fstat(fd).st_size
        if size:
            with path.open("rb") as handle:
                handle.seek(size - 1)
                if handle.read(1) != b"\n":
                    data = b"\n" + data
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


@lru_cache(maxsize=1)
def _ticker_source() -> ContextSource:
    """Market data for checking logged records (tickers only; no company is valued), loaded once per process."""
    return ContextSource()


# ----------------------------------------------------------------------------------------------- logging


def log_production_output(
    *,
    ticker: str,
    task: str,
    prompt: str,
    output: str,
    model: str | None,
    condition: str = "base",
    meta: Any = None,
    config: EquituneConfig | None = None,
    path: str | os.PathLike[str] | None = None,
    when: dt.datetime | None = None,
    id: str | None = None,  # the field's name in the log format
    contexts: ContextSource | None = None,
) -> dict[str, Any]:
    """Append one generated report to the production log (``path``, default ``config.monitoring.log_file``).

    The record holds the fields of the ``equitune evaluate --score`` format (ticker, task, prompt, output, model,
    condition, id, meta) plus ``timestamp`` (``when``, default now, ISO-8601 UTC); ``id`` defaults to a random
    UUID. It is checked exactly as the scorer checks a line (``parse_output_line``; ``meta`` must also be JSON)
    and a bad record raises ``DataError`` naming every problem instead of being logged. The ticker is stored in
    its canonical form (``brk-b`` -> ``BRK.B``). Returns the record written."""
    target = Path(path) if path is not None else _config(config).monitoring.log_file
    record: dict[str, Any] = {
        "ticker": ticker,
        "task": task,
        "prompt": prompt,
        "output": output,
        "model": model,
        "condition": condition,
        "id": uuid.uuid4().hex if id is None else id,
        "meta": meta,
    }
    checked, problems = parse_output_line(record, 1, contexts or _ticker_source())
    if checked is None:
        details = "; ".join(f"{p.field}: {p.message}" for p in problems)
        raise DataError(f"not logged to {target}: {details}")
    record["ticker"] = checked.ticker
    record["timestamp"] = _iso(_utc(when))
    try:
        line = json.dumps(record, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DataError(f"not logged to {target}: meta: not JSON-serialisable ({exc})") from None
    _append_line(target, line)
    return record


# ----------------------------------------------------------------------------------------------- reading


@dataclass
class LogScan:
    """The records of a production log inside a window, its bad lines, and how many lines were read.

    ``problems`` are those of the bad lines in the window; ``undated`` those of the bad lines whose timestamp cannot
    be read, which belong to no window."""

    records: list[OutputRecord] = field(default_factory=list)
    problems: list[LineProblem] = field(default_factory=list)
    undated: list[LineProblem] = field(default_factory=list)
    lines: int = 0
    outside_window: int = 0

    @property
    def bad_lines(self) -> list[int]:
        return sorted({p.line for p in self.problems})

    @property
    def undated_bad_lines(self) -> list[int]:
        return sorted({p.line for p in self.undated})


def _log_lines(file: Path) -> Iterator[tuple[int, str, str | None]]:
    """(line number, text, encoding problem or None) for every line of ``file``.

    A line that is not valid UTF-8 is decoded with U+FFFD in place of the bad bytes and comes with a problem; an
    ``OSError`` while opening or reading raises ``DataError`` naming the file."""
    try:
        with file.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    yield number, raw.decode("utf-8"), None
                except UnicodeDecodeError as exc:
                    problem = (
                        f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line); "
                        "read with U+FFFD in place of the bad bytes"
                    )
                    yield number, raw.decode("utf-8", errors="replace"), problem
    except OSError as exc:
        raise DataError(f"{file}: cannot read the production log: {exc.strerror or exc}") from None


def read_production_log(
    path: str | os.PathLike[str], start: dt.datetime, end: dt.datetime, contexts: ContextSource
) -> LogScan:
    """The valid records of the log at ``path`` with ``start <= timestamp <= end``, the problems of the bad lines in
    the window, and apart from them the problems of the bad lines whose timestamp cannot be read (a bad line clearly
    outside the window belongs to another run). Raises ``DataError`` when the file does not exist or cannot be
    read."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: no production log (monitoring.log_file); nothing has been logged there yet")
    scan = LogScan()
    ids: dict[str, int] = {}
    for line, text, encoding in _log_lines(file):
        scan.lines += 1
        issues: list[LineProblem] = [] if encoding is None else [LineProblem(line, "(encoding)", encoding)]
        if not text.strip():
            scan.undated.append(LineProblem(line, "(json)", "blank line (JSONL holds one record per line)"))
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            issues.append(LineProblem(line, "(json)", f"malformed JSON: {exc.msg} (column {exc.colno})"))
            scan.undated.extend(issues)
            continue
        if not isinstance(obj, dict):
            _, more = parse_output_line(obj, line, contexts)  # says what the line should have been
            scan.undated.extend(issues + more)
            continue
        when: dt.datetime | None = None
        raw = obj.get("timestamp")
        if raw is None:
            issues.append(LineProblem(line, "timestamp", "missing"))
        elif not isinstance(raw, str):
            issues.append(LineProblem(line, "timestamp", f"must be an ISO-8601 string, got {type(raw).__name__}"))
        else:
            try:
                when = parse_timestamp(raw)
            except ValueError:
                issues.append(LineProblem(line, "timestamp", f"not an ISO-8601 timestamp: {raw!r}"))
        if when is not None and not start <= when <= end:
            scan.outside_window += 1
            continue
        # The scorer accepts a string timestamp and carries it through; any other was reported above.
        body = obj if isinstance(raw, str) else {k: v for k, v in obj.items() if k != "timestamp"}
        record, more = parse_output_line(body, line, contexts)
        issues.extend(more)
        if when is None:
            scan.undated.extend(issues)
            continue
        if record is not None and not issues and record.id is not None:
            if record.id in ids:
                issues.append(LineProblem(line, "id", f"duplicate id '{record.id}' (first on line {ids[record.id]})"))
            else:
                ids[record.id] = line
        if issues:
            scan.problems.extend(issues)
        elif record is not None:
            scan.records.append(record)
    return scan


# ----------------------------------------------------------------------------------------------- results


@dataclass
class MonitorResult:
    """One monitoring run: the window, the scores of the outputs in it, the bad lines, and the stored record.

    ``mean_score`` and ``tier`` are None when the window holds no output; ``below_threshold`` is then False (no
    outputs is reported as such, not as a quality drop). ``problems`` are those of the bad lines in the window,
    ``undated_problems`` those of the bad lines whose timestamp cannot be read (they belong to no window)."""

    window_start: dt.datetime
    window_end: dt.datetime
    since: dt.timedelta
    threshold: float
    log_file: Path
    scored: list[ScoredOutput]
    summary: dict[str, Any]
    problems: list[LineProblem] = field(default_factory=list)
    undated_problems: list[LineProblem] = field(default_factory=list)
    lines_read: int = 0
    scores_file: Path | None = None
    daily_record: dict[str, Any] | None = None

    @property
    def window(self) -> tuple[dt.datetime, dt.datetime]:
        """(start, end) of the window, both included, in UTC."""
        return self.window_start, self.window_end

    @property
    def outputs(self) -> int:
        """How many outputs in the window were scored."""
        return len(self.scored)

    @property
    def mean_score(self) -> float | None:
        value = self.summary["overall"]["mean_score"]
        return None if value is None else float(value)

    @property
    def tier(self) -> str | None:
        score = self.mean_score
        return None if score is None else tier_for(score).name

    @property
    def below_threshold(self) -> bool:
        score = self.mean_score
        return score is not None and score < self.threshold

    @property
    def bad_lines(self) -> list[int]:
        """Line numbers of the bad lines in the window, counted in this run."""
        return sorted({p.line for p in self.problems})

    @property
    def undated_bad_lines(self) -> list[int]:
        """Line numbers of the bad lines whose timestamp cannot be read: reported on every run, counted in none."""
        return sorted({p.line for p in self.undated_problems})

    @property
    def status(self) -> str:
        """``no_outputs``, ``below_threshold`` or ``ok``."""
        if not self.scored:
            return "no_outputs"
        return "below_threshold" if self.below_threshold else "ok"

    @property
    def models(self) -> dict[str, float | None]:
        """Mean score per model."""
        return {name: stats["mean_score"] for name, stats in self.summary["models"].items()}

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        """Per task over all models: outputs and mean score, in the families' order."""
        by_task: dict[str, list[float]] = defaultdict(list)
        for s in self.scored:
            by_task[s.task].append(s.score.score)
        return {
            task: {"outputs": len(by_task[task]), "mean_score": round(statistics.fmean(by_task[task]), 2)}
            for task in FAMILY_IDS
            if by_task.get(task)
        }

    def worst_tasks(self, n: int = WORST_TASKS) -> list[dict[str, Any]]:
        """The ``n`` tasks with the lowest mean score, lowest first."""
        ranked = sorted(self.tasks.items(), key=lambda item: item[1]["mean_score"])
        return [{"task": task, **stats} for task, stats in ranked[:n]]

    @property
    def message(self) -> str:
        """What the run found: a first line with the verdict, then (when there are outputs) the mean score per
        model, the worst tasks and the hallucination rate, and the undated bad lines when there are any."""
        span = f"{_iso(self.window_start)} .. {_iso(self.window_end)}"
        bad = f"; {len(self.bad_lines)} bad log line(s): {_lines(self.bad_lines)}" if self.problems else ""
        if not self.scored:
            lines = [f"no outputs logged in the window {span} ({self.log_file}){bad}"]
        else:
            verdict = "BELOW" if self.below_threshold else "at or above"
            lines = [
                f"mean score {self.mean_score:.1f} ({self.tier}) over {self.outputs} output(s) in {span}, "
                f"{verdict} the threshold {self.threshold:g}{bad}"
            ]
            for name, stats in self.summary["models"].items():
                lines.append(f"  model {name}: mean score {stats['mean_score']:.2f} over {stats['outputs']} output(s)")
            worst = ", ".join(
                f"{t['task']} {t['mean_score']:.2f} ({t['outputs']} output(s))" for t in self.worst_tasks()
            )
            lines.append(f"  worst tasks: {worst}")
            rate = self.summary["overall"]["hallucination_rate"]
            shown = "n/a (no figures to check)" if rate is None else f"{rate:.1%} (mean share of unsupported figures)"
            lines.append(f"  hallucination rate: {shown}")
        if self.undated_problems:
            undated = self.undated_bad_lines
            lines.append(
                f"  {len(undated)} undated bad log line(s), no readable timestamp (reported on every run, "
                f"counted in no window): {_lines(undated)}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the per-output scores without per-figure labels)."""
        overall = self.summary["overall"]
        return {
            "status": self.status,
            "message": self.message,
            "window": {
                "start": _iso(self.window_start),
                "end": _iso(self.window_end),
                "since": format_since(self.since),
            },
            "log_file": str(self.log_file),
            "lines_read": self.lines_read,
            "outputs": self.outputs,
            "mean_score": self.mean_score,
            "tier": self.tier,
            "threshold": self.threshold,
            "below_threshold": self.below_threshold,
            "hallucination_rate": overall["hallucination_rate"],
            "derived_error_rate": overall["derived_error_rate"],
            "key_fact_coverage": overall["key_fact_coverage"],
            "tiers": overall["tiers"],
            "models": self.models,
            "tasks": self.tasks,
            "worst_tasks": self.worst_tasks(),
            "bad_lines": [{"line": p.line, "field": p.field, "message": p.message} for p in self.problems],
            "undated_bad_lines": [
                {"line": p.line, "field": p.field, "message": p.message} for p in self.undated_problems
            ],
            "scores_file": None if self.scores_file is None else str(self.scores_file),
            "summary": self.summary,
            "scored": [s.to_dict() for s in self.scored],
        }


def _lines(numbers: list[int], limit: int = 20) -> str:
    shown = ", ".join(str(n) for n in numbers[:limit])
    return shown + (f" and {len(numbers) - limit} more" if len(numbers) > limit else "")


# ----------------------------------------------------------------------------------------------- daily scores


def daily_record(result: MonitorResult) -> dict[str, Any]:
    """The line stored in the scores file for a run: its UTC day, models, window, scores, and how many bad lines
    were in the window (``bad_lines``) and how many have no readable timestamp (``undated_bad_lines``)."""
    overall = result.summary["overall"]
    return {
        "date": result.window_end.date().isoformat(),
        "models": sorted(result.models),
        "window": {
            "start": _iso(result.window_start),
            "end": _iso(result.window_end),
            "since": format_since(result.since),
        },
        "outputs": result.outputs,
        "mean_score": result.mean_score,
        "tier": result.tier,
        "threshold": result.threshold,
        "below_threshold": result.below_threshold,
        "hallucination_rate": overall["hallucination_rate"],
        "derived_error_rate": overall["derived_error_rate"],
        "key_fact_coverage": overall["key_fact_coverage"],
        "tiers": overall["tiers"],
        "per_model": result.models,
        "per_task": {task: stats["mean_score"] for task, stats in result.tasks.items()},
        "bad_lines": len(result.bad_lines),
        "undated_bad_lines": len(result.undated_bad_lines),
        "updated": _iso(dt.datetime.now(UTC)),
    }


def store_daily_record(path: str | os.PathLike[str], record: dict[str, Any]) -> Path:
    """Put ``record`` into the scores file at ``path``, in place of the line of the same date and models.

    The file is rewritten atomically, so a crash leaves the old or the new version; lines that cannot be read are
    kept as they are (a warning names them) rather than dropped with someone's data."""
    file = Path(path)
    key = (record["date"], record["models"])
    line = json.dumps(record, ensure_ascii=False)
    kept: list[str] = []
    replaced = False
    if file.is_file():
        for number, raw in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                old = json.loads(raw)
            except json.JSONDecodeError:
                log.warning("%s, line %d: not JSON; kept as it is", file, number)
                kept.append(raw)
                continue
            if isinstance(old, dict) and (old.get("date"), old.get("models")) == key:
                # In place, so the file stays in the order the days were first monitored.
                if not replaced:
                    kept.append(line)
                replaced = True
                continue
            kept.append(raw)
    if not replaced:
        kept.append(line)
    return atomic_write_text(file, "\n".join(kept) + "\n")


# ----------------------------------------------------------------------------------------------- the run


def evaluate_recent_outputs(
    config: EquituneConfig | None = None,
    *,
    since: str | dt.timedelta | None = None,
    threshold: float | None = None,
    now: dt.datetime | None = None,
    log_file: str | os.PathLike[str] | None = None,
    contexts: ContextSource | None = None,
    store: bool = True,
) -> MonitorResult:
    """Score the production outputs logged in the last ``since`` (default ``config.monitoring.since``).

    The window is ``[now - since, now]`` (``now`` defaults to the current time; naive datetimes are UTC). Each
    output is scored with the rubric (``config.evaluation.weights``) and the fact-check against its company's
    data under its condition (``contexts``, default built from ``config.valuation``). When there are outputs and
    ``store`` is true, the day's record is written to ``config.monitoring.scores_file`` (see
    ``store_daily_record``). Bad lines are listed in the result, those without a readable timestamp apart; raises
    ``OutputsFileError`` (listing every problem, undated ones included) when the window holds bad lines and no valid
    one, ``DataError`` when the log is missing or cannot be read, ``ConfigError`` for a bad ``since`` or
    ``threshold``."""
    config = _config(config)
    window = _since(since, config)
    limit = float(config.monitoring.threshold if threshold is None else threshold)
    if not 0 <= limit <= 100:
        raise ConfigError(f"invalid threshold {limit:g}: scores run from 0 to 100")
    end = _utc(now)
    start = end - window
    path = Path(log_file) if log_file is not None else config.monitoring.log_file
    source = contexts if contexts is not None else ContextSource.from_config(config)

    scan = read_production_log(path, start, end, source)
    if scan.problems and not scan.records:
        # Only the window's own bad lines fail it; undated ones are listed too, in line order, to repair together.
        raise OutputsFileError(str(path), sorted(scan.problems + scan.undated, key=lambda p: p.line))
    for problem in scan.problems[:50]:
        log.warning("%s: %s", path, problem)
    for problem in scan.undated[:50]:
        log.warning("%s: %s (no readable timestamp: counted in no window)", path, problem)
    scored = score_records(scan.records, source, config.evaluation.weights)
    result = MonitorResult(
        window_start=start,
        window_end=end,
        since=window,
        threshold=limit,
        log_file=path,
        scored=scored,
        summary=summarise(scored),
        problems=scan.problems,
        undated_problems=scan.undated,
        lines_read=scan.lines,
    )
    if scored and store:
        # A day without outputs has no score to store; the result says so instead.
        result.daily_record = daily_record(result)
        result.scores_file = store_daily_record(config.monitoring.scores_file, result.daily_record)
    log.info("%s", result.message)
    return result


# ----------------------------------------------------------------------------------------------- alerts


def _run_command(command: str, payload: bytes) -> dict[str, Any]:
    """Run the alert command through the shell with the alert on stdin; its outcome, never an exception."""
    outcome: dict[str, Any] = {"command": command}
    try:
        done = subprocess.run(
            command, shell=True, input=payload, capture_output=True, timeout=ALERT_COMMAND_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        outcome.update(exit_status=None, error=f"timed out after {ALERT_COMMAND_TIMEOUT_S:g} s")
    except OSError as exc:
        outcome.update(exit_status=None, error=f"could not run: {exc}")
    else:
        outcome["exit_status"] = done.returncode
        if done.returncode != 0:
            tail = done.stderr.decode("utf-8", errors="replace").strip()[-500:]
            outcome["error"] = f"exited with status {done.returncode}" + (f": {tail}" if tail else "")
    if "error" in outcome:
        log.error("alert command %r failed: %s", command, outcome["error"])
    return outcome


def _post_webhook(url: str, payload: bytes) -> dict[str, Any]:
    """POST the alert to ``url`` as JSON; its outcome (HTTP status or error), never an exception."""
    outcome: dict[str, Any] = {"url": url}
    # urlopen also opens file:// and ftp:// URLs; an alert goes to a web endpoint only.
    if urllib.parse.urlsplit(url).scheme not in {"http", "https"}:
        outcome.update(status=None, error="not an http(s) URL")
    else:
        request = urllib.request.Request(
            url, data=payload, method="POST", headers={"Content-Type": "application/json", "User-Agent": "equitune"}
        )
        try:
            with urllib.request.urlopen(request, timeout=ALERT_WEBHOOK_TIMEOUT_S) as response:
                outcome["status"] = response.status
        except urllib.error.HTTPError as exc:
            outcome.update(status=exc.code, error=f"HTTP {exc.code} {exc.reason}")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            outcome.update(status=None, error=f"could not reach the webhook: {reason}")
    if "error" in outcome:
        log.error("alert webhook %s failed: %s", url, outcome["error"])
    return outcome


def trigger_retraining_alert(
    result: MonitorResult,
    config: EquituneConfig | None = None,
    *,
    reason: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Raise a retraining alert for a monitoring result and return the alert record.

    The record (timestamp, window, mean score, threshold, tier, outputs, worst tasks, per-model means, bad lines
    in the window and undated ones, reason) is sent as JSON to ``monitoring.alert_command`` (run through the
    shell, JSON on stdin, 60 s timeout) and POSTed to ``monitoring.alert_webhook`` (10 s timeout) when they are
    set; their outcomes (exit status, HTTP status or error) are added under ``command`` and ``webhook`` and the
    record is then appended to ``monitoring.alerts_file``. A failed delivery is logged and recorded, never raised:
    the alert file still holds the alert."""
    config = _config(config)
    settings = config.monitoring
    score = result.mean_score
    if reason is None:
        shown = "no score" if score is None else f"mean score {score:.1f}"
        reason = (
            f"{shown} over {result.outputs} output(s) in the last {format_since(result.since)} "
            f"is below the threshold {result.threshold:g}"
        )
    alert: dict[str, Any] = {
        "timestamp": _iso(_utc(now)),
        "window": {
            "start": _iso(result.window_start),
            "end": _iso(result.window_end),
            "since": format_since(result.since),
        },
        "mean_score": score,
        "threshold": result.threshold,
        "tier": result.tier,
        "outputs": result.outputs,
        "hallucination_rate": result.summary["overall"]["hallucination_rate"],
        "worst_tasks": result.worst_tasks(),
        "models": result.models,
        "bad_lines": len(result.bad_lines),
        "undated_bad_lines": len(result.undated_bad_lines),
        "log_file": str(result.log_file),
        "reason": reason,
    }
    payload = json.dumps(alert, ensure_ascii=False).encode("utf-8")
    log.warning("retraining alert: %s", reason)
    alert["command"] = _run_command(settings.alert_command, payload) if settings.alert_command else None
    alert["webhook"] = _post_webhook(settings.alert_webhook, payload) if settings.alert_webhook else None
    _append_line(settings.alerts_file, json.dumps(alert, ensure_ascii=False))
    return alert


def monitor(
    config: EquituneConfig | None = None,
    *,
    since: str | dt.timedelta | None = None,
    threshold: float | None = None,
    now: dt.datetime | None = None,
    contexts: ContextSource | None = None,
) -> tuple[MonitorResult, dict[str, Any] | None]:
    """``equitune monitor``: score the recent outputs, store the day's score, and alert when below threshold.

    Returns the result and the alert record (None when no alert was raised). The caller exits 1 when
    ``result.below_threshold``; errors in the input (missing or unreadable log, bad window) are raised."""
    config = _config(config)
    result = evaluate_recent_outputs(config, since=since, threshold=threshold, now=now, contexts=contexts)
    alert = trigger_retraining_alert(result, config, now=now) if result.below_threshold else None
    return result, alert
