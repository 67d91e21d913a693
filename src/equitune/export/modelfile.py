"""The Ollama Modelfile of a fine-tuned model: its chat TEMPLATE (the Go equivalent of the Jinja chat template
the model was trained with), stop tokens, sampling defaults, SYSTEM prompt and LICENSE; written and read back
by Ollama's own rules.

The Go template is built per template family (ChatML, Llama 3, ``[INST]``), with the literal pieces that differ
between models (a default system message, Llama 3.1's date preamble, spacing around ``[/INST]``, where Mistral
or Llama 2 put the system message) read off renderings of the Jinja template, and then checked: for several
conversations the Jinja rendering (what training saw) and the Go rendering (what Ollama will send, see
``gotemplate.render_ollama``) must be the same text, or conversion fails.

One difference is deliberate: a Jinja template that starts with ``bos_token`` renders it, while the Go template
does not, because llama.cpp adds the BOS itself when the GGUF says ``add_bos_token``. Go templates cannot trim
strings, so Llama templates' ``| trim`` is equivalent only for message contents without surrounding whitespace
(equitune's training data has none).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from equitune.data.schema import SYSTEM_PROMPT
from equitune.errors import EquituneError
from equitune.export import gotemplate
from equitune.io import atomic_write_text

ChatFamily = Literal["chatml", "llama3", "inst"]
FAMILY_NAMES: dict[ChatFamily, str] = {
    "chatml": "ChatML (<|im_start|> ... <|im_end|>: SmolLM2, Qwen2.5)",
    "llama3": "Llama 3 / 3.1 (<|start_header_id|> ... <|eot_id|>)",
    "inst": "Llama 2 / Mistral ([INST] ... [/INST])",
}
_FAMILY_MARKERS: tuple[tuple[ChatFamily, str], ...] = (
    ("chatml", "<|im_start|>"),
    ("llama3", "<|start_header_id|>"),
    ("inst", "[INST]"),
)
# Tokens that end (or start another) turn, per family, as Ollama's own Modelfiles list them.
_FAMILY_STOPS: dict[ChatFamily, tuple[str, ...]] = {
    "chatml": ("<|im_end|>", "<|im_start|>"),
    "llama3": ("<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"),
    "inst": ("[INST]", "[/INST]"),
}

# The system prompt the model is served with: the very words it was trained with.
SERVING_SYSTEM_PROMPT = SYSTEM_PROMPT

# Modelfile PARAMETERs as documented (docs/modelfile.md, "Valid Parameters and Values"), with their types.
DOCUMENTED_PARAMETERS: dict[str, type] = {
    "num_ctx": int,
    "repeat_last_n": int,
    "repeat_penalty": float,
    "temperature": float,
    "seed": int,
    "stop": str,
    "num_predict": int,
    "top_k": int,
    "top_p": float,
    "min_p": float,
}
# What Ollama's parser accepts besides (api.Options and api.Runner fields); used when reading a Modelfile.
_OTHER_OLLAMA_PARAMETERS: dict[str, type] = {
    "num_batch": int,
    "num_gpu": int,
    "main_gpu": int,
    "use_mmap": bool,
    "num_thread": int,
    "num_keep": int,
    "typical_p": float,
    "presence_penalty": float,
    "frequency_penalty": float,
}
_DEPRECATED_PARAMETERS = (
    "penalize_newline",
    "low_vram",
    "f16_kv",
    "logits_all",
    "vocab_only",
    "use_mlock",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
)
_COMMANDS = (
    "from",
    "license",
    "template",
    "system",
    "adapter",
    "renderer",
    "parser",
    "parameter",
    "message",
    "requires",
)

ParameterValue = int | float | str | bool


class ModelfileError(EquituneError):
    """A Modelfile value or line breaks Ollama's rules; the message names the instruction (or line) and rule."""


class ChatTemplateError(EquituneError):
    """A chat template cannot be turned into an equivalent Ollama template; the message says why."""


# ------------------------------------------------------------------------------------------- tokenizer info


