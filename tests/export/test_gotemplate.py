"""The Go text/template renderer (the subset Ollama templates use) and Ollama's data for it: each case is Go's
documented behaviour, and the unsupported rest is an error rather than a different output."""

from __future__ import annotations

from typing import Any

import pytest

from equitune.export.gotemplate import (
    GoStruct,
    TemplateError,
    TemplateExecError,
    TemplateSyntaxError,
    collate,
    ollama_messages,
    parse,
    render,
    render_ollama,
)

LIST = ["a", "b", "c"]


@pytest.mark.parametrize(
    ("text", "data", "expected"),
    [
        # trim markers eat all spaces, tabs and newlines on their side; "{{-3}}" is the number -3, not a trim
        ("{{ 23 -}} < {{- 45 }}", {}, "23<45"),
        ("a \n\t {{- .X -}} \n b", {"X": "x"}, "axb"),
        ("a {{-3}} b", {}, "a -3 b"),
        ("x {{/* a comment */}} y {{- /* trimmed */ -}} z", {}, "x  yz"),
        # fields: a map without the key prints <no value>; chains; the dot; $ is the data
        ("{{ .A.B }}|{{ .Missing }}|{{ $.A.B }}", {"A": {"B": "deep"}}, "deep|<no value>|deep"),
        ("{{ with .A }}{{ .B }}{{ end }}{{ with .Z }}never{{ else }}-{{ end }}", {"A": {"B": "b"}, "Z": ""}, "b-"),
        ("{{ with .Z }}z{{ else with .A }}{{ .B }}{{ end }}", {"A": {"B": "b"}, "Z": 0}, "b"),
        # if / else if / else on Go truth: empty string, 0, empty list and nil are false
        ('{{ if .E }}1{{ else if eq .S "s" }}2{{ else }}3{{ end }}', {"E": [], "S": "s"}, "2"),
        (
            "{{ if 0 }}t{{ else }}f{{ end }}{{ if .L }}t{{ end }}{{ if .N }}t{{ else }}f{{ end }}",
            {"L": [0], "N": None},
            "ftf",
        ),
        # range: index and element, else on empty/nil, maps in key order, integers, break/continue
        ("{{ range $i, $m := .L }}{{ $i }}={{ $m }};{{ end }}", {"L": LIST}, "0=a;1=b;2=c;"),
        ("{{ range .L }}{{ . }}{{ else }}empty{{ end }}", {"L": []}, "empty"),
        ("{{ range .N }}{{ . }}{{ else }}nil{{ end }}", {"N": None}, "nil"),
        ("{{ range $k, $v := .M }}{{ $k }}{{ $v }}{{ end }}", {"M": {"b": 2, "a": 1}}, "a1b2"),
        ("{{ range 3 }}{{ . }}{{ end }}", {}, "012"),
        (
            '{{ range .L }}{{ if eq . "b" }}{{ continue }}{{ end }}'
            '{{ if eq . "c" }}{{ break }}{{ end }}{{ . }}{{ end }}',
            {"L": LIST + ["d"]},
            "a",
        ),
        # variables: declared, assigned in an inner scope (Go 1.11+), $ inside range
        ('{{ $x := "none" }}{{ range .L }}{{ $x = . }}{{ end }}{{ $x }}', {"L": LIST}, "c"),
        ("{{ range .L }}{{ len $.L }}{{ end }}", {"L": LIST}, "333"),
        # functions: and/or return an operand (short-circuit), not returns a bool, eq with several operands
        ('{{ and 1 0 2 }}|{{ or "" "y" }}|{{ or 0 "" }}|{{ not "" }}', {}, "0|y||true"),
        ('{{ eq .R "user" "assistant" }}|{{ ne .R "user" }}', {"R": "assistant"}, "true|true"),
        ('{{ lt 1 2 }}{{ le 2 2 }}{{ gt "b" "a" }}{{ ge 1 2 }}', {}, "truetruetruefalse"),
        # len counts bytes of a string; slice and index (strings slice by bytes too); pipelines pass the value last
        (
            '{{ len "héllo" }}|{{ len .L }}|{{ slice .L 1 }}|{{ slice .L 1 2 }}|{{ slice "abc" 1 }}',
            {"L": LIST},
            "6|3|[b c]|[b]|bc",
        ),
        (
            '{{ index .L 2 }}|{{ index .M "k" }}|{{ .L | len }}|{{ (index .L 0) }}',
            {"L": LIST, "M": {"k": "v"}},
            "c|v|3|a",
        ),
        ("{{ (index .Messages 0).Role }}", {"Messages": [GoStruct("Message", Role="user")]}, "user"),
        # literals: escapes, raw strings, numbers, booleans
        ('{{ "a\\tb\\n\\u00e9" }}|{{ `raw\\n` }}|{{ 1.5 }}|{{ 0x10 }}|{{ true }}', {}, "a\tb\né|raw\\n|1.5|16|true"),
        ('{{ "{{" }} .X }}', {"X": "x"}, "{{ .X }}"),
    ],
)
def test_go_semantics(text: str, data: dict[str, Any], expected: str) -> None:
    assert render(text, data) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{{ printf "%s" .X }}', "function 'printf' is not supported"),
        ('{{ define "t" }}x{{ end }}', "{{define}} is not supported"),
        ('{{ template "t" }}', "{{template}} is not supported"),
        ("{{ .X 'a' }}", "character constants are not supported"),
        ("{{ if .X }}open", "unexpected EOF"),
        ("{{ end }}", "unexpected {{end}}"),
        ("{{ .X ", "unclosed action"),
        ("{{ (len .X }}", "unclosed left paren"),
        ("{{ break }}", "{{break}} outside {{range}}"),
        ('{{ "open }}', "unterminated quoted string"),
        ("{{ /* not a comment */ }}", "unexpected '/'"),
        ("{{ json .X }}", "function 'json' is not supported"),
        ("{{ range .L }}{{ else if .X }}{{ end }}", "{{else if}} inside {{range}}"),
    ],
)
def test_unsupported_or_invalid_syntax_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(TemplateSyntaxError) as info:
        parse(text)
    assert message in str(info.value)
    assert "line 1" in str(info.value) or message == "unexpected EOF"


