"""`llm rpc-worker`: this machine's CPU or GPU served to another box's daemon.

It runs llama.cpp's own RPC server (``ggml_backend_rpc_start_server``, the code behind its
``rpc-server`` tool) inside this process, from the llama-cpp-python the daemon uses: one
build, one version on both ends (the protocol refuses a mismatch), nothing else to build.
The server's accept loop blocks in C, so it runs on a thread while the main thread waits
for Ctrl-C or SIGTERM and then ends the process (the OS closes the sockets).
"""

from __future__ import annotations

import ctypes
import getpass
import ipaddress
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

from llmtui.errors import ConfigError, LlmtuiError, require

DEFAULT_PORT = 50052  # llama.cpp's rpc-server default

ADVISORY = ("llama.cpp's RPC protocol has no authentication or encryption, and its server "
            "has had memory-safety bugs that let a client write outside its buffers: anyone "
            "who can connect can use this machine's devices and may take over the process")


def resolve_host(host: str) -> str:
    """The IPv4 address to bind: llama.cpp's server takes IPv4 literals only."""
    text = host.strip()
    if text.lower() == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise ConfigError(f"--host {host!r} is not an IPv4 address",
                          hint="llama.cpp's RPC server binds IPv4 addresses only, e.g. "
                          "127.0.0.1 or 10.0.0.5") from None


def check_exposure(host: str, insecure: bool) -> None:
    """Refuse a non-loopback address unless --insecure says the network is trusted."""
    if ipaddress.IPv4Address(host).is_loopback or insecure:
        return
    raise ConfigError(f"refusing to serve RPC on {host} (not loopback): {ADVISORY}",
                      hint="keep the default 127.0.0.1 and reach it through the SSH tunnel "
                      "it prints, or pass --insecure on a private network you trust")


def tunnel_command(port: int) -> str:
    """What to run on the daemon's machine to reach a loopback worker here over SSH."""
    try:
        user = getpass.getuser()
    except Exception:
        user = "USER"
    return (f"ssh -N -L {port}:127.0.0.1:{port} {user}@{socket.getfqdn()}")


def _say(text: str) -> None:
    sys.stderr.write(f"llm rpc-worker: {text}\n")
    sys.stderr.flush()


def run(host: str, port: int, mem: int | None, threads: int, cache_dir: str | None,
        insecure: bool) -> int:
    """Serve until interrupted; returns the exit status."""
    host = resolve_host(host)
    check_exposure(host, insecure)
    require("llama_cpp", "llama", "llm rpc-worker")
    from llmtui.backends import ggml_devices as gd
    from llmtui.backends.llamacpp import default_threads

    gd.check_bindable(host, port)
    devs = gd.server_devices(mem)
    threads = threads or default_threads()
    for dev in devs:
        d = gd.describe(dev)
        _say(f"serving {d.name} ({d.description}, {d.memory_free / 1e9:.1f} GB offered) on "
             f"{host}:{port}, {threads} thread{'s' if threads != 1 else ''}")
    loopback = ipaddress.IPv4Address(host).is_loopback
    if loopback:
        _say(f"only this machine can connect; from the machine that runs the daemon: "
             f"{tunnel_command(port)}   then: llm serve --rpc 127.0.0.1:{port}")
    else:
        _say(f"WARNING: {ADVISORY}. Keep {host}:{port} on a private network.")
        _say(f"on the daemon's machine: llm serve --rpc {host}:{port}")
    if cache_dir:
        _say(f"tensor cache: {cache_dir}")
    # llama.cpp's server prints its banner and connection notes on stdout; stdout is for
    # data, so they go to stderr with the rest of the log.
    sys.stdout.flush()
    os.dup2(2, 1)
    failed: list[BaseException] = []

    def serve() -> None:
        try:
            gd.start_rpc_server(f"{host}:{port}", devs, threads, cache_dir)
        except BaseException as exc:  # reported by the main thread
            failed.append(exc)

    server = threading.Thread(target=serve, name="llmtui-rpc-server", daemon=True)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    libc = ctypes.CDLL(None)
    while not stop.is_set() and server.is_alive():
        stop.wait(0.5)
        libc.fflush(None)  # C's stdout is block-buffered into the log: keep it current
    if not server.is_alive():
        if failed and isinstance(failed[0], LlmtuiError):
            raise failed[0]
        raise LlmtuiError(f"the RPC server on {host}:{port} stopped (see the messages above)")
    libc.fflush(None)
    _say("stopped")
    time.sleep(0.05)
    os._exit(0)  # the server thread never returns; the OS closes its sockets
