"""The tool loop's parts, without a model: functions as tools, argument checks, the
built-in file tools' folder fence, approval."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import pytest

from llmtui.errors import InvalidInput
from llmtui.tools import Approver, Tool, ToolSet, approver_of, function_tool, load_functions
from llmtui.tools.approval import DENY, ONCE, SESSION
from llmtui.tools.builtin import builtin_tools
from llmtui.tools.loop import forced_schema


def weather(city: str, days: int = 1, unit: Literal["c", "f"] = "c",
            tags: list[str] | None = None) -> dict[str, object]:
    """The weather in a city.

    Longer text that is not the description."""
    return {"city": city, "days": days, "unit": unit}


def test_function_becomes_a_tool() -> None:
    tool = function_tool(weather)
    assert tool.spec() == {"type": "function", "function": {
        "name": "weather", "description": "The weather in a city.",
        "parameters": {"type": "object", "required": ["city"], "properties": {
            "city": {"type": "string"}, "days": {"type": "integer"},
            "unit": {"type": "string", "enum": ["c", "f"]},
            "tags": {"type": "array", "items": {"type": "string"}}}}}}
    assert tool.run({"city": "Oslo", "days": 2}) == \
        '{"city": "Oslo", "days": 2, "unit": "c"}'


def test_arguments_are_checked_against_the_schema() -> None:
    tools = ToolSet()
    tools.add(function_tool(weather))
    assert tools.check("weather", {"city": "Oslo"}) is None
    assert "required 'city'" in str(tools.check("weather", {}))
    assert "type integer" in str(tools.check("weather", {"city": "x", "days": "2"}))
    assert "type integer" in str(tools.check("weather", {"city": "x", "days": True}))
    assert "one of" in str(tools.check("weather", {"city": "x", "unit": "k"}))
    assert "no tool named 'nope'" in str(tools.check("nope", {}))
    assert "JSON object" in str(tools.check("weather", "Oslo"))
    with pytest.raises(InvalidInput, match="two tools"):
        tools.add(function_tool(weather))


def test_a_failing_function_is_an_error_result_not_a_crash() -> None:
    def boom(x: int) -> int:
        """Fails."""
        raise ValueError("no luck")

    tools = ToolSet()
    tools.add(function_tool(boom))
    rec = tools.call("boom", {"x": 1})
    assert (rec.status, rec.result) == ("error", "error: ValueError: no luck")


def test_load_functions_from_a_file_and_from_code(tmp_path: Path) -> None:
    f = tmp_path / "fns.py"
    f.write_text("import os\nfrom os.path import join\n"
                 "def add(a: int, b: int) -> int:\n    'Add.'\n    return a + b\n"
                 "def _private():\n    pass\n")
    assert [t.name for t in load_functions(str(f))] == ["add"]  # not join, not _private
    assert [t.name for t in load_functions("def hi(name: str):\n  return name")] == ["hi"]
    with pytest.raises(InvalidInput, match="no file"):
        load_functions(str(tmp_path / "missing.py"))
    with pytest.raises(InvalidInput, match="line 1"):
        load_functions("def broken(:")
    with pytest.raises(InvalidInput, match="failed to load: ZeroDivisionError"):
        load_functions("x = 1 / 0")
    with pytest.raises(InvalidInput, match="defines no public function"):
        load_functions("x = 1")


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "work"
    (root / "sub").mkdir(parents=True)
    (root / "notes.txt").write_text("inside\n")
    (root / "sub" / "deep.txt").write_text("deeper\n")
    (tmp_path / "secret.txt").write_text("outside\n")
    os.symlink(tmp_path / "secret.txt", root / "escape.txt")
    os.symlink(tmp_path, root / "up")
    os.symlink(root / "sub" / "deep.txt", root / "ok-link.txt")
    (root / "bin.dat").write_bytes(b"\x00\x01")
    return root


def test_fs_tools_read_inside_the_folder(folder: Path) -> None:
    tools = ToolSet()
    tools.extend(builtin_tools("fs", folder))
    assert tools.call("read_file", {"path": "notes.txt"}).result == "inside\n"
    assert tools.call("read_file", {"path": "sub/../sub/deep.txt"}).result == "deeper\n"
    assert tools.call("read_file", {"path": "ok-link.txt"}).result == "deeper\n"  # stays in
    assert tools.call("read_file", {"path": str(folder / "notes.txt")}).result == "inside\n"
    listing = tools.call("list_files", {}).result.splitlines()
    assert "sub/" in listing and "notes.txt" in listing
    assert tools.call("list_files", {"path": "sub"}).result == "deep.txt"


@pytest.mark.parametrize("path", ["../secret.txt", "sub/../../secret.txt", "escape.txt",
                                  "up/secret.txt", "/etc/passwd", "up"])
def test_fs_tools_refuse_paths_outside_the_folder(folder: Path, path: str) -> None:
    tools = ToolSet()
    tools.extend(builtin_tools("fs", folder))
    for name in ("read_file", "list_files"):
        rec = tools.call(name, {"path": path})
        assert rec.status == "error" and "outside the working folder" in rec.result, rec
        assert "outside\n" not in rec.result


def test_fs_tools_other_errors(folder: Path) -> None:
    tools = ToolSet()
    tools.extend(builtin_tools("fs", folder))
    assert "binary" in tools.call("read_file", {"path": "bin.dat"}).result
    assert "no file" in tools.call("read_file", {"path": "sub"}).result
    assert "no folder" in tools.call("list_files", {"path": "notes.txt"}).result
    with pytest.raises(InvalidInput, match="--tools takes fs, shell, plugins"):
        builtin_tools("fs,web", folder)


def test_shell_tool_runs_in_the_folder_and_always_asks(folder: Path) -> None:
    (tool,) = builtin_tools("shell", folder)
    assert tool.always_ask
    assert tool.run({"command": "cat notes.txt; exit 3"}) == "exit status 3\ninside\n"


def _tool(name: str = "t", always_ask: bool = False) -> Tool:
    return Tool(name, "", {"type": "object"}, lambda a: "ran", always_ask=always_ask)


def test_approval_policies() -> None:
    lines: list[str] = []
    quiet = lines.append
    # nobody to ask: refused, with a line that says how to allow it
    ok, why = Approver(show=quiet).decide(_tool(), {"a": 1})
    assert not ok and "approval" in why
    assert lines[0] == 'tool call: t({"a": 1})'
    assert "no terminal" in lines[1] and "--allow-tool t" in lines[1]
    assert Approver(yes=True, show=quiet).decide(_tool(), {})[0]
    assert Approver(allow=["t"], show=quiet).decide(_tool(), {})[0]
    # --yes does not cover a tool that always asks; naming it does
    assert not Approver(yes=True, show=quiet).decide(_tool(always_ask=True), {})[0]
    assert Approver(allow=["t"], show=quiet).decide(_tool(always_ask=True), {})[0]
    # answers: once asks again next time; session does not; deny tells the model
    answers = iter([ONCE, SESSION, DENY])
    asked: list[str] = []

    def ask(tool: Tool, args: dict[str, object]) -> str:
        asked.append(tool.name)
        return next(answers)

    a = Approver(ask=ask, show=quiet)
    assert a.decide(_tool(), {})[0] and a.decide(_tool(), {})[0]
    assert a.decide(_tool(), {})[0] and asked == ["t", "t"]  # allowed for the session
    ok, why = a.decide(_tool("u"), {})
    assert not ok and why == "the user denied this call"
    # a tool that always asks is asked every time, even after "session"
    answers = iter([SESSION, DENY])
    a = Approver(ask=ask, show=quiet)
    assert a.decide(_tool("s", True), {})[0]
    assert not a.decide(_tool("s", True), {})[0]


def test_sdk_approve_values() -> None:
    assert approver_of(True).decide(_tool(), {})[0]
    # the SDK's default never runs the shell unasked; a function may allow it
    assert not approver_of(True).decide(_tool(always_ask=True), {})[0]
    assert approver_of(lambda name, args: True).decide(_tool(always_ask=True), {})[0]
    assert not approver_of(False).decide(_tool(), {})[0]
    assert approver_of(lambda name, args: args.get("ok")).decide(_tool(), {"ok": 1})[0]
    assert not approver_of(lambda name, args: False).decide(_tool(), {})[0]


def test_forced_schema_values() -> None:
    tools = ToolSet()
    tools.add(function_tool(weather))
    assert forced_schema(tools, None) is None and forced_schema(tools, "auto") is None
    assert forced_schema(tools, "required")["properties"]["name"] == {"const": "weather"}
    assert forced_schema(tools, "weather")["required"] == ["name", "arguments"]
    with pytest.raises(InvalidInput, match="not 'nope'"):
        forced_schema(tools, "nope")
    with pytest.raises(InvalidInput, match="needs tools"):
        forced_schema(ToolSet(), "required")


def test_plugin_tools_join_with_tools_plugins(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT
    from tests.plugintools import make_dist

    site = tmp_path / "site"
    make_dist(site, "llmtui-adder", {"llmtui.tools": {"add": "adder:add"}}, {"adder.py": (
        "def add(a: int, b: int) -> int:\n    '''Add two numbers.'''\n    return a + b\n")})
    code = ("from llmtui.tools import ToolSet\n"
            "from llmtui.tools.builtin import builtin_tools\n"
            "t = ToolSet(); t.extend(builtin_tools('plugins'))\n"
            "print(t.names(), t.call('add', {'a': 2, 'b': 3}).result)\n")
    env = {**os.environ, "PYTHONPATH": str(site), "LLMTUI_HOME": str(tmp_path / "home")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "['add'] 5"
