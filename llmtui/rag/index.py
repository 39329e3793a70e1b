"""Collections: one LanceDB table of chunks each, plus a small JSON manifest of its files.

Layout under the data folder::

    rag/<name>.json          model, dimensions, and per file: content hash, chunk count
    rag/lancedb/<name>.lance the chunks: text, source, location, vector (+ FTS index)

Consistency without transactions: a file's new chunks are written *before* the manifest
records the file's new hash, and searches only return chunks whose hash matches the
manifest. An ingest killed midway leaves invisible leftovers, which the next run deletes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmtui.compat import lock_fd
from llmtui.errors import CollectionNotFound, EmbeddingMismatch, InvalidInput, require
from llmtui.paths import private_dir
from llmtui.rag.chunk import Chunk

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
RRF_K = 60  # the usual reciprocal-rank-fusion constant: rank 1 counts 1/61


def check_name(name: str) -> str:
    """Collection names become file names: letters, digits, '.', '_', '-' only."""
    if not _NAME.fullmatch(name or "") or ".." in name:
        raise InvalidInput(
            f"invalid collection name {name!r}",
            hint="use letters, digits, '.', '_' or '-' (no '/' or '..'), at most 64")
    return name


@dataclass
class FileEntry:
    hash: str
    name: str
    chunks: int
    size: int
    added: float
    kind: str = ""
    pages: int = 0


@dataclass
class Meta:
    name: str
    model: str
    dims: int
    created: float
    files: dict[str, FileEntry] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model, "dims": self.dims,
                "created": self.created,
                "files": {k: vars(v) for k, v in sorted(self.files.items())}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Meta:
        return cls(name=data["name"], model=data["model"], dims=int(data["dims"]),
                   created=float(data.get("created", 0)),
                   files={k: FileEntry(**v) for k, v in data.get("files", {}).items()})


@dataclass
class Hit:
    text: str
    source: str
    name: str
    page: int
    line: int
    end_line: int
    heading: str
    score: float  # fused rank score
    similarity: float  # cosine similarity of the vectors (-1..1), the relevance gate
    keyword_rank: int = 0  # 1-based rank in full-text search, 0 when not matched

    @property
    def citation(self) -> str:
        if self.page:
            return f"{self.name}:{self.page}"
        if self.line:
            return f"{self.name}:{self.line}"
        return self.name

    def to_json(self) -> dict[str, Any]:
        return {"citation": self.citation, "source": self.source, "name": self.name,
                "page": self.page or None, "line": self.line or None,
                "end_line": self.end_line or None, "heading": self.heading,
                "score": round(self.score, 6), "similarity": round(self.similarity, 4),
                "text": self.text}


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class Collections:
    """All collections under one data folder."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "rag"
        self._db: Any = None

    def db(self) -> Any:
        if self._db is None:
            lancedb = require("lancedb", "rag", "RAG collections")
            private_dir(self.root)
            self._db = lancedb.connect(str(self.root / "lancedb"))  # type: ignore[attr-defined]
        return self._db

    def meta_path(self, name: str) -> Path:
        return self.root / f"{check_name(name)}.json"

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.stem for p in self.root.glob("*.json") if _NAME.fullmatch(p.stem))

    def exists(self, name: str) -> bool:
        return self.meta_path(name).is_file()

    def get(self, name: str) -> Collection:
        if not self.exists(name):
            known = self.names()
            raise CollectionNotFound(
                f"no collection named '{name}'",
                hint=("collections: " + ", ".join(known)) if known
                else f"create it with: llm rag add PATH -c {name}")
        return Collection(self, name)

    def open_or_create(self, name: str, model: str, dims: int) -> Collection:
        check_name(name)
        with self.lock(name):
            if not self.exists(name):
                meta = Meta(name=name, model=model, dims=dims, created=time.time())
                self._write_meta(meta)
        coll = Collection(self, name)
        coll.check_model(model)
        if coll.meta.dims != dims:
            raise EmbeddingMismatch(
                f"collection '{name}' holds {coll.meta.dims}-dimension vectors; "
                f"{model} makes {dims}")
        return coll

    def delete(self, name: str) -> None:
        coll = self.get(name)
        with self.lock(name):
            with contextlib.suppress(Exception):  # no table yet: nothing was ingested
                self.db().drop_table(name)
            coll.meta_path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """One writer per collection, across processes (the daemon and `llm rag` alike)."""
        private_dir(self.root)
        fd = os.open(self.root / f".{check_name(name)}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            lock_fd(fd)
            yield
        finally:
            os.close(fd)

    def _write_meta(self, meta: Meta) -> None:
        path = self.meta_path(meta.name)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{meta.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(meta.to_json(), fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


class Collection:
    def __init__(self, parent: Collections, name: str) -> None:
        self.parent = parent
        self.name = name
        self.meta_path = parent.meta_path(name)
        self.meta = self._read_meta()
        self._table: Any = None

    def _read_meta(self) -> Meta:
        try:
            return Meta.from_json(json.loads(self.meta_path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise CollectionNotFound(f"no collection named '{self.name}'") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"the manifest of collection '{self.name}' is damaged: {exc}",
                               hint=f"remove it with: llm rag rm {self.name}") from None

    def reload(self) -> None:
        self.meta = self._read_meta()

    def check_model(self, model: str) -> None:
        if model != self.meta.model:
            raise EmbeddingMismatch(
                f"collection '{self.name}' was built with {self.meta.model}, not {model}",
                hint=f"use -m {self.meta.model}, or a new collection for the other model")

    # -- the table ---------------------------------------------------------------------------

    def _schema(self) -> Any:
        import pyarrow as pa

        return pa.schema([
            pa.field("id", pa.string()),
            pa.field("source", pa.string()),
            pa.field("name", pa.string()),
            pa.field("hash", pa.string()),
            pa.field("seq", pa.int32()),
            pa.field("page", pa.int32()),
            pa.field("line", pa.int32()),
            pa.field("end_line", pa.int32()),
            pa.field("heading", pa.string()),
            pa.field("anchors", pa.string()),
            pa.field("text", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), self.meta.dims)),
        ], metadata={"llmtui.embed_model": self.meta.model, "llmtui.dims": str(self.meta.dims)})

    def table(self, create: bool = False) -> Any:
        if self._table is None:
            db = self.parent.db()
            try:
                self._table = db.open_table(self.name)
            except (FileNotFoundError, ValueError):
                if not create:
                    return None
                self._table = db.create_table(self.name, schema=self._schema())
            model = (self._table.schema.metadata or {}).get(b"llmtui.embed_model", b"").decode()
            if model and model != self.meta.model:
                raise EmbeddingMismatch(
                    f"collection '{self.name}': its table was built with {model}, "
                    f"its manifest says {self.meta.model}")
        else:
            with contextlib.suppress(Exception):
                self._table.checkout_latest()
        return self._table

    # -- writing (callers hold Collections.lock) ---------------------------------------------

    def put_file(self, source: str, entry: FileEntry, chunks: list[Chunk],
                 vectors: list[list[float]]) -> None:
        """Replace one file's chunks; the manifest flips to the new hash last."""
        table = self.table(create=True)
        h = entry.hash
        table.delete(f"source = {_sql_str(source)} AND hash = {_sql_str(h)}")  # leftovers
        rows = [{
            "id": f"{h[:16]}-{i}", "source": source, "name": entry.name, "hash": h, "seq": i,
            "page": c.page, "line": c.line, "end_line": c.end_line, "heading": c.heading,
            "anchors": json.dumps(c.anchors), "text": c.text, "vector": v,
        } for i, (c, v) in enumerate(zip(chunks, vectors, strict=True))]
        if rows:
            table.add(rows)
        self.reload()
        self.meta.files[source] = entry
        self.parent._write_meta(self.meta)
        table.delete(f"source = {_sql_str(source)} AND hash != {_sql_str(h)}")

    def remove_file(self, source: str) -> None:
        self.reload()
        self.meta.files.pop(source, None)
        self.parent._write_meta(self.meta)
        table = self.table()
        if table is not None:
            table.delete(f"source = {_sql_str(source)}")

    def sweep(self) -> int:
        """Delete chunks the manifest does not own (left by an interrupted ingest)."""
        table = self.table()
        if table is None:
            return 0
        self.reload()
        before = table.count_rows()
        if before == 0:
            return 0
        owned = {s: e.hash for s, e in self.meta.files.items()}
        rows = table.search().select(["source", "hash"]).limit(before).to_list()
        stale = {(r["source"], r["hash"]) for r in rows if owned.get(r["source"]) != r["hash"]}
        for source, h in stale:
            table.delete(f"source = {_sql_str(source)} AND hash = {_sql_str(h)}")
        return before - table.count_rows()

    def refresh_index(self) -> None:
        """(Re)build the full-text index after writes; vectors are searched exactly."""
        table = self.table()
        if table is None or table.count_rows() == 0:
            return
        from lancedb.index import FTS

        table.create_index("text", config=FTS(with_position=False), replace=True)

    # -- reading -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        files = self.meta.files
        return {"name": self.name, "model": self.meta.model, "dimensions": self.meta.dims,
                "files": len(files), "chunks": sum(f.chunks for f in files.values()),
                "bytes": sum(f.size for f in files.values()),
                "created_at": self.meta.created,
                "updated_at": max((f.added for f in files.values()),
                                  default=self.meta.created)}

    def search(self, vector: list[float], query: str, k: int = 5,
               pool: int | None = None) -> list[Hit]:
        """Hybrid search: vector and full-text candidates fused by reciprocal rank."""
        table = self.table()
        if table is None or not self.meta.files:
            return []
        owned = {s: e.hash for s, e in self.meta.files.items()}
        n = pool or max(4 * k, 20)
        cols = ["id", "source", "name", "hash", "page", "line", "end_line", "heading",
                "anchors", "text", "vector"]
        vec_rows = (table.search(vector, vector_column_name="vector").metric("cosine")
                    .limit(n * 2).select([*cols, "_distance"]).to_list())
        kw_rows: list[dict[str, Any]] = []
        if query.strip():
            with contextlib.suppress(Exception):  # no FTS index yet, or an odd query
                kw_rows = (table.search(_fts_query(query), query_type="fts").limit(n * 2)
                           .select([*cols, "_score"]).to_list())

        def current(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [r for r in rows if owned.get(r["source"]) == r["hash"]][:n]

        fused: dict[str, dict[str, Any]] = {}
        for rank, row in enumerate(current(vec_rows), start=1):
            entry = fused.setdefault(row["id"] + row["source"], {"row": row, "score": 0.0})
            entry["score"] += 1.0 / (RRF_K + rank)
            entry["similarity"] = 1.0 - float(row.get("_distance", 1.0))
        for rank, row in enumerate(current(kw_rows), start=1):
            entry = fused.setdefault(row["id"] + row["source"], {"row": row, "score": 0.0})
            entry["score"] += 1.0 / (RRF_K + rank)
            entry["keyword_rank"] = rank
        import numpy as np

        q = np.asarray(vector, dtype=np.float32)
        hits = []
        for entry in fused.values():
            row = entry["row"]
            if "similarity" not in entry:  # found by keywords only: measure it too
                v = np.asarray(row["vector"], dtype=np.float32)
                denom = float(np.linalg.norm(v) * np.linalg.norm(q)) or 1.0
                entry["similarity"] = float(v @ q) / denom
            hits.append(Hit(text=row["text"], source=row["source"], name=row["name"],
                            page=int(row["page"]),
                            line=_focus_line(row["text"], row.get("anchors"), query,
                                             int(row["line"])),
                            end_line=int(row["end_line"]), heading=row["heading"],
                            score=entry["score"], similarity=entry["similarity"],
                            keyword_rank=entry.get("keyword_rank", 0)))
        hits.sort(key=lambda h: h.score, reverse=True)
        return hits[:k]


_STOP = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from",
    "has", "have", "how", "i", "if", "in", "is", "it", "its", "of", "on", "or", "that",
    "the", "this", "to", "was", "what", "when", "where", "which", "who", "why", "will",
    "with", "you", "your"))


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"\w+", text.lower()) if len(w) > 1 and w not in _STOP}


def _focus_line(text: str, anchors_json: str | None, query: str, default: int) -> int:
    """The source line of the block in a chunk that shares most words with the query."""
    try:
        anchors = [tuple(a) for a in json.loads(anchors_json or "[]")]
    except ValueError:
        return default
    if len(anchors) < 2:
        return default
    wanted = _words(query)
    best, best_score = default, 0
    for i, (offset, line) in enumerate(anchors):
        end = anchors[i + 1][0] if i + 1 < len(anchors) else len(text)
        score = len(wanted & _words(text[offset:end]))
        if score > best_score:
            best, best_score = int(line), score
    return best


def _fts_query(text: str) -> str:
    """Plain words for the full-text index: its query parser must not see operators."""
    words = re.findall(r"\w+", text.lower())
    return " ".join(words[:64])
