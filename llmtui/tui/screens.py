"""Modal screens and the model manager for the chat app."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import (
    Button,
    DataTable,
    DirectoryTree,
    Footer,
    Input,
    Label,
    OptionList,
    ProgressBar,
    Static,
    TextArea,
)
from textual.widgets.option_list import Option

from llmtui.errors import LlmtuiError


def human_size(n: float | None) -> str:
    if not n:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


class Confirm(ModalScreen[bool]):
    """Yes / no, keyboard first: y or Enter confirms, n or Esc cancels."""

    BINDINGS = [Binding("y", "answer(True)", "Yes", id="confirm.yes"),
                Binding("n,escape", "answer(False)", "No", id="confirm.no")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="question")
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class Prompt(ModalScreen[str | None]):
    """Ask for one line of text (rename, search)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(self, question: str, value: str = "") -> None:
        super().__init__()
        self.question = question
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="question")
            yield Input(value=self.value, id="answer")

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


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


class ModelManager(Screen[str | None]):
    """Installed models against the catalog: pull (with progress and cancel), delete,
    unload, and what fits this machine."""

    BINDINGS = [
        Binding("escape", "close", "Back", id="manager.close"),
        Binding("p", "pull", "Pull", id="manager.pull"),
        Binding("c", "cancel_pull", "Cancel pull", id="manager.cancel"),
        Binding("d,delete", "delete", "Delete", id="manager.delete"),
        Binding("u", "unload", "Unload", id="manager.unload"),
        Binding("enter", "use", "Use in chat", id="manager.use"),
        Binding("r", "refresh", "Refresh", id="manager.refresh"),
    ]

    def __init__(self, backend: Any) -> None:
        super().__init__()
        self.backend = backend
        self.rows: list[dict[str, Any]] = []
        self.pulling: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="machine", markup=False)
        table: DataTable[str] = DataTable(id="catalog", cursor_type="row", zebra_stripes=True)
        yield table
        with Horizontal(id="pullbar"):
            yield Label("", id="pull-label")
            yield ProgressBar(id="pull-progress", show_eta=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("", "model", "size", "RAM", "fit", "state", "description")
        self.query_one("#pullbar").display = False
        self.action_refresh()

    @work(exclusive=True, group="manager-refresh")
    async def action_refresh(self) -> None:
        from llmtui.models import catalog

        ram = catalog.total_ram()
        try:
            installed = {m["name"]: m for m in await self.backend.models()}
            loaded = {m["name"] for m in await self.backend.loaded()}
        except LlmtuiError as exc:
            self.app.notify(str(exc), title="Daemon", severity="error")
            installed, loaded = {}, set()
        entries = catalog.load_catalog()
        rec = catalog.recommend(ram)
        self.query_one("#machine", Static).update(
            f"This machine: {human_size(ram)} RAM · recommended: "
            f"{rec.name if rec else 'none fits'}   "
            "[p] pull  [c] cancel pull  [d] delete  [u] unload  [Enter] use  [Esc] back")
        rows: list[dict[str, Any]] = []
        for name, m in sorted(installed.items()):
            entry = entries.get(name)
            need = entry.ram if entry else int(m.get("size", 0) * 1.3)
            rows.append({"name": name, "size": m.get("size"), "ram": need,
                         "fit": catalog.fit(need, ram), "installed": True,
                         "loaded": name in loaded,
                         "desc": entry.description if entry else "local model"})
        for name, e in entries.items():
            if name not in installed:
                rows.append({"name": name, "size": e.size, "ram": e.ram,
                             "fit": catalog.fit(e.ram, ram), "installed": False,
                             "loaded": False, "desc": e.description})
        self.rows = rows
        table = self.query_one(DataTable)
        table.clear()
        marks = {"fits": "✓ fits", "tight": "~ tight", "too-big": "✗ too big"}
        for r in rows:
            state = "loaded" if r["loaded"] else ("installed" if r["installed"] else "")
            star = "★" if rec and r["name"] == rec.name else ""
            table.add_row(star, r["name"], human_size(r["size"]), human_size(r["ram"]),
                          marks[r["fit"]], state, r["desc"][:60], key=r["name"])

    def _selected(self) -> dict[str, Any] | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row is None or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    def action_pull(self) -> None:
        row = self._selected()
        if row is None:
            return
        if self.pulling:
            self.app.notify(f"already pulling {self.pulling}", severity="warning")
            return
        self.pull(row["name"])

    @work(exclusive=True, group="manager-pull")
    async def pull(self, name: str) -> None:
        bar = self.query_one("#pull-progress", ProgressBar)
        label = self.query_one("#pull-label", Label)
        self.query_one("#pullbar").display = True
        self.pulling = name
        label.update(f"pulling {name} (c cancels) ")
        bar.update(total=None, progress=0)
        started = time.monotonic()
        try:
            async for event in self.backend.pull(name):
                status = str(event.get("status", ""))
                if event.get("total"):
                    bar.update(total=event["total"], progress=event.get("completed") or 0)
                label.update(f"{name}: {status[:40]} ")
            self.app.notify(f"pulled {name} in {time.monotonic() - started:.0f} s",
                            title="Model manager")
        except LlmtuiError as exc:
            self.app.notify(str(exc), title=f"Pull {name} failed", severity="error",
                            timeout=10)
        finally:
            self.pulling = None
            self.query_one("#pullbar").display = False
            self.action_refresh()

    def action_cancel_pull(self) -> None:
        if self.pulling:
            name = self.pulling
            self.workers.cancel_group(self, "manager-pull")
            self.app.notify(f"cancelled pulling {name}; pulling again resumes it",
                            title="Model manager")

    def action_delete(self) -> None:
        row = self._selected()
        if row is None or not row["installed"]:
            return
        name = row["name"]

        async def answer(yes: bool | None) -> None:
            if yes:
                try:
                    await self.backend.delete(name)
                    self.app.notify(f"deleted {name}", title="Model manager")
                except LlmtuiError as exc:
                    self.app.notify(str(exc), severity="error")
                self.action_refresh()
        self.app.push_screen(Confirm(f"Delete {name}? Its files are removed."), answer)

    async def action_unload(self) -> None:
        row = self._selected()
        if row is None or not row["loaded"]:
            return
        try:
            await self.backend.unload(row["name"])
        except LlmtuiError as exc:
            self.app.notify(str(exc), severity="error")
        self.action_refresh()

    @on(DataTable.RowSelected)
    def row_chosen(self) -> None:
        self.action_use()  # the table takes Enter itself

    def action_use(self) -> None:
        row = self._selected()
        if row is None:
            return
        if not row["installed"]:
            self.app.notify(f"{row['name']} is not installed: press p to pull it",
                            severity="warning")
            return
        self.dismiss(row["name"])

    def action_close(self) -> None:
        self.dismiss(None)


class MessagesScroll(VerticalScroll):
    """The transcript; it follows new text unless the user scrolled up."""
