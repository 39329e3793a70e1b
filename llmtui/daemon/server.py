"""Running the daemon: bind the Unix socket safely, hold the lock, write the status file,
serve the app with uvicorn, exit when idle. Also an in-process variant (--no-daemon)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmtui import __version__
from llmtui.api.security import Bind, Policy, parse_bind
from llmtui.compat import local_tcp, lock_fd, unlock_fd
from llmtui.config import Settings, parse_duration
from llmtui.daemon.paths import DaemonPaths, secure_runtime_dir
from llmtui.errors import ConfigError, DaemonUnavailable, LlmtuiError

log = logging.getLogger("llmtui.daemon")


def bind_unix(path: Path) -> socket.socket:
    """Bind with umask 0177 so the socket is 0600 from the first instant (no chmod race)."""
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale: nobody answers on it
        else:
            raise DaemonUnavailable(f"another daemon is already serving on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    sock.listen(128)
    sock.setblocking(False)
    return sock


class DaemonLock:
    """An exclusive flock held for the daemon's whole life: two daemons never both run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh: Any = None

    def acquire(self) -> bool:
        self.fh = self.path.open("a+")
        if not lock_fd(self.fh.fileno(), blocking=False):
            self.fh.close()
            self.fh = None
            return False
        return True

    def release(self) -> None:
        if self.fh is not None:
            unlock_fd(self.fh.fileno())
            self.fh.close()
            self.fh = None


def listening_socket(address: tuple[str, int], family: int = socket.AF_INET) -> socket.socket:
    """A listening TCP socket whose connections have Nagle's algorithm off.

    ``socket.create_server`` makes a socket of protocol 0, and asyncio turns Nagle off
    (TCP_NODELAY) only on sockets whose protocol is IPPROTO_TCP. With Nagle on, a
    response written in two parts (head, then body) waits for the client's delayed ACK:
    about 40 ms on every request of a kept-alive connection, which is how real clients
    (the ollama and openai packages) talk."""
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and hasattr(socket, "IPV6_V6ONLY"):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # Linux: inherited
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def bind_local_tcp() -> tuple[socket.socket, str, str]:
    """Where there are no Unix sockets: a random loopback port and a fresh token that
    clients must send (socket, url, token)."""
    import secrets

    sock = listening_socket(("127.0.0.1", 0))
    sock.set_inheritable(False)
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}", secrets.token_urlsafe(32)


class LocalToken:
    """ASGI middleware for the local TCP listener: a request must carry the token; then it
    is as trusted as one over the Unix socket (the scope no longer looks like TCP)."""

    def __init__(self, app: Any, port: int, token: str) -> None:
        self.app = app
        self.port = port
        self.token = token

    def _ok(self, scope: dict[str, Any]) -> bool:
        import hmac

        for key, value in scope.get("headers") or []:
            if key == b"authorization":
                given = value.decode("latin-1")
                return given.startswith("Bearer ") and hmac.compare_digest(
                    given[7:].strip().encode(), self.token.encode())
        return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        server = scope.get("server")
        if scope["type"] in ("http", "websocket") and server and server[1] == self.port:
            if not self._ok(scope):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                body = json.dumps({"error": "this local daemon needs its token (the "
                                   "daemon.token file in the runtime folder)",
                                   "code": "forbidden"}).encode()
                await send({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
            scope = {**scope, "server": ("llmtui-local", None)}
        await self.app(scope, receive, send)


def write_status(path: Path, data: dict[str, Any]) -> None:
    from llmtui.paths import open_private

    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    with open_private(tmp) as fh:
        fh.write(json.dumps(data))
    os.replace(tmp, path)


@dataclass
class Listen:
    """Where the daemon listens besides its Unix socket: a TCP address and its policy."""

    bind: Bind
    policy: Policy


def tcp_listener(settings: Settings, host: str | None = None, port: int | None = None,
                 api_key: str | None = None, insecure: bool = False,
                 use_ollama_env: bool = False) -> Listen | None:
    """The TCP listener asked for by flags, LLMTUI_HOST (OLLAMA_HOST for `llm serve`)
    or the config's host key; None when TCP is off (the default)."""
    cfg = settings.config
    text = host or os.environ.get("LLMTUI_HOST") or (
        os.environ.get("OLLAMA_HOST") if use_ollama_env else None) or cfg.get("host")
    if not text and port is None:
        return None
    bind = parse_bind(text or "127.0.0.1", port)
    key = api_key or os.environ.get("LLMTUI_API_KEY") or cfg.get("api_key")
    insecure = insecure or os.environ.get("LLMTUI_INSECURE", "") in ("1", "true", "yes")
    policy = Policy.build(bind, key, cfg.get("allowed_hosts"), cfg.get("cors_origins"),
                          insecure)
    return Listen(bind, policy)


def bind_tcp(bind: Bind) -> socket.socket:
    family = socket.AF_INET6 if ":" in bind.host else socket.AF_INET
    try:
        sock = listening_socket((bind.host, bind.port), family)
    except OSError as exc:
        hint = ("another server (Ollama?) is using the port; pick another with --port"
                if exc.errno == errno.EADDRINUSE else None)
        raise ConfigError(f"cannot listen on {bind.url}: {exc.strerror}", hint=hint) from None
    sock.setblocking(False)
    return sock


class HeaderDeadline:
    """Mixed into uvicorn's HTTP protocol: a connection must deliver a complete request
    head within ``header_timeout`` of connecting or of its last response, or it is
    answered 408 and closed. uvicorn itself only times out connections that send
    nothing after a response, so a client trickling header bytes (slowloris), or one
    that connects and stays silent, would hold its connection for ever."""

    header_timeout: float = 10.0
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    _header_timer: asyncio.TimerHandle | None = None

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_late)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n"
                                 b"connection: close\r\n\r\n")
            self.transport.close()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self._arm_header_timer()  # the next request's head has the same deadline
        super().on_response_complete()  # type: ignore[misc]

    # The request head is complete: h11 sets a new scope, httptools calls this hook.
    def handle_events(self) -> None:
        scope = getattr(self, "scope", None)
        super().handle_events()  # type: ignore[misc]
        if getattr(self, "scope", None) is not scope:
            self._cancel_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()  # type: ignore[misc]


