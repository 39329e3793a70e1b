"""A model split over two `llm rpc-worker` boxes (network namespaces) through the daemon:
the same greedy text as a local run, `llm ps` naming the devices, and a worker killed in
the middle of a reply: a clear error, and the daemon keeps serving."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import ollama
import pytest

from tests.api.conftest import TcpDaemon
from tests.conftest import LLM, ROOT, import_models, one_line_error
from tests.scale.conftest import Worker, Workers, free_port

SMOL = "smollm2:135m"
GREEDY = {"temperature": 0, "repeat_penalty": 1.0, "num_predict": 32}
PROMPT = "The three primary colors are"
N_LAYER = 30  # SmolLM2-135M's blocks


def greedy(client: ollama.Client) -> str:
    return client.generate(model=SMOL, prompt=PROMPT, raw=True, options=GREEDY).response


@pytest.fixture(scope="module")
def local_text(tmp_path_factory: pytest.TempPathFactory, smollm: Path) -> str:
    home = tmp_path_factory.mktemp("local") / "home"
    import_models(home, smollm)
    with TcpDaemon(home) as daemon:
        return greedy(ollama.Client(host=daemon.url, timeout=120))


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory, smollm: Path,
          rpc_workers: Workers) -> Iterator[TcpDaemon]:
    """`llm serve --rpc` over both workers."""
    home = tmp_path_factory.mktemp("split") / "home"
    import_models(home, smollm)
    with TcpDaemon(home, "--rpc", rpc_workers.endpoints) as daemon:
        yield daemon


def test_split_model_gives_the_local_greedy_text(split: TcpDaemon, local_text: str,
                                                 rpc_workers: Workers) -> None:
    client = ollama.Client(host=split.url, timeout=120)
    assert greedy(client) == local_text
    assert len(local_text) > 20
    # Both workers really hold layers: each served a client connection.
    for w in rpc_workers.items:
        log = w.log.read_text(errors="replace")
        assert "Accepted client connection" in log
        if rpc_workers.isolated:  # a network address, allowed by --insecure, with a warning
            assert "WARNING: llama.cpp's RPC protocol has no authentication" in log


def test_ps_shows_which_devices_hold_the_model(split: TcpDaemon,
                                               rpc_workers: Workers) -> None:
    env = {**os.environ, "LLMTUI_HOME": str(split.home), "NO_COLOR": "1"}
    ollama.Client(host=split.url, timeout=120).generate(model=SMOL, prompt="hi",
                                                         options={"num_predict": 1})
    out = subprocess.run([*LLM, "ps", "--json"], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    devices = json.loads(out)[0]["devices"]
    remote = [d for d in devices if d["kind"] == "rpc"]
    assert [d["endpoint"] for d in remote] == [w.endpoint for w in rpc_workers.items]
    assert all(d["layers"] > 0 for d in remote)
    assert sum(d["layers"] for d in devices) == N_LAYER
    assert any(d.get("output") for d in remote)  # the output layer is offloaded too
    cpu = [d for d in devices if d["kind"] == "cpu"]
    assert cpu and cpu[0]["input"] and cpu[0]["layers"] == 0  # embeddings stay here
    table = subprocess.run([*LLM, "ps"], env=env, cwd=ROOT, capture_output=True, text=True,
                           timeout=60, check=True).stdout
    row = table.splitlines()[1].split("\t")
    for d in remote:
        assert f"{d['endpoint']} ({d['layers']} layers)" in row[2]


def test_a_worker_killed_mid_reply_is_a_clear_error_and_the_daemon_keeps_serving(
        split: TcpDaemon, rpc_workers: Workers, local_text: str) -> None:
    client = ollama.Client(host=split.url, timeout=120)
    greedy(client)  # loaded on both workers
    victim = rpc_workers.items[1]
    got: list[str] = []
    failure: list[BaseException] = []

    def stream() -> None:
        try:
            for part in client.generate(model=SMOL, prompt="Write a long story about a cat.",
                                        stream=True, options={"num_predict": 400}):
                got.append(part.response)
        except BaseException as exc:
            failure.append(exc)

    reader = threading.Thread(target=stream)
    reader.start()
    deadline = time.monotonic() + 60
    while len(got) < 3 and time.monotonic() < deadline and reader.is_alive():
        time.sleep(0.02)
    assert len(got) >= 3, failure
    victim.kill()
    reader.join(60)
    assert not reader.is_alive()
    assert failure and isinstance(failure[0], ollama.ResponseError), (got, failure)
    assert "worker" in str(failure[0]) and "reloaded on the next request" in str(failure[0])

    # The daemon keeps serving: listing works, and the next request names the lost box.
    assert SMOL in {m.model for m in client.list().models}
    with pytest.raises(ollama.ResponseError) as lost:
        greedy(client)
    assert lost.value.status_code == 502
    assert f"cannot reach the RPC server {victim.endpoint}" in str(lost.value)
    env = {**os.environ, "LLMTUI_HOME": str(split.home), "NO_COLOR": "1"}
    cli = subprocess.run([*LLM, "run", "hi", "-m", SMOL], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 20, cli.stderr
    assert victim.endpoint in one_line_error(cli.stderr)

    victim.start()  # the box comes back: the model loads over both again
    assert greedy(client) == local_text


def test_layer_plan_matches_llama_cpp_and_mem_steers_it(tmp_path: Path, smollm: Path) -> None:
    """llm ps's layer counts are llama.cpp's own placement (its debug log says which
    device holds each layer's KV cache); a worker offering less memory gets fewer."""
    workers = [Worker("127.0.0.1", free_port(), tmp_path / "a", mem="1GB"),
               Worker("127.0.0.1", free_port(), tmp_path / "b")]
    script = (
        "import json, sys\n"
        "from llmtui.backends.llamacpp import LlamaCppBackend\n"
        "b = LlamaCppBackend()\n"
        "info = b.load(sys.argv[1], {'rpc_servers': sys.argv[2], 'num_ctx': 256,"
        " 'num_parallel': 1})\n"
        "print(json.dumps(info['devices']))\n")
    try:
        for w in workers:
            w.start()
        proc = subprocess.run(
            [sys.executable, "-c", script, str(smollm), ",".join(w.endpoint for w in workers)],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
            env={**os.environ, "LLMTUI_DEBUG": "1", "LLMTUI_HOME": str(tmp_path / "h")})
    finally:
        for w in workers:
            w.stop()
    assert proc.returncode == 0, proc.stderr[-2000:]
    devices = {d["name"]: d for d in json.loads(proc.stdout.splitlines()[-1])}
    import re

    actual: dict[str, int] = {}
    for dev in re.findall(r"llama_kv_cache: layer +\d+: dev = (\w+)", proc.stderr):
        actual[dev] = actual.get(dev, 0) + 1
    assert actual == {name: d["layers"] for name, d in devices.items() if d["layers"]}
    assert devices["RPC0"]["memory_free"] == 10**9
    assert 0 < devices["RPC0"]["layers"] < devices["RPC1"]["layers"]
    assert "1.0 GB offered" in workers[0].log.read_text()
