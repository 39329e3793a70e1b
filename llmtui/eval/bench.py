"""`llm bench`: the same measurements for every backend, through the daemon.

For each model: unload it, then one cold request (its load time), then ``runs`` warm
requests with the same prompt, greedy, a fixed number of new tokens. Prompt and decode
speeds and time to first token come from the daemon's own stats (Ollama's fields); peak RSS
is the worker process's high-water mark (``VmHWM``), read while it is loaded.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from llmtui.errors import InvalidInput

PROMPT = ("Write a short story about a lighthouse keeper who finds a message in a bottle. "
          "Describe the sea, the weather and the keeper's thoughts in some detail, and end "
          "with what the message says.")
BACKENDS = {"llama.cpp": "gguf", "llamacpp": "gguf", "gguf": "gguf", "onnx": "onnx",
            "onnxruntime": "onnx", "openvino": "openvino"}


def peak_rss(pid: int | None) -> int | None:
    """A process's peak resident set (Linux VmHWM), else its current RSS."""
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except Exception:
        return None


def variants(store: Any, models: list[str], backends: list[str] | None) -> list[str]:
    """The models to measure: each one given, or with --backend its siblings converted to
    those formats (``NAME:TAG-onnx`` / ``NAME:TAG-openvino``, as `llm convert` names them)."""
    from llmtui.models.names import ModelName

    if not backends:
        for model in models:
            store.get(model)  # a typo fails before anything runs
        return models
    wanted = []
    for b in backends:
        fmt = BACKENDS.get(b.lower())
        if fmt is None:
            raise InvalidInput(f"unknown backend '{b}'", hint="use llama.cpp, onnx or openvino")
        wanted.append(fmt)
    out: list[str] = []
    for model in models:
        base = store.get(model)
        name = ModelName.parse(base.name)
        for fmt in wanted:
            if base.format == fmt:
                out.append(base.name)
                continue
            sibling = f"{name.name}:{name.tag}-{fmt}" if name.tag != "latest" \
                else f"{name.name}:{fmt}"
            if not store.exists(ModelName.parse(sibling)):
                raise InvalidInput(f"no {fmt} version of {base.name} ({sibling})",
                                   hint=f"make it with: llm convert {base.name} --to {fmt}")
            out.append(sibling)
    return out


def _rate(count: Any, ns: Any) -> float | None:
    return float(count) / (float(ns) / 1e9) if count and ns else None


def measure(client: Any, model: str, *, runs: int = 3, num_predict: int = 64,
            prompt: str = PROMPT) -> dict[str, Any]:
    """Load time, prompt and decode tokens/s, TTFT and peak RSS of one model."""
    options = {"temperature": 0, "num_predict": num_predict, "seed": 1, "top_k": 1}
    client.unload(model)

    def once() -> dict[str, Any]:
        final: dict[str, Any] = {}
        for part in client.generate(model, prompt, options=options, stream=False):
            final = part
        return final

    cold = once()
    warm = [once() for _ in range(max(1, runs))]
    loaded: dict[str, Any] = next((m for m in client.ps() if m.get("name") == model), {})
    rss = peak_rss(loaded.get("pid"))
    client.unload(model)

    def median(values: list[float | None]) -> float | None:
        vals = [v for v in values if v is not None]
        return statistics.median(vals) if vals else None

    return {
        "model": model,
        "format": None,
        "load_seconds": float(cold.get("load_duration") or 0) / 1e9,
        "prompt_tokens": int(warm[0].get("prompt_eval_count") or 0),
        "prompt_tps": median([_rate(w.get("prompt_eval_count"), w.get("prompt_eval_duration"))
                              for w in warm]),
        "decode_tps": median([_rate(w.get("eval_count"), w.get("eval_duration"))
                              for w in warm]),
        "ttft_seconds": median([float(w.get("first_token_duration") or 0) / 1e9 or None
                                for w in warm]),
        "peak_rss": rss,
        "generated_tokens": int(warm[0].get("eval_count") or 0),
    }


def fastest(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The result with the highest decode speed."""
    timed = [r for r in results if r.get("decode_tps")]
    return max(timed, key=lambda r: r["decode_tps"]) if timed else None
