"""The conversation list with its search box (Ctrl+B hides it, Ctrl+F searches)."""

from __future__ import annotations

from collections.abc import Iterable

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Label, ListItem, ListView

from llmtui.history import Conversation


class Sidebar(Vertical):
    """Saved conversations, newest first; choosing one or typing a search posts a message."""

    class Chosen(Message):
        """The user picked a conversation."""

        def __init__(self, conv_id: str) -> None:
            super().__init__()
            self.conv_id = conv_id

    class Searched(Message):
        """The search text changed: the owner lists the matching conversations."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def compose(self) -> ComposeResult:
        yield Input(placeholder="search chats (Ctrl+F)", id="search")
        yield ListView(id="conversations")

    async def show(self, items: Iterable[Conversation], current: str | None) -> None:
        """List these conversations, with the current one highlighted."""
        lv = self.query_one("#conversations", ListView)
        await lv.clear()
        ids = []
        for c in items:
            await lv.append(ListItem(Label(c.title), name=c.id))
            ids.append(c.id)
        if current and current in ids:
            lv.index = ids.index(current)

    def focus_search(self) -> None:
        self.remove_class("hidden")
        self.query_one("#search", Input).focus()

    @on(ListView.Selected, "#conversations")
    def _chosen(self, event: ListView.Selected) -> None:
        event.stop()
        if event.item.name:
            self.post_message(self.Chosen(event.item.name))

    @on(Input.Changed, "#search")
    def _searched(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.Searched(event.value.strip()))

    @on(Input.Submitted, "#search")
    def _search_done(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one("#conversations").focus()
