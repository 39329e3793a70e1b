"""Past one machine, measured on this one: what Ray Serve and llama.cpp's RPC cost.

Prints figures and ratios, never asserts (a person reads them):

  1. Ray Serve, 2 replicas (`llm serve --ray --replicas 2`, a local Ray cluster) vs
     `llm serve` alone, 8 concurrent streaming clients: aggregate tokens/s (ratio), and
     time to first token, warm and idle, added by Ray's proxy and routing (ms). On a
     machine with fewer cores than replicas × threads the replicas compete for the same
     CPU: this is about overhead, not speed-up.
  2. RPC split: single-stream decode tokens/s with the model's layers split over two
     `llm rpc-worker` processes on loopback ÷ the same daemon without them (the cost of
     the network hop: every token crosses both workers).

  python bench/scale.py [--threads N] [--clients 8] [--tokens 64]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.engine import (  # noqa: E402
    COUNTING,
    MODEL,
    Timed,
    free_port,
    stream_daemon,
    wait_http,
)
from bench.run import LLM, setup_home  # noqa: E402


def start(args: list[str], env: dict[str, str], ready: str | None = None,
          log: Path | None = None) -> subprocess.Popen[bytes]:
    out = log.open("wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen([*LLM, *args], env=env, cwd=ROOT, stdout=out, stderr=out,
                            start_new_session=True)
    if ready and log:
        deadline = time.monotonic() + 300
        while ready not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log.read_text(errors="replace")[-2000:])
            time.sleep(0.3)
    return proc


def stop(proc: subprocess.Popen[bytes], grace: float = 60) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def load_test(base: str, clients: int, tokens: int) -> tuple[float, float]:
    """(aggregate tokens/s, median time to first token) of `clients` concurrent streams."""
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        runs: list[Timed] = list(pool.map(
            lambda i: stream_daemon(base, f"{COUNTING} {i},", tokens), range(clients)))
    wall = time.perf_counter() - started
    total = sum(int(t.final.get("eval_count") or len(t.times)) for t in runs)
    return total / wall, statistics.median(t.ttft for t in runs)


def idle_ttft(base: str, n: int = 10) -> float:
    return statistics.median(stream_daemon(base, COUNTING, 2).ttft for _ in range(n))


def ray_vs_serve(env: dict[str, str], tmp: Path, clients: int, tokens: int) -> None:
    # The same number of slots on both sides: each replica has num_parallel, so llm serve
    # alone gets twice as many (otherwise half the clients queue behind the other half).
    slots = int(env.get("LLMTUI_NUM_PARALLEL") or 4)
    port = free_port()
    serve = start(["serve", "--port", str(port)],
                  {**env, "LLMTUI_NUM_PARALLEL": str(2 * slots)})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/")
        load_test(base, clients, 8)  # warm: the model and its slots
        alone_tps, alone_ttft = load_test(base, clients, tokens)
        alone_idle = idle_ttft(base)
    finally:
        stop(serve)
    port = free_port()
    log = tmp / "ray.log"
    started = time.monotonic()
    ray = start(["serve", "--ray", "--replicas", "2", "--port", str(port)], env,
                ready="Ctrl-C stops it", log=log)
    ready = time.monotonic() - started
    base = f"http://127.0.0.1:{port}"
    try:
        replicas: set[str] = set()
        while len(replicas) < 2:  # warm both replicas' models
            load_test(base, clients, 8)
            for _ in range(10):
                r = httpx.get(base + "/api/ps", timeout=30)
                if r.json()["models"]:
                    replicas.add(r.headers["x-llmtui-replica"])
        ray_tps, ray_ttft = load_test(base, clients, tokens)
        ray_idle = idle_ttft(base)
    finally:
        stop(ray)
    print(f"1. Ray Serve, 2 replicas × {slots} slots (local cluster up in {ready:.0f} s) vs "
          f"llm serve alone with {2 * slots} slots, {clients} clients × {tokens} tokens")
    print(f"   aggregate      llm serve {alone_tps:6.1f} tok/s   Ray {ray_tps:6.1f} tok/s   "
          f"ratio {ray_tps / alone_tps:.2f}")
    print(f"   TTFT, {clients} clients  llm serve {alone_ttft * 1000:6.0f} ms      Ray "
          f"{ray_ttft * 1000:6.0f} ms      +{(ray_ttft - alone_ttft) * 1000:.0f} ms")
    print(f"   TTFT, idle     llm serve {alone_idle * 1000:6.1f} ms     Ray "
          f"{ray_idle * 1000:6.1f} ms     +{(ray_idle - alone_idle) * 1000:.1f} ms "
          "(Ray's proxy and router)")


def decode_tps(base: str, tokens: int, runs: int = 3) -> float:
    stream_daemon(base, COUNTING, 8)
    return statistics.median(stream_daemon(base, COUNTING, tokens).tps for _ in range(runs))


def rpc_split(env: dict[str, str], tmp: Path, tokens: int, threads: int) -> None:
    port = free_port()
    serve = start(["serve", "--port", str(port)], env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/")
        local = decode_tps(base, tokens)
    finally:
        stop(serve)
    workers = []
    endpoints = []
    try:
        for k in range(2):
            wport = free_port()
            log = tmp / f"worker{k}.log"
            workers.append(start(["rpc-worker", "--port", str(wport), "--threads",
                                  str(threads)], env, ready="Starting RPC server", log=log))
            endpoints.append(f"127.0.0.1:{wport}")
        port = free_port()
        serve = start(["serve", "--port", str(port), "--rpc", ",".join(endpoints)], env)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(base + "/")
            split = decode_tps(base, tokens)
        finally:
            stop(serve)
    finally:
        for w in workers:
            stop(w, 10)
    print(f"2. RPC split over two loopback rpc-workers: decode {split:.1f} tok/s vs local "
          f"{local:.1f} tok/s   ratio {split / local:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: auto)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--only", choices=["ray", "rpc"])
    args = parser.parse_args()
    home, env = setup_home(args.threads)
    env = {**env, "RAY_USAGE_STATS_ENABLED": "0"}
    tmp = home.parent
    print(f"llmtui scale bench: {os.cpu_count()} CPUs, model {MODEL}", flush=True)
    if args.only in (None, "ray"):
        ray_vs_serve(env, tmp, args.clients, args.tokens)
    if args.only in (None, "rpc"):
        rpc_split(env, tmp, 128, args.threads)


if __name__ == "__main__":
    main()
