"""A deterministic stand-in for the daemon, for layout snapshots only (the chat flow is
tested against the real daemon and model)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

from rich.console import Console

MODELS = [
    {"name": "smollm2:135m", "size": 98_362_432,
     "details": {"quantization_level": "Q4_1", "family": "smollm2"}},
    {"name": "gemma3:270m", "size": 241_410_624,
     "details": {"quantization_level": "Q8_0", "family": "gemma3"}},
]
REPLY = ("Here is a function:\n\n```python\ndef add(a, b):\n    return a + b\n```\n\n"
         "It adds **two** numbers.")


class FakeBackend:
    def __init__(self, reply: str = REPLY, delay: float = 0.0) -> None:
        self.reply = reply
        self.delay = delay
        self.requests: list[dict[str, Any]] = []

    async def connect(self) -> None:
        return None

    async def status(self) -> dict[str, Any]:
        return {"version": "test", "loaded": ["smollm2:135m"]}

    async def models(self) -> list[dict[str, Any]]:
        return [dict(m) for m in MODELS]

    async def loaded(self) -> list[dict[str, Any]]:
        return [{"name": "smollm2:135m", "context_length": 4096}]

    async def show(self, model: str) -> dict[str, Any]:
        return {}

    async def chat(self, model: str, messages: list[dict[str, Any]],
                   options: dict[str, Any], **extra: Any) -> AsyncIterator[dict[str, Any]]:
        self.requests.append({"model": model, "messages": messages, "options": options,
                              **extra})
        for word in self.reply.split(" "):
            if self.delay:
                await asyncio.sleep(self.delay)
            yield {"message": {"role": "assistant", "content": word + " "}, "done": False}
        yield {"message": {"role": "assistant", "content": ""}, "done": True,
               "done_reason": "stop", "prompt_eval_count": 20, "eval_count": 30,
               "eval_duration": 500_000_000, "first_token_duration": 40_000_000}

    async def rag_collection(self, name: str) -> dict[str, Any]:
        return {"name": name, "files": [], "chunks": 0}

    async def rag_chat(self, collection: str, model: str, question: str,
                       history: list[dict[str, Any]],
                       options: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        yield {"chunks": [{"citation": "notes.md:1"}], "done": False}
        async for part in self.chat(model, [*history, {"role": "user", "content": question}],
                                    options):
            yield part

    async def pull(self, model: str) -> AsyncIterator[dict[str, Any]]:
        yield {"status": "pulling manifest"}
        yield {"status": "success"}

    async def delete(self, model: str) -> None:
        return None

    async def unload(self, model: str) -> bool:
        return True


def screen_text(app: Any) -> str:
    """The screen as plain text, the way a terminal would show its characters."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system=None, record=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True,
                                                       screen_stack=app._background_screens))
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())
