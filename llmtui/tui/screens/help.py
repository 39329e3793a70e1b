"""Every key, with its binding id for keymap.toml (F1)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import (
    DataTable,
    Label,
    Static,
)


class HelpScreen(ModalScreen[None]):
    """Every binding, with its id (for the keymap file) and what it does."""

    BINDINGS = [Binding("escape,f1,question_mark,q", "close", "Close", id="help.close")]

    def __init__(self, rows: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide tall"):
            yield Label("Keys (Esc closes)", classes="question")
            table: DataTable[str] = DataTable(id="keys", cursor_type="row", zebra_stripes=True)
            yield table
            yield Static("Change keys in keymap.toml next to the config file (llm config "
                         'path), one line per binding id, e.g.  chat.regenerate = "ctrl+g"',
                         classes="hint")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("key", "action", "id")
        for key, desc, bid in self.rows:
            table.add_row(key, desc, bid)
        table.focus()

    def action_close(self) -> None:
        self.dismiss(None)
