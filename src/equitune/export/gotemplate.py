"""A small, faithful renderer of the part of Go's ``text/template`` that Ollama prompt templates use, and the
data Ollama hands such a template, so a Modelfile ``TEMPLATE`` can be rendered here exactly as Ollama would.

Supported: text with ``{{- ... -}}`` whitespace trimming; comments; ``.Field`` chains on the data, on variables
(``$``, ``$m.Role``) and on parenthesised pipelines; ``if`` / ``else if`` / ``else`` / ``end``; ``range`` over
lists, maps and integers with ``$i, $m :=`` declarations, ``else``, ``break`` and ``continue``; ``with``;
variable declaration and assignment; pipelines with ``|``; string (``"..."`` and raw), number, ``true``,
``false`` and ``nil`` literals; the functions ``and`` ``or`` (short-circuit, returning an operand as Go does)
``not`` ``eq`` ``ne`` ``lt`` ``le`` ``gt`` ``ge`` ``len`` ``slice`` ``index``. Anything else (``define``,
``template``, ``block``, ``printf``, method calls, character constants, Ollama's ``json``) is a
``TemplateSyntaxError`` naming what is unsupported, never a silently different output.

Go semantics kept on purpose: ``len`` and ``slice`` count bytes of a string, a missing map key prints
``<no value>``, a missing field of a message is an error, ``eq`` between different kinds is an error.

``render_ollama`` adds Ollama's side (``template/template.go`` ``Execute`` and the chat and generate handlers):
the Modelfile ``SYSTEM`` is prepended when the conversation does not start with a system message, consecutive
messages of one role are merged with a blank line, ``.System`` is every system message joined, and a template
that never mentions ``Messages`` is run once per turn with ``.System``/``.Prompt``/``.Response`` and cut after
``.Response`` for the last turn.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from equitune.errors import EquituneError

NO_VALUE = "<no value>"
_SPACE = " \t\r\n"
SUPPORTED_FUNCTIONS = ("and", "or", "not", "eq", "ne", "lt", "le", "gt", "ge", "len", "slice", "index")


class TemplateError(EquituneError):
    """A Go template could not be parsed or executed; the message says where and why."""


class TemplateSyntaxError(TemplateError):
    """The template text is not valid Go template syntax, or uses a feature this renderer does not support."""


class TemplateExecError(TemplateError):
    """Executing the template failed the way Go's ``text/template`` would fail (bad field, bad comparison...)."""


# ---------------------------------------------------------------------------------------------------- nodes


@dataclass
class Node:
    line: int


@dataclass
class ListNode(Node):
    nodes: list[Node] = field(default_factory=list)


@dataclass
class TextNode(Node):
    text: str = ""


@dataclass
class FieldNode(Node):
    ident: tuple[str, ...] = ()


@dataclass
class VariableNode(Node):
    ident: tuple[str, ...] = ()  # ("$m", "Role"): the variable then its fields


@dataclass
class ChainNode(Node):
    node: Node | None = None
    fields: tuple[str, ...] = ()


@dataclass
class DotNode(Node):
    pass


@dataclass
class IdentifierNode(Node):
    name: str = ""


@dataclass
class LiteralNode(Node):
    value: Any = None  # str, int, float, bool or None (nil)


@dataclass
class CommandNode(Node):
    args: list[Node] = field(default_factory=list)


@dataclass
class PipeNode(Node):
    decl: list[str] = field(default_factory=list)
    is_assign: bool = False
    cmds: list[CommandNode] = field(default_factory=list)


@dataclass
class ActionNode(Node):
    pipe: PipeNode | None = None


@dataclass
class BranchNode(Node):
    kind: Literal["if", "range", "with"] = "if"
    pipe: PipeNode | None = None
    list: ListNode | None = None
    else_list: ListNode | None = None


@dataclass
class BreakNode(Node):
    pass


@dataclass
class ContinueNode(Node):
    pass


class GoStruct:
    """A Go struct value: its fields print and compare like Go's, and a missing field is an error."""

    def __init__(self, type_name: str, **fields: Any) -> None:
        self.type_name = type_name
        self.fields = fields

    def get(self, name: str, line: int) -> Any:
        if name not in self.fields:
            raise TemplateExecError(f"line {line}: can't evaluate field {name} in type {self.type_name}")
        return self.fields[name]

    def __repr__(self) -> str:
        return f"{self.type_name}({self.fields})"


# ---------------------------------------------------------------------------------------------------- lexer


@dataclass(frozen=True)
class _Token:
    kind: str  # text, left, right, field, var, ident, string, number, lparen, rparen, pipe, declare, assign,
    #            comma, space, dot, eof
    value: str
    line: int
    trim: bool = False  # for left/right delimiters: a trim marker was present


