"""Runs one of equitune's llama.cpp paths on the bundled SmolLM2-135M GGUF and prints one JSON line; run as a
subprocess by ``tests/test_llamacpp.py`` so that a crash in native code fails one named test with its signal.

Usage: python tests/runtime_paths_driver.py evaluation|chat|serve|report|verification WORKDIR
"""

from __future__ import annotations

import io
import json
import os
import socket
import sys
from pathlib import Path


def evaluation() -> dict[str, object]:
    from equitune.cli import main

    args = ["--set", "evaluation.max_prompts=1", "--set", "evaluation.max_tokens=24", "--no-progress", "--json"]
    code = main(["evaluate", "smollm2:135m", *args])
    return {"exit": code}


def chat() -> dict[str, object]:
    from equitune.serve.factory import open_runtime
    from equitune.serve.runtime import GenerationOptions
    from equitune.serve.server import chat_loop

    lines = iter(["Name one valuation method in three words.", "/exit"])
    out = io.StringIO()
    runtime = open_runtime("smollm2:135m", n_ctx=1024)
    try:
        chat_loop(runtime, None, input_fn=lambda _: next(lines), output=out, options=GenerationOptions(max_tokens=12))
    finally:
        runtime.close()
    return {"text": out.getvalue()}


def serve() -> dict[str, object]:
    from equitune.serve.openai_runtime import OpenAIRuntime
    from equitune.serve.runtime import GenerationOptions, Message
    from equitune.serve.server import serve as start
    from equitune.train.base_model import embedded_gguf_path

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = start(embedded_gguf_path(), port=port, n_ctx=1024, model_alias="smollm2:135m", log_file="server.log")
    try:
        server.wait_until_ready(timeout=120)
        answer = OpenAIRuntime("smollm2:135m", server.url).chat(
            [Message("user", "Say hello.")], GenerationOptions(max_tokens=12)
        )
        text = answer.text
    finally:
        code = server.stop()
    return {"text": text, "server_exit": code}


def report() -> dict[str, object]:
    from equitune.config import EquituneConfig
    from equitune.report.generator import EnhancedEquityResearchGenerator

    config = EquituneConfig(evaluation={"max_tokens": 24})
    with EnhancedEquityResearchGenerator(config, "smollm2:135m", progress=False) as generator:
        written = generator.generate_comprehensive_report("AAPL", out_dir="reports")
    return {"runtime": written.runtime, "sections": len(written.sections), "files": [str(p) for p in written.paths]}


def verification() -> dict[str, object]:
    from equitune.export.verify import _llama, _llama_follow
    from equitune.train.base_model import embedded_gguf_path

    with _llama(embedded_gguf_path(), None, 512, True) as llm:
        ids = llm.tokenize(b"The price target is based on a discounted cash flow of", add_bos=True)
        followed = _llama_follow(llm, ids, [], [], 12, {int(llm.token_eos())}, 0.0)
    return {"tokens": followed.tokens}


PATHS = {"evaluation": evaluation, "chat": chat, "serve": serve, "report": report, "verification": verification}

if __name__ == "__main__":
    name, workdir = sys.argv[1], Path(sys.argv[2])
    os.chdir(workdir)
    result = PATHS[name]()
    print(json.dumps({"path": name, **result}), flush=True)
