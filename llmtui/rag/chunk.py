"""Cut blocks into chunks that follow the document's structure, with overlap.

A heading always starts a new chunk (and becomes the chunk's section path); paragraphs and
code blocks are packed until ``max_chars``; a block too long on its own is split at
sentences (prose) or lines (code). Consecutive chunks of one section share ``overlap``
characters so that an answer cut in two is still found whole in one of them. 1,000
characters is about 250 tokens: under the 256 tokens all-MiniLM-L6-v2 was trained on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmtui.rag.extract import Block

MAX_CHARS = 1000
OVERLAP = 150


@dataclass(frozen=True)
class Chunk:
    text: str
    heading: str = ""
    page: int = 0
    line: int = 0
    end_line: int = 0
    #: (character offset in ``text``, source line) for each block: lets a citation point
    #: at the paragraph or definition inside the chunk that matched, not just its start.
    anchors: tuple[tuple[int, int], ...] = ()

    def embed_text(self) -> str:
        """What is embedded: the section path gives a short chunk its topic."""
        return f"{self.heading}\n{self.text}" if self.heading else self.text


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n")


def _split_long(block: Block, max_chars: int) -> list[Block]:
    """Pieces of at most max_chars: at line ends for code, sentence ends for prose."""
    text = block.text
    pieces: list[Block] = []
    start = 0
    line = block.line
    while start < len(text):
        end = min(start + max_chars, len(text))
        if end < len(text):
            window = text[start:end]
            cuts = [m.end() for m in (re.finditer(r"\n", window) if block.kind == "code"
                                      else _SENTENCE_END.finditer(window))]
            cuts = [c for c in cuts if c > max_chars // 3]
            if cuts:
                end = start + cuts[-1]
            else:
                space = window.rfind(" ")
                if space > max_chars // 3:
                    end = start + space + 1
        piece = text[start:end]
        if piece.strip():
            n_lines = piece.rstrip("\n").count("\n")
            pieces.append(Block(piece.strip("\n") if block.kind == "code" else piece.strip(),
                                block.kind, line if block.line else 0,
                                (line + n_lines) if block.line else 0, block.page))
        line += piece.count("\n")
        start = end
    return pieces


def _tail(text: str, overlap: int) -> str:
    """The last ``overlap`` characters of a chunk, starting at a sentence or word boundary."""
    if overlap <= 0 or len(text) <= overlap:
        return ""
    tail = text[-overlap:]
    m = re.search(r"(?<=[.!?\n])\s+", tail)
    if m and m.end() < len(tail) - 20:
        return tail[m.end():].strip()
    space = tail.find(" ")
    return tail[space + 1:].strip() if 0 <= space < len(tail) - 20 else ""


def chunk_blocks(blocks: list[Block], max_chars: int = MAX_CHARS,
                 overlap: int = OVERLAP) -> list[Chunk]:
    chunks: list[Chunk] = []
    headings: list[tuple[int, str]] = []
    cur: list[Block] = []
    n_carried = 0  # leading blocks of ``cur`` that are overlap from the previous chunk
    headings_seen: list[Block] = []

    def section() -> str:
        return " > ".join(text for _, text in headings)

    def flush(keep_overlap: bool) -> None:
        nonlocal cur, n_carried
        fresh = cur[n_carried:]
        if not fresh:
            if not keep_overlap:
                cur, n_carried = [], 0
            return
        body = "\n\n".join(b.text for b in cur)
        lines = [b for b in fresh if b.line]
        anchors, offset = [], 0
        for i, b in enumerate(cur):
            if i >= n_carried and b.line:
                anchors.append((offset, b.line))
            offset += len(b.text) + 2
        chunks.append(Chunk(
            text=body, heading=section(), page=fresh[0].page,
            line=lines[0].line if lines else 0,
            end_line=max((b.end_line for b in lines), default=0), anchors=tuple(anchors)))
        tail = _tail(body, overlap) if keep_overlap else ""
        last = fresh[-1]
        cur = [Block(tail, "para", last.end_line, last.end_line, last.page)] if tail else []
        n_carried = len(cur)

    for block in blocks:
        if block.kind == "heading":
            flush(keep_overlap=False)
            headings_seen.append(block)
            level = block.level or 1
            headings = [(lvl, t) for lvl, t in headings if lvl < level] + [(level, block.text)]
            continue
        pieces = _split_long(block, max_chars) if len(block.text) > max_chars else [block]
        for piece in pieces:
            size = sum(len(b.text) + 2 for b in cur)
            page_change = bool(cur) and piece.page != cur[-1].page
            if cur and (size + len(piece.text) > max_chars or page_change):
                flush(keep_overlap=not page_change)
            cur.append(piece)
    flush(keep_overlap=False)
    if not chunks and headings_seen:
        # A document of headings only: they are its content.
        first = headings_seen[0]
        chunks.append(Chunk(text="\n".join(h.text for h in headings_seen), page=first.page,
                            line=first.line, end_line=headings_seen[-1].end_line))
    return chunks
