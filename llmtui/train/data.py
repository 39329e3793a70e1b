"""Training data: JSONL in the common shapes, or a folder of text and Markdown files,
validated up front (a bad record is named by its line), hashed, and split into a training
part and a held-out part for evaluation.

The shapes (one JSON object a line; blank lines are skipped):

- chat: ``{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", ...}]}``
- prompt/completion: ``{"prompt": "...", "completion": "..."}``
- plain text: ``{"text": "..."}``
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmtui.errors import InvalidInput

ROLES = ("system", "user", "assistant")
TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".text")
#: At most this many bad lines are named in the error; the rest are counted.
_SHOWN = 3


@dataclass(frozen=True)
class Record:
    """One training example and where it came from (``file:line``)."""

    kind: str  # "chat", "prompt" or "text"
    where: str
    messages: tuple[dict[str, str], ...] = ()
    prompt: str = ""
    completion: str = ""
    text: str = ""

    def to_json(self) -> dict[str, Any]:
        if self.kind == "chat":
            return {"messages": [dict(m) for m in self.messages]}
        if self.kind == "prompt":
            return {"prompt": self.prompt, "completion": self.completion}
        return {"text": self.text}

    def question(self) -> tuple[list[dict[str, str]], str] | None:
        """(the conversation up to the last answer, that answer), for side-by-side checks."""
        if self.kind == "prompt":
            return [{"role": "user", "content": self.prompt}], self.completion
        if self.kind == "chat":
            last = max(i for i, m in enumerate(self.messages) if m["role"] == "assistant")
            return [dict(m) for m in self.messages[:last]], self.messages[last]["content"]
        return None


@dataclass(frozen=True)
class Dataset:
    """The validated records of a file or folder and the sha256 of what they were read from."""

    source: str
    records: tuple[Record, ...]
    sha256: str

    @property
    def kinds(self) -> list[str]:
        return sorted({r.kind for r in self.records})


def _record(obj: Any) -> Record | str:
    """A record from one parsed line, or why it is not one."""
    if not isinstance(obj, dict):
        return "expected a JSON object"
    shapes = [k for k in ("messages", "prompt", "text") if k in obj]
    if not shapes:
        return "expected \"messages\", \"prompt\"/\"completion\" or \"text\""
    if len(shapes) > 1:
        return f"mixes two shapes ({', '.join(shapes)}); use one"
    if shapes[0] == "messages":
        msgs = obj["messages"]
        if not isinstance(msgs, list) or not msgs:
            return "\"messages\" must be a non-empty list"
        out = []
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in ROLES \
                    or not isinstance(m.get("content"), str):
                return (f"message {i + 1} must be {{\"role\": system|user|assistant, "
                        "\"content\": string}")
            out.append({"role": str(m["role"]), "content": str(m["content"])})
        if not any(m["role"] == "assistant" and m["content"].strip() for m in out):
            return "the conversation has no assistant answer to learn"
        return Record("chat", "", messages=tuple(out))
    if shapes[0] == "prompt":
        prompt, completion = obj.get("prompt"), obj.get("completion")
        if not isinstance(prompt, str) or not isinstance(completion, str):
            return "\"prompt\" and \"completion\" must both be strings"
        if not completion.strip():
            return "\"completion\" is empty"
        return Record("prompt", "", prompt=prompt, completion=completion)
    text = obj["text"]
    if not isinstance(text, str) or not text.strip():
        return "\"text\" must be a non-empty string"
    return Record("text", "", text=text)


def _read_jsonl(path: Path) -> tuple[list[Record], bytes]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
    records: list[Record] = []
    bad: list[str] = []
    for n, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            bad.append(f"line {n}: not UTF-8 text")
            continue
        except ValueError as exc:
            bad.append(f"line {n}: not valid JSON ({str(exc).split(':')[0]})")
            continue
        made = _record(obj)
        if isinstance(made, str):
            bad.append(f"line {n}: {made}")
        else:
            records.append(Record(made.kind, f"{path.name}:{n}", made.messages, made.prompt,
                                  made.completion, made.text))
    if bad:
        more = f" (and {len(bad) - _SHOWN} more bad lines)" if len(bad) > _SHOWN else ""
        raise InvalidInput(f"{path.name}: " + "; ".join(bad[:_SHOWN]) + more,
                           hint="fix these lines; nothing was trained")
    return records, raw


def _read_texts(paths: list[Path], root: Path) -> tuple[list[Record], bytes]:
    records: list[Record] = []
    h = hashlib.sha256()
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"{path}: not UTF-8 text") from None
        except OSError as exc:
            raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
        rel = str(path.relative_to(root)) if path != root else path.name
        h.update(rel.encode() + b"\0" + text.encode() + b"\0")
        if text.strip():
            records.append(Record("text", rel, text=text))
    return records, h.digest()


def load(spec: str | Path) -> Dataset:
    """Read and validate a JSONL file, a text/Markdown file, or a folder of them."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise InvalidInput(f"no such file or folder: {spec}")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file()
                       and p.suffix.lower() in TEXT_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise InvalidInput(f"{spec} holds no text or Markdown files (.txt, .md)")
        records, raw = _read_texts(files, path)
    elif path.suffix.lower() in TEXT_SUFFIXES:
        records, raw = _read_texts([path], path)
    else:
        records, raw = _read_jsonl(path)
    if not records:
        raise InvalidInput(f"{spec} holds no training records", hint="nothing was trained")
    return Dataset(str(path), tuple(records), hashlib.sha256(raw).hexdigest())


def split(records: tuple[Record, ...] | list[Record], fraction: float = 0.1,
          seed: int = 0) -> tuple[list[Record], list[Record]]:
    """(train, held-out): a seeded shuffle, at least one held-out record when there are
    five or more, none below that (the caller evaluates on the training data then)."""
    items = list(records)
    if len(items) < 5 or fraction <= 0:
        return items, []
    rng = random.Random(seed)
    order = list(range(len(items)))
    rng.shuffle(order)
    n = max(1, min(len(items) - 1, round(len(items) * fraction)))
    held = sorted(order[:n])
    keep = sorted(order[n:])
    return [items[i] for i in keep], [items[i] for i in held]


def chunk_text(text: str, size: int) -> list[str]:
    """Long plain text cut into pieces of about ``size`` characters at paragraph or line
    breaks, so one book becomes many examples instead of one truncated one."""
    if len(text) <= size:
        return [text]
    out: list[str] = []
    buf = ""
    for para in text.split("\n\n"):
        piece = para + "\n\n"
        if buf and len(buf) + len(piece) > size:
            out.append(buf)
            buf = ""
        while len(piece) > size:
            cut = piece.rfind("\n", 0, size)
            cut = cut if cut > size // 2 else size
            out.append(piece[:cut])
            piece = piece[cut:]
        buf += piece
    if buf.strip():
        out.append(buf)
    return [p for p in out if p.strip()]


def plain_text(record: Record) -> str:
    """A record as plain text (its turns one after another), for scoring with a model."""
    if record.kind == "chat":
        return "\n".join(m["content"] for m in record.messages)
    if record.kind == "prompt":
        return f"{record.prompt}\n{record.completion}"
    return record.text
