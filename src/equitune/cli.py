"""The ``equitune`` command line. Each subcommand parses its flags and calls a plain typed function."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from equitune.errors import ConfigError, EquituneError

app = typer.Typer(
    name="equitune",
    help="Turn an open LLM into a grounded equity-research assistant and serve it with Ollama.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show or validate the resolved configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
data_app = typer.Typer(help="Generate, validate and describe training data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
models_app = typer.Typer(help="The registry of exported model versions.", no_args_is_help=True)
app.add_typer(models_app, name="models")

# Piped output (files, CI logs) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
log = logging.getLogger("equitune.cli")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config file (JSON or YAML); default ./finetune_config.json."),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config value, e.g. --set training.batch_size=8 (repeatable)."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
ProviderOption = Annotated[
    str | None, typer.Option("--provider", help="Market-data provider: embedded, csv, yfinance, edgar.")
]
CsvFileOption = Annotated[Path | None, typer.Option("--csv-file", help="Fundamentals file for --provider csv.")]
CsvMappingOption = Annotated[
    str | None, typer.Option("--csv-mapping", help="Column-mapping preset for --provider csv (e.g. sp500).")
]


def _load(
    config: Path | None,
    sets: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Any:
    """Resolve the config (defaults < file < flags) and start logging into its logs folder."""
    from equitune.config import load_config, parse_override
    from equitune.logging_setup import setup_logging

    overrides = dict(parse_override(item) for item in (sets or []))
    overrides.update({k: v for k, v in (extra or {}).items() if v is not None})
    cfg = load_config(config, overrides)
    setup_logging(cfg.paths.logs)
    return cfg


def _market_overrides(provider: str | None, csv_file: Path | None, csv_mapping: str | None) -> dict[str, Any]:
    return {
        "market.provider": provider,
        "market.csv_file": str(csv_file) if csv_file else None,
        "market.csv_mapping": csv_mapping,
    }


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


# ---------------------------------------------------------------------------------------- companies


@app.command()
def companies(
    sector: Annotated[str | None, typer.Option("--sector", "-s", help="GICS sector (aliases: technology...).")] = None,
    as_json: JsonFlag = False,
    config: ConfigOption = None,
    provider: ProviderOption = None,
    csv_file: CsvFileOption = None,
    csv_mapping: CsvMappingOption = None,
) -> None:
    """List the companies the configured provider holds (the embedded snapshot by default)."""
    from equitune.market.sectors import resolve_sector
    from equitune.market.service import load_universe, provider_from_config

    cfg = _load(config, extra=_market_overrides(provider, csv_file, csv_mapping))
    wanted = resolve_sector(sector) if sector else None
    source = provider_from_config(cfg.market)
    rows = sorted((c for c in load_universe(source) if wanted is None or c.sector == wanted), key=lambda c: c.ticker)
    if as_json:
        _print_json(
            [
                {
                    "ticker": c.ticker,
                    "name": c.name,
                    "sector": c.sector,
                    "sub_industry": c.sub_industry,
                    "price": c.price,
                    "market_cap": c.market_cap,
                    "latest_fiscal_year": c.financials[0].fiscal_year if c.financials else None,
                    "status": c.status,
                    "source": c.source,
                }
                for c in rows
            ]
        )
        return
    table = Table(title=f"{len(rows)} companies ({source.name}{', ' + wanted if wanted else ''})")
    for column in ("Ticker", "Name", "Sector", "Sub-industry", "Price", "Mkt cap ($bn)", "FY", "Status"):
        table.add_column(column, justify="right" if column in {"Price", "Mkt cap ($bn)", "FY"} else "left")
    for c in rows:
        table.add_row(
            c.ticker,
            c.name,
            c.sector,
            c.sub_industry,
            f"{c.price:,.2f}" if c.price else "-",
            f"{c.market_cap / 1000:,.1f}" if c.market_cap else "-",
            str(c.financials[0].fiscal_year) if c.financials else "-",
            c.status,
        )
    console.print(table)


# ---------------------------------------------------------------------------------------- analyze


@app.command()
def analyze(
    ticker: Annotated[str, typer.Argument(help="Ticker, e.g. AAPL.")],
    as_json: JsonFlag = False,
    config: ConfigOption = None,
    sets: SetOption = None,
    provider: ProviderOption = None,
    csv_file: CsvFileOption = None,
    csv_mapping: CsvMappingOption = None,
) -> None:
    """Ratios, WACC, DCF with sensitivity, comparables, price target, upside and rating for one company."""
    from equitune.finance import analyze_company
    from equitune.market.service import load_universe, provider_from_config
    from equitune.report.analysis_view import render_analysis

    cfg = _load(config, sets, _market_overrides(provider, csv_file, csv_mapping))
    source = provider_from_config(cfg.market)
    company = source.get(ticker)
    result = analyze_company(company, load_universe(source), cfg.valuation)
    log.debug("analyzed %s with provider %s", company.ticker, source.name)
    if as_json:
        _print_json(result.model_dump(mode="json"))
    else:
        render_analysis(result, console)


# ---------------------------------------------------------------------------------------- config


@config_app.command("show")
def config_show(
    file: Annotated[Path | None, typer.Argument(help="Config file; default ./finetune_config.json.")] = None,
    sets: SetOption = None,
) -> None:
    """Print the resolved configuration (defaults < file < --set overrides) as JSON."""
    from equitune.config import config_json, load_config, parse_override

    overrides = dict(parse_override(item) for item in (sets or []))
    sys.stdout.write(config_json(load_config(file, overrides)))


@config_app.command("validate")
def config_validate(
    file: Annotated[Path | None, typer.Argument(help="Config file; default ./finetune_config.json.")] = None,
) -> None:
    """Check a config file; exit 1 with every problem named (key, line, allowed values) when invalid."""
    from equitune.config import DEFAULT_CONFIG_FILE, load_config

    load_config(file)
    shown = file or (DEFAULT_CONFIG_FILE if Path(DEFAULT_CONFIG_FILE).is_file() else "defaults")
    console.print(f"[green]OK[/green] {shown} is a valid equitune configuration.")


# ---------------------------------------------------------------------------------------- data


@data_app.command("generate")
def data_generate(
    num_examples: Annotated[
        int | None,
        typer.Option("--num-examples", "-n", help="Examples over all sectors (default data.num_examples)."),
    ] = None,
    sector: Annotated[str | None, typer.Option("--sector", help="Also add --count examples of this sector.")] = None,
    count: Annotated[int, typer.Option("--count", help="Examples for --sector.")] = 100,
    custom: Annotated[
        Path | None, typer.Option("--custom", help="JSONL or JSON list of {instruction, response} to add.")
    ] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="messages (default) or alpaca.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed (default data.seed).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default paths.training_data).")] = None,
    config: ConfigOption = None,
    sets: SetOption = None,
) -> None:
    """Generate grounded examples in six families, validate every figure, split by company, write JSONL."""
    from equitune.data.pipeline import generate_dataset

    cfg = _load(config, sets, {"data.format": fmt, "data.seed": seed, "data.num_examples": num_examples})
    summary = generate_dataset(cfg, sector=sector, sector_count=count, custom=custom, out_dir=out, console=console)
    console.print(
        f"[green]Wrote[/green] {summary.out_dir}: "
        + ", ".join(f"{name} {n}" for name, n in summary.counts.items())
        + f"; ratings {summary.stats['ratings']}; {summary.stats['figures_checked']} figures checked, 0 unsupported."
    )


@data_app.command("validate")
def data_validate(
    file: Annotated[Path, typer.Argument(help="A JSONL file of examples (messages or alpaca format).")],
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Longest response accepted.")] = None,
    config: ConfigOption = None,
) -> None:
    """Check every line (JSON, fields, roles, length, duplicates, unsupported figures); exit 1 on any error."""
    from equitune.data.validate import validate_file

    cfg = _load(config)
    report = validate_file(file, max_tokens or cfg.data.max_response_tokens)
    (console if report.ok else err_console).print(report.format(limit=200), highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


@data_app.command("stats")
def data_stats(
    folder: Annotated[Path, typer.Argument(help="A training-data folder (train/valid/test.jsonl).")],
    as_json: JsonFlag = False,
) -> None:
    """Counts per split, family, rating, condition and sector, and response lengths, read from the files."""
    from equitune.data.pipeline import folder_stats

    stats = folder_stats(folder)
    if as_json:
        _print_json(stats)
        return
    for key in ("splits", "families", "ratings", "conditions", "sectors"):
        table = Table(title=key, title_justify="left")
        table.add_column(key[:-1] if key.endswith("s") else key)
        table.add_column("examples", justify="right")
        for name, n in sorted(stats[key].items(), key=lambda kv: -kv[1]):
            table.add_row(str(name), str(n))
        console.print(table)
    console.print(f"response tokens (estimated): {stats['response_tokens']}")


# ---------------------------------------------------------------------------------------- train


@app.command()
def train(
    config: ConfigOption = None,
    sets: SetOption = None,
    base_model: Annotated[
        str | None, typer.Option("--base-model", help="smollm2:135m, an Ollama name, a .gguf path or a HF repo/dir.")
    ] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Folder with train.jsonl and valid.jsonl.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Output folder under finetuned_models/.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a killed run from its last checkpoint.")] = False,
    continue_training: Annotated[
        bool, typer.Option("--continue-training", help="Start from this run's finished adapter.")
    ] = False,
    new_data: Annotated[
        Path | None, typer.Option("--new-data", help="JSONL to train on with --continue-training.")
    ] = None,
    use_qlora: Annotated[bool, typer.Option("--use-qlora", help="QLoRA (with --4bit; CUDA only).")] = False,
    four_bit: Annotated[bool, typer.Option("--4bit", help="Load the base model in 4 bits (CUDA only).")] = False,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Stop after N optimiser steps.")] = None,
    backend: Annotated[str | None, typer.Option("--backend", help="auto, transformers, unsloth or mlx.")] = None,
    distributed: Annotated[
        bool, typer.Option("--distributed", help="Data-parallel training with torchrun (nccl on CUDA, gloo on CPU).")
    ] = False,
    gpus: Annotated[
        int | None,
        typer.Option("--gpus", min=1, help="Processes for --distributed: GPUs (default all), or CPU processes."),
    ] = None,
) -> None:
    """LoRA fine-tuning of the base model on the training data; writes finetuned_models/<name>/."""
    from equitune.train.distributed import launch_training
    from equitune.train.pipeline import run_training

    if gpus is not None and not distributed:
        raise EquituneError("--gpus needs --distributed (it says how many processes to run)")
    cfg = _load(config, sets, {"training.max_steps": max_steps, "training.backend": backend})
    options: dict[str, Any] = {
        "base_model": base_model,
        "data_dir": data,
        "name": name,
        "resume": resume,
        "continue_training": continue_training,
        "new_data": new_data,
        "use_qlora": use_qlora,
        "four_bit": four_bit,
    }
    result = launch_training(cfg, gpus, **options) if distributed else run_training(cfg, **options)
    console.print(
        f"[green]Trained[/green] {result.steps} steps in {result.wall_time_s:.0f} s "
        f"({result.tokens_per_s:.0f} tokens/s); "
        f"validation loss {result.val_loss_before} -> {result.val_loss_after} (best {result.best_val_loss}); "
        f"adapter in {result.adapter_dir}"
    )


# ---------------------------------------------------------------------------------------- export


@app.command()
def export(
    config: ConfigOption = None,
    sets: SetOption = None,
    run_name: Annotated[
        str | None, typer.Option("--run", help="Training run under finetuned_models/ (default training.output_name).")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Ollama model NAME[:TAG] (default equity_research_llama:vN).")
    ] = None,
    create: Annotated[bool, typer.Option("--create", help="Register the model in Ollama (ollama create).")] = False,
    formats: Annotated[
        str | None, typer.Option("--formats", help="Merged GGUF types, comma-separated: f16,q8_0,q4_K_M,bf16,f32.")
    ] = None,
    mode: Annotated[
        str | None, typer.Option("--mode", help="merged (default) or adapter (FROM the base + ADAPTER).")
    ] = None,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the llama.cpp verification.")] = False,
    host: Annotated[str | None, typer.Option("--host", help="Ollama address (default export.ollama_host).")] = None,
) -> None:
    """Merge the adapter, write verified GGUF files and a Modelfile, record the version, optionally ollama create."""
    from equitune.export.pipeline import run_export

    cfg = _load(config, sets)
    result = run_export(
        cfg,
        run_name=run_name,
        model_name=name,
        formats=[f.strip() for f in formats.split(",")] if formats else None,
        mode=mode,
        verify=False if no_verify else None,
        create=create,
        host=host,
    )
    console.print(f"[green]Exported[/green] {result.name_tag} to {result.export_dir}")
    for path in [*result.gguf_files, *([result.adapter_gguf] if result.adapter_gguf else [])]:
        console.print(f"  {path.name}: {path.stat().st_size / 1e6:,.1f} MB")
    for label, report in result.verification.items():
        agreement = report.get("mean_agreement")
        status = "passed" if report.get("passed") else "below threshold"
        console.print(
            f"  verified {label}: {status}, greedy agreement {agreement:.0%}"
            if agreement is not None
            else f"  verified {label}: {status}"
        )
    console.print(f"  Modelfile: {result.modelfile}")
    if result.created:
        console.print(f"[green]Created[/green] {result.name_tag} in Ollama at {result.host}")
    elif result.instructions:
        console.print(f"[yellow]Ollama is not reachable at {result.host}.[/yellow] To create the model later:")
        console.print(f"  {result.instructions}", highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------- models


def _registry(config: Path | None) -> Any:
    from equitune.registry import ModelRegistry

    cfg = _load(config)
    return ModelRegistry(cfg.paths.registry)


@models_app.command("list")
def models_list(
    config: ConfigOption = None,
    name: Annotated[str | None, typer.Argument(help="Only versions of this model name.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Every exported model version, newest first."""
    versions = list(reversed(_registry(config).list(name)))
    if as_json:
        _print_json([_version_dict(v) for v in versions])
        return
    table = Table(title="Model versions")
    for column in ("name:tag", "promoted", "base model", "created", "val loss", "score", "in Ollama"):
        table.add_column(column)
    for v in versions:
        score = v.evaluation_scores.get("overall") if v.evaluation_scores else None
        table.add_row(
            v.name_tag,
            "latest" if v.promoted else "",
            v.base_model,
            (v.created_at or "")[:19],
            _fmt(v.training_metrics.get("val_loss_after")),
            _fmt(score),
            "yes" if v.ollama_created else "",
        )
    console.print(table)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else ""


