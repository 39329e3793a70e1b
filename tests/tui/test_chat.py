"""The chat app against a real daemon and the real tiny models (Pilot), plus a real
terminal run in tmux."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from llmtui.config import Settings
from llmtui.history import History
from llmtui.tui.app import ChatApp, MessageView
from llmtui.tui.backend import DaemonBackend
from llmtui.tui.screens import ErrorModal
from tests.conftest import ROOT, import_models
from tests.tui.fake import FakeBackend, screen_text

LONG = {"num_predict": 400, "temperature": 0, "repeat_penalty": 1.0}
#: A prompt the test model answers at length (its count "from 1 to 500" stops at 20, under a
#: second on a fast machine).
STORY = "Write a long story about a lighthouse keeper and a storm."


@pytest.fixture()
def chat_home(home: Path, smollm: Path, gemma: Path) -> Path:
    import_models(home, smollm, gemma)
    return home


def make_app(home: Path, backend: Any = None, **kw: Any) -> ChatApp:
    settings = Settings.load({"LLMTUI_HOME": str(home)})
    return ChatApp(backend or DaemonBackend(settings), History.default(settings), settings,
                   **kw)


async def send(pilot: Any, app: ChatApp, text: str) -> int:
    """Type a message and send it without waiting for the app to go idle (pilot.press
    would wait for the whole reply); returns how many messages to expect after it."""
    await pilot.press(*text)
    assert app.conv is not None
    expected = len(app.conv.messages) + 2
    app.action_send()
    return expected


async def until(pilot: Any, cond: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting; the screen:\n" + screen_text(pilot.app))
        await pilot.pause(0.05)


def test_chat_flow_stream_stop_persist_restart(chat_home: Path) -> None:
    async def first_run() -> None:
        app = make_app(chat_home)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.daemon_state == "running")
            n = await send(pilot, app, "Say hello")
            conv = app.conv
            assert conv is not None
            await until(pilot, lambda: len(conv.messages) == n and not app.generating)
            conv = app.conv
            assert conv is not None and conv.id
            reply = conv.messages[-1]
            assert reply.role == "assistant" and reply.content and not reply.partial
            assert reply.stats["eval_count"] > 0 and reply.model == "smollm2:135m"
            await until(pilot, lambda: "tok/s" in screen_text(app), timeout=10)
            # A long reply, stopped with Esc mid-stream.
            conv.options = LONG
            n = await send(pilot, app, STORY)
            # (the new reply's own message: "generating" turns on before it is added)
            await until(pilot, lambda: app.generating and len(conv.messages) == n and
                        len(conv.messages[-1].content) > 40)
            await pilot.press("escape")
            await until(pilot, lambda: not app.generating)
            stopped = conv.messages[-1]
            assert stopped.stats.get("stopped") and not stopped.partial
            assert 40 < len(stopped.content) < 1500
            # the stopped reply's stats line (its label: on a loaded machine a toast or
            # a late layout pass may cover or scroll the screen text for a while)
            await until(pilot, lambda: "■ stopped after" in str(
                app.query(MessageView).last().query(".stats").last().content), timeout=10)
            # Regenerate replaces the stopped reply with a fresh one.
            conv.options = {"num_predict": 8}
            await app.action_regenerate()
            await until(pilot, lambda: not app.generating and
                        conv.messages[-1].stats.get("eval_count") == 8)
            assert len(conv.messages) == 4 and conv.messages[-1].stats.get("eval_count") == 8
    asyncio.run(first_run())

    history = History.default(Settings.load({"LLMTUI_HOME": str(chat_home)}))
    saved = history.get(history.list()[0].id)
    assert [m.role for m in saved.messages] == ["user", "assistant", "user", "assistant"]
    assert saved.title == "Say hello"

    async def second_run() -> None:
        app = make_app(chat_home)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause(0.5)
            assert app.conv is not None and app.conv.id == saved.id
            text = screen_text(app)
            assert "Say hello" in text and "Write a long story" in text
            # edit and resend the last message
            await pilot.press("ctrl+g")
            area = app.query_one("#prompt")
            assert STORY in area.text  # type: ignore[attr-defined]
            assert len(app.conv.messages) == 2
    asyncio.run(second_run())


def test_switch_model_mid_conversation(chat_home: Path) -> None:
    async def run() -> None:
        app = make_app(chat_home)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.daemon_state == "running")
            assert app.conv is not None
            app.conv.options = {"num_predict": 6}
            await send(pilot, app, "hi")
            await until(pilot, lambda: len(app.conv.messages) == 2 and not app.generating)
            await pilot.press("ctrl+l")
            await pilot.pause(0.5)
            await pilot.press("down")  # the picker lists gemma3:270m after smollm2? find it
            picker_text = screen_text(app)
            assert "gemma3:270m" in picker_text and "Q4_1" in picker_text
            ol = app.screen.query_one("OptionList")
            ids = [ol.get_option_at_index(i).id for i in range(ol.option_count)]
            ol.highlighted = ids.index("gemma3:270m")
            await pilot.press("enter")
            await until(pilot, lambda: app.conv.model == "gemma3:270m")
            await send(pilot, app, "hello again")
            await until(pilot, lambda: len(app.conv.messages) == 4 and not app.generating)
            assert app.conv.messages[-1].model == "gemma3:270m"
            assert app.conv.messages[1].model == "smollm2:135m"
            assert app.history.get(app.conv.id).model == "gemma3:270m"
    asyncio.run(run())


def test_missing_model_and_daemon_killed_mid_reply(chat_home: Path) -> None:
    async def run() -> None:
        app = make_app(chat_home, model="nope:1b")
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.daemon_state == "running")
            await send(pilot, app, "hi")
            await until(pilot, lambda: isinstance(app.screen, ErrorModal))
            await until(pilot, lambda: "Model not installed" in screen_text(app), timeout=10)
            await pilot.press("escape")
            app.use_model("smollm2:135m")
            assert app.conv is not None
            app.conv.options = LONG
            await send(pilot, app, "Count from 1 to 500, separated by commas.")
            await until(pilot, lambda: app.generating and
                        len(app.conv.messages[-1].content) > 30)
            status = (chat_home / "run" / "daemon.json").read_text()
            import json

            os.kill(json.loads(status)["pid"], 9)
            await until(pilot, lambda: not app.generating)
            kept = app.conv.messages[-1]
            assert len(kept.content) > 30 and kept.stats.get("error")
            assert isinstance(app.screen, ErrorModal)
            saved = app.history.get(app.conv.id).messages[-1]
            assert saved.content == kept.content
            await pilot.press("escape")
            # The next message starts a new daemon.
            app.conv.options = {"num_predict": 4}
            expected = await send(pilot, app, "again")
            await until(pilot, lambda: not app.generating and
                        len(app.conv.messages) == expected, timeout=90)
            last = app.conv.messages[-1]
            assert last.stats.get("eval_count"), last.stats  # a new daemon answered
    asyncio.run(run())


KILL_SCRIPT = """
import asyncio, os, sys
sys.path.insert(0, {root!r})
from llmtui.config import Settings
from llmtui.history import History
from llmtui.tui.app import ChatApp
from llmtui.tui.backend import DaemonBackend

