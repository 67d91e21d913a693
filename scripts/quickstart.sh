#!/usr/bin/env bash
# Set up equitune and run the complete workflow on the embedded default (SmolLM2-135M, embedded market data):
# training data, LoRA fine-tuning, export, benchmark against the base on held-out companies, performance report.
# Then write a research report on one company (AAPL unless a ticker is given) with the fine-tuned model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh train,serve
.venv/bin/equitune run --config configs/quickstart.json
.venv/bin/equitune report "${1:-AAPL}" --config configs/quickstart.json --format both
