"""Engine benchmarks against llama.cpp's own tools, built from the same vendored llama.cpp
as the installed llama-cpp-python (bench/build_tools.sh), measured in one run.

Prints ratios, never asserts (a person reads the targets):

  1. single-stream decode: daemon /api/generate streaming over HTTP ÷ llama-server
     /completion streaming over HTTP (same model, threads, greedy)          target >= 1.00
     (the daemon as configured, paced by stream_interval, and each token sent alone)
  2. aggregate decode with 4 and 8 streams ÷ one stream, next to llama-batched-bench's
     same ratio                                          target >= 0.9 of llama.cpp's ratio
  3. time to first token, idle and with 4 streams running       target p95 < 4 × idle
  4. warm time to first token added by the daemon over raw llama-cpp-python, with and
     without a seed                                                   target <= 10 ms both

Run with `make bench` (which builds the tools once) or
`python bench/engine.py --tools DIR`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import LLM, setup_home  # noqa: E402
from tests import fetch_models  # noqa: E402

COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,"
MODEL_FILE = "smollm2-135m.gguf"
MODEL = "smollm2:135m"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


class Timed:
    """Token arrival times of one streamed reply."""

    def __init__(self) -> None:
        self.final: dict[str, Any] = {}  # the last line (done), with the daemon's counts
        self.start = time.perf_counter()
        self.times: list[float] = []

    @property
    def ttft(self) -> float:
        return self.times[0] - self.start if self.times else float("nan")

    @property
    def tps(self) -> float:
        """Decode rate from the first token to the last: tokens counted by the daemon's
        eval_count where there is one (a line can carry several tokens: paced streams,
        kept guesses), else one per line (llama-server)."""
        t = self.times
        if len(t) < 2 or t[-1] <= t[0]:
            return 0.0
        tokens = int(self.final.get("eval_count") or 0) or len(t)
        return (tokens - 1) / (t[-1] - t[0])


#: One connection kept per thread, as real clients (the ollama and openai packages) keep
#: theirs: a new httpx client per request costs about 20 ms of set-up on this machine,
#: which is the client's, not the daemon's.
_CLIENTS = threading.local()


def _client() -> httpx.Client:
    if getattr(_CLIENTS, "client", None) is None:
        _CLIENTS.client = httpx.Client(timeout=600)
    return _CLIENTS.client


def stream_daemon(base: str, prompt: str, n: int, **extra: Any) -> Timed:
    # Speculation off unless asked: llama-server and llama-batched-bench run without it.
    # The stream is paced as configured (stream_interval, 50ms by default) unless asked.
    opts = {"temperature": 0, "repeat_penalty": 1.0, "num_predict": n, "draft": "none",
            **extra}
    timed = Timed()
    with _client().stream("POST", f"{base}/api/generate",
                          json={"model": MODEL, "prompt": prompt, "raw": True,
                                "options": opts, "keep_alive": -1}) as r:
        for line in r.iter_lines():
            data = json.loads(line)
            if data.get("response"):
                timed.times.append(time.perf_counter())
            if data.get("done"):
                timed.final = data
    return timed


def stream_server(base: str, prompt: str, n: int) -> Timed:
    timed = Timed()
    body = {"prompt": prompt, "n_predict": n, "temperature": 0, "repeat_penalty": 1.0,
            "stream": True, "cache_prompt": True}
    # (a fresh connection each time: llama-server closes a streamed one; the decode rate
    # is measured between tokens, so the set-up does not count)
    with httpx.stream("POST", f"{base}/completion", json=body, timeout=600) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and '"content"' in line:
                data = json.loads(line[6:])
                if data.get("content"):
                    timed.times.append(time.perf_counter())
    return timed


def single_stream(daemon: str, server: str, pairs: int, n: int) -> float:
    stream_daemon(daemon, COUNTING, 8)
    stream_daemon(daemon, COUNTING, 8, stream_interval=0)
    stream_server(server, COUNTING, 8)
    ours, each, theirs = [], [], []
    for i in range(pairs):
        order = (0, 1, 2) if i % 2 == 0 else (2, 1, 0)
        for which in order:
            if which == 0:
                ours.append(stream_daemon(daemon, COUNTING, n).tps)
            elif which == 1:
                each.append(stream_daemon(daemon, COUNTING, n, stream_interval=0).tps)
            else:
                theirs.append(stream_server(server, COUNTING, n).tps)
    ratio = statistics.median(o / t for o, t in zip(ours, theirs, strict=True))
    ratio0 = statistics.median(o / t for o, t in zip(each, theirs, strict=True))
    print(f"1. single-stream decode  llmtui {statistics.median(ours):.1f} tok/s  "
          f"llama-server {statistics.median(theirs):.1f} tok/s  ratio {ratio:.3f} "
          f"({pairs} alternating rounds of {n} tokens, no speculation, stream_interval "
          "default)   target >= 1.00")
    print(f"   each token sent alone (stream_interval 0, as llama-server does)  llmtui "
          f"{statistics.median(each):.1f} tok/s  ratio {ratio0:.3f}")
    # The default (prompt lookup on): tokens over the stream's own wall time.
    looked = [stream_daemon(daemon, COUNTING, n, draft="lookup").tps for _ in range(pairs)]
    print(f"   with prompt lookup (the default)  llmtui {statistics.median(looked):.1f} tok/s"
          f" = {statistics.median(looked) / statistics.median(theirs):.2f} × llama-server")
    return statistics.median(ours)


def aggregate(daemon: str, streams: int, n: int) -> float:
    """Tokens per second over the window where every stream is decoding."""
    results: list[Timed] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        # each token on its own line, so that the tokens inside the window can be counted
        t = stream_daemon(daemon, f"{i}: {COUNTING}", n, stream_interval=0)
        with lock:
            results.append(t)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lo = max(r.times[0] for r in results)
    hi = min(r.times[-1] for r in results)
    count = sum(1 for r in results for x in r.times if lo < x <= hi)
    return count / (hi - lo) if hi > lo else float("nan")


def batched_bench(tools: Path, model: Path, threads: int, n: int) -> dict[int, float]:
    out = subprocess.run(
        [str(tools / "bin" / "llama-batched-bench"), "-m", str(model), "-c", "16384",
         "-b", "512", "-ub", "512", "-npp", "16", "-ntg", str(n), "-npl", "1,4,8",
         "-t", str(threads)], capture_output=True, text=True, check=True)
    rates: dict[int, float] = {}
    for line in out.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 10 and re.fullmatch(r"\d+", cells[2] or ""):
            rates[int(cells[2])] = float(cells[7])  # B, S_TG t/s
    return rates


def ttft_under_load(daemon: str, samples: int) -> None:
    def probe(i: int) -> float:
        # A new prompt each time (nothing cached), one the model answers (no EOS first).
        return stream_daemon(daemon, f"Story {i} ({time.time()}): Once upon a time, in a "
                             "small village by the sea, there lived", 2).ttft

    idle = sorted(probe(i) for i in range(samples))
    stop = threading.Event()

    def noise(i: int) -> None:
        while not stop.is_set():
            stream_daemon(daemon, f"noise {i} {COUNTING}", 200)

    workers = [threading.Thread(target=noise, args=(i,)) for i in range(4)]
    for w in workers:
        w.start()
    time.sleep(2.0)
    loaded = sorted(probe(100 + i) for i in range(samples))
    stop.set()
    for w in workers:
        w.join()

    def p95(x: list[float]) -> float:
        return x[min(len(x) - 1, round(0.95 * (len(x) - 1)))]

    idle_med = statistics.median(idle)
    print(f"3. time to first token  idle median {idle_med * 1000:.0f} ms  with 4 streams "
          f"running p95 {p95(loaded) * 1000:.0f} ms = {p95(loaded) / idle_med:.2f} × idle "
          f"({samples} probes each)   target < 4 ×")


def warm_ttft(daemon: str, model: Path, threads: int, reps: int) -> None:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(model), n_ctx=4096, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    prompt = "Once upon a time, in a small village by the sea, there lived"
    toks = llm.tokenize(prompt.encode(), add_bos=True, special=True)

    def raw_once(seed: int | None) -> float:
        start = time.perf_counter()
        for chunk in llm.create_completion(prompt=toks, max_tokens=2, temperature=0.0,
                                           top_k=1, seed=seed, stream=True):
            if chunk["choices"][0]["text"]:
                return time.perf_counter() - start
        return float("nan")

    for seed in (None, 7):
        extra = {"seed": seed} if seed is not None else {}
        raw_once(seed)
        stream_daemon(daemon, prompt, 2, **extra)
        raw = [raw_once(seed) for _ in range(reps)]
        ours = [stream_daemon(daemon, prompt, 2, **extra).ttft for _ in range(reps)]
        added = (statistics.median(ours) - statistics.median(raw)) * 1000
        label = "with a seed" if seed is not None else "no seed"
        print(f"4. warm time to first token ({label})  raw {statistics.median(raw) * 1000:.1f}"
              f" ms  daemon {statistics.median(ours) * 1000:.1f} ms  added {added:+.1f} ms   "
              "target <= 10 ms")
    llm.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tools", type=Path, required=True, help="llama.cpp tools folder")
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args()
    _home, env = setup_home(args.threads)
    model = fetch_models.cache_dir() / MODEL_FILE
    port = free_port()
    for key, value in (("host", f"127.0.0.1:{port}"), ("num_parallel", "8")):
        subprocess.run([*LLM, "config", "set", key, value], env=env, check=True,
                       capture_output=True)
    daemon = f"http://127.0.0.1:{port}"
    sport = free_port()
    server = subprocess.Popen(
        [str(args.tools / "bin" / "llama-server"), "-m", str(model), "-t", str(args.threads),
         "-c", "4096", "-np", "1", "--host", "127.0.0.1", "--port", str(sport)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        subprocess.run([*LLM, "load", MODEL, "--keep-alive", "-1"], env=env, check=True,
                       capture_output=True)
        wait_http(f"{daemon}/api/version")
        wait_http(f"http://127.0.0.1:{sport}/health")
        one = single_stream(daemon, f"http://127.0.0.1:{sport}", args.pairs, args.tokens)
        server.terminate()
        server.wait(30)
        ref = batched_bench(args.tools, model, args.threads, args.tokens)
        single = statistics.median(aggregate(daemon, 1, args.tokens) for _ in range(3))
        for k in (4, 8):
            agg = aggregate(daemon, k, args.tokens)
            theirs = ref.get(k, float("nan")) / ref.get(1, float("nan"))
            ours = agg / single
            print(f"2. {k} streams  llmtui {agg:.1f} tok/s aggregate = {ours:.2f} × one stream "
                  f"({single:.1f});  llama-batched-bench {ref.get(k, float('nan')):.1f} / "
                  f"{ref.get(1, float('nan')):.1f} = {theirs:.2f} ×;  ours / theirs "
                  f"{ours / theirs:.2f}   target >= 0.9")
        ttft_under_load(daemon, 10)
        warm_ttft(daemon, model, args.threads, 10)
        del one
    finally:
        if server.poll() is None:
            server.kill()
        subprocess.run([*LLM, "daemon", "stop"], env=env, capture_output=True)


if __name__ == "__main__":
    main()
