"""Production monitoring: logging outputs, the window, daily records, alerts (command and webhook), bad lines."""

from __future__ import annotations

import datetime as dt
import errno
import http.server
import json
import random
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from equitune.config import EquituneConfig
from equitune.data.families import get_family
from equitune.errors import ConfigError, DataError
from equitune.evaluate.monitor import (
    evaluate_recent_outputs,
    format_since,
    log_production_output,
    monitor,
    parse_since,
    trigger_retraining_alert,
)
from equitune.evaluate.scoring import ContextSource, OutputsFileError

NOW = dt.datetime(2025, 3, 14, 18, 0, tzinfo=dt.timezone.utc)
# Wrong price, target, revenue and multiple for Apple: the fact-check flags them and the rubric scores it Poor.
POOR = (
    "## Valuation\nApple (AAPL) trades at $12.00 with revenue of $5.0B and a P/E of 250.0x. "
    "Price target $999.00, rating: Strong Sell."
)


def _config(tmp_path: Path, **monitoring: Any) -> EquituneConfig:
    return EquituneConfig.model_validate(
        {
            "monitoring": {
                "log_file": str(tmp_path / "logs" / "production.jsonl"),
                "scores_file": str(tmp_path / "monitoring" / "daily_scores.jsonl"),
                "alerts_file": str(tmp_path / "monitoring" / "alerts.jsonl"),
                **monitoring,
            }
        }
    )


def _good(source: ContextSource, ticker: str, task: str, seed: int = 0) -> tuple[str, str]:
    """(prompt, response) of a training example: a correct report, which the rubric scores Excellent."""
    return get_family(task).render(source.get(ticker), random.Random(seed))


def _log_good(config: EquituneConfig, source: ContextSource, when: dt.datetime, **kw: Any) -> dict[str, Any]:
    ticker, task = kw.pop("ticker", "AAPL"), kw.pop("task", "valuation")
    prompt, output = _good(source, ticker, task)
    fields: dict[str, Any] = {"model": "equity-research:q4", **kw}
    return log_production_output(
        ticker=ticker, task=task, prompt=prompt, output=output, config=config, when=when, contexts=source, **fields
    )


def _log_poor(config: EquituneConfig, source: ContextSource, when: dt.datetime, **kw: Any) -> dict[str, Any]:
    prompt, _ = _good(source, "AAPL", "valuation")
    fields: dict[str, Any] = {"model": "equity-research:q4", **kw}
    return log_production_output(
        ticker="AAPL", task="valuation", prompt=prompt, output=POOR, config=config, when=when, contexts=source, **fields
    )


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ------------------------------------------------------------------------------------------------ logging


def test_logged_records_round_trip_and_are_scored(tmp_path: Path, source: ContextSource) -> None:
    config = _config(tmp_path)
    prompt, output = _good(source, "NVDA", "financial_analysis")
    first = log_production_output(
        ticker="nvda",
        task="financial_analysis",
        prompt=prompt,
        output=output,
        model="equity-research:q4",
        meta={"request": 17, "latency_ms": 812},
        config=config,
        when=NOW - dt.timedelta(hours=2),
        contexts=source,
    )
    # Without `contexts` the record is checked against the embedded market data.
    prompt, output = _good(source, "AAPL", "valuation")
    second = log_production_output(
        ticker="AAPL",
        task="valuation",
        prompt=prompt,
        output=output,
        model="equity-research:q4",
        condition="base",
        id="req-2",
        config=config,
        when=NOW - dt.timedelta(hours=1),
    )
    lines = _jsonl(config.monitoring.log_file)
    assert lines == [first, second]
    assert set(first) == {"ticker", "task", "prompt", "output", "model", "condition", "id", "meta", "timestamp"}
    assert (
        first["ticker"] == "NVDA"
        and first["condition"] == "base"
        and first["meta"] == {"request": 17, "latency_ms": 812}
    )
    assert first["timestamp"] == "2025-03-14T16:00:00+00:00" and len(first["id"]) == 32
    assert second["id"] == "req-2" and second["output"] == _good(source, "AAPL", "valuation")[1]

    result = evaluate_recent_outputs(config, now=NOW, contexts=source)
    assert result.outputs == 2 and not result.problems and result.lines_read == 2
    assert result.mean_score is not None and result.mean_score >= 80 and result.tier == "Excellent"
    assert [(s.ticker, s.task, s.id) for s in result.scored] == [
        ("NVDA", "financial_analysis", first["id"]),
        ("AAPL", "valuation", "req-2"),
    ]
    assert set(result.tasks) == {"financial_analysis", "valuation"}
    data = json.loads(json.dumps(result.to_dict()))
    assert data["status"] == "ok" and data["outputs"] == 2 and data["window"]["since"] == "1d"


