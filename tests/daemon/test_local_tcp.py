"""Where there are no Unix sockets (Windows), the daemon listens on a random loopback port
and accepts only clients that send the per-user token. Tested here by forcing that mode
(LLMTUI_LOCAL_TRANSPORT=tcp) on Linux."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import LLM, ROOT, import_models

TCP = {"LLMTUI_LOCAL_TRANSPORT": "tcp"}


def test_daemon_over_loopback_tcp_with_a_token(llm, home, smollm: Path, monkeypatch) -> None:
    import_models(home, smollm)
    res = llm("run", "-n", "4", "--seed", "1", "Hello", env=TCP)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip()
    run = home / "run"
    status = json.loads((run / "daemon.json").read_text())
    url = status["socket"]
    assert url.startswith("http://127.0.0.1:")
    assert not (run / "llmtui.sock").exists()  # no Unix socket at all
    token_file = Path(status["token_file"])
    assert token_file == run / "daemon.token"
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    token = token_file.read_text()
    # Without the token: refused, with the API's error shape. With it: trusted like the
    # Unix socket (full paths in the status, the shutdown endpoint allowed).
    bare = httpx.get(url + "/api/tags", timeout=10)
    assert bare.status_code == 401 and bare.json()["code"] == "forbidden"
    wrong = httpx.get(url + "/api/tags", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401
    auth = {"Authorization": f"Bearer {token}"}
    live = httpx.get(url + "/api/x/status", headers=auth, timeout=10).json()
    assert live["models_dir"] == str(home / "data" / "models")
    # The CLI and the Python SDK find it through the status file and the token.
    assert "smollm2:135m" in llm("ps", env=TCP).stdout
    monkeypatch.setenv("LLMTUI_LOCAL_TRANSPORT", "tcp")
    from llmtui.config import Settings
    from llmtui.daemon.client import Client

    assert Client(settings=Settings.load()).version() == live["version"]
    assert llm("daemon", "stop", env=TCP).returncode == 0
    assert not token_file.exists() and not (run / "daemon.json").exists()


def test_no_daemon_mode_over_loopback_tcp(llm, home, smollm: Path) -> None:
    import_models(home, smollm)
    res = llm("--no-daemon", "run", "-n", "4", "--seed", "1", "Hello", env=TCP)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip()


def test_imports_without_fcntl_or_unix_sockets() -> None:
    """What Windows lacks: the CLI, daemon, store and RAG modules still import, and the
    daemon chooses loopback TCP."""
    code = (
        "import sys, socket\n"
        "sys.modules['fcntl'] = None\n"
        "del socket.AF_UNIX\n"
        "import llmtui.cli.app, llmtui.daemon.server, llmtui.daemon.lifecycle\n"
        "import llmtui.models.store, llmtui.rag.index, llmtui.paths\n"
        "from llmtui import compat\n"
        "assert compat._fcntl is None and compat.local_tcp()\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LLMTUI_LOCAL_TRANSPORT"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=60)
    assert res.stdout.strip() == "ok", res.stderr
    assert LLM  # the CLI itself is exercised above


def test_tcp_connections_have_nagle_off() -> None:
    """The daemon's TCP listeners hand out connections with TCP_NODELAY, as asyncio
    gives them only to sockets made with IPPROTO_TCP: with Nagle on, every request on a
    kept-alive connection waited ~40 ms for the client's delayed ACK."""
    import asyncio
    import socket

    from llmtui.daemon.server import listening_socket

    listener = listening_socket(("127.0.0.1", 0))
    assert listener.proto == socket.IPPROTO_TCP

    async def accepted_nodelay() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=listener)
        port = listener.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(accepted_nodelay()) != 0
