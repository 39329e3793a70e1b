"""`pip install llmtui` from what a release ships: build the sdist, build the wheel from
the sdist (so the sdist is complete), install the wheel into a clean virtual environment
with the cached llama-cpp-python wheel, then `llm --version`, a pull from the local test
server and a run, all from that environment."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import llmtui
from tests.conftest import ROOT
from tests.httpserver import ModelServer
from tests.models.test_pull import SMOLLM_SHA

LLAMA_VERSION = "0.3.36"  # the Makefile's LLAMA_VERSION


def llama_wheels() -> str:
    """The folder with the llama-cpp-python wheel `make setup` built (compiling it here
    would take many minutes)."""
    env = os.environ.get("LLMTUI_LLAMA_WHEELS")
    found = [env] if env else sorted(glob.glob(os.path.expanduser(
        f"~/.cache/llmtui-wheels/llama-cpp-python-{LLAMA_VERSION}-*")))
    for folder in found:
        if glob.glob(os.path.join(folder, "llama_cpp_python-*.whl")):
            return folder
    pytest.skip("no cached llama-cpp-python wheel (make setup builds it)")


def run(*args: str | Path, **kw: object) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    assert res.returncode == 0, f"{args}:\n{res.stdout}\n{res.stderr}"
    return res


@pytest.mark.timeout(900)
def test_built_wheel_installs_in_a_clean_venv(tmp_path: Path, smollm: Path) -> None:
    version = llmtui.__version__
    dist = tmp_path / "dist"
    # `python -m build` makes the sdist, then the wheel from the unpacked sdist.
    run(sys.executable, "-m", "build", "--outdir", dist, ROOT, timeout=300)
    sdist = dist / f"llmtui-{version}.tar.gz"
    wheel = dist / f"llmtui-{version}-py3-none-any.whl"
    assert sdist.exists() and wheel.exists(), sorted(p.name for p in dist.iterdir())
    with tarfile.open(sdist) as tar:
        names = set(tar.getnames())
    for member in ("man/llm.1", "completions/llm.bash", "CHANGELOG.md", "LICENSE"):
        assert f"llmtui-{version}/{member}" in names, member
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert f"llmtui-{version}.data/data/share/man/man1/llm.1" in names  # `man llm`
    assert "llmtui/completions/llm.bash" in names

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, timeout=120)
    py, llm = venv / "bin" / "python", venv / "bin" / "llm"
    run(py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--find-links", llama_wheels(), f"llama-cpp-python=={LLAMA_VERSION}",
        f"{wheel}[llama,server]", timeout=600)
    # A clean environment: nothing from the repository or the test venv leaks in.
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path),
           "LLMTUI_HOME": str(tmp_path / "home"), "NO_COLOR": "1",
           "LLMTUI_IDLE_TIMEOUT": "60", "LANG": "C.UTF-8"}
    where = run(py, "-c", "import llmtui; print(llmtui.__file__)", env=env, cwd=tmp_path)
    assert str(venv) in where.stdout

    assert run(llm, "--version", env=env, cwd=tmp_path, timeout=60).stdout == \
        f"llmtui {version}\n"
    try:
        with ModelServer() as server:
            url = server.add("/files/SmolLM2.Q4_1.gguf", smollm)
            res = run(llm, "pull", url, "--sha256", SMOLLM_SHA, "--name", "tiny:q4",
                      env=env, cwd=tmp_path, timeout=120)
            assert "success" in res.stderr
        listed = run(llm, "list", env=env, cwd=tmp_path, timeout=60).stdout
        assert "tiny:q4" in listed
        out = run(llm, "run", "tiny:q4", "-n", "4", "--seed", "1", "Hello", env=env,
                  cwd=tmp_path, timeout=180)
        assert out.stdout.strip()
    finally:
        subprocess.run([llm, "daemon", "stop"], env=env, cwd=tmp_path, capture_output=True,
                       timeout=60)
