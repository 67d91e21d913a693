"""A stand-in for Ollama's HTTP API on a local port (a ``ThreadingHTTPServer`` in a background thread), faithful to
Ollama's documented behaviour (docs/api.md) and to its server code for status codes and error bodies:

- ``HEAD /api/blobs/:digest`` 200 or 404; ``POST /api/blobs/:digest`` checks the digest format (400), the body's
  sha256 (400 ``digest mismatch, expected "...", got "..."``), answers 201 (200 when the blob exists);
- ``POST /api/create`` with ``model``, ``from``, ``files``, ``adapters``, ``template``, ``system``,
  ``parameters``, ``license``, ``stream`` (NDJSON ``{"status": ...}`` lines ending ``success``, or one object):
  errors before any output are an HTTP status with ``{"error": ...}``, errors after it an ``{"error": ...}`` line;
- ``GET /api/tags``, ``POST /api/show`` and ``DELETE /api/delete`` (404 ``model 'x' not found``),
  ``GET /api/version``;
- ``POST /api/chat`` and ``POST /api/generate``, streamed or not, with ``done``, ``done_reason``, token counts and
  nanosecond durations. The prompt is rendered from the model's TEMPLATE and SYSTEM the way Ollama does
  (``gotemplate.render_ollama``) and recorded; the reply is scripted (``replies``/``reply_fn``) or an echo.

Every request is recorded (``requests``); ``fail(path, status, message)`` makes the next request to a path fail.
``adapters_supported=False`` answers like Ollama 0.34+, which refuses LoRA adapters.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from equitune.export import gotemplate
from equitune.export.ollama_api import ModelNameError, parse_model_name

DIGEST = re.compile(r"^sha256[:-][0-9a-fA-F]{64}$")
PROMPT_NS_PER_TOKEN = 2_000_000
EVAL_NS_PER_TOKEN = 20_000_000
LOAD_NS = 5_000_000


@dataclass
class RecordedRequest:
    method: str
    path: str
    body: Any  # parsed JSON, or None
    size: int = 0  # bytes of the body


@dataclass
class StubModel:
    name: str
    request: dict[str, Any]
    template: str
    system: str
    parameters: dict[str, Any]
    licenses: list[str]
    layers: list[str]
    modified_at: str


@dataclass
class OllamaStub:
    """The stand-in's state; tests read and script it."""

    host: str = ""
    version: str = "0.12.10"
    adapters_supported: bool = True
    blobs: dict[str, bytes] = field(default_factory=dict)
    models: dict[str, StubModel] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)  # the prompt each chat/generate request rendered
    replies: list[str] = field(default_factory=list)  # used first, in order
    reply_fn: Callable[[str], str] | None = None  # from the rendered prompt
    failures: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, path: str, status: int = 500, message: str = "internal server error", times: int = 1) -> None:
        """The next ``times`` requests to ``path`` answer ``status`` with ``{"error": message}``."""
        self.failures.setdefault(path, []).extend([(status, message)] * times)

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.startswith(path_prefix) and (method is None or r.method == method)]

    def add_blob(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return digest

    def add_model(self, name: str, template: str = "{{ .Prompt }}", system: str = "", **parameters: Any) -> None:
        """A model the stand-in already has (as if pulled)."""
        key = _key(name)
        self.models[key] = StubModel(
            _display(name), {"model": name}, template, system, dict(parameters), [], [], _now()
        )

    def model(self, name: str) -> StubModel | None:
        return self.models.get(_key(name))


def _display(name: str) -> str:
    parsed = parse_model_name(name)
    return str(parsed) if parsed.tag else f"{parsed}:latest"


def _key(name: str) -> str:
    return _display(name).lower()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())


def _quote(s: str) -> str:
    """Ollama's ``parser.quote`` (how ``ollama show`` writes a Modelfile value)."""
    if "\n" in s or s.startswith(" ") or s.endswith(" "):
        return f'"""{s}"""' if '"' in s else f'"{s}"'
    return s


def _pieces(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text)


