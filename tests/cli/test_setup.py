"""`llm setup`, `llm doctor` and the machine estimate they share, on the real machine."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from llmtui import machine
from llmtui.errors import ExitCode
from llmtui.models.catalog import load_catalog
from tests.conftest import LLM, ROOT, import_models, one_line_error, store_of

GB = 10**9


def box(ram: float, bandwidth: float, gpu: machine.Device | None = None) -> machine.Machine:
    llama = None
    if gpu is not None:
        llama = machine.LlamaBuild(version="x", system_info="", gpu_offload=True,
                                   backends=("CUDA", "CPU"), devices=(gpu,))
    return machine.Machine(system="Linux", arch="x86_64", cpu="test", cores_physical=2,
                           cores_logical=2, ram_total=int(ram), ram_available=int(ram),
                           bandwidth=bandwidth, cpu_score=100.0, models_dir="/tmp",
                           disk_free=100 * GB, llama=llama)


def test_speed_not_ram_decides_the_recommendation() -> None:
    # The case: a 2-core box with plenty of RAM but 10 GB/s must not get a 9B model.
    slow_box = box(24 * GB, 10e9)
    rec = machine.recommend(slow_box, load_catalog().values())
    assert rec and all("chat" in e.capabilities for e in rec)
    best = rec[0]
    assert best.size < 1 * GB, best.name
    assert machine.estimate(slow_box, best.size, best.ram).tokens_per_second >= 20
    nine_b = load_catalog()["gemma2:9b"]
    est = machine.estimate(slow_box, nine_b.size, nine_b.ram)
    assert est.fit == "fits" and est.speed == "slow" and est.tokens_per_second < 3
    # The same RAM with a GPU that the build can use: bigger models become fast.
    gpu = machine.Device("CUDA0", "NVIDIA H100", "gpu", 80 * GB, 79 * GB)
    fast_box = box(24 * GB, 10e9, gpu)
    assert machine.recommend(fast_box, load_catalog().values())[0].size > 4 * GB
    assert machine.estimate(fast_box, nine_b.size, nine_b.ram).where == "CUDA0"
    # Too little memory: only what fits is offered, fastest first when nothing is fast.
    tiny = box(1 * GB, 1e9)
    rec = machine.recommend(tiny, load_catalog().values())
    assert rec and all(e.ram <= 0.5 * GB for e in rec)
    assert machine.fit(int(0.9 * GB), int(1 * GB)) == "too-big"


def test_probe_measures_this_machine(tmp_path: Path) -> None:
    here = machine.probe(tmp_path / "models", cache_dir=tmp_path / "cache", fresh=True)
    assert here.ram_total == psutil.virtual_memory().total
    assert here.cores_logical == os.cpu_count()
    assert here.bandwidth > 1e8 and here.cpu_score > 1  # measured, not assumed
    assert here.disk_free > 0
    assert here.llama is not None and any(d.kind == "cpu" for d in here.llama.devices)
    assert "CPU" in here.llama.backends
    # A second probe reuses the week-old measurement instead of measuring again.
    again = machine.probe(tmp_path / "models", cache_dir=tmp_path / "cache")
    assert again.bandwidth == here.bandwidth and again.measured_at == here.measured_at
    assert oct((tmp_path / "cache" / "machine.json").stat().st_mode & 0o777) == "0o600"


def test_doctor_json_tells_the_truth(llm, home) -> None:
    res = llm("doctor", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["ok"] is True
    checks = {(c["area"], c["name"]): c for c in data["checks"]}
    assert checks[("extras", "llama")]["status"] == "ok"
    assert checks[("backends", "llamacpp")]["status"] == "ok"
    assert checks[("models", "installed")] == {
        "area": "models", "name": "installed", "status": "warn",
        "detail": "no models installed", "fix": "llm setup"}
    assert checks[("versions", "llmtui")]["detail"] == __import__("llmtui").__version__
    assert data["machine"]["ram_total"] == psutil.virtual_memory().total
    assert data["machine"]["llama"]["backends"]
    assert "AVX" in data["machine"]["llama"]["system_info"] or sys.platform != "linux"
    # No GPU on these machines, and doctor says so rather than trusting the offload flag.
    if not any(d["kind"] != "cpu" for d in data["machine"]["llama"]["devices"]):
        assert "models run on the CPU" in checks[("llama.cpp", "gpu")]["detail"]
    plain = llm("doctor")
    assert plain.returncode == 0
    assert "fix: llm setup" in plain.stdout and "0 broken" in plain.stdout
    assert checks[("network", "offline")]["detail"].startswith("off")
    on = json.loads(llm("doctor", "--json", env={"LLMTUI_OFFLINE": "1"}).stdout)
    offline = next(c for c in on["checks"] if c["name"] == "offline")
    assert offline["detail"].startswith("on (LLMTUI_OFFLINE)"), offline


def test_doctor_reports_what_is_broken(llm, home, smollm: Path) -> None:
    # A broken config file and a plugin backend that fails to import.
    (home / "config").mkdir(parents=True)
    (home / "config" / "config.toml").write_text("temperature = 'hot'\n")
    res = llm("doctor", "--json")
    assert res.returncode == 1
    data = json.loads(res.stdout)
    broken = [c for c in data["checks"] if c["status"] == "broken"]
    assert [c["fix"] for c in broken] == ["llm config edit"]
    assert "temperature" in broken[0]["detail"]


def test_doctor_names_a_missing_extra(llm, home, tmp_path: Path) -> None:
    # Hide the llama extra the way an install without it looks: llama_cpp is not found.
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "sitecustomize.py").write_text(
        "import sys\nclass F:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'onnxruntime':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, F())\n")
    res = llm("doctor", "--json", env={"PYTHONPATH": f"{shadow}{os.pathsep}{ROOT}"})
    data = json.loads(res.stdout)
    onnx = next(c for c in data["checks"] if c["name"] == "onnx")
    assert onnx["status"] == "missing" and onnx["fix"].endswith("-m pip install 'llmtui[onnx]'")


def test_setup_yes_pulls_a_fast_model_and_runs_a_prompt(llm, home, server,
                                                       tmp_path: Path) -> None:
    """The real wizard on this machine: hub sources point at a local server that has
    nothing, so the hub-only recommendations fail and the wizard falls back to the next
    one that this network reaches (the package index)."""
    fake_home = tmp_path / "user"
    fake_home.mkdir()
    env = {"HF_ENDPOINT": server.url, "HOME": str(fake_home), "SHELL": "/bin/bash",
           "XDG_DATA_HOME": str(fake_home / ".local/share"),
           "XDG_CONFIG_HOME": str(fake_home / ".config")}
    res = llm("setup", "--yes", env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "recommended for this machine" in res.stderr
    assert "GB/s memory bandwidth" in res.stderr
    installed = [m.name for m in store_of(home).models()]
    assert len(installed) == 1
    name = installed[0]
    entry = load_catalog()[name]
    here = machine.probe(home / "data" / "models", cache_dir=home / "cache")
    est = machine.estimate(here, entry.size, entry.ram)
    assert est.fit == "fits" and "chat" in entry.capabilities
    assert f"pulled {name}" in res.stderr
    assert res.stdout.strip(), "the first prompt's reply goes to stdout"
    assert llm("config", "get", "default_model").stdout.strip() == name
    assert (fake_home / ".local/share/bash-completion/completions/llm").is_file()
    assert not (fake_home / ".config/systemd").exists()  # autostart is opt-in with --yes


def test_setup_with_a_model_and_autostart(llm, home, smollm: Path, tmp_path: Path) -> None:
    import_models(home, smollm)
    fake_home = tmp_path / "user"
    env = {"HOME": str(fake_home), "XDG_CONFIG_HOME": str(fake_home / ".config")}
    res = llm("setup", "--yes", "--model", "smollm2:135m", "--no-prompt", "--no-completion",
              "--autostart", env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    unit = (fake_home / ".config/systemd/user/llmtui.service").read_text()
    assert f"ExecStart={sys.executable} -m llmtui serve" in unit
    assert "systemctl --user enable --now llmtui" in res.stderr


def test_setup_errors(llm, home) -> None:
    res = llm("setup", input="")
    assert res.returncode == ExitCode.USAGE
    assert "llm setup --yes" in one_line_error(res.stderr)
    res = llm("setup", "--yes", "--model", "no such model", "--no-prompt")
    assert res.returncode == ExitCode.INVALID_INPUT, res.stderr
    one_line_error(res.stderr)
    res = llm("setup", "--yes", "--min-speed", "0")
    assert res.returncode == ExitCode.USAGE


def test_bare_llm_on_a_terminal_with_no_models_starts_the_wizard(home) -> None:
    """A new user types `llm`: the wizard measures the machine and offers a model."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the real CLI on a terminal
        os.chdir(ROOT)
        os.execvpe(LLM[0], LLM, {**os.environ, "LLMTUI_HOME": str(home), "TERM": "xterm"})
    seen = b""
    deadline = time.monotonic() + 120
    try:
        while b"[Y/n]" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1)
            if ready:
                try:
                    seen += os.read(fd, 4096)
                except OSError:
                    break
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(fd)
    text = seen.decode(errors="replace")
    assert "measuring this machine" in text
    assert "recommended for this machine" in text and "[Y/n]" in text, text


@pytest.mark.parametrize("term", [None, "qwen"])
def test_catalog_shows_the_estimate(llm, home, term: str | None) -> None:
    res = llm("catalog", "--json", *([term] if term else []))
    data = json.loads(res.stdout)
    assert data["bandwidth"] > 0
    for m in data["models"]:
        assert m["fit"] in ("fits", "tight", "too-big")
        assert m["speed"] in ("fast", "usable", "slow") and m["tokens_per_second"] > 0
    plain = llm("catalog").stdout
    assert "tok/s" in plain.splitlines()[0]
    cp = subprocess.run([*LLM, "catalog"], capture_output=True, text=True, cwd=ROOT,
                        env={**os.environ, "LLMTUI_HOME": str(home)}, timeout=60)
    assert "recommended for this machine" in cp.stderr
