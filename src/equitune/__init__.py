"""equitune: turn an open LLM into a grounded equity-research assistant and serve it with Ollama."""

from __future__ import annotations

__version__ = "0.1.0"
