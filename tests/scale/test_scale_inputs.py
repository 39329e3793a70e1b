"""What a user can get wrong about `llm rpc-worker`, rpc_servers, `llm serve --rpc/--ray`,
and the RPC servers themselves (dead, busy, another version: fake servers force those)."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmtui.backends import ggml_devices as gd
from llmtui.errors import RemoteUnavailable
from tests.conftest import LLM, ROOT, Runner, one_line_error
from tests.scale.conftest import free_port

# -- llm rpc-worker ---------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3"])
def test_worker_refuses_a_network_address_without_insecure(llm: Runner, host: str) -> None:
    r = llm("rpc-worker", "--host", host, "--port", str(free_port()))
    assert r.returncode == 11
    line = one_line_error(r.stderr)
    assert "not loopback" in line and "no authentication" in line and "SSH tunnel" in line
    assert r.stdout == ""


@pytest.mark.parametrize("host", ["gpu-box", "::1", "300.1.1.1", ""])
def test_worker_wants_an_ipv4_address(llm: Runner, host: str) -> None:
    r = llm("rpc-worker", "--host", host, "--port", str(free_port()))
    assert r.returncode == 11
    assert "not an IPv4 address" in one_line_error(r.stderr)


@pytest.mark.parametrize("mem,why", [("lots", "not a size"), ("0", "more than 0"),
                                     ("-1GB", "not a size")])
def test_worker_mem_must_be_a_size(llm: Runner, mem: str, why: str) -> None:
    r = llm("rpc-worker", "--mem", mem, "--port", str(free_port()))
    assert r.returncode == 2
    assert why in one_line_error(r.stderr)


@pytest.mark.parametrize("args", [["--port", "0"], ["--port", "70000"], ["--threads", "-1"],
                                  ["--port", "x"]])
def test_worker_option_ranges(llm: Runner, args: list[str]) -> None:
    r = llm("rpc-worker", *args)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_worker_port_in_use_is_one_line(llm: Runner) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = llm("rpc-worker", "--port", str(port))
    assert r.returncode == 11
    assert f"cannot listen on 127.0.0.1:{port}" in one_line_error(r.stderr)


def _start_worker(home: Path, *args: str,
                  host: str = "127.0.0.1") -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proc = subprocess.Popen([*LLM, "rpc-worker", "--host", host, "--port", str(port), *args],
                            cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "LLMTUI_HOME": str(home)})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            gd.rpc_hello(f"{host}:{port}", timeout=2)
            return proc, port
        except RemoteUnavailable:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the worker did not start")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_worker_serves_prints_the_tunnel_and_stops_cleanly(home: Path, sig: int) -> None:
    proc, port = _start_worker(home, "--mem", "3GB", "--cache")
    assert gd.rpc_hello(f"127.0.0.1:{port}")[:2] == gd.RPC_PROTO
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert out == ""  # llama.cpp's own notes are sent to stderr with the rest of the log
    assert "3.0 GB offered" in err and "Starting RPC server" in err
    assert f"ssh -N -L {port}:127.0.0.1:{port} " in err
    assert f"llm serve --rpc 127.0.0.1:{port}" in err
    assert "tensor cache" in err and (home / "cache" / "rpc").is_dir()
    assert err.rstrip().endswith("llm rpc-worker: stopped")
    with pytest.raises(RemoteUnavailable, match="cannot reach"):  # the port is free again
        gd.rpc_hello(f"127.0.0.1:{port}", timeout=2)


def test_worker_on_another_loopback_address_needs_no_insecure(home: Path) -> None:
    """127.0.0.0/8 is loopback; a network address with --insecure: tests/scale/test_rpc.py."""
    proc, _ = _start_worker(home, host="127.0.0.2")
    proc.terminate()
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "only this machine can connect" in err


# -- rpc_servers, llm serve --rpc / --ray ----------------------------------------------------


@pytest.mark.parametrize("value,why", [
    ("gpu-box", "not HOST:PORT"), ("gpu-box:", "the port must be"),
    ("gpu-box:99999", "the port must be"), (":50052", "not HOST:PORT"),
    ("[::1]:50052", "not HOST:PORT"), ("a:1,a:1", "listed twice"), (" , ", "HOST:PORT"),
    (",".join(f"h{i}:1" for i in range(17)), "at most 16")])
def test_rpc_servers_setting_is_checked(llm: Runner, value: str, why: str) -> None:
    r = llm("config", "set", "rpc_servers", value)
    assert r.returncode == 11
    assert why in one_line_error(r.stderr)
    s = llm("serve", "--rpc", value)
    assert s.returncode == 2
    assert why in one_line_error(s.stderr)


def test_rpc_servers_setting_is_kept_tidy(llm: Runner) -> None:
    assert llm("config", "set", "rpc_servers", " 10.0.0.5:50052 , gpu-b:1 ").returncode == 0
    assert llm("config", "get", "rpc_servers").stdout.strip() == "10.0.0.5:50052,gpu-b:1"


@pytest.mark.parametrize("args,why", [
    (["--replicas", "2"], "go with --ray"), (["--address", "auto"], "go with --ray"),
    (["--autoscale", "1..2"], "go with --ray"),
    (["--ray", "--replicas", "2", "--autoscale", "1..3"], "not both"),
    (["--ray", "--autoscale", "3..1"], "MIN <= MAX"),
    (["--ray", "--autoscale", "0..0"], "MAX >= 1"),
    (["--ray", "--autoscale", "two"], "expected MIN..MAX")])
def test_serve_scale_options(llm: Runner, args: list[str], why: str) -> None:
    r = llm("serve", *args)
    assert r.returncode == 2
    assert why in one_line_error(r.stderr)


def test_serve_replicas_must_be_positive(llm: Runner) -> None:
    r = llm("serve", "--ray", "--replicas", "0")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_serve_ray_refuses_a_network_address_without_a_key(llm: Runner) -> None:
    r = llm("serve", "--ray", "--host", "0.0.0.0:8000")
    assert r.returncode == 11
    assert "without an API key" in one_line_error(r.stderr)


# -- the handshake: dead, busy, other versions ----------------------------------------------


class FakeServer:
    """A TCP server that answers RPC's HELLO in a chosen wrong way."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.endpoint = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.mode == "busy":
                continue  # accepted, never answered: another client has the server
            conn.recv(64)
            if self.mode == "old":
                body = bytes([6, 0, 0, 0]) + bytes(gd.RPC_CAPS_SIZE)
                conn.sendall(struct.pack("<Q", len(body)) + body)
            elif self.mode == "odd":
                conn.sendall(struct.pack("<Q", 3) + b"abc")
            conn.close()  # "hangup" closes without a word

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture()
def fake(request: pytest.FixtureRequest) -> Iterator[FakeServer]:
    server = FakeServer(request.param)
    yield server
    server.close()