def test_a_bad_record_is_refused_not_logged(tmp_path: Path, source: ContextSource) -> None:
    config = _config(tmp_path)
    prompt, output = _good(source, "AAPL", "valuation")
    base: dict[str, Any] = {"prompt": prompt, "output": output, "model": "m", "config": config, "contexts": source}
    with pytest.raises(DataError, match="unknown task 'valuaton'"):
        log_production_output(ticker="AAPL", task="valuaton", **base)
    with pytest.raises(DataError, match="unknown ticker 'APPL'"):
        log_production_output(ticker="APPL", task="valuation", **base)
    with pytest.raises(DataError, match="unknown condition 'boom'"):
        log_production_output(ticker="AAPL", task="valuation", condition="boom", **base)
    with pytest.raises(DataError, match="prompt: empty"):
        log_production_output(ticker="AAPL", task="valuation", **{**base, "prompt": " "})
    with pytest.raises(DataError, match="meta: not JSON"):
        log_production_output(ticker="AAPL", task="valuation", meta={"at": NOW}, **base)
    assert not config.monitoring.log_file.exists()


def test_appending_after_a_line_without_newline_keeps_the_new_record_whole(
    tmp_path: Path, source: ContextSource
) -> None:
    config = _config(tmp_path)
    config.monitoring.log_file.parent.mkdir(parents=True)
    config.monitoring.log_file.write_text('{"ticker": "AAPL", "tas', encoding="utf-8")  # a torn write
    record = _log_good(config, source, NOW)
    lines = config.monitoring.log_file.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and json.loads(lines[1]) == record
    result = evaluate_recent_outputs(config, now=NOW, contexts=source)
    # The torn line has no readable timestamp: reported, but not one of the window's bad lines.
    assert result.outputs == 1 and result.bad_lines == [] and result.undated_bad_lines == [1]


# ------------------------------------------------------------------------------------------------ the window


def test_only_records_inside_the_window_are_scored(tmp_path: Path, source: ContextSource) -> None:
    config = _config(tmp_path)
    ages = {"w": dt.timedelta(days=9), "d2": dt.timedelta(days=2), "h12": dt.timedelta(hours=12)}
    for name, age in ages.items():
        _log_good(config, source, NOW - age, id=name)
    _log_good(config, source, NOW, id="now")
    _log_good(config, source, NOW + dt.timedelta(minutes=5), id="future")  # after `now`: the next run's
    # A naive `now` is UTC, like every timestamp.
    naive = NOW.replace(tzinfo=None)

    def ids(since: Any) -> list[str | None]:
        return [s.id for s in evaluate_recent_outputs(config, since=since, now=naive, contexts=source).scored]

    assert ids("1d") == ["h12", "now"]
    assert ids("12h") == ["h12", "now"]  # both ends of the window are included
    assert ids("11h") == ["now"]
    assert ids(dt.timedelta(days=3)) == ["d2", "h12", "now"]
    assert ids("2w") == ["w", "d2", "h12", "now"]
    # The default window comes from the configuration.
    assert [s.id for s in evaluate_recent_outputs(config, now=NOW, contexts=source).scored] == ["h12", "now"]
    config.monitoring.since = "3d"
    result = evaluate_recent_outputs(config, now=NOW, contexts=source, store=False)
    assert result.window == (NOW - dt.timedelta(days=3), NOW) and result.outputs == 3


def test_no_outputs_in_the_window_is_reported_not_alerted(tmp_path: Path, source: ContextSource) -> None:
    config = _config(tmp_path, alert_command=f"touch {tmp_path / 'ran'}")
    _log_poor(config, source, NOW - dt.timedelta(days=5))
    result, alert = monitor(config, now=NOW, contexts=source)
    assert alert is None and result.status == "no_outputs" and not result.below_threshold
    assert result.mean_score is None and result.outputs == 0 and "no outputs logged" in result.message
    assert not config.monitoring.scores_file.exists() and not config.monitoring.alerts_file.exists()
    assert not (tmp_path / "ran").exists()