class _Error(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _make_handler(stub: OllamaStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            pass

        # ------------------------------------------------------------------------------ plumbing
        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return bytes(out)
                    out += self.rfile.read(size)
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _json(self, status: int, payload: Any = None) -> None:
            body = b"" if payload is None else json.dumps(payload).encode("utf-8")
            self.send_response(status)
            if payload is not None:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _stream(self, items: Iterator[dict[str, Any]]) -> None:
            """Ollama's ``streamResponse``: an error before any line is an HTTP status, after it an error line."""
            started = False
            try:
                for item in items:
                    if not started:
                        self.send_response(200)
                        self.send_header("Content-Type", "application/x-ndjson")
                        self.end_headers()
                        started = True
                    self.wfile.write(json.dumps(item).encode("utf-8") + b"\n")
                    self.wfile.flush()
            except _Error as exc:
                if not started:
                    self._json(exc.status, {"error": exc.message})
                else:
                    self.wfile.write(json.dumps({"error": exc.message}).encode("utf-8") + b"\n")

        def _wait(self, items: Iterator[dict[str, Any]]) -> None:
            """Ollama's ``waitForStream`` (``stream: false``): the last object, or the error with its status."""
            last: dict[str, Any] = {}
            try:
                for item in items:
                    last = item
            except _Error as exc:
                self._json(exc.status, {"error": exc.message})
                return
            self._json(200, last)

        def _dispatch(self, method: str) -> None:
            raw = self._body() if method in ("POST", "DELETE") else b""
            path = self.path.split("?", 1)[0]
            body: Any = None
            if raw and not path.startswith("/api/blobs/"):
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    body = None
            with stub.lock:
                stub.requests.append(RecordedRequest(method, path, body, len(raw)))
                scripted = stub.failures.get(path)
                failure = scripted.pop(0) if scripted else None
            if failure is not None:
                self._json(failure[0], {"error": failure[1]})
                return
            try:
                self._route(method, path, raw, body)
            except _Error as exc:
                self._json(exc.status, {"error": exc.message})

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_HEAD(self) -> None:
            self._dispatch("HEAD")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_DELETE(self) -> None:
            self._dispatch("DELETE")

        # ------------------------------------------------------------------------------ routes
        def _route(self, method: str, path: str, raw: bytes, body: Any) -> None:
            if path.startswith("/api/blobs/"):
                digest = path.removeprefix("/api/blobs/")
                if method == "HEAD":
                    return self._head_blob(digest)
                if method == "POST":
                    return self._post_blob(digest, raw)
            elif (method, path) == ("GET", "/api/version"):
                return self._json(200, {"version": stub.version})
            elif (method, path) in (("GET", "/"), ("HEAD", "/")):
                return self._json(200, "Ollama is running")
            elif (method, path) == ("GET", "/api/tags"):
                return self._tags()
            elif method in ("POST", "DELETE") and body is None and path.startswith("/api/"):
                raise _Error(400, "missing request body" if not raw else "invalid character in request body")
            elif (method, path) == ("POST", "/api/create"):
                return self._create(body)
            elif (method, path) == ("POST", "/api/show"):
                return self._show(body)
            elif (method, path) == ("DELETE", "/api/delete"):
                return self._delete(body)
            elif (method, path) == ("POST", "/api/chat"):
                return self._generate(body, chat=True)
            elif (method, path) == ("POST", "/api/generate"):
                return self._generate(body, chat=False)
            raise _Error(404, "404 page not found")

        def _head_blob(self, digest: str) -> None:
            if not DIGEST.match(digest):
                raise _Error(400, "invalid digest format")
            self._json(200 if digest.replace("-", ":", 1) in stub.blobs else 404)

        def _post_blob(self, digest: str, raw: bytes) -> None:
            if not DIGEST.match(digest):
                raise _Error(400, "invalid digest format")
            digest = digest.replace("-", ":", 1)
            if digest in stub.blobs:
                return self._json(200)
            got = "sha256:" + hashlib.sha256(raw).hexdigest()
            if got != digest:
                raise _Error(400, f'digest mismatch, expected "{digest}", got "{got}"')
            with stub.lock:
                stub.blobs[digest] = raw
            self._json(201)

        def _tags(self) -> None:
            models = [
                {
                    "name": m.name,
                    "model": m.name,
                    "modified_at": m.modified_at,
                    "size": sum(len(stub.blobs.get(d, b"")) for d in m.layers),
                    "digest": hashlib.sha256(m.name.encode()).hexdigest(),
                    "details": {"format": "gguf", "family": "llama", "families": ["llama"]},
                }
                for m in stub.models.values()
            ]
            self._json(200, {"models": models})

        def _model(self, body: dict[str, Any], field_name: str = "model") -> StubModel:
            name = str(body.get(field_name) or body.get("name") or "")
            model = stub.model(name) if name and _valid(name) else None
            if model is None:
                raise _Error(404, f"model '{name}' not found")
            return model

        def _show(self, body: dict[str, Any]) -> None:
            model = self._model(body)
            lines = [
                '# Modelfile generated by "ollama show"',
                "# To build a new Modelfile based on this one, replace the FROM line with:",
                f"# FROM {model.name}",
                "",
                f"FROM /root/.ollama/models/blobs/{model.layers[0].replace(':', '-') if model.layers else 'none'}",
                f"TEMPLATE {_quote(model.template)}",
            ]
            for key, value in model.parameters.items():
                for item in value if isinstance(value, list) else [value]:
                    lines.append(f"PARAMETER {key} {_quote(str(item))}")
            if model.system:
                lines.append(f"SYSTEM {_quote(model.system)}")
            lines += [f"LICENSE {_quote(text)}" for text in model.licenses]
            parameters = "\n".join(
                f"{key:<30} {json.dumps(item)}"
                for key, value in model.parameters.items()
                for item in (value if isinstance(value, list) else [value])
            )
            self._json(
                200,
                {
                    "modelfile": "\n".join(lines) + "\n",
                    "parameters": parameters,
                    "template": model.template,
                    "system": model.system,
                    "license": "\n".join(model.licenses),
                    "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"]},
                    "model_info": {"general.architecture": "llama"},
                    "capabilities": ["completion"],
                    "modified_at": model.modified_at,
                },
            )

        def _delete(self, body: dict[str, Any]) -> None:
            model = self._model(body)
            with stub.lock:
                del stub.models[_key(model.name)]
            self._json(200)

        def _create(self, body: dict[str, Any]) -> None:
            name = str(body.get("model") or body.get("name") or "")
            if not _valid(name):
                raise _Error(400, "invalid model name")
            if body.get("adapters") and not stub.adapters_supported:
                raise _Error(400, "LoRA adapters are no longer supported")
            for group in ("files", "adapters"):
                for file_name, digest in (body.get(group) or {}).items():
                    if not DIGEST.match(str(digest)):
                        raise _Error(400, "invalid digest format")
                    if str(digest).replace("-", ":", 1) not in stub.blobs:
                        raise _Error(400, f"open {file_name}: blob {digest} not found")
            template = body.get("template")
            if template is not None:
                try:
                    gotemplate.parse(str(template))
                except gotemplate.TemplateError as exc:
                    raise _Error(400, f"template error: {exc}") from None
            items = self._create_steps(name, body)
            if body.get("stream", True) is False:
                self._wait(items)
            else:
                self._stream(items)

        def _create_steps(self, name: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
            layers: list[str] = []
            base: StubModel | None = None
            if body.get("from"):
                base = stub.model(str(body["from"])) if _valid(str(body["from"])) else None
                if base is None:
                    yield {"status": "pulling manifest"}
                    raise _Error(500, "pull model manifest: file does not exist")
                for digest in base.layers:
                    yield {"status": f"using existing layer {digest}"}
                layers += base.layers
            elif body.get("files"):
                for digest in body["files"].values():
                    yield {"status": "parsing GGUF"}
                    if not stub.blobs[digest].startswith(b"GGUF"):
                        raise _Error(400, "supplied file was not in GGUF format")
                    yield {"status": f"using existing layer {digest}"}
                    layers.append(digest)
            else:
                raise _Error(400, "neither 'from' or 'files' was specified")
            adapters = body.get("adapters") or {}
            if len(adapters) > 1:
                raise _Error(400, "only one adapter is currently supported")
            for digest in adapters.values():
                yield {"status": "parsing GGUF"}
                if not stub.blobs[digest].startswith(b"GGUF"):
                    raise _Error(400, "supplied file was not in GGUF format")
                yield {"status": f"using existing layer {digest}"}
                layers.append(digest)
            parameters = dict(base.parameters) if base else {}
            parameters.update(body.get("parameters") or {})
            licenses = body.get("license") or []
            licenses = [licenses] if isinstance(licenses, str) else list(licenses)
            template = body.get("template") or (base.template if base else "{{ .Prompt }}")
            system = body.get("system") or (base.system if base else "")
            for value in (body.get("template"), body.get("system")):
                if value:
                    digest = "sha256:" + hashlib.sha256(str(value).encode()).hexdigest()
                    yield {"status": f"creating new layer {digest}"}
            if body.get("parameters"):
                digest = "sha256:" + hashlib.sha256(json.dumps(parameters).encode()).hexdigest()
                yield {"status": f"creating new layer {digest}"}
            yield {"status": "writing manifest"}
            with stub.lock:
                stub.models[_key(name)] = StubModel(
                    _display(name), dict(body), str(template), str(system), parameters, licenses, layers, _now()
                )
            yield {"status": "success"}

        def _generate(self, body: dict[str, Any], chat: bool) -> None:
            model = self._model(body)
            options = {**model.parameters, **(body.get("options") or {})}
            if chat:
                messages = [{"role": m["role"], "content": m.get("content", "")} for m in body.get("messages") or []]
                prompt = gotemplate.render_ollama(model.template, messages, model.system)
            elif body.get("raw"):
                prompt = str(body.get("prompt") or "")
            else:
                messages = [{"role": "user", "content": str(body.get("prompt") or "")}]
                if body.get("system"):
                    messages.insert(0, {"role": "system", "content": str(body["system"])})
                prompt = gotemplate.render_ollama(model.template, messages, model.system, endpoint="generate")
            with stub.lock:
                stub.prompts.append(prompt)
                scripted = stub.replies.pop(0) if stub.replies else None
                reply_fn = stub.reply_fn
            if scripted is not None:
                reply = scripted
            elif reply_fn is not None:
                reply = reply_fn(prompt)  # outside the lock: Ollama answers parallel requests at once
            else:
                last = (body.get("messages") or [{}])[-1].get("content", "") if chat else body.get("prompt", "")
                reply = f"Echo: {last}"
            done_reason = "stop"
            for stop in options.get("stop") or []:
                if stop and stop in reply:
                    reply = reply[: reply.index(stop)]
            pieces = _pieces(reply)
            limit = options.get("num_predict")
            if isinstance(limit, int) and 0 <= limit < len(pieces):
                pieces, done_reason = pieces[:limit], "length"
            prompt_tokens = max(1, len(prompt.split()))
            final = {
                "model": body["model"],
                "created_at": _now(),
                "done": True,
                "done_reason": done_reason,
                "total_duration": LOAD_NS + prompt_tokens * PROMPT_NS_PER_TOKEN + len(pieces) * EVAL_NS_PER_TOKEN,
                "load_duration": LOAD_NS,
                "prompt_eval_count": prompt_tokens,
                "prompt_eval_duration": prompt_tokens * PROMPT_NS_PER_TOKEN,
                "eval_count": len(pieces),
                "eval_duration": len(pieces) * EVAL_NS_PER_TOKEN,
            }

            def text(value: str) -> dict[str, Any]:
                return {"message": {"role": "assistant", "content": value}} if chat else {"response": value}

            if body.get("stream", True) is False:
                return self._json(200, {**final, **text("".join(pieces))})

            def items() -> Iterator[dict[str, Any]]:
                for piece in pieces:
                    yield {"model": body["model"], "created_at": _now(), **text(piece), "done": False}
                yield {**final, **text("")}

            self._stream(items())

    return Handler


def _valid(name: str) -> bool:
    try:
        parse_model_name(name)
    except ModelNameError:
        return False
    return True


class RunningStub:
    """An ``OllamaStub`` served on 127.0.0.1 in a background thread; ``stop()`` shuts it down."""

    def __init__(self, stub: OllamaStub | None = None) -> None:
        self.stub = stub or OllamaStub()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self.stub))
        self.server.daemon_threads = True
        self.stub.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def closed_port_host() -> str:
    """A base URL on which nothing listens (a port just bound and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    return f"http://127.0.0.1:{port}"
