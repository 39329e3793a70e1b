"""Plugins: plain entry-point groups, one per kind of extension (see docs/plugins.md).

=================  ===========================================================================
group              what the entry point names
=================  ===========================================================================
llmtui.backends    a backend class (llmtui/backends/base.py); picked by a model's format
llmtui.commands    a Typer app (a command group) or a function (one command); the entry
                   point's name is the command's name
llmtui.readers     ``read(data: bytes, name: str) -> list[Block | str]`` for RAG files whose
                   extension is the entry point's name (``docx`` reads ``*.docx``)
llmtui.themes      a dict of theme fields, a path to a TOML theme, or a Textual ``Theme``
llmtui.tools       a :class:`Tool`, or a function with type hints and a docstring
=================  ===========================================================================

Finding entry points means reading every installed distribution's metadata (tens of
milliseconds, plus importing importlib.metadata), which `llm --help` cannot afford on
every run. The list is kept in the cache folder, keyed by the modification times of the
folders on ``sys.path`` (installing or removing a package changes its folder), so it is
read again only after an install. A plugin that fails to load is reported once per
install (``llm plugins`` always shows it) and never stops the rest.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

GROUPS: dict[str, str] = {
    "llmtui.backends": "backend",
    "llmtui.commands": "command",
    "llmtui.readers": "reader",
    "llmtui.themes": "theme",
    "llmtui.tools": "tool",
}
CACHE_VERSION = 1


@dataclass(frozen=True)
class Plugin:
    """One entry point in one of the llmtui groups."""

    group: str
    name: str
    value: str  # module:attr
    dist: str
    version: str

    @property
    def kind(self) -> str:
        return GROUPS.get(self.group, self.group)

    @property
    def builtin(self) -> bool:
        return self.dist.lower() == "llmtui"

    def load(self) -> Any:
        """Import the module and return the named object (what EntryPoint.load does)."""
        import importlib

        module, _, attrs = self.value.partition(":")
        obj: Any = importlib.import_module(module.strip())
        for attr in filter(None, attrs.strip().split(".")):
            obj = getattr(obj, attr)
        return obj


# -- discovery (cached) --------------------------------------------------------------------


def _key() -> list[Any]:
    """What the list of entry points depends on: the interpreter and sys.path's folders."""
    from llmtui import __version__

    stamps = []
    for entry in sys.path:
        full = os.path.abspath(entry or ".")
        try:
            stamps.append([full, os.stat(full).st_mtime_ns])
        except OSError:
            stamps.append([full, 0])
    return [CACHE_VERSION, __version__, sys.prefix, sys.version, stamps]


def _cache_file() -> Any:
    from llmtui.paths import Paths

    return Paths.from_env().cache_dir / "plugins.json"


def _scan() -> list[Plugin]:
    """Every entry point of the llmtui groups, from the installed distributions' metadata."""
    from importlib.metadata import entry_points

    found: list[Plugin] = []
    for group in GROUPS:
        for ep in entry_points(group=group):
            dist = getattr(ep, "dist", None)
            found.append(Plugin(group, ep.name, ep.value,
                                getattr(dist, "name", "") or "?",
                                getattr(dist, "version", "") or ""))
    return found


class _State:
    """This process's view: the discovered plugins and what was already reported."""

    plugins: list[Plugin] | None = None
    reported: set[str] = set()  # noqa: RUF012 - one per process, replaced on load
    key: list[Any] | None = None


