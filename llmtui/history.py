"""Conversation history in SQLite (WAL), shared by the TUI and ``llm history``.

Replies are written while they stream (marked partial) and finalized when done, so a
killed app or daemon loses at most the last half-second of a reply, and what was kept
is marked as cut off.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmtui.errors import ExitCode, InvalidInput, LlmtuiError

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    system TEXT NOT NULL DEFAULT '',
    options TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    attachments TEXT NOT NULL DEFAULT '[]',
    stats TEXT NOT NULL DEFAULT '{}',
    partial INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation, id);
"""


#: (History has a .list() method: the builtin is named here for annotations inside it.)
_Attachments = list[dict[str, Any]]


class ConversationNotFound(LlmtuiError):
    exit_code = ExitCode.INVALID_INPUT
    http_status = 404


@dataclass
class Message:
    role: str
    content: str
    id: int | None = None
    model: str = ""
    attachments: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    partial: bool = False
    created: float = field(default_factory=time.time)

    def for_model(self, image: Callable[[dict[str, Any]], bytes] | None = None
                  ) -> dict[str, Any]:
        """The message as the chat API takes it: text attachments folded into the text,
        image attachments (read by ``image``, e.g. History.image_bytes) as ``images``."""
        text = self.content
        images = []
        for att in self.attachments:
            if att.get("kind") == "image":
                if image is not None:
                    images.append(base64.b64encode(image(att)).decode("ascii"))
            elif att.get("text") is not None:
                name = att.get("name", "file")
                text = f"{text}\n\n<file name=\"{name}\">\n{att['text']}\n</file>"
        out: dict[str, Any] = {"role": self.role, "content": text}
        if images:
            out["images"] = images
        if self.role == "assistant" and self.stats.get("thinking"):
            out["thinking"] = self.stats["thinking"]
        if self.role == "assistant" and self.stats.get("tool_calls"):
            out["tool_calls"] = self.stats["tool_calls"]
        if self.role == "tool" and self.stats.get("tool_name"):
            out["tool_name"] = self.stats["tool_name"]
        return out

    @property
    def sends(self) -> bool:
        """Whether the message goes to the model: it has text, files or tool calls, or
        it is a tool's result (which may be empty)."""
        return bool(self.content or self.attachments or self.stats.get("tool_calls")
                    or self.role == "tool")

    @property
    def images(self) -> list[dict[str, Any]]:
        return [att for att in self.attachments if att.get("kind") == "image"]

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "content": self.content, "model": self.model,
                "attachments": self.attachments, "stats": self.stats,
                "partial": self.partial, "created": self.created}


@dataclass
class Conversation:
    id: str
    title: str
    model: str = ""
    system: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    messages: list[Message] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"format": "llmtui-conversation", "version": 1, "id": self.id,
                "title": self.title, "model": self.model, "system": self.system,
                "options": self.options, "created": self.created, "updated": self.updated,
                "messages": [m.to_json() for m in self.messages]}

    def to_markdown(self, images_dir: Path | None = None) -> str:
        """Markdown; with ``images_dir`` (History.images_dir) images are linked to their
        stored files."""
        lines = [f"# {self.title}", ""]
        meta = [f"model: {self.model}"] if self.model else []
        if self.system:
            meta.append(f"system: {self.system}")
        if meta:
            lines += [f"_{' · '.join(meta)}_", ""]
        for m in self.messages:
            who = {"user": "You", "assistant": "Assistant", "system": "System"}.get(
                m.role, m.role.title())
            if m.role == "tool":  # a call's result, under the call
                st = m.stats
                lines += [f"### Tool: {st.get('tool_name', 'tool')} · "
                          f"{st.get('status', 'ok')}", "", "```", m.content, "```", ""]
                continue
            lines.append(f"## {who}" + (" (cut off)" if m.partial else ""))
            lines.append("")
            lines.append(m.content)
            for call in m.stats.get("tool_calls") or []:
                fn = call.get("function") or {}
                args = json.dumps(fn.get("arguments") or {}, ensure_ascii=False)
                lines += ["", f"_called `{fn.get('name', '?')}({args})`_"]
            for att in m.attachments:
                name = att.get("name", "file")
                if att.get("kind") == "image" and images_dir is not None:
                    lines += ["", f"![{name}]({image_file(images_dir, att)})"]
                else:
                    lines += ["", f"_attached: {name}_"]
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"


