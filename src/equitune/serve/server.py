"""Serving a model: llama-cpp-python's OpenAI-compatible HTTP server as a subprocess (``equitune serve``), and the
interactive streaming chat of ``equitune chat``.

The server is ``python -m llama_cpp.server`` (started through ``equitune.serve.llama_server``, which loads the model
the way ``equitune.llamacpp`` found safe on this CPU); it needs llama-cpp-python's ``server`` extra (FastAPI, uvicorn,
sse-starlette, starlette-context, pydantic-settings). Once ready it answers ``/v1/chat/completions``,
``/v1/completions`` and ``/v1/models``, so ``OpenAIRuntime`` (and any OpenAI client) can talk to it.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from equitune.llamacpp import EXTRA_BUFFERS_ENV, LlamaCppLoadError, load_plan
from equitune.serve.llamacpp_runtime import default_threads
from equitune.serve.runtime import GenerationOptions, Message, ModelRuntimeError, Runtime

SERVER_MODULES = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")
SERVER_INSTALL = "pip install 'llama-cpp-python[server]'"
EXIT_COMMANDS = frozenset({"/exit", "/quit", "/bye"})
RESET_COMMAND = "/reset"


def missing_server_modules() -> list[str]:
    """The modules ``python -m llama_cpp.server`` needs that are not installed."""
    missing = []
    for module in SERVER_MODULES:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
            found = False
        if not found:
            missing.append(module)
    return missing


@dataclass
class LlamaServer:
    """A running ``llama_cpp.server`` subprocess; ``url`` is its base URL (``http://127.0.0.1:8080``)."""

    process: subprocess.Popen[bytes]
    url: str
    command: list[str]
    log_path: Path
    api_key: str | None = field(default=None, repr=False)

    def wait_until_ready(self, timeout: float = 120.0, poll_s: float = 0.2) -> None:
        """Block until ``GET /v1/models`` answers 200. Raises ``ModelRuntimeError`` with the end of the server's log
        when the process exits first, and stops the server when ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        while True:
            if self.process.poll() is not None:
                raise ModelRuntimeError(
                    f"The llama.cpp server exited with code {self.process.returncode} before it was ready "
                    f"({' '.join(self.command)}); its log {self.log_path} ends:\n{self.log_tail()}"
                )
            try:
                request = urllib.request.Request(f"{self.url}/v1/models", headers=headers)
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, TimeoutError, ConnectionError):
                pass  # not listening yet
            if time.monotonic() >= deadline:
                self.stop()
                raise ModelRuntimeError(
                    f"The llama.cpp server at {self.url} was not ready after {timeout:.0f}s and was stopped; its log "
                    f"{self.log_path} ends:\n{self.log_tail()}"
                )
            time.sleep(poll_s)

    def serve_forever(self, ready_timeout: float = 120.0, on_ready: Callable[[str], None] | None = None) -> int:
        """Wait until the server is ready, call ``on_ready(url)``, then block until it exits; Ctrl-C (or any error)
        stops it. Returns its exit code. This is what ``equitune serve`` runs in the foreground."""
        try:
            self.wait_until_ready(ready_timeout)
            if on_ready is not None:
                on_ready(self.url)
            return self.process.wait()
        except KeyboardInterrupt:
            return self.stop() or 0
        finally:
            self.stop()

    def stop(self, timeout: float = 10.0) -> int | None:
        """Terminate the server (kill it after ``timeout`` seconds); returns its exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        return self.process.returncode

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> LlamaServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def server_command(
    model_path: str | os.PathLike[str],
    lora_path: str | os.PathLike[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    n_ctx: int = 4096,
    *,
    n_threads: int | None = None,
    model_alias: str | None = None,
    api_key: str | None = None,
    chat_format: str | None = None,
    python: str = sys.executable,
) -> list[str]:
    """The command line ``serve`` runs: ``llama_cpp.server`` through ``equitune.serve.llama_server``."""
    command = [python, "-m", "equitune.serve.llama_server", "--model", str(model_path)]
    command += ["--host", host, "--port", str(port)]
    command += ["--n_ctx", str(n_ctx), "--n_threads", str(n_threads or default_threads())]
    if lora_path is not None:
        command += ["--lora_path", str(lora_path)]
    if model_alias:
        command += ["--model_alias", model_alias]
    if chat_format:
        command += ["--chat_format", chat_format]
    if api_key:
        command += ["--api_key", api_key]
    return command


def serve(
    model_path: str | os.PathLike[str],
    lora_path: str | os.PathLike[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    n_ctx: int = 4096,
    *,
    n_threads: int | None = None,
    model_alias: str | None = None,
    api_key: str | None = None,
    log_file: str | os.PathLike[str] | None = None,
) -> LlamaServer:
    """Start llama.cpp's OpenAI-compatible server for a GGUF (plus an optional LoRA adapter GGUF) and return at once;
    call ``wait_until_ready`` before sending requests and ``stop`` (or use ``with``) to end it. The server's output
    goes to ``log_file`` (default: a new file in the temporary folder). ``model_alias`` is the model name clients
    send and see (default: the GGUF path). The GGUF's own chat template is used, as ``LlamaCppRuntime`` does."""
    missing = missing_server_modules()
    if missing:
        raise ModelRuntimeError(
            f"Serving needs llama-cpp-python's server extra; missing: {', '.join(missing)}. Install it with: "
            f"{SERVER_INSTALL}"
        )
    model = Path(model_path).expanduser()
    for path, what in ((model, "model"), (Path(lora_path) if lora_path else None, "LoRA adapter")):
        if path is not None and not path.is_file():
            raise ModelRuntimeError(f"Cannot serve: the {what} GGUF {path} does not exist.")
    _check_port_free(host, port)
    command = server_command(
        model,
        lora_path,
        host,
        port,
        n_ctx,
        n_threads=n_threads,
        model_alias=model_alias,
        api_key=api_key,
        chat_format=_gguf_template_format(model),
    )
    if log_file is None:
        handle, name = tempfile.mkstemp(prefix="equitune-llama-server-", suffix=".log")
        os.close(handle)
        log_path = Path(name)
    else:
        log_path = Path(log_file)
        log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        plan = load_plan(model, n_threads=n_threads)
    except LlamaCppLoadError as exc:
        raise ModelRuntimeError(f"Cannot serve {model}: {exc}") from None
    env = {**os.environ, EXTRA_BUFFERS_ENV: "on" if plan.extra_buffers else "off"}
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    url_host = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    return LlamaServer(process, f"http://{url_host}:{port}", command, log_path, api_key)


def _gguf_template_format(model: Path) -> str | None:
    """``chat_template.default`` when the GGUF carries a chat template (so the server uses it, not a look-alike)."""
    from equitune.train.base_model import read_gguf_metadata

    try:
        metadata = read_gguf_metadata(model, ["tokenizer.chat_template"])
    except (OSError, ValueError, OverflowError):
        return None  # the server reports an unreadable GGUF itself
    return "chat_template.default" if "tokenizer.chat_template" in metadata else None


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no obstacle
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ModelRuntimeError(
                f"Cannot serve on {host}:{port}: {exc.strerror or exc}; choose another port (--port)."
            ) from None


# ---------------------------------------------------------------------------------------------- chat


def chat_loop(
    runtime: Runtime,
    system_prompt: str | None = None,
    *,
    input_fn: Callable[[str], str] = input,
    output: TextIO | None = None,
    options: GenerationOptions | None = None,
    prompt: str = ">>> ",
) -> list[Message]:
    """An interactive chat: read a line with ``input_fn``, stream the model's answer to ``output``, repeat.

    ``/exit`` (or ``/quit``, ``/bye``, end of input) ends the chat; ``/reset`` forgets the conversation and keeps
    the system prompt. Ctrl-C during an answer stops that answer and keeps what was written. A request that fails
    is reported and left out of the conversation, so the chat can go on. Returns the conversation.
    """
    out = output if output is not None else sys.stdout
    start: list[Message] = [Message("system", system_prompt)] if system_prompt else []
    history = list(start)
    while True:
        try:
            line = input_fn(prompt)
        except (EOFError, KeyboardInterrupt):
            out.write("\n")
            break
        text = line.strip()
        if not text:
            continue
        if text.lower() in EXIT_COMMANDS:
            break
        if text.lower() == RESET_COMMAND:
            history = list(start)
            out.write("(conversation cleared)\n")
            out.flush()
            continue
        answer = _stream_answer(runtime, [*history, Message("user", line)], options, out)
        if answer is not None:
            history += [Message("user", line), Message("assistant", answer)]
    return history


def _stream_answer(
    runtime: Runtime, messages: Sequence[Message], options: GenerationOptions | None, out: TextIO
) -> str | None:
    """Stream one answer to ``out``; the text, or None when the request failed."""
    pieces: list[str] = []
    try:
        for piece in runtime.stream_chat(messages, options):
            pieces.append(piece)
            out.write(piece)
            out.flush()
    except KeyboardInterrupt:
        out.write(" [interrupted]")
    except ModelRuntimeError as exc:
        separator = "\n" if pieces else ""
        out.write(f"{separator}error: {exc}\n")
        out.flush()
        return None
    out.write("\n")
    out.flush()
    return "".join(pieces)
