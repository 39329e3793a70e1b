"""Plugins through entry points: the real example plugin installed and used; broken
plugins reported once and never fatal; the tool registry; plugin themes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmtui.errors import ExitCode
from tests.conftest import ROOT, Runner, one_line_error
from tests.plugintools import install_example, make_dist, make_docx


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("plugin")
    return install_example(work / "site", work)


def runner(home: Path, *paths: Path) -> Runner:
    return Runner({"LLMTUI_HOME": str(home), "NO_COLOR": "1",
                   "PYTHONPATH": os.pathsep.join(str(p) for p in paths)})


def test_example_plugin_adds_a_command_and_a_reader(example_site: Path,
                                                    tmp_path: Path) -> None:
    llm = runner(tmp_path / "home", example_site)
    res = llm("plugins", "--json")
    assert res.returncode == 0, res.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(res.stdout)}
    assert rows[("command", "docx")]["state"] == "ok"
    assert rows[("reader", "docx")]["state"] == "ok"
    assert rows[("reader", "docx")]["package"] == "llmtui-docx"
    assert ("backend", "llamacpp") not in rows  # built-in ones only with --all
    full = json.loads(llm("plugins", "--all", "--json").stdout)
    assert any(r["name"] == "llamacpp" and r["builtin"] for r in full)
    assert "docx" in llm("--help").stdout
    doc = make_docx(tmp_path / "memo.docx", "Quarterly memo",
                    ["The Vantablue project ships on the ninth of March."],
                    [["owner", "Ingrid"]])
    res = llm("docx", str(doc))
    assert res.returncode == 0, res.stderr
    assert res.stdout == ("# Quarterly memo\n\nThe Vantablue project ships on the ninth of "
                          "March.\n\nowner | Ingrid\n")
    res = llm("docx", str(tmp_path / "missing.docx"))
    assert res.returncode == ExitCode.INVALID_INPUT
    assert "cannot read" in one_line_error(res.stderr)
    (tmp_path / "fake.docx").write_bytes(b"not a zip at all")
    res = llm("docx", str(tmp_path / "fake.docx"))
    assert res.returncode == ExitCode.INVALID_INPUT
    assert "not a Word document" in one_line_error(res.stderr)
    # without the plugin on the path, the command is gone again (the cache follows)
    llm_plain = runner(tmp_path / "home")
    assert "docx" not in llm_plain("--help").stdout
    assert json.loads(llm_plain("plugins", "--json").stdout) == []


BROKEN = {
    "llmtui.commands": {"ghost": "no_such_module:cmd", "run": "brokenmods:ok",
                        "badsig": "brokenmods:bad_signature", "fine": "brokenmods:ok"},
    "llmtui.readers": {"odt": "brokenmods:boom_on_import"},
    "llmtui.tools": {"nothing": "brokenmods:not_a_tool"},
    "llmtui.themes": {"neon": "brokenmods:bad_theme"},
}
BROKEN_MODULES = {
    "brokenmods.py": (
        "import typer\n\n"
        "def ok(name: str = typer.Argument('x')) -> None:\n"
        "    '''A working plugin command.'''\n"
        "    print('fine ' + name)\n\n"
        "def bad_signature(pairs: list[tuple[str, str]]) -> None:\n"
        "    '''Typer cannot build this one.'''\n\n"
        "not_a_tool = 42\n"
        "bad_theme = {'name': 'neon'}\n\n"
        "def __getattr__(name):\n"
        "    if name == 'boom_on_import':\n"
        "        raise RuntimeError('the reader exploded')\n"
        "    raise AttributeError(name)\n"),
}


def test_broken_plugins_are_reported_once_and_never_break_the_cli(tmp_path: Path) -> None:
    site = tmp_path / "site"
    make_dist(site, "llmtui-broken", BROKEN, BROKEN_MODULES)
    llm = runner(tmp_path / "home", site)
    res = llm("list")
    assert res.returncode == 0, res.stderr
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("llm: warning:")]
    assert len(warnings) == 3, res.stderr  # the command plugins that did not load
    text = "\n".join(warnings)
    assert "'ghost'" in text and "ModuleNotFoundError" in text
    assert "'run'" in text and "clashes with the command 'run'" in text
    assert "'badsig'" in text and "Traceback" not in res.stderr
    assert llm("list").stderr == ""  # reported once
    assert llm("fine", "there").stdout == "fine there\n"  # the good one works
    assert llm("run", "--help").returncode == 0  # the built-in `run` is untouched
    rows = {(r["kind"], r["name"]): r for r in json.loads(llm("plugins", "--json").stdout)}
    assert rows[("command", "fine")]["state"] == "ok"
    for key in [("command", "ghost"), ("command", "run"), ("command", "badsig"),
                ("reader", "odt"), ("tool", "nothing"), ("theme", "neon")]:
        assert rows[key]["state"] == "failed" and rows[key]["error"], key
    assert "the reader exploded" in rows[("reader", "odt")]["error"]
    table = llm("plugins").stdout
    assert "failed: " in table and "ghost" in table
    # a new plugin installed beside them is seen at once (the folder changed)
    make_dist(site, "llmtui-late", {"llmtui.commands": {"late": "brokenmods:ok"}})
    assert llm("late").stdout == "fine x\n"


def test_tool_registry() -> None:
    from llmtui.plugins import Tool, as_tool, tool

    @tool
    def weather(city: str, days: int = 1, metric: bool = True) -> dict[str, object]:
        """The forecast for a city.

        More detail that is not part of the description."""
        return {"city": city, "days": days, "metric": metric}

    assert isinstance(weather, Tool)
    assert weather.spec() == {"type": "function", "function": {
        "name": "weather", "description": "The forecast for a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string"}, "days": {"type": "integer"},
            "metric": {"type": "boolean"}}, "required": ["city"]}}}
    assert json.loads(weather.call({"city": "Oslo", "days": 2})) == {
        "city": "Oslo", "days": 2, "metric": True}

    def shout(text: str) -> str:
        """Upper-case the text."""
        return text.upper()

    named = as_tool("loud", shout)
    assert named.name == "loud" and named.call({"text": "hi"}) == "HI"
    with pytest.raises(TypeError):
        as_tool("x", 42)


def test_tools_and_themes_from_plugins(tmp_path: Path) -> None:
    site = tmp_path / "site"
    make_dist(site, "llmtui-extras", {
        "llmtui.tools": {"add": "extras:add"},
        "llmtui.themes": {"mint": "extras:MINT", "file": "extras:theme_file"},
    }, {"extras.py": (
        "from pathlib import Path\n"
        "def add(a: int, b: int) -> int:\n    '''Add two numbers.'''\n    return a + b\n"
        "MINT = {'name': 'mint', 'dark': False, 'primary': '#3eb489'}\n"
        "def theme_file():\n    return Path(__file__).with_name('dusk.toml')\n"),
        "dusk.toml": 'name = "dusk"\nprimary = "#c06c84"\n'})
    code = (
        "from llmtui import plugins\n"
        "from llmtui.config import Settings\n"
        "from llmtui.tui.themes import load_themes\n"
        "tools = plugins.tools()\n"
        "print(tools['add'].call({'a': 2, 'b': 3}), tools['add'].spec()['function']['name'])\n"
        "themes, problems = load_themes(Settings.load())\n"
        "print(sorted(t.name for t in themes if t.name in ('mint', 'dusk')), problems)\n")
    env = {**os.environ, "PYTHONPATH": str(site), "LLMTUI_HOME": str(tmp_path / "home")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["5 add", "['dusk', 'mint'] []"]
