"""`llm docx FILE`: a Word document as Markdown (`llm docx a.docx | llm summarize`)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from llmtui.errors import InvalidInput


def docx(path: Path = typer.Argument(..., help="A .docx file.")) -> None:
    """Print a Word document as Markdown."""
    from llmtui.rag.extract import Skip
    from llmtui_docx import to_markdown

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    try:
        sys.stdout.write(to_markdown(data))
    except Skip as exc:
        raise InvalidInput(f"{path}: {exc}") from None
