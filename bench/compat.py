"""Benchmarks for the Ollama-compatibility layer (issue 15). Prints figures, never asserts.

  1. splitting a streamed reply into thinking and answer: cost per chunk, as a share of
     the time a token takes to decode (the parser must not slow streaming down)
  2. OpenAI n=4 in one request / four requests one after the other (wall time; 1.0 while
     a model has one slot, lower once the backend decodes slots together)
  3. /api/show with verbose model_info (the whole vocabulary) and without, in ms

Run with `.venv/bin/python bench/compat.py`.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import fetch_models  # noqa: E402
from tests.api.conftest import TcpDaemon  # noqa: E402

LLM = [sys.executable, "-m", "llmtui"]
SMOL = "smollm2:135m"


def bench_parser() -> float:
    """Microseconds per streamed chunk through the thinking parser and tool watcher."""
    from llmtui.api.ollama import ToolStream
    from llmtui.api.reply import ReplyStream, ThinkPlan

    words = ("Let me think about this carefully and step by step. " * 40).split(" ")
    chunks = [w + " " for w in words] + ["</think>", "\n\n"] + [w + " " for w in words]
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(20):
            reply = ReplyStream(ThinkPlan(think=True, tags=("<think>", "</think>"),
                                          inside=True), ToolStream(None))
            for c in chunks:
                reply.feed({"text": c})
            reply.finish()
        runs.append((time.perf_counter() - start) / (20 * len(chunks)))
    return statistics.median(runs) * 1e6


def main() -> None:
    per_chunk = bench_parser()
    print(f"1. thinking split: {per_chunk:.1f} µs per chunk "
          f"({per_chunk / 10_000:.4f} of a 10 ms token)")
    cache = fetch_models.cache_dir()
    fetch_models.fetch("smollm2-135m.gguf", fetch_models.MODELS["smollm2-135m.gguf"], cache)
    home = Path(tempfile.mkdtemp(prefix="llmtui-bench-compat-")) / "h"
    env = {**os.environ, "LLMTUI_HOME": str(home)}
    subprocess.run([*LLM, "import", str(cache / "smollm2-135m.gguf"), "--name", SMOL,
                    "--link"], env=env, check=True, capture_output=True)
    import httpx

    with TcpDaemon(home) as daemon:
        url = daemon.url
        body = {"model": SMOL, "messages": [{"role": "user", "content": "Tell a story."}],
                "max_tokens": 32, "temperature": 0.8, "seed": 1}
        httpx.post(url + "/v1/chat/completions", json=body, timeout=120)  # load it
        ratios = []
        for _ in range(3):
            start = time.perf_counter()
            httpx.post(url + "/v1/chat/completions", json={**body, "n": 4}, timeout=300)
            together = time.perf_counter() - start
            start = time.perf_counter()
            for i in range(4):
                httpx.post(url + "/v1/chat/completions", json={**body, "seed": 1 + i},
                           timeout=120)
            apart = time.perf_counter() - start
            ratios.append(together / apart)
        print(f"2. n=4 / four requests: {statistics.median(ratios):.2f}")
        for verbose in (False, True):
            times = []
            for _ in range(5):
                start = time.perf_counter()
                httpx.post(url + "/api/show", json={"model": SMOL, "verbose": verbose},
                           timeout=60)
                times.append(time.perf_counter() - start)
            print(f"3. /api/show verbose={str(verbose).lower()}: "
                  f"{statistics.median(times) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
