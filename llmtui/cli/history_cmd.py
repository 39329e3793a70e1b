"""``llm history``: the TUI's conversations from the shell."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import typer

from llmtui.cli.output import human_age, info, print_json, print_table

app = typer.Typer(help="List, show, export, import and remove chat conversations.",
                  no_args_is_help=True)


def _history() -> Any:
    from llmtui.history import History

    return History.default()


@app.command("list")
def list_(
    search: str | None = typer.Option(None, "--search", "-s", help="Only those matching."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Conversations, newest first (# is the number other commands accept)."""
    items = _history().list(search)
    if json_out:
        print_json([{"id": c.id, "title": c.title, "model": c.model, "updated": c.updated}
                    for c in items])
        return
    now = time.time()
    print_table(None, ["#", "id", "title", "model", "updated"],
                [[str(i), c.id, c.title, c.model or "-", human_age(now - c.updated)]
                 for i, c in enumerate(items, 1)])


@app.command("show")
def show(ref: str = typer.Argument(..., help="Number from `list`, id or id prefix.")) -> None:
    """Print a conversation as Markdown."""
    h = _history()
    sys.stdout.write(h.get(h.resolve(ref)).to_markdown(h.images_dir))


@app.command("export")
def export(
    ref: str = typer.Argument(..., help="Number from `list`, id or id prefix."),
    fmt: str = typer.Option("md", "--format", "-f", help="md or json."),
    output: Path | None = typer.Option(None, "--output", "-o", help="File (default stdout)."),
) -> None:
    """Export a conversation to Markdown or JSON."""
    from llmtui.errors import InvalidInput

    if fmt not in ("md", "json"):
        raise InvalidInput(f"unknown format '{fmt}' (md or json)")
    h = _history()
    conv = h.get(h.resolve(ref))
    text = conv.to_markdown(h.images_dir) if fmt == "md" else json.dumps(
        h.export_json(conv), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(output)
    info(f"wrote {output}")


@app.command("import")
def import_(path: Path = typer.Argument(..., help="A JSON export ('-' for stdin).")) -> None:
    """Import a conversation exported as JSON."""
    from llmtui.errors import InvalidInput

    try:
        raw = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
        data = json.loads(raw)
    except FileNotFoundError:
        raise InvalidInput(f"no such file: {path}") from None
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput(f"{path} is not JSON") from None
    conv = _history().import_json(data)
    info(f"imported '{conv.title}' as {conv.id} ({len(conv.messages)} messages)")


@app.command("rm")
def rm(
    refs: list[str] = typer.Argument(..., help="Numbers from `list`, ids or id prefixes."),
) -> None:
    """Delete conversations."""
    h = _history()
    ids = [h.resolve(r) for r in refs]  # resolve all first: numbers shift as we delete
    for conv_id in ids:
        h.delete(conv_id)
        info(f"deleted {conv_id}")
