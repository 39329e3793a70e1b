"""The model manager (F3): installed models against the catalog."""

from __future__ import annotations

import time
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import (
    DataTable,
    Footer,
    Label,
    ProgressBar,
    Static,
)

from llmtui.errors import LlmtuiError
from llmtui.tui.format import human_size
from llmtui.tui.screens.confirm import Confirm


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
        table.add_columns("", "model", "size", "RAM", "fit", "tok/s", "state", "description")
        self.query_one("#pullbar").display = False
        self.action_refresh()

    @work(exclusive=True, group="manager-refresh")
    async def action_refresh(self) -> None:
        import asyncio

        from llmtui import machine as probe
        from llmtui.models import catalog

        # The same measured estimate as `llm catalog` and `llm setup` (cached for a week;
        # the first measurement takes a fraction of a second, off the event loop).
        here = await asyncio.to_thread(probe.for_settings, self.app.settings,  # type: ignore[attr-defined]
                                       with_llama=False)
        ram = here.ram_total
        try:
            installed = {m["name"]: m for m in await self.backend.models()}
            loaded = {m["name"] for m in await self.backend.loaded()}
        except LlmtuiError as exc:
            self.app.notify(str(exc), title="Daemon", severity="error")
            installed, loaded = {}, set()
        entries = catalog.load_catalog()
        rec = next(iter(probe.recommend(here, entries.values())), None)
        self.query_one("#machine", Static).update(
            f"This machine: {human_size(ram)} RAM, {here.bandwidth / 1e9:.0f} GB/s · "
            f"recommended: {rec.name if rec else 'none fits'}   "
            "[p] pull  [c] cancel pull  [d] delete  [u] unload  [Enter] use  [Esc] back")
        rows: list[dict[str, Any]] = []
        for name, m in sorted(installed.items()):
            entry = entries.get(name)
            size = int(m.get("size") or 0)
            need = entry.ram if entry else int(size * 1.3)
            rows.append({"name": name, "size": m.get("size"), "ram": need,
                         "est": probe.estimate(here, size, need), "installed": True,
                         "loaded": name in loaded, "generates": entry is None or bool(
                             {"chat", "completion"} & set(entry.capabilities)),
                         "desc": entry.description if entry else "local model"})
        for name, e in entries.items():
            if name not in installed:
                rows.append({"name": name, "size": e.size, "ram": e.ram,
                             "est": probe.estimate(here, e.size, e.ram), "installed": False,
                             "loaded": False, "desc": e.description,
                             "generates": bool({"chat", "completion"} & set(e.capabilities))})
        self.rows = rows
        table = self.query_one(DataTable)
        table.clear()
        marks = {"fits": "✓ fits", "tight": "~ tight", "too-big": "✗ too big"}
        for r in rows:
            state = "loaded" if r["loaded"] else ("installed" if r["installed"] else "")
            star = "★" if rec and r["name"] == rec.name else ""
            tps = f"~{r['est'].tokens_per_second:.0f}" if r["generates"] else "-"
            table.add_row(star, r["name"], human_size(r["size"]), human_size(r["ram"]),
                          marks[r["est"].fit], tps, state, r["desc"][:60], key=r["name"])

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
