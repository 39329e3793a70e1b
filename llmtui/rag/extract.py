"""Turn a file into blocks of text that know where they came from (page or line).

Each reader keeps the document's structure as block kinds (heading, paragraph, code) so
the chunker can cut at the natural places. Files that cannot be read are *skipped* with a
reason, never fatal: one bad file must not stop a folder from being ingested.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal

Kind = Literal["heading", "para", "code"]


@dataclass(frozen=True)
class Block:
    """A structural piece of a document: a heading, a paragraph or a code block."""

    text: str
    kind: Kind = "para"
    line: int = 0  # first line in the source file (1-based); 0 when lines do not apply
    end_line: int = 0
    page: int = 0  # PDF page (1-based); 0 for other files
    level: int = 0  # heading level


class Skip(Exception):
    """This file is not ingested; the message says why (shown as a warning)."""


MARKDOWN = {".md", ".markdown", ".mdx", ".rst"}
TEXT = {".txt", ".text", ".log", ".csv", ".tsv", ".org", ".adoc", ".tex", ""}
HTML = {".html", ".htm", ".xhtml"}
CODE = {
    ".py", ".pyi", ".js", ".mjs", ".cjs", ".ts", ".tsx", ".jsx", ".go", ".rs", ".c", ".h",
    ".cc", ".cpp", ".hpp", ".cxx", ".java", ".kt", ".kts", ".scala", ".rb", ".php", ".cs",
    ".swift", ".m", ".lua", ".pl", ".r", ".jl", ".sh", ".bash", ".zsh", ".fish", ".ps1",
    ".sql", ".toml", ".yaml", ".yml", ".json", ".ini", ".cfg", ".conf", ".xml", ".css",
    ".scss", ".vue", ".svelte", ".dart", ".ex", ".exs", ".erl", ".hs", ".ml", ".zig",
    ".nim", ".proto", ".graphql", ".tf", ".mk", ".cmake", ".dockerfile", ".el", ".vim",
}
CODE_NAMES = {"makefile", "dockerfile", "justfile", "rakefile", "gemfile", "cmakelists.txt"}
PDF = {".pdf"}


def kind_of(path: Path) -> str | None:
    """'pdf', 'markdown', 'html', 'code', 'text', or None for a type we do not read."""
    suffix = path.suffix.lower()
    if path.name.lower() in CODE_NAMES:
        return "code"
    if suffix in PDF:
        return "pdf"
    if suffix in MARKDOWN:
        return "markdown"
    if suffix in HTML:
        return "html"
    if suffix in CODE:
        return "code"
    if suffix in TEXT:
        return "text"
    ext = suffix.lstrip(".")
    if ext and ext in plugin_readers():
        return ext  # a reader plugin's kind is its extension (docx)
    return None


_READERS: tuple[float, dict[str, Callable[..., Any]]] | None = None


def plugin_readers() -> dict[str, Callable[..., Any]]:
    """Readers from the llmtui.readers plugin group, by extension; looked up again every
    few seconds, so a running daemon sees a plugin installed since (docs/plugins.md)."""
    global _READERS
    now = time.monotonic()
    if _READERS is None or now - _READERS[0] > 5:
        from llmtui import plugins

        _READERS = (now, plugins.readers())
    return _READERS[1]


def plugin_blocks(kind: str, data: bytes, name: str) -> list[Block]:
    """Blocks from a reader plugin: it returns Blocks or strings (paragraphs of text); a
    failure skips the file with the reader's reason, like any unreadable file."""
    reader = plugin_readers().get(kind)
    if reader is None:
        raise Skip(f"the reader for .{kind} files is no longer installed")
    try:
        parts = reader(data, name)
    except Skip:
        raise
    except Exception as exc:
        from llmtui.plugins import error_text

        raise Skip(f"the .{kind} reader failed: {error_text(exc)}") from None
    blocks: list[Block] = []
    for part in parts or []:
        if isinstance(part, Block):
            blocks.append(part)
        elif isinstance(part, str):
            blocks.extend(text_blocks(part))
        else:
            raise Skip(f"the .{kind} reader returned {type(part).__name__}, not text")
    return blocks


