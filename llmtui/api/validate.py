"""Checks on request parameters, shared by the HTTP API and the CLI: 400s, not crashes."""

from __future__ import annotations

import logging
import math
from typing import Any

from llmtui.errors import InvalidInput

log = logging.getLogger("llmtui.api")

# name: (type, low, high)
_NUMERIC: dict[str, tuple[type, float, float]] = {
    "temperature": (float, 0.0, 100.0),
    "top_p": (float, 0.0, 1.0),
    "min_p": (float, 0.0, 1.0),
    "typical_p": (float, 0.0, 1.0),
    "top_k": (int, 0, 1_000_000),
    "repeat_penalty": (float, 0.0, 100.0),
    "presence_penalty": (float, -100.0, 100.0),
    "frequency_penalty": (float, -100.0, 100.0),
    "repeat_last_n": (int, -1, 1_000_000),
    "seed": (int, -1, 2**63 - 1),
    "num_predict": (int, -2, 10_000_000),
    "num_ctx": (int, 0, 10_000_000),
    "num_batch": (int, 1, 1_000_000),
    "num_thread": (int, 0, 4096),
    "num_gpu": (int, -1, 100_000),
    "num_keep": (int, -1, 10_000_000),
    "num_parallel": (int, 1, 64),
    "main_gpu": (int, 0, 64),
    "mirostat": (int, 0, 2),
    "mirostat_tau": (float, 0.0, 100.0),
    "mirostat_eta": (float, 0.0, 100.0),
}
_BOOL = {"numa", "low_vram", "use_mmap", "use_mlock", "penalize_newline", "vocab_only",
         "f16_kv", "logits_all", "embedding_only"}


def check_options(options: Any, *, strict: bool = False) -> dict[str, Any]:
    """Validate Ollama-style options. Like Ollama, a null value means "not set" and an
    unknown key (an old option such as tfs_z, or a future one) is logged and ignored,
    since client libraries send both; ``strict`` (a person typing a name) refuses it.
    A known option with a wrong type or value is always refused."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise InvalidInput("options must be an object")
    out: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        if key == "stop":
            stops = [value] if isinstance(value, str) else value
            if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops) \
                    or len(stops) > 16 or any(len(s) > 256 for s in stops):
                raise InvalidInput("option 'stop' must be up to 16 strings")
            out[key] = [s for s in stops if s]
        elif key == "draft":
            # speculative decoding: "lookup", "none", or a draft model's name
            if not isinstance(value, str) or not value.strip() or len(value) > 200:
                raise InvalidInput("option 'draft' must be \"lookup\", \"none\" or a model name")
            out[key] = value.strip()
        elif key == "stream_interval":
            # how often streamed text is sent after the first token: seconds or "20ms"
            from llmtui.config import stream_interval

            try:
                stream_interval(value)
            except ValueError as exc:
                raise InvalidInput(f"option 'stream_interval': {exc}") from None
            out[key] = value
        elif key in _NUMERIC:
            kind, lo, hi = _NUMERIC[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInput(f"option '{key}' must be a number, got {type(value).__name__}")
            if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
                raise InvalidInput(f"option '{key}' must be a finite number")
            if kind is int and isinstance(value, float) and not value.is_integer():
                raise InvalidInput(f"option '{key}' must be a whole number")
            if not lo <= value <= hi:
                raise InvalidInput(f"option '{key}' must be between {lo:g} and {hi:g}, "
                                   f"got {value:g}")
            out[key] = kind(value)
        elif key in _BOOL:
            if not isinstance(value, bool):
                raise InvalidInput(f"option '{key}' must be true or false")
            out[key] = value
        elif strict:
            raise InvalidInput(f"unknown option '{key}'")
        else:
            log.warning("ignoring unknown option %r", str(key)[:64])
    return out


def check_format(fmt: Any) -> Any:
    if fmt in (None, ""):
        return None
    if fmt == "json" or isinstance(fmt, dict):
        return fmt
    raise InvalidInput('format must be "json" or a JSON schema object')


def check_messages(messages: Any, limit: int = 10_000, *,
                   images: bool = False) -> list[dict[str, Any]]:
    """Messages checked for shape. ``images``: this endpoint decodes a message's
    ``images`` itself; elsewhere they are refused, never passed on undecoded."""
    if messages is None:
        return []
    if not isinstance(messages, list):
        raise InvalidInput("messages must be a list")
    if len(messages) > limit:
        raise InvalidInput(f"too many messages ({len(messages)} > {limit})")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise InvalidInput(f"message {i} must be an object")
        role = m.get("role")
        if role not in ("system", "user", "assistant", "tool"):
            raise InvalidInput(f"message {i} has an invalid role {role!r}")
        content = m.get("content", "")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise InvalidInput(f"message {i} content must be a string")
        if m.get("images") and not images:
            raise InvalidInput(f"message {i} has images, which this endpoint does not take",
                               hint="send images to /api/chat or /v1/chat/completions")
        out.append({**m, "content": content})
    return out


def check_text(value: Any, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"'{field}' must be a string")
    return value
