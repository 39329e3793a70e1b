"""How soon is the model free again after a client abandons a long non-streamed request?

A daemon on a loopback port gets a non-streamed /api/generate that would run for
minutes (8000 tokens of greedy counting); once the model is working on it the client
hangs up, and a short request is sent at once. Prints the time from the hang-up until
that request's answer, and the same short request's time on an idle model for scale.
Target: under 1 s. Run: `python bench/abandon.py [--runs 5] [--threads 1]`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import fetch_models  # noqa: E402

LLM = [sys.executable, "-m", "llmtui"]
SMOL = "smollm2:135m"
LONG = {"model": SMOL, "prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "raw": True, "stream": False,
        "options": {"temperature": 0, "repeat_penalty": 1.0, "num_predict": 8000,
                    "num_ctx": 8192}}
SHORT = {"model": SMOL, "prompt": "Hi", "stream": False,
         "options": {"num_predict": 3, "num_ctx": 8192}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0,
                    help="num_thread for the model (0: automatic; on a busy machine, 1 keeps "
                         "llama.cpp's spinning threads from starving each other)")
    args = ap.parse_args()
    for body in (LONG, SHORT):
        if args.threads:
            body["options"]["num_thread"] = args.threads
    cache = fetch_models.cache_dir()
    fetch_models.fetch("smollm2-135m.gguf", fetch_models.MODELS["smollm2-135m.gguf"], cache)
    home = Path(tempfile.mkdtemp(prefix="llmtui-bench-")) / "h"
    env = {**os.environ, "LLMTUI_HOME": str(home), "LLMTUI_IDLE_TIMEOUT": "600"}
    subprocess.run([*LLM, "import", str(cache / "smollm2-135m.gguf"), "--name", SMOL,
                    "--link"], env=env, check=True, capture_output=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    daemon = subprocess.Popen([*LLM, "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                httpx.get(url + "/", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        httpx.post(url + "/api/generate", json=SHORT, timeout=120)  # load and warm up
        idle = []
        for _ in range(args.runs):
            started = time.perf_counter()
            httpx.post(url + "/api/generate", json=SHORT, timeout=120).raise_for_status()
            idle.append(time.perf_counter() - started)
        after = []
        body = json.dumps(LONG).encode()
        for _ in range(args.runs):
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Content-Type: application/json\r\nContent-Length: "
                          + str(len(body)).encode() + b"\r\n\r\n" + body)
                while not httpx.get(url + "/api/x/status", timeout=30).json()["busy"]:
                    time.sleep(0.05)
                time.sleep(1.0)  # well into the long generation
            started = time.perf_counter()  # the client has hung up
            httpx.post(url + "/api/generate", json=SHORT, timeout=600).raise_for_status()
            after.append(time.perf_counter() - started)
        a, i = statistics.median(after), statistics.median(idle)
        print(f"short request on an idle model:       median {i:.3f} s")
        print(f"short request right after a hang-up:  median {a:.3f} s  (max {max(after):.3f} s, "
              f"{args.runs} runs; target < 1 s)")
        print(f"ratio after hang-up / idle:           {a / i:.2f}")
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)


if __name__ == "__main__":
    main()
