"""Reading files into structured blocks, and chunking that follows the structure."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from llmtui.rag.chunk import chunk_blocks
from llmtui.rag.extract import Skip, decode, kind_of, read_blocks
from tests.rag.conftest import CODE, GUIDE, HTML
from tests.rag.pdfgen import encrypt, make_pdf


def blocks_of(name: str, data: bytes | str):
    raw = data.encode() if isinstance(data, str) else data
    return read_blocks(Path(name), kind_of(Path(name)) or "text", raw)


def test_kinds() -> None:
    assert kind_of(Path("a.md")) == "markdown"
    assert kind_of(Path("a.PDF")) == "pdf"
    assert kind_of(Path("a.htm")) == "html"
    assert kind_of(Path("a.rs")) == "code"
    assert kind_of(Path("Makefile")) == "code"
    assert kind_of(Path("notes")) == "text"
    assert kind_of(Path("photo.png")) is None
    assert kind_of(Path("archive.zip")) is None


def test_markdown_headings_code_and_lines() -> None:
    blocks, warnings = blocks_of("guide.md", GUIDE)
    assert not warnings
    kinds = [(b.kind, b.line) for b in blocks]
    assert ("heading", 1) in kinds and ("heading", 9) in kinds
    code = [b for b in blocks if b.kind == "code"]
    assert len(code) == 1 and code[0].text.startswith("```sh") and code[0].line == 14
    chunks = chunk_blocks(blocks)
    backups = [c for c in chunks if "17 days" in c.text]
    assert len(backups) == 1
    assert backups[0].heading == "Zorblat user guide > Backups"
    assert backups[0].line == 11  # the paragraph's first line in the file
    # A heading starts a new chunk: no chunk mixes two sections.
    assert not any("Mossy Teal" in c.text and "17 days" in c.text for c in chunks)


def test_long_sections_split_with_overlap() -> None:
    sentences = [f"Sentence number {i} says something about topic {i % 7}." for i in range(200)]
    text = "# Long\n\n" + " ".join(sentences) + "\n"
    chunks = chunk_blocks(blocks_of("long.md", text)[0], max_chars=500, overlap=100)
    assert len(chunks) > 10
    assert all(len(c.text) <= 620 for c in chunks)
    for a, b in itertools.pairwise(chunks):
        head = b.text.split(".")[0]
        assert head in a.text  # the next chunk starts with the end of the previous one
    joined = " ".join(c.text for c in chunks)
    assert all(s in joined for s in sentences)  # nothing is lost at the cuts


def test_code_splits_at_definitions() -> None:
    blocks, _ = blocks_of("geometry.py", CODE)
    starts = [b.text.splitlines()[0] for b in blocks]
    assert any(s.startswith("def circle_area") for s in starts)
    assert any(s.startswith("class Rectangle") for s in starts)
    circle = next(b for b in blocks if b.text.startswith("def circle_area"))
    assert circle.line == 6


def test_html_text_without_scripts_and_with_source_lines() -> None:
    blocks, _ = blocks_of("recipes.html", HTML)
    text = " ".join(b.text for b in blocks)
    assert "Whisk two eggs" in text
    assert "never index scripts" not in text and "color: red" not in text
    heading = next(b for b in blocks if b.kind == "heading")
    assert heading.text == "Pancakes" and heading.line == 5
    whisk = next(b for b in blocks if "Whisk" in b.text)
    assert whisk.line == 6


def test_pdf_keeps_page_numbers() -> None:
    pdf = make_pdf([["First page about apples."], ["Second page about pears."]])
    blocks, _ = blocks_of("r.pdf", pdf)
    assert [(b.page, b.text) for b in blocks] == [(1, "First page about apples."),
                                                  (2, "Second page about pears.")]
    chunks = chunk_blocks(blocks)
    assert [c.page for c in chunks] == [1, 2]  # a chunk never spans pages


@pytest.mark.parametrize(("name", "data", "reason"), [
    ("empty.txt", b"", "empty file"),
    ("blank.md", b"\n\n   \n", "empty file"),
    ("binary.txt", b"\x00\x01\x02ELF\x00" * 100, "binary"),
    ("broken.pdf", b"%PDF-1.4\nthis is not a pdf", "cannot read the PDF"),
])
def test_unreadable_files_are_skipped_with_a_reason(name: str, data: bytes, reason: str) -> None:
    with pytest.raises(Skip, match=reason):
        blocks_of(name, data)


def test_encrypted_and_truncated_pdfs_are_skipped() -> None:
    pdf = make_pdf([["Secret plans."]])
    with pytest.raises(Skip, match="encrypted PDF"):
        blocks_of("locked.pdf", encrypt(pdf))
    with pytest.raises(Skip, match="cannot read the PDF"):
        blocks_of("cut.pdf", pdf[: len(pdf) // 3])


def test_non_utf8_text_is_read_with_a_warning() -> None:
    text, warning = decode("Café crème brûlée".encode("cp1252"), "menu.txt")
    assert text == "Café crème brûlée" and warning and "not UTF-8" in warning
    text, warning = decode("\ufeffBOM text".encode(), "bom.txt")
    assert text == "BOM text" and warning is None
    text, warning = decode("UTF-16 text".encode("utf-16"), "u16.txt")
    assert text == "UTF-16 text" and warning is None
