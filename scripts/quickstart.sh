#!/usr/bin/env bash
# Set up equitune and run the main job on the embedded default data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/equitune analyze "${1:-AAPL}"
.venv/bin/equitune data generate