def test_a_missing_log_is_an_error(tmp_path: Path, source: ContextSource) -> None:
    with pytest.raises(DataError, match="no production log"):
        evaluate_recent_outputs(_config(tmp_path), now=NOW, contexts=source)


# ------------------------------------------------------------------------------------------------ daily scores


def test_the_daily_record_is_replaced_not_duplicated(tmp_path: Path, source: ContextSource) -> None:
    config = _config(tmp_path)
    scores = config.monitoring.scores_file
    _log_good(config, source, NOW - dt.timedelta(hours=3))
    first = evaluate_recent_outputs(config, now=NOW - dt.timedelta(hours=2), contexts=source)
    assert first.scores_file == scores and _jsonl(scores) == [first.daily_record]
    _log_poor(config, source, NOW - dt.timedelta(hours=1))
    again = evaluate_recent_outputs(config, now=NOW, contexts=source)
    [stored] = _jsonl(scores)
    assert stored == again.daily_record and stored["date"] == "2025-03-14" and stored["outputs"] == 2
    assert stored["models"] == ["equity-research:q4"] and stored["mean_score"] == again.mean_score
    assert stored["per_task"] == {"valuation": again.mean_score}
    assert again.mean_score is not None and first.mean_score is not None and again.mean_score < first.mean_score

    # Another day, and another set of models on that day, get their own lines.
    _log_good(config, source, NOW + dt.timedelta(hours=7), model="equity-research:q8")
    next_day = evaluate_recent_outputs(config, now=NOW + dt.timedelta(hours=8), contexts=source)
    assert next_day.daily_record is not None and next_day.daily_record["date"] == "2025-03-15"
    assert next_day.daily_record["models"] == ["equity-research:q4", "equity-research:q8"]
    q8_only = evaluate_recent_outputs(config, since="1h", now=NOW + dt.timedelta(hours=8), contexts=source)
    assert q8_only.daily_record is not None and q8_only.daily_record["models"] == ["equity-research:q8"]
    assert [(r["date"], r["models"], r["outputs"]) for r in _jsonl(scores)] == [
        ("2025-03-14", ["equity-research:q4"], 2),
        ("2025-03-15", ["equity-research:q4", "equity-research:q8"], 3),
        ("2025-03-15", ["equity-research:q8"], 1),
    ]
    # Re-running an earlier day replaces its line where it stands.
    evaluate_recent_outputs(config, since="1h", now=NOW - dt.timedelta(hours=1), contexts=source)
    assert [(r["date"], r["outputs"]) for r in _jsonl(scores)] == [
        ("2025-03-14", 1),
        ("2025-03-15", 3),
        ("2025-03-15", 1),
    ]


def test_unreadable_lines_of_the_scores_file_are_kept(tmp_path: Path, source: ContextSource) -> None:
    config = _config(tmp_path)
    config.monitoring.scores_file.parent.mkdir(parents=True)
    config.monitoring.scores_file.write_text("not json\n", encoding="utf-8")
    _log_good(config, source, NOW)
    evaluate_recent_outputs(config, now=NOW, contexts=source)
    lines = config.monitoring.scores_file.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "not json" and json.loads(lines[1])["outputs"] == 1


