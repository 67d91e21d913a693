"""The interactive chat loop (commands, history, streaming, errors) and the llama.cpp server subprocess."""

from __future__ import annotations

import io
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from runtime_helpers import Scripted, StandIn, closed_port, openai_stand_in

from equitune.errors import EquituneError
from equitune.serve.llamacpp_runtime import LlamaCppRuntime
from equitune.serve.openai_runtime import OpenAIRuntime
from equitune.serve.runtime import Generation, GenerationOptions, Message, ModelRuntimeError
from equitune.serve.server import chat_loop, missing_server_modules, serve, server_command
from equitune.train.base_model import embedded_gguf_path


@pytest.fixture
def server() -> Iterator[StandIn]:
    with openai_stand_in() as state:
        yield state


def _inputs(*lines: str) -> tuple[list[str], object]:
    """An ``input_fn`` that returns ``lines`` in turn (EOFError after them), and the prompts it was shown."""
    queue = list(lines)
    prompts: list[str] = []

    def read(prompt: str) -> str:
        prompts.append(prompt)
        if not queue:
            raise EOFError
        return queue.pop(0)

    read.remaining = queue  # type: ignore[attr-defined]
    return prompts, read


def test_chat_keeps_history_and_streams_answers(server: StandIn) -> None:
    runtime = OpenAIRuntime("m", server.url, timeout=5)
    out = io.StringIO()
    prompts, read = _inputs("hello there", "", "  ", "second turn", "/exit", "never read")

    history = chat_loop(runtime, "Be brief.", input_fn=read, output=out, options=GenerationOptions(max_tokens=50))

    assert out.getvalue() == "echo hello there\necho second turn\n"
    assert prompts == [">>> "] * 5
    assert read.remaining == ["never read"]  # type: ignore[attr-defined]
    second = server.requests[1]["body"]
    assert second["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": "echo hello there"},
        {"role": "user", "content": "second turn"},
    ]
    assert second["stream"] is True and second["max_tokens"] == 50
    assert [m.role for m in history] == ["system", "user", "assistant", "user", "assistant"]


def test_reset_forgets_the_conversation_but_keeps_the_system_prompt(server: StandIn) -> None:
    runtime = OpenAIRuntime("m", server.url, timeout=5)
    out = io.StringIO()
    _, read = _inputs("first", "/reset", "after reset")

    history = chat_loop(runtime, "Be brief.", input_fn=read, output=out)

    assert "(conversation cleared)\n" in out.getvalue()
    assert server.requests[-1]["body"]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "after reset"},
    ]
    assert history == [
        Message("system", "Be brief."),
        Message("user", "after reset"),
        Message("assistant", "echo after reset"),
    ]


def test_no_system_prompt_sends_only_the_conversation(server: StandIn) -> None:
    _, read = _inputs("hi", "/quit")
    chat_loop(OpenAIRuntime("m", server.url, timeout=5), None, input_fn=read, output=io.StringIO())
    assert server.requests[0]["body"]["messages"] == [{"role": "user", "content": "hi"}]


def test_a_failed_request_is_reported_and_left_out(server: StandIn) -> None:
    runtime = OpenAIRuntime("m", server.url, timeout=5)
    server.scripted["/v1/chat/completions"] = Scripted(500, {"error": {"message": "model crashed"}})
    out = io.StringIO()
    _, read = _inputs("first")
    assert chat_loop(runtime, "sys", input_fn=read, output=out) == [Message("system", "sys")]
    assert "error: " in out.getvalue() and "HTTP 500" in out.getvalue() and "model crashed" in out.getvalue()


class _InterruptedRuntime:
    """Streams two pieces, then the user presses Ctrl-C."""

    name = "test"
    model = "test"

    def stream_chat(self, messages: Sequence[Message], options: GenerationOptions | None = None) -> Iterator[str]:
        yield "partial"
        yield " answer"
        raise KeyboardInterrupt

    def chat(self, messages: Sequence[Message], options: GenerationOptions | None = None) -> Generation:
        raise NotImplementedError

    def generate(self, prompt: str, options: GenerationOptions | None = None) -> Generation:
        raise NotImplementedError

    def close(self) -> None:
        pass


def test_ctrl_c_stops_the_answer_and_keeps_what_was_written() -> None:
    out = io.StringIO()
    _, read = _inputs("question", "/exit")
    history = chat_loop(_InterruptedRuntime(), None, input_fn=read, output=out)
    assert out.getvalue() == "partial answer [interrupted]\n"
    assert history[-1] == Message("assistant", "partial answer")


def test_ctrl_c_at_the_prompt_ends_the_chat(server: StandIn) -> None:
    def read(prompt: str) -> str:
        raise KeyboardInterrupt

    assert chat_loop(OpenAIRuntime("m", server.url), "s", input_fn=read, output=io.StringIO()) == [
        Message("system", "s")
    ]


