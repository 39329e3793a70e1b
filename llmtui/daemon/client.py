"""The Python SDK: ``llmtui.Client`` (sync) and ``llmtui.AsyncClient``.

Both speak the daemon's Ollama API over its Unix socket (started on demand) or over TCP
(``Client(host="http://127.0.0.1:11434")``). The CLI and the TUI use these classes.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator
from typing import Any

import httpx

from llmtui import errors
from llmtui.config import Settings

_List = list  # the clients have a .list() method, like Ollama's; keep the builtin reachable


class _MissingExtra(errors.LlmtuiError):
    """The daemon lacks an optional package (its message names the extra)."""

    exit_code = errors.ExitCode.MISSING_EXTRA


_CLASSES: dict[str, type[errors.LlmtuiError]] = {
    "model_not_found": errors.ModelNotFound, "invalid_input": errors.InvalidInput,
    "download_failed": errors.DownloadError, "integrity": errors.IntegrityError,
    "no_space": errors.NoSpaceError, "bad_model_file": errors.BadModelFile,
    "daemon_unavailable": errors.DaemonUnavailable,
    "generation_failed": errors.GenerationError, "config": errors.ConfigError,
    "in_use": errors.InUseError, "context_overflow": errors.ContextOverflow,
    "busy": errors.BusyError, "usage": errors.UsageError,
    "collection_not_found": errors.CollectionNotFound,
    "embedding_mismatch": errors.EmbeddingMismatch, "missing_extra": _MissingExtra,
    "no_audio_device": errors.NoAudioDevice,
    "remote_unavailable": errors.RemoteUnavailable,
}


def _offline_error() -> type[errors.LlmtuiError]:
    from llmtui.net import OfflineError

    return OfflineError


def raise_for_error(data: Any, status: int = 500) -> None:
    """Turn an API error body into the matching exception (and so exit code)."""
    if isinstance(data, dict) and "error" in data:
        code = str(data.get("code"))
        cls = _offline_error() if code == "offline" else _CLASSES.get(code)
        if cls is None:
            cls = {400: errors.InvalidInput, 404: errors.ModelNotFound,
                   503: errors.BusyError}.get(status, errors.GenerationError)
        raise cls(str(data["error"]))


def _decode(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return {"error": resp.text[:300] or f"HTTP {resp.status_code}"}


def _file_chunks(path: str, size: int = 1 << 20) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(size):
            yield chunk


def _lost(exc: Exception) -> errors.DaemonUnavailable:
    return errors.DaemonUnavailable(
        "lost the connection to the daemon while it was answering",
        hint="it may have been stopped or crashed; the next command starts a new one")


class _Base:
    def __init__(self, host: str | None = None, *, socket: str | None = None,
                 settings: Settings | None = None, timeout: float | None = None,
                 autostart: bool = True, api_key: str | None = None) -> None:
        self.host = host
        self.socket = socket
        self.settings = settings
        self.autostart = autostart
        self.timeout = httpx.Timeout(timeout, connect=10.0)
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def _socket_path(self) -> str:
        if self.socket:
            return self.socket
        from llmtui.daemon import lifecycle

        settings = self.settings or Settings.load()
        if self.autostart:
            self.socket = lifecycle.ensure_daemon(settings)
            return self.socket
        live = lifecycle.running(settings)
        if not live:
            raise errors.DaemonUnavailable("the daemon is not running",
                                           hint="start it with: llm daemon start")
        self.socket = str(live["socket"])
        return self.socket

    def _local_kwargs(self, *, asynchronous: bool) -> dict[str, Any]:
        """TCP to a host; else the local daemon's socket, or its loopback port and token
        where there are no Unix sockets (llmtui/compat.py)."""
        if self.host:
            return self._client_kwargs()
        from llmtui.daemon import lifecycle

        endpoint = self._socket_path()
        token = None
        if lifecycle.is_tcp(endpoint) and not self.headers:
            token = lifecycle.local_token(self.settings or Settings.load())
        kw = lifecycle.connection(endpoint, token, asynchronous=asynchronous)
        return {**kw, "timeout": self.timeout, "headers": {**kw.get("headers", {}),
                                                           **self.headers}}

    def _client_kwargs(self) -> dict[str, Any]:
        if self.host:
            return {"base_url": self.host, "timeout": self.timeout, "headers": self.headers}
        return {"base_url": "http://llmtui", "timeout": self.timeout, "headers": self.headers}

    @staticmethod
    def _generate_body(model: str, prompt: str, *, system: str | None = None,
                       options: dict[str, Any] | None = None, format: Any = None,
                       raw: bool = False, keep_alive: Any = None, truncate: bool = False,
                       stream: bool = True, think: Any = None,
                       images: Any = None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "prompt": prompt, "stream": stream}
        if think is not None:
            body["think"] = think
        if images:
            body["images"] = _images(images)
        if system:
            body["system"] = system
        if options:
            body["options"] = options
        if format is not None:
            body["format"] = format
        if raw:
            body["raw"] = True
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        if truncate:
            body["truncate"] = True
        return body

    @staticmethod
    def _chat_body(model: str, messages: list[dict[str, Any]], *,
                   options: dict[str, Any] | None = None, format: Any = None,
                   keep_alive: Any = None, truncate: bool = False, tools: Any = None,
                   stream: bool = True, think: Any = None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "messages": [_message(m) for m in messages],
                                "stream": stream}
        if think is not None:
            body["think"] = think
        if options:
            body["options"] = options
        if format is not None:
            body["format"] = format
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        if truncate:
            body["truncate"] = True
        if tools:
            body["tools"] = tools
        return body


def _images(images: Any) -> list[str]:
    """Images as the API takes them (base64), from paths, bytes or PIL images."""
    from llmtui.media import to_base64

    items = images if isinstance(images, list | tuple) else [images]
    return [to_base64(image) for image in items]


def _message(message: dict[str, Any]) -> dict[str, Any]:
    if not message.get("images"):
        return message
    return {**message, "images": _images(message["images"])}


class Client(_Base):
    """Synchronous client. Streaming methods return iterators of Ollama-shaped dicts.

    Example::

        from llmtui import Client
        client = Client()
        for part in client.generate("smollm2:135m", "Why is the sky blue?"):
            print(part["response"], end="")

    Images (for vision models) are paths, bytes or PIL images: ``generate(model, "What
    is this?", images=["photo.jpg"])``, or ``"images": [...]`` in a chat message.
    """

    _conn: httpx.Client | None = None

    def _http(self) -> httpx.Client:
        """One connection pool for the client's life (building one costs milliseconds)."""
        if self._conn is None:
            self._conn = httpx.Client(**self._local_kwargs(asynchronous=False))
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reconnect(self, exc: Exception) -> None:
        """The daemon is gone (stopped, restarted, idle-exited): on the Unix socket, start
        or find it again once; over TCP there is nothing to start."""
        if self.host:
            raise errors.DaemonUnavailable(f"cannot reach the daemon: {exc}") from None
        self.close()
        if self.autostart:
            self.socket = None  # found again (or started) by _socket_path

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            try:
                resp = self._http().request(method, path, json=body)
            except httpx.ConnectError as exc:
                self._reconnect(exc)
                resp = self._http().request(method, path, json=body)
        except httpx.ConnectError as exc:
            raise errors.DaemonUnavailable(f"cannot reach the daemon: {exc}") from None
        except httpx.TransportError as exc:
            raise _lost(exc) from None
        if resp.status_code >= 400:
            raise_for_error(_decode(resp), resp.status_code)
        return _decode(resp) if resp.content else {}

    def stream(self, path: str, body: dict[str, Any] | None = None,
               **send: Any) -> Iterator[dict[str, Any]]:
        """POST and yield NDJSON objects; closing the iterator cancels on the daemon.
        ``send`` goes to httpx as is (``content=``, ``params=``, ``headers=``) for bodies
        that are not JSON, such as an audio upload."""
        if body is not None:
            send["json"] = body
        for attempt in (0, 1):
            try:
                with self._http().stream("POST", path, **send) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        raise_for_error(_decode(resp), resp.status_code)
                    for line in resp.iter_lines():
                        if not line.strip():
                            continue
                        data = json.loads(line)
                        raise_for_error(data)
                        yield data
                return
            except httpx.ConnectError as exc:  # only before anything was sent or read
                if attempt == 0:
                    self._reconnect(exc)
                    continue
                raise errors.DaemonUnavailable(f"cannot reach the daemon: {exc}") from None
            except httpx.TransportError as exc:
                raise _lost(exc) from None

    # -- generation ----------------------------------------------------------------------------

    def generate(self, model: str, prompt: str, **kw: Any) -> Iterator[dict[str, Any]]:
        return self.stream("/api/generate", self._generate_body(model, prompt, **kw))

    def chat(self, model: str, messages: list[dict[str, Any]],
             **kw: Any) -> Iterator[dict[str, Any]]:
        return self.stream("/api/chat", self._chat_body(model, messages, **kw))

    def run_tools(self, model: str, messages: str | list[dict[str, Any]], tools: Any, *,
                  tool_choice: str | None = None, approve: Any = True, max_rounds: int = 5,
                  on_text: Any = None, **kw: Any) -> Any:
        """Chat with tools: the model calls them, they run here, the results go back,
        until it answers (at most ``max_rounds`` rounds of calls). Returns a
        ``llmtui.tools.LoopResult`` (``.text``, ``.calls``, ``.messages``).

        ``tools``: Python functions (type hints and docstring describe them), ``Tool``
        objects, or "fs"/"shell" for the built-in ones. ``tool_choice``: "required" or a
        tool's name forces a call in the first round. ``approve``: True runs every call
        (they are your functions) except the built-in shell's, which only a function
        may approve; False refuses them; or a function ``(name, arguments) -> bool``
        decides each. ``kw``: options, think, keep_alive, ...

        Example::

            def secret(city: str) -> str:
                "The secret code of a city."
                return "ZEBRA-42"

            result = client.run_tools("smollm2:135m", "Secret code of Paris?", [secret])
            print(result.text, result.calls)
        """
        from llmtui.tools import approver_of, run_loop, toolset_of

        toolset = toolset_of(tools)
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        return run_loop(self, model, messages, toolset,
                        approver=approver_of(approve),
                        tool_choice=tool_choice, max_rounds=max_rounds, on_text=on_text,
                        **kw)

    def embed(self, model: str, input: str | list[str], **kw: Any) -> dict[str, Any]:
        return self.request("POST", "/api/embed",
                            {"model": model, "input": input, **kw})

    def tokenize(self, model: str, text: str) -> list[int]:
        return list(self.request("POST", "/api/x/tokenize", {"model": model, "text": text})
                    ["tokens"])

    # -- speech ------------------------------------------------------------------------------

    def transcribe(self, file: str | os.PathLike[str] | None = None, *,
                   data: bytes | Iterable[bytes] | None = None, model: str | None = None,
                   filename: str | None = None, **options: Any) -> Iterator[dict[str, Any]]:
        """Transcribe an audio file (or bytes, or an iterable of byte chunks, streamed up):
        yields an ``info`` line, one line per ``segment`` as it is decoded, then ``done``.
        Options: language, translate, word_timestamps, vad, beam_size, temperature, prompt,
        keep_alive. A local file is read by the daemon itself on the Unix socket."""
        fields = {k: v for k, v in options.items() if v is not None}
        if model:
            fields["model"] = model
        if file is not None and data is None:
            path = os.path.abspath(os.fspath(file))
            if not self.host:
                return self.stream("/api/x/transcribe", {**fields, "path": path})
            filename = filename or os.path.basename(path)
            data = _file_chunks(path)
        params = {k: (str(v).lower() if isinstance(v, bool) else str(v))
                  for k, v in fields.items()}
        if filename:
            params["filename"] = filename
        return self.stream("/api/x/transcribe", content=data, params=params,
                           headers={"Content-Type": "application/octet-stream"})

    def speak(self, text: str, *, voice: str | None = None, rate: float | None = None,
              **options: Any) -> Iterator[dict[str, Any]]:
        """Synthesize speech: yields lines with base64 16-bit mono PCM (``audio``,
        ``sample_rate``) as each sentence is ready, then ``done``."""
        body: dict[str, Any] = {"input": text,
                                **{k: v for k, v in options.items() if v is not None}}
        if voice:
            body["voice"] = voice
        if rate is not None:
            body["rate"] = rate
        return self.stream("/api/x/speak", body)

    # -- models ------------------------------------------------------------------------------

    def list(self) -> _List[dict[str, Any]]:
        return list(self.request("GET", "/api/tags")["models"])

    def ps(self) -> _List[dict[str, Any]]:
        return list(self.request("GET", "/api/ps")["models"])

    def show(self, model: str) -> dict[str, Any]:
        return self.request("POST", "/api/show", {"model": model})

    def pull(self, model: str) -> Iterator[dict[str, Any]]:
        return self.stream("/api/pull", {"model": model})

    def delete(self, model: str) -> None:
        self.request("DELETE", "/api/delete", {"model": model})

    def load(self, model: str, keep_alive: Any = None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model}
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        return self.request("POST", "/api/generate", body)

    def unload(self, model: str) -> bool:
        return bool(self.request("POST", "/api/x/unload", {"model": model})["unloaded"])

    def version(self) -> str:
        return str(self.request("GET", "/api/version")["version"])

    def status(self) -> dict[str, Any]:
        return self.request("GET", "/api/x/status")


class AsyncClient(_Base):
    """Asynchronous client with the same methods, for asyncio programs and the TUI."""

    def _http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(**self._local_kwargs(asynchronous=True))

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            async with self._http() as http:
                resp = await http.request(method, path, json=body)
        except httpx.ConnectError as exc:
            raise errors.DaemonUnavailable(f"cannot reach the daemon: {exc}") from None
        except httpx.TransportError as exc:
            raise _lost(exc) from None
        if resp.status_code >= 400:
            raise_for_error(_decode(resp), resp.status_code)
        return _decode(resp) if resp.content else {}

    async def stream(self, path: str,
                     body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        try:
            async with self._http() as http, http.stream("POST", path, json=body) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    raise_for_error(_decode(resp), resp.status_code)
                async for line in resp.aiter_lines():
                    if not line.strip():
                        continue
                    data = json.loads(line)
                    raise_for_error(data)
                    yield data
        except httpx.ConnectError as exc:
            raise errors.DaemonUnavailable(f"cannot reach the daemon: {exc}") from None
        except httpx.TransportError as exc:
            raise _lost(exc) from None

    def generate(self, model: str, prompt: str,
                 **kw: Any) -> AsyncGenerator[dict[str, Any], None]:
        return self.stream("/api/generate", self._generate_body(model, prompt, **kw))

    def chat(self, model: str, messages: list[dict[str, Any]],
             **kw: Any) -> AsyncGenerator[dict[str, Any], None]:
        return self.stream("/api/chat", self._chat_body(model, messages, **kw))

    async def embed(self, model: str, input: str | list[str], **kw: Any) -> dict[str, Any]:
        return await self.request("POST", "/api/embed",
                                  {"model": model, "input": input, **kw})

    async def list(self) -> _List[dict[str, Any]]:
        return list((await self.request("GET", "/api/tags"))["models"])

    async def ps(self) -> _List[dict[str, Any]]:
        return list((await self.request("GET", "/api/ps"))["models"])

    async def show(self, model: str) -> dict[str, Any]:
        return await self.request("POST", "/api/show",
                                  {"model": model})

    def pull(self, model: str) -> AsyncIterator[dict[str, Any]]:
        return self.stream("/api/pull", {"model": model})

    async def delete(self, model: str) -> None:
        await self.request("DELETE", "/api/delete", {"model": model})

    async def unload(self, model: str) -> bool:
        return bool((await self.request("POST", "/api/x/unload", {"model": model}))["unloaded"])

    async def version(self) -> str:
        return str((await self.request("GET", "/api/version"))["version"])
