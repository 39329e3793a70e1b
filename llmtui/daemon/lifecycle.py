"""Finding, starting and stopping the background daemon (a status file, like dmypy)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from llmtui import __version__, compat
from llmtui.compat import lock_fd, unlock_fd
from llmtui.config import Settings
from llmtui.daemon.paths import DaemonPaths, secure_runtime_dir
from llmtui.errors import DaemonUnavailable

START_TIMEOUT = 30.0


def read_status(dp: DaemonPaths) -> dict[str, Any] | None:
    try:
        data = json.loads(dp.status.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pid_alive(pid: int) -> bool:
    return compat.pid_alive(pid)


def is_tcp(endpoint: str) -> bool:
    """A local daemon's endpoint is a Unix socket path, or (see compat.py) a loopback URL."""
    return endpoint.startswith("http://")


def local_token(settings: Settings) -> str | None:
    """The token a local TCP daemon wrote for this user (None when there is none)."""
    try:
        return DaemonPaths.of(settings.paths).token.read_text("utf-8").strip() or None
    except OSError:
        return None


def connection(endpoint: str, token: str | None = None, *,
               asynchronous: bool = False) -> dict[str, Any]:
    """httpx client arguments for a local endpoint: the socket, or the URL and its token."""
    import httpx

    if is_tcp(endpoint):
        return {"base_url": endpoint,
                "headers": {"Authorization": f"Bearer {token}"} if token else {}}
    # No TLS on a Unix socket: skipping verify avoids loading the CA bundle.
    cls = httpx.AsyncHTTPTransport if asynchronous else httpx.HTTPTransport
    return {"transport": cls(uds=endpoint, verify=False), "base_url": "http://llmtui"}


def probe(socket_path: str, timeout: float = 2.0,
          token: str | None = None) -> dict[str, Any] | None:
    """Ask a daemon for its status over its socket; None when nothing answers."""
    import httpx

    try:
        with httpx.Client(**connection(socket_path, token), timeout=timeout) as client:
            resp = client.get("/api/x/status")
            if resp.status_code == 200:
                data = resp.json()
                return data if isinstance(data, dict) else None
    except (httpx.HTTPError, ValueError, OSError):
        return None
    return None


def running(settings: Settings) -> dict[str, Any] | None:
    """The live daemon's status (from its socket), or None."""
    dp = DaemonPaths.of(settings.paths)
    status = read_status(dp)
    if not status or not pid_alive(int(status.get("pid", 0))):
        return None
    live = probe(str(status.get("socket", dp.socket)), token=local_token(settings))
    if live is None:
        return None
    return {**status, **live}


def ensure_daemon(settings: Settings, timeout: float = START_TIMEOUT) -> str:
    """Return the socket of a running daemon of our version, starting one if needed."""
    dp = DaemonPaths.of(settings.paths)
    secure_runtime_dir(dp.runtime)
    live = running(settings)
    if live and live.get("version") == __version__:
        return str(live["socket"])
    with _flock(dp.start_lock):
        live = running(settings)  # another process may have started it meanwhile
        if live and live.get("version") == __version__:
            return str(live["socket"])
        if live:  # an older or newer daemon: replace it
            stop_daemon(settings)
        return _spawn(settings, dp, timeout)


@contextlib.contextmanager
def _flock(path: Path) -> Any:
    with path.open("a+") as fh:
        lock_fd(fh.fileno())
        try:
            yield
        finally:
            unlock_fd(fh.fileno())


def _spawn(settings: Settings, dp: DaemonPaths, timeout: float) -> str:
    from llmtui.paths import open_private, private_dir

    private_dir(dp.log.parent)  # logs name models, files and prompts in errors
    with open_private(dp.log, "ab") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmtui.daemon"],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
            start_new_session=True, close_fds=True, cwd="/",
            env={**os.environ, **settings.paths.environ()},
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = read_status(dp)
        if status and status.get("pid") == proc.pid and probe(
                str(status["socket"]), 1.0, token=local_token(settings)):
            return str(status["socket"])
        code = proc.poll()
        if code is not None:
            tail = _log_tail(dp.log)
            raise DaemonUnavailable(
                f"the daemon exited at start (code {code}): {tail}",
                hint=f"see {dp.log}")
        time.sleep(0.03)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    raise DaemonUnavailable(f"the daemon did not start within {timeout:.0f} s",
                            hint=f"see {dp.log}")


def _log_tail(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no log output"


def stop_daemon(settings: Settings, timeout: float = 36.0) -> bool:
    """Ask the daemon to exit (it unloads its models); SIGTERM, then SIGKILL if it hangs."""
    import httpx

    dp = DaemonPaths.of(settings.paths)
    status = read_status(dp)
    if not status:
        return False
    pid = int(status.get("pid", 0))
    if not pid_alive(pid):
        with contextlib.suppress(FileNotFoundError):
            dp.status.unlink()
        return False
    with contextlib.suppress(httpx.HTTPError, OSError), httpx.Client(
            **connection(str(status["socket"]), local_token(settings)), timeout=5) as client:
        client.post("/api/x/shutdown")
    for sig in (None, signal.SIGTERM, getattr(signal, "SIGKILL", signal.SIGTERM)):
        if sig is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout / 3
        while time.monotonic() < deadline:
            if not pid_alive(pid) or _is_zombie(pid):
                return True
            time.sleep(0.05)
    return not pid_alive(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return False
