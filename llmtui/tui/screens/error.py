"""An error that needs the user, with what to do about it."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import (
    Button,
    Label,
    Static,
)


class ErrorModal(ModalScreen[None]):
    """An error that needs the user's attention, with what to do about it."""

    BINDINGS = [Binding("escape,enter", "close", "Close", id="error.close")]

    def __init__(self, title: str, message: str) -> None:
        super().__init__()
        self.title_text = title
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog error"):
            yield Label(self.title_text, classes="question")
            yield Static(self.message)
            yield Button("Close (Esc)", id="close")

    @on(Button.Pressed)
    def action_close(self) -> None:
        self.dismiss(None)
