"""The one-line status bar: model, context use, RAG collection and the daemon's state."""

from __future__ import annotations

from textual.widgets import Static


class StatusBar(Static):
    """`● model │ context used/ctx tokens │ rag NAME │ read aloud │ tools N │ daemon state │
    F1 help · Ctrl+P`."""

    def show(self, *, model: str, loaded: bool, used: int, context: int | None, state: str,
             rag: str | None = None, drafts: tuple[int, int] | None = None,
             read_aloud: bool = False, tools: int = 0) -> None:
        mark = "●" if loaded else "○"
        tokens = f"{used}/{context}" if context else f"{used}"
        kept = ""
        if drafts and drafts[0]:  # speculative decoding of the last reply: guesses kept
            kept = f"drafts {100 * drafts[1] / drafts[0]:.0f}% kept │ "
        self.update(f"{mark} {model} │ context {tokens} tokens │ "
                    + (f"rag {rag} │ " if rag else "") + kept
                    + ("read aloud │ " if read_aloud else "")
                    + (f"tools {tools} │ " if tools else "")
                    + f"daemon {state} │ F1 help · Ctrl+P commands")