def _version_dict(version: Any) -> dict[str, Any]:
    import dataclasses

    data = dataclasses.asdict(version)
    data["name_tag"] = version.name_tag
    return data


@models_app.command("show")
def models_show(
    name_tag: Annotated[str, typer.Argument(help="NAME[:TAG] (a bare name is its promoted or newest version).")],
    config: ConfigOption = None,
) -> None:
    """One version: files with sha256, metrics, scores."""
    _print_json(_version_dict(_registry(config).get(name_tag)))


@models_app.command("promote")
def models_promote(name_tag: Annotated[str, typer.Argument(help="NAME:TAG")], config: ConfigOption = None) -> None:
    """Mark the version that `latest` and the report generator use."""
    version = _registry(config).promote(name_tag)
    console.print(f"[green]Promoted[/green] {version.name_tag}")


@models_app.command("delete")
def models_delete(
    name_tag: Annotated[str, typer.Argument(help="NAME:TAG")],
    config: ConfigOption = None,
    remove_files: Annotated[bool, typer.Option("--remove-files", help="Also delete its GGUF files.")] = False,
) -> None:
    """Forget a version (and with --remove-files its files no other version uses)."""
    removed = _registry(config).delete(name_tag, remove_files=remove_files)
    console.print(f"[green]Deleted[/green] {name_tag}" + (f"; removed {len(removed)} files" if removed else ""))


