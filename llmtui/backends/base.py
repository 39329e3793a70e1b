"""The Backend protocol and the registry that picks one by model format.

Backends register through the ``llmtui.backends`` entry-point group; the built-in
llama.cpp backend is registered the same way as a third-party one would be.

A backend runs inside a worker process (llmtui.engine.worker). It must have ``formats``,
``load`` and ``close``; then either

* the serial methods the worker calls one request at a time: ``generate``/``chat``
  (text through ``emit``, returning :class:`GenStats`), ``embed``, ``tokenize``, and for
  any other operation ``op_<name>(msg, reply, cancelled)`` answering through a
  :class:`Reply`; or
* ``submit(op, msg, reply, cancelled) -> bool`` to take requests as they arrive and run
  them concurrently (return False to leave one to the serial path).

``load`` returns facts about the loaded model; ``slots`` (how many requests it runs at
once) is the one the manager acts on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from llmtui.errors import LlmtuiError

#: Called with each piece of generated text as it is produced.
Emit = Callable[[str], None]


class Reply(Protocol):
    """Where a request's results go: any number of chunks, then one done or error."""

    def chunk(self, **fields: Any) -> None: ...

    def done(self, **fields: Any) -> None: ...

    def error(self, exc: BaseException) -> None: ...


@dataclass
class GenStats:
    """Counts and timings of one generation, in seconds (the API turns them into ns)."""

    prompt_tokens: int = 0
    prompt_seconds: float = 0.0
    completion_tokens: int = 0
    completion_seconds: float = 0.0
    first_token_seconds: float | None = None
    done_reason: str = "stop"
    truncated_tokens: int = 0
    context: list[int] = field(default_factory=list)
    cached_tokens: int = 0  # prompt tokens reused from the cache, not evaluated
    restored_tokens: int = 0  # of which restored from the disk cache
    draft_tokens: int = 0  # speculative guesses evaluated
    draft_accepted: int = 0  # of which the model kept
    prompt_eval_tokens: int | None = None  # prompt tokens evaluated (None: all of them)

    def to_dict(self) -> dict[str, Any]:
        evaluated = self.prompt_tokens if self.prompt_eval_tokens is None \
            else self.prompt_eval_tokens
        return {
            "prompt_tokens": self.prompt_tokens, "prompt_seconds": self.prompt_seconds,
            "prompt_eval_tokens": evaluated, "cached_tokens": self.cached_tokens,
            "restored_tokens": self.restored_tokens,
            "draft_tokens": self.draft_tokens, "draft_accepted": self.draft_accepted,
            "completion_tokens": self.completion_tokens,
            "completion_seconds": self.completion_seconds,
            "first_token_seconds": self.first_token_seconds, "done_reason": self.done_reason,
            "truncated_tokens": self.truncated_tokens,
            **({"context": self.context} if self.context else {}),
        }


@runtime_checkable
class Backend(Protocol):
    """What a worker needs from a backend. One instance holds one loaded model."""

    formats: tuple[str, ...]

    def load(self, path: str, options: dict[str, Any]) -> dict[str, Any]: ...

    def generate(self, request: dict[str, Any], emit: Emit,
                 cancelled: threading.Event) -> GenStats: ...

    def chat(self, request: dict[str, Any], emit: Emit,
             cancelled: threading.Event) -> GenStats: ...

    def embed(self, texts: list[str], options: dict[str, Any]) -> list[list[float]]: ...

    def tokenize(self, text: str) -> list[int]: ...

    def close(self) -> None: ...


class NoTextOps:
    """For backends of models that are not language models (speech, voices): the text
    operations fail with one line saying what the model does instead."""

    #: (what the model is, where to use it instead)
    not_text: tuple[str, str] = ("this model does not work on text", "")

    def _refuse(self) -> LlmtuiError:
        from llmtui.errors import InvalidInput

        what, use = self.not_text
        return InvalidInput(what, hint=use or None)

    def generate(self, request: dict[str, Any], emit: Emit,
                 cancelled: threading.Event) -> GenStats:
        raise self._refuse()

    def chat(self, request: dict[str, Any], emit: Emit,
             cancelled: threading.Event) -> GenStats:
        raise self._refuse()

    def embed(self, texts: list[str], options: dict[str, Any]) -> list[list[float]]:
        raise self._refuse()

    def tokenize(self, text: str) -> list[int]:
        raise self._refuse()


class UnsupportedFormat(LlmtuiError):
    http_status = 400


def backend_classes() -> dict[str, Any]:
    """Entry points of the llmtui.backends group, by name (loaded lazily)."""
    return {ep.name: ep for ep in entry_points(group="llmtui.backends")}


def backend_for(fmt: str) -> Any:
    """The backend class that runs this format; a backend plugin that fails to import is
    passed over (and named, should no other backend run the format)."""
    broken: list[str] = []
    for ep in backend_classes().values():
        try:
            cls = ep.load()
        except Exception as exc:
            broken.append(f"{ep.name} ({type(exc).__name__}: {exc})")
            continue
        if fmt in getattr(cls, "formats", ()):
            return cls
    raise UnsupportedFormat(f"no installed backend runs '{fmt}' models" + (
        f"; these backends did not load: {', '.join(broken)}" if broken else ""))
