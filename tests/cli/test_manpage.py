"""The man page is the command tree's: up to date, complete, and clean roff."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from llmtui.cli.manpage import esc, render
from tests.conftest import ROOT

PAGE = ROOT / "man" / "llm.1"


def test_committed_page_matches_the_command_tree() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), (
        "man/llm.1 is out of date: run `make man`")


def test_every_command_is_documented() -> None:
    import typer

    from llmtui.cli.app import app

    page = render()
    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        if not getattr(cmd, "hidden", False):
            assert f'.SS "llm {name} ' in page, name
    assert ".SH EXIT STATUS" in page and "MODEL_NOT_FOUND" not in page  # words, not names
    assert esc(".hidden\\n") == "\\&.hidden\\en"


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_roff_renders_without_warnings() -> None:
    res = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(PAGE)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stderr == "", res.stderr