def _lex(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos, line = 0, 1
    trim_next_text = False
    while pos < len(text):
        start = text.find("{{", pos)
        chunk = text[pos:] if start < 0 else text[pos:start]
        if trim_next_text:
            chunk = chunk.lstrip(_SPACE)
        trim_next_text = False
        if start < 0:
            if chunk:
                tokens.append(_Token("text", chunk, line))
            break
        left_trim = text.startswith("{{-", start) and start + 3 < len(text) and text[start + 3] in _SPACE
        if left_trim:
            chunk = chunk.rstrip(_SPACE)
        if chunk:
            tokens.append(_Token("text", chunk, line))
        line += text.count("\n", pos, start)
        pos = start + (4 if left_trim else 2)
        # a comment: {{/* ... */}} with nothing between the delimiters and the comment markers
        if text.startswith("/*", pos):
            end = text.find("*/", pos + 2)
            if end < 0:
                raise TemplateSyntaxError(f"line {line}: unclosed comment")
            after = end + 2
            right_trim = text.startswith(" -}}", after) or (
                after < len(text) and text[after] in _SPACE and text.startswith("-}}", after + 1)
            )
            if right_trim:
                close = after + 4
            elif text.startswith("}}", after):
                close = after + 2
            else:
                raise TemplateSyntaxError(f"line {line}: comment ends before closing delimiter")
            line += text.count("\n", pos, close)
            pos = close
            trim_next_text = right_trim
            continue
        tokens.append(_Token("left", "{{", line, left_trim))
        pos, line, right_trim = _lex_action(text, pos, line, tokens)
        trim_next_text = right_trim
    tokens.append(_Token("eof", "", line))
    return tokens


def _lex_action(text: str, pos: int, line: int, tokens: list[_Token]) -> tuple[int, int, bool]:
    """Tokens of one action from ``pos`` (just after ``{{``) to its ``}}``; returns (position after, line,
    whether the action ended with a right trim marker)."""
    paren_depth = 0
    while True:
        if pos >= len(text):
            raise TemplateSyntaxError(f"line {line}: unclosed action")
        ch = text[pos]
        if ch in _SPACE:
            end = pos
            while end < len(text) and text[end] in _SPACE:
                end += 1
            if text.startswith("-}}", end) and end > pos:
                tokens.append(_Token("right", "}}", line, True))
                line += text.count("\n", pos, end)
                return end + 3, line, True
            line += text.count("\n", pos, end)
            tokens.append(_Token("space", " ", line))
            pos = end
            continue
        if text.startswith("}}", pos):
            if paren_depth:
                raise TemplateSyntaxError(f"line {line}: unclosed left paren")
            tokens.append(_Token("right", "}}", line))
            return pos + 2, line, False
        if ch == "(":
            paren_depth += 1
            tokens.append(_Token("lparen", ch, line))
            pos += 1
        elif ch == ")":
            paren_depth -= 1
            if paren_depth < 0:
                raise TemplateSyntaxError(f"line {line}: unexpected right paren")
            tokens.append(_Token("rparen", ch, line))
            pos += 1
        elif ch == "|":
            tokens.append(_Token("pipe", ch, line))
            pos += 1
        elif ch == ",":
            tokens.append(_Token("comma", ch, line))
            pos += 1
        elif text.startswith(":=", pos):
            tokens.append(_Token("declare", ":=", line))
            pos += 2
        elif ch == "=":
            tokens.append(_Token("assign", "=", line))
            pos += 1
        elif ch == '"':
            end, value = _lex_quoted(text, pos, line)
            tokens.append(_Token("string", value, line))
            pos = end
        elif ch == "`":
            end = text.find("`", pos + 1)
            if end < 0:
                raise TemplateSyntaxError(f"line {line}: unterminated raw quoted string")
            tokens.append(_Token("string", text[pos + 1 : end], line))
            line += text.count("\n", pos, end)
            pos = end + 1
        elif ch == "'":
            raise TemplateSyntaxError(f"line {line}: character constants are not supported")
        elif ch == "$":
            end = pos + 1
            while end < len(text) and (text[end].isalnum() or text[end] == "_"):
                end += 1
            tokens.append(_Token("var", text[pos:end], line))
            pos = end
        elif ch == ".":
            if pos + 1 < len(text) and text[pos + 1].isdigit():
                pos = _lex_number(text, pos, line, tokens)
                continue
            end = pos + 1
            while end < len(text) and (text[end].isalnum() or text[end] == "_"):
                end += 1
            tokens.append(_Token("field" if end > pos + 1 else "dot", text[pos:end], line))
            pos = end
        elif ch.isdigit() or (ch in "+-" and pos + 1 < len(text) and (text[pos + 1].isdigit() or text[pos + 1] == ".")):
            pos = _lex_number(text, pos, line, tokens)
        elif ch.isalpha() or ch == "_":
            end = pos
            while end < len(text) and (text[end].isalnum() or text[end] == "_"):
                end += 1
            tokens.append(_Token("ident", text[pos:end], line))
            pos = end
        else:
            raise TemplateSyntaxError(f"line {line}: unexpected {ch!r} in action")


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


def _lex_quoted(text: str, pos: int, line: int) -> tuple[int, str]:
    out: list[str] = []
    i = pos + 1
    while i < len(text):
        ch = text[i]
        if ch == '"':
            return i + 1, "".join(out)
        if ch == "\n":
            break
        if ch == "\\":
            nxt = text[i + 1 : i + 2]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            if nxt in ("u", "U", "x"):
                width = {"u": 4, "U": 8, "x": 2}[nxt]
                digits = text[i + 2 : i + 2 + width]
                try:
                    out.append(chr(int(digits, 16)))
                except ValueError:
                    raise TemplateSyntaxError(f"line {line}: bad escape \\{nxt}{digits} in string") from None
                i += 2 + width
                continue
            raise TemplateSyntaxError(f"line {line}: unsupported escape \\{nxt} in string")
        out.append(ch)
        i += 1
    raise TemplateSyntaxError(f"line {line}: unterminated quoted string")


def _lex_number(text: str, pos: int, line: int, tokens: list[_Token]) -> int:
    end = pos
    while end < len(text) and (text[end].isalnum() or text[end] in "._+-"):
        # a sign is part of a number only at its start or after an exponent
        if text[end] in "+-" and end > pos and text[end - 1] not in "eEpP":
            break
        end += 1
    tokens.append(_Token("number", text[pos:end], line))
    return end


def _number(raw: str, line: int) -> int | float:
    cleaned = raw.replace("_", "")
    try:
        if cleaned.lower().lstrip("+-").startswith(("0x", "0o", "0b")):
            return int(cleaned, 0)
        if any(c in cleaned for c in ".eE"):
            return float(cleaned)
        if len(cleaned.lstrip("+-")) > 1 and cleaned.lstrip("+-").startswith("0"):
            return int(cleaned, 8)  # Go reads a leading zero as octal
        return int(cleaned)
    except ValueError:
        raise TemplateSyntaxError(f"line {line}: bad number syntax: {raw!r}") from None


# ---------------------------------------------------------------------------------------------------- parser

_UNSUPPORTED_KEYWORDS = ("define", "template", "block")


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.range_depth = 0

    # token helpers ----------------------------------------------------------------------------------------
    def peek(self, skip_space: bool = True) -> _Token:
        i = self.pos
        while skip_space and self.tokens[i].kind == "space":
            i += 1
        return self.tokens[i]

    def next(self, skip_space: bool = True) -> _Token:
        while skip_space and self.tokens[self.pos].kind == "space":
            self.pos += 1
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expect(self, kind: str, context: str) -> _Token:
        token = self.next()
        if token.kind != kind:
            raise TemplateSyntaxError(f"line {token.line}: unexpected {_describe(token)} in {context}")
        return token

    # structure --------------------------------------------------------------------------------------------
    def parse(self) -> ListNode:
        root, stop = self.parse_list(top=True)
        if stop is not None:
            raise TemplateSyntaxError(f"line {stop[1]}: unexpected {{{{{stop[0]}}}}}")
        return root

    def parse_list(self, top: bool = False) -> tuple[ListNode, tuple[str, int] | None]:
        """Nodes up to ``{{end}}`` or ``{{else}}`` (returned as the stop word, with the parser just after the
        keyword) or to the end of the text (stop None)."""
        out = ListNode(self.peek(skip_space=False).line)
        while True:
            token = self.next(skip_space=False)
            if token.kind == "eof":
                if not top:
                    raise TemplateSyntaxError(f"line {token.line}: unexpected EOF")
                return out, None
            if token.kind == "text":
                out.nodes.append(TextNode(token.line, token.value))
                continue
            if token.kind != "left":
                raise TemplateSyntaxError(f"line {token.line}: unexpected {_describe(token)}")
            word = self.peek()
            if word.kind == "ident" and word.value in ("end", "else"):
                self.next()
                return out, (word.value, word.line)
            out.nodes.append(self.parse_action())

    def parse_action(self) -> Node:
        word = self.peek()
        if word.kind == "ident":
            if word.value in ("if", "range", "with"):
                self.next()
                return self.parse_branch(word.value, word.line)  # type: ignore[arg-type]
            if word.value in ("break", "continue"):
                self.next()
                if self.range_depth == 0:
                    raise TemplateSyntaxError(f"line {word.line}: {{{{{word.value}}}}} outside {{{{range}}}}")
                self.expect("right", word.value)
                return BreakNode(word.line) if word.value == "break" else ContinueNode(word.line)
            if word.value in _UNSUPPORTED_KEYWORDS:
                raise TemplateSyntaxError(f"line {word.line}: {{{{{word.value}}}}} is not supported")
        pipe = self.parse_pipeline("command", allow_decl=True)
        return ActionNode(word.line, pipe)

    def parse_branch(self, kind: Literal["if", "range", "with"], line: int) -> BranchNode:
        pipe = self.parse_pipeline(kind, allow_decl=True, range_decl=kind == "range")
        if kind == "range":
            self.range_depth += 1
        body, stop = self.parse_list()
        if kind == "range":
            self.range_depth -= 1
        node = BranchNode(line, kind, pipe, body)
        assert stop is not None
        if stop[0] == "else":
            after = self.peek()
            if after.kind == "ident" and after.value in ("if", "with"):
                # {{else if ...}} is {{else}}{{if ...}}...{{end}}{{end}} sharing the one {{end}} (Go allows it only
                # inside an if, and {{else with}} only inside a with)
                if after.value != kind:
                    raise TemplateSyntaxError(f"line {after.line}: {{{{else {after.value}}}}} inside {{{{{kind}}}}}")
                self.next()
                nested = self.parse_branch(kind, after.line)
                node.else_list = ListNode(after.line, [nested])
                return node
            self.expect("right", "else")
            else_list, stop = self.parse_list()
            node.else_list = else_list
            assert stop is not None
            if stop[0] != "end":
                raise TemplateSyntaxError(f"line {stop[1]}: expected end; found {{{{else}}}}")
        self.expect("right", "end")
        return node

    def parse_pipeline(self, context: str, allow_decl: bool, range_decl: bool = False) -> PipeNode:
        start = self.peek()
        pipe = PipeNode(start.line)
        if allow_decl and start.kind == "var":
            save = self.pos
            names = [self.next().value]
            if range_decl and self.peek().kind == "comma":
                self.next()
                second = self.next()
                if second.kind != "var":
                    raise TemplateSyntaxError(f"line {second.line}: range can only initialize variables")
                names.append(second.value)
            op = self.peek()
            if op.kind in ("declare", "assign") and (len(names) == 1 or op.kind == "declare"):
                self.next()
                pipe.decl, pipe.is_assign = names, op.kind == "assign"
            elif len(names) == 2:
                raise TemplateSyntaxError(f"line {op.line}: expected := after range variables")
            else:
                self.pos = save
        while True:
            pipe.cmds.append(self.parse_command(context))
            token = self.next()
            if token.kind == "pipe":
                continue
            if token.kind in ("right", "rparen"):
                self.pos -= 1
                break
            raise TemplateSyntaxError(f"line {token.line}: unexpected {_describe(token)} in {context}")
        if context != "parenthesized pipeline":
            self.expect("right", context)
        return pipe

    def parse_command(self, context: str) -> CommandNode:
        cmd = CommandNode(self.peek().line)
        while True:
            token = self.peek(skip_space=False)
            if token.kind == "space":
                self.next(skip_space=False)
                continue
            if token.kind in ("right", "rparen", "pipe"):
                break
            cmd.args.append(self.parse_operand())
            after = self.peek(skip_space=False)
            if after.kind not in ("space", "right", "rparen", "pipe"):
                raise TemplateSyntaxError(f"line {after.line}: missing space before {_describe(after)}")
        if not cmd.args:
            raise TemplateSyntaxError(f"line {cmd.line}: missing value for {context}")
        return cmd

    def parse_operand(self) -> Node:
        token = self.next(skip_space=False)
        node: Node
        if token.kind == "field":
            fields = [token.value[1:]]
            while self.peek(skip_space=False).kind == "field":
                fields.append(self.next(skip_space=False).value[1:])
            return FieldNode(token.line, tuple(fields))
        if token.kind == "var":
            fields = [token.value]
            while self.peek(skip_space=False).kind == "field":
                fields.append(self.next(skip_space=False).value[1:])
            return VariableNode(token.line, tuple(fields))
        if token.kind == "dot":
            node = DotNode(token.line)
        elif token.kind == "string":
            node = LiteralNode(token.line, token.value)
        elif token.kind == "number":
            node = LiteralNode(token.line, _number(token.value, token.line))
        elif token.kind == "ident":
            if token.value in ("true", "false"):
                node = LiteralNode(token.line, token.value == "true")
            elif token.value == "nil":
                node = LiteralNode(token.line, None)
            elif token.value in SUPPORTED_FUNCTIONS:
                node = IdentifierNode(token.line, token.value)
            else:
                raise TemplateSyntaxError(
                    f"line {token.line}: function {token.value!r} is not supported "
                    f"(supported: {', '.join(SUPPORTED_FUNCTIONS)})"
                )
        elif token.kind == "lparen":
            node = self.parse_pipeline("parenthesized pipeline", allow_decl=True)
            self.expect("rparen", "parenthesized pipeline")
        else:
            raise TemplateSyntaxError(f"line {token.line}: unexpected {_describe(token)} in operand")
        if self.peek(skip_space=False).kind == "field":
            fields = []
            while self.peek(skip_space=False).kind == "field":
                fields.append(self.next(skip_space=False).value[1:])
            if isinstance(node, (LiteralNode, DotNode)):
                raise TemplateSyntaxError(f"line {token.line}: unexpected . after term")
            return ChainNode(token.line, node, tuple(fields))
        return node


def _describe(token: _Token) -> str:
    return {"right": '"}}"', "eof": "EOF", "rparen": '")"', "lparen": '"("'}.get(token.kind, repr(token.value))


# ---------------------------------------------------------------------------------------------------- execution


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Scope:
    """Go template variables: a stack of (name, value) pairs, popped at the end of the control structure."""

    def __init__(self, root: Any) -> None:
        self.vars: list[tuple[str, Any]] = [("$", root)]

    def mark(self) -> int:
        return len(self.vars)

    def pop(self, mark: int) -> None:
        del self.vars[mark:]

    def push(self, name: str, value: Any) -> None:
        self.vars.append((name, value))

    def set(self, name: str, value: Any, line: int) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return
        raise TemplateExecError(f"line {line}: undefined variable: {name}")

    def get(self, name: str, line: int) -> Any:
        for var, value in reversed(self.vars):
            if var == name:
                return value
        raise TemplateExecError(f"line {line}: undefined variable: {name}")


def _kind(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "slice"
    if isinstance(value, Mapping):
        return "map"
    if isinstance(value, GoStruct):
        return "struct"
    return type(value).__name__


def truth(value: Any) -> bool:
    """Go's notion of truth for ``if``, ``with``, ``and``, ``or`` and ``not``."""
    if value is None:
        return False
    if isinstance(value, (bool, int, float, str, list, tuple, Mapping)):
        return bool(value)
    return True


def go_print(value: Any) -> str:
    """How Go's ``fmt`` prints a value in an action."""
    if value is None:
        return NO_VALUE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        text = repr(value)
        return text.replace("e+0", "e+").replace("e-0", "e-")
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_print(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{go_print(k)}:{go_print(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, GoStruct):
        return "{" + " ".join(go_print(v) for v in value.fields.values()) + "}"
    return str(value)


def _basic_kind(value: Any, line: int, fn: str) -> str:
    kind = _kind(value)
    if kind not in ("bool", "int", "float", "string"):
        raise TemplateExecError(f"line {line}: error calling {fn}: invalid type for comparison")
    return kind


def _eq(args: list[Any], line: int) -> bool:
    if len(args) < 2:
        raise TemplateExecError(f"line {line}: wrong number of args for eq: want at least 2 got {len(args)}")
    first, kind = args[0], _basic_kind(args[0], line, "eq")
    for other in args[1:]:
        if _basic_kind(other, line, "eq") != kind:
            raise TemplateExecError(f"line {line}: error calling eq: incompatible types for comparison")
        if first == other:
            return True
    return False


def _less(a: Any, b: Any, line: int, fn: str) -> bool:
    kind_a, kind_b = _basic_kind(a, line, fn), _basic_kind(b, line, fn)
    if kind_a != kind_b:
        raise TemplateExecError(f"line {line}: error calling {fn}: incompatible types for comparison")
    if kind_a == "bool":
        raise TemplateExecError(f"line {line}: error calling {fn}: invalid type for comparison")
    return bool(a < b)


def _length(value: Any, line: int) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8"))  # Go counts bytes
    if isinstance(value, (list, tuple, Mapping)):
        return len(value)
    raise TemplateExecError(f"line {line}: error calling len: len of type {_kind(value)}")


def _int_arg(value: Any, line: int, fn: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TemplateExecError(f"line {line}: error calling {fn}: cannot index slice/array with type {_kind(value)}")
    return value


def _slice(value: Any, indices: list[Any], line: int) -> Any:
    if not isinstance(value, (str, list, tuple)):
        raise TemplateExecError(f"line {line}: error calling slice: can't slice item of type {_kind(value)}")
    if len(indices) > 3 or (isinstance(value, str) and len(indices) > 2):
        raise TemplateExecError(f"line {line}: error calling slice: too many slice indexes: {len(indices)}")
    data = value.encode("utf-8") if isinstance(value, str) else value
    bounds = [_int_arg(i, line, "slice") for i in indices]
    low = bounds[0] if bounds else 0
    high = bounds[1] if len(bounds) > 1 else len(data)
    cap = bounds[2] if len(bounds) > 2 else len(data)
    if not (0 <= low <= high <= cap <= len(data)):
        raise TemplateExecError(f"line {line}: error calling slice: index out of range: {bounds}")
    if isinstance(data, bytes):
        try:
            return data[low:high].decode("utf-8")
        except UnicodeDecodeError:
            raise TemplateExecError(f"line {line}: slice of a string cuts a UTF-8 character") from None
    return list(data[low:high])


def _index(value: Any, indices: list[Any], line: int) -> Any:
    for i in indices:
        if isinstance(value, Mapping):
            value = value.get(i)
        elif isinstance(value, (list, tuple, str)):
            data = value.encode("utf-8") if isinstance(value, str) else value
            k = _int_arg(i, line, "index")
            if not 0 <= k < len(data):
                raise TemplateExecError(f"line {line}: error calling index: index out of range: {k}")
            value = data[k]
        else:
            raise TemplateExecError(f"line {line}: error calling index: can't index item of type {_kind(value)}")
    return value


class Template:
    """A parsed Go template; ``render(data)`` executes it. Parse once, render many times."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.root = _Parser(_lex(text)).parse()

    @classmethod
    def from_root(cls, text: str, root: ListNode) -> Template:
        template = cls.__new__(cls)
        template.text, template.root = text, root
        return template

    def render(self, data: Any) -> str:
        out: list[str] = []
        scope = _Scope(data)
        self._walk_list(self.root, data, scope, out)
        return "".join(out)

    def identifiers(self) -> list[str]:
        """The lower-cased field and variable names the template mentions (Ollama's ``Template.Vars``)."""
        names: set[str] = set()
        for node in _iter_identifier_nodes(self.root):
            names.update(part.lower() for part in node.ident)
        return sorted(names)

    # statements -------------------------------------------------------------------------------------------
    def _walk_list(self, node: ListNode, dot: Any, scope: _Scope, out: list[str]) -> None:
        for child in node.nodes:
            self._walk(child, dot, scope, out)

    def _walk(self, node: Node, dot: Any, scope: _Scope, out: list[str]) -> None:
        if isinstance(node, TextNode):
            out.append(node.text)
        elif isinstance(node, ActionNode):
            assert node.pipe is not None
            value = self._pipe(node.pipe, dot, scope)
            if not node.pipe.decl:
                out.append(go_print(value))
        elif isinstance(node, BranchNode):
            self._branch(node, dot, scope, out)
        elif isinstance(node, BreakNode):
            raise _Break
        elif isinstance(node, ContinueNode):
            raise _Continue
        elif isinstance(node, ListNode):
            self._walk_list(node, dot, scope, out)
        else:  # pragma: no cover - the parser makes no other statement nodes
            raise TemplateExecError(f"line {node.line}: unknown node {type(node).__name__}")

    def _branch(self, node: BranchNode, dot: Any, scope: _Scope, out: list[str]) -> None:
        assert node.pipe is not None and node.list is not None
        mark = scope.mark()
        try:
            if node.kind == "range":
                self._range(node, dot, scope, out)
                return
            value = self._pipe(node.pipe, dot, scope)
            if truth(value):
                self._walk_list(node.list, value if node.kind == "with" else dot, scope, out)
            elif node.else_list is not None:
                self._walk_list(node.else_list, dot, scope, out)
        finally:
            scope.pop(mark)

    def _range(self, node: BranchNode, dot: Any, scope: _Scope, out: list[str]) -> None:
        assert node.pipe is not None and node.list is not None
        decl = node.pipe.decl
        value = self._pipe(replace(node.pipe, decl=[]), dot, scope)
        items: list[tuple[Any, Any]]
        if value is None:
            items = []
        elif isinstance(value, (list, tuple)):
            items = list(enumerate(value))
        elif isinstance(value, Mapping):
            items = [(k, value[k]) for k in sorted(value)]
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [(i, i) for i in range(value)]
        else:
            raise TemplateExecError(f"line {node.line}: range can't iterate over {go_print(value)}")
        if not items:
            if node.else_list is not None:
                self._walk_list(node.else_list, dot, scope, out)
            return
        for key, elem in items:
            mark = scope.mark()
            if len(decl) == 1:
                scope.push(decl[0], elem)
            elif len(decl) == 2:
                scope.push(decl[0], key)
                scope.push(decl[1], elem)
            try:
                self._walk_list(node.list, elem, scope, out)
            except _Continue:
                pass
            except _Break:
                scope.pop(mark)
                break
            scope.pop(mark)

    # expressions ------------------------------------------------------------------------------------------
    def _pipe(self, pipe: PipeNode, dot: Any, scope: _Scope) -> Any:
        value: Any = _MISSING
        for cmd in pipe.cmds:
            value = self._command(cmd, dot, scope, value)
        for name in pipe.decl:
            if pipe.is_assign:
                scope.set(name, value, pipe.line)
            else:
                scope.push(name, value)
        return value

    def _command(self, cmd: CommandNode, dot: Any, scope: _Scope, final: Any) -> Any:
        first, rest = cmd.args[0], cmd.args[1:]
        if isinstance(first, IdentifierNode):
            return self._call(first, rest, dot, scope, final)
        if rest or final is not _MISSING:
            what = _node_text(first)
            raise TemplateExecError(f"line {cmd.line}: can't give argument to non-function {what}")
        return self._arg(first, dot, scope)

    def _arg(self, node: Node, dot: Any, scope: _Scope) -> Any:
        if isinstance(node, LiteralNode):
            return node.value
        if isinstance(node, DotNode):
            return dot
        if isinstance(node, FieldNode):
            return self._fields(dot, node.ident, node.line)
        if isinstance(node, VariableNode):
            return self._fields(scope.get(node.ident[0], node.line), node.ident[1:], node.line)
        if isinstance(node, ChainNode):
            assert node.node is not None
            return self._fields(self._arg(node.node, dot, scope), node.fields, node.line)
        if isinstance(node, PipeNode):
            return self._pipe(node, dot, scope)
        if isinstance(node, IdentifierNode):
            return self._call(node, [], dot, scope, _MISSING)
        raise TemplateExecError(f"line {node.line}: can't evaluate {type(node).__name__}")

    def _fields(self, value: Any, names: Sequence[str], line: int) -> Any:
        for name in names:
            if isinstance(value, GoStruct):
                value = value.get(name, line)
            elif isinstance(value, Mapping):
                value = value.get(name)
            elif value is None:
                raise TemplateExecError(f"line {line}: nil pointer evaluating interface {{}}.{name}")
            else:
                raise TemplateExecError(f"line {line}: can't evaluate field {name} in type {_kind(value)}")
        return value

    def _call(self, fn: IdentifierNode, args: list[Node], dot: Any, scope: _Scope, final: Any) -> Any:
        name, line = fn.name, fn.line

        if name in ("and", "or"):
            # short-circuit: evaluate operands in order, return the deciding one (Go 1.18+); a piped value is last
            if not args and final is _MISSING:
                raise TemplateExecError(f"line {line}: wrong number of args for {name}: want at least 1 got 0")
            value: Any = None
            for arg in args:
                value = self._arg(arg, dot, scope)
                if truth(value) != (name == "and"):
                    return value
            return final if final is not _MISSING else value
        vals = [self._arg(a, dot, scope) for a in args]
        if final is not _MISSING:
            vals.append(final)
        if name == "not":
            if len(vals) != 1:
                raise TemplateExecError(f"line {line}: wrong number of args for not: want 1 got {len(vals)}")
            return not truth(vals[0])
        if name == "eq":
            return _eq(vals, line)
        if name == "ne":
            _want(vals, 2, name, line)
            return not _eq(vals, line)
        if name in ("lt", "le", "gt", "ge"):
            _want(vals, 2, name, line)
            a, b = vals
            if name == "lt":
                return _less(a, b, line, name)
            if name == "ge":
                return not _less(a, b, line, name)
            if name == "gt":
                return _less(b, a, line, name)
            return not _less(b, a, line, name)
        if name == "len":
            _want(vals, 1, name, line)
            return _length(vals[0], line)
        if name == "slice":
            if not vals:
                raise TemplateExecError(f"line {line}: wrong number of args for slice: want at least 1 got 0")
            return _slice(vals[0], vals[1:], line)
        if name == "index":
            if not vals:
                raise TemplateExecError(f"line {line}: wrong number of args for index: want at least 1 got 0")
            return _index(vals[0], vals[1:], line)
        raise TemplateExecError(f"line {line}: function {name!r} not defined")  # pragma: no cover


class _Missing:
    pass


_MISSING: Any = _Missing()


def _want(vals: list[Any], n: int, name: str, line: int) -> None:
    if len(vals) != n:
        raise TemplateExecError(f"line {line}: wrong number of args for {name}: want {n} got {len(vals)}")


def _node_text(node: Node) -> str:
    if isinstance(node, FieldNode):
        return "." + ".".join(node.ident)
    if isinstance(node, VariableNode):
        return ".".join(node.ident)
    if isinstance(node, LiteralNode):
        return json.dumps(node.value) if isinstance(node.value, str) else go_print(node.value)
    return type(node).__name__


def _iter_identifier_nodes(node: Node | None) -> Iterator[FieldNode | VariableNode]:
    """Field and variable nodes in the places Ollama's ``Identifiers`` looks (not inside chained terms)."""
    if node is None:
        return
    if isinstance(node, ListNode):
        for child in node.nodes:
            yield from _iter_identifier_nodes(child)
    elif isinstance(node, ActionNode):
        yield from _iter_identifier_nodes(node.pipe)
    elif isinstance(node, BranchNode):
        yield from _iter_identifier_nodes(node.pipe)
        yield from _iter_identifier_nodes(node.list)
        yield from _iter_identifier_nodes(node.else_list)
    elif isinstance(node, PipeNode):
        for cmd in node.cmds:
            for arg in cmd.args:
                yield from _iter_identifier_nodes(arg)
    elif isinstance(node, (FieldNode, VariableNode)):
        yield node


def parse(text: str) -> Template:
    """Parse Go template ``text``; ``TemplateSyntaxError`` names the line and the problem."""
    return Template(text)


def render(text: str, data: Any) -> str:
    """Parse and execute ``text`` with ``data`` (dicts act as Go maps, ``GoStruct`` as structs)."""
    return Template(text).render(data)


# ---------------------------------------------------------------------------------------------------- Ollama


def _cut_after_response(node: Node) -> Node | None:
    """Ollama's ``deleteNode``: keep the tree up to the first ``.Response`` field, drop every node after it."""
    cut = False

    def fn(n: Node) -> bool:
        nonlocal cut
        if isinstance(n, FieldNode) and "Response" in n.ident:
            cut = True
            return False
        return cut

    def walk(n: Node) -> Node | None:
        if fn(n):
            return None
        if isinstance(n, ListNode):
            kept = [c for c in (walk(child) for child in n.nodes) if c is not None]
            return ListNode(n.line, kept)
        if isinstance(n, BranchNode):
            assert n.list is not None
            body = walk(n.list)
            other = walk(n.else_list) if n.else_list is not None else None
            if body is None or (n.else_list is not None and other is None):
                # Go panics here (a nil list in a branch); Ollama fails the request
                raise TemplateExecError(f"line {n.line}: Ollama cannot cut this template after .Response")
            assert isinstance(body, ListNode)
            return replace(n, list=body, else_list=other if isinstance(other, ListNode) else None)
        if isinstance(n, ActionNode):
            assert n.pipe is not None
            pipe = walk(n.pipe)
            return None if pipe is None else replace(n, pipe=pipe)  # type: ignore[arg-type]
        if isinstance(n, PipeNode):
            cmds = []
            for cmd in n.cmds:
                args = [a for a in (walk(arg) for arg in cmd.args) if a is not None]
                if not args:
                    return None
                cmds.append(replace(cmd, args=args))
            return replace(n, cmds=cmds) if cmds else None
        return n

    return walk(node)


def ollama_messages(
    messages: Sequence[Mapping[str, str]], modelfile_system: str | None, endpoint: Literal["chat", "generate"]
) -> list[dict[str, str]]:
    """The messages Ollama's handler builds before templating.

    ``chat``: the Modelfile SYSTEM goes first when the conversation does not start with a system message.
    ``generate``: ``messages`` is ``[system?, user]`` as sent (``system`` overrides the Modelfile's); the
    Modelfile SYSTEM is used when the request has none.
    """
    msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
    if endpoint == "chat":
        if msgs and msgs[0]["role"] != "system" and modelfile_system:
            msgs.insert(0, {"role": "system", "content": modelfile_system})
        return msgs
    system = next((m["content"] for m in msgs if m["role"] == "system"), "") or (modelfile_system or "")
    users = [m for m in msgs if m["role"] != "system"]
    return ([{"role": "system", "content": system}] if system else []) + users


def collate(messages: Sequence[Mapping[str, str]]) -> tuple[str, list[dict[str, str]]]:
    """Ollama's ``collate``: every system message joined by a blank line, and the messages with consecutive
    messages of one role merged (a blank line between them)."""
    system: list[str] = []
    out: list[dict[str, str]] = []
    for m in messages:
        if m["role"] == "system":
            system.append(m["content"])
        if out and out[-1]["role"] == m["role"] and m["role"] != "tool":
            out[-1]["content"] += "\n\n" + m["content"]
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return "\n\n".join(system), out


def template_message(message: Mapping[str, str]) -> GoStruct:
    """A message as Ollama's template sees it (``templateMessage``)."""
    return GoStruct(
        "*template.templateMessage",
        Role=message["role"],
        Content=message["content"],
        Thinking="",
        Images=None,
        ToolCalls=None,
        ToolName="",
        ToolCallID="",
    )


def render_ollama(
    template: str | Template,
    messages: Sequence[Mapping[str, str]],
    modelfile_system: str | None = None,
    endpoint: Literal["chat", "generate"] = "chat",
) -> str:
    """The prompt Ollama renders from a Modelfile TEMPLATE for a chat (or generate) request.

    ``messages`` are the request's ``{"role", "content"}`` dicts; ``modelfile_system`` is the Modelfile's
    SYSTEM. Mirrors Ollama's ``template.Execute``: templates that use ``.Messages`` get ``.System``,
    ``.Messages``, ``.Tools`` and an empty ``.Response``; older ``.Prompt``/``.Response`` templates are run
    once per user/assistant turn and cut after ``.Response`` on the last one.
    """
    tmpl = template if isinstance(template, Template) else Template(template)
    system, collated = collate(ollama_messages(messages, modelfile_system, endpoint))
    if "messages" in tmpl.identifiers():
        data = {
            "System": system,
            "Messages": [template_message(m) for m in collated],
            "Tools": [],
            "Response": "",
            "Think": False,
            "ThinkLevel": "",
            "IsThinkSet": False,
        }
        return tmpl.render(data)
    out: list[str] = []
    turn = {"System": "", "Prompt": "", "Response": ""}

    def execute() -> None:
        out.append(tmpl.render({**turn, "Think": False, "ThinkLevel": "", "IsThinkSet": False}))
        turn.update(System="", Prompt="", Response="")

    for m in collated:
        if m["role"] == "system":
            if turn["Prompt"] or turn["Response"]:
                execute()
            turn["System"] = m["content"]
        elif m["role"] == "user":
            if turn["Response"]:
                execute()
            turn["Prompt"] = m["content"]
        elif m["role"] == "assistant":
            turn["Response"] = m["content"]
    root = _cut_after_response(tmpl.root)
    assert isinstance(root, ListNode)
    out.append(Template.from_root(tmpl.text, root).render(dict(turn)))
    return "".join(out)
