"""The transcript: a scrolling column of messages that follows new text."""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.widgets import Static

from llmtui.history import Conversation, Message
from llmtui.tui.widgets.message import MessageView
from llmtui.tui.widgets.tool_call import ToolCallView


def shown(m: Message) -> bool:
    """System prompts and a reply that only made tool calls (its calls are shown as
    their results) are not shown."""
    return m.role != "system" and not (m.role == "assistant" and not m.content
                                       and m.stats.get("tool_calls"))


def view_of(m: Message) -> MessageView | ToolCallView:
    return ToolCallView(m) if m.role == "tool" else MessageView(m)


class ChatLog(VerticalScroll):
    """The transcript; it follows new text unless the user scrolled up."""

    async def show(self, conv: Conversation | None) -> None:
        """Show a whole conversation (or a hint for a new one), scrolled to the end."""
        await self.remove_children()
        if conv:
            await self.mount_all([view_of(m) for m in conv.messages if shown(m)])
            if not conv.messages:
                await self.mount(Static(
                    f"New chat with {conv.model}. Type below; Enter sends, Shift+Enter "
                    "or Ctrl+J adds a line. F1 lists every key.", classes="hint"))
        self.call_after_refresh(self.scroll_end, animate=False)

    async def add(self, view: MessageView | ToolCallView) -> None:
        """Append a message (the new-chat hint goes) and scroll to it."""
        for hint in self.query(".hint"):
            await hint.remove()
        await self.mount(view)
        self.scroll_end(animate=False)

    def at_end(self) -> bool:
        return self.max_scroll_y - self.scroll_y < 3

    def follow(self) -> None:
        """Keep up with streaming text unless the user has scrolled away from the end."""
        if self.at_end():
            self.scroll_end(animate=False)

    def end_after_refresh(self) -> None:
        """Scroll to the end once the layout is redone (for a change made just now that
        grows the last message: its flushed text, its stats line)."""
        self.call_after_refresh(self.scroll_end, animate=False)
