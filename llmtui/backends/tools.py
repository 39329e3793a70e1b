"""Tool calling for any chat model.

Models whose chat template knows about ``tools`` get them through the template. For the
rest, the tool list goes into a system message that asks for a JSON call, so tools work
on every model (Ollama refuses such models instead). Replies are scanned for calls in the
common shapes: ``<tool_call>{...}</tool_call>`` (Qwen, Hermes, SmolLM), a bare JSON
object or list of ``{"name", "arguments"|"parameters"}``, or a fenced JSON block.
"""

from __future__ import annotations

import json
import re
from typing import Any

from llmtui.errors import InvalidInput

_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_FENCED = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def check_tools(tools: Any) -> list[dict[str, Any]] | None:
    """Validate an OpenAI/Ollama tool list: [{"type": "function", "function": {...}}]."""
    if tools in (None, []):
        return None
    if not isinstance(tools, list) or len(tools) > 128:
        raise InvalidInput("'tools' must be a list of at most 128 tools")
    out = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise InvalidInput(f"tool {i} must be {{\"type\": \"function\", \"function\": "
                               "{\"name\": ..., \"parameters\": {...}}}")
        params = fn.get("parameters", {})
        if not isinstance(params, dict):
            raise InvalidInput(f"tool {i}: 'parameters' must be a JSON schema object")
        out.append({"type": "function", "function": {
            "name": fn["name"], "description": str(fn.get("description") or ""),
            "parameters": params}})
    return out


def tool_instruction(tools: list[dict[str, Any]]) -> str:
    """The system text that offers tools to a model whose template cannot."""
    listing = json.dumps([t["function"] for t in tools], ensure_ascii=False)
    return ("You can call these tools:\n" + listing + "\n"
            "To call a tool, reply with only a JSON object "
            '{"name": "<tool name>", "arguments": {...}} and nothing else. '
            "Otherwise answer normally.")


def with_tool_prompt(messages: list[dict[str, Any]],
                     tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    text = tool_instruction(tools)
    if messages and messages[0].get("role") == "system":
        first = dict(messages[0], content=f"{messages[0].get('content') or ''}\n\n{text}")
        return [first, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def _as_call(obj: Any, names: set[str]) -> dict[str, Any] | None:
    if not isinstance(obj, dict):
        return None
    if "function" in obj and isinstance(obj["function"], dict):
        obj = obj["function"]
    name = obj.get("name")
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(name, str) or name not in names or not isinstance(args, dict):
        return None
    return {"function": {"name": name, "arguments": args}}


def _decode_calls(text: str, names: set[str]) -> list[dict[str, Any]]:
    try:
        obj = json.loads(text)
    except ValueError:
        return []
    items = obj if isinstance(obj, list) else [obj]
    calls = [_as_call(item, names) for item in items]
    return [c for c in calls if c is not None] if all(calls) else []


def parse_tool_calls(text: str, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool calls found in a reply, in Ollama's shape; [] when it is a plain answer."""
    names = {t["function"]["name"] for t in tools}
    stripped = text.strip()
    tagged = _TAGGED.findall(stripped)
    if tagged:
        calls = [c for block in tagged for c in _decode_calls(block, names)]
        if calls:
            return calls
    for candidate in (stripped, *_FENCED.findall(stripped)):
        calls = _decode_calls(candidate.strip(), names)
        if calls:
            return calls
    return []


# -- forced calls -----------------------------------------------------------------------------
#
# OpenAI's tool_choice "required" (some call) and {"type": "function", "function": {"name"}}
# (this call) are enforced with a grammar: the reply must be one call object. Even a tiny
# model then answers with a well-formed call whose arguments match the tool's schema.


def call_schema(tools: list[dict[str, Any]], name: str | None = None) -> dict[str, Any]:
    """A JSON schema for one call ``{"name": ..., "arguments": {...}}`` to any of ``tools``
    (or to the one named), to pass as a request's ``format``."""
    chosen = [t for t in tools if name is None or t["function"]["name"] == name]
    if not chosen:
        known = ", ".join(t["function"]["name"] for t in tools)
        raise InvalidInput(f"tool_choice names '{name}', which is not in 'tools' ({known})")

    def one(tool: dict[str, Any]) -> dict[str, Any]:
        params = tool["function"].get("parameters") or {}
        if not params.get("type") and not any(k in params for k in ("anyOf", "oneOf", "$ref")):
            params = {**params, "type": "object"}
        return {"type": "object", "additionalProperties": False,
                "required": ["name", "arguments"],
                "properties": {"name": {"const": tool["function"]["name"]},
                               "arguments": params}}

    schemas = [one(t) for t in chosen]
    return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}


def tool_choice(tools: list[dict[str, Any]] | None, choice: Any
                ) -> tuple[list[dict[str, Any]] | None, dict[str, Any] | None]:
    """Apply an OpenAI ``tool_choice``: (the tools to offer, a schema that forces a call or
    None). Accepts "auto", "none", "required", {"type": "function", "function": {"name"}}
    (chat completions) and {"type": "function", "name"} (responses)."""
    if choice in (None, "auto"):
        return tools, None
    if choice == "none":
        return None, None
    if choice == "required":
        if not tools:
            raise InvalidInput("tool_choice 'required' needs 'tools'")
        return tools, call_schema(tools)
    if isinstance(choice, dict) and choice.get("type") == "function":
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        name = name or choice.get("name")
        if isinstance(name, str) and name:
            if not tools:
                raise InvalidInput("tool_choice names a function but there are no 'tools'")
            return tools, call_schema(tools, name)
    raise InvalidInput('tool_choice must be "auto", "none", "required" or '
                       '{"type": "function", "function": {"name": "..."}}')
