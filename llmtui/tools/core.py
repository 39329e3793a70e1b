"""A tool, a set of tools, and the record of one call."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmtui.errors import InvalidInput

#: What a tool's result may hold at most, in characters: a huge file or command output
#: would fill the model's context (the rest is cut, and the model is told so).
MAX_RESULT = 20_000


class ToolFailed(Exception):
    """A tool could not do what it was asked; the message goes back to the model."""


@dataclass
class Tool:
    """One tool: a name, a description, a JSON schema for its arguments, and what runs it.

    ``run(arguments) -> str``; ``always_ask``: approval is asked for every call, even when
    the tool is allowed for the session or ``--yes`` is given to the loop (the shell)."""

    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[dict[str, Any]], str]
    always_ask: bool = False

    def spec(self) -> dict[str, Any]:
        """The tool as the chat API takes it (Ollama's and OpenAI's shape)."""
        return {"type": "function", "function": {
            "name": self.name, "description": self.description,
            "parameters": self.parameters}}


@dataclass
class CallRecord:
    """One call the model made: what it asked, what happened, how long it took.
    ``status``: "ok", "error" (the tool failed), "denied" (not approved), "invalid"
    (an unknown tool or arguments that fail the schema)."""

    name: str
    arguments: dict[str, Any]
    result: str
    status: str
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments, "result": self.result,
                "status": self.status, "seconds": round(self.seconds, 3)}


@dataclass
class ToolSet:
    """The tools offered to a model, by name."""

    tools: dict[str, Tool] = field(default_factory=dict)

    def add(self, tool: Tool) -> None:
        if tool.name in self.tools:
            raise InvalidInput(f"two tools are named '{tool.name}'")
        self.tools[tool.name] = tool

    def extend(self, tools: list[Tool]) -> None:
        for tool in tools:
            self.add(tool)

    def __bool__(self) -> bool:
        return bool(self.tools)

    def __len__(self) -> int:
        return len(self.tools)

    def names(self) -> list[str]:
        return list(self.tools)

    def specs(self) -> list[dict[str, Any]]:
        return [t.spec() for t in self.tools.values()]

    def check(self, name: str, arguments: Any) -> str | None:
        """Why a call cannot run (an unknown tool, arguments that fail the schema), or
        None when it can."""
        tool = self.tools.get(name)
        if tool is None:
            return f"there is no tool named '{name}' (the tools are: {', '.join(self.tools)})"
        if not isinstance(arguments, dict):
            return "the arguments must be a JSON object"
        return schema_problem(arguments, tool.parameters)

    def call(self, name: str, arguments: dict[str, Any]) -> CallRecord:
        """Run an approved, checked call; a failure becomes an error record, never an
        exception (the model is told, and may try again)."""
        start = time.monotonic()
        try:
            out = self.tools[name].run(arguments)
            status = "ok"
        except ToolFailed as exc:
            out, status = f"error: {exc}", "error"
        except Exception as exc:  # a user's function may raise anything
            out, status = f"error: {type(exc).__name__}: {exc}", "error"
        return CallRecord(name, arguments, clip(as_text(out)), status,
                          time.monotonic() - start)


def as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def clip(text: str) -> str:
    if len(text) <= MAX_RESULT:
        return text
    return text[:MAX_RESULT] + f"\n[... cut: {len(text) - MAX_RESULT} more characters]"


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "object": (dict,), "array": (list,), "null": (type(None),),
}


def schema_problem(value: Any, schema: dict[str, Any], where: str = "arguments") -> str | None:
    """The first way ``value`` fails ``schema``, or None. Covers what tool schemas use:
    type, required, properties, additionalProperties: false, enum, items."""
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if isinstance(kind, str) else []
    if kinds:
        ok = any(isinstance(value, _TYPES.get(k, (object,)))
                 and not (k in ("integer", "number") and isinstance(value, bool))
                 for k in kinds)
        if not ok:
            return f"{where} must be of type {' or '.join(kinds)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} must be one of {schema['enum']}"
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key in schema.get("required") or []:
            if key not in value:
                return f"{where} lack the required '{key}'"
        for key, item in value.items():
            if key in props:
                problem = schema_problem(item, props[key], f"'{key}'")
                if problem:
                    return problem
            elif schema.get("additionalProperties") is False:
                return f"{where} have an unknown field '{key}'"
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problem = schema_problem(item, schema["items"], f"{where}[{i}]")
            if problem:
                return problem
    return None
