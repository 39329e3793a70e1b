"""`llm history` and the SQLite store behind the chat."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from llmtui.config import Settings
from llmtui.errors import ExitCode
from llmtui.history import History, Message
from tests.conftest import one_line_error


def seed(home: Path) -> History:
    h = History.default(Settings.load({"LLMTUI_HOME": str(home)}))
    a = h.create(title="About cats", model="smollm2:135m", system="Be brief.")
    h.add(a.id, Message(role="user", content="Tell me about cats"))
    h.add(a.id, Message(role="assistant", content="Cats purr.", model="smollm2:135m",
                        stats={"eval_count": 3}))
    b = h.create(title="Code", model="gemma3:270m")
    h.add(b.id, Message(role="user", content="Write ```py\nx=1\n```"))
    h.add(b.id, Message(role="assistant", content="Half a repl", partial=True))
    return h


def test_store_is_wal_and_survives_concurrent_readers(home: Path) -> None:
    h = seed(home)
    db = home / "data" / "history.db"
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other = History(db)
    assert [c.title for c in other.list()] == ["Code", "About cats"]
    assert [c.title for c in h.list("purr")] == ["About cats"]


def test_history_cli(llm, home: Path, tmp_path: Path) -> None:
    seed(home)
    res = llm("history", "list")
    assert res.returncode == 0 and "About cats" in res.stdout and "Code" in res.stdout
    shown = llm("history", "show", "2")
    assert "# About cats" in shown.stdout and "Cats purr." in shown.stdout
    cut = llm("history", "show", "1")
    assert "(cut off)" in cut.stdout
    out = tmp_path / "cats.json"
    assert llm("history", "export", "2", "-f", "json", "-o", str(out)).returncode == 0
    data = json.loads(out.read_text())
    assert data["format"] == "llmtui-conversation" and len(data["messages"]) == 2
    md = llm("history", "export", "2").stdout
    assert md.startswith("# About cats")
    res = llm("history", "rm", "2")
    assert res.returncode == 0
    assert "About cats" not in llm("history", "list").stdout
    res = llm("history", "import", str(out))
    assert res.returncode == 0 and "2 messages" in res.stderr
    assert "About cats" in llm("history", "list").stdout
    listed = json.loads(llm("history", "list", "--json").stdout)
    assert {c["title"] for c in listed} == {"About cats", "Code"}


def test_history_cli_bad_input(llm, home: Path, tmp_path: Path) -> None:
    seed(home)
    res = llm("history", "show", "zzzz")
    assert res.returncode == ExitCode.INVALID_INPUT
    assert "no conversation" in one_line_error(res.stderr)
    res = llm("history", "export", "1", "-f", "pdf")
    assert res.returncode == ExitCode.INVALID_INPUT and "pdf" in one_line_error(res.stderr)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    res = llm("history", "import", str(bad))
    assert res.returncode == ExitCode.INVALID_INPUT and "not JSON" in one_line_error(res.stderr)
    bad.write_text('{"messages": []}')
    res = llm("history", "import", str(bad))
    assert res.returncode == ExitCode.INVALID_INPUT
    assert "llmtui conversation" in one_line_error(res.stderr)
    res = llm("history", "import", str(tmp_path / "missing.json"))
    assert res.returncode == ExitCode.INVALID_INPUT
    # nothing was lost by the failed commands
    assert len(json.loads(llm("history", "list", "--json").stdout)) == 2


def test_chat_needs_a_terminal(llm, home: Path) -> None:
    res = llm("chat", input="hello")
    assert res.returncode == ExitCode.USAGE
    assert "terminal" in one_line_error(res.stderr)
    res = llm("chat", "Bad Name!!")
    assert res.returncode in (ExitCode.USAGE, ExitCode.INVALID_INPUT)
