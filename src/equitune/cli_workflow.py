"""``equitune run``: the complete workflow as a subcommand, the same flags as ``run_complete_finetuning.py``.

``register(app)`` adds the command to the ``equitune`` Typer app; it turns its options back into the script's
arguments and calls ``equitune.pipeline.workflow_main``, so both entry points share one code path.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer


class WorkflowStep(str, Enum):
    """The workflow's steps, as ``--from-step`` accepts them (``equitune.pipeline.STEPS``)."""

    data = "data"
    train = "train"
    export = "export"
    evaluate = "evaluate"
    report = "report"


def run_arguments(
    *,
    config: Path | None = None,
    sets: list[str] | None = None,
    validate_only: bool = False,
    from_step: str | None = None,
    force: bool = False,
    no_progress: bool = False,
) -> list[str]:
    """The ``workflow_main`` arguments that ``equitune run`` with these options stands for."""
    argv: list[str] = []
    if config is not None:
        argv += ["--config", str(config)]
    for item in sets or []:
        argv += ["--set", item]
    if validate_only:
        argv.append("--validate-only")
    if from_step is not None:
        argv += ["--from-step", from_step]
    if force:
        argv.append("--force")
    if no_progress:
        argv.append("--no-progress")
    return argv


def register(app: typer.Typer) -> None:
    """Add ``equitune run`` to ``app``."""

    @app.command("run")
    def run_command(
        config: Annotated[
            Path | None,
            typer.Option("--config", "-c", help="Config file (JSON or YAML); default ./finetune_config.json."),
        ] = None,
        sets: Annotated[
            list[str] | None,
            typer.Option("--set", help="Override a config value, e.g. --set training.max_steps=20 (repeatable)."),
        ] = None,
        validate_only: Annotated[
            bool,
            typer.Option(
                "--validate-only",
                help="Check packages, disk, RAM, config, Ollama, base model and market data; exit 1 if blocked.",
            ),
        ] = False,
        from_step: Annotated[
            WorkflowStep | None, typer.Option("--from-step", help="Redo this step and every later one.")
        ] = None,
        force: Annotated[bool, typer.Option("--force", help="Redo every step.")] = False,
        no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bars.")] = False,
    ) -> None:
        """The complete workflow: data, LoRA training, export, evaluation against the base, performance report.

        Finished steps whose inputs did not change are skipped; a killed or failed run resumes at the step that
        did not finish (training from its last checkpoint). State: finetuning_workflow/state.json."""
        from equitune.pipeline import workflow_main

        argv = run_arguments(
            config=config,
            sets=sets,
            validate_only=validate_only,
            from_step=from_step.value if from_step is not None else None,
            force=force,
            no_progress=no_progress,
        )
        code = workflow_main(argv, prog="equitune run")
        if code:
            raise typer.Exit(code)