# ---------------------------------------------------------------------------------------- chat / serve

EndpointOption = Annotated[
    str | None, typer.Option("--endpoint", help="An OpenAI-compatible server (llama.cpp, vLLM, LM Studio).")
]


@app.command()
def chat(
    model: Annotated[str, typer.Argument(help="Registry NAME[:TAG], an Ollama model, a .gguf path or smollm2:135m.")],
    config: ConfigOption = None,
    endpoint: EndpointOption = None,
    host: Annotated[str | None, typer.Option("--host", help="Ollama address.")] = None,
    system: Annotated[str | None, typer.Option("--system", help="System prompt (default: the analyst role).")] = None,
) -> None:
    """Interactive streaming chat with a model (/reset, /exit)."""
    from equitune.data.schema import SYSTEM_PROMPT
    from equitune.serve.factory import open_runtime
    from equitune.serve.server import chat_loop

    cfg = _load(config)
    runtime = open_runtime(
        model, endpoint=endpoint, ollama_host=host or cfg.export.ollama_host, registry=cfg.paths.registry
    )
    try:
        chat_loop(runtime, system or SYSTEM_PROMPT)
    finally:
        runtime.close()


@app.command()
def serve(
    model: Annotated[str, typer.Argument(help="Registry NAME[:TAG], a .gguf path or smollm2:135m.")],
    config: ConfigOption = None,
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1.")] = 8080,
) -> None:
    """llama.cpp's OpenAI-compatible server on localhost for a model."""
    from equitune.serve.factory import local_model_files
    from equitune.serve.server import serve as run_server

    cfg = _load(config)
    model_path, lora_path = local_model_files(model, registry=cfg.paths.registry)
    server = run_server(model_path, lora_path=lora_path, port=port, model_alias=model)

    def ready(url: str) -> None:
        console.print(f"[green]Serving[/green] {model} at {url} (OpenAI-compatible; Ctrl-C stops)")

    raise typer.Exit(server.serve_forever(ready_timeout=120, on_ready=ready))


