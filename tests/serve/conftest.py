"""Fixtures of the runtime tests: a tiny f16 GGUF with SmolLM2's tokenizer, and the llama.cpp runtime on it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer f16 Llama with SmolLM2's tokenizer and chat template, converted by llama.cpp's converter."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'equitune[serve]')")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))  # the export tests' tiny-model helpers
    import gguf_helpers as helpers

    if not helpers.converter_available():
        pytest.skip("llama.cpp's converter is not installed")
    from equitune.export.gguf import convert_to_gguf
    from equitune.export.merge import save_base_model

    tokenizer = helpers.smollm2_tokenizer()
    root = tmp_path_factory.mktemp("tiny_batched")
    folder = save_base_model(helpers.tiny_llama(tokenizer, seed=3), root / "base", tokenizer)
    return Path(convert_to_gguf(folder, root / "tiny-f16.gguf", "f16"))


@pytest.fixture(scope="module")
def tiny(tiny_gguf: Path) -> Iterator[Any]:
    from equitune.serve.llamacpp_runtime import LlamaCppRuntime

    runtime = LlamaCppRuntime(tiny_gguf, n_ctx=512, n_threads=1)
    yield runtime
    runtime.close()
