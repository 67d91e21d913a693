"""A small OpenAI-compatible HTTP server for the runtime tests: it answers ``/v1/chat/completions`` and
``/v1/completions`` (plain and streamed) from the request itself, so tests can check what was sent and what was
parsed; any path can be given a scripted reply instead (errors, malformed bodies)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Scripted:
    """A fixed reply: ``status`` with a JSON ``body`` (or raw bytes)."""

    status: int
    body: Any


@dataclass
class StandIn:
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    scripted: dict[str, Scripted] = field(default_factory=dict)
    timings: bool = False  # add llama.cpp's "timings" object to replies


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _reply_words(request: dict[str, Any]) -> tuple[list[str], str, int]:
    """The words of the answer (``echo`` + the last message or the prompt), the finish reason, prompt tokens."""
    if "messages" in request:
        source = request["messages"][-1]["content"]
        prompt_tokens = sum(len(m["content"].split()) + 2 for m in request["messages"])
    else:
        source = request["prompt"]
        prompt_tokens = len(source.split())
    words = ["echo", *source.split()]
    for stop in request.get("stop") or ():
        if stop in words:
            return words[: words.index(stop)], "stop", prompt_tokens
    limit = int(request.get("max_tokens") or 16)
    if len(words) > limit:
        return words[:limit], "length", prompt_tokens
    return words, "stop", prompt_tokens


@contextmanager
def openai_stand_in() -> Iterator[StandIn]:
    """Run the stand-in on a free local port for the duration of the ``with`` block."""
    state = StandIn()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            request = json.loads(self.rfile.read(length) or b"{}")
            state.requests.append(
                {"path": self.path, "authorization": self.headers.get("Authorization"), "body": request}
            )
            if self.path in state.scripted:
                scripted = state.scripted[self.path]
                raw = scripted.body if isinstance(scripted.body, bytes) else json.dumps(scripted.body).encode()
                self._send(scripted.status, raw, "application/json")
                return
            if self.path not in ("/v1/chat/completions", "/v1/completions"):
                self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}).encode(), "text/plain")
                return
            chat = self.path == "/v1/chat/completions"
            words, finish, prompt_tokens = _reply_words(request)
            if request.get("stream"):
                self._stream(words, finish, chat)
                return
            text = " ".join(words)
            choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
            if chat:
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            reply: dict[str, Any] = {
                "id": "cmpl-1",
                "object": "chat.completion" if chat else "text_completion",
                "model": request.get("model"),
                "choices": [choice],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": len(words),
                    "total_tokens": prompt_tokens + len(words),
                },
            }
            if state.timings:
                reply["timings"] = {"prompt_ms": 250.0, "predicted_ms": 500.0}
            self._send(200, json.dumps(reply).encode(), "application/json")

        def _stream(self, words: list[str], finish: str, chat: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b": keep-alive comment\n\n")
            for i, word in enumerate(words):
                piece = word if i == 0 else " " + word
                chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                if i == 0:
                    chunk["choices"][0]["delta"]["role"] = "assistant"
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            final = {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
            self.wfile.write(f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())
            self.close_connection = True

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def write_lora_gguf(path: Path, scale: float, *, rank: int = 8, seed: int = 0) -> Path:
    """A LoRA adapter GGUF for the embedded SmolLM2-135M (30 layers, hidden size 576) on every ``attn_q``, laid out
    as llama.cpp's ``convert_lora_to_gguf.py`` writes one. ``scale=0`` makes B zero: an adapter that changes
    nothing."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(rank))
    rng = np.random.default_rng(seed)
    for layer in range(30):
        # numpy shapes are GGUF's reversed: A is (rank, n_in), B is (n_out, rank), as in PEFT
        writer.add_tensor(f"blk.{layer}.attn_q.weight.lora_a", rng.standard_normal((rank, 576)).astype(np.float32))
        lora_b = (rng.standard_normal((576, rank)) * scale).astype(np.float32)
        writer.add_tensor(f"blk.{layer}.attn_q.weight.lora_b", lora_b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
