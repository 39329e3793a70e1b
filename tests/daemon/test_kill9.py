"""Probes that held in issue 21's outside review, kept as tests: kill -9 in the middle of
a pull and of a client's generation leaves the store and the daemon consistent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import LLM, ROOT, import_models, store_of
from tests.httpserver import Fault, ModelServer, sha256_file

SMOLLM_SHA = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def test_kill9_during_pull_leaves_nothing_half_installed(home: Path, server: ModelServer,
                                                         smollm: Path) -> None:
    url = server.add("/m.gguf", smollm)
    server.state.faults["/m.gguf"] = Fault("slow", delay=0.01, times=1)
    env = {**os.environ, "LLMTUI_HOME": str(home)}
    proc = subprocess.Popen([*LLM, "pull", url, "--sha256", SMOLLM_SHA, "--name", "m:1"],
                            env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
    store = store_of(home)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        parts = list(store.partial.glob("*.partial")) if store.partial.exists() else []
        if parts and parts[0].stat().st_size > 1_000_000:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # no handler runs, no cleanup
    proc.wait(timeout=30)
    assert store.models() == []
    assert not list(store.blobs.glob("sha256-*"))
    # The lock died with the process; the next pull resumes the partial and verifies it.
    res = subprocess.run([*LLM, "pull", url, "--sha256", SMOLLM_SHA, "--name", "m:1"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    assert any(r[2] for r in server.state.requests if r[0] == "GET"), "did not resume"
    assert sha256_file(store.blob_path(SMOLLM_SHA)) == SMOLLM_SHA
    assert not list(store.partial.glob("*.partial"))


def test_kill9_of_a_client_frees_the_model(home: Path, smollm: Path) -> None:
    import_models(home, smollm)
    env = {**os.environ, "LLMTUI_HOME": str(home)}
    proc = subprocess.Popen([*LLM, "run", "smollm2:135m", "Count from 1 to 5000, one "
                             "number per line.", "-n", "4000", "--temperature", "0"],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    proc.stdout.read(10)  # it is generating
    from llmtui.config import Settings
    from llmtui.daemon.client import Client

    client = Client(settings=Settings.load({"LLMTUI_HOME": str(home)}), autostart=False)
    assert client.status()["busy"]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 15
    while client.status()["busy"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not client.status()["busy"], "still generating for a client that was killed"
    parts = list(client.generate("smollm2:135m", "Hi", options={"num_predict": 3}))
    assert parts[-1]["done"]
    assert json.dumps(parts)  # a whole, well-formed answer