@dataclass(frozen=True)
class TokenizerInfo:
    """What the Modelfile needs from a Hugging Face tokenizer: its chat template and special tokens."""

    chat_template: str
    bos_token: str | None = None
    eos_token: str | None = None
    special_tokens: Mapping[str, str] = field(default_factory=dict)  # other *_token values the template may use

    def template_variables(self) -> dict[str, str]:
        """The special-token variables transformers passes to the Jinja template."""
        out = {k: v for k, v in self.special_tokens.items() if isinstance(v, str)}
        if self.bos_token is not None:
            out["bos_token"] = self.bos_token
        if self.eos_token is not None:
            out["eos_token"] = self.eos_token
        return out

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> TokenizerInfo:
        """From a loaded transformers tokenizer."""
        template = tokenizer.chat_template
        if not isinstance(template, str) or not template:
            raise ChatTemplateError("The tokenizer has no chat template; the Modelfile TEMPLATE is made from it.")
        specials = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
        return cls(template, tokenizer.bos_token, tokenizer.eos_token, specials)

    @classmethod
    def from_folder(cls, folder: str | Path) -> TokenizerInfo:
        """From a saved tokenizer (``chat_template.jinja`` or ``tokenizer_config.json``), without transformers."""
        root = Path(folder)
        config_file = root / "tokenizer_config.json"
        config: dict[str, Any] = {}
        if config_file.is_file():
            config = json.loads(config_file.read_text(encoding="utf-8"))
        template: Any = None
        if (root / "chat_template.jinja").is_file():
            template = (root / "chat_template.jinja").read_text(encoding="utf-8")
        elif (root / "chat_template.json").is_file():
            template = json.loads((root / "chat_template.json").read_text(encoding="utf-8")).get("chat_template")
        else:
            template = config.get("chat_template")
        if isinstance(template, list):  # named templates: [{"name": "default", "template": "..."}]
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        if not isinstance(template, str) or not template:
            raise ChatTemplateError(f"{root}: no chat template (chat_template.jinja or tokenizer_config.json)")
        specials_file = root / "special_tokens_map.json"
        specials_map = json.loads(specials_file.read_text(encoding="utf-8")) if specials_file.is_file() else {}
        merged = {**specials_map, **config}
        specials = {k: _token_text(v) for k, v in merged.items() if k.endswith("_token")}
        tokens = {k: v for k, v in specials.items() if v is not None}
        return cls(template, tokens.get("bos_token"), tokens.get("eos_token"), tokens)


def _token_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


# ------------------------------------------------------------------------------------------- Jinja side