# ------------------------------------------------------------------------------------------ llama.cpp


@pytest.fixture(scope="module")
def gguf_path() -> Path:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'equitune[serve]')")
    try:
        return embedded_gguf_path()
    except EquituneError as exc:
        pytest.skip(str(exc))


@pytest.mark.slow
def test_chat_loop_streams_the_same_answer_llama_cpp_gives(gguf_path: Path) -> None:
    options = GenerationOptions(max_tokens=24)
    with LlamaCppRuntime(gguf_path, n_ctx=512, n_threads=1) as runtime:
        expected = runtime.chat([Message("system", "Be brief."), Message("user", "What is EBITDA?")], options).text
        out = io.StringIO()
        _, read = _inputs("What is EBITDA?", "/exit")
        history = chat_loop(runtime, "Be brief.", input_fn=read, output=out, options=options)
    assert out.getvalue() == expected + "\n"
    assert history[-1] == Message("assistant", expected)


def test_server_command_line(tmp_path: Path) -> None:
    command = server_command(
        tmp_path / "m.gguf", tmp_path / "a.gguf", "0.0.0.0", 9000, 2048, n_threads=3, model_alias="equity:v1"
    )
    assert command[1:3] == ["-m", "equitune.serve.llama_server"]  # llama_cpp.server, loading the model safely
    pairs = dict(zip(command[3::2], command[4::2], strict=True))
    assert pairs == {
        "--model": str(tmp_path / "m.gguf"),
        "--host": "0.0.0.0",
        "--port": "9000",
        "--n_ctx": "2048",
        "--n_threads": "3",
        "--lora_path": str(tmp_path / "a.gguf"),
        "--model_alias": "equity:v1",
    }


def test_serve_without_the_server_extra_names_the_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "sse_starlette", None)
    assert "sse_starlette" in missing_server_modules()
    with pytest.raises(ModelRuntimeError, match=r"missing: .*sse_starlette.*pip install 'llama-cpp-python\[server\]'"):
        serve(tmp_path / "m.gguf")


needs_server = pytest.mark.skipif(
    bool(missing_server_modules()),
    reason="llama-cpp-python[server] is not installed (pip install 'llama-cpp-python[server]')",
)


@needs_server
def test_serve_refuses_a_missing_model(tmp_path: Path) -> None:
    with pytest.raises(ModelRuntimeError, match=f"the model GGUF {tmp_path / 'm.gguf'} does not exist"):
        serve(tmp_path / "m.gguf")


@needs_server
def test_serve_refuses_a_port_in_use(gguf_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ModelRuntimeError, match=f"Cannot serve on 127.0.0.1:{port}"):
            serve(gguf_path, port=port)


@needs_server
def test_server_that_dies_reports_its_log(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 64)
    server = serve(bad, port=closed_port(), log_file=tmp_path / "server.log")
    with pytest.raises(ModelRuntimeError, match="exited with code") as caught:
        server.serve_forever(ready_timeout=60)
    assert str(tmp_path / "server.log") in str(caught.value)
    assert server.process.returncode not in (None, 0)


@pytest.mark.slow
@needs_server
def test_served_model_answers_like_the_embedded_runtime(gguf_path: Path, tmp_path: Path) -> None:
    question = [Message("user", "What is a dividend?")]
    # llama-cpp-python's server defaults repeat_penalty to 1.1 where the library uses 1.0: pin it
    options = GenerationOptions(max_tokens=16, repeat_penalty=1.0)
    with LlamaCppRuntime(gguf_path, n_ctx=1024, n_threads=1) as local:
        expected = local.chat(question, options).text

    log = tmp_path / "s.log"
    with serve(gguf_path, port=closed_port(), n_ctx=1024, n_threads=1, model_alias="smollm2:135m", log_file=log) as s:
        s.wait_until_ready(timeout=60)
        remote = OpenAIRuntime("smollm2:135m", s.url, timeout=30)
        generation = remote.chat(question, options)
        streamed = "".join(remote.stream_chat(question, options))
    assert generation.text == expected
    assert streamed == expected
    assert generation.model == "smollm2:135m"
    assert generation.completion_tokens == 16 and generation.finish_reason == "length"
    assert s.process.poll() is not None, "leaving the with block stops the server"


@pytest.mark.slow
@needs_server
def test_serve_forever_runs_until_the_server_stops(gguf_path: Path, tmp_path: Path) -> None:
    server = serve(gguf_path, port=closed_port(), n_ctx=256, n_threads=1, log_file=tmp_path / "s.log")
    seen: list[str] = []

    def on_ready(url: str) -> None:
        seen.append(url)
        threading.Thread(target=server.stop).start()  # what Ctrl-C or a supervisor would do

    code = server.serve_forever(ready_timeout=60, on_ready=on_ready)
    assert seen == [server.url]
    assert code == server.process.returncode != 0
