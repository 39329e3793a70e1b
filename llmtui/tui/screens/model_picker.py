"""Switch the conversation's model (Ctrl+L)."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import (
    Label,
    OptionList,
)
from textual.widgets.option_list import Option

from llmtui.tui.format import human_size


class ModelPicker(ModalScreen[str | None]):
    """Installed models with size, quantization and whether loaded."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="picker.cancel")]

    def __init__(self, models: list[dict[str, Any]], loaded: set[str], current: str) -> None:
        super().__init__()
        self.models = models
        self.loaded = loaded
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("Switch model (Enter to choose, Esc to cancel)", classes="question")
            options = []
            for m in self.models:
                d = m.get("details") or {}
                mark = "●" if m["name"] in self.loaded else " "
                cur = " (current)" if m["name"] == self.current else ""
                options.append(Option(
                    f"{mark} {m['name']:<28} {human_size(m.get('size')):>9}  "
                    f"{d.get('quantization_level') or '-':<7} {d.get('family') or ''}{cur}",
                    id=m["name"]))
            if not options:
                options.append(Option("no models installed: press F3 for the model manager",
                                      id="", disabled=True))
            yield OptionList(*options, id="models")
            yield Label("● loaded", classes="hint")

    def on_mount(self) -> None:
        ol = self.query_one(OptionList)
        for i, m in enumerate(self.models):
            if m["name"] == self.current:
                ol.highlighted = i
        ol.focus()

    @on(OptionList.OptionSelected)
    def chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