def render_chat_template(
    chat_template: str,
    messages: Sequence[Mapping[str, str]],
    variables: Mapping[str, str] | None = None,
    add_generation_prompt: bool = True,
) -> str:
    """Render a Hugging Face chat template as ``tokenizer.apply_chat_template(..., tokenize=False)`` does
    (same sandboxed Jinja environment, ``raise_exception``, ``tojson`` and special-token variables)."""
    try:
        import jinja2
        from jinja2.ext import Extension
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise ChatTemplateError("Rendering a chat template needs jinja2: pip install 'equitune[train]'") from None

    class _Generation(Extension):
        """``{% generation %}...{% endgeneration %}`` only marks assistant text for transformers; render the body."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.Scope(body).set_lineno(lineno)

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, **kw: Any) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, **kw)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, "jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    try:
        compiled = env.from_string(chat_template)
        return compiled.render(
            messages=[dict(m) for m in messages],
            tools=None,
            documents=None,
            add_generation_prompt=add_generation_prompt,
            **(variables or {}),
        )
    except jinja2.exceptions.TemplateError as exc:
        raise ChatTemplateError(f"The chat template failed: {exc}") from exc


# ------------------------------------------------------------------------------------------- conversion


@dataclass(frozen=True)
class OllamaChatTemplate:
    """A chat template converted for Ollama."""

    family: ChatFamily
    template: str  # the Go template for TEMPLATE
    stop: tuple[str, ...]  # one PARAMETER stop each
    leading_bos: str  # the BOS the Jinja template writes first and llama.cpp adds itself ("" when none)
    default_system: str | None  # what the template inserts when a conversation has no system message


def detect_family(chat_template: str) -> ChatFamily:
    """The template family, from the markers the Jinja template writes; an unknown one is an error."""
    for family, marker in _FAMILY_MARKERS:
        if marker in chat_template:
            return family
    supported = "; ".join(FAMILY_NAMES.values())
    raise ChatTemplateError(f"Unsupported chat template (none of its markers found). Supported families: {supported}.")


def stop_tokens(chat_template: str, eos_token: str | None = None) -> tuple[str, ...]:
    """Every string that ends the assistant's turn for this template: the family's end-of-turn (and turn-start)
    tokens, Llama 2's ``<<SYS>>`` markers when used, and the tokenizer's eos; no duplicates."""
    family = detect_family(chat_template)
    out = list(_FAMILY_STOPS[family])
    if family == "inst" and "<<SYS>>" in chat_template:
        out += ["<<SYS>>", "<</SYS>>"]
    if eos_token:
        out.append(eos_token)
    return tuple(dict.fromkeys(out))


_PROBE_SYSTEM = "PROBE-SYSTEM-4f1c"
_PROBE_USER = ("PROBE-USER-one-4f1c", "PROBE-USER-two-4f1c", "PROBE-USER-three-4f1c")
_PROBE_ASSISTANT = ("PROBE-ASSISTANT-one-4f1c", "PROBE-ASSISTANT-two-4f1c")

# Conversations the conversion must render identically (contents as in real use: multi-line, markdown, braces).
CHECK_CONVERSATIONS: tuple[tuple[Mapping[str, str], ...], ...] = (
    ({"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "Rate AAPL.\n\nDATA\nprice: 210"}),
    ({"role": "user", "content": "What is the WACC of JNJ?"},),
    (
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Summarise KO's valuation: {{ .Prompt }} $ {% raw %}"},
        {"role": "assistant", "content": "## KO\n- P/E 22x\n- DCF value 61\n\nNot investment advice."},
        {"role": "user", "content": "And the risks?"},
    ),
    (
        {"role": "user", "content": "Rate MSFT."},
        {"role": "assistant", "content": 'MSFT: Hold. "Target" 420, upside 3%.'},
        {"role": "user", "content": "Why?"},
        {"role": "assistant", "content": "Valuation | Growth\n--- | ---\nfull | slowing"},
        {"role": "user", "content": "Thanks. Ünïcode: €, 株"},
    ),
)


def convert_chat_template(info: TokenizerInfo) -> OllamaChatTemplate:
    """The Ollama TEMPLATE (and stop tokens) equivalent to ``info.chat_template``, checked on
    ``CHECK_CONVERSATIONS``; ``ChatTemplateError`` when the family is unknown or the renderings differ."""
    family = detect_family(info.chat_template)
    probe = _Probe(info)
    if family == "chatml":
        template, default_system = _chatml(probe)
    elif family == "llama3":
        template, default_system = _llama3(probe)
    else:
        template, default_system = _inst(probe)
    converted = OllamaChatTemplate(
        family=family,
        template=template,
        stop=stop_tokens(info.chat_template, info.eos_token),
        leading_bos=probe.bos if probe.writes_bos else "",
        default_system=default_system,
    )
    check_equivalence(info, converted)
    return converted


def ollama_template(chat_template: str, bos_token: str | None = None, eos_token: str | None = None) -> str:
    """The Go template for the Modelfile's TEMPLATE, equivalent to the Jinja ``chat_template`` of a tokenizer
    with these special tokens (see ``convert_chat_template``, which also gives the stop tokens)."""
    return convert_chat_template(TokenizerInfo(chat_template, bos_token, eos_token)).template


def check_equivalence(
    info: TokenizerInfo,
    converted: OllamaChatTemplate,
    conversations: Sequence[Sequence[Mapping[str, str]]] = CHECK_CONVERSATIONS,
) -> None:
    """Raise ``ChatTemplateError`` unless, for every conversation, the Jinja rendering equals the BOS llama.cpp
    adds followed by the prompt Ollama renders from ``converted.template``."""
    variables = info.template_variables()
    for messages in conversations:
        expected = render_chat_template(info.chat_template, messages, variables)
        got = converted.leading_bos + gotemplate.render_ollama(converted.template, messages)
        if got != expected:
            at = next(
                (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), min(len(got), len(expected))
            )
            raise ChatTemplateError(
                f"The Ollama template for this {FAMILY_NAMES[converted.family]} chat template renders differently "
                f"from it at character {at}: Jinja {expected[max(0, at - 30) : at + 30]!r} vs Ollama "
                f"{got[max(0, at - 30) : at + 30]!r}"
            )


class _Probe:
    """Renders the Jinja template on probe conversations, without the leading BOS llama.cpp adds."""

    def __init__(self, info: TokenizerInfo) -> None:
        self.info = info
        self.variables = info.template_variables()
        self.bos = info.bos_token or ""
        self.writes_bos = bool(self.bos) and re.search(r"\bbos_token\b", info.chat_template) is not None

    def render(self, messages: Sequence[Mapping[str, str]], generation_prompt: bool = True) -> str:
        text = render_chat_template(self.info.chat_template, messages, self.variables, generation_prompt)
        if self.writes_bos:
            if not text.startswith(self.bos):
                raise ChatTemplateError("The chat template uses bos_token but does not start with it.")
            text = text[len(self.bos) :]
        return text

    def generation_prompt(self, messages: Sequence[Mapping[str, str]]) -> str:
        with_prompt, without = self.render(messages), self.render(messages, generation_prompt=False)
        if not with_prompt.startswith(without):
            raise ChatTemplateError("The chat template's generation prompt is not appended at the end.")
        return with_prompt[len(without) :]


def _user(i: int) -> dict[str, str]:
    return {"role": "user", "content": _PROBE_USER[i]}


def _assistant(i: int) -> dict[str, str]:
    return {"role": "assistant", "content": _PROBE_ASSISTANT[i]}


_SYSTEM = {"role": "system", "content": _PROBE_SYSTEM}


def _literal(text: str) -> str:
    """Template text that renders as ``text`` (a literal ``{{`` would open an action)."""
    return text.replace("{{", '{{ "{{" }}')


def _cut(text: str, part: str, what: str) -> tuple[str, str]:
    if part not in text:
        raise ChatTemplateError(f"The chat template does not render {what} as expected.")
    before, _, after = text.partition(part)
    return before, after


def _chatml(probe: _Probe) -> tuple[str, str | None]:
    user_block = f"<|im_start|>user\n{_PROBE_USER[0]}<|im_end|>\n"
    default_block, _ = _cut(probe.render([_user(0)]), user_block, "a ChatML user turn")
    default_system: str | None = None
    if default_block:
        match = re.fullmatch(r"<\|im_start\|>system\n(.*)<\|im_end\|>\n", default_block, re.DOTALL)
        if match is None:
            raise ChatTemplateError(f"Unexpected text before the first ChatML turn: {default_block!r}")
        default_system = match.group(1)
    generation = probe.generation_prompt([_user(0)])
    default = ""
    if default_system is not None:
        default = '{{ if and (eq $i 0) (ne .Role "system") }}' + _literal(default_block) + "{{ end }}"
    template = (
        "{{- range $i, $_ := .Messages }}"
        + default
        + "<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
        + _literal(generation)
    )
    return template, default_system


def _llama3(probe: _Probe) -> tuple[str, str | None]:
    def header(role: str) -> str:
        return f"<|start_header_id|>{role}<|end_header_id|>\n\n"

    user_block = f"{header('user')}{_PROBE_USER[0]}<|eot_id|>"
    default_block, _ = _cut(probe.render([_user(0)]), user_block, "a Llama 3 user turn")
    system_block, _ = _cut(probe.render([_SYSTEM, _user(0)]), user_block, "a Llama 3 user turn after a system one")
    if not system_block.startswith(header("system")) or not system_block.endswith(f"{_PROBE_SYSTEM}<|eot_id|>"):
        raise ChatTemplateError(f"Unexpected Llama 3 system turn: {system_block!r}")
    preamble = system_block[len(header("system")) : -len(f"{_PROBE_SYSTEM}<|eot_id|>")]
    if default_block not in ("", f"{header('system')}{preamble}<|eot_id|>"):
        raise ChatTemplateError(f"Unexpected text before the first Llama 3 turn: {default_block!r}")
    generation = probe.generation_prompt([_user(0)])
    default = ""
    if default_block:
        default = '{{ if and (eq $i 0) (ne .Role "system") }}' + _literal(default_block) + "{{ end }}"
    first_system = ""
    if preamble:
        first_system = '{{ if and (eq $i 0) (eq .Role "system") }}' + _literal(preamble) + "{{ end }}"
    template = (
        "{{- range $i, $_ := .Messages }}"
        + default
        + "<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
        + first_system
        + "{{ .Content }}<|eot_id|>{{ end }}"
        + _literal(generation)
    )
    return template, preamble if default_block else None


def _inst(probe: _Probe) -> tuple[str, str | None]:
    one = probe.render([_user(0)], generation_prompt=False)
    user_open, user_close = _cut(one, _PROBE_USER[0], "an [INST] user turn")
    two = probe.render([_user(0), _assistant(0), _user(1)], generation_prompt=False)
    if not two.startswith(one):
        raise ChatTemplateError("The chat template renders the first [INST] turn differently in a longer chat.")
    assistant_open, rest = _cut(two[len(one) :], _PROBE_ASSISTANT[0], "an assistant turn")
    between, _ = _cut(rest, user_open + _PROBE_USER[1], "a second [INST] user turn")
    bos_between = ""
    if probe.writes_bos and between.endswith(probe.bos):
        between, bos_between = between[: -len(probe.bos)], probe.bos
    assistant_close = between
    try:
        three = probe.render([_SYSTEM, _user(0), _assistant(0), _user(1)], generation_prompt=False)
    except ChatTemplateError as exc:
        raise ChatTemplateError(
            f"The chat template does not accept a system message ({exc}); equitune serves with one."
        ) from exc
    s_at, a_at = three.find(_PROBE_SYSTEM), three.find(_PROBE_ASSISTANT[0])
    if s_at < 0 or a_at < 0:
        raise ChatTemplateError("The chat template drops the system message.")
    placement: Literal["first", "last"] = "first" if s_at < a_at else "last"
    block_start = three.rfind(user_open, 0, s_at)
    if block_start < 0:
        raise ChatTemplateError("The chat template puts the system message outside an [INST] turn.")
    system_prefix = three[block_start + len(user_open) : s_at]
    next_user = _PROBE_USER[0 if placement == "first" else 1]
    system_suffix, _ = _cut(three[s_at + len(_PROBE_SYSTEM) :], next_user, "the user turn after the system message")
    generation = probe.generation_prompt([_user(0)])
    # with a system message it is .Messages[0], so the first user turn is $i 1; Mistral uses the last user turn
    where = "(eq $i 1)" if placement == "first" else "(eq (len (slice $.Messages $i)) 1)"
    bos = ""
    if bos_between:
        bos = "{{ if or (gt $i 1) (and (eq $i 1) (not $.System)) }}" + _literal(bos_between) + "{{ end }}"
    template = (
        '{{- range $i, $_ := .Messages }}{{ if eq .Role "user" }}'
        + bos
        + _literal(user_open)
        + f"{{{{ if and $.System {where} }}}}"
        + _literal(system_prefix)
        + "{{ $.System }}"
        + _literal(system_suffix)
        + "{{ end }}{{ .Content }}"
        + _literal(user_close)
        + '{{ else if eq .Role "assistant" }}'
        + _literal(assistant_open)
        + "{{ .Content }}"
        + _literal(assistant_close)
        + "{{ end }}{{ end }}"
        + _literal(generation)
    )
    return template, None


# ------------------------------------------------------------------------------------------- the Modelfile


@dataclass(frozen=True)
class SamplingDefaults:
    """Decoding defaults stored in the model (a request's ``options`` override them). Low temperature: answers
    are about figures and must not wander."""

    temperature: float = 0.2
    top_p: float = 0.9
    top_k: int = 40
    repeat_penalty: float = 1.1
    num_predict: int = 1024


@dataclass(frozen=True)
class ModelfileSpec:
    """Everything a Modelfile says. ``from_`` is a GGUF path relative to the Modelfile (``./model.gguf``) or an
    Ollama model name; ``adapter`` a GGUF LoRA adapter path applied to it."""

    from_: str
    template: str
    stop: tuple[str, ...] = ()
    system: str = SERVING_SYSTEM_PROMPT
    adapter: str | None = None
    num_ctx: int | None = 4096
    sampling: SamplingDefaults = SamplingDefaults()
    license: str | None = None
    header: str | None = None  # a comment written at the top

    def parameters(self) -> dict[str, Any]:
        """The PARAMETERs as the create API takes them (``stop`` a list), validated."""
        params: dict[str, Any] = {}
        if self.stop:
            params["stop"] = list(self.stop)
        if self.num_ctx is not None:
            params["num_ctx"] = self.num_ctx
        for name in ("temperature", "top_p", "top_k", "repeat_penalty", "num_predict"):
            params[name] = getattr(self.sampling, name)
        for name, value in params.items():
            for item in value if isinstance(value, list) else [value]:
                validate_parameter(name, item)
        return params


def validate_parameter(name: str, value: ParameterValue) -> None:
    """A documented Modelfile parameter with a value of its type, else ``ModelfileError``."""
    kind = DOCUMENTED_PARAMETERS.get(name)
    if kind is None:
        valid = ", ".join(sorted(DOCUMENTED_PARAMETERS))
        raise ModelfileError(f"PARAMETER {name}: not a documented Ollama parameter (valid: {valid})")
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise ModelfileError(f"PARAMETER {name}: expects {kind.__name__}, got {type(value).__name__} {value!r}")
    if name == "stop" and not value:
        raise ModelfileError("PARAMETER stop: an empty stop sequence would stop every generation at once")


def _check_value(instruction: str, value: str) -> None:
    if '"""' in value:
        raise ModelfileError(f'{instruction}: the value contains """, which a Modelfile cannot quote')
    bad = sorted({c for c in value if not c.isprintable() and c not in "\n\t"})
    if bad:
        raise ModelfileError(f"{instruction}: the value contains unprintable characters {bad!r}, which Ollama drops")


def quote_value(instruction: str, value: str, multiline: bool = False, quoted: bool = False) -> str:
    """A value as Ollama's parser reads it back exactly: bare when safe, ``"..."`` when it has spaces or starts
    with a quote (or ``quoted``), triple-quoted when it spans lines (or ``multiline``)."""
    _check_value(instruction, value)
    if multiline or "\n" in value or value.startswith('""') or value == '"':
        return f'"""{value}"""'
    if quoted or not value or value != value.strip() or " " in value or "\t" in value or value.startswith('"'):
        return f'"{value}"'
    return value


def _format_number(value: ParameterValue) -> str:
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value)


def render_modelfile(spec: ModelfileSpec) -> str:
    """The Modelfile text: FROM, ADAPTER, TEMPLATE, PARAMETERs, SYSTEM, LICENSE."""
    if not spec.from_.strip():
        raise ModelfileError("FROM: a model name or GGUF path is required")
    for name, value in (("FROM", spec.from_), ("ADAPTER", spec.adapter)):
        if value is not None and "\n" in value:
            raise ModelfileError(f"{name}: a path cannot span lines")
    try:
        gotemplate.parse(spec.template)
    except gotemplate.TemplateError as exc:
        raise ModelfileError(f"TEMPLATE: Ollama would refuse it (template error: {exc})") from exc
    lines: list[str] = []
    if spec.header:
        lines += [f"# {line}".rstrip() for line in spec.header.splitlines()] + [""]
    lines.append(f"FROM {quote_value('FROM', spec.from_)}")
    if spec.adapter:
        lines.append(f"ADAPTER {quote_value('ADAPTER', spec.adapter)}")
    lines.append(f"TEMPLATE {quote_value('TEMPLATE', spec.template, multiline=True)}")
    for name, value in spec.parameters().items():
        for item in value if isinstance(value, list) else [value]:
            text = quote_value(f"PARAMETER {name}", item, quoted=True) if name == "stop" else _format_number(item)
            lines.append(f"PARAMETER {name} {text}")
    if spec.system:
        lines.append(f"SYSTEM {quote_value('SYSTEM', spec.system, multiline=True)}")
    if spec.license:
        lines.append(f"LICENSE {quote_value('LICENSE', spec.license, multiline=True)}")
    return "\n".join(lines) + "\n"


def write_modelfile(spec: ModelfileSpec, path: str | Path) -> Path:
    """Render ``spec`` and write it atomically to ``path`` (a folder gets ``Modelfile`` inside)."""
    target = Path(path)
    if target.is_dir():
        target = target / "Modelfile"
    return atomic_write_text(target, render_modelfile(spec))


def build_modelfile_spec(
    tokenizer: TokenizerInfo,
    from_: str,
    adapter: str | None = None,
    license: str | None = None,
    num_ctx: int | None = 4096,
    sampling: SamplingDefaults | None = None,
    system: str = SERVING_SYSTEM_PROMPT,
    header: str | None = None,
) -> ModelfileSpec:
    """The spec for a fine-tuned model: template and stop tokens converted (and checked) from its tokenizer."""
    converted = convert_chat_template(tokenizer)
    return ModelfileSpec(
        from_=from_,
        template=converted.template,
        stop=converted.stop,
        system=system,
        adapter=adapter,
        num_ctx=num_ctx,
        sampling=sampling or SamplingDefaults(),
        license=license,
        header=header,
    )


# ------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ParsedModelfile:
    """A Modelfile read by Ollama's rules: its commands in order, and what ``ollama create`` makes of them."""

    commands: tuple[tuple[str, str], ...]  # (name, args) as Ollama's parser yields them; FROM is "model"
    from_: str
    adapter: str | None
    template: str | None
    system: str | None
    licenses: tuple[str, ...]
    parameters: dict[str, Any]  # typed like Ollama's FormatParams; stop is a list
    messages: tuple[tuple[str, str], ...]


_NIL, _NAME, _VALUE, _PARAMETER, _MESSAGE, _COMMENT = range(6)


def _unquote(s: str) -> tuple[str, bool]:
    if s[:3] == '"""':
        if len(s) >= 6 and s[-3:] == '"""':
            return s[3:-3], True
        return "", False
    if s[:1] == '"':
        if len(s) >= 2 and s[-1] == '"':
            return s[1:-1], True
        return "", False
    return s, True


def _next_state(r: str, state: int) -> tuple[int, str, str | None]:
    """Ollama's ``parseRuneForState``: (next state, rune to keep or "", error)."""
    space, newline = r in " \t", r in "\r\n"
    if state == _NIL:
        if r == "#":
            return _COMMENT, "", None
        if space or newline:
            return _NIL, "", None
        return _NAME, r, None
    if state == _NAME:
        if r.isascii() and r.isalpha():
            return _NAME, r, None
        if space:
            return _VALUE, "", None
        return _NIL, "", "invalid"
    if state == _VALUE:
        return (_NIL, r, None) if space or newline else (_VALUE, r, None)
    if state == _PARAMETER:
        if r.isascii() and (r.isalnum() or r == "_"):
            return _PARAMETER, r, None
        if space:
            return _VALUE, "", None
        return _NIL, "", "eof"
    if state == _MESSAGE:
        if r.isascii() and r.isalpha():
            return _MESSAGE, r, None
        if space:
            return _VALUE, "", None
        return _NIL, "", "eof"
    return (_NIL, "", None) if newline else (_COMMENT, "", None)


def parse_commands(text: str) -> list[tuple[str, str]]:
    """The (name, args) commands of a Modelfile, by Ollama's ``parser.ParseFile`` state machine."""
    invalid = "command must be one of " + ", ".join(f'"{c}"' for c in _COMMANDS[:-1]) + f', or "{_COMMANDS[-1]}"'
    commands: list[tuple[str, str]] = []
    name, role, state, line = "", "", _NIL, 1
    buf: list[str] = []
    for r in text.removeprefix("\ufeff"):
        if r in "\r\n":
            line += 1
        nxt, keep, error = _next_state(r, state)
        if error == "eof":
            raise ModelfileError(f"unexpected EOF: {''.join(buf)}")
        if error:
            raise ModelfileError(f"(line {line}): {invalid}")
        if nxt != state:
            word = "".join(buf)
            if state == _NAME:
                if word.lower() not in _COMMANDS:
                    raise ModelfileError(f"(line {line}): {invalid}")
                lowered = word.lower()
                if lowered == "from":
                    name = "model"
                elif lowered == "parameter":
                    nxt = _PARAMETER
                elif lowered == "message":
                    nxt, name = _MESSAGE, lowered
                else:
                    name = lowered
            elif state == _PARAMETER:
                name = word
            elif state == _MESSAGE:
                if word not in ("system", "user", "assistant"):
                    raise ModelfileError(f'(line {line}): message role must be one of "system", "user", or "assistant"')
                role = word
            elif state == _VALUE:
                value, ok = _unquote(word.strip())
                if not ok or r in " \t":
                    buf.append(r)
                    continue
                if role:
                    value, role = f"{role}: {value}", ""
                commands.append((name, value))
            buf = []
            state = nxt
        if keep and keep.isprintable():
            buf.append(keep)
    if state == _VALUE:
        value, ok = _unquote("".join(buf).strip())
        if not ok:
            raise ModelfileError("unexpected EOF")
        commands.append((name, f"{role}: {value}" if role else value))
    elif state not in (_NIL, _COMMENT):
        raise ModelfileError("unexpected EOF")
    if not any(n == "model" for n, _ in commands):
        raise ModelfileError("no FROM line")
    return commands


_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf|infinity|nan)", re.IGNORECASE)


def _typed(name: str, raw: str) -> Any:
    kind = DOCUMENTED_PARAMETERS.get(name) or _OTHER_OLLAMA_PARAMETERS.get(name)
    if kind is None:
        raise ModelfileError(f"unknown parameter '{name}'")
    if kind is int:
        if not _INT.fullmatch(raw):
            raise ModelfileError(f"invalid int value [{raw}]")
        return int(raw)
    if kind is float:
        if not _FLOAT.fullmatch(raw):
            raise ModelfileError(f"invalid float value [{raw}]")
        return float(raw)
    if kind is bool:
        if raw not in ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"):
            raise ModelfileError(f"invalid bool value [{raw}]")
        return raw in ("1", "t", "T", "TRUE", "true", "True")
    return raw


def parse_modelfile(text: str) -> ParsedModelfile:
    """Read a Modelfile as ``ollama create`` does: commands, then typed parameters (``stop`` collected into a
    list, deprecated parameters skipped), licenses collected, the last FROM/TEMPLATE/SYSTEM winning."""
    commands = parse_commands(text)
    from_, adapter, template, system = "", None, None, None
    licenses: list[str] = []
    messages: list[tuple[str, str]] = []
    parameters: dict[str, Any] = {}
    for name, args in commands:
        if name == "model":
            from_ = args
        elif name == "adapter":
            adapter = args
        elif name == "template":
            template = args
        elif name == "system":
            system = args
        elif name == "license":
            licenses.append(args)
        elif name == "message":
            role, _, content = args.partition(": ")
            messages.append((role, content))
        elif name in ("renderer", "parser", "requires") or name in _DEPRECATED_PARAMETERS:
            continue
        elif name == "stop":
            parameters.setdefault("stop", []).append(_typed(name, args))
        else:
            parameters[name] = _typed(name, args)
    return ParsedModelfile(
        commands=tuple(commands),
        from_=from_,
        adapter=adapter,
        template=template,
        system=system,
        licenses=tuple(licenses),
        parameters=parameters,
        messages=tuple(messages),
    )
