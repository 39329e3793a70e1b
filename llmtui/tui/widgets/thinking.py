"""A thinking model's reasoning, folded under the reply it led to.

Collapsed by default: the title says the model is thinking (while it does) or how long
it thought; opening it shows the reasoning. The reasoning is kept with the message (in
its stats, so the history needs no new column) and goes back to the model with it.
"""

from __future__ import annotations

from textual.widgets import Collapsible, Static


def thinking_title(text: str, live: bool) -> str:
    if live:
        return "Thinking…"
    words = len(text.split())
    return f"Thought · {words} word{'s' if words != 1 else ''}"


class ThinkingView(Collapsible):
    """The reasoning of one reply, folded."""

    DEFAULT_CSS = """
    ThinkingView { border: none; padding: 0; margin: 0 0 0 0; background: transparent; }
    ThinkingView > Contents { padding: 0 0 0 2; }
    ThinkingView .thought { color: $text-muted; text-style: italic; }
    """

    def __init__(self, text: str = "", live: bool = False) -> None:
        self.text = text
        self.body = Static(text, classes="thought", markup=False)
        super().__init__(self.body, title=thinking_title(text, live), collapsed=True,
                         classes="thinking")

    def add(self, piece: str) -> None:
        """More reasoning arrived."""
        self.text += piece
        self.body.update(self.text)

    def finish(self) -> None:
        """The reasoning (or the whole reply) ended: say how long it was."""
        self.title = thinking_title(self.text, live=False)
