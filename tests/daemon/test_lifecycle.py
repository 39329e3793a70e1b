"""The daemon's life: autostart, socket safety, locks, status, restarts, idle exit, faults."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

from llmtui.errors import ExitCode
from tests.conftest import LLM, ROOT, import_models, one_line_error


def status_of(home: Path) -> dict:
    return json.loads((home / "run" / "daemon.json").read_text())


def wait_gone(pid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_autostart_socket_permissions_and_status(llm, home, smollm) -> None:
    import_models(home, smollm)
    res = llm("run", "smollm2:135m", "Say hi.", "-n", "4", "--temperature", "0")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip()
    run = home / "run"
    assert stat.S_IMODE(run.stat().st_mode) == 0o700
    sock = run / "llmtui.sock"
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    st = status_of(home)
    assert st["socket"] == str(sock) and st["version"] and st["pid"] > 0
    status = llm("daemon", "status")
    assert status.returncode == 0 and f"pid {st['pid']}" in status.stdout
    # A second command reuses the same daemon.
    assert llm("run", "smollm2:135m", "Hi", "-n", "2").returncode == 0
    assert status_of(home)["pid"] == st["pid"]
    assert llm("daemon", "stop").returncode == 0
    assert wait_gone(st["pid"])
    assert not sock.exists()
    assert llm("daemon", "status").returncode == 1


def test_unsafe_runtime_folder_refused(llm, home, smollm) -> None:
    import_models(home, smollm)
    run = home / "run"
    run.mkdir(parents=True, exist_ok=True)
    os.chmod(run, 0o777)
    res = llm("run", "smollm2:135m", "hi", "-n", "2")
    assert res.returncode == ExitCode.DAEMON_UNAVAILABLE
    line = one_line_error(res.stderr)
    assert "unsafe permissions" in line and "chmod 700" in line
    assert not (run / "llmtui.sock").exists()


def test_stale_socket_and_status_are_handled(llm, home, smollm) -> None:
    import_models(home, smollm)
    run = home / "run"
    run.mkdir(parents=True, mode=0o700)
    # A socket file nobody listens on, and a status file naming a dead process.
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(run / "llmtui.sock"))
    s.close()
    (run / "daemon.json").write_text(json.dumps({"pid": 999999, "socket": str(run / "llmtui.sock"),
                                                 "version": "0.0.1"}))
    res = llm("run", "smollm2:135m", "hi", "-n", "2")
    assert res.returncode == 0, res.stderr
    assert status_of(home)["pid"] != 999999


def test_two_autostarts_at_once_make_one_daemon(home, smollm) -> None:
    import_models(home, smollm)
    env = {**os.environ, "LLMTUI_HOME": str(home)}
    procs = [subprocess.Popen([*LLM, "daemon", "start"], env=env, cwd=ROOT,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    pids = {int(line.split()[0]) for line in subprocess.run(
        ["pgrep", "-f", "-a", "llmtui.daemon"], capture_output=True, text=True).stdout.splitlines()
        if str(home) in Path(f"/proc/{line.split()[0]}/environ").read_bytes().decode(
            errors="replace")}
    assert len(pids) == 1, pids
    assert status_of(home)["pid"] in pids


def test_version_mismatch_restarts(home, smollm, monkeypatch) -> None:
    from llmtui.config import Settings
    from llmtui.daemon import lifecycle

    import_models(home, smollm)
    settings = Settings.load()
    lifecycle.ensure_daemon(settings)
    old = status_of(home)["pid"]
    monkeypatch.setattr(lifecycle, "__version__", "9.9.9")  # as if llmtui was upgraded
    lifecycle.ensure_daemon(settings)
    new = status_of(home)["pid"]
    assert new != old
    assert wait_gone(old)


def test_idle_daemon_exits(home, smollm) -> None:
    import_models(home, smollm)
    env = {**os.environ, "LLMTUI_HOME": str(home), "LLMTUI_IDLE_TIMEOUT": "1"}
    res = subprocess.run([*LLM, "daemon", "start"], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    pid = status_of(home)["pid"]
    assert wait_gone(pid, 20)
    assert not (home / "run" / "daemon.json").exists()


def test_no_daemon_runs_in_process(llm, home, smollm) -> None:
    import_models(home, smollm)
    res = llm("--no-daemon", "run", "smollm2:135m", "Say hi.", "-n", "4")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip()
    res = llm("run", "smollm2:135m", "Say hi.", "-n", "4", env={"LLMTUI_NO_DAEMON": "1"})
    assert res.returncode == 0, res.stderr
    assert not (home / "run" / "daemon.json").exists()


def test_worker_killed_mid_generation(home, smollm, monkeypatch) -> None:
    """kill -9 of a worker fails only its request; the daemon serves on and reloads."""
    from llmtui.config import Settings
    from llmtui.daemon.client import Client
    from llmtui.errors import GenerationError

    import_models(home, smollm)
    client = Client(settings=Settings.load())
    client.load("smollm2:135m")
    pid = client.ps()[0]["pid"]
    errors: list[BaseException] = []

    def gen() -> None:
        try:
            list(client.generate("smollm2:135m", "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,",
                                 raw=True, options={"num_predict": 2000, "temperature": 0,
                                                    "repeat_penalty": 1.0}))
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=gen)
    t.start()
    time.sleep(1.0)
    os.kill(pid, signal.SIGKILL)
    t.join(30)
    assert errors and isinstance(errors[0], GenerationError)
    assert "SIGKILL" in str(errors[0]) and "reloaded" in str(errors[0])
    parts = list(client.generate("smollm2:135m", "Hi", options={"num_predict": 3}))
    assert parts[-1]["done"]
    assert client.ps()[0]["pid"] != pid


def test_bad_gguf_crash_is_contained(home, smollm, tmp_path) -> None:
    """A file that parses as GGUF but that llama.cpp cannot load fails cleanly."""
    from llmtui.config import Settings
    from llmtui.daemon.client import Client
    from llmtui.models.store import Store

    import_models(home, smollm)
    data = bytearray(smollm.read_bytes()[:3_000_000])
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(bytes(data))
    store = Store(home / "data" / "models")
    good = store.get("smollm2:135m")
    # A manifest that points at a truncated file (as if the disk had been corrupted later).
    from dataclasses import replace

    from llmtui.models.store import Layer

    layer = Layer(digest="0" * 64, size=bad.stat().st_size, filename="bad.gguf", link=str(bad))
    store.write_manifest(replace(good, name="broken:1", layers=(layer,)))
    client = Client(settings=Settings.load())
    try:
        list(client.generate("broken:1", "hi"))
    except Exception as exc:
        assert "broken" in str(exc) or "load" in str(exc) or "truncated" in str(exc)
    else:
        raise AssertionError("a broken model loaded")
    assert list(client.generate("smollm2:135m", "Hi", options={"num_predict": 2}))[-1]["done"]


def test_daemon_killed_mid_stream(llm, home, smollm) -> None:
    import_models(home, smollm)
    env = {**os.environ, "LLMTUI_HOME": str(home)}
    assert llm("load", "smollm2:135m").returncode == 0
    pid = status_of(home)["pid"]
    proc = subprocess.Popen([*LLM, "run", "smollm2:135m", "Write a long story.", "-n", "2000"],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    proc.stdout.read(20)  # the reply is streaming
    os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == ExitCode.DAEMON_UNAVAILABLE, err
    assert "lost the connection to the daemon" in one_line_error(err)
    # The next command starts a fresh daemon.
    res = llm("run", "smollm2:135m", "Hi", "-n", "2")
    assert res.returncode == 0, res.stderr
    assert status_of(home)["pid"] != pid


def test_memory_budget_and_eviction(llm, home, smollm, gemma) -> None:
    import_models(home, smollm, gemma)
    cfg = home / "config" / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text('memory_budget = "100MB"\n')
    res = llm("run", "smollm2:135m", "hi", "-n", "2")
    assert res.returncode != 0
    assert "memory budget" in one_line_error(res.stderr)
    llm("daemon", "stop")
    cfg.write_text("max_loaded_models = 1\n")
    assert llm("load", "smollm2:135m").returncode == 0
    assert llm("load", "gemma3:270m").returncode == 0
    ps = json.loads(llm("ps", "--json").stdout)
    assert [m["name"] for m in ps] == ["gemma3:270m"]  # the least recently used went


def test_two_models_run_in_parallel(home, smollm, gemma) -> None:
    from llmtui.config import Settings
    from llmtui.daemon.client import Client

    import_models(home, smollm, gemma)
    client = Client(settings=Settings.load())
    client.load("smollm2:135m")
    client.load("gemma3:270m")
    spans: dict[str, tuple[float, float]] = {}

    def gen(model: str) -> None:
        start = time.monotonic()
        list(client.generate(model, "Once upon a time", raw=True,
                             options={"num_predict": 60, "temperature": 0}))
        spans[model] = (start, time.monotonic())

    threads = [threading.Thread(target=gen, args=(m,)) for m in ("smollm2:135m", "gemma3:270m")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    (a0, a1), (b0, b1) = spans.values()
    assert min(a1, b1) > max(a0, b0), "the two generations overlapped in time"
    pids = {m["pid"] for m in client.ps()}
    assert len(pids) == 2
