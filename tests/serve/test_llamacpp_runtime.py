"""The embedded llama.cpp runtime on the real SmolLM2-135M GGUF: determinism, limits, token counts, the GGUF's chat
template, streaming, LoRA adapters and the errors a user sees."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from runtime_helpers import write_lora_gguf

from equitune.errors import EquituneError
from equitune.serve.llamacpp_runtime import LlamaCppRuntime
from equitune.serve.runtime import GenerationOptions, Message, ModelRuntimeError, Runtime
from equitune.train.base_model import embedded_gguf_path

pytestmark = pytest.mark.slow

# One thread: llama.cpp's spinning worker threads slow down badly when other processes share the CPUs.
THREADS = 1
SMOLLM_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
QUESTION = [Message("user", "What does a price-to-earnings ratio tell an investor?")]


@pytest.fixture(scope="module")
def gguf_path() -> Path:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'equitune[serve]')")
    try:
        return embedded_gguf_path()
    except EquituneError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def runtime(gguf_path: Path) -> Iterator[LlamaCppRuntime]:
    loaded = LlamaCppRuntime(gguf_path, n_ctx=2048, display_name="smollm2:135m", n_threads=THREADS)
    yield loaded
    loaded.close()


def _chatml(*turns: tuple[str, str]) -> str:
    """SmolLM2's template, written out by hand: the GGUF's template must produce exactly this."""
    return "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in turns) + "<|im_start|>assistant\n"


def test_implements_the_runtime_protocol(runtime: LlamaCppRuntime) -> None:
    assert isinstance(runtime, Runtime)
    assert (runtime.name, runtime.model) == ("llama.cpp", "smollm2:135m")
    assert runtime.chat_format == "chat_template.default"
    assert runtime.n_ctx == 2048


def test_greedy_generation_is_deterministic(runtime: LlamaCppRuntime) -> None:
    options = GenerationOptions(max_tokens=24, temperature=0.0)
    first = runtime.chat(QUESTION, options)
    runtime.generate("Unrelated text in between.", GenerationOptions(max_tokens=5))
    second = runtime.chat(QUESTION, options)
    assert first.text.strip()
    assert second.text == first.text


def test_sampling_with_a_seed_is_reproducible(runtime: LlamaCppRuntime) -> None:
    options = GenerationOptions(max_tokens=16, temperature=0.9, seed=123)
    assert runtime.generate("The stock market", options).text == runtime.generate("The stock market", options).text


def test_max_tokens_is_respected_with_finish_reason_length(runtime: LlamaCppRuntime) -> None:
    generation = runtime.generate("The company reported quarterly revenue of", GenerationOptions(max_tokens=7))
    assert generation.finish_reason == "length"
    assert generation.completion_tokens == 7
    assert abs(len(runtime.tokenize(generation.text)) - 7) <= 1


def test_end_of_turn_gives_finish_reason_stop(runtime: LlamaCppRuntime) -> None:
    generation = runtime.chat([Message("user", "Hi")], GenerationOptions(max_tokens=64))
    assert generation.finish_reason == "stop"
    assert 0 < generation.completion_tokens < 64
    assert "<|im_end|>" not in generation.text


def test_stop_strings_cut_the_text(runtime: LlamaCppRuntime) -> None:
    full = runtime.generate("The company reported", GenerationOptions(max_tokens=30)).text
    words = full.split()
    assert len(words) > 4
    stop = f" {words[3]}"
    cut = runtime.generate("The company reported", GenerationOptions(max_tokens=30, stop=(stop,)))
    assert cut.finish_reason == "stop"
    assert cut.text == full[: full.index(stop)]


def test_token_counts_match_tokenize(runtime: LlamaCppRuntime) -> None:
    prompt = "Revenue grew 12% while operating margin expanded to"
    generation = runtime.generate(prompt, GenerationOptions(max_tokens=20))
    assert generation.prompt_tokens == len(runtime.tokenize(prompt))
    assert abs(generation.completion_tokens - len(runtime.tokenize(generation.text))) <= 1


def test_chat_applies_the_ggufs_own_template(runtime: LlamaCppRuntime) -> None:
    user_text = QUESTION[0].content
    generation = runtime.chat(QUESTION, GenerationOptions(max_tokens=1))
    # no system message: SmolLM2's template inserts its default one
    assert generation.prompt_tokens == len(
        runtime.tokenize(_chatml(("system", SMOLLM_DEFAULT_SYSTEM), ("user", user_text)))
    )
    assert generation.prompt_tokens > len(runtime.tokenize(user_text)) + 10

    with_system = [Message("system", "You are an equity analyst."), *QUESTION]
    generation = runtime.chat(with_system, GenerationOptions(max_tokens=1))
    assert generation.prompt_tokens == len(
        runtime.tokenize(_chatml(("system", "You are an equity analyst."), ("user", user_text)))
    )


def test_chat_equals_generate_on_the_rendered_template(runtime: LlamaCppRuntime) -> None:
    options = GenerationOptions(max_tokens=20)
    chat = runtime.chat(QUESTION, options)
    raw = runtime.generate(_chatml(("system", SMOLLM_DEFAULT_SYSTEM), ("user", QUESTION[0].content)), options)
    assert chat.text == raw.text


def test_streaming_concatenates_to_the_non_streamed_text(runtime: LlamaCppRuntime) -> None:
    options = GenerationOptions(max_tokens=40)
    pieces = list(runtime.stream_chat(QUESTION, options))
    assert len(pieces) > 5
    assert "".join(pieces) == runtime.chat(QUESTION, options).text


def test_timings_split_prompt_and_completion(runtime: LlamaCppRuntime) -> None:
    generation = runtime.generate("A long prompt about valuation. " * 8, GenerationOptions(max_tokens=16))
    assert generation.prompt_seconds > 0
    assert generation.completion_seconds > 0
    assert generation.tokens_per_s == pytest.approx(16 / generation.completion_seconds)


def test_prompt_longer_than_the_context_is_a_runtime_error(runtime: LlamaCppRuntime) -> None:
    with pytest.raises(ModelRuntimeError, match="exceed context window"):
        runtime.generate("word " * 3000)
    with pytest.raises(ModelRuntimeError, match="exceed context window"):
        list(runtime.stream_chat([Message("user", "word " * 3000)]))


def test_lora_adapter_is_applied(gguf_path: Path, runtime: LlamaCppRuntime, tmp_path: Path) -> None:
    options = GenerationOptions(max_tokens=12)
    base_text = runtime.generate("The company reported", options).text
    zero_adapter, big_adapter = (
        write_lora_gguf(tmp_path / "zero.gguf", 0.0),
        write_lora_gguf(tmp_path / "big.gguf", 0.5),
    )
    with LlamaCppRuntime(gguf_path, lora_path=zero_adapter, n_ctx=256, n_threads=THREADS) as zero:
        assert zero.generate("The company reported", options).text == base_text
    with LlamaCppRuntime(gguf_path, lora_path=big_adapter, n_ctx=256, n_threads=THREADS) as changed:
        generation = changed.generate("The company reported", options)
        assert generation.text != base_text
        assert generation.extra["lora_path"] == str(tmp_path / "big.gguf")


def test_a_model_gguf_given_as_adapter_is_refused(gguf_path: Path) -> None:
    with pytest.raises(ModelRuntimeError, match=r"is not a LoRA adapter GGUF \(its general.type is 'model'\)"):
        LlamaCppRuntime(gguf_path, lora_path=gguf_path)


def test_a_damaged_adapter_is_refused(gguf_path: Path, tmp_path: Path) -> None:
    adapter = write_lora_gguf(tmp_path / "adapter.gguf", 0.1)
    damaged = tmp_path / "damaged.gguf"
    damaged.write_bytes(adapter.read_bytes()[:5000])  # header intact, tensor data cut off
    with pytest.raises(ModelRuntimeError, match=f"could not load the LoRA adapter {damaged}"):
        LlamaCppRuntime(gguf_path, lora_path=damaged, n_ctx=256, n_threads=THREADS)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.gguf"
    with pytest.raises(ModelRuntimeError, match=f"{missing}: no such file"):
        LlamaCppRuntime(missing)


def test_file_that_is_not_gguf_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_text("<html>404</html>")
    with pytest.raises(ModelRuntimeError, match=f"{path}: it is not a GGUF file"):
        LlamaCppRuntime(path)


def test_truncated_gguf_names_the_path(gguf_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.gguf"
    with open(gguf_path, "rb") as handle:
        path.write_bytes(handle.read(1 << 20))
    with pytest.raises(ModelRuntimeError, match=f"llama.cpp failed to load {path}"):
        LlamaCppRuntime(path)


def test_closed_runtime_refuses_requests(gguf_path: Path) -> None:
    loaded = LlamaCppRuntime(gguf_path, n_ctx=256, n_threads=THREADS)
    loaded.close()
    loaded.close()  # closing twice is harmless
    with pytest.raises(ModelRuntimeError, match="has been closed"):
        loaded.generate("hello")


def test_missing_llama_cpp_names_the_install_command(gguf_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` raise ImportError
    with pytest.raises(ModelRuntimeError, match=r"pip install 'equitune\[serve\]'"):
        LlamaCppRuntime(gguf_path, n_threads=THREADS)