# ------------------------------------------------------------------------------------------------ alerts


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, str], Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, dict(self.headers), json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[tuple[str, dict[str, str], Any]]]]:
    """A real HTTP server on a free local port; yields its URL and the requests it received."""
    received: list[tuple[str, dict[str, str], Any]] = []
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/retrain", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_below_threshold_alerts_through_the_command_and_the_webhook(
    tmp_path: Path, source: ContextSource, webhook: tuple[str, list[Any]]
) -> None:
    url, received = webhook
    stdin_copy = tmp_path / "alert from stdin.json"
    copy_stdin = "import sys, pathlib; pathlib.Path(sys.argv[1]).write_bytes(sys.stdin.buffer.read())"
    command = f"'{sys.executable}' -c '{copy_stdin}' '{stdin_copy}'"
    config = _config(tmp_path, alert_command=command, alert_webhook=url)
    _log_good(config, source, NOW - dt.timedelta(hours=3), task="risk_assessment")
    for hours in (1, 2):
        _log_poor(config, source, NOW - dt.timedelta(hours=hours))

    result, alert = monitor(config, now=NOW, contexts=source)
    assert result.below_threshold and alert is not None and result.status == "below_threshold"
    assert result.mean_score is not None and result.mean_score < 65
    sent = {k: v for k, v in alert.items() if k not in ("command", "webhook")}
    assert json.loads(stdin_copy.read_text(encoding="utf-8")) == sent
    [(path, headers, body)] = received
    assert path == "/hooks/retrain" and headers["Content-Type"] == "application/json" and body == sent
    assert alert["command"] == {"command": command, "exit_status": 0}
    assert alert["webhook"] == {"url": url, "status": 204}
    assert alert["timestamp"] == "2025-03-14T18:00:00+00:00" and alert["threshold"] == 65.0
    assert alert["window"] == {"start": "2025-03-13T18:00:00+00:00", "end": "2025-03-14T18:00:00+00:00", "since": "1d"}
    assert alert["mean_score"] == result.mean_score and alert["outputs"] == 3
    assert [t["task"] for t in alert["worst_tasks"]] == ["valuation", "risk_assessment"]
    assert alert["worst_tasks"][0]["mean_score"] < 50 <= 80 <= alert["worst_tasks"][1]["mean_score"]
    assert alert["models"] == {"equity-research:q4": result.mean_score}
    assert "below the threshold 65" in alert["reason"]
    assert alert["bad_lines"] == 0 and alert["undated_bad_lines"] == 0
    assert _jsonl(config.monitoring.alerts_file) == [alert]
    # What `equitune monitor` prints: the verdict, then the means per model, the worst tasks, the hallucination rate.
    verdict, model, worst, rate = result.message.splitlines()
    assert verdict.startswith(f"mean score {result.mean_score:.1f} (") and "BELOW the threshold 65" in verdict
    assert model == f"  model equity-research:q4: mean score {result.mean_score:.2f} over 3 output(s)"
    assert worst.startswith("  worst tasks: valuation ") and ", risk_assessment " in worst
    assert rate.startswith("  hallucination rate: ") and rate.endswith("% (mean share of unsupported figures)")
    # The same answers get the same mean as in an evaluation's summary.
    from equitune.evaluate.benchmark import summarise_scores

    assert result.mean_score == summarise_scores([s.score for s in result.scored])["mean_score"]
    assert result.mean_score == round(result.mean_score, 2)
    [daily] = _jsonl(config.monitoring.scores_file)
    assert daily["below_threshold"] is True and daily["hallucination_rate"] > 0


def test_at_or_above_threshold_there_is_no_alert(tmp_path: Path, source: ContextSource) -> None:
    config = _config(tmp_path, alert_command=f"touch '{tmp_path / 'ran'}'")
    _log_good(config, source, NOW - dt.timedelta(hours=2), task="executive_summary")
    _log_poor(config, source, NOW - dt.timedelta(hours=1))
    result, alert = monitor(config, now=NOW, contexts=source, threshold=50)
    assert result.mean_score is not None and 50 <= result.mean_score < 65
    assert alert is None and not result.below_threshold and result.status == "ok"
    assert not config.monitoring.alerts_file.exists() and not (tmp_path / "ran").exists()
    # The same outputs against the configured threshold (65) do alert.
    result, alert = monitor(config, now=NOW, contexts=source)
    assert result.below_threshold and alert is not None and (tmp_path / "ran").exists()


def test_failed_deliveries_are_recorded_not_raised(tmp_path: Path, source: ContextSource) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = _config(tmp_path, alert_command="echo broken >&2; exit 3", alert_webhook=f"http://127.0.0.1:{port}/x")
    _log_poor(config, source, NOW)
    result = evaluate_recent_outputs(config, now=NOW, contexts=source)
    alert = trigger_retraining_alert(result, config, reason="manual check")
    assert alert["reason"] == "manual check"
    assert alert["command"]["exit_status"] == 3 and "broken" in alert["command"]["error"]
    assert alert["webhook"]["status"] is None and "could not reach" in alert["webhook"]["error"]
    config.monitoring.alert_webhook = "file:///etc/passwd"
    assert trigger_retraining_alert(result, config)["webhook"]["error"] == "not an http(s) URL"
    assert len(_jsonl(config.monitoring.alerts_file)) == 2


