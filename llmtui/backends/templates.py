"""Prompt templates a user supplies (Ollama's ``template`` field, ``/api/create``).

Two dialects are accepted:

* Jinja chat templates (the GGUF ``tokenizer.chat_template`` kind): they contain ``{%``
  or refer to ``messages``; they are rendered in a sandbox by the llama.cpp backend.
* Ollama's legacy Go templates built from ``.System``, ``.Prompt`` and ``.Response``
  with ``if``/``else``/``end`` and ``{{-``/``-}}`` trimming. Like Ollama, a conversation
  renders one copy per user turn, the system prompt going into the first.
"""

from __future__ import annotations

import re
from typing import Any

from llmtui.errors import InvalidInput

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)
_FIELDS = {".System", ".Prompt", ".Response"}


def is_jinja(template: str) -> bool:
    return "{%" in template or re.search(r"\{\{-?\s*(messages|bos_token)", template) is not None


def _tokens(template: str) -> list[tuple[str, str]]:
    """Split into ("text", s) and ("action", s) parts, applying the trim markers."""
    out: list[tuple[str, str]] = []
    pos = 0
    for m in _ACTION.finditer(template):
        text = template[pos:m.start()]
        if m.group(1):
            text = text.rstrip()
        out.append(("text", text))
        out.append(("action", m.group(2)))
        pos = m.end()
        if m.group(3):
            rest = template[pos:]
            pos += len(rest) - len(rest.lstrip())
    out.append(("text", template[pos:]))
    return out


def _parse(tokens: list[tuple[str, str]], i: int, stop: tuple[str, ...]) -> tuple[list[Any], int]:
    """A tiny tree: strings, field names, and ("if", field, then, else) nodes."""
    nodes: list[Any] = []
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "text":
            nodes.append(value)
            i += 1
            continue
        word = value.split()[0] if value.split() else ""
        if word in stop:
            return nodes, i
        if word == "if":
            field = value[2:].strip()
            if field not in _FIELDS:
                raise InvalidInput(f"template: unsupported condition {{{{ {value} }}}}")
            then, i = _parse(tokens, i + 1, ("else", "end"))
            other: list[Any] = []
            if i < len(tokens) and tokens[i][1].split()[0] == "else":
                other, i = _parse(tokens, i + 1, ("end",))
            if i >= len(tokens):
                raise InvalidInput("template: an {{ if }} has no {{ end }}")
            nodes.append(("if", field, then, other))
            i += 1
        elif value in _FIELDS:
            nodes.append(("field", value))
            i += 1
        else:
            raise InvalidInput(
                f"template: unsupported action {{{{ {value} }}}} (use .System, .Prompt, "
                ".Response and if/else/end, or a Jinja chat template)")
    if stop:
        raise InvalidInput(f"template: missing {{{{ {stop[-1]} }}}}")
    return nodes, i


def _render(nodes: list[Any], values: dict[str, str]) -> str:
    out = []
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif node[0] == "field":
            out.append(values.get(node[1], ""))
        else:
            _, field, then, other = node
            out.append(_render(then if values.get(field) else other, values))
    return "".join(out)


def compile_go(template: str) -> list[Any]:
    nodes, _ = _parse(_tokens(template), 0, ())
    return nodes


def render_go(template: str, messages: list[dict[str, Any]]) -> str:
    """Render a conversation with a Go-style template, one copy per user turn."""
    nodes = compile_go(template)
    system = "\n".join(str(m.get("content") or "") for m in messages if m["role"] == "system")
    turns: list[dict[str, str]] = []
    for m in messages:
        role, content = m["role"], str(m.get("content") or "")
        if role in ("user", "tool"):
            turns.append({".Prompt": content, ".Response": ""})
        elif role == "assistant":
            if not turns:
                turns.append({".Prompt": "", ".Response": ""})
            turns[-1][".Response"] += content
    if not turns:
        turns.append({".Prompt": "", ".Response": ""})
    parts = []
    for n, turn in enumerate(turns):
        values = {**turn, ".System": system if n == 0 else ""}
        text = _render(nodes, values)
        if n == len(turns) - 1 and not turn[".Response"]:
            # The last turn is open: cut after where the reply goes.
            marker = "\x00RESPONSE\x00"
            text = _render(nodes, {**values, ".Response": marker}).split(marker)[0]
        parts.append(text)
    return "".join(parts)
