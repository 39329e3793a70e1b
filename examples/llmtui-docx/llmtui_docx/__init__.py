"""Read Word documents for llmtui's RAG: headings, paragraphs and tables as blocks.

A reader gets the file's bytes and its name and returns blocks (or plain strings). Word
has no lines, so each block carries its paragraph number where a text file has its line
number: a citation `report.docx:12` points at the 12th paragraph.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

from llmtui.rag.extract import Block, Skip


def _paragraphs(data: bytes) -> Iterator[tuple[int, str, str]]:
    """(number, style, text) for every paragraph and table row, in document order."""
    import docx  # python-docx: imported when a .docx file is read, not when llm starts
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise Skip(f"not a Word document ({exc})") from None
    number = 0
    for item in document.iter_inner_content():
        if isinstance(item, Paragraph):
            number += 1
            yield number, item.style.name if item.style is not None else "", item.text
        elif isinstance(item, Table):
            for row in item.rows:
                number += 1
                yield number, "Table", " | ".join(cell.text.strip() for cell in row.cells)


def read(data: bytes, name: str) -> list[Block]:
    """The llmtui.readers entry point for *.docx."""
    blocks: list[Block] = []
    for number, style, text in _paragraphs(data):
        if not text.strip():
            continue
        if style == "Title" or style.startswith("Heading"):
            level = int(style.rsplit(" ", 1)[-1]) if style[-1:].isdigit() else 1
            blocks.append(Block(text.strip(), "heading", number, number, level=level))
        else:
            blocks.append(Block(text.strip(), "para", number, number))
    return blocks


def to_markdown(data: bytes) -> str:
    """The document as Markdown: headings with #, paragraphs, table rows as lines."""
    out = []
    for block in read(data, ""):
        out.append(("#" * block.level + " " if block.kind == "heading" else "") + block.text)
    return "\n\n".join(out) + "\n"