def image_file(images_dir: Path, att: dict[str, Any]) -> Path:
    """Where an image attachment's bytes are kept: by hash, beside history.db."""
    digest = str(att.get("sha256") or "")
    fmt = str(att.get("format") or "img")
    if not re.fullmatch(r"[0-9a-f]{64}", digest) or not re.fullmatch(r"[a-z0-9]{1,8}", fmt):
        raise InvalidInput("malformed image attachment")
    return images_dir / f"{digest}.{fmt}"


#: (conversation, the message it answered or None, the reply), for `llm logs`.
Replies = list[tuple[Conversation, Message | None, Message]]


class History:
    """One SQLite file; every call opens its own short transaction. Images attached to
    messages are files named by their sha256 in ``images/`` beside it, not blobs in
    SQLite: the database stays small and one picture sent twice is stored once."""

    def __init__(self, path: Path) -> None:
        from llmtui.paths import private_dir, private_file

        self.path = path
        self.images_dir = path.parent / "images"
        private_dir(path.parent)
        # Conversations are private: the file exists 0600 before SQLite opens it, and
        # SQLite gives the -wal and -shm files the database's own mode.
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if p == path or p.exists():
                private_file(p)
        self._db = sqlite3.connect(str(path), timeout=10, isolation_level=None,
                                   check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)

    @classmethod
    def default(cls, settings: Any = None) -> History:
        from llmtui.config import Settings

        settings = settings or Settings.load()
        return cls(settings.paths.data_dir / "history.db")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- conversations -------------------------------------------------------------------

    def create(self, title: str = "New chat", model: str = "", system: str = "",
               options: dict[str, Any] | None = None) -> Conversation:
        conv = Conversation(id=uuid.uuid4().hex[:12], title=title, model=model,
                            system=system, options=options or {})
        with self._tx() as db:
            db.execute("INSERT INTO conversations VALUES (?,?,?,?,?,?,?)",
                       (conv.id, conv.title, conv.model, conv.system,
                        json.dumps(conv.options), conv.created, conv.updated))
        return conv

    def list(self, search: str | None = None, limit: int = 500) -> list[Conversation]:
        if search:
            like = f"%{search.replace('%', '').replace('_', '')}%"
            rows = self._db.execute(
                "SELECT * FROM conversations c WHERE c.title LIKE ? OR EXISTS (SELECT 1 FROM "
                "messages m WHERE m.conversation = c.id AND m.content LIKE ?) "
                "ORDER BY updated DESC LIMIT ?", (like, like, limit)).fetchall()
        else:
            rows = self._db.execute("SELECT * FROM conversations ORDER BY updated DESC "
                                    "LIMIT ?", (limit,)).fetchall()
        return [self._conv(r) for r in rows]

    def resolve(self, ref: str) -> str:
        """A conversation id from an id, a unique id prefix, or a list number (1 = newest)."""
        if ref.isdigit() and len(ref) < 6:
            items = self.list()
            n = int(ref)
            if 1 <= n <= len(items):
                return items[n - 1].id
        rows = self._db.execute("SELECT id FROM conversations WHERE id LIKE ?",
                                (ref.replace("%", "") + "%",)).fetchall()
        if len(rows) == 1:
            return str(rows[0]["id"])
        if not rows:
            raise ConversationNotFound(f"no conversation '{ref}'",
                                       hint="llm history list shows them")
        raise InvalidInput(f"'{ref}' matches {len(rows)} conversations; give more of the id")

    def get(self, conv_id: str) -> Conversation:
        row = self._db.execute("SELECT * FROM conversations WHERE id = ?",
                               (conv_id,)).fetchone()
        if row is None:
            raise ConversationNotFound(f"no conversation '{conv_id}'")
        conv = self._conv(row)
        conv.messages = [self._msg(r) for r in self._db.execute(
            "SELECT * FROM messages WHERE conversation = ? ORDER BY id", (conv_id,))]
        return conv

    def update(self, conv_id: str, **fields: Any) -> None:
        allowed = {"title", "model", "system", "options"}
        if not fields or set(fields) - allowed:
            raise InvalidInput(f"can only update {', '.join(sorted(allowed))}")
        if "title" in fields:
            fields["title"] = " ".join(str(fields["title"]).split())[:200]
            if not fields["title"]:
                raise InvalidInput("a title cannot be empty")
        if "options" in fields:
            fields["options"] = json.dumps(fields["options"])
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._tx() as db:
            cur = db.execute(f"UPDATE conversations SET {sets}, updated = ? WHERE id = ?",
                             (*fields.values(), time.time(), conv_id))
            if cur.rowcount == 0:
                raise ConversationNotFound(f"no conversation '{conv_id}'")

    def delete(self, conv_id: str) -> None:
        with self._tx() as db:
            cur = db.execute("DELETE FROM conversations WHERE id = ?", (conv_id,))
            if cur.rowcount == 0:
                raise ConversationNotFound(f"no conversation '{conv_id}'")
        self._drop_unused_images()

    # -- images --------------------------------------------------------------------------

    def add_image(self, data: bytes, name: str) -> dict[str, Any]:
        """Keep an image's bytes (once per content) and return its attachment."""
        from llmtui.media import NOT_AN_IMAGE, detect

        fmt = detect(data)
        if fmt is None:
            raise InvalidInput(f"{name} {NOT_AN_IMAGE}")
        att = {"kind": "image", "name": name, "sha256": hashlib.sha256(data).hexdigest(),
               "format": fmt, "size": len(data)}
        target = image_file(self.images_dir, att)
        if not target.exists():
            from llmtui.paths import open_private, private_dir

            private_dir(self.images_dir)  # pictures are as private as the conversations
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            with open_private(tmp, "wb", encoding=None) as fh:
                fh.write(data)
            os.replace(tmp, target)
        return att

    def image_bytes(self, att: dict[str, Any]) -> bytes:
        try:
            return image_file(self.images_dir, att).read_bytes()
        except FileNotFoundError:
            raise InvalidInput(f"the image {att.get('name', '')} of this conversation is "
                               "missing from the data folder") from None

    def _drop_unused_images(self) -> None:
        """Remove image files no remaining message refers to."""
        if not self.images_dir.is_dir():
            return
        used = set()
        for row in self._db.execute("SELECT attachments FROM messages WHERE attachments "
                                    "LIKE '%\"image\"%'"):
            used |= {a.get("sha256") for a in json.loads(row["attachments"] or "[]")
                     if isinstance(a, dict)}
        for path in self.images_dir.iterdir():
            if path.stem not in used and not path.name.startswith("."):
                path.unlink(missing_ok=True)

    def export_json(self, conv: Conversation) -> dict[str, Any]:
        """The JSON export, with each image's bytes inline (base64) so it travels alone."""
        data = conv.to_json()
        for message in data["messages"]:
            message["attachments"] = [
                {**att, "data": base64.b64encode(self.image_bytes(att)).decode("ascii")}
                if att.get("kind") == "image" else att for att in message["attachments"]]
        return data

    # -- messages ------------------------------------------------------------------------

    def add(self, conv_id: str, message: Message) -> Message:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO messages (conversation, role, content, model, attachments, stats,"
                " partial, created) VALUES (?,?,?,?,?,?,?,?)",
                (conv_id, message.role, message.content, message.model,
                 json.dumps(message.attachments), json.dumps(message.stats),
                 int(message.partial), message.created))
            db.execute("UPDATE conversations SET updated = ? WHERE id = ?",
                       (time.time(), conv_id))
        message.id = cur.lastrowid
        return message

    def save(self, message: Message) -> None:
        """Write a message's current text, stats and partial flag (during streaming too)."""
        if message.id is None:
            raise InvalidInput("message was never added")
        with self._tx() as db:
            db.execute("UPDATE messages SET content = ?, stats = ?, partial = ? WHERE id = ?",
                       (message.content, json.dumps(message.stats), int(message.partial),
                        message.id))

    def delete_from(self, conv_id: str, message_id: int) -> None:
        """Drop a message and everything after it (regenerate, edit and resend)."""
        with self._tx() as db:
            db.execute("DELETE FROM messages WHERE conversation = ? AND id >= ?",
                       (conv_id, message_id))

    def replies(self, limit: int = 3, *, conversation: str | None = None,
                model: str | None = None,
                search: str | None = None) -> Replies:
        """The newest replies, oldest first, each with its conversation and the message it
        answered (`llm logs`); ``limit`` 0 means all."""
        where, args = ["m.role = 'assistant'"], []
        if conversation:
            where.append("m.conversation = ?")
            args.append(conversation)
        if model:
            where.append("m.model = ?")
            args.append(model)
        if search:
            like = f"%{search.replace('%', '').replace('_', '')}%"
            where.append("(m.content LIKE ? OR EXISTS (SELECT 1 FROM messages u WHERE "
                         "u.conversation = m.conversation AND u.id < m.id AND u.role = 'user' "
                         "AND u.content LIKE ?))")
            args += [like, like]
        sql = f"SELECT * FROM messages m WHERE {' AND '.join(where)} ORDER BY m.id DESC"
        if limit > 0:
            sql += f" LIMIT {int(limit)}"
        out: Replies = []
        convs: dict[str, Conversation] = {}
        for row in self._db.execute(sql, args).fetchall():
            cid = row["conversation"]
            if cid not in convs:
                crow = self._db.execute("SELECT * FROM conversations WHERE id = ?",
                                        (cid,)).fetchone()
                convs[cid] = self._conv(crow)
            asked = self._db.execute(
                "SELECT * FROM messages WHERE conversation = ? AND id < ? AND role = 'user' "
                "ORDER BY id DESC LIMIT 1", (cid, row["id"])).fetchone()
            out.append((convs[cid], self._msg(asked) if asked else None, self._msg(row)))
        return out[::-1]

    # -- import / export -----------------------------------------------------------------

    def import_json(self, data: Any) -> Conversation:
        if not isinstance(data, dict) or data.get("format") != "llmtui-conversation":
            raise InvalidInput("not an llmtui conversation export (missing "
                               "\"format\": \"llmtui-conversation\")")
        messages = data.get("messages")
        if not isinstance(messages, list):
            raise InvalidInput("'messages' must be a list")
        parsed = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant",
                                                                "tool") \
                    or not isinstance(m.get("content"), str):
                raise InvalidInput(f"message {i} needs a role and text content")
            parsed.append(Message(role=m["role"], content=m["content"],
                                  model=str(m.get("model") or ""),
                                  attachments=self._import_attachments(
                                      m.get("attachments"), i),
                                  stats=dict(m.get("stats") or {}),
                                  partial=bool(m.get("partial")),
                                  created=float(m.get("created") or time.time())))
        options = data.get("options") or {}
        if not isinstance(options, dict):
            raise InvalidInput("'options' must be an object")
        conv = self.create(title=str(data.get("title") or "Imported chat")[:200],
                           model=str(data.get("model") or ""),
                           system=str(data.get("system") or ""), options=options)
        for m in parsed:
            self.add(conv.id, m)
        return self.get(conv.id)

    def _import_attachments(self, raw: Any, index: int) -> _Attachments:
        """Attachments of an imported message; inline images go back to the images folder."""
        if raw is None:
            return []
        if not isinstance(raw, list) or not all(isinstance(a, dict) for a in raw):
            raise InvalidInput(f"message {index}: 'attachments' must be a list of objects")
        out = []
        for att in raw:
            if att.get("kind") == "image":
                if not isinstance(att.get("data"), str):
                    raise InvalidInput(f"message {index}: an image attachment has no data")
                from llmtui.media import b64decode

                data = b64decode(att["data"], f"an image of message {index}")
                att = self.add_image(data, str(att.get("name") or "image"))
            out.append(att)
        return out

    # -- rows ----------------------------------------------------------------------------

    @staticmethod
    def _conv(row: sqlite3.Row) -> Conversation:
        return Conversation(id=row["id"], title=row["title"], model=row["model"],
                            system=row["system"], options=json.loads(row["options"] or "{}"),
                            created=row["created"], updated=row["updated"])

    @staticmethod
    def _msg(row: sqlite3.Row) -> Message:
        return Message(role=row["role"], content=row["content"], id=row["id"],
                       model=row["model"], attachments=json.loads(row["attachments"] or "[]"),
                       stats=json.loads(row["stats"] or "{}"), partial=bool(row["partial"]),
                       created=row["created"])


def title_from(text: str) -> str:
    words = " ".join(text.split())
    return (words[:48] + "…") if len(words) > 48 else (words or "New chat")