# ---------------------------------------------------------------------------------------- evaluate


@app.command()
def evaluate(
    models: Annotated[
        list[str] | None,
        typer.Argument(help="Models: registry name[:tag], .gguf path, smollm2:135m, or an Ollama name."),
    ] = None,
    benchmark: Annotated[
        bool, typer.Option("--benchmark", help="The (one) model against its base on the same prompts.")
    ] = False,
    compare: Annotated[bool, typer.Option("--compare", help="A table of all the given models.")] = False,
    baseline: Annotated[
        str | None, typer.Option("--baseline", help="Baseline of --benchmark (default: the model's own base).")
    ] = None,
    prompts: Annotated[
        Path | None, typer.Option("--prompts", help="Prompt file (JSONL or text) instead of the held-out set.")
    ] = None,
    samples: Annotated[
        int | None, typer.Option("--samples", min=1, help="Sampled answers per prompt (default: 1, greedy).")
    ] = None,
    judge: Annotated[
        str | None, typer.Option("--judge", help="Also score the answers with this model as a judge.")
    ] = None,
    score: Annotated[
        Path | None,
        typer.Option("--score", help="JSONL of outputs made elsewhere: ticker, task, prompt, output per line."),
    ] = None,
    closed_book: Annotated[
        bool, typer.Option("--closed-book", help="Held-out prompts without their DATA block (answers from memory).")
    ] = False,
    run_name: Annotated[str | None, typer.Option("--run", help="Name of the results folder.")] = None,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="OpenAI-compatible server that serves the models (its /v1 URL).")
    ] = None,
    config: ConfigOption = None,
    sets: SetOption = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="With --score: also write one scored JSON object per line here."),
    ] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bars.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Score models on held-out prompts (rubric + numeric fact-check); benchmark, compare, or score a file."""
    cfg = _load(config, sets)
    if closed_book:
        cfg.evaluation.closed_book = True
    names = list(models or [])
    if score is not None:
        given = {
            "a model": bool(names),
            "--benchmark": benchmark,
            "--compare": compare,
            "--baseline": baseline,
            "--prompts": prompts,
            "--samples": samples,
            "--judge": judge,
            "--endpoint": endpoint,
            "--closed-book": closed_book,
        }
        clashing = [flag for flag, value in given.items() if value]
        if clashing:
            raise ConfigError(
                f"--score scores a file of outputs made elsewhere; {', '.join(clashing)} cannot go with it"
            )
        _score_file(cfg, score, out, run_name, as_json)
        return
    if out is not None:
        raise ConfigError("--out writes per-output scores of --score; evaluations write to evaluation_results/<run>/")
    if baseline is not None and not benchmark:
        raise ConfigError("--baseline is the baseline of --benchmark; add --benchmark or drop --baseline")
    if endpoint and benchmark and baseline is None:
        raise ConfigError(
            "with --endpoint every model is asked of that one server; name the base it serves with --baseline"
        )
    if not names:
        raise ConfigError("name a model to evaluate (or --score FILE); e.g. equitune evaluate smollm2:135m")
    if benchmark and len(names) != 1:
        raise ConfigError(f"--benchmark compares one model with its base; got {len(names)} models")
    if compare and len(names) < 2:
        raise ConfigError("--compare needs at least two models")
    from equitune.evaluate.benchmark import evaluate_models, model_entry, run_benchmark

    if benchmark:
        run = run_benchmark(
            cfg,
            names[0],
            baseline=baseline,
            prompts_file=prompts,
            samples=samples,
            judge=judge,
            run_name=run_name,
            endpoint=endpoint,
            progress=not no_progress,
        )
    else:
        run = evaluate_models(
            cfg,
            [model_entry(cfg, n) for n in names],
            mode="compare" if compare else "evaluate",
            prompts_file=prompts,
            samples=samples,
            judge=judge,
            run_name=run_name,
            endpoint=endpoint,
            progress=not no_progress,
        )
    _print_evaluation(run, as_json)


def _score_file(cfg: Any, score: Path, out: Path | None, run_name: str | None, as_json: bool) -> None:
    from equitune.evaluate.benchmark import score_file_results
    from equitune.io import atomic_write_text

    run = score_file_results(cfg, score, run_name=run_name)
    if out is not None:
        lines = []
        for answer in run.answers:
            record = {"id": answer.record_id, "model": answer.model, "ticker": answer.prompt.ticker}
            lines.append(json.dumps({**record, **answer.score.to_dict(figures=True)}) + "\n")
        atomic_write_text(out, "".join(lines))
    _print_evaluation(run, as_json)


def _print_evaluation(run: Any, as_json: bool) -> None:
    from equitune.evaluate.results import generation_rate
    from equitune.evaluate.weights import CATEGORIES

    results = run.results
    if as_json:
        _print_json({k: v for k, v in results.items() if k not in ("outputs", "prompts")})
        return

    def num(value: Any, fmt: str = "{:.1f}") -> str:
        return fmt.format(value) if isinstance(value, (int, float)) else "n/a"

    source = results["settings"]["prompts_source"]
    table = Table(title=f"{results['mode']}: {len(results['prompts'])} prompts ({source})")
    columns = ("model", "runtime", "score", "tier", "fin.acc", "reason", "depth", "struct")
    for column in (*columns, "halluc.", "derived err", "key facts", "repet.", "misbound", "tok/s"):
        table.add_column(column, justify="left" if column in ("model", "runtime", "tier") else "right")
    for model in results["models"]:
        s = model["summary"]
        cats = s["categories"]
        table.add_row(
            model["name"],
            model["runtime"],
            num(s["mean_score"]),
            str(s["tier"]),
            *(num(cats[c]) for c in CATEGORIES),
            num(s["hallucination_rate"], "{:.1%}"),
            num(s["derived_error_rate"], "{:.1%}"),
            num(s["key_fact_coverage"], "{:.1%}"),
            num(s.get("repetition"), "{:.1%}"),
            num(s.get("misbound"), "{:.0f}"),
            num(generation_rate(model["generation"])),
        )
    console.print(table)
    comparison = results.get("comparison")
    if comparison:
        console.print(
            f"{comparison['candidate']} vs {comparison['baseline']}: mean delta {comparison['mean_delta']:+.2f} points "
            f"({comparison['confidence']:.0%} CI {comparison['ci_low']:+.2f} to {comparison['ci_high']:+.2f}), "
            f"win rate {comparison['win_rate']:.0%} ({comparison['wins']} wins, {comparison['losses']} losses, "
            f"{comparison['ties']} ties over {comparison['prompts']} prompts)"
        )
    judged = results.get("judge")
    if judged:
        console.print(f"judge {judged['model']}: {judged['summary']} ({judged['parse_failures']} unusable replies)")
    if run.out_dir is not None:
        console.print(f"results: {run.out_dir} (results.json, summary.md, report.html)")


@app.command()
def monitor(
    since: Annotated[
        str | None, typer.Option("--since", help="Window of logged reports to score, e.g. 12h, 1d, 7d.")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option("--threshold", help="Alert below this mean score (default monitoring.threshold).")
    ] = None,
    config: ConfigOption = None,
    sets: SetOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Score recently logged production reports; below the threshold raise a retraining alert and exit 1.

    Exit codes: 0 at or above the threshold (or nothing logged in the window), 1 below it, 2 bad input."""
    from equitune.errors import DataError
    from equitune.evaluate.monitor import monitor as run_monitor

    try:
        cfg = _load(config, sets)
        result, alert = run_monitor(cfg, since=since, threshold=threshold)
    except (DataError, ConfigError, OSError, UnicodeDecodeError) as exc:  # bad input, not a low score: exit 2
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        _print_json({**result.to_dict(), "alert": alert})
    else:
        console.print(result.message, highlight=False, markup=False, soft_wrap=True)
        if alert is not None:
            console.print(f"retraining alert written to {cfg.monitoring.alerts_file}", highlight=False)
    raise typer.Exit(1 if result.below_threshold else 0)


def _register_commands() -> None:
    """Commands defined beside their stage: ``equitune run`` (the workflow) and ``equitune report``."""
    from equitune.cli_report import register as register_report
    from equitune.cli_workflow import register as register_workflow

    register_workflow(app)
    register_report(app)


_register_commands()


# ---------------------------------------------------------------------------------------- entry


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and turn equitune's own errors into one clear message and exit code 1."""
    try:
        # Outside standalone mode click returns the exit code of typer.Exit instead of raising it.
        code = app(args=argv, standalone_mode=False)
    except EquituneError as exc:
        label = "Configuration error" if isinstance(exc, ConfigError) else "Error"
        err_console.print(f"[bold red]{label}:[/bold red] {exc}", highlight=False, soft_wrap=True)
        return 1
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        return 130
    except Exception as exc:  # click's usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return code if isinstance(code, int) else 0


def run() -> None:
    """Console-script entry point."""
    raise SystemExit(main())