# ------------------------------------------------------------------------------------------------ bad lines


def test_bad_lines_are_reported_with_their_line_numbers(tmp_path: Path, source: ContextSource) -> None:
    config = _config(tmp_path)
    log_file = config.monitoring.log_file
    good = _log_good(config, source, NOW - dt.timedelta(hours=1))
    old = (NOW - dt.timedelta(days=4)).isoformat()
    bad_lines = [
        "{not json",
        json.dumps({k: v for k, v in good.items() if k != "timestamp"}),  # no timestamp
        json.dumps({**good, "id": "x1", "timestamp": "yesterday"}),
        json.dumps({**good, "id": "x2", "task": "valuaton"}),
        json.dumps({**good, "id": "x3", "condtion": "base"}),
        json.dumps(good),  # the same id again
        json.dumps({**good, "id": "x4", "task": "valuaton", "timestamp": old}),  # bad, but another run's
        "",
    ]
    with log_file.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(bad_lines) + "\n")
    _log_good(config, source, NOW, id="last")

    result = evaluate_recent_outputs(config, now=NOW, contexts=source)
    assert [s.id for s in result.scored] == [good["id"], "last"]
    # Bad lines in the window count in this run; those without a readable timestamp are listed apart.
    assert result.bad_lines == [5, 6, 7] and result.undated_bad_lines == [2, 3, 4, 9] and result.lines_read == 10
    assert {(p.line, p.field) for p in result.problems} == {(5, "task"), (6, "condtion"), (7, "id")}
    assert {(p.line, p.field) for p in result.undated_problems} == {
        (2, "(json)"),
        (3, "timestamp"),
        (4, "timestamp"),
        (9, "(json)"),
    }
    data = result.to_dict()
    assert data["bad_lines"][0] == {"line": 5, "field": "task", "message": result.problems[0].message}
    assert data["undated_bad_lines"][0] == {"line": 2, "field": "(json)", "message": result.undated_problems[0].message}
    first, *rest = result.message.splitlines()
    assert first.endswith("; 3 bad log line(s): 5, 6, 7")
    assert "4 undated bad log line(s)" in rest[-1] and rest[-1].endswith(": 2, 3, 4, 9")
    assert result.daily_record is not None
    assert result.daily_record["bad_lines"] == 3 and result.daily_record["undated_bad_lines"] == 4


def test_an_old_undated_bad_line_does_not_fail_or_count_in_later_windows(tmp_path: Path, source: ContextSource) -> None:
    config = _config(tmp_path)
    log_file = config.monitoring.log_file
    _log_good(config, source, NOW - dt.timedelta(days=90))
    with log_file.open("a", encoding="utf-8") as handle:
        handle.write("{broken\n")  # written months ago, no readable timestamp
    _log_good(config, source, NOW - dt.timedelta(days=60))

    # A quiet day: nothing in the window. The broken line is reported, but the run does not fail.
    quiet, alert = monitor(config, now=NOW, contexts=source)
    assert alert is None and quiet.status == "no_outputs" and quiet.bad_lines == [] and quiet.undated_bad_lines == [2]
    first, second = quiet.message.splitlines()
    assert first.startswith("no outputs logged in the window") and "bad log line" not in first
    assert "1 undated bad log line(s)" in second and second.endswith(": 2")
    assert not config.monitoring.scores_file.exists()

    # A day with outputs: the window's own bad-line count is 0; the undated line is counted apart.
    _log_good(config, source, NOW - dt.timedelta(hours=1))
    busy = evaluate_recent_outputs(config, now=NOW, contexts=source)
    assert busy.outputs == 1 and busy.bad_lines == [] and busy.undated_bad_lines == [2]
    assert busy.daily_record is not None
    assert busy.daily_record["bad_lines"] == 0 and busy.daily_record["undated_bad_lines"] == 1