async def main():
    s = Settings.load()
    app = ChatApp(DaemonBackend(s), History.default(s), s)
    async with app.run_test(size=(80, 24)) as pilot:
        while app.daemon_state != "running":
            await pilot.pause(0.05)
        app.conv.options = {{"num_predict": 400, "temperature": 0, "repeat_penalty": 1.0}}
        await pilot.press(*{story!r})
        app.action_send()
        # killed as soon as a periodic save holds part of the reply: not after a fixed
        # wait, which a fast machine spends finishing the whole reply
        saved = History.default(s)
        while True:
            await pilot.pause(0.05)
            conv = app.conv
            if conv is None or not conv.id or not conv.messages:
                continue
            stored = saved.get(conv.id).messages
            if stored and stored[-1].role == "assistant" and stored[-1].partial \
                    and len(stored[-1].content) > 20:
                break
        os.kill(os.getpid(), 9)
asyncio.run(main())
"""


def test_app_killed_mid_reply_keeps_the_partial_reply(chat_home: Path) -> None:
    res = subprocess.run([sys.executable, "-c", KILL_SCRIPT.format(root=str(ROOT),
                                                                  story=STORY)],
                         env={**os.environ, "LLMTUI_HOME": str(chat_home)},
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == -9, res.stderr[-2000:]
    history = History.default(Settings.load({"LLMTUI_HOME": str(chat_home)}))
    conv = history.get(history.list()[0].id)
    last = conv.messages[-1]
    assert last.role == "assistant" and last.partial and len(last.content) > 20
    assert "(cut off)" in conv.to_markdown()

    async def reopen() -> None:
        app = make_app(chat_home, backend=FakeBackend())
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause(0.3)
            await until(pilot, lambda: "cut off" in screen_text(app), timeout=10)
            assert app.query(MessageView).last().has_class("partial")
    asyncio.run(reopen())


def test_theme_switch_is_remembered_and_user_themes_load(tmp_path: Path) -> None:
    home = tmp_path / "home"
    themes = home / "config" / "themes"
    themes.mkdir(parents=True)
    (themes / "mine.toml").write_text('name = "mine"\ndark = false\nprimary = "#ff0000"\n')
    (themes / "broken.toml").write_text('name = "broken"\nprimary = "not-a-colour"\n')

    async def run() -> str:
        app = make_app(home, backend=FakeBackend())
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.2)
            assert {"llmtui-dark", "llmtui-light", "high-contrast", "solarized-dark",
                    "mine"} <= set(app.available_themes)
            assert "broken" not in app.available_themes
            assert app.theme == "llmtui-dark"
            await pilot.press("ctrl+t")
            await pilot.pause(0.1)
            changed = app.theme
            assert changed != "llmtui-dark"
            app.set_theme("mine")
            await pilot.pause(0.1)
        return changed
    asyncio.run(run())
    cfg = (home / "config" / "config.toml").read_text()
    assert 'theme = "mine"' in cfg

    async def again() -> None:
        app = make_app(home, backend=FakeBackend())
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.1)
            assert app.theme == "mine"
    asyncio.run(again())


def test_keymap_override_and_palette(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    (home / "config" / "keymap.toml").write_text('"chat.regenerate" = "f9"\n'
                                                 '"no.such" = "x"\n')
    backend = FakeBackend()

    async def run() -> None:
        app = make_app(home, backend=backend)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause(0.2)
            await pilot.press(*"hi", "enter")
            await app.workers.wait_for_complete()
            await pilot.press("f9")
            await pilot.pause(0.3)
            await app.workers.wait_for_complete()
            assert len(backend.requests) == 2  # regenerated with the new key
            await pilot.press("f1")
            await pilot.pause(0.2)
            await until(pilot, lambda: "f9" in screen_text(app), timeout=10)
            await pilot.press("escape")
            await pilot.press("ctrl+p")
            await pilot.pause(0.3)
            await pilot.press(*"model manager")
            await pilot.pause(0.5)
            await until(pilot, lambda: "Model manager" in screen_text(app), timeout=10)
    asyncio.run(run())


def test_sidebar_rename_search_delete_export_import(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"

    async def run() -> None:
        app = make_app(home, backend=FakeBackend())
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause(0.2)
            for text in ("first topic", "second topic"):
                await pilot.press("ctrl+n", *text, "enter")
                await app.workers.wait_for_complete()
            assert [c.title for c in app.history.list()] == ["second topic", "first topic"]
            await pilot.press("f2")
            await pilot.pause(0.2)
            await pilot.press("end", "ctrl+u", *"Renamed", "enter")
            await pilot.pause(0.2)
            assert app.history.list()[0].title == "Renamed"
            await pilot.press("ctrl+f", *"first")
            await pilot.pause(0.3)
            await until(pilot, lambda: "Renamed" not in screen_text(app), timeout=10)
            assert "first topic" in screen_text(app)
            await pilot.press("ctrl+s")
            await pilot.pause(0.2)
            exported = list(tmp_path.glob("*.md"))
            assert exported and "## Assistant" in exported[0].read_text()
            await pilot.press("f8")
            await pilot.pause(0.2)
            await pilot.press("n")  # cancelled: nothing deleted
            await pilot.pause(0.1)
            assert len(app.history.list()) == 2
            await pilot.press("f8")
            await pilot.pause(0.2)
            await pilot.press("y")
            await pilot.pause(0.3)
            assert len(app.history.list()) == 1
    asyncio.run(run())


def test_attach_file(tmp_path: Path) -> None:
    note = tmp_path / "notes.txt"
    note.write_text("The launch code is 4242.")
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    backend = FakeBackend()

    async def run() -> None:
        app = make_app(tmp_path / "home", backend=backend)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause(0.2)
            app.attach_path(binary)
            assert not app.pending
            await pilot.press("ctrl+o")
            await pilot.pause(0.3)
            app.screen.query_one("#path").focus()
            await pilot.press(*str(note), "enter")
            await pilot.pause(0.2)
            assert app.pending and app.pending[0]["name"] == "notes.txt"
            await pilot.press(*"What is the code?", "enter")
            await app.workers.wait_for_complete()
            sent = backend.requests[-1]["messages"][-1]["content"]
            assert "4242" in sent and "What is the code?" in sent
            await until(pilot, lambda: "notes.txt" in screen_text(app), timeout=10)
    asyncio.run(run())


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by make sysdeps")
def test_in_tmux_with_piped_text(chat_home: Path) -> None:
    """A real terminal (tmux, 80x24): pipe text in, see it attached, quit with Ctrl+Q."""
    session = f"llmtui-test-{os.getpid()}"
    env = f"LLMTUI_HOME={chat_home} NO_COLOR=1"
    cmd = f"cd {ROOT} && echo 'piped words here' | {env} {sys.executable} -m llmtui chat"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", cmd],
                   check=True)
    try:
        screen = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                    capture_output=True, text=True).stdout
            if "attached:" in screen and "daemon running" in screen:
                break
            time.sleep(0.2)
        assert "attached:" in screen and "stdin" in screen, screen
        subprocess.run(["tmux", "send-keys", "-t", session, "C-q"], check=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            alive = subprocess.run(["tmux", "has-session", "-t", session],
                                   capture_output=True).returncode == 0
            if not alive:
                break
            time.sleep(0.2)
        assert not alive, "Ctrl+Q should quit"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
