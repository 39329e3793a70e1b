"""`llm logs`: recent prompts and replies, as simonw/llm shows them (from the history)."""

from __future__ import annotations

import sys
import time
from typing import Any

import typer

from llmtui.cli.output import print_json

app = typer.Typer(help="Recent prompts and replies (from `llm \"...\"` and the chat).",
                  invoke_without_command=True, rich_markup_mode=None)


@app.callback()
def logs(
    ctx: typer.Context,
    count: int = typer.Option(3, "--count", "-n", min=0, help="How many replies (0: all)."),
    current: bool = typer.Option(False, "--current", "-c",
                                 help="Only the last conversation."),
    cid: str | None = typer.Option(None, "--cid", "--conversation",
                                   help="Only this conversation (number, id or prefix)."),
    model: str | None = typer.Option(None, "--model", "-m", help="Only replies of this model."),
    query: str | None = typer.Option(None, "--query", "-q", help="Only those mentioning this."),
    response: bool = typer.Option(False, "--response", "-r",
                                  help="Print only the last reply's text."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the latest replies with their prompts, newest last (Markdown, or --json)."""
    if ctx.invoked_subcommand is not None:
        return
    from llmtui.history import History

    history = History.default()
    try:
        conv_id = history.resolve(cid) if cid else None
        if current and conv_id is None:
            latest = history.list(limit=1)
            conv_id = latest[0].id if latest else "-"
        name = None
        if model:
            from llmtui.models.names import ModelName

            name = str(ModelName.parse(model))
        items = history.replies(1 if response else count, conversation=conv_id, model=name,
                                search=query)
    finally:
        history.close()
    if response:
        if items:
            text = items[-1][2].content
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    if json_out:
        print_json([_as_json(*item) for item in items])
        return
    sys.stdout.write("\n".join(_as_markdown(*item) for item in items))


def _as_json(conv: Any, asked: Any, reply: Any) -> dict[str, Any]:
    return {"conversation": conv.id, "title": conv.title, "model": reply.model or conv.model,
            "system": conv.system, "prompt": asked.content if asked else None,
            "response": reply.content, "created": reply.created, "stats": reply.stats,
            "partial": reply.partial}


def _as_markdown(conv: Any, asked: Any, reply: Any) -> str:
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(reply.created))
    lines = [f"# {when}    conversation: {conv.id}", "",
             f"Model: **{reply.model or conv.model or '?'}**", ""]
    if conv.system:
        lines += ["## System", "", conv.system, ""]
    if asked is not None:
        lines += ["## Prompt", "", asked.content, ""]
    lines += ["## Response" + (" (cut off)" if reply.partial else ""), "", reply.content, ""]
    return "\n".join(lines) + "\n"


@app.command("path")
def path() -> None:
    """Print where the history is kept (an SQLite file)."""
    from llmtui.config import Settings

    sys.stdout.write(f"{Settings.load().paths.data_dir / 'history.db'}\n")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="logs")
