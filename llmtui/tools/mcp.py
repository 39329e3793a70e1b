"""MCP servers as tool sources, with the official ``mcp`` SDK (the ``mcp`` extra).

Servers come from ``mcp.json`` in the config folder, in the format Claude Desktop, Cursor
and LM Studio use (``{"mcpServers": {NAME: {"command", "args", "env"} | {"url",
"headers"}}}``), or from ``--mcp 'COMMAND ARGS'``. Their tools join the tool loop named
``SERVER.TOOL``. The SDK is async; the loop is not: the servers' sessions live on an event
loop in a background thread, and each call waits for its result with a timeout. A server
that fails to start gives one line and the rest go on without it; a server that crashes
or hangs fails that call (the model is told); every server process ends with the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shlex
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmtui.errors import ConfigError, InvalidInput, require
from llmtui.tools.core import Tool, ToolFailed

#: Seconds a server may take to start and list its tools; seconds a call may take.
START_TIMEOUT = 30.0
CALL_TIMEOUT = 60.0
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class ServerSpec:
    """One server: a command (stdio) or a URL (streamable HTTP)."""

    name: str
    command: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        if self.url:
            return {"url": self.url, **({"headers": self.headers} if self.headers else {})}
        out: dict[str, Any] = {"command": self.command, "args": self.args}
        if self.env:
            out["env"] = self.env
        return out

    def describe(self) -> str:
        return self.url or shlex.join([self.command or "", *self.args])


# -- mcp.json ---------------------------------------------------------------------------------


def config_path() -> Path:
    from llmtui.paths import Paths

    return Paths.from_env().config_dir / "mcp.json"


def _spec(name: str, raw: Any, where: str) -> ServerSpec:
    if not _NAME.match(name):
        raise ConfigError(f"{where}: the server name '{name}' must be letters, digits, "
                          "- or _")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: server '{name}' must be an object")

    def strings(key: str, kind: type) -> Any:
        value = raw.get(key, kind())
        ok = all(isinstance(v, str) for v in value) if isinstance(value, list) else \
            all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()) \
            if isinstance(value, dict) else False
        if not isinstance(value, kind) or not ok:
            raise ConfigError(f"{where}: server '{name}': '{key}' must be "
                              f"{'a list of strings' if kind is list else 'an object of strings'}")
        return value

    if isinstance(raw.get("url"), str):
        return ServerSpec(name, url=raw["url"], headers=strings("headers", dict))
    if not isinstance(raw.get("command"), str) or not raw["command"].strip():
        raise ConfigError(f"{where}: server '{name}' needs a 'command' (stdio) or a 'url' "
                          "(streamable HTTP)")
    return ServerSpec(name, command=raw["command"], args=strings("args", list),
                      env=strings("env", dict))


def load_config(path: Path | None = None) -> dict[str, ServerSpec]:
    """The servers in mcp.json ({} when there is none); a malformed file is a ConfigError
    naming the file and what is wrong."""
    path = path or config_path()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    servers = data.get("mcpServers", {}) if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise ConfigError(f"{path}: expected {{\"mcpServers\": {{NAME: {{\"command\": ..., "
                          "\"args\": [...]}}}}")
    return {name: _spec(name, raw, str(path)) for name, raw in servers.items()}


def save_config(servers: dict[str, ServerSpec], path: Path | None = None) -> Path:
    from llmtui.paths import private_dir

    path = path or config_path()
    private_dir(path.parent)
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            data = {}
    data = data if isinstance(data, dict) else {}
    data["mcpServers"] = {name: spec.to_json() for name, spec in servers.items()}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def spec_from_arg(text: str, configured: dict[str, ServerSpec]) -> ServerSpec:
    """``--mcp NAME`` (a server in mcp.json), ``--mcp URL``, or ``--mcp 'COMMAND ARGS'``
    (named after its script or command; ``NAME=COMMAND ARGS`` names it)."""
    text = text.strip()
    if text in configured:
        return configured[text]
    name = None
    head, sep, rest = text.partition("=")
    if sep and _NAME.match(head) and rest.strip():
        name, text = head, rest.strip()
    if text.startswith(("http://", "https://")):
        return ServerSpec(name or "http", url=text)
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise InvalidInput(f"--mcp '{text}': {exc}") from None
    if not words:
        raise InvalidInput("--mcp needs a server: a name from mcp.json or a command")
    if name is None:
        plain = [w for w in words[1:] if not w.startswith("-")]
        base = Path(plain[-1] if plain else words[0]).stem
        name = re.sub(r"[^A-Za-z0-9_-]", "_", base)[:64] or "mcp"
    return ServerSpec(name, command=words[0], args=words[1:])


# -- the host ---------------------------------------------------------------------------------


class _Server:
    def __init__(self, spec: ServerSpec) -> None:
        self.spec = spec
        self.queue: asyncio.Queue[Any] | None = None
        self.tools: list[Any] = []
        self.dead: str | None = None


class McpHost:
    """Runs MCP servers for as long as the ``with`` block; ``tools()`` lists their tools."""

    def __init__(self, specs: list[ServerSpec], *, call_timeout: float = CALL_TIMEOUT,
                 start_timeout: float = START_TIMEOUT,
                 warn: Callable[[str], None] | None = None) -> None:
        names = [s.name for s in specs]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup:
            raise InvalidInput(f"two MCP servers are named '{dup}' (name one with "
                               "--mcp NAME='COMMAND ...')")
        self.servers = [_Server(s) for s in specs]
        self.call_timeout = call_timeout
        self.start_timeout = start_timeout
        self.warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.tasks: list[asyncio.Task[None]] = []

    @classmethod
    def from_args(cls, args: list[str], **kw: Any) -> McpHost:
        configured = load_config()
        return cls([spec_from_arg(a, configured) for a in args], **kw)

    # -- life -----------------------------------------------------------------------------

    def __enter__(self) -> McpHost:
        require("mcp", "mcp", "MCP servers")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="mcp", daemon=True)
        self.thread.start()
        starts = [(srv, self._submit(self._start_all_one(srv))) for srv in self.servers]
        for srv, fut in starts:
            try:
                fut.result(self.start_timeout + 5)
            except FutureTimeout:
                srv.dead = "did not start in time"
            except Exception as exc:  # any failure: one line, and go on without it
                srv.dead = _why(exc)
            if srv.dead:
                self.warn(f"llm: MCP server '{srv.spec.name}' ({srv.spec.describe()}) "
                          f"failed to start: {srv.dead}; going on without it")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.loop is None:
            return
        loop = self.loop

        async def stop() -> None:
            for srv in self.servers:
                if srv.queue is not None:
                    srv.queue.put_nowait(None)
            if self.tasks:
                _, pending = await asyncio.wait(self.tasks, timeout=10)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

        with contextlib.suppress(Exception):  # closing: nothing more to do on failure
            asyncio.run_coroutine_threadsafe(stop(), loop).result(20)
        loop.call_soon_threadsafe(loop.stop)
        if self.thread is not None:
            self.thread.join(10)
        loop.close()
        self.loop = None

    def _submit(self, coro: Any) -> Future[Any]:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def _start_all_one(self, srv: _Server) -> None:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        srv.queue = asyncio.Queue()
        self.tasks.append(asyncio.create_task(self._serve(srv, ready)))
        await asyncio.wait_for(asyncio.shield(ready), self.start_timeout)

    async def _serve(self, srv: _Server, ready: asyncio.Future[None]) -> None:
        """One server's whole life, in one task (the SDK's contexts are entered and left
        in the same task): start, list the tools, answer calls until told to stop."""
        from mcp import Client, StdioServerParameters

        spec = srv.spec
        target: Any = spec.url if spec.url else StdioServerParameters(
            command=spec.command or "", args=spec.args, env=spec.env or None)
        current: asyncio.Future[Any] | None = None
        assert srv.queue is not None
        try:
            async with Client(target) as client:
                srv.tools = list((await client.list_tools()).tools)
                if not ready.done():
                    ready.set_result(None)
                while True:
                    item = await srv.queue.get()
                    if item is None:
                        return
                    name, arguments, current = item
                    try:
                        result = await asyncio.wait_for(client.call_tool(name, arguments),
                                                        self.call_timeout)
                        if not current.done():
                            current.set_result(result)
                    except TimeoutError:
                        if not current.done():
                            current.set_exception(ToolFailed(
                                f"the MCP server '{spec.name}' did not answer within "
                                f"{self.call_timeout:g} s"))
                    current = None
        except BaseException as exc:  # the server failed, crashed or the host stopped
            why = _why(exc)
            srv.dead = srv.dead or why
            if not ready.done():
                ready.set_exception(ToolFailed(why))
            failure = ToolFailed(f"the MCP server '{spec.name}' stopped: {why}")
            if current is not None and not current.done():
                current.set_exception(failure)
            while not srv.queue.empty():
                item = srv.queue.get_nowait()
                if item is not None and not item[2].done():
                    item[2].set_exception(failure)
            if isinstance(exc, asyncio.CancelledError):
                raise

    # -- calls ------------------------------------------------------------------------------

    def tools(self) -> list[Tool]:
        out = []
        for srv in self.servers:
            if srv.dead:
                continue
            for tool in srv.tools:
                out.append(Tool(
                    f"{srv.spec.name}.{tool.name}", tool.description or "",
                    dict(tool.input_schema or {"type": "object"}),
                    self._runner(srv, tool.name)))
        return out

    def _runner(self, srv: _Server, name: str) -> Callable[[dict[str, Any]], str]:
        def run(arguments: dict[str, Any]) -> str:
            return self.call(srv, name, arguments)
        return run

    def call(self, srv: _Server, name: str, arguments: dict[str, Any]) -> str:
        if srv.dead or srv.queue is None or self.loop is None:
            raise ToolFailed(f"the MCP server '{srv.spec.name}' is not running "
                             f"({srv.dead or 'stopped'})")
        queue = srv.queue

        async def ask() -> Any:
            fut = asyncio.get_running_loop().create_future()
            await queue.put((name, arguments, fut))
            return await fut

        try:
            result = self._submit(ask()).result(self.call_timeout + 10)
        except FutureTimeout:
            raise ToolFailed(f"the MCP server '{srv.spec.name}' did not answer") from None
        return _result_text(result)

    def list_tools(self) -> dict[str, list[Any]]:
        """Each running server's tools as the server describes them (``llm mcp test``)."""
        return {srv.spec.name: srv.tools for srv in self.servers if not srv.dead}


def _result_text(result: Any) -> str:
    parts = []
    for item in result.content or []:
        kind = getattr(item, "type", "")
        parts.append(item.text if kind == "text" else f"[{kind} content]")
    text = "\n".join(parts)
    if not text and result.structured_content is not None:
        text = json.dumps(result.structured_content, ensure_ascii=False, default=str)
    if result.is_error:
        raise ToolFailed(text or "the tool reported an error")
    return text


def _why(exc: BaseException) -> str:
    """One line for a failure, also out of an exception group from the SDK's task group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, ToolFailed):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"no such command: {exc.filename or exc}"
    if isinstance(exc, asyncio.TimeoutError):
        return "did not start in time"
    if isinstance(exc, asyncio.CancelledError):
        return "stopped"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