@pytest.mark.parametrize("fake,why", [
    ("busy", "did not answer within 1 s; it serves one client at a time"),
    ("old", "speaks protocol 6.0.0"), ("odd", "unknown handshake"),
    ("hangup", "hung up during the handshake")], indirect=["fake"])
def test_handshake_faults_are_one_line(fake: FakeServer, why: str) -> None:
    with pytest.raises(RemoteUnavailable) as err:
        gd.rpc_hello(fake.endpoint, timeout=1)
    assert why in str(err.value) and fake.endpoint in str(err.value)
    assert err.value.exit_code == 20


def test_handshake_to_nobody() -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    with pytest.raises(RemoteUnavailable, match=f"cannot reach the RPC server {endpoint}"):
        gd.rpc_hello(endpoint)


def test_offline_refuses_a_remote_rpc_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmtui.net import OfflineError

    monkeypatch.setenv("LLMTUI_OFFLINE", "1")
    with pytest.raises(OfflineError, match=r"RPC server 10\.9\.9\.9:50052"):
        gd.rpc_hello("10.9.9.9:50052")
    with pytest.raises(RemoteUnavailable):  # loopback stays allowed
        gd.rpc_hello(f"127.0.0.1:{free_port()}")


# -- the layer plan ----------------------------------------------------------------------------


def _dev(name: str, free: int) -> gd.Device:
    return gd.Device(name, "h:1", "gpu", free, free, "RPC")


def test_layer_plan_even_split() -> None:
    plan = gd.plan_layers(30, -1, [_dev("RPC0", 8), _dev("RPC1", 8)])
    assert plan["layers"]["RPC0"] == list(range(16))
    assert plan["layers"]["RPC1"] == list(range(16, 30))
    assert plan["output"] == "RPC1" and plan["layers"]["CPU"] == []


def test_layer_plan_partial_offload_and_no_devices() -> None:
    plan = gd.plan_layers(30, 10, [_dev("RPC0", 1), _dev("RPC1", 3)])
    assert plan["layers"]["CPU"] == list(range(21))  # the first 21 blocks stay here
    assert len(plan["layers"]["RPC0"]) + len(plan["layers"]["RPC1"]) == 9
    assert plan["output"] == "RPC1"
    none = gd.plan_layers(30, -1, [])
    assert none["layers"]["CPU"] == list(range(30)) and none["output"] == "CPU"
