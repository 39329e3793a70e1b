"""Tools in the chat: which to offer the model (Alt+T), and the question asked before each
call runs (allow once, allow for the session, deny)."""

from __future__ import annotations

import json
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, SelectionList, Static
from textual.widgets.selection_list import Selection

from llmtui.tools.approval import DENY, ONCE, SESSION


class ToolsScreen(ModalScreen[dict[str, Any] | None]):
    """Pick the tool sources (built-in files and shell, MCP servers from mcp.json) and
    whether the next reply must call one. Dismisses with {"sources", "choice"}."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="tools.cancel"),
                Binding("ctrl+s", "save", "Save", id="tools.save")]

    def __init__(self, sources: list[tuple[str, str]], chosen: list[str], choice: str,
                 problem: str | None = None) -> None:
        super().__init__()
        self.sources = sources  # (id, description)
        self.chosen = chosen
        self.choice = choice
        self.problem = problem  # why the MCP servers could not be listed

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("Tools for this chat (Space toggles, Ctrl+S saves, Esc cancels)",
                        classes="question")
            yield SelectionList[str](*[Selection(desc, sid, sid in self.chosen)
                                       for sid, desc in self.sources], id="sources")
            if self.problem:
                yield Label(f"mcp.json: {self.problem}", classes="stats", id="problem")
            with Horizontal(classes="field"):
                yield Label("Must call      ")
                yield Input(value="" if self.choice == "auto" else self.choice,
                            placeholder="no: the model chooses (or 'required', or a "
                            "tool's name)", id="choice")
            with Horizontal(classes="buttons"):
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one(SelectionList).focus()

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.dismiss(None)

    @on(Input.Submitted)
    def submitted(self) -> None:
        self.action_save()

    def action_save(self) -> None:
        picked = list(self.query_one(SelectionList).selected)
        choice = self.query_one("#choice", Input).value.strip() or "auto"
        self.dismiss({"sources": [s for s, _ in self.sources if s in picked],
                      "choice": choice})

    def action_cancel(self) -> None:
        self.dismiss(None)


class ToolApproval(ModalScreen[str]):
    """Run this call? y: once, a: always for this tool (this session), n or Esc: no.
    Tools that always ask (the shell) have no "always"."""

    BINDINGS = [Binding("y", "answer('once')", "Once", id="approve.once"),
                Binding("a", "answer('session')", "Always", id="approve.session"),
                Binding("n,escape", "answer('deny')", "Deny", id="approve.deny")]

    def __init__(self, name: str, description: str, arguments: dict[str, Any],
                 always_ask: bool = False) -> None:
        super().__init__()
        self.tool_name = name
        self.description = description
        self.arguments = arguments
        self.always_ask = always_ask

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide approval"):
            yield Label(f"Run the tool {self.tool_name}?", classes="question")
            if self.description:
                yield Label(self.description.strip().splitlines()[0][:200], classes="stats")
            with VerticalScroll(classes="arguments"):
                yield Static(json.dumps(self.arguments, indent=2, ensure_ascii=False),
                             markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Allow once (y)", variant="primary", id=ONCE)
                if not self.always_ask:
                    yield Button("Always for this tool (a)", id=SESSION)
                yield Button("Deny (n)", variant="error", id=DENY)

    def on_mount(self) -> None:
        self.query_one(f"#{DENY}", Button).focus()  # Enter on its own runs nothing

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(str(event.button.id))

    def action_answer(self, answer: str) -> None:
        if answer == SESSION and self.always_ask:
            return
        self.dismiss(answer)
