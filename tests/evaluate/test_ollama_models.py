"""Evaluation and the research-report generator with a model that only Ollama serves (the Ollama stand-in)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from equitune.cli import main
from equitune.config import EquituneConfig
from equitune.report.generator import EnhancedEquityResearchGenerator
from ollama_stub import OllamaStub

CHATML = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
MODEL = "llama3.1:8b"


@pytest.fixture
def server(ollama_server: OllamaStub) -> OllamaStub:
    ollama_server.add_model(MODEL, template=CHATML, stop=["<|im_end|>"])
    ollama_server.reply_fn = lambda prompt: "## Summary\n\n- Rating: SELL\n- Price target: $1,234.00 (+900.0%)\n"
    return ollama_server


def test_evaluate_an_ollama_model(in_tmp: Path, server: OllamaStub, capsys: pytest.CaptureFixture[str]) -> None:
    sets = [f"export.ollama_host={server.host}", "evaluation.max_prompts=3", "evaluation.bootstrap_resamples=200"]
    args = ["evaluate", MODEL, "--no-progress", "--json", *(x for s in sets for x in ("--set", s))]
    assert main(args) == 0
    results = json.loads(capsys.readouterr().out)
    (model,) = results["models"]
    assert model["runtime"] == "ollama" and model["generation"]["outputs"] == 3
    assert model["generation"]["tokens_per_s"] > 0  # from Ollama's eval_count / eval_duration
    chats = server.requests_to("/api/chat")
    assert len(chats) == 3 and all(r.body["options"]["temperature"] == 0.0 for r in chats)
    assert all(r.body["options"]["repeat_penalty"] == 1.1 for r in chats)
    saved = json.loads((in_tmp / "evaluation_results" / results["run"] / "results.json").read_text())
    assert all("+900.0%" in o["text"] for o in saved["outputs"])
    assert all(
        o["rubric"]["fact_check"]["counts"]["derived_wrong"] + o["rubric"]["fact_check"]["counts"]["unsupported"] >= 1
        for o in saved["outputs"]
    )


def test_report_written_by_an_ollama_model(in_tmp: Path, server: OllamaStub) -> None:
    config = EquituneConfig.model_validate({"export": {"ollama_host": server.host}, "evaluation": {"max_tokens": 64}})
    generator = EnhancedEquityResearchGenerator(config, progress=False)
    generator.ollama_engine.default_model = MODEL
    report = generator.generate_comprehensive_report("AAPL")
    assert len(server.requests_to("/api/chat")) == len(report.sections) == 6
    assert "[unverified]" in report.markdown or "[corrected]" in report.markdown  # the invented target is not passed
    from equitune.report.generator import DISCLAIMER

    assert report.markdown.rstrip().splitlines()[-1] == DISCLAIMER
