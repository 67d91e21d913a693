"""The Modelfile: the Go TEMPLATE renders exactly what the training chat template renders (per family, compared
with the tokenizer's own ``apply_chat_template``), stop tokens, Ollama's quoting and parameter rules, and the
round trip through a parser that follows Ollama's."""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "train"))
import chat_templates as ct  # noqa: E402
import tiny  # noqa: E402

from equitune.data.schema import SYSTEM_PROMPT  # noqa: E402
from equitune.export.gotemplate import render_ollama  # noqa: E402
from equitune.export.modelfile import (  # noqa: E402
    DOCUMENTED_PARAMETERS,
    SERVING_SYSTEM_PROMPT,
    ChatTemplateError,
    ModelfileError,
    ModelfileSpec,
    SamplingDefaults,
    TokenizerInfo,
    build_modelfile_spec,
    convert_chat_template,
    detect_family,
    parse_commands,
    parse_modelfile,
    quote_value,
    render_chat_template,
    render_modelfile,
    stop_tokens,
    write_modelfile,
)

USER = {"role": "user", "content": "Rate AAPL.\n\nDATA\nprice: 210.5\nEPS: 6.1"}
ANSWER = {"role": "assistant", "content": "## AAPL: Buy\n- Target 235 (upside 12%)\n\nNot investment advice."}
FOLLOW_UP = {"role": "user", "content": "And the main risk?"}
CONVERSATIONS: dict[str, list[dict[str, str]]] = {
    "system, one turn": [{"role": "system", "content": SYSTEM_PROMPT}, USER],
    "no system, one turn": [USER],
    "system, several turns": [{"role": "system", "content": SYSTEM_PROMPT}, USER, ANSWER, FOLLOW_UP],
    "no system, several turns": [USER, ANSWER, FOLLOW_UP, ANSWER, FOLLOW_UP],
}

# (template, bos, eos, family) as the model's tokenizer has them
FAMILIES = {
    "qwen2.5": (ct.QWEN25, None, "<|im_end|>", "chatml"),
    "chatml-plain": (ct.CHATML_PLAIN, None, "<|endoftext|>", "chatml"),
    "llama3": (ct.LLAMA3, "<|begin_of_text|>", "<|eot_id|>", "llama3"),
    "llama3.1": (ct.LLAMA31, "<|begin_of_text|>", "<|eot_id|>", "llama3"),
    "llama2": (ct.LLAMA2, "<s>", "</s>", "inst"),
    "mistral": (ct.MISTRAL, "<s>", "</s>", "inst"),
}


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    """The tiny ChatML tokenizer the train tests use (its template has a default system message)."""
    return tiny.make_tokenizer()


def _with_template(tokenizer: Any, template: str, bos: str | None, eos: str | None) -> Any:
    """The tiny tokenizer wearing another family's chat template and special tokens."""
    tok = copy.deepcopy(tokenizer)
    tok.chat_template, tok.bos_token, tok.eos_token = template, bos, eos
    return tok


def _training_text(tok: Any, messages: Sequence[Mapping[str, str]]) -> str:
    text = tok.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    assert isinstance(text, str)
    return text


def _ollama_text(template: str, leading_bos: str, messages: Sequence[Mapping[str, str]], system: str | None) -> str:
    return leading_bos + render_ollama(template, messages, modelfile_system=system)


def test_tiny_chatml_template_renders_what_the_tokenizer_renders(tokenizer: Any) -> None:
    info = TokenizerInfo.from_tokenizer(tokenizer)
    converted = convert_chat_template(info)
    assert converted.family == "chatml" and converted.leading_bos == ""
    assert converted.default_system == "You are a helpful assistant."
    for name, messages in CONVERSATIONS.items():
        assert _ollama_text(converted.template, "", messages, None) == _training_text(tokenizer, messages), name


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_renders_what_the_tokenizer_renders(tokenizer: Any, family: str) -> None:
    template, bos, eos, expected_family = FAMILIES[family]
    tok = _with_template(tokenizer, template, bos, eos)
    converted = convert_chat_template(TokenizerInfo.from_tokenizer(tok))
    assert converted.family == expected_family
    assert converted.leading_bos == (bos if bos and "bos_token" in template else "")
    for name, messages in CONVERSATIONS.items():
        expected = _training_text(tok, messages)
        assert _ollama_text(converted.template, converted.leading_bos, messages, None) == expected, name
        # the renderer used by the conversion is the tokenizer's
        assert (
            render_chat_template(template, messages, TokenizerInfo.from_tokenizer(tok).template_variables()) == expected
        )


