"""Formats and measuring: convert, quantize, eval perplexity, bench."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from llmtui.cli.output import human_size, info, print_json, print_table

eval_app = typer.Typer(help="Measure a model's quality.", no_args_is_help=True)


def _store() -> Any:
    from llmtui.config import Settings

    return Settings.load().store()


def convert(
    model: str = typer.Argument(..., help="A GGUF model in the store, a Hugging Face folder "
                                "(safetensors + config + tokenizer) or hf://ORG/REPO."),
    to: str = typer.Option(..., "--to", help="onnx, openvino or gguf."),
    precision: str | None = typer.Option(
        None, "--precision", "-p", help="int4 (default), int8, fp16 or fp32; for gguf: "
        "f16 (default), f32, q8_0 or another llama.cpp type (Q4_K_M, ...)."),
    name: str | None = typer.Option(None, "--name", "-n",
                                    help="Install as this name (default: MODEL-TARGET)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Convert a model for another runtime (ONNX Runtime, OpenVINO, llama.cpp) into the store."""
    import time

    from llmtui.cli.progress import PullProgress
    from llmtui.models.convert.run import convert as do_convert

    started = time.perf_counter()
    with PullProgress(quiet=quiet) as progress:
        made = do_convert(_store(), model, to, precision=precision, name=name,
                          on_event=progress)
    if not quiet:
        info(f"converted to {made.name} ({made.format} {made.quantization}, "
             f"{human_size(made.size)}) in {time.perf_counter() - started:.0f}s")


