#!/usr/bin/env python3
"""Original-design entry point; a thin shim over `equitune.legacy.create_training_data_main`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from equitune.legacy import create_training_data_main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(create_training_data_main())
