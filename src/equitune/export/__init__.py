"""Export a fine-tuned adapter for Ollama: merged or adapter GGUF, verified with llama.cpp, a Modelfile, and
registration with ``ollama create``."""