def quantize(
    model: str = typer.Argument(..., help="A GGUF model in the store."),
    qtype: str = typer.Option(..., "--type", "-t", help="Q4_K_M, Q5_K_M, Q8_0, Q4_0, ..."),
    name: str | None = typer.Option(None, "--name", "-n",
                                    help="Install as this name (default: MODEL-TYPE)."),
    imatrix: Path | None = typer.Option(None, "--imatrix",
                                        help="An importance matrix (llama-imatrix's GGUF)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Quantize a GGUF model with llama.cpp's quantizer into a new model."""
    from llmtui.cli.progress import PullProgress
    from llmtui.models.convert.run import quantize as do_quantize

    with PullProgress(quiet=quiet) as progress:
        made = do_quantize(_store(), model, qtype, name=name, imatrix=imatrix,
                           on_event=progress)
    if not quiet:
        info(f"quantized to {made.name} ({made.quantization}, {human_size(made.size)})")


@eval_app.command("perplexity")
def perplexity(
    model: str = typer.Argument(..., help="Any installed text model (GGUF, ONNX, OpenVINO)."),
    file: str | None = typer.Option(None, "--file", "-f",
                                    help="The text to score ('-': stdin). Default: the "
                                    "public-domain text shipped with llmtui."),
    ctx: int | None = typer.Option(None, "--ctx", min=2, help="Window size in tokens "
                                   "(default: min(512, the model's context))."),
    stride: int | None = typer.Option(None, "--stride", min=1,
                                      help="Window step (default: ctx/2)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Perplexity of a model over a text (lower is better), with a sliding window."""
    from llmtui.cli.session import connect
    from llmtui.errors import InvalidInput

    if file == "-":
        text = sys.stdin.read()
    else:
        from llmtui.eval.perplexity import DEFAULT_TEXT

        path = Path(file).expanduser() if file else DEFAULT_TEXT
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InvalidInput(f"no such file: {file}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read {file} as UTF-8 text: {exc}") from None
    if not text.strip():
        raise InvalidInput("the text is empty")
    body: dict[str, Any] = {"model": model, "text": text}
    if ctx is not None:
        body["ctx"] = ctx
    if stride is not None:
        body["stride"] = stride
    result: dict[str, Any] = {}
    tty = sys.stderr.isatty()
    with connect() as client:
        for event in client.stream("/api/x/perplexity", body):
            if event.get("done"):
                result = event
            elif tty and event.get("total"):
                sys.stderr.write(f"\rscoring {event['progress']}/{event['total']} tokens")
                sys.stderr.flush()
    if tty:
        sys.stderr.write("\r\033[K")
    if json_out:
        print_json({"model": model, "perplexity": result.get("perplexity"),
                    "tokens": result.get("tokens"), "nll": result.get("nll")})
        return
    sys.stdout.write(f"{float(result['perplexity']):.4f}\n")
    info(f"{model}: perplexity {float(result['perplexity']):.3f} over "
         f"{result.get('tokens')} tokens")


@eval_app.command("compare")
def compare(
    base: str = typer.Argument(..., help="The model before (e.g. the base of a fine-tune)."),
    tuned: str = typer.Argument(..., help="The model after (e.g. `llm finetune`'s result)."),
    data: str = typer.Option(..., "--data", "-d", help="Held-out examples: the JSONL (or "
                             "text) shapes `llm finetune` takes."),
    samples: int = typer.Option(3, "--samples", min=0, max=50,
                                help="Side-by-side answers to show."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Two models on the same held-out data: perplexity of its text under each (the same
    scorer as `llm eval perplexity`), and their greedy answers side by side."""
    from llmtui.cli.session import connect
    from llmtui.train import data as tdata

    ds = tdata.load(data)
    text = "\n\n".join(tdata.plain_text(r) for r in ds.records)
    result: dict[str, Any] = {"data": ds.source, "records": len(ds.records), "models": {}}
    asked = [q for r in ds.records if (q := r.question()) is not None][:samples]
    with connect() as client:
        for model in (base, tuned):
            score: dict[str, Any] = {}
            for event in client.stream("/api/x/perplexity", {"model": model, "text": text}):
                if event.get("done"):
                    score = event
            answers = []
            for messages, _ in asked:
                reply = client.request("POST", "/api/chat", {
                    "model": model, "messages": messages, "stream": False,
                    "options": {"temperature": 0, "num_predict": 64, "seed": 0}})
                answers.append(str((reply.get("message") or {}).get("content") or "").strip())
            result["models"][model] = {"perplexity": score.get("perplexity"),
                                       "tokens": score.get("tokens"), "answers": answers}
    result["samples"] = [{"question": m[-1]["content"], "expected": want}
                         for m, want in asked]
    if json_out:
        print_json(result)
        return
    print_table(None, ["MODEL", "PERPLEXITY", "TOKENS"],
                [[m, f"{float(r['perplexity']):.3f}", str(r["tokens"])]
                 for m, r in result["models"].items()])
    for i, sample in enumerate(result["samples"]):
        sys.stdout.write(f"\n{sample['question']}\n  expected: {sample['expected']}\n")
        for model, r in result["models"].items():
            sys.stdout.write(f"  {model}: {r['answers'][i]}\n")


def bench(
    models: list[str] = typer.Argument(..., help="Models to compare (any formats)."),
    backend: list[str] | None = typer.Option(
        None, "--backend", "-b", help="Also (only) run each model's conversions for these "
        "backends: llama.cpp, onnx, openvino. Repeat or comma-separate."),
    runs: int = typer.Option(3, "--runs", min=1, max=50, help="Warm runs per model."),
    num_predict: int = typer.Option(64, "--tokens", min=1, max=4096,
                                    help="Tokens to generate per run."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Load time, prompt and decode speed, time to first token and peak RSS, per model."""
    from llmtui.cli.session import connect
    from llmtui.eval import bench as b

    store = _store()
    backends = [x.strip() for item in backend or [] for x in item.split(",") if x.strip()]
    names = b.variants(store, models, backends or None)
    results = []
    with connect() as client:
        for model in names:
            if sys.stderr.isatty():
                info(f"measuring {model}")
            result = b.measure(client, model, runs=runs, num_predict=num_predict)
            result["format"] = store.get(model).format
            results.append(result)
    best = b.fastest(results)
    if json_out:
        print_json({"results": results, "fastest": best["model"] if best else None})
        return

    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    rows = [[r["model"], r["format"], num(r["load_seconds"], ".2f"), num(r["prompt_tps"], ".1f"),
             num(r["decode_tps"], ".1f"),
             num(r["ttft_seconds"] * 1000 if r["ttft_seconds"] else None, ".0f"),
             human_size(r["peak_rss"])] for r in results]
    print_table(None, ["MODEL", "FORMAT", "LOAD S", "PROMPT TOK/S", "DECODE TOK/S", "TTFT MS",
                       "PEAK RSS"], rows)
    if best is not None and len(results) > 1:
        info(f"fastest: {best['model']} ({best['format']}, {best['decode_tps']:.1f} tokens/s)")


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
    app.command("quantize")(quantize)
    app.add_typer(eval_app, name="eval")
    app.command("bench")(bench)
