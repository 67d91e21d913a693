"""The package's public surface: light import, lazy public classes."""

from __future__ import annotations

import subprocess
import sys

import equitune


def test_public_classes_import_from_the_package() -> None:
    from equitune import EquityResearchTrainingDataGenerator, analyze_company

    assert EquityResearchTrainingDataGenerator.__name__ == "EquityResearchTrainingDataGenerator"
    assert callable(analyze_company)
    assert equitune.__version__


def test_import_is_light() -> None:
    """`import equitune` loads no stage, no torch and no network library."""
    code = (
        "import sys, equitune; heavy = [m for m in ('torch', 'transformers', 'requests', 'equitune.data', "
        "'equitune.finance', 'pydantic') if m in sys.modules]; print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
