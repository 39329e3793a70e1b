"""Plain Python functions as tools (as simonw/llm users write them): the type hints give
the argument schema, the docstring the description.

    def add(a: int, b: int) -> int:
        "Add two whole numbers."
        return a + b
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmtui.errors import InvalidInput
from llmtui.tools.core import Tool, as_text

_SIMPLE: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean",
                           dict: "object", list: "array", tuple: "array"}


def type_schema(hint: Any) -> dict[str, Any]:
    """A JSON schema for a type hint (unknown or missing hints take a string)."""
    if hint is inspect.Parameter.empty or hint is Any:
        return {"type": "string"}
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        return type_schema(args[0]) if len(args) == 1 else \
            {"anyOf": [type_schema(a) for a in args]}
    if origin is typing.Literal:
        values = list(typing.get_args(hint))
        return {"type": _SIMPLE.get(type(values[0]), "string"), "enum": values}
    if origin in (list, tuple, set, frozenset):
        return {"type": "array", **({"items": type_schema(args[0])} if args else {})}
    if origin is dict:
        return {"type": "object"}
    return {"type": _SIMPLE.get(hint, "string")}


def _optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and \
        type(None) in typing.get_args(hint)


def function_tool(fn: Callable[..., Any], name: str | None = None) -> Tool:
    """A Tool that calls ``fn`` with the model's arguments as keywords."""
    if not callable(fn):
        raise InvalidInput(f"{fn!r} is not a function")
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # a hint that does not resolve: take strings
        hints = {}
    props: dict[str, Any] = {}
    required: list[str] = []
    for pname, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        hint = hints.get(pname, param.annotation)
        props[pname] = type_schema(hint)
        if param.default is param.empty and not _optional(hint):
            required.append(pname)
    doc = inspect.getdoc(fn) or ""
    description = doc.split("\n\n")[0].replace("\n", " ").strip()
    params = {"type": "object", "properties": props, "required": required}

    def run(arguments: dict[str, Any]) -> str:
        return as_text(fn(**arguments))

    return Tool(name or fn.__name__, description, params, run)


def load_functions(source: str) -> list[Tool]:
    """The public functions of a Python file (or of Python code given as text), as tools.

    Only functions defined in that code count, not ones it imports."""
    path = Path(source)
    is_file = source.endswith(".py") or path.is_file()
    if is_file:
        if not path.is_file():
            raise InvalidInput(f"--functions: no file {source}")
        code = path.read_text(encoding="utf-8")
        label = str(path)
    else:
        code, label = source, "<--functions>"
    module = types.ModuleType("llm_functions")
    module.__file__ = label
    try:
        exec(compile(code, label, "exec"), module.__dict__)  # the user's code
    except SyntaxError as exc:
        raise InvalidInput(f"--functions: {label} line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:  # whatever the user's module raises on import
        raise InvalidInput(f"--functions: {label} failed to load: "
                           f"{type(exc).__name__}: {exc}") from None
    tools = [function_tool(obj) for key, obj in vars(module).items()
             if inspect.isfunction(obj) and not key.startswith("_")
             and obj.__module__ == module.__name__]
    if not tools:
        raise InvalidInput(f"--functions: {label} defines no public function")
    return tools
