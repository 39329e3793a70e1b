"""Ingest files into a collection: find, read, chunk, embed in batches, store.

Runs in the daemon (a worker thread) with the engine's embedder; reports progress as
Ollama-style status events, and stops between batches when the client goes away.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmtui.errors import InvalidInput, LlmtuiError
from llmtui.rag.chunk import chunk_blocks
from llmtui.rag.extract import Skip, kind_of, read_blocks
from llmtui.rag.index import Collection, Collections, FileEntry

Embedder = Callable[[list[str]], list[list[float]]]
OnEvent = Callable[[dict[str, Any]], None]
BATCH = 32
_SKIP_DIRS = {"node_modules", "__pycache__", "venv", "site-packages", "dist", "build",
              "target"}


class Cancelled(LlmtuiError):
    """The client went away; what was stored so far stays consistent."""


@dataclass
class Document:
    source: str  # the key: an absolute path, or "stdin:NAME"
    name: str  # what citations show
    kind: str
    path: Path | None = None
    data: bytes | None = None


def collect(paths: list[str], skipped: list[tuple[str, str]],
            cwd: str | None = None) -> list[Document]:
    """Files under the given paths; unsupported ones go to ``skipped`` with a reason.

    Citations name files relative to ``cwd`` (the client's working folder) when under it.
    """
    docs: list[Document] = []
    seen: set[str] = set()
    base = Path(cwd).absolute() if cwd else Path.cwd()

    def add(path: Path, shown: str) -> None:
        source = str(path.resolve())
        if source in seen:
            return
        seen.add(source)
        kind = kind_of(path)
        if kind is None:
            skipped.append((shown, f"unsupported type ({path.suffix or 'no extension'})"))
            return
        docs.append(Document(source=source, name=shown, kind=kind, path=path))

    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise InvalidInput(f"no such file or folder: {raw}")
        if path.is_file():
            add(path, _shown(path, base))
            continue
        if not path.is_dir():
            skipped.append((raw, "not a regular file"))
            continue
        for full in walk(path):
            add(full, _shown(full, base))
    return docs


def walk(root: Path) -> Iterator[Path]:
    """Files under a folder, in order, skipping hidden ones and dependency/build folders."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIP_DIRS)
        for fname in sorted(filenames):
            full = Path(dirpath) / fname
            if not fname.startswith(".") and full.is_file():
                yield full


def _shown(path: Path, base: Path) -> str:
    """A short name for citations: relative to the working folder when under it."""
    try:
        return str(path.absolute().relative_to(base))
    except ValueError:
        return str(path.absolute())


def ingest(colls: Collections, name: str, model: str, docs: list[Document], embed: Embedder,
           *, on_event: OnEvent, cancelled: Callable[[], bool] = lambda: False,
           max_size: int = 20_000_000, prune: list[str] | None = None,
           skipped: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Bring the collection up to date with ``docs``; returns counts for the summary.

    ``prune``: folders whose previously ingested files no longer exist are dropped (watch).
    """
    started = time.monotonic()
    probe = embed(["dimension probe"])
    coll = colls.open_or_create(name, model, len(probe[0]))
    counts: dict[str, Any] = {"added": 0, "updated": 0, "unchanged": 0, "removed": 0, "skipped": 0,
                               "new_chunks": 0}
    for shown, reason in skipped or []:
        on_event({"status": "skipped", "name": shown, "reason": reason})
        counts["skipped"] += 1
    with colls.lock(name):
        swept = coll.sweep()
        if swept:
            on_event({"status": f"cleaned {swept} chunks left by an interrupted ingest"})
        for i, doc in enumerate(docs, start=1):
            if cancelled():
                raise Cancelled("ingest cancelled; files done so far are stored")
            _one(coll, doc, embed, on_event, cancelled, max_size, counts, i, len(docs))
        if prune:
            roots = [str(Path(p).expanduser().resolve()) for p in prune]
            present = {d.source for d in docs}
            for source in list(coll.meta.files):
                under = any(source == r or source.startswith(r.rstrip("/") + "/")
                            for r in roots)
                if under and source not in present and not Path(source).exists():
                    on_event({"status": "removed", "name": coll.meta.files[source].name})
                    coll.remove_file(source)
                    counts["removed"] += 1
        if counts["added"] or counts["updated"] or counts["removed"] or swept:
            on_event({"status": "indexing"})
            coll.refresh_index()
    counts["seconds"] = round(time.monotonic() - started, 3)
    counts.update(coll.stats())
    return counts


def _one(coll: Collection, doc: Document, embed: Embedder, on_event: OnEvent,
         cancelled: Callable[[], bool], max_size: int, counts: dict[str, Any],
         index: int, total: int) -> None:
    previous = coll.meta.files.get(doc.source)

    def skip(reason: str) -> None:
        on_event({"status": "skipped", "name": doc.name, "reason": reason})
        counts["skipped"] += 1
        if previous is not None:  # it was readable before: the collection mirrors the file
            coll.remove_file(doc.source)
            counts["removed"] += 1

    try:
        if doc.data is None:
            assert doc.path is not None
            size = doc.path.stat().st_size
            if size > max_size:
                skip(f"larger than the {max_size // 1_000_000} MB limit ({size:,} bytes; "
                     "raise it with --max-size)")
                return
            data = doc.path.read_bytes()
        else:
            data = doc.data
    except OSError as exc:
        skip(f"cannot read it ({exc.strerror})")
        return
    digest = hashlib.sha256(data).hexdigest()
    if previous is not None and previous.hash == digest:
        counts["unchanged"] += 1
        on_event({"status": "unchanged", "name": doc.name})
        return
    try:
        blocks, warnings = read_blocks(doc.path or Path(doc.name), doc.kind, data)
    except Skip as exc:
        skip(str(exc))
        return
    for warning in warnings:
        on_event({"status": "warning", "name": doc.name, "reason": warning})
    chunks = chunk_blocks(blocks)
    vectors: list[list[float]] = []
    label = f"embedding {doc.name} ({index}/{total})"
    for start in range(0, len(chunks), BATCH):
        if cancelled():
            raise Cancelled("ingest cancelled; files done so far are stored")
        batch = chunks[start:start + BATCH]
        vectors.extend(embed([c.embed_text() for c in batch]))
        on_event({"status": label, "digest": doc.name, "total": len(chunks),
                  "completed": len(vectors)})
    pages = max((c.page for c in chunks), default=0)
    entry = FileEntry(hash=digest, name=doc.name, chunks=len(chunks), size=len(data),
                      added=time.time(), kind=doc.kind, pages=pages)
    coll.put_file(doc.source, entry, chunks, vectors)
    counts["updated" if previous else "added"] += 1
    counts["new_chunks"] += len(chunks)
    on_event({"status": "updated" if previous else "added", "name": doc.name,
              "chunks": len(chunks)})
