"""Process mechanics for one worker: spawn, handshake, framed I/O, shutdown ladder.

Policy (what to load, when to unload) lives in the manager; this module only knows how
to run and stop a process and route its replies to the request that asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from llmtui import errors
from llmtui.engine.protocol import HEADER, MAX_FRAME, Message, decode_body, encode

_ids = itertools.count(1)


def error_from(msg: Message) -> errors.LlmtuiError:
    """Rebuild the error a worker reported, keeping its class (and so its exit code)."""
    cls = getattr(errors, str(msg.get("kind")), None)
    text = str(msg.get("error") or "the worker failed")
    if isinstance(cls, type) and issubclass(cls, errors.LlmtuiError) and cls is not \
            errors.MissingExtra:
        exc = cls(text)
    else:
        exc = errors.GenerationError(text)
    return exc


def describe_exit(code: int | None) -> str:
    if code is None:
        return "is not responding"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class WorkerProcess:
    """One model's worker subprocess, spoken to over its stdin and stdout."""

    def __init__(self, label: str, on_exit: Callable[[WorkerProcess], None] | None = None) -> None:
        self.label = label
        self.proc: asyncio.subprocess.Process | None = None
        self.pending: dict[str, asyncio.Queue[Message]] = {}
        self.info: dict[str, Any] = {}
        self.on_exit = on_exit
        self._reader: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        self.dead = False
        self.stopping = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self, fmt: str, path: str, options: dict[str, Any],
                    timeout: float = 300.0) -> dict[str, Any]:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "llmtui.engine.worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=None, env=env, limit=MAX_FRAME,
        )
        await self._send({"op": "load", "format": fmt, "path": path, "options": options})
        try:
            first = await asyncio.wait_for(self._read(), timeout)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            code = await self._reap(2.0)
            await self.kill()
            raise errors.GenerationError(
                f"the worker for '{self.label}' {describe_exit(code)} while loading the model",
                hint="see the daemon log (llm daemon logs)") from None
        if first.get("type") != "ready":
            await self.kill()
            exc = error_from(first)
            if isinstance(exc, errors.BadModelFile) and self.label not in exc.message:
                exc.message = f"'{self.label}': {exc.message}"
            raise exc
        self.info = first
        self._reader = asyncio.create_task(self._read_loop(), name=f"worker-reader-{self.label}")
        return first

    async def _read(self) -> Message:
        assert self.proc is not None and self.proc.stdout is not None
        head = await self.proc.stdout.readexactly(HEADER.size)
        (size,) = HEADER.unpack(head)
        if size > MAX_FRAME:
            raise ConnectionError("frame too large")
        return decode_body(await self.proc.stdout.readexactly(size))

    async def _send(self, msg: Message) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        async with self._write_lock:
            self.proc.stdin.write(encode(msg))
            await self.proc.stdin.drain()

    async def _read_loop(self) -> None:
        try:
            while True:
                msg = await self._read()
                queue = self.pending.get(str(msg.get("id")))
                if queue is not None:
                    queue.put_nowait(msg)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass  # the worker went away; report it below with its exit status
        except asyncio.CancelledError:
            return
        code = await self._reap(5.0)
        self.dead = True
        if not self.stopping:
            text = (f"the worker for '{self.label}' {describe_exit(code)}; "
                    "the model will be reloaded on the next request")
            for queue in self.pending.values():
                queue.put_nowait({"type": "error", "kind": "GenerationError", "error": text})
        if self.on_exit is not None:
            self.on_exit(self)

    async def _reap(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            return None

    async def request(self, msg: Message) -> tuple[str, asyncio.Queue[Message]]:
        """Send a request; replies for it arrive on the returned queue."""
        if self.dead:
            raise errors.GenerationError(f"the worker for '{self.label}' is not running")
        req_id = f"r{next(_ids)}"
        queue: asyncio.Queue[Message] = asyncio.Queue()
        self.pending[req_id] = queue
        try:
            await self._send({**msg, "id": req_id})
        except (ConnectionError, RuntimeError):
            self.pending.pop(req_id, None)
            raise errors.GenerationError(f"the worker for '{self.label}' is not running") from None
        return req_id, queue

    def release(self, req_id: str) -> None:
        self.pending.pop(req_id, None)

    async def cancel(self, req_id: str) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError, AssertionError):
            if not self.dead:
                await self._send({"op": "cancel", "id": req_id})

    async def shutdown(self, grace: float = 10.0) -> None:
        """The ladder: ask, wait; SIGTERM, wait; SIGKILL; then clean up. The first wait is
        long enough for a worker to write its prompt states to the disk cache."""
        self.stopping = True
        if self.proc is None or self.proc.returncode is not None:
            await self._cleanup()
            return
        with contextlib.suppress(ConnectionError, RuntimeError, AssertionError):
            await self._send({"op": "shutdown"})
        if await self._reap(grace) is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            if await self._reap(grace) is None:
                await self.kill()
        await self._cleanup()

    async def kill(self) -> None:
        self.stopping = True
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self._reap(5.0)
        await self._cleanup()

    async def _cleanup(self) -> None:
        self.dead = True
        if self._reader is not None and not self._reader.done() and \
                self._reader is not asyncio.current_task():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self.proc is not None and self.proc.stdin is not None:
            with contextlib.suppress(Exception):
                self.proc.stdin.close()
