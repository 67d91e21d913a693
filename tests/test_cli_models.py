"""``equitune models``, ``evaluate --score`` and ``export`` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from equitune.cli import main
from equitune.registry import ModelRegistry, ModelVersion


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_list_show_promote_delete(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = ModelRegistry(in_tmp / "finetuned_models" / "registry.sqlite")
    for metrics in ({"val_loss_after": 1.2}, {"val_loss_after": 1.0}):
        registry.register(
            ModelVersion(name="equity_research_llama", base_model="smollm2:135m", training_metrics=metrics)
        )
    code, out, _ = run_cli(capsys, "models", "list", "--json")
    assert code == 0
    assert [v["name_tag"] for v in json.loads(out)] == ["equity_research_llama:v2", "equity_research_llama:v1"]
    assert run_cli(capsys, "models", "promote", "equity_research_llama:v1")[0] == 0
    code, out, _ = run_cli(capsys, "models", "show", "equity_research_llama")  # a bare name: the promoted one
    assert code == 0 and json.loads(out)["tag"] == "v1" and json.loads(out)["promoted"]
    code, out, _ = run_cli(capsys, "models", "list")
    assert "latest" in out and "equity_research_llama:v2" in out
    assert run_cli(capsys, "models", "delete", "equity_research_llama:v2")[0] == 0
    assert [v.tag for v in registry.list()] == ["v1"]
    code, _, err = run_cli(capsys, "models", "show", "nope:v9")
    assert code == 1 and "nope" in err


def test_evaluate_scores_a_file_of_outputs(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "data", "generate", "--set", "data.num_examples=12")[0] == 0
    lines = []
    for record in map(json.loads, (in_tmp / "training_data" / "train.jsonl").read_text().splitlines()[:4]):
        messages = record["messages"]
        base = {"ticker": record["ticker"], "task": record["family"], "condition": record["condition"]}
        lines.append({**base, "prompt": messages[1]["content"], "output": messages[2]["content"], "model": "ref"})
        lines.append({**base, "prompt": messages[1]["content"], "output": "Buy it.", "model": "terse"})
    (in_tmp / "outs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    code, out, _ = run_cli(capsys, "evaluate", "--score", "outs.jsonl", "--out", "scored.jsonl", "--json")
    assert code == 0
    results = json.loads(out)
    summary = {m["name"]: m["summary"] for m in results["models"]}
    assert summary["ref"]["mean_score"] >= 80 > summary["terse"]["mean_score"]
    assert results["mode"] == "score" and all(m["generation"] is None for m in results["models"])
    scored = [json.loads(x) for x in (in_tmp / "scored.jsonl").read_text().splitlines()]
    assert len(scored) == 8
    folder = in_tmp / "evaluation_results" / results["run"]
    assert {p.name for p in folder.iterdir()} >= {"results.json", "summary.md", "report.html"}
    assert len(json.loads((folder / "results.json").read_text())["outputs"]) == 8
    (in_tmp / "bad.jsonl").write_text('{"ticker": "AAPL", "task": "valuation"}\nnot json\n')
    code, _, err = run_cli(capsys, "evaluate", "--score", "bad.jsonl")
    assert code == 1 and "line 1" in err and "line 2" in err


def test_export_without_a_trained_run_is_a_clear_error(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "export", "--name", "Bad Name!")
    assert code == 1 and "name" in err.lower()
    code, _, err = run_cli(capsys, "export")
    assert code == 1 and "adapter" in err


def test_monitor_exit_codes_and_alert(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import random

    from equitune.config import EquituneConfig
    from equitune.data.families import get_family
    from equitune.evaluate.monitor import log_production_output
    from equitune.evaluate.scoring import ContextSource

    source = ContextSource.from_config(EquituneConfig())
    prompt, answer = get_family("valuation").render(source.get("AAPL"), random.Random(0))
    log_production_output(ticker="AAPL", task="valuation", prompt=prompt, output=answer, model="prod", contexts=source)
    code, out, _ = run_cli(capsys, "monitor", "--since", "1d", "--threshold", "65", "--json")
    result = json.loads(out)
    assert code == 0 and result["outputs"] == 1 and result["mean_score"] >= 80 and result["alert"] is None
    log_production_output(
        ticker="AAPL",
        task="valuation",
        prompt=prompt,
        output="Apple is worth $999 a share. Buy.",
        model="prod",
        contexts=source,
    )
    code, out, _ = run_cli(capsys, "monitor", "--threshold", "95")
    assert code == 1 and "below" in out.lower()
    alerts = (in_tmp / "evaluation_results" / "monitoring" / "alerts.jsonl").read_text().splitlines()
    assert len(alerts) == 1 and json.loads(alerts[0])["threshold"] == 95
    code, _, err = run_cli(capsys, "monitor", "--since", "yesterday")
    assert code == 2 and "yesterday" in err
