"""Benchmarks: llmtui against raw llama-cpp-python, measured in the same run.

Prints ratios, never asserts: the targets are judged by a person reading the output.
Run with `make bench` (or `python bench/run.py --pairs 10`).

  1. decode tokens/s through the daemon / raw llama-cpp-python in-process
     (same model, threads, greedy settings; alternating pairs)        target >= 1.0
  2. warm time to first token added by the daemon over raw             target <= 15 ms
  3. `echo text | llm summarize`: warm call against the first, cold call
  4. `llm --help` (cold: no help cache yet; warm: from it) and model-name completion
     wall times, with CPU time (user + sys) beside: on a busy machine wall time
     waits for a core                                            targets < 150 ms, < 50 ms
  5. two models generating at once: aggregate tokens/s / the same run one after the other
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import fetch_models  # noqa: E402

PROMPT = "Once upon a time, in a small village by the sea, there lived"
LLM = [sys.executable, "-m", "llmtui"]


def setup_home(threads: int) -> tuple[Path, dict[str, str]]:
    cache = fetch_models.cache_dir()
    for name, spec in fetch_models.MODELS.items():
        fetch_models.fetch(name, spec, cache)
    home = Path(tempfile.mkdtemp(prefix="llmtui-bench-")) / "h"
    env = {**os.environ, "LLMTUI_HOME": str(home), "LLMTUI_IDLE_TIMEOUT": "600"}
    for file, name in (("smollm2-135m.gguf", "smollm2:135m"), ("gemma3-270m.gguf", "gemma3:270m")):
        subprocess.run([*LLM, "import", str(cache / file), "--name", name, "--link"], env=env,
                       check=True, capture_output=True)
    subprocess.run([*LLM, "config", "set", "threads", str(threads)], env=env, check=True,
                   capture_output=True)
    os.environ.update(env)
    return home, env


def raw_run(llm: object, n: int) -> tuple[float, float, int]:
    """(time to first token, decode tokens/s, tokens) for raw llama-cpp-python streaming."""
    tokens = llm.tokenize(PROMPT.encode(), add_bos=True, special=True)  # type: ignore[attr-defined]
    start = time.perf_counter()
    first = last = 0.0
    count = 0
    for chunk in llm.create_completion(prompt=tokens, max_tokens=n, temperature=0.0,  # type: ignore[attr-defined]
                                       top_k=1, seed=1, stream=True):
        now = time.perf_counter()
        if chunk["choices"][0]["text"]:
            count += 1
            if count == 1:
                first = now
            last = now
    return first - start, (count - 1) / (last - first) if count > 1 else 0.0, count


def daemon_run(client: object, model: str, n: int,
               draft: str | None = None) -> tuple[float, float, int]:
    start = time.perf_counter()
    first = last = 0.0
    lines = 0
    count = 0
    # The same sampler settings as raw_run (llama-cpp-python's defaults there).
    opts: dict[str, object] = {"temperature": 0, "top_k": 1, "seed": 1, "num_predict": n,
                               "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.0}
    if draft is not None:
        opts["draft"] = draft
    for part in client.generate(model, PROMPT, raw=True, keep_alive="-1",  # type: ignore[attr-defined]
                                options=opts):
        now = time.perf_counter()
        if part.get("response"):
            lines += 1
            if lines == 1:
                first = now
            last = now
        if part.get("done"):
            # tokens from the daemon's own count: kept speculative guesses arrive several
            # to a line, so counting lines would undercount them
            count = int(part.get("eval_count") or lines)
    rate = (count - 1) / (last - first) if count > 1 and last > first else 0.0
    return first - start, rate, count


def bench_decode(client: object, cache: Path, pairs: int, n: int, threads: int) -> None:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(cache / "smollm2-135m.gguf"), n_ctx=4096,
                          n_threads=threads, n_threads_batch=threads, verbose=False)
    client.load("smollm2:135m", keep_alive="-1")  # type: ignore[attr-defined]
    raw_run(llm, 8)
    daemon_run(client, "smollm2:135m", 8)  # warm both
    raw_tps, dmn_tps, raw_ttft, dmn_ttft = [], [], [], []
    plain_tps: list[float] = []  # the daemon without speculative decoding
    for i in range(pairs):
        order = (0, 1) if i % 2 == 0 else (1, 0)  # alternate who goes first
        for which in order:
            if which == 0:
                t, tps, _ = raw_run(llm, n)
                raw_ttft.append(t)
                raw_tps.append(tps)
            else:
                t, tps, _ = daemon_run(client, "smollm2:135m", n)
                dmn_ttft.append(t)
                dmn_tps.append(tps)
                plain_tps.append(daemon_run(client, "smollm2:135m", n, draft="none")[1])
    llm.close()
    ratios = [d / r for d, r in zip(dmn_tps, raw_tps, strict=True)]
    plain = [d / r for d, r in zip(plain_tps, raw_tps, strict=True)]
    print(f"1. decode tokens/s  raw {statistics.median(raw_tps):.1f}  daemon "
          f"{statistics.median(dmn_tps):.1f}  ratio median {statistics.median(ratios):.3f} "
          f"(mean {statistics.mean(ratios):.3f}, {pairs} alternating pairs of {n} tokens, "
          f"{threads} threads; the default, prompt lookup on)   target >= 1.0")
    print(f"   without speculation  daemon {statistics.median(plain_tps):.1f}  ratio median "
          f"{statistics.median(plain):.3f}")
    added = (statistics.median(dmn_ttft) - statistics.median(raw_ttft)) * 1000
    print(f"2. warm time to first token  raw {statistics.median(raw_ttft) * 1000:.1f} ms  "
          f"daemon {statistics.median(dmn_ttft) * 1000:.1f} ms  added {added:.1f} ms   "
          "target <= 15 ms")


def timed(cmd: list[str], env: dict[str, str], stdin: str | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, input=stdin, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - start


def bench_summarize(env: dict[str, str]) -> None:
    text = (ROOT / "README.md").read_text()
    subprocess.run([*LLM, "daemon", "stop"], env=env, capture_output=True)
    cmd = [*LLM, "summarize", "-n", "48", "--temperature", "0"]
    cold = timed(cmd, env, text)
    warm = statistics.median(timed(cmd, env, text) for _ in range(3))
    print(f"3. `cat README.md | llm summarize -n 48`  cold {cold:.2f} s  warm {warm:.2f} s  "
          f"warm/cold {warm / cold:.2f}")


def timed_cpu(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, user + sys CPU) seconds of one run of a command."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = timed(cmd, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench_startup(env: dict[str, str]) -> None:
    llm_bin = str(Path(sys.executable).with_name("llm"))
    cmd = [llm_bin, "--help"] if Path(llm_bin).exists() else [*LLM, "--help"]
    cache = Path(env["LLMTUI_HOME"]) / "cache"

    def cold() -> tuple[float, float]:
        for old in cache.glob("help-*.txt"):
            old.unlink()
        return timed_cpu(cmd, env)

    colds = [cold() for _ in range(10)]
    warms = [timed_cpu(cmd, env) for _ in range(10)]
    script = ROOT / "completions" / "llm.bash"
    comp = [timed(["bash", "-c", f"source {script}; _llm_models >/dev/null"], env)
            for _ in range(10)]
    base = [timed(["bash", "-c", "true"], env) for _ in range(10)]

    def ms(runs: list[tuple[float, float]], i: int) -> str:
        return f"{statistics.median(r[i] for r in runs) * 1000:.0f}"

    print(f"4. `llm --help` cold {ms(colds, 0)} ms (CPU {ms(colds, 1)} ms), warm "
          f"{ms(warms, 0)} ms (CPU {ms(warms, 1)} ms) (target < 150 ms); "
          f"model-name completion {statistics.median(comp) * 1000:.0f} ms wall, "
          f"{(statistics.median(comp) - statistics.median(base)) * 1000:.1f} ms over an empty "
          "bash (target < 50 ms)")


def bench_parallel(client: object, n: int) -> None:
    models = ["smollm2:135m", "gemma3:270m"]
    for m in models:
        client.load(m, keep_alive="-1")  # type: ignore[attr-defined]
        daemon_run(client, m, 4)
    counts: dict[str, int] = {}

    def run(m: str) -> None:
        counts[m] = daemon_run(client, m, n)[2]

    start = time.perf_counter()
    for m in models:
        run(m)
    serial = time.perf_counter() - start
    serial_tokens = sum(counts.values())
    start = time.perf_counter()
    threads = [threading.Thread(target=run, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    parallel = time.perf_counter() - start
    par_tokens = sum(counts.values())
    ratio = (par_tokens / parallel) / (serial_tokens / serial)
    print(f"5. two models at once  serial {serial_tokens / serial:.1f} tok/s  parallel "
          f"{par_tokens / parallel:.1f} tok/s  ratio {ratio:.2f} (1 thread per model, "
          f"{os.cpu_count()} cores)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--startup", action="store_true", help="Only line 4 (no models needed).")
    args = ap.parse_args()
    if args.startup:
        home = Path(tempfile.mkdtemp(prefix="llmtui-bench-")) / "h"
        (home / "data" / "models" / "manifests").mkdir(parents=True)
        bench_startup({**os.environ, "LLMTUI_HOME": str(home)})
        return
    _home, env = setup_home(args.threads)
    from llmtui.config import Settings
    from llmtui.daemon.client import Client

    client = Client(settings=Settings.load())
    try:
        bench_decode(client, fetch_models.cache_dir(), args.pairs, args.tokens, args.threads)
        bench_summarize(env)
        bench_startup(env)
        subprocess.run([*LLM, "daemon", "stop"], env=env, capture_output=True)
        subprocess.run([*LLM, "config", "set", "threads", "1"], env=env, check=True,
                       capture_output=True)
        client = Client(settings=Settings.load())
        bench_parallel(client, args.tokens)
    finally:
        subprocess.run([*LLM, "daemon", "stop"], env=env, capture_output=True)


if __name__ == "__main__":
    main()
