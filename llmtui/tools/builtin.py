"""The built-in tools, off unless asked for (``--tools fs,shell,plugins``).

``fs``: read and list files below one folder (the working folder); a path that leads
out of it, by ``..``, an absolute path or a symlink, is refused. ``shell``: run a
command in that folder; it asks before every call (``--yes`` does not cover it; only
``--allow-tool run_command`` does). ``plugins``: the tools installed plugins offer."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from llmtui.errors import InvalidInput
from llmtui.tools.core import MAX_RESULT, Tool, ToolFailed

GROUPS = ("fs", "shell", "plugins")
#: Seconds a shell command may run.
SHELL_TIMEOUT = 60.0


def inside(root: Path, raw: str) -> Path:
    """``raw`` resolved below ``root`` (symlinks followed), or ToolFailed."""
    if not isinstance(raw, str) or "\x00" in raw:
        raise ToolFailed("the path must be a string")
    base = root.resolve()
    target = (base / raw).resolve()
    if target != base and base not in target.parents:
        raise ToolFailed(f"'{raw}' is outside the working folder; only paths below "
                         f"{base} can be read")
    return target


def fs_tools(root: Path) -> list[Tool]:
    def read_file(args: dict[str, Any]) -> str:
        path = inside(root, args["path"])
        if not path.is_file():
            raise ToolFailed(f"no file '{args['path']}'")
        data = path.read_bytes()[: MAX_RESULT * 4]
        if b"\x00" in data:
            raise ToolFailed(f"'{args['path']}' is a binary file")
        return data.decode("utf-8", errors="replace")

    def list_files(args: dict[str, Any]) -> str:
        path = inside(root, args.get("path") or ".")
        if not path.is_dir():
            raise ToolFailed(f"no folder '{args.get('path')}'")
        lines = []
        for entry in sorted(path.iterdir(), key=lambda p: p.name)[:1000]:
            kind = "/" if entry.is_dir() else "@" if entry.is_symlink() else ""
            lines.append(entry.name + kind)
        return "\n".join(lines) or "(empty folder)"

    path_arg = {"type": "string", "description": "A path relative to the working folder"}
    return [
        Tool("read_file", "Read a text file below the working folder.",
             {"type": "object", "properties": {"path": path_arg}, "required": ["path"]},
             read_file),
        Tool("list_files", "List the files in a folder below the working folder "
             "(folders end with /).",
             {"type": "object", "properties": {"path": path_arg}, "required": []},
             list_files),
    ]


def shell_tools(root: Path) -> list[Tool]:
    def run_command(args: dict[str, Any]) -> str:
        try:
            done = subprocess.run(args["command"], shell=True, cwd=root, text=True,
                                  capture_output=True, timeout=SHELL_TIMEOUT,
                                  stdin=subprocess.DEVNULL, errors="replace")
        except subprocess.TimeoutExpired:
            raise ToolFailed(f"the command ran past {SHELL_TIMEOUT:.0f} s and was "
                             "stopped") from None
        return f"exit status {done.returncode}\n{done.stdout}{done.stderr}"

    return [Tool("run_command", "Run a shell command in the working folder; returns its "
                 "exit status and output.",
                 {"type": "object", "properties": {"command": {"type": "string"}},
                  "required": ["command"]}, run_command, always_ask=True)]


def builtin_tools(spec: str, root: Path | None = None) -> list[Tool]:
    """The tools of ``--tools fs,shell``."""
    groups = [g.strip() for g in spec.split(",") if g.strip()]
    unknown = [g for g in groups if g not in GROUPS]
    if unknown or not groups:
        raise InvalidInput(f"--tools takes {', '.join(GROUPS)} (comma-separated), "
                           f"not '{spec}'")
    base = root or Path.cwd()
    tools: list[Tool] = []
    if "fs" in groups:
        tools += fs_tools(base)
    if "shell" in groups:
        tools += shell_tools(base)
    if "plugins" in groups:
        tools += plugin_tools()
    return tools


def plugin_tools() -> list[Tool]:
    """The tools installed plugins offer (the ``llmtui.tools`` entry points)."""
    from llmtui.plugins import tools

    def runner(plugin_tool: Any) -> Any:
        return lambda arguments: plugin_tool.call(arguments)

    return [Tool(t.name, t.description, t.parameters, runner(t)) for t in tools().values()]