def http_protocol(header_timeout: float) -> type:
    """uvicorn's HTTP protocol (httptools when installed, else h11) with a header deadline."""
    base: type
    try:
        import httptools  # noqa: F401
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
        base = HttpToolsProtocol
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol
        base = H11Protocol
    return type(f"Deadline{base.__name__}", (HeaderDeadline, base),
                {"header_timeout": header_timeout})


def event_loop_factory() -> Any:
    """uvloop's event loop where it is installed (the server extra, not on Windows): it
    forwards each streamed token with less CPU, which on a small machine is CPU taken from
    the model's threads. The standard loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def uvicorn_config(app: Any, settings: Settings) -> Any:
    """How the daemon serves: bounded connections, header and idle timeouts (bodies have
    their own read timeout, request_timeout), a WebSocket frame limit."""
    import uvicorn

    cfg = settings.config
    return uvicorn.Config(
        app, log_level="warning", lifespan="on", access_log=False,
        http=http_protocol(parse_duration(cfg.get("header_timeout"))),
        timeout_graceful_shutdown=5,
        timeout_keep_alive=max(1, round(parse_duration(cfg.get("idle_connection_timeout")))),
        limit_concurrency=512, ws_max_size=16 * 1024 * 1024,
        h11_max_incomplete_event_size=64 * 1024)


async def _serve(settings: Settings, sock: socket.socket, *, idle_timeout: float,
                 on_ready: Any = None, listen: Listen | None = None,
                 tcp: socket.socket | None = None, token: str | None = None) -> None:
    import uvicorn

    from llmtui.api.app import make_app
    from llmtui.engine.manager import EngineManager

    engine = EngineManager(settings)
    server: uvicorn.Server | None = None

    def stop() -> None:
        if server is not None:
            server.should_exit = True

    app: Any = make_app(engine, on_shutdown=stop, policy=listen.policy if listen else None)
    if token is not None:
        app = LocalToken(app, sock.getsockname()[1], token)
    server = uvicorn.Server(uvicorn_config(app, settings))

    async def watchdog() -> None:
        while not server.started:  # announce readiness (the status file) once listening
            await asyncio.sleep(0.02)
        if on_ready is not None:
            on_ready()
        # Exit after idle_timeout with nothing loaded and nothing running.
        while not server.should_exit:
            await asyncio.sleep(1.0)
            idle = time.monotonic() - engine.last_activity
            if idle_timeout >= 0 and not engine.runners and not engine.busy \
                    and idle >= idle_timeout:
                log.warning("idle for %.0f s with nothing loaded: exiting", idle)
                server.should_exit = True

    task = asyncio.create_task(watchdog())
    try:
        await server.serve(sockets=[sock, *([tcp] if tcp is not None else [])])
    finally:
        task.cancel()


def serve(settings: Settings, *, foreground: bool = True, listen: Listen | None = None) -> int:
    """Run the daemon on the Unix socket (and TCP when configured) until stopped."""
    if listen is None:
        listen = tcp_listener(settings)
    dp = DaemonPaths.of(settings.paths)
    secure_runtime_dir(dp.runtime)
    lock = DaemonLock(dp.lock)
    if not lock.acquire():
        raise DaemonUnavailable("a daemon is already running for this user",
                                hint="llm daemon status")
    tcp: socket.socket | None = None
    token: str | None = None
    try:
        if local_tcp():
            from llmtui.paths import open_private

            sock, endpoint, token = bind_local_tcp()
            with open_private(dp.token) as fh:
                fh.write(token)
        else:
            sock, endpoint = bind_unix(dp.socket), str(dp.socket)
        if listen is not None:
            try:
                tcp = bind_tcp(listen.bind)
            except LlmtuiError:
                sock.close()
                dp.socket.unlink(missing_ok=True)
                raise
        idle = parse_duration(os.environ.get("LLMTUI_IDLE_TIMEOUT")
                              or settings.config.get("daemon_idle_timeout"))
        status = {"pid": os.getpid(), "socket": endpoint, "version": __version__,
                  "started": time.time(), "models_dir": str(settings.models_dir),
                  "log": str(dp.log)}
        if listen is not None:
            status["tcp"] = listen.bind.url
        if token is not None:
            status["token_file"] = str(dp.token)

        def ready() -> None:
            write_status(dp.status, status)

        where = endpoint + (f" and {listen.bind.url}" if listen else "")
        if listen is not None and not listen.policy.api_key:
            log.warning("TCP clients are not asked for an API key")
        print(f"llmtui {__version__} listening on {where} (pid {os.getpid()})",
              file=sys.stderr, flush=True)
        try:
            with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
                runner.run(_serve(settings, sock, idle_timeout=idle, on_ready=ready,
                                  listen=listen, tcp=tcp, token=token))
        finally:
            with contextlib.suppress(OSError):
                sock.close()
                if tcp is not None:
                    tcp.close()
            for path in (dp.status, dp.socket, *([dp.token] if token else [])):
                with contextlib.suppress(FileNotFoundError):
                    if path == dp.status:
                        data = json.loads(path.read_text() or "{}")
                        if data.get("pid") != os.getpid():
                            continue
                    path.unlink()
    finally:
        lock.release()
    return 0


class InProcessServer:
    """The engine and API in this process, on a private temporary socket (--no-daemon)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tmp = tempfile.mkdtemp(prefix="llmtui-")
        os.chmod(self.tmp, 0o700)
        self.socket = Path(self.tmp) / "s"
        #: Where clients connect: the socket, or a loopback URL and its token (compat.py).
        self.endpoint = str(self.socket)
        self.token: str | None = None
        self.thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: Any = None
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def __enter__(self) -> InProcessServer:
        if local_tcp():
            sock, self.endpoint, self.token = bind_local_tcp()
        else:
            sock = bind_unix(self.socket)
        port = sock.getsockname()[1] if self.token else None

        def run() -> None:
            import uvicorn

            from llmtui.api.app import make_app
            from llmtui.engine.manager import EngineManager

            try:
                self.loop = asyncio.new_event_loop()
                asyncio.set_event_loop(self.loop)
                engine = EngineManager(self.settings)
                app: Any = make_app(engine)
                if self.token is not None and port is not None:
                    app = LocalToken(app, port, self.token)
                self.server = uvicorn.Server(uvicorn_config(app, self.settings))
                self.server.install_signal_handlers = lambda: None
                self.loop.call_later(0.0, self.ready.set)
                self.loop.run_until_complete(self.server.serve(sockets=[sock]))
            except BaseException as exc:
                self.error = exc
                self.ready.set()

        self.thread = threading.Thread(target=run, name="llmtui-inprocess", daemon=True)
        self.thread.start()
        self.ready.wait(30)
        if self.error is not None:
            raise DaemonUnavailable(f"the in-process engine failed to start: {self.error}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=15)
        with contextlib.suppress(OSError):
            self.socket.unlink()
            os.rmdir(self.tmp)


def main(argv: list[str] | None = None) -> None:
    """``python -m llmtui.daemon``: what autostart runs, detached, with logs to a file."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from llmtui.errors import LlmtuiError
    from llmtui.paths import private_umask

    private_umask()  # the daemon's files and its workers' (RAG tables, logs): owner-only
    from llmtui.net import quiet_dependencies

    quiet_dependencies()

    try:
        sys.exit(serve(Settings.load()))
    except LlmtuiError as exc:
        print(f"llmtui daemon: {exc}", file=sys.stderr)
        sys.exit(int(exc.exit_code))
