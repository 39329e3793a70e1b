"""The line above the input that lists the files attached to the next message."""

from __future__ import annotations

from typing import Any

from textual.widgets import Static


class AttachmentBar(Static):
    """Files waiting to go with the next message; hidden when there are none."""

    def show(self, pending: list[dict[str, Any]]) -> None:
        names = ", ".join(f"🖼 {a['name']}" if a.get("kind") == "image"
                          else f"📎 {a['name']} ({len(a['text'])} chars)" for a in pending)
        self.update(f"attached: {names}" if names else "")
        self.set_class(not names, "empty")
