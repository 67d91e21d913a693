"""The equitune command line, driven through its entry point as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from equitune.cli import main
from equitune.market.providers.embedded import load_snapshot


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_companies_json_lists_the_snapshot(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "companies", "--json")
    rows = json.loads(out)
    assert code == 0
    assert [r["ticker"] for r in rows] == sorted(load_snapshot())
    assert (in_tmp / "logs" / "ollama_equity_research.log").is_file()


def test_companies_sector_alias(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "companies", "--sector", "technology", "--json")
    rows = json.loads(out)
    assert code == 0 and rows
    assert {r["sector"] for r in rows} == {"Information Technology"}
    assert "AAPL" in {r["ticker"] for r in rows}


def test_companies_table(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "companies", "--sector", "Information Technology")
    assert code == 0
    assert "AAPL" in out and "Apple Inc." in out


def test_unknown_sector_is_a_clear_error(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "companies", "--sector", "crypto")
    assert code == 1 and out == ""
    assert "Unknown sector 'crypto'" in err and "Information Technology" in err


def test_config_show_prints_resolved_config(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "config", "show", "--set", "training.batch_size=8")
    shown = json.loads(out)
    assert code == 0
    assert shown["training"]["batch_size"] == 8
    assert shown["lora_config"]["rank"] == 16


def test_config_validate_ok_and_bad(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = in_tmp / "good.json"
    good.write_text('{"lora_config": {"rank": 8}}')
    code, out, _ = run_cli(capsys, "config", "validate", str(good))
    assert code == 0 and "valid" in out
    bad = in_tmp / "bad.json"
    bad.write_text('{"lora_config": {"rnk": 8}}')
    code, _, err = run_cli(capsys, "config", "validate", str(bad))
    assert code == 1
    assert "lora_config.rnk" in err and "did you mean 'rank'" in err and "bad.json" in err


def test_unknown_ticker(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "analyze", "APPL")
    assert code == 1
    assert "Unknown ticker 'APPL'" in err and "AAPL" in err


def test_console_script_runs(in_tmp: Path) -> None:
    exe = Path(sys.executable).with_name("equitune")
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    for command in ("companies", "analyze", "config"):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("script", "args", "code"),
    [
        ("create_training_data.py", ["--num-examples", "12"], 0),
        ("finetune_ollama.py", ["--use-qlora", "--4bit", "--gpus", "2", "--distributed"], 1),  # QLoRA needs CUDA
        ("finetune_ollama.py", ["--create-model", "--name", "my_equity_model"], 1),  # nothing trained, no data
        ("evaluate_model.py", ["m1", "m2", "--compare"], 1),  # no such models
        ("finetune_ollama.py", ["--new-data", "x.jsonl"], 2),
        ("finetune_ollama.py", ["--bogus"], 2),
    ],
)
def test_original_scripts_accept_their_flags(
    in_tmp: Path, repo_root: Path, script: str, args: list[str], code: int
) -> None:
    result = subprocess.run(
        [sys.executable, str(repo_root / script), *args], capture_output=True, text=True, check=False
    )
    assert result.returncode == code, result.stderr
    if script == "create_training_data.py":
        assert "Wrote training_data" in result.stdout
        assert (
            sum(
                len((in_tmp / "training_data" / f"{s}.jsonl").read_text().splitlines())
                for s in ("train", "valid", "test")
            )
            == 12
        )
    elif "--bogus" in args or "--new-data" in args:
        assert "error:" in result.stderr
    elif "--distributed" in args:
        assert "QLoRA (--use-qlora --4bit) needs a CUDA GPU" in result.stderr
    elif "--create-model" in args:  # nothing trained yet, so it trains first, and there is no data
        assert "no training data" in result.stderr
    else:  # evaluate_model.py with models that exist nowhere
        assert "Cannot open model 'm1'" in result.stderr


def test_validate_only_prints_the_checklist(in_tmp: Path, repo_root: Path) -> None:
    quickstart = repo_root / "configs" / "quickstart.json"
    result = subprocess.run(
        [sys.executable, str(repo_root / "run_complete_finetuning.py"), "--validate-only", "--config", str(quickstart)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for line in ("✓ configuration: base model smollm2:135m", "✓ base model: smollm2:135m -> embedded", "Ready"):
        assert line in result.stdout
    assert "Ollama (not blocking)" in result.stdout or "✓ Ollama" in result.stdout


def test_original_scripts_reject_bad_config(in_tmp: Path, repo_root: Path) -> None:
    (in_tmp / "finetune_config.json").write_text('{"lora_config": {"rank": 0}}')
    result = subprocess.run(
        [sys.executable, str(repo_root / "run_complete_finetuning.py"), "--validate-only"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "lora_config.rank = 0" in result.stdout + result.stderr  # the checklist's failed configuration item


def test_analyze_json_is_the_engine_output(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "analyze", "AAPL", "--json")
    result = json.loads(out)
    assert code == 0
    target = result["target"]
    assert result["ticker"] == "AAPL" and result["fiscal_year"] == 2024
    assert target["upside"] == pytest.approx(target["price_target"] / target["price"] - 1)
    assert target["rating"] in {"Buy", "Hold", "Sell"}
    assert result["assumptions"]["risk_free_rate"] == pytest.approx(0.045)
    grid = result["dcf"]["sensitivity"]["values"]
    assert len(grid) == 5 and all(len(row) == 5 for row in grid)


def test_analyze_flags_override_assumptions(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, base_out, _ = run_cli(capsys, "analyze", "AAPL", "--json")
    code, out, _ = run_cli(capsys, "analyze", "AAPL", "--json", "--set", "valuation.risk_free_rate=0.055")
    base, shifted = json.loads(base_out), json.loads(out)
    assert code == 0
    assert shifted["wacc"]["risk_free_rate"] == pytest.approx(0.055)
    assert shifted["wacc"]["wacc"] > base["wacc"]["wacc"]
    assert shifted["dcf"]["value_per_share"] < base["dcf"]["value_per_share"]


def test_analyze_table_shows_every_section(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "analyze", "MSFT" if "MSFT" in load_snapshot() else "AAPL")
    assert code == 0
    for heading in (
        "Financial ratios",
        "WACC",
        "DCF projection",
        "Sensitivity",
        "Comparables",
        "Price target",
    ):
        assert heading in out


def test_csv_provider_without_file_is_a_config_error(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "companies", "--provider", "csv")
    assert code == 1 and "market.csv_file is not set" in err


def test_analyze_from_the_sp500_file(in_tmp: Path, capsys: pytest.CaptureFixture[str], sp500_dir: Path) -> None:
    SP500_DIR = sp500_dir  # noqa: N806
    code, out, _ = run_cli(
        capsys,
        "analyze",
        "MMM",
        "--json",
        "--provider",
        "csv",
        "--csv-file",
        str(SP500_DIR / "constituents-financials.csv"),
        "--csv-mapping",
        "sp500",
        "--set",
        "market.csv_as_of=2026-08-22",
    )
    result = json.loads(out)
    assert code == 0
    assert result["market"]["price"] == pytest.approx(178.96)
    assert result["price_date"] == "2026-08-22"
    assert result["comparables"]["peers"], "peers come from the other S&P 500 records"


def test_data_generate_validate_stats(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    custom = in_tmp / "custom.jsonl"
    custom.write_text(
        json.dumps({"instruction": "Apple FY2024 revenue?", "response": "$391.0B in FY2024.", "ticker": "AAPL"}) + "\n"
    )
    code, out, _ = run_cli(
        capsys,
        "data",
        "generate",
        "-n",
        "18",
        "--sector",
        "healthcare",
        "--count",
        "6",
        "--custom",
        str(custom),
        "--format",
        "alpaca",
        "--seed",
        "5",
        "--out",
        "td",
    )
    assert code == 0, out
    lines = [
        json.loads(line)
        for s in ("train", "valid", "test")
        for line in (in_tmp / "td" / f"{s}.jsonl").read_text().splitlines()
    ]
    assert len(lines) == 25 and all("instruction" in r for r in lines)
    assert sum(r["source"] == "custom" for r in lines) == 1
    code, out, _ = run_cli(capsys, "data", "validate", "td/train.jsonl")
    assert code == 0 and "0 with errors" in out
    code, out, _ = run_cli(capsys, "data", "stats", "td", "--json")
    stats = json.loads(out)
    assert code == 0 and sum(stats["splits"].values()) == 25


def test_data_generate_refuses_bad_custom_examples(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    custom = in_tmp / "custom.jsonl"
    custom.write_text(json.dumps({"instruction": "Apple?", "response": "Revenue of $123.4T.", "ticker": "AAPL"}) + "\n")
    code, _, err = run_cli(capsys, "data", "generate", "-n", "6", "--custom", str(custom), "--out", "td")
    assert code == 1
    assert "example 1" in err and "$123.4T" in err and "nothing written" in err
    assert not (in_tmp / "td").exists()


def test_data_validate_reports_every_bad_line(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "FY2024 revenue $391.0B."}],
        "ticker": "AAPL",
    }
    rows = [
        json.dumps(good),
        "{not json",
        json.dumps({"messages": [{"role": "bot", "content": "x"}]}),
        "",
        json.dumps(good),
        json.dumps({"instruction": "q", "output": "Revenue $123.4T", "ticker": "AAPL"}),
    ]
    (in_tmp / "bad.jsonl").write_text("\n".join(rows) + "\n")
    code, _, err = run_cli(capsys, "data", "validate", "bad.jsonl", "--max-tokens", "4")
    assert code == 1
    assert "6 lines, 0 valid" in err
    assert "line 4: (json): blank line" in err
    assert "line 1: response: about" in err and "over the limit of 4" in err
    assert "line 2: (json): malformed JSON" in err
    assert "line 3: messages[0].role: unknown role 'bot'" in err
    assert "line 5: (record): duplicate of line 1" in err
    assert "line 6: response: 1 unsupported figure(s) vs AAPL's facts: $123.4T" in err
