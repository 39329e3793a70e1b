"""A real daemon listening on a loopback TCP port (`llm serve --port`), for API tests."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LLM, ROOT, import_models, stop_daemon_of


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TcpDaemon:
    """`llm serve` in the foreground on 127.0.0.1:PORT, under a given home."""

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "LLMTUI_HOME": str(home), "LLMTUI_IDLE_TIMEOUT": "600",
                    **(env or {})}
        self.args = ["serve", "--port", str(self.port), *args]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> TcpDaemon:
        self.proc = subprocess.Popen([*LLM, *self.args], env=self.env, cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.proc.stderr.read().decode() if self.proc.stderr else "")
            try:
                httpx.get(self.url + "/", timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("llm serve did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        stop_daemon_of(self.home)

    def __enter__(self) -> TcpDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="module")
def api_home(tmp_path_factory: pytest.TempPathFactory, smollm: Path, gemma: Path) -> Path:
    home = tmp_path_factory.mktemp("api") / "home"
    import_models(home, smollm, gemma)
    return home


@pytest.fixture(scope="module")
def tcp(api_home: Path) -> Iterator[TcpDaemon]:
    """One warm daemon on a loopback port, shared by a module's tests."""
    with TcpDaemon(api_home) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def think_tcp(tmp_path_factory: pytest.TempPathFactory, smollm: Path,
              thinker: Path) -> Iterator[TcpDaemon]:
    """A warm daemon with the chat test model and the reasoning one (``thinker``)."""
    home = tmp_path_factory.mktemp("think") / "home"
    import_models(home, smollm, extra={"thinker": thinker})
    with TcpDaemon(home) as daemon:
        yield daemon


def ollama_client(daemon: TcpDaemon) -> Any:
    import ollama

    return ollama.Client(host=daemon.url, timeout=120)


def openai_client(daemon: TcpDaemon) -> Any:
    import openai

    return openai.OpenAI(base_url=daemon.url + "/v1", api_key="unused", timeout=120,
                         max_retries=0)
