"""The probe ``equitune.llamacpp`` runs in a subprocess: load a GGUF with or without llama.cpp's extra buffer types,
evaluate a 64-token prompt in one batch (the batched matrix kernels) and decode a few tokens (the single-row kernels),
then print one JSON line. A fault in native code ends this process, not the caller.

Usage: python -m equitune.llamacpp_probe MODEL.gguf [--extra-buffers on|off] [--threads N] [--tokens N]
       [--prompt-tokens N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

PROMPT = (
    "Revenue grew 6% to $391.0B while the operating margin held at 31.5%; free cash flow of $108.8B covered "
    "dividends and buybacks. The balance sheet carries $65.2B of cash against $106.6B of debt, and the shares "
    "trade at 33.8x earnings."
)
PROMPT_TOKENS = 64


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m equitune.llamacpp_probe")
    parser.add_argument("model")
    parser.add_argument("--extra-buffers", choices=("on", "off"), default="on")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--tokens", type=int, default=16, help="tokens decoded one at a time")
    parser.add_argument("--prompt-tokens", type=int, default=PROMPT_TOKENS, help="tokens of the prompt batch")
    args = parser.parse_args(argv)

    import llama_cpp

    from equitune.llamacpp import default_threads, model_params, parse_system_info

    extra = args.extra_buffers == "on"
    started = time.perf_counter()
    n_ctx = max(512, args.prompt_tokens + args.tokens + 16)
    threads = args.threads or default_threads()
    with model_params(extra):
        llm = llama_cpp.Llama(model_path=args.model, n_ctx=n_ctx, n_batch=n_ctx, n_threads=threads, verbose=False)
    loaded = time.perf_counter()
    tokens = llm.tokenize(PROMPT.encode(), add_bos=True)
    while len(tokens) < args.prompt_tokens:
        tokens += tokens[1:]
    tokens = tokens[: args.prompt_tokens]
    llm.eval(tokens)  # one batch of many rows: the kernels a prompt runs
    evaluated = time.perf_counter()
    generated = 0
    for _ in range(args.tokens):  # one row at a time: the kernels decoding runs
        token = llm.sample(temp=0.0)
        llm.eval([token])
        generated += 1
    decoded = time.perf_counter()
    report = {
        "ok": True,
        "extra_buffers": extra,
        "load_s": round(loaded - started, 3),
        "prompt_tokens": len(tokens),
        "prompt_tokens_per_s": round(len(tokens) / max(evaluated - loaded, 1e-9), 1),
        "decode_tokens": generated,
        "decode_tokens_per_s": round(generated / max(decoded - evaluated, 1e-9), 1),
        "system_info": parse_system_info(llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")),
    }
    llm.close()
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
