"""`llm serve --ray` on a local Ray cluster whose head this test starts: two replicas
behind Ray Serve's proxy, 8 concurrent Ollama clients spread over both, the OpenAI client,
and a replica killed mid-stream (its clients get a clear error; later requests succeed;
Ray replaces it). Bounded: about a minute and a half on two cores."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from tests.conftest import LLM, ROOT, import_models
from tests.scale.conftest import free_port

pytest.importorskip("ray")

pytestmark = pytest.mark.slow

SMOL = "smollm2:135m"
LOST = ("replica serving this request stopped mid-stream",  # while streaming
        "replica serving this request stopped before answering")  # not started yet


def _wait_for(path: Path, text: str, proc: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(path.read_text(errors="replace")[-3000:])
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {text!r}:\n" +
                       path.read_text(errors="replace")[-3000:])


class RayHead:
    """`ray start --head --block` in a session of its own, on loopback, in a temp dir."""

    def __init__(self, tmp: Path) -> None:
        # Short: Ray's Unix sockets live under it (a socket path has ~107 bytes).
        self.dir = Path(tempfile.mkdtemp(prefix="llr", dir="/tmp"))
        self.port = free_port()
        self.log = tmp / "ray-head.log"
        self.env = {**os.environ, "HOME": str(tmp),  # Ray's auth token file goes there
                    "RAY_USAGE_STATS_ENABLED": "0",
                    "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH":
                        "llmtui.scale.ray_serve:proxy_middlewares"}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RayHead:
        ray = Path(sys.executable).parent / "ray"
        cmd = [str(ray), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
               "--port", str(self.port), "--num-cpus", "4", "--include-dashboard", "false",
               "--dashboard-port", str(free_port()), "--disable-usage-stats",
               "--ray-client-server-port", str(free_port()),
               "--dashboard-agent-listen-port", str(free_port()), "--temp-dir", str(self.dir)]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=out, env=self.env,
                                         start_new_session=True)
        _wait_for(self.log, "block forever", self.proc, 120)
        return self

    def stop(self) -> None:
        """SIGTERM drains for 30 s; after a short grace, end the session we started."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


class RayServe:
    """`llm serve --ray --address HEAD --replicas 2` in the foreground."""

    def __init__(self, head: RayHead, home: Path, tmp: Path) -> None:
        self.head, self.home = head, home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "llm-serve-ray.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RayServe:
        env = {**self.head.env, "LLMTUI_HOME": str(self.home), "LLMTUI_IDLE_TIMEOUT": "600"}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*LLM, "serve", "--ray", "--address", f"127.0.0.1:{self.head.port}",
                 "--replicas", "2", "--port", str(self.port)],
                cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True)
        _wait_for(self.log, "Ctrl-C stops it", self.proc, 180)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def ray_serve(tmp_path_factory: pytest.TempPathFactory, smollm: Path) -> Iterator[RayServe]:
    tmp = tmp_path_factory.mktemp("ray")
    home = tmp / "home"
    import_models(home, smollm)
    head = RayHead(tmp)
    serve = RayServe(head, home, tmp)
    started = time.monotonic()
    try:
        head.start()
        serve.start()
        print(f"\nRay head and 2 replicas ready in {time.monotonic() - started:.0f} s")
        yield serve
    finally:
        serve.stop()
        head.stop()
    assert serve.proc is not None and serve.proc.returncode == 0, \
        serve.log.read_text(errors="replace")[-3000:]
    assert "stopping" in serve.log.read_text(errors="replace")


def replicas(url: str, want: int = 2, seconds: float = 60) -> dict[str, dict]:
    """Each replica's /api/x/status and /api/ps, told apart by the x-llmtui-replica
    header that every response carries (Ray's proxy picks the replica)."""
    seen: dict[str, dict] = {}
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=30) as http:
        while time.monotonic() < deadline:
            r = http.get("/api/x/status")
            seen.setdefault(r.headers["x-llmtui-replica"], {})["pid"] = r.json()["pid"]
            p = http.get("/api/ps")
            seen.setdefault(p.headers["x-llmtui-replica"], {})["ps"] = p.json()["models"]
            if len([s for s in seen.values() if "pid" in s and "ps" in s]) >= want:
                break
    return {k: v for k, v in seen.items() if "pid" in v and "ps" in v}


