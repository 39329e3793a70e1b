"""Who says yes to a tool call: every call is shown before it runs, and runs only when
allowed (``--yes``, ``--allow-tool NAME``, or an answer at the terminal)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from llmtui.tools.core import Tool

#: The answers to "run this call?": this once, this tool for the rest of the session, no.
ONCE, SESSION, DENY = "once", "session", "deny"

Ask = Callable[[Tool, dict[str, Any]], str]


def describe(name: str, arguments: dict[str, Any]) -> str:
    args = json.dumps(arguments, ensure_ascii=False)
    return f"{name}({args[:2000]}{'...' if len(args) > 2000 else ''})"


class Approver:
    """Decides whether a call runs. ``yes``: every tool runs unasked except those that
    always ask (the shell); ``allow``: tools allowed by name (``--allow-tool``), which
    run unasked, the shell too; ``ask``: asks a person (once / session / deny), or None
    when there is nobody to ask, and then what is not allowed is refused.
    ``show`` prints a line for a person (stderr by default)."""

    def __init__(self, *, yes: bool = False, allow: list[str] | None = None,
                 ask: Ask | None = None, show: Callable[[str], None] | None = None) -> None:
        self.yes = yes
        self.allowed = set(allow or [])
        self.ask = ask
        self.show = show or _stderr

    def decide(self, tool: Tool, arguments: dict[str, Any]) -> tuple[bool, str]:
        """(run it?, why not: the text the model gets when it may not)."""
        self.show(f"tool call: {describe(tool.name, arguments)}")
        settled = self.settled(tool)
        if settled is not None:
            return settled
        assert self.ask is not None  # settled() decides when there is no one to ask
        return self.answered(tool, self.ask(tool, arguments))

    def settled(self, tool: Tool, can_ask: bool | None = None) -> tuple[bool, str] | None:
        """The decision when no one needs asking (allowed, or no one to ask), else None.
        The chat passes ``can_ask=True`` and asks in a dialog of its own, then calls
        ``answered``."""
        if tool.name in self.allowed or (self.yes and not tool.always_ask):
            return True, ""
        if not (self.ask is not None if can_ask is None else can_ask):
            self.show(f"tool call refused: {tool.name} needs approval and there is no "
                      f"terminal to ask on (pass --yes or --allow-tool {tool.name})")
            return False, ("the call was refused: it needs the user's approval, and "
                           "the user was not there to give it")
        return None

    def answered(self, tool: Tool, answer: str) -> tuple[bool, str]:
        """Take a person's answer (ONCE, SESSION or DENY) to a call of ``tool``."""
        if answer == SESSION and not tool.always_ask:
            self.allowed.add(tool.name)
        if answer in (ONCE, SESSION):
            return True, ""
        self.show(f"tool call denied: {tool.name}")
        return False, "the user denied this call"


def _stderr(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        pass


def terminal_ask() -> Ask | None:
    """An ``ask`` that prompts on the controlling terminal (/dev/tty, so it works while
    stdin is a pipe), or None when the process has no terminal."""
    try:  # two handles: a terminal cannot seek, so "r+" cannot open it
        tty_in = open("/dev/tty", encoding="utf-8", errors="replace")  # noqa: SIM115
        tty = open("/dev/tty", "w", encoding="utf-8")  # noqa: SIM115
    except OSError:
        return None

    def ask(tool: Tool, arguments: dict[str, Any]) -> str:
        always = tool.always_ask
        choices = "[y]es once, [n]o" if always else \
            "[y]es once, [a]lways for this tool, [n]o"
        while True:
            tty.write(f"Run {tool.name}? {choices}: ")
            tty.flush()
            line = tty_in.readline()
            if not line:  # the terminal closed
                return DENY
            word = line.strip().lower()
            if word in ("y", "yes"):
                return ONCE
            if word in ("a", "always") and not always:
                return SESSION
            if word in ("n", "no", ""):
                return DENY

    return ask
