"""The chat's widgets on their own, and the app composing them (fake backend: fixed text)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from textual.app import App, ComposeResult

from llmtui.history import Conversation, Message
from llmtui.tui.widgets import AttachmentBar, ChatLog, MessageView, Sidebar, StatusBar
from tests.tui.fake import FakeBackend, screen_text
from tests.tui.test_chat import make_app, until


class Harness(App[None]):
    """One of each widget, recording the messages they post."""

    def __init__(self) -> None:
        super().__init__()
        self.posted: list[object] = []

    def compose(self) -> ComposeResult:
        yield Sidebar(id="sidebar")
        yield ChatLog(id="messages")
        yield AttachmentBar("", id="attachments")
        yield StatusBar("", id="status")

    def on_sidebar_chosen(self, event: Sidebar.Chosen) -> None:
        self.posted.append(("chosen", event.conv_id))

    def on_sidebar_searched(self, event: Sidebar.Searched) -> None:
        self.posted.append(("searched", event.text))


def test_widgets_show_state_and_post_messages() -> None:
    async def run() -> None:
        app = Harness()
        async with app.run_test(size=(100, 30)) as pilot:
            convs = [Conversation(id="a1", title="Apples", model="m"),
                     Conversation(id="b2", title="Bananas", model="m")]
            sidebar = app.query_one(Sidebar)
            await sidebar.show(convs, "b2")
            await pilot.pause()
            assert sidebar.query_one("#conversations").index == 1  # type: ignore[attr-defined]
            sidebar.focus_search()
            await pilot.press(*"ban")
            await pilot.pause()
            assert ("searched", "ban") in app.posted
            await pilot.press("enter")  # the search box hands over to the list
            await pilot.press("up", "enter")
            await pilot.pause()
            assert ("chosen", "a1") in app.posted

            status = app.query_one(StatusBar)
            status.show(model="smollm2:135m", loaded=True, used=12, context=4096,
                        state="running", rag="docs")
            await pilot.pause()
            text = screen_text(app)
            assert "● smollm2:135m │ context 12/4096 tokens │ rag docs │ daemon running" in text
            status.show(model="x:1b", loaded=False, used=0, context=None, state="down")
            await pilot.pause()
            assert "○ x:1b │ context 0 tokens │ daemon down" in screen_text(app)

            bar = app.query_one(AttachmentBar)
            bar.show([{"name": "notes.txt", "text": "abc"}])
            assert not bar.has_class("empty")
            bar.show([])
            assert bar.has_class("empty")

            log = app.query_one(ChatLog)
            await log.show(Conversation(id="", title="New chat", model="tiny:1m"))
            await pilot.pause()
            assert "New chat with tiny:1m" in screen_text(app)
            reply = Message(role="assistant", content="", model="tiny:1m", partial=True)
            view = MessageView(reply, live=True)
            await log.add(view)
            assert not log.query(".hint")  # the hint goes with the first message
            for piece in ("Hello ", "**there**"):
                reply.content += piece
                await view.write(piece)
            reply.partial = False
            reply.stats = {"eval_count": 5, "eval_duration": 10**9,
                           "first_token_duration": 2 * 10**7}
            await view.finish()
            await pilot.pause()
            text = screen_text(app)
            assert "Hello there" in text and "5 tokens · 5.0 tok/s · first token 20 ms" in text
            assert "writing" not in text
    asyncio.run(run())


def test_a_second_enter_waits_for_the_first_reply(tmp_path: Path) -> None:
    """Enter twice quickly: one reply, the second message is refused (not a cancelled
    first reply), and the app is idle only once the reply has ended."""
    async def run() -> None:
        app = make_app(tmp_path / "home", backend=FakeBackend(delay=0.02))
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause(0.2)
            await pilot.press(*"first")
            app.action_send()
            area = app.query_one("#prompt")
            area.text = "second"  # type: ignore[attr-defined]  (pilot.press would wait)
            app.action_send()  # before the first send's worker has even started
            assert app.conv is not None
            await until(pilot, lambda: len(app.conv.messages) == 2)
            await until(pilot, lambda: not app.generating and not app.sending)
            conv = app.conv
            assert [m.role for m in conv.messages] == ["user", "assistant"]
            assert conv.messages[0].content == "first"
            assert conv.messages[1].stats.get("eval_count") == 30  # finished, not cut
            assert area.text == "second"  # type: ignore[attr-defined]  (kept, not sent)
    asyncio.run(run())
