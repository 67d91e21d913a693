"""``equitune report TICKER``: a fact-checked research report written by a model from the engine's figures.

``register(app)`` adds the command to a Typer app (the ``equitune`` console script, or any other). The command
resolves the config, opens the model, writes ``reports/<TICKER>-<date>.md`` (and/or ``.html``), and prints the
paths and the fact-check counts. A model or data error exits 1 with its message.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from equitune.errors import EquituneError


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app``."""
    app.command("report")(report)


def _load_config(config: Path | None) -> Any:
    # Imported here: equitune.cli imports this module to register the command.
    from equitune.cli import _load

    return _load(config)


def report(
    ticker: Annotated[str, typer.Argument(help="Ticker, e.g. AAPL.")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Registry NAME[:TAG], an Ollama model, a .gguf path or smollm2:135m (default: export.model_name "
            "when the registry has it, else smollm2:135m).",
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Output: md, html or both.")] = "md",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default ./reports).")] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Config file (JSON or YAML); default ./finetune_config.json."),
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="Ollama address (default export.ollama_host).")] = None,
) -> None:
    """Write a research report on TICKER: the engine computes every figure, the model writes each section, and
    every number of the model's text is fact-checked (wrong ones corrected, unsupported ones flagged)."""
    from rich.console import Console

    from equitune.report.generator import FORMATS, EnhancedEquityResearchGenerator

    console = Console(width=None if sys.stdout.isatty() else 160)
    err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
    if fmt not in FORMATS:
        raise typer.BadParameter(f"'{fmt}' is not one of {', '.join(FORMATS)}", param_hint="--format")
    try:
        cfg = _load_config(config)
        generator = EnhancedEquityResearchGenerator(cfg, model)
        if host:
            generator.ollama_engine.host = host
        with generator:
            result = generator.generate_comprehensive_report(ticker, format=fmt, out_dir=out or Path("reports"))
    except EquituneError as exc:
        err.print(f"[bold red]Error:[/bold red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc

    t = result.context.analysis.target
    console.print(
        f"[green]Report[/green] {result.company.name} ({result.ticker}): {result.context.rating.upper()}, "
        f"target ${t.price_target:,.2f} vs price ${t.price:,.2f}, written by {result.model} in {result.elapsed_s:.1f}s"
        if t.price_target is not None
        else f"[green]Report[/green] {result.company.name} ({result.ticker}), written by {result.model}",
        highlight=False,
    )
    for path in result.paths:
        console.print(f"  {path}", highlight=False, soft_wrap=True)
    counts = result.figures_summary
    console.print(
        f"Fact-check: {sum(counts.values())} figures: {counts['grounded']} grounded, "
        f"{counts['derived_correct']} derived correct, {counts['derived_wrong']} derived wrong, "
        f"{counts['unsupported']} unsupported; {len(result.corrections)} corrected, {len(result.flags)} flagged",
        highlight=False,
    )
