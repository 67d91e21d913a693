"""``python -m equitune.serve.llama_server ARGS``: llama-cpp-python's OpenAI-compatible server (the arguments of
``python -m llama_cpp.server``), loading its model with llama.cpp's extra buffer types off when
``EQUITUNE_LLAMA_EXTRA_BUFFERS=off`` (``equitune serve`` sets it from ``equitune.llamacpp.load_plan``)."""

from __future__ import annotations

import os
import sys

from equitune.llamacpp import EXTRA_BUFFERS_ENV, disable_extra_buffers_for_process


def main() -> None:
    if os.environ.get(EXTRA_BUFFERS_ENV, "").strip().lower() == "off":
        disable_extra_buffers_for_process()
    from llama_cpp.server.__main__ import main as server_main

    sys.argv[0] = "llama_cpp.server"
    server_main()


if __name__ == "__main__":
    main()
