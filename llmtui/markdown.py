"""Small Markdown helpers shared by the CLI and the chat (no Markdown library needed)."""

from __future__ import annotations

import re

_FENCED = re.compile(r"```[^\n]*\n(.*?)```", re.S)


def code_blocks(text: str) -> list[str]:
    """The bodies of the fenced code blocks of a Markdown text, in order."""
    return [m.group(1) for m in _FENCED.finditer(text)]