@pytest.mark.parametrize("family", ["tiny", *sorted(FAMILIES)])
def test_modelfile_system_gives_the_training_prompt_for_a_chat_without_one(tokenizer: Any, family: str) -> None:
    """Ollama prepends the Modelfile SYSTEM; the prompt must then be what training saw with that system turn."""
    tok = tokenizer if family == "tiny" else _with_template(tokenizer, *FAMILIES[family][:3])
    converted = convert_chat_template(TokenizerInfo.from_tokenizer(tok))
    chat = [USER, ANSWER, FOLLOW_UP]
    trained = _training_text(tok, [{"role": "system", "content": SERVING_SYSTEM_PROMPT}, *chat])
    assert _ollama_text(converted.template, converted.leading_bos, chat, SERVING_SYSTEM_PROMPT) == trained


def test_llama31_preamble_and_default_system_block_are_read_from_the_template() -> None:
    converted = convert_chat_template(TokenizerInfo(ct.LLAMA31, "<|begin_of_text|>", "<|eot_id|>"))
    assert converted.default_system == "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
    assert not converted.template.startswith("<|begin_of_text|>")  # llama.cpp adds the BOS itself


def test_llama2_puts_the_system_in_the_first_turn_and_mistral_in_the_last() -> None:
    chat = [{"role": "system", "content": "S"}, USER, ANSWER, FOLLOW_UP]
    llama2 = convert_chat_template(TokenizerInfo(ct.LLAMA2, "<s>", "</s>"))
    mistral = convert_chat_template(TokenizerInfo(ct.MISTRAL, "<s>", "</s>"))
    llama2_text, mistral_text = render_ollama(llama2.template, chat), render_ollama(mistral.template, chat)
    assert llama2_text.startswith("[INST] <<SYS>>\nS\n<</SYS>>\n\nRate AAPL.")
    assert "</s><s>[INST] And the main risk? [/INST]" in llama2_text
    assert mistral_text.startswith("[INST] Rate AAPL.") and mistral_text.endswith(
        "[INST] S\n\nAnd the main risk?[/INST]"
    )


def test_template_text_that_looks_like_go_is_kept_literal() -> None:
    template = ct.SMOLLM2.replace("named SmolLM, trained by Hugging Face", "who writes {{ .System }} literally")
    converted = convert_chat_template(TokenizerInfo(template))
    assert converted.default_system == "You are a helpful AI assistant who writes {{ .System }} literally"
    assert render_ollama(converted.template, [USER]) == render_chat_template(template, [USER])


def test_unknown_family_is_an_error_naming_the_supported_ones() -> None:
    with pytest.raises(ChatTemplateError) as info:
        convert_chat_template(TokenizerInfo(ct.GEMMA, "<bos>", "<eos>"))
    message = str(info.value)
    assert "Unsupported chat template" in message
    for marker in ("ChatML", "Llama 3", "Mistral", "[INST]"):
        assert marker in message


def test_template_without_system_support_is_refused() -> None:
    with pytest.raises(ChatTemplateError, match="does not accept a system message"):
        convert_chat_template(TokenizerInfo(ct.MISTRAL_V01, "<s>", "</s>"))


