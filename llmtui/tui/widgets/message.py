"""One message of the transcript: who said it, its Markdown, and a reply's stats."""

from __future__ import annotations

import contextlib
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.widgets import Label, Markdown

from llmtui.history import Message
from llmtui.markdown import code_blocks
from llmtui.tui.widgets.thinking import ThinkingView

__all__ = ["MessageView", "code_blocks", "stats_line"]


class MessageView(Vertical):
    """One message: who said it, the Markdown text, and for replies the stats."""

    def __init__(self, message: Message, live: bool = False) -> None:
        classes = f"message {message.role}" + (" partial" if message.partial and not live
                                                else "")
        super().__init__(classes=classes)
        self.message = message
        self.live = live  # being written now: not (yet) cut off
        self._stream: Any = None
        self._thinking: ThinkingView | None = None  # mounted when reasoning arrives

    def who(self) -> str:
        m = self.message
        who = {"user": "You", "assistant": "Assistant"}.get(m.role, m.role.title())
        if m.role == "assistant" and m.model:
            who += f" · {m.model}"
        if self.live:
            who += " · writing…"
        elif m.partial:
            who += " · cut off"
        return who

    def compose(self) -> ComposeResult:
        yield Label(self.who(), classes="who")
        if self.message.role == "assistant" and self.message.stats.get("thinking"):
            yield ThinkingView(str(self.message.stats["thinking"]))
        yield Markdown(self.message.content, classes="body")
        for att in self.message.attachments:
            if att.get("kind") == "image":
                from llmtui.tui.images import image_view

                yield image_view(self.app, att)
            else:
                yield Label(f"📎 {att.get('name', 'file')}", classes="stats")
        if self.message.role == "assistant":
            yield Label(stats_line(self.message, self.live), classes="stats")

    async def think(self, text: str) -> None:
        """Append streamed reasoning to the fold above the reply (made on first use)."""
        if self._thinking is None:
            self._thinking = ThinkingView(live=True)
            await self.mount(self._thinking, before=self.query_one(Markdown))
        self._thinking.add(text)

    @property
    def thought(self) -> str:
        """The reasoning streamed into this view."""
        return self._thinking.text if self._thinking is not None else ""

    async def write(self, text: str) -> None:
        """Append streamed text to the Markdown (the caller keeps message.content)."""
        if self._thinking is not None:
            self._thinking.finish()  # the answer has begun: the reasoning is over
        if self._stream is None:
            self._stream = Markdown.get_stream(self.query_one(Markdown))
        await self._stream.write(text)

    async def finish(self) -> None:
        """The reply ended (done, stopped or failed): flush the stream, show the stats."""
        if self._thinking is not None:
            self._thinking.finish()
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        with contextlib.suppress(NoMatches):  # the app is closing: the view's parts are gone
            self.refresh_stats()

    def refresh_stats(self) -> None:
        self.live = False
        self.set_class(self.message.partial, "partial")
        self.query_one(".who", Label).update(self.who())
        self.query(".stats").last(Label).update(stats_line(self.message))


def stats_line(m: Message, live: bool = False) -> str:
    s = m.stats
    if live:
        return ""
    if m.partial:
        return "⚠ cut off: the reply was interrupted before it finished"
    if s.get("stopped"):
        return f"■ stopped after {s.get('words', 0)} words"
    if s.get("error"):
        return f"✗ {s['error']}"
    if not s:
        return ""
    tokens = int(s.get("eval_count") or 0)
    secs = (s.get("eval_duration") or 0) / 1e9
    tps = tokens / secs if secs > 0 else 0.0
    ttft = (s.get("first_token_duration") or 0) / 1e6
    line = f"{tokens} tokens · {tps:.1f} tok/s · first token {ttft:.0f} ms"
    drafted = int(s.get("draft_count") or 0)
    if drafted:
        line += f" · drafts {100 * int(s.get('draft_accepted_count') or 0) / drafted:.0f}% kept"
    return line