def test_eight_ollama_clients_are_spread_over_both_replicas(ray_serve: RayServe) -> None:
    client = ollama.Client(host=ray_serve.url, timeout=120)

    def one(i: int) -> str:
        parts = client.generate(model=SMOL, prompt=f"Count from {i} to {i + 5}:",
                                stream=True, options={"num_predict": 16})
        return "".join(p.response for p in parts)

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(one, range(8)))
    print(f"\n8 concurrent streams through Ray Serve: {time.monotonic() - started:.1f} s")
    assert all(texts), texts
    seen = replicas(ray_serve.url)
    assert len(seen) == 2, seen
    for replica in seen.values():  # each replica loaded the model for its share
        assert [m["name"] for m in replica["ps"]] == [SMOL]
        assert replica["ps"][0]["slots"] >= 1
    pids = {r["ps"][0]["pid"] for r in seen.values()}
    assert len(pids) == 2  # two engines, two model worker processes


def test_the_openai_client_through_ray(ray_serve: RayServe) -> None:
    ai = openai.OpenAI(base_url=ray_serve.url + "/v1", api_key="unused", max_retries=0,
                       timeout=120)
    r = ai.chat.completions.create(model=SMOL, max_tokens=8,
                                   messages=[{"role": "user", "content": "Say hi"}])
    assert r.choices[0].message.content
    chunks = list(ai.chat.completions.create(
        model=SMOL, max_tokens=8, stream=True, messages=[{"role": "user", "content": "Hi"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert SMOL in [m.id for m in ai.models.list().data]


def test_a_replica_killed_mid_stream(ray_serve: RayServe) -> None:
    import psutil

    # Both replicas hold the model (the spread test loads it; this makes the test stand
    # alone), so each has a model worker whose exit the test can check.
    warm = ollama.Client(host=ray_serve.url, timeout=120)
    before: dict[str, dict] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: warm.generate(model=SMOL, prompt="hi",
                                                  options={"num_predict": 2}), range(4)))
        before = replicas(ray_serve.url)
        if len(before) == 2 and all(s["ps"] for s in before.values()):
            break
    assert len(before) == 2 and all(s["ps"] for s in before.values()), before

    # Each stream learns its replica from the response header (Ray's proxy picks it) and
    # says when its first part has come: the victim is a replica known to be mid-stream,
    # not one a poll happened to catch busy (a fast machine ends the streams between polls).
    served_by: list[str | None] = [None] * 4
    streaming = [threading.Event() for _ in range(4)]
    results: list[object] = [None] * 4

    def stream(i: int) -> None:
        def note(response: httpx.Response) -> None:
            served_by[i] = response.headers.get("x-llmtui-replica")

        client = ollama.Client(host=ray_serve.url, timeout=120,
                               event_hooks={"response": [note]})
        try:
            text = []
            for part in client.generate(model=SMOL, prompt=f"Tell a long story number {i}.",
                                        stream=True, options={"num_predict": 400}):
                text.append(part.response)
                streaming[i].set()
            results[i] = "".join(text)
        except Exception as exc:
            results[i] = exc
        finally:
            streaming[i].set()

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:
        for i in range(4):
            if streaming[i].wait(0.05) and results[i] is None and served_by[i] in before:
                rid = served_by[i]
                victim = (rid, before[rid]["pid"], before[rid]["ps"][0]["pid"])
                break
    assert victim is not None, (served_by, results)
    os.kill(victim[1], signal.SIGKILL)
    for t in threads:
        t.join(120)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors, results  # the killed replica's clients ...
    for err in errors:  # ... get the server's own error, in the stream or as a 503
        assert isinstance(err, ollama.ResponseError), repr(err)
        assert any(text in str(err) for text in LOST), repr(err)
        assert err.status_code in (-1, 503)  # -1: an error line in a 200 stream
    assert all(isinstance(r, str | BaseException) for r in results)
    # The replica's model worker went with it (its stdin closed): no orphan holds memory.
    deadline = time.monotonic() + 20
    while psutil.pid_exists(victim[2]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not psutil.pid_exists(victim[2])
    # Later requests succeed, and Ray Serve starts a new replica in its place.
    for _ in range(4):
        assert warm.generate(model=SMOL, prompt="hi", options={"num_predict": 4}).response
    deadline = time.monotonic() + 120
    now: dict[str, dict] = {}
    while time.monotonic() < deadline:
        now = replicas(ray_serve.url, seconds=10)
        if len(now) == 2 and victim[0] not in now:
            break
        time.sleep(1)
    assert len(now) == 2 and victim[0] not in now and set(now) != set(before), now
