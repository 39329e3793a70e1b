"""Pick a file to attach (Ctrl+O)."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import (
    DirectoryTree,
    Input,
    Label,
)


class FilePicker(ModalScreen[Path | None]):
    """Pick a file to attach: browse the tree, or type a path."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="files.cancel")]

    def __init__(self, start: Path) -> None:
        super().__init__()
        self.start = start

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide tall"):
            yield Label("Attach a file (Enter on a file, or type a path)", classes="question")
            yield Input(placeholder="path/to/file", id="path")
            yield DirectoryTree(str(self.start), id="tree")

    def on_mount(self) -> None:
        self.query_one(DirectoryTree).focus()

    @on(DirectoryTree.FileSelected)
    def selected(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(Path(event.path))

    @on(Input.Submitted)
    def typed(self, event: Input.Submitted) -> None:
        path = Path(event.value).expanduser()
        if not path.is_file():
            self.notify(f"no such file: {event.value}", severity="error")
            return
        self.dismiss(path)

    def action_cancel(self) -> None:
        self.dismiss(None)
