"""The message input: a multi-line text area where Enter sends."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.events import Key
from textual.widgets import TextArea


class PromptArea(TextArea):
    """Multi-line input: Enter sends; the newline keys (configurable) add a line."""

    def __init__(self, newline_keys: Iterable[str], **kw: Any) -> None:
        super().__init__(**kw)
        self.newline_keys = set(newline_keys)

    async def _on_key(self, event: Key) -> None:
        if event.key == "enter":
            event.prevent_default()
            event.stop()
            await self.app.run_action("send")
            return
        if event.key in self.newline_keys:
            event.prevent_default()
            event.stop()
            self.insert("\n")
            return
        await super()._on_key(event)
