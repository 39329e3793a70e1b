"""Real `llm rpc-worker` processes, each in a network namespace of its own (reached over a
veth pair), or on loopback where namespaces cannot be made (not root, no `ip`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import LLM, ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20,
                          check=check)


@dataclass
class Worker:
    """One `llm rpc-worker`, in a namespace (ns) or on loopback."""

    host: str
    port: int
    home: Path
    ns: str | None = None
    mem: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=Path)

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> Worker:
        cmd = [*LLM, "rpc-worker", "--host", self.host, "--port", str(self.port),
               "--threads", "1"]
        if self.mem:
            cmd += ["--mem", self.mem]
        if self.ns:
            cmd = ["ip", "netns", "exec", self.ns, *cmd, "--insecure"]
        self.log = self.home / f"worker-{self.port}-{self.host}.log"
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=out,
                                         env={**os.environ, "LLMTUI_HOME": str(self.home)})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text())
            if "Starting RPC server" in self.log.read_text(errors="replace") and \
                    self._listening():
                return self
            time.sleep(0.1)
        raise RuntimeError("rpc-worker did not start:\n" + self.log.read_text())

    def _listening(self) -> bool:
        probe = ["ss", "-ltnH", f"sport = :{self.port}"]
        if self.ns:
            probe = ["ip", "netns", "exec", self.ns, *probe]
        if shutil.which("ss") is None:
            return True
        out = subprocess.run(probe, capture_output=True, text=True, timeout=10).stdout
        return bool(out.strip())

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


class Namespaces:
    """Network namespaces joined to this one by veth pairs; removed whatever happens."""

    def __init__(self) -> None:
        tag = os.getpid() % 100000
        self.prefix = f"llmtui-t{tag}"
        self.subnet = 10 + tag % 200  # 10.77.<subnet+k>.0/24, unlikely to meet another run
        self.made: list[tuple[str, str]] = []

    @staticmethod
    def available() -> bool:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            return False
        probe = f"llmtui-probe{os.getpid() % 100000}"
        ok = _ip("netns", "add", probe, check=False).returncode == 0
        _ip("netns", "del", probe, check=False)
        return ok

    def add(self, k: int) -> tuple[str, str]:
        """Namespace k: returns (its name, the address the worker listens on in it)."""
        ns = f"{self.prefix}-{k}"
        host_if, ns_if = f"lth{os.getpid() % 100000}{k}", f"ltn{os.getpid() % 100000}{k}"
        self.made.append((ns, host_if))
        net = f"10.77.{self.subnet + k}"
        _ip("netns", "add", ns)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{net}.1/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("netns", "exec", ns, "ip", "addr", "add", f"{net}.2/24", "dev", ns_if)
        _ip("netns", "exec", ns, "ip", "link", "set", ns_if, "up")
        _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        return ns, f"{net}.2"

    def remove(self) -> None:
        for ns, host_if in self.made:
            _ip("link", "del", host_if, check=False)
            _ip("netns", "del", ns, check=False)
        self.made.clear()


@dataclass
class Workers:
    items: list[Worker]
    isolated: bool  # in namespaces (else loopback)

    @property
    def endpoints(self) -> str:
        return ",".join(w.endpoint for w in self.items)


@pytest.fixture(scope="module")
def rpc_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    """Two RPC workers on their own network stacks, as on two boxes."""
    home = tmp_path_factory.mktemp("rpcw")
    spaces = Namespaces() if Namespaces.available() else None
    workers: list[Worker] = []
    try:
        for k in range(2):
            if spaces is not None:
                ns, host = spaces.add(k)
                workers.append(Worker(host, 50052, home / f"w{k}", ns=ns))
            else:
                workers.append(Worker("127.0.0.1", free_port(), home / f"w{k}"))
        for w in workers:
            w.start()
        yield Workers(workers, isolated=spaces is not None)
    finally:
        for w in workers:
            with contextlib.suppress(Exception):
                w.stop()
        if spaces is not None:
            spaces.remove()
