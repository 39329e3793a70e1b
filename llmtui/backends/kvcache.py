"""A prompt cache that outlives the model: KV state of long prompts saved to disk.

When a slot's cached prompt is about to be overwritten, when the model is unloaded and
when the daemon stops, the slot's state (llama.cpp's per-sequence state) is written to a
file keyed by the model file's digest and the prompt's tokens, with the logits that
followed the prompt. A later request whose prompt starts with a saved prompt restores it
instead of evaluating it again, whichever client sent it.

Files are owner-only and never trusted: the magic, the model digest, llama.cpp's state
format version, the token list and a checksum of the state are checked, and a file that
fails any check is removed. The folder is bounded in size, least recently used first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAGIC = b"LLMTUIKV"
FORMAT = 1
#: Prompts shorter than this are cheap to evaluate again: not worth a file.
MIN_TOKENS = 256
_HEAD = struct.Struct("<8sII")  # magic, format, header length


@dataclass
class Entry:
    path: Path
    tokens: list[int]
    size: int
    has_logits: bool


def cache_root(data_dir: Path) -> Path:
    return data_dir / "kvcache"


def entry_name(tokens: list[int]) -> str:
    return hashlib.sha256(struct.pack(f"<{len(tokens)}i", *tokens)).hexdigest()[:40] + ".kv"


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)


def read_header(path: Path) -> tuple[dict[str, Any], int]:
    """The JSON header of a cache file and where its payload starts (ValueError if bad)."""
    with path.open("rb") as fh:
        head = fh.read(_HEAD.size)
        if len(head) != _HEAD.size:
            raise ValueError("truncated header")
        magic, fmt, n = _HEAD.unpack(head)
        if magic != MAGIC or fmt != FORMAT or n > 1 << 26:
            raise ValueError("not an llmtui KV cache file")
        meta = json.loads(fh.read(n))
        if not isinstance(meta, dict):
            raise ValueError("bad header")
    return meta, _HEAD.size + n


class DiskCache:
    """One model's saved prompts: an index in memory, files on disk."""

    def __init__(self, folder: Path, digest: str, state_version: str, max_bytes: int,
                 root: Path | None = None) -> None:
        self.folder = folder
        self.root = root or folder.parent
        self.digest = digest
        self.state_version = state_version
        self.max_bytes = max_bytes
        self.entries: dict[str, Entry] = {}
        self.lock = threading.Lock()
        self.saved = 0
        self.restored = 0
        self._writers: list[threading.Thread] = []
        self._scan()

    def _scan(self) -> None:
        if not self.folder.is_dir():
            return
        for stale in self.folder.glob(".*.tmp"):  # a write cut short by a kill
            with contextlib.suppress(OSError):
                if time.time() - stale.stat().st_mtime > 60:
                    stale.unlink()
        for path in self.folder.glob("*.kv"):
            try:
                meta, _ = read_header(path)
                tokens = [int(t) for t in meta["tokens"]]
                if meta.get("digest") != self.digest or \
                        meta.get("state_version") != self.state_version or \
                        entry_name(tokens) != path.name:
                    raise ValueError("another model or version")
                self.entries[path.name] = Entry(path, tokens, path.stat().st_size,
                                                bool(meta.get("logits_bytes")))
            except (OSError, ValueError, KeyError, TypeError):
                path.unlink(missing_ok=True)  # never trusted, never kept

    # -- lookup ----------------------------------------------------------------------------

    def best(self, prompt: list[int], better_than: int) -> tuple[Entry, int] | None:
        """The saved prompt sharing the longest start with ``prompt`` (a system prompt, a
        document, the earlier turns), when that beats what a slot already holds; with the
        length shared (the rest of the restored state is dropped)."""
        from llmtui.backends.slots import common_prefix

        with self.lock:
            entries = list(self.entries.values())
        found: tuple[Entry, int] | None = None
        for entry in entries:
            n = common_prefix(entry.tokens, prompt)
            if n >= MIN_TOKENS and n > better_than and (found is None or n > found[1]):
                found = (entry, n)
        return found

    def has(self, tokens: list[int]) -> bool:
        with self.lock:
            return entry_name(tokens) in self.entries

    # -- save ------------------------------------------------------------------------------

    def save(self, tokens: list[int], state: bytes, logits: Any) -> None:
        """Write in the background (the state is already copied out of the context)."""
        if self.max_bytes <= 0 or len(tokens) < MIN_TOKENS or self.has(tokens):
            return
        logits_bytes = b"" if logits is None else logits.astype("<f4").tobytes()
        thread = threading.Thread(target=self._write, args=(list(tokens), state, logits_bytes),
                                  name="llmtui-kvcache", daemon=True)
        thread.start()
        self._writers.append(thread)
        self._writers = [t for t in self._writers if t.is_alive()]

    def _write(self, tokens: list[int], state: bytes, logits: bytes) -> None:
        meta = {"digest": self.digest, "state_version": self.state_version,
                "tokens": tokens, "state_bytes": len(state), "logits_bytes": len(logits),
                "crc32": zlib.crc32(logits, zlib.crc32(state)), "created": time.time()}
        head = json.dumps(meta, separators=(",", ":")).encode()
        name = entry_name(tokens)
        try:
            _private_dir(self.folder)
            tmp = self.folder / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(_HEAD.pack(MAGIC, FORMAT, len(head)))
                fh.write(head)
                fh.write(state)
                fh.write(logits)
            path = self.folder / name
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        with self.lock:
            self.entries[name] = Entry(path, tokens, path.stat().st_size, bool(logits))
            self.saved += 1
        self.trim()

    def flush(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._writers:
            thread.join(max(0.0, deadline - time.monotonic()))

    def trim(self) -> None:
        """Least recently used files go until the whole cache folder fits its bound."""
        files = []
        for path in self.root.glob("*/*.kv"):
            with contextlib.suppress(OSError):
                st = path.stat()
                files.append((st.st_atime if st.st_atime > st.st_mtime else st.st_mtime,
                              st.st_size, path))
        total = sum(size for _t, size, _p in files)
        for _t, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            with self.lock:
                self.entries.pop(path.name, None)

    # -- restore ---------------------------------------------------------------------------

    def load(self, entry: Entry) -> tuple[bytes, Any] | None:
        """(state, logits or None) of an entry, or None (and the file removed) when any
        check fails."""
        import numpy as np

        try:
            meta, start = read_header(entry.path)
            tokens = [int(t) for t in meta["tokens"]]
            n_state, n_logits = int(meta["state_bytes"]), int(meta["logits_bytes"])
            if meta.get("digest") != self.digest or tokens != entry.tokens or \
                    meta.get("state_version") != self.state_version or \
                    entry.path.stat().st_size != start + n_state + n_logits:
                raise ValueError("header does not match")
            with entry.path.open("rb") as fh:
                fh.seek(start)
                state = fh.read(n_state)
                logits = fh.read(n_logits)
            if zlib.crc32(logits, zlib.crc32(state)) != int(meta["crc32"]):
                raise ValueError("checksum")
        except (OSError, ValueError, KeyError, TypeError):
            self.drop(entry)
            return None
        now = time.time()
        with contextlib.suppress(OSError):
            os.utime(entry.path, (now, now))  # recently used
        arr = np.frombuffer(logits, dtype="<f4").copy() if logits else None
        return state, arr

    def drop(self, entry: Entry) -> None:
        entry.path.unlink(missing_ok=True)
        with self.lock:
            self.entries.pop(entry.path.name, None)


def list_entries(root: Path) -> list[dict[str, Any]]:
    """Every saved prompt under the cache root (for `llm cache ls`)."""
    out = []
    for path in sorted(root.glob("*/*.kv")):
        try:
            meta, _ = read_header(path)
            st = path.stat()
        except (OSError, ValueError):
            continue
        out.append({"digest": meta.get("digest"), "tokens": len(meta.get("tokens") or []),
                    "size": st.st_size, "used": max(st.st_atime, st.st_mtime),
                    "file": path.name})
    return out