def decode(data: bytes, name: str) -> tuple[str, str | None]:
    """Text from bytes: UTF-8 (with or without BOM), UTF-16 with a BOM, else Latin-1.

    Returns (text, warning). NUL bytes or mostly control characters mean binary: Skip.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), None
        except UnicodeDecodeError:
            raise Skip("not text (a broken UTF-16 file)") from None
    if b"\x00" in data[:65536]:
        raise Skip("binary file (it contains NUL bytes)")
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        sample = data[:65536]
        controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13))
        if controls > len(sample) * 0.05:
            raise Skip("binary file") from None
        return (data.decode("cp1252", errors="replace"),
                f"not UTF-8 (byte {exc.start}); read as Windows-1252/Latin-1")


def read_blocks(path: Path, kind: str, data: bytes) -> tuple[list[Block], list[str]]:
    """Blocks of one file, and warnings. Raises Skip when nothing can be read."""
    warnings: list[str] = []
    if kind == "pdf":
        blocks = pdf_blocks(data, warnings)
    elif kind not in ("markdown", "html", "code", "text"):
        blocks = plugin_blocks(kind, data, path.name)
    else:
        text, warning = decode(data, path.name)
        if warning:
            warnings.append(warning)
        if kind == "markdown":
            blocks = markdown_blocks(text)
        elif kind == "html":
            blocks = html_blocks(text)
        elif kind == "code":
            blocks = code_blocks(text)
        else:
            blocks = text_blocks(text)
    if not any(b.text.strip() for b in blocks):
        raise Skip("no text in it" if data.strip() else "empty file")
    return blocks, warnings


# -- plain text and Markdown -------------------------------------------------------------


def text_blocks(text: str, page: int = 0, first_line: int = 1) -> list[Block]:
    """Paragraphs separated by blank lines, each with its line range."""
    blocks: list[Block] = []
    buf: list[str] = []
    start = first_line
    for i, line in enumerate(text.splitlines(), start=first_line):
        if line.strip():
            if not buf:
                start = i
            buf.append(line.rstrip())
        elif buf:
            blocks.append(Block("\n".join(buf), "para", start, i - 1, page))
            buf = []
    if buf:
        blocks.append(Block("\n".join(buf), "para", start, start + len(buf) - 1, page))
    return blocks


_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def markdown_blocks(text: str) -> list[Block]:
    """Headings, fenced code blocks and paragraphs of a Markdown file."""
    blocks: list[Block] = []
    lines = text.splitlines()
    buf: list[str] = []
    start = 0

    def flush(end: int) -> None:
        nonlocal buf
        if buf:
            blocks.append(Block("\n".join(buf), "para", start, end))
            buf = []

    i = 0
    while i < len(lines):
        line = lines[i]
        n = i + 1
        fence = _FENCE.match(line)
        if fence:
            flush(n - 1)
            j = i + 1
            while j < len(lines) and not lines[j].lstrip().startswith(fence.group(1)):
                j += 1
            body = "\n".join(lines[i:j + 1])
            blocks.append(Block(body, "code", n, min(j + 1, len(lines))))
            i = j + 1
            continue
        heading = _HEADING.match(line)
        # Setext headings: a line underlined with === or ---.
        if (not heading and line.strip() and i + 1 < len(lines) and not buf
                and re.fullmatch(r"\s*(=+|-+)\s*", lines[i + 1]) and len(lines[i + 1]) >= 3):
            level = 1 if "=" in lines[i + 1] else 2
            blocks.append(Block(line.strip(), "heading", n, n + 1, level=level))
            i += 2
            continue
        if heading:
            flush(n - 1)
            blocks.append(Block(heading.group(2), "heading", n, n, level=len(heading.group(1))))
        elif line.strip():
            if not buf:
                start = n
            buf.append(line.rstrip())
        else:
            flush(n - 1)
        i += 1
    flush(len(lines))
    return blocks


# -- source code ---------------------------------------------------------------------------

# A top-level definition starts a new block: Python, JS/TS, Go, Rust, C-like, Ruby, shell.
_DEF = re.compile(
    r"^(async\s+def|def|class|function|func|fn|pub\s|impl|struct|enum|interface|type|"
    r"export\s|const\s|let\s|var\s|module|package|public\s|private\s|protected\s|static\s|"
    r"@|#\s*include|[A-Za-z_][\w:<>\s\*&]*\([^;]*\)\s*\{?\s*$)")


def code_blocks(text: str) -> list[Block]:
    """Split code at top-level definitions (and blank lines between them)."""
    blocks: list[Block] = []
    lines = text.splitlines()
    buf: list[str] = []
    start = 1
    for n, line in enumerate(lines, start=1):
        top = bool(line) and not line[0].isspace() and _DEF.match(line) is not None
        prev_blank = n > 1 and not lines[n - 2].strip()
        if buf and top and (prev_blank or not any(b.strip() for b in buf[-1:])):
            while buf and not buf[-1].strip():
                buf.pop()
            if buf:
                blocks.append(Block("\n".join(buf), "code", start, start + len(buf) - 1))
            buf = []
        if not buf:
            if not line.strip():
                continue
            start = n
        buf.append(line.rstrip())
    while buf and not buf[-1].strip():
        buf.pop()
    if buf:
        blocks.append(Block("\n".join(buf), "code", start, start + len(buf) - 1))
    return blocks


# -- HTML ------------------------------------------------------------------------------------

_BLOCK_TAGS = {"p", "div", "li", "pre", "blockquote", "tr", "section", "article", "br",
               "dd", "dt", "table", "ul", "ol", "header", "footer", "main", "figcaption"}
_SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "head"}


class _HTMLText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.buf: list[str] = []
        self.line = 1
        self.kind: Kind = "para"
        self.level = 0
        self.skip = 0
        self.pre = 0

    def flush(self) -> None:
        text = "".join(self.buf)
        text = text.strip("\n") if self.pre else re.sub(r"\s+", " ", text).strip()
        if text:
            end = self.getpos()[0]
            self.blocks.append(Block(text, self.kind, self.line, end, level=self.level))
        self.buf = []
        self.kind, self.level = "para", 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self.skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.flush()
            self.kind, self.level = "heading", int(tag[1])
            self.line = self.getpos()[0]
        elif tag in _BLOCK_TAGS or tag == "pre":
            self.flush()
            if tag == "pre":
                self.pre += 1
                self.kind = "code"
            self.line = self.getpos()[0]

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skip = max(0, self.skip - 1)
        elif re.fullmatch(r"h[1-6]", tag) or tag in _BLOCK_TAGS or tag == "pre":
            self.flush()
            if tag == "pre":
                self.pre = max(0, self.pre - 1)

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if not self.buf and not "".join(self.buf).strip():
            self.line = self.getpos()[0] + (len(data) - len(data.lstrip("\n"))
                                            if not self.pre else 0)
        self.buf.append(data)


def html_blocks(text: str) -> list[Block]:
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    parser.flush()
    return parser.blocks


# -- PDF ---------------------------------------------------------------------------------------


def pdf_blocks(data: bytes, warnings: list[str]) -> list[Block]:
    """Paragraphs per page with pypdf; encrypted or broken files are skipped with a reason."""
    import io

    from llmtui.errors import require

    require("pypdf", "rag", "Reading PDF files")
    import pypdf
    from pypdf.errors import PdfReadError

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            # Many PDFs are "encrypted" with an empty user password; those open fine.
            try:
                ok = reader.decrypt("")
            except Exception as exc:
                raise Skip(f"encrypted PDF that cannot be opened ({exc})") from None
            if not ok:
                raise Skip("encrypted PDF (it needs a password)")
        blocks: list[Block] = []
        empty = 0
        for number, page in enumerate(reader.pages, start=1):
            try:
                text = page.extract_text() or ""
            except Exception as exc:
                warnings.append(f"page {number}: cannot extract text ({exc})")
                continue
            if not text.strip():
                empty += 1
                continue
            blocks.extend(_pdf_page_blocks(text, number))
    except Skip:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise Skip(f"cannot read the PDF ({type(exc).__name__}: {exc})") from None
    if empty and not blocks:
        raise Skip(f"no text in its {empty} page(s) (a scanned PDF needs OCR first)")
    if empty:
        warnings.append(f"{empty} page(s) have no extractable text")
    return blocks


def _pdf_page_blocks(text: str, page: int) -> list[Block]:
    """PDF text rarely has blank lines: paragraphs end at lines that end a sentence short."""
    blocks = text_blocks(text, page=page)
    if len(blocks) > 1:
        return [Block(b.text, b.kind, 0, 0, page) for b in blocks]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    width = max((len(ln) for ln in lines), default=0)
    out: list[Block] = []
    buf: list[str] = []
    for ln in lines:
        buf.append(ln)
        if ln.endswith((".", "!", "?", ":")) and len(ln) < width * 0.7:
            out.append(Block(" ".join(buf), "para", 0, 0, page))
            buf = []
    if buf:
        out.append(Block(" ".join(buf), "para", 0, 0, page))
    return out
