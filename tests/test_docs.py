"""The README's configuration reference is generated from the models and must match them."""

from __future__ import annotations

from pathlib import Path

from equitune.config_reference import BEGIN, END, config_reference_markdown


def test_readme_config_reference_is_current(repo_root: Path) -> None:
    text = (repo_root / "README.md").read_text(encoding="utf-8")
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert block.strip() == config_reference_markdown().strip(), (
        "README config reference is stale: run `python -m equitune.config_reference`"
    )


def test_readme_names_the_two_commands_and_ci_runs_the_test_one(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    assert "./scripts/quickstart.sh" in readme and "./scripts/test.sh" in readme
    assert "scripts/test.sh" in (repo_root / ".ci" / "run").read_text(encoding="utf-8")
