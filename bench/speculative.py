"""Speculative decoding and the disk prompt cache, measured in one run (ratios, no asserts).

  1. decode tokens/s with prompt lookup ÷ without, greedy, on copy-heavy tasks (quoting a
     document, answering from a RAG context)                          target >= 1.5
     and on free-form chat, where guesses are rarely kept               target >= 0.98
  2. the same with a draft model (the test model drafting for itself: the mechanism's cost,
     since a same-size draft cannot be faster), and llama-server's own speculative decoding
     (--spec-type ngram-simple; --model-draft) from the same llama.cpp, side by side
  3. time to first token for a ~4,000-token prompt restored from the disk cache after an
     unload ÷ evaluating it                                             target <= 0.1

`python bench/speculative.py --tools DIR` (make bench runs it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.engine import MODEL, MODEL_FILE, free_port, wait_http  # noqa: E402
from bench.run import LLM, setup_home  # noqa: E402
from tests import fetch_models  # noqa: E402

DOC = ("The harbour of Velmar was built in 1742 by the merchant guild. Its stone pier is four "
       "hundred metres long and shelters forty fishing boats. Every spring the town holds a "
       "festival of lanterns on the pier, and the boats are painted blue and white. The "
       "lighthouse at the end of the pier was rebuilt in 1893 after a storm destroyed the "
       "old tower. Today the harbour is used by fishermen, ferries to the islands and, in "
       "summer, by sailing boats from across the coast. ")
TASKS = {
    "quote": f"Document:\n{DOC * 2}\nQuote the document exactly, sentence by sentence:\n",
    "rag": (f"Use the context to answer.\nContext:\n[1] {DOC}\n[2] {DOC}\nQuestion: When was "
            "the lighthouse rebuilt and why? Answer with the sentence from the context:\n"),
    "chat": "Write a short story about a robot who learns to paint.\n",
}


def daemon_gen(base: str, prompt: str, n: int, draft: str) -> dict[str, Any]:
    r = httpx.post(f"{base}/api/generate", timeout=600, json={
        "model": MODEL, "prompt": prompt, "raw": True, "stream": False, "keep_alive": -1,
        "options": {"temperature": 0, "repeat_penalty": 1.0, "num_predict": n,
                    "draft": draft}})
    r.raise_for_status()
    return dict(r.json())


def tps(final: dict[str, Any]) -> float:
    return final["eval_count"] / (final["eval_duration"] / 1e9) if final["eval_duration"] else 0


def server_gen(base: str, prompt: str, n: int) -> float:
    r = httpx.post(f"{base}/completion", timeout=600, json={
        "prompt": prompt, "n_predict": n, "temperature": 0, "repeat_penalty": 1.0,
        "cache_prompt": False})
    r.raise_for_status()
    return float(r.json()["timings"]["predicted_per_second"])


def compare(base: str, n: int, pairs: int, draft: str) -> dict[str, tuple[float, float, str]]:
    out = {}
    for name, prompt in TASKS.items():
        daemon_gen(base, prompt, 8, "none")
        with_d, without = [], []
        kept = ""
        for i in range(pairs):
            for which in ((0, 1) if i % 2 == 0 else (1, 0)):
                if which == 0:
                    final = daemon_gen(base, prompt, n, draft)
                    with_d.append(tps(final))
                    if final.get("draft_count"):
                        kept = f"{final['draft_accepted_count']}/{final['draft_count']} kept"
                else:
                    without.append(tps(daemon_gen(base, prompt, n, "none")))
        ratio = statistics.median(a / b for a, b in zip(with_d, without, strict=True))
        out[name] = (ratio, statistics.median(with_d), kept)
    return out


def server_compare(tools: Path, model: Path, threads: int, n: int, pairs: int,
                   extra: list[str]) -> dict[str, float]:
    def start(args: list[str]) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        proc = subprocess.Popen([str(tools / "bin" / "llama-server"), "-m", str(model), "-t",
                                 str(threads), "-c", "4096", "-np", "1", "--host", "127.0.0.1",
                                 "--port", str(port), *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{port}/health")
        return proc, f"http://127.0.0.1:{port}"

    ratios = {}
    plain, plain_url = start([])
    spec, spec_url = start(extra)
    try:
        for name, prompt in TASKS.items():
            server_gen(plain_url, prompt, 8)
            server_gen(spec_url, prompt, 8)
            a = [server_gen(spec_url, prompt, n) for _ in range(pairs)]
            b = [server_gen(plain_url, prompt, n) for _ in range(pairs)]
            ratios[name] = statistics.median(a) / statistics.median(b)
    finally:
        for p in (plain, spec):
            p.kill()
    return ratios


def restore_ttft(base: str, env: dict[str, str]) -> None:
    long_doc = (DOC * 40)  # about 4,000 tokens
    prompt = f"Document:\n{long_doc}\nIn one sentence, what is the document about?\n"

    def ttft() -> tuple[float, dict[str, Any]]:
        start = time.perf_counter()
        first = None
        final: dict[str, Any] = {}
        with httpx.stream("POST", f"{base}/api/generate", timeout=600, json={
                "model": MODEL, "prompt": prompt, "raw": True, "keep_alive": -1,
                "options": {"temperature": 0, "num_predict": 4, "num_ctx": 8192}}) as r:
            import json

            for line in r.iter_lines():
                data = json.loads(line)
                if first is None and data.get("response"):
                    first = time.perf_counter() - start
                if data.get("done"):
                    final = data
        return first or float("nan"), final

    subprocess.run([*LLM, "cache", "clear"], env=env, capture_output=True)
    evaluated, f1 = ttft()
    httpx.post(f"{base}/api/x/unload", json={"model": MODEL}, timeout=120)
    restored, f2 = ttft()
    print(f"3. {f1.get('prompt_eval_count')}-token prompt: evaluated {evaluated * 1000:.0f} ms, "
          f"restored from disk after an unload {restored * 1000:.0f} ms "
          f"({f2.get('prompt_eval_cached_count', 0)} tokens cached) = "
          f"{restored / evaluated:.3f} ×   target <= 0.1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tools", type=Path, required=True)
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args()
    _home, env = setup_home(args.threads)
    port = free_port()
    subprocess.run([*LLM, "config", "set", "host", f"127.0.0.1:{port}"], env=env, check=True,
                   capture_output=True)
    base = f"http://127.0.0.1:{port}"
    model = fetch_models.cache_dir() / MODEL_FILE
    try:
        subprocess.run([*LLM, "load", MODEL, "--keep-alive", "-1"], env=env, check=True,
                       capture_output=True)
        wait_http(f"{base}/api/version")
        ours = compare(base, args.tokens, args.pairs, "lookup")
        theirs = server_compare(args.tools, model, args.threads, args.tokens, args.pairs,
                                ["--spec-type", "ngram-simple"])
        for name, (ratio, rate, kept) in ours.items():
            target = ">= 0.98" if name == "chat" else ">= 1.5"
            print(f"1. prompt lookup, {name}: llmtui {ratio:.2f} × ({rate:.1f} tok/s, {kept}); "
                  f"llama-server ngram-simple {theirs[name]:.2f} ×   target {target}")
        ours_d = compare(base, args.tokens, max(2, args.pairs // 2), MODEL)
        theirs_d = server_compare(args.tools, model, args.threads, args.tokens,
                                  max(2, args.pairs // 2), ["--model-draft", str(model)])
        for name, (ratio, rate, kept) in ours_d.items():
            print(f"2. draft model (itself), {name}: llmtui {ratio:.2f} × ({rate:.1f} tok/s, "
                  f"{kept}); llama-server --model-draft {theirs_d[name]:.2f} ×")
        restore_ttft(base, env)
    finally:
        subprocess.run([*LLM, "daemon", "stop"], env=env, capture_output=True)


if __name__ == "__main__":
    main()