def test_bytes_that_are_not_utf8_make_a_bad_line_not_a_crash(tmp_path: Path, source: ContextSource) -> None:
    config = _config(tmp_path)
    log_file = config.monitoring.log_file
    good = _log_good(config, source, NOW - dt.timedelta(hours=2))
    torn = json.dumps({**good, "id": "torn", "output": "Apple \u00e9"}, ensure_ascii=False).encode("utf-8")
    torn = torn.replace("\u00e9".encode(), b"\xe9")  # Latin-1 byte in a UTF-8 log
    old = json.dumps({**good, "id": "old", "timestamp": (NOW - dt.timedelta(days=5)).isoformat()}).encode()
    with log_file.open("ab") as handle:
        handle.write(torn + b"\n" + b"\xff\xfe garbage\n" + old.replace(b"AAPL", b"AAPL\xff") + b"\n")
    _log_good(config, source, NOW, id="last")

    result = evaluate_recent_outputs(config, now=NOW, contexts=source)
    assert [s.id for s in result.scored] == [good["id"], "last"] and result.lines_read == 5
    # The line in the window is bad (its text was altered); the unreadable one has no timestamp; the one of
    # another window (line 4) is not counted.
    assert result.bad_lines == [2] and result.undated_bad_lines == [3]
    assert [(p.line, p.field) for p in result.problems] == [(2, "(encoding)")]
    assert "byte 0xe9" in result.problems[0].message
    assert [(p.line, p.field) for p in result.undated_problems] == [(3, "(encoding)"), (3, "(json)")]


def test_a_log_that_cannot_be_read_is_a_data_error(
    tmp_path: Path, source: ContextSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path)
    _log_good(config, source, NOW)
    log_file = config.monitoring.log_file
    real_open = Path.open

    def failing_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == log_file:
            raise OSError(errno.EIO, "Input/output error", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", failing_open)
    with pytest.raises(DataError, match="cannot read the production log: Input/output error") as info:
        evaluate_recent_outputs(config, now=NOW, contexts=source)
    assert str(log_file) in str(info.value)


def test_a_window_of_only_bad_lines_fails_with_every_problem(tmp_path: Path, source: ContextSource) -> None:
    config = _config(tmp_path)
    good = _log_good(config, source, NOW - dt.timedelta(days=3))  # valid, but outside the window
    with config.monitoring.log_file.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({**good, "id": "a", "timestamp": NOW.isoformat(), "ticker": "ZZZZ"}) + "\n")
        handle.write("[1, 2]\n")
    with pytest.raises(OutputsFileError) as info:
        evaluate_recent_outputs(config, now=NOW, contexts=source)
    # Line 2 fails the window; line 3 (no timestamp) would not, but is listed with it.
    assert [(p.line, p.field) for p in info.value.problems] == [(2, "ticker"), (3, "(record)")]
    assert "line 2: ticker: unknown ticker 'ZZZZ'" in str(info.value)


# ------------------------------------------------------------------------------------------------ windows


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", dt.timedelta(minutes=30)),
        ("12h", dt.timedelta(hours=12)),
        ("1d", dt.timedelta(days=1)),
        (" 7D ", dt.timedelta(days=7)),
        ("2w", dt.timedelta(weeks=2)),
        ("1.5h", dt.timedelta(minutes=90)),
        ("45s", dt.timedelta(seconds=45)),
    ],
)
def test_parse_since(text: str, expected: dt.timedelta) -> None:
    assert parse_since(text) == expected
    assert parse_since(format_since(expected)) == expected


@pytest.mark.parametrize("text", ["", "1", "d", "1y", "-1d", "0h", "1 day", "1d2h", "one day"])
def test_parse_since_rejects_anything_else(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid window"):
        parse_since(text)


def test_bad_window_or_threshold_is_an_error_before_reading(tmp_path: Path, source: ContextSource) -> None:
    config = _config(tmp_path)  # no log file: the arguments are checked first
    with pytest.raises(ConfigError, match="invalid window 'soon'"):
        evaluate_recent_outputs(config, since="soon", contexts=source)
    with pytest.raises(ConfigError, match="invalid window"):
        evaluate_recent_outputs(config, since=dt.timedelta(0), contexts=source)
    with pytest.raises(ConfigError, match="invalid threshold 120"):
        evaluate_recent_outputs(config, threshold=120, contexts=source)