def test_a_template_the_go_side_cannot_match_fails_the_check() -> None:
    # ChatML markers, but an extra blank line after assistant turns only: no family template writes that
    odd = (
        "{% for message in messages %}"
        "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n'}}"
        "{% if message['role'] == 'assistant' %}{{ '\\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    with pytest.raises(ChatTemplateError, match="renders differently from it at character"):
        convert_chat_template(TokenizerInfo(odd))


@pytest.mark.parametrize(
    ("template", "eos", "expected"),
    [
        (ct.SMOLLM2, "<|im_end|>", ("<|im_end|>", "<|im_start|>")),
        (ct.QWEN25, "<|endoftext|>", ("<|im_end|>", "<|im_start|>", "<|endoftext|>")),
        (ct.LLAMA31, "<|eot_id|>", ("<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>")),
        (ct.LLAMA3, "<|end_of_text|>", ("<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|end_of_text|>")),
        (ct.LLAMA2, "</s>", ("[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "</s>")),
        (ct.MISTRAL, "</s>", ("[INST]", "[/INST]", "</s>")),
    ],
)
def test_stop_tokens_cover_end_of_turn_and_eos(template: str, eos: str, expected: tuple[str, ...]) -> None:
    assert stop_tokens(template, eos) == expected
    assert detect_family(template) in ("chatml", "llama3", "inst")


def test_tokenizer_info_reads_a_saved_tokenizer_folder(tokenizer: Any, tmp_path: Path) -> None:
    tokenizer.save_pretrained(tmp_path)
    info = TokenizerInfo.from_folder(tmp_path)
    assert info.chat_template == tokenizer.chat_template
    assert (info.bos_token, info.eos_token) == ("<|im_start|>", "<|im_end|>")
    (tmp_path / "chat_template.jinja").unlink()
    with pytest.raises(ChatTemplateError, match="no chat template"):
        TokenizerInfo.from_folder(tmp_path)


@pytest.mark.slow
def test_real_smollm2_template_renders_what_its_tokenizer_renders() -> None:
    from transformers import AutoTokenizer

    from equitune.train.base_model import embedded_gguf_path

    path = embedded_gguf_path()
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    converted = convert_chat_template(TokenizerInfo.from_tokenizer(tok))
    assert converted.default_system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert converted.stop == ("<|im_end|>", "<|im_start|>")
    for name, messages in CONVERSATIONS.items():
        assert _ollama_text(converted.template, "", messages, None) == _training_text(tok, messages), name
    chat = [USER, ANSWER, FOLLOW_UP]
    trained = _training_text(tok, [{"role": "system", "content": SERVING_SYSTEM_PROMPT}, *chat])
    assert _ollama_text(converted.template, "", chat, SERVING_SYSTEM_PROMPT) == trained


# ---------------------------------------------------------------------------------------- the Modelfile


def _spec(**overrides: Any) -> ModelfileSpec:
    converted = convert_chat_template(TokenizerInfo(ct.SMOLLM2, "<|im_start|>", "<|im_end|>"))
    values: dict[str, Any] = dict(
        from_="./equity_research_llama.gguf",
        template=converted.template,
        stop=converted.stop,
        license="apache-2.0",
        header="equity_research_llama v1: SmolLM2-135M-Instruct + LoRA",
    )
    values.update(overrides)
    return ModelfileSpec(**values)


def test_rendered_modelfile_has_every_instruction_in_ollama_syntax() -> None:
    text = render_modelfile(_spec())
    lines = text.splitlines()
    assert lines[0] == "# equity_research_llama v1: SmolLM2-135M-Instruct + LoRA"
    assert "FROM ./equity_research_llama.gguf" in lines
    assert 'PARAMETER stop "<|im_end|>"' in lines and 'PARAMETER stop "<|im_start|>"' in lines
    for expected in ("num_ctx 4096", "temperature 0.2", "top_p 0.9", "top_k 40", "repeat_penalty 1.1"):
        assert f"PARAMETER {expected}" in lines
    assert "PARAMETER num_predict 1024" in lines
    assert f'SYSTEM """{SYSTEM_PROMPT}"""' in text
    assert 'LICENSE """apache-2.0"""' in text
    assert text.count('TEMPLATE """') == 1 and text.endswith("\n")


def test_system_prompt_is_the_training_one_with_the_disclaimer_rule() -> None:
    assert SERVING_SYSTEM_PROMPT == SYSTEM_PROMPT
    assert "equity research analyst" in SERVING_SYSTEM_PROMPT
    assert "not investment advice" in SERVING_SYSTEM_PROMPT


def test_round_trip_through_ollamas_parsing_rules() -> None:
    spec = _spec(adapter="./adapter with space.gguf", sampling=SamplingDefaults(temperature=0.0, num_predict=-1))
    parsed = parse_modelfile(render_modelfile(spec))
    assert parsed.from_ == spec.from_
    assert parsed.adapter == "./adapter with space.gguf"
    assert parsed.template == spec.template
    assert parsed.system == spec.system
    assert parsed.licenses == ("apache-2.0",)
    assert parsed.parameters == spec.parameters()
    assert parsed.parameters["stop"] == ["<|im_end|>", "<|im_start|>"]
    assert isinstance(parsed.parameters["top_k"], int) and isinstance(parsed.parameters["temperature"], float)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_template_survives_the_modelfile(family: str) -> None:
    template, bos, eos, _ = FAMILIES[family]
    spec = build_modelfile_spec(TokenizerInfo(template, bos, eos), from_="./model.gguf")
    parsed = parse_modelfile(render_modelfile(spec))
    assert parsed.template == spec.template and parsed.parameters["stop"] == list(spec.stop)


@pytest.mark.parametrize(
    "value",
    ["plain", "with space", " leading", "trailing ", '"starts quoted', 'ends "quoted"', '""two', '"', "", "a\tb"],
)
def test_single_line_values_read_back_exactly(value: str) -> None:
    stop = quote_value("stop", value or "x", quoted=True)
    parsed = parse_modelfile(f"FROM base\nSYSTEM {quote_value('SYSTEM', value)}\nPARAMETER stop {stop}\n")
    assert parsed.system == value
    assert parsed.parameters["stop"] == [value or "x"]


@pytest.mark.parametrize("value", ["two\nlines", "\nleading newline\n", 'a "quote" inside\nand more', 'ends with "'])
def test_multi_line_values_read_back_exactly(value: str) -> None:
    parsed = parse_modelfile(f"FROM base\nTEMPLATE {quote_value('TEMPLATE', value, multiline=True)}\n")
    assert parsed.template == value


def test_values_ollama_cannot_carry_are_refused() -> None:
    with pytest.raises(ModelfileError, match='SYSTEM: the value contains """'):
        render_modelfile(_spec(system='say """hi"""'))
    with pytest.raises(ModelfileError, match="unprintable"):
        render_modelfile(_spec(license="MIT\x00"))
    with pytest.raises(ModelfileError, match="FROM: a path cannot span lines"):
        render_modelfile(_spec(from_="a\nb"))
    with pytest.raises(ModelfileError, match="FROM"):
        render_modelfile(_spec(from_=" "))


def test_parameters_are_validated_against_the_documented_list() -> None:
    with pytest.raises(ModelfileError, match="PARAMETER top_k: expects int, got float"):
        render_modelfile(_spec(sampling=SamplingDefaults(top_k=40.5)))  # type: ignore[arg-type]
    with pytest.raises(ModelfileError, match="PARAMETER num_ctx: expects int, got bool"):
        render_modelfile(_spec(num_ctx=True))
    with pytest.raises(ModelfileError, match="empty stop"):
        render_modelfile(_spec(stop=("",)))
    assert set(_spec().parameters()) <= set(DOCUMENTED_PARAMETERS)


def test_a_template_ollama_would_reject_is_refused_when_written() -> None:
    with pytest.raises(ModelfileError, match="TEMPLATE: Ollama would refuse it .*unexpected EOF"):
        render_modelfile(_spec(template="{{ if .System }}unclosed"))


def test_parser_follows_ollama_rules() -> None:
    text = (
        "# comment\n"
        "from llama3.1:8b\n"
        "parameter temperature 0.7\n"
        'PARAMETER stop "<|eot_id|>"\n'
        "PARAMETER stop <|start_header_id|>\n"
        "PARAMETER mirostat 1\n"  # deprecated: ignored
        "SYSTEM You are Mario from super mario bros.\n"
        'MESSAGE user "Hi there"\n'
        'LICENSE """line one\nline two"""\n'
        "LICENSE MIT\n"
    )
    parsed = parse_modelfile(text)
    assert parsed.from_ == "llama3.1:8b"
    assert parsed.parameters == {"temperature": 0.7, "stop": ["<|eot_id|>", "<|start_header_id|>"]}
    assert parsed.system == "You are Mario from super mario bros."
    assert parsed.messages == (("user", "Hi there"),)
    assert parsed.licenses == ("line one\nline two", "MIT")
    assert parse_commands("FROM x\r\nSYSTEM s\r\n") == [("model", "x"), ("system", "s")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM x\nINSTRUCTION y\n", '(line 2): command must be one of "from", "license"'),
        ("SYSTEM hello\n", "no FROM line"),
        ('FROM x\nTEMPLATE """never closed\n', "unexpected EOF"),
        ("FROM x\nPARAMETER temperature hot\n", "invalid float value [hot]"),
        ("FROM x\nPARAMETER num_ctx 4096.5\n", "invalid int value [4096.5]"),
        ("FROM x\nPARAMETER flash 1\n", "unknown parameter 'flash'"),
        ("FROM x\nMESSAGE robot hi\n", "message role must be one of"),
    ],
)
def test_parser_errors_are_ollamas(text: str, message: str) -> None:
    with pytest.raises(ModelfileError) as info:
        parse_modelfile(text)
    assert message in str(info.value)


def test_spec_from_the_adapter_tokenizer_is_written_atomically(tokenizer: Any, tmp_path: Path) -> None:
    adapter = tmp_path / "finetuned_models" / "equity_research_llama" / "adapter"
    tokenizer.save_pretrained(adapter)
    spec = build_modelfile_spec(TokenizerInfo.from_folder(adapter), from_="./model.gguf", license="apache-2.0")
    path = write_modelfile(spec, adapter.parent)
    assert path == adapter.parent / "Modelfile"
    assert [p.name for p in adapter.parent.iterdir() if p.name.startswith(".")] == []  # no temporary left
    parsed = parse_modelfile(path.read_text(encoding="utf-8"))
    # what Ollama will send for a user's question equals what training rendered with the system turn
    chat = [USER]
    sent = render_ollama(parsed.template or "", chat, modelfile_system=parsed.system)
    assert sent == _training_text(tokenizer, [{"role": "system", "content": SYSTEM_PROMPT}, *chat])
    assert parsed.parameters["stop"] == ["<|im_end|>", "<|im_start|>"]
