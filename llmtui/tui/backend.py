"""What the chat app needs from the engine, behind one small interface.

``DaemonBackend`` is the real one (the daemon's API through ``AsyncClient``); tests use a
deterministic fake of the same shape for layout snapshots.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, Protocol


class ChatBackend(Protocol):
    async def connect(self) -> None: ...
    async def status(self) -> dict[str, Any]: ...
    async def models(self) -> list[dict[str, Any]]: ...
    async def loaded(self) -> list[dict[str, Any]]: ...
    async def show(self, model: str) -> dict[str, Any]: ...
    def chat(self, model: str, messages: list[dict[str, Any]], options: dict[str, Any],
             **extra: Any) -> AsyncIterator[dict[str, Any]]: ...
    def pull(self, model: str) -> AsyncIterator[dict[str, Any]]: ...
    async def rag_collection(self, name: str) -> dict[str, Any]: ...
    def rag_chat(self, collection: str, model: str, question: str,
                 history: list[dict[str, Any]],
                 options: dict[str, Any]) -> AsyncIterator[dict[str, Any]]: ...
    async def delete(self, model: str) -> None: ...
    async def unload(self, model: str) -> bool: ...


class DaemonBackend:
    """The daemon, started on demand like every other client."""

    def __init__(self, settings: Any) -> None:
        from llmtui.daemon.client import AsyncClient

        self.settings = settings
        self.client = AsyncClient(settings=settings, timeout=None)

    async def connect(self) -> None:
        # Finding or starting the daemon blocks (it may spawn it): keep the UI responsive.
        await asyncio.to_thread(self.client._socket_path)

    async def status(self) -> dict[str, Any]:
        return dict(await self.client.request("GET", "/api/x/status"))

    async def models(self) -> list[dict[str, Any]]:
        return await self.client.list()

    async def loaded(self) -> list[dict[str, Any]]:
        return await self.client.ps()

    async def show(self, model: str) -> dict[str, Any]:
        return await self.client.show(model)

    async def _revive(self) -> None:
        """If the daemon died (killed, crashed, idled out), start a new one."""
        from llmtui.daemon import lifecycle

        if await asyncio.to_thread(lifecycle.running, self.settings) is None:
            self.client.socket = None
            await self.connect()

    async def chat(self, model: str, messages: list[dict[str, Any]], options: dict[str, Any],
                   **extra: Any) -> AsyncIterator[dict[str, Any]]:
        """``extra``: more /api/chat fields (tools, format)."""
        await self._revive()
        # aclosing: a stopped reply closes the HTTP stream now, not when the GC finds it
        async with aclosing(self.client.chat(model, messages, options=options,
                                             **extra)) as parts:
            async for part in parts:
                yield part

    async def rag_collection(self, name: str) -> dict[str, Any]:
        await self._revive()
        return dict(await self.client.request("GET", f"/api/x/rag/{name}"))

    async def rag_chat(self, collection: str, model: str, question: str,
                       history: list[dict[str, Any]],
                       options: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """An answer grounded in a collection: the first part carries the chunks."""
        await self._revive()
        body = {"query": question, "answer": True, "model": model, "messages": history,
                "options": options}
        async with aclosing(self.client.stream(f"/api/x/rag/{collection}/query",
                                               body)) as parts:
            async for part in parts:
                yield part

    async def pull(self, model: str) -> AsyncIterator[dict[str, Any]]:
        await self._revive()
        async for event in self.client.pull(model):
            yield event

    async def delete(self, model: str) -> None:
        await self.client.delete(model)

    async def unload(self, model: str) -> bool:
        return await self.client.unload(model)
