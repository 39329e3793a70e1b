"""Small text formatting shared by the chat's screens."""

from __future__ import annotations

from llmtui.cli import output


def human_size(n: float | None) -> str:
    """Like the CLI's sizes (98.4 MB), with "-" for unknown or zero."""
    return output.human_size(int(n)) if n else "-"
