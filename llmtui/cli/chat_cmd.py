"""``llm chat [MODEL]`` (and bare ``llm``): the full-screen chat. Textual is imported here,
inside the command, so the rest of the CLI never loads it."""

from __future__ import annotations

import os
import sys

import typer

from llmtui.errors import InvalidInput, LlmtuiError, UsageError


def _piped_attachment() -> tuple[str, str] | None:
    """Text piped into `llm chat` becomes an attachment; the terminal is then reopened
    for the keyboard (as toolong does)."""
    if sys.stdin.isatty():
        return None
    data = sys.stdin.buffer.read(2 * 1024 * 1024 + 1)
    if len(data) > 2 * 1024 * 1024:
        raise InvalidInput("piped input is larger than 2 MB; attach a smaller text")
    if b"\x00" in data[:8192]:
        raise InvalidInput("piped input is binary; the chat takes text")
    try:
        tty = os.open("/dev/tty", os.O_RDONLY)
    except OSError:
        raise UsageError("the chat needs a terminal: no /dev/tty to read keys from",
                         hint="use `llm run` in pipelines") from None
    os.dup2(tty, 0)
    os.close(tty)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - fd 0 now is the terminal
    text = data.decode("utf-8", "replace")
    return ("stdin", text) if text.strip() else None


def chat(
    model: str | None = typer.Argument(None, help="Model (default: the config's default)."),
    conversation: str | None = typer.Option(
        None, "--conversation", "-c", help="Open a conversation (number, id or id prefix)."),
    tools: str | None = typer.Option(
        None, "--tools", help="Offer tools from the start: fs, shell, plugins and MCP "
        "servers of mcp.json, comma-separated (Alt+T or /tools in the chat). Each call "
        "asks first."),
) -> None:
    """Open the full-screen chat (what bare `llm` does)."""
    from llmtui.config import Settings
    from llmtui.errors import require
    from llmtui.history import History
    from llmtui.models.names import ModelName

    require("textual", "tui", "The full-screen chat")
    if not sys.stdout.isatty():
        raise UsageError("the chat needs a terminal on stdout",
                         hint="use `llm run MODEL` to write replies to a pipe")
    name = str(ModelName.parse(model)) if model else None
    attachment = _piped_attachment()
    settings = Settings.load()
    history = History.default(settings)
    from llmtui.tui.app import ChatApp
    from llmtui.tui.backend import DaemonBackend

    app = ChatApp(DaemonBackend(settings), history, settings, model=name,
                  attachment=attachment, conversation=conversation,
                  tools=[t.strip() for t in (tools or "").split(",") if t.strip()])
    from llmtui.tui.images import prepare_terminal

    prepare_terminal()  # which graphics the terminal draws (image previews), asked now
    try:
        app.run()
    finally:
        history.close()
    if app.return_code:
        raise typer.Exit(app.return_code)


def register(app: typer.Typer) -> None:
    app.command("chat")(chat)


__all__ = ["LlmtuiError", "chat", "register"]
