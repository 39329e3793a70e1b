"""Per-conversation system prompt and parameters (F4)."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import (
    Button,
    Input,
    Label,
    TextArea,
)


class SettingsScreen(ModalScreen[dict[str, Any] | None]):
    """Per-conversation system prompt and parameters."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="settings.cancel"),
                Binding("ctrl+s", "save", "Save", id="settings.save")]

    def __init__(self, system: str, options: dict[str, Any], defaults: dict[str, Any]) -> None:
        super().__init__()
        self.system = system
        self.options = options
        self.defaults = defaults

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("Conversation settings (Ctrl+S saves, Esc cancels)", classes="question")
            yield Label("System prompt")
            yield TextArea(self.system, id="system", soft_wrap=True)
            for key, label in (("temperature", "Temperature"), ("num_ctx", "Context length"),
                               ("seed", "Seed")):
                with Horizontal(classes="field"):
                    yield Label(f"{label:<16}")
                    value = self.options.get(key)
                    yield Input(value="" if value is None else str(value),
                                placeholder=f"default {self.defaults.get(key)}", id=key)
            with Horizontal(classes="buttons"):
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.dismiss(None)

    def action_save(self) -> None:
        out: dict[str, Any] = {"system": self.query_one("#system", TextArea).text.strip(),
                               "options": {}}
        checks = {"temperature": (float, 0.0, 5.0), "num_ctx": (int, 0, 10_000_000),
                  "seed": (int, -1, 2**32 - 1)}
        for key, (kind, lo, hi) in checks.items():
            text = self.query_one(f"#{key}", Input).value.strip()
            if not text:
                continue
            try:
                value = kind(text)
            except ValueError:
                self.notify(f"{key} must be a {'whole ' if kind is int else ''}number",
                            severity="error")
                return
            if not lo <= value <= hi:
                self.notify(f"{key} must be between {lo} and {hi}", severity="error")
                return
            out["options"][key] = value
        self.dismiss(out)

    def action_cancel(self) -> None:
        self.dismiss(None)
