"""kill -9 of the daemon in the middle of an ingest (issue 21's probe that held, kept):
the collection stays consistent, and the same command run again completes it."""

from __future__ import annotations

import json
import os
import signal
import time

from tests.rag.test_rag import _assert_table_matches_manifest


def test_daemon_kill9_during_ingest(rag) -> None:
    folder = rag.cwd / "kill9"
    folder.mkdir()
    for i in range(12):
        paras = "\n\n".join(f"File {i} part {j}: the code of {i}-{j} is {i * 100 + j}. " * 6
                            for j in range(4))
        (folder / f"f{i:02d}.md").write_text(f"# File {i}\n\n{paras}\n")
    proc = rag.popen("rag", "add", "kill9", "-c", "kill9")
    assert proc.stderr is not None
    added = 0
    deadline = time.monotonic() + 120
    while added < 2 and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        added += line.startswith("added ")
    assert added >= 2
    status = json.loads((rag.home / "run" / "daemon.json").read_text())
    os.kill(int(status["pid"]), signal.SIGKILL)  # no cleanup of any kind
    proc.wait(timeout=60)
    data = json.loads(rag("rag", "show", "kill9", "--json").stdout)  # a new daemon
    done = data["files"]
    assert 2 <= len(done) < 12 and all(f["chunks"] > 0 for f in done)
    res = rag("rag", "add", "kill9", "-c", "kill9", timeout=600)
    assert res.returncode == 0, res.stderr
    final = json.loads(rag("rag", "show", "kill9", "--json").stdout)
    assert len(final["files"]) == 12
    _assert_table_matches_manifest(rag.home, "kill9")
