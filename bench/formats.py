"""Formats benchmark: the same SmolLM2 weights on llama.cpp (Q4_1 and Q4_0), ONNX Runtime
int4 and OpenVINO int4, measured in one run through one daemon, as ratios to llama.cpp.

Prints figures; never asserts. Run: `python bench/formats.py [--runs 3] [--tokens 64]`.

  1. conversion: `llm convert` to ONNX and to OpenVINO (wall time), `llm quantize` to Q4_0
  2. for each model, `llm bench`'s measurement (llmtui.eval.bench.measure): load time,
     prompt and decode tokens/s, time to first token and the worker's peak RSS
  3. each as a ratio to llama.cpp Q4_1 (the catalog's file) from the same run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import fetch_models  # noqa: E402

LLM = [sys.executable, "-m", "llmtui"]


def llm(home: Path, *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([*LLM, *args], env={**os.environ, "LLMTUI_HOME": str(home)}, check=True,
                   capture_output=True, text=True, timeout=1800)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    cache = fetch_models.cache_dir()
    smollm = fetch_models.fetch("smollm2-135m.gguf", fetch_models.MODELS["smollm2-135m.gguf"],
                                cache)
    with tempfile.TemporaryDirectory(prefix="bench-formats-") as tmp:
        home = Path(tmp) / "home"
        env = {**os.environ, "LLMTUI_HOME": str(home)}
        llm(home, "import", str(smollm), "--name", "smollm2:135m", "--link")
        timings = {
            "quantize_q4_0_s": llm(home, "quantize", "smollm2:135m", "--type", "Q4_0"),
            "convert_onnx_s": llm(home, "convert", "smollm2:135m", "--to", "onnx"),
            "convert_openvino_s": llm(home, "convert", "smollm2:135m", "--to", "openvino"),
        }
        from llmtui.config import Settings
        from llmtui.daemon.client import Client
        from llmtui.eval import bench

        os.environ["LLMTUI_HOME"] = str(home)
        models = ["smollm2:135m", "smollm2:135m-q4_0", "smollm2:135m-onnx",
                  "smollm2:135m-openvino"]
        results = []
        try:
            client = Client(settings=Settings.load({"LLMTUI_HOME": str(home)}))
            for model in models:
                results.append(bench.measure(client, model, runs=args.runs,
                                             num_predict=args.tokens))
        finally:
            subprocess.run([*LLM, "daemon", "stop"], env=env, capture_output=True, timeout=60)
    base = results[0]

    def ratio(r: dict, key: str) -> float | None:
        return r[key] / base[key] if r.get(key) and base.get(key) else None

    table = []
    for r in results:
        table.append({**r, "decode_x": ratio(r, "decode_tps"), "prompt_x": ratio(r, "prompt_tps"),
                      "ttft_x": ratio(r, "ttft_seconds"), "load_x": ratio(r, "load_seconds"),
                      "rss_x": ratio(r, "peak_rss")})
    if args.json:
        print(json.dumps({"timings": timings, "results": table}, indent=2))
        return
    print(f"conversion: ONNX int4 {timings['convert_onnx_s']:.0f} s, OpenVINO int4 "
          f"{timings['convert_openvino_s']:.0f} s, llama.cpp Q4_0 "
          f"{timings['quantize_q4_0_s']:.0f} s (wall, CLI included)")
    print(f"{'model':26} {'decode t/s':>10} {'x':>6} {'prompt t/s':>10} {'x':>6} "
          f"{'TTFT ms':>8} {'x':>6} {'load s':>7} {'x':>6} {'RSS MB':>7} {'x':>6}")
    for r in table:
        def f(v: float | None, spec: str) -> str:
            return "-" if v is None else format(v, spec)
        print(f"{r['model']:26} {f(r['decode_tps'], '10.1f')} {f(r['decode_x'], '6.2f')} "
              f"{f(r['prompt_tps'], '10.1f')} {f(r['prompt_x'], '6.2f')} "
              f"{f(r['ttft_seconds'] * 1000 if r['ttft_seconds'] else None, '8.0f')} "
              f"{f(r['ttft_x'], '6.2f')} {f(r['load_seconds'], '7.2f')} {f(r['load_x'], '6.2f')} "
              f"{f(r['peak_rss'] / 1e6 if r['peak_rss'] else None, '7.0f')} "
              f"{f(r['rss_x'], '6.2f')}")
    best = bench.fastest(results[2:])
    if best:
        share = best["decode_tps"] / base["decode_tps"]
        print(f"best non-GGUF decode: {best['model']} at {share:.2f}x llama.cpp Q4_1 "
              "(target: 0.8x)")


if __name__ == "__main__":
    main()
