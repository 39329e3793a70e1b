"""The official JavaScript `ollama` and `openai` packages, run by Node against a real daemon
(tests/js/suite.cjs): list, chat streaming, embeddings, structured output and more."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.api.conftest import TcpDaemon
from tests.conftest import ROOT
from tests.js import deps

SUITE = ROOT / "tests" / "js" / "suite.cjs"


@pytest.fixture(scope="module")
def node_modules() -> Path:
    return deps.ensure()


def test_javascript_clients(think_tcp: TcpDaemon, node_modules: Path) -> None:
    node = shutil.which("node")
    assert node, "node is needed for the JavaScript client tests (make sysdeps)"
    env = {**os.environ, "LLMTUI_URL": think_tcp.url, "NODE_PATH": str(node_modules)}
    res = subprocess.run([node, str(SUITE)], env=env, capture_output=True, text=True,
                         timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    passed = re.findall(r"^ok (.+)$", res.stdout, re.M)
    expected = re.findall(r'^  async "(.+)"\(\)', SUITE.read_text(), re.M)
    assert passed == expected and len(expected) >= 10, res.stdout
