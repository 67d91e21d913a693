"""Runtimes that generate text from a model: embedded llama.cpp, Ollama, and any OpenAI-compatible endpoint."""
