"""A tool call and its result, folded: one line (the call, its status, its time) that
opens to show what the tool returned."""

from __future__ import annotations

import json

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Collapsible, Static

from llmtui.history import Message

MARKS = {"ok": "✓", "error": "✗", "denied": "⊘", "invalid": "✗"}


def call_title(message: Message) -> str:
    """``⚙ name({"arg": ...}) · ✓ ok · 0.01 s`` for a tool message (role "tool")."""
    st = message.stats
    args = json.dumps(st.get("arguments") or {}, ensure_ascii=False)
    if len(args) > 60:
        args = args[:57] + "..."
    status = str(st.get("status") or "ok")
    line = f"⚙ {st.get('tool_name', 'tool')}({args}) · {MARKS.get(status, '')} {status}"
    if status in ("ok", "error"):
        line += f" · {float(st.get('seconds') or 0):.2f} s"
    return line


class ToolCallView(Vertical):
    """One tool message of the conversation, folded (Enter or a click opens it)."""

    def __init__(self, message: Message) -> None:
        super().__init__(classes=f"toolcall {message.stats.get('status', 'ok')}")
        self.message = message

    def compose(self) -> ComposeResult:
        with Collapsible(title=call_title(self.message), collapsed=True):
            yield Static(self.message.content, markup=False, classes="result")
