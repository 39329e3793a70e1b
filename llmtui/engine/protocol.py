"""Framed messages between the manager and a worker: 4-byte length + a JSON object.

Requests carry an ``id`` so that a worker can serve several sequences at once later
(parallel slots) without a protocol change. Operations: load, generate, chat, embed,
tokenize, cancel, stats, shutdown. Replies: ready, chunk, done, error.
"""

from __future__ import annotations

import json
import struct
from typing import Any, BinaryIO

HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024  # embeddings of a large batch can be big; anything past is a bug

Message = dict[str, Any]


class ProtocolError(Exception):
    """The other side sent something that is not a frame, or went away."""


def encode(msg: Message) -> bytes:
    body = json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return HEADER.pack(len(body)) + body


def decode_body(body: bytes) -> Message:
    try:
        msg = json.loads(body)
    except ValueError as exc:
        raise ProtocolError(f"bad frame: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("bad frame: not an object")
    return msg


def read_frame(stream: BinaryIO) -> Message | None:
    """Blocking read of one frame; None at a clean end of stream."""
    head = _read_exact(stream, HEADER.size)
    if head is None:
        return None
    (size,) = HEADER.unpack(head)
    if size > MAX_FRAME:
        raise ProtocolError(f"frame of {size} bytes is too large")
    body = _read_exact(stream, size)
    if body is None:
        raise ProtocolError("stream ended inside a frame")
    return decode_body(body)


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            return None if not buf else bytes(buf)
        buf += chunk
    return bytes(buf)


def write_frame(stream: BinaryIO, msg: Message) -> None:
    stream.write(encode(msg))
    stream.flush()
