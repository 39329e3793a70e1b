"""`/rag NAME` in the full-screen chat: replies come from the collection, with sources."""

from __future__ import annotations

import asyncio

from llmtui.config import Settings
from llmtui.history import History
from llmtui.tui.app import ChatApp
from llmtui.tui.backend import DaemonBackend
from tests.tui.test_chat import send, until


def test_rag_command_in_chat(rag) -> None:
    res = rag("rag", "add", "docs/guide.md", "-c", "tuidocs")
    assert res.returncode == 0, res.stderr
    settings = Settings.load({"LLMTUI_HOME": str(rag.home)})

    async def run() -> None:
        app = ChatApp(DaemonBackend(settings), History.default(settings), settings,
                      model="smollm2:135m")
        async with app.run_test(size=(110, 30)) as pilot:
            await until(pilot, lambda: app.daemon_state == "running")
            await send(pilot, app, "/rag nosuch")
            await pilot.pause(0.5)
            assert "" not in app.rag  # an unknown collection is refused, not attached
            await send(pilot, app, "/rag tuidocs")
            await until(pilot, lambda: app.rag.get("") == "tuidocs")
            n = await send(pilot, app, "How many days are nightly backups kept?")
            conv = app.conv
            assert conv is not None
            await until(pilot, lambda: len(conv.messages) == n and not app.generating, 120)
            conv = app.conv
            assert conv is not None and app.rag.get(conv.id) == "tuidocs"
            reply = conv.messages[-1].content
            assert "**Sources:** [1] `docs/guide.md:11`" in reply
            await send(pilot, app, "/rag off")
            await until(pilot, lambda: conv.id not in app.rag)
            # The citations were saved with the reply.
            saved = History.default(settings).get(conv.id).messages[-1].content
            assert "docs/guide.md:11" in saved

    asyncio.run(run())