@pytest.mark.parametrize(
    ("text", "data", "message"),
    [
        ('{{ eq 1 "1" }}', {}, "incompatible types for comparison"),
        ("{{ lt true false }}", {}, "invalid type for comparison"),
        ("{{ .M.Role.X }}", {"M": {"Role": "user"}}, "can't evaluate field X in type string"),
        ("{{ (index .L 0).Missing }}", {"L": [GoStruct("Message", Role="user")]}, "can't evaluate field Missing"),
        ("{{ .Nothing.Deeper }}", {}, "nil pointer evaluating"),
        ("{{ index .L 3 }}", {"L": LIST}, "index out of range: 3"),
        ("{{ slice .L 2 1 }}", {"L": LIST}, "index out of range"),
        ("{{ len 3 }}", {}, "len of type int"),
        ("{{ .S 1 }}", {"S": "s"}, "can't give argument to non-function .S"),
        ("{{ $undefined }}", {}, "undefined variable: $undefined"),
        ("{{ range .S }}{{ end }}", {"S": "text"}, "range can't iterate over text"),
    ],
)
def test_execution_errors_like_go(text: str, data: dict[str, Any], message: str) -> None:
    with pytest.raises(TemplateExecError) as info:
        render(text, data)
    assert message in str(info.value)


def test_multiline_line_numbers_in_errors() -> None:
    with pytest.raises(TemplateError, match="line 3"):
        parse("a\nb\n{{ printf }}")


def test_identifiers_are_what_ollama_looks_for() -> None:
    template = parse("{{ if .System }}{{ .System }}{{ end }}{{ range $i, $m := .Messages }}{{ $m.Content }}{{ end }}")
    assert template.identifiers() == ["$m", "content", "messages", "system"]
    assert "messages" not in parse("{{ .Prompt }}{{ .Response }}").identifiers()


# ---------------------------------------------------------------------------------------- Ollama's data

CHATML = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"


def test_modelfile_system_is_prepended_only_when_the_chat_has_none() -> None:
    chat = [{"role": "user", "content": "Rate AAPL."}]
    assert render_ollama(CHATML, chat, modelfile_system="Be an analyst.") == (
        "<|im_start|>system\nBe an analyst.<|im_end|>\n<|im_start|>user\nRate AAPL.<|im_end|>\n<|im_start|>assistant\n"
    )
    own = [{"role": "system", "content": "Be brief."}, *chat]
    assert "Be an analyst." not in render_ollama(CHATML, own, modelfile_system="Be an analyst.")
    assert render_ollama(CHATML, chat).startswith("<|im_start|>user\n")


def test_system_variable_joins_every_system_message_and_same_roles_merge() -> None:
    messages = [
        {"role": "system", "content": "S1"},
        {"role": "user", "content": "u1"},
        {"role": "user", "content": "u2"},
        {"role": "system", "content": "S2"},
    ]
    system, merged = collate(messages)
    assert system == "S1\n\nS2"
    assert [m["content"] for m in merged] == ["S1", "u1\n\nu2", "S2"]
    assert render_ollama("{{ .System }}|{{ len .Messages }}|{{ .Prompt }}", messages) == "S1\n\nS2|3|<no value>"


def test_generate_endpoint_uses_the_request_system_else_the_modelfile_one() -> None:
    prompt = [{"role": "user", "content": "p"}]
    assert ollama_messages(prompt, "M", "generate") == [{"role": "system", "content": "M"}, *prompt]
    own = [{"role": "system", "content": "R"}, *prompt]
    assert ollama_messages(own, "M", "generate") == own


LLAMA3_LEGACY = (  # Ollama's llama3 template before .Messages (docs/api.md, /api/show example)
    "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
    "{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>{{ end }}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>"
)


def test_legacy_prompt_response_template_runs_once_per_turn_and_is_cut_after_the_last_response() -> None:
    chat = [
        {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "u2"},
    ]

    def block(role: str, text: str) -> str:
        return f"<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>"

    assert render_ollama(LLAMA3_LEGACY, chat, modelfile_system="S") == (
        block("system", "S")
        + block("user", "u1")
        + block("assistant", "a1")
        + block("user", "u2")
        + "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_legacy_cut_that_go_cannot_do_is_an_error() -> None:
    with pytest.raises(TemplateExecError, match="cannot cut"):
        render_ollama("{{ if .Prompt }}{{ .Response }}{{ else }}x{{ end }}", [{"role": "user", "content": "u"}])


def test_message_fields_are_a_struct_like_ollamas() -> None:
    assert render_ollama(
        "{{ range .Messages }}{{ .Thinking }}[{{ .Role }}]{{ end }}", [{"role": "user", "content": "c"}]
    ) == ("[user]")
    with pytest.raises(TemplateExecError, match="can't evaluate field Name"):
        render_ollama("{{ range .Messages }}{{ .Name }}{{ end }}", [{"role": "user", "content": "c"}])