def _read_cache() -> dict[str, Any] | None:
    import json

    try:
        data = json.loads(_cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_cache(plugins: list[Plugin], reported: Iterable[str]) -> None:
    import json

    path = _cache_file()
    data = {"key": _key(), "plugins": [[p.group, p.name, p.value, p.dist, p.version]
                                            for p in plugins],
            "reported": sorted(reported)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass  # a read-only cache folder only costs speed


def discover(group: str | None = None, *, check: bool = False) -> list[Plugin]:
    """The entry points of one group (or of all), from the cache when it is current.

    A process reads them once; ``check`` looks again whether anything was installed
    since (a few stat calls), for long-lived processes such as the daemon.
    """
    if _State.plugins is None or check:
        key = _key()
        if _State.plugins is None or key != _State.key:
            data = _read_cache()
            plugins: list[Plugin] | None = None
            reported: set[str] = set()
            if data is not None and data.get("key") == key:
                try:
                    plugins = [Plugin(*row) for row in data["plugins"]]
                    reported = set(data.get("reported") or [])
                except (TypeError, ValueError, KeyError):
                    plugins = None
            _State.key = key
            if plugins is None:
                plugins = _scan()
                _write_cache(plugins, reported)
            _State.plugins, _State.reported = plugins, reported
    assert _State.plugins is not None
    return [p for p in _State.plugins if group is None or p.group == group]


# -- loading and reporting -----------------------------------------------------------------


def error_text(exc: BaseException) -> str:
    """One line about why a plugin did not load."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_all(group: str, *, check: bool = False,
             ) -> tuple[list[tuple[Plugin, Any]], list[tuple[Plugin, str]]]:
    """Import every plugin of a group: (loaded, failed with the reason). Never raises."""
    loaded: list[tuple[Plugin, Any]] = []
    failed: list[tuple[Plugin, str]] = []
    for plugin in discover(group, check=check):
        try:
            loaded.append((plugin, plugin.load()))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # an import that exits or raises anything: report it
            failed.append((plugin, error_text(exc)))
    return loaded, failed


def warn_once(failed: Iterable[tuple[Plugin, str]],
              write: Callable[[str], Any] | None = None) -> list[str]:
    """Report each failure once per install (the cache remembers), on stderr by default.
    Returns the lines written."""
    lines = []
    for plugin, reason in failed:
        tag = f"{plugin.group}:{plugin.name}:{plugin.value}:{reason}"
        if tag in _State.reported:
            continue
        _State.reported.add(tag)
        lines.append(f"llm: warning: plugin '{plugin.name}' ({plugin.kind} from "
                     f"{plugin.dist}) did not load: {reason}; `llm plugins` lists plugins")
    if lines:
        out = write or sys.stderr.write
        for line in lines:
            out(line + "\n")
        if _State.plugins is not None:
            _write_cache(_State.plugins, _State.reported)
    return lines


# -- RAG readers ---------------------------------------------------------------------------


def readers() -> dict[str, Callable[..., Any]]:
    """File extension (without the dot, lowercase) -> the reader plugin's function."""
    loaded, failed = load_all("llmtui.readers", check=True)
    if failed:
        warn_once(failed)
    return {p.name.lower().lstrip("."): fn for p, fn in loaded if callable(fn)}


# -- tools the chat can call ---------------------------------------------------------------

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean",
               list: "array", dict: "object"}


@dataclass(frozen=True)
class Tool:
    """A function a model can call: a name, what it does, a JSON schema for its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any] = field(compare=False)

    def spec(self) -> dict[str, Any]:
        """The tool as the Ollama and OpenAI APIs take it."""
        return {"type": "function", "function": {
            "name": self.name, "description": self.description,
            "parameters": self.parameters}}

    def call(self, arguments: dict[str, Any]) -> str:
        """Run it with a model's arguments; the result as text for the next message."""
        import json

        result = self.fn(**arguments)
        return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None,
         description: str | None = None) -> Any:
    """Make a Tool from a function: its type hints give the schema, its docstring the
    description. Usable as ``@tool`` or ``@tool(name=...)``."""
    def make(f: Callable[..., Any]) -> Tool:
        import inspect
        import typing

        hints = typing.get_type_hints(f)
        props: dict[str, Any] = {}
        required: list[str] = []
        for pname, param in inspect.signature(f).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            hint = hints.get(pname, str)
            origin = typing.get_origin(hint) or hint
            props[pname] = {"type": _JSON_TYPES.get(origin, "string")}
            if param.default is inspect.Parameter.empty:
                required.append(pname)
        doc = (inspect.getdoc(f) or "").strip().split("\n\n")[0].replace("\n", " ")
        return Tool(name=name or f.__name__, description=description or doc,
                    parameters={"type": "object", "properties": props,
                                "required": required}, fn=f)
    return make(fn) if fn is not None else make


def as_tool(name: str, obj: Any) -> Tool:
    """A tools-group entry point as a Tool (a Tool already, or a plain function)."""
    if isinstance(obj, Tool):
        return obj
    if callable(obj):
        return tool(obj, name=name)
    raise TypeError("not a Tool or a function")


def tools() -> dict[str, Tool]:
    """The tools plugins offer, by name (a broken one is reported once and left out)."""
    loaded, failed = load_all("llmtui.tools", check=True)
    out: dict[str, Tool] = {}
    for plugin, obj in loaded:
        try:
            out[plugin.name] = as_tool(plugin.name, obj)
        except (TypeError, ValueError, NameError) as exc:
            failed.append((plugin, error_text(exc)))
    if failed:
        warn_once(failed)
    return out
