"""`llm finetune`: LoRA fine-tuning on your own data into a new model."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from llmtui.cli.output import human_size, info


def finetune(
    base: str = typer.Argument(..., help="The model to start from (a GGUF in the store)."),
    data: str = typer.Option(..., "--data", "-d", help="JSONL (chat \"messages\", "
                             "\"prompt\"/\"completion\" or \"text\" per line), or a text/"
                             "Markdown file or folder."),
    name: str | None = typer.Option(None, "--name", "-n",
                                    help="Install as this name (default: BASE-tuned)."),
    steps: int | None = typer.Option(None, "--steps", help="Training steps (default: "
                                     "--epochs over the data)."),
    epochs: float = typer.Option(3.0, "--epochs", help="Passes over the data."),
    rank: int = typer.Option(16, "--rank", "-r", help="LoRA rank."),
    alpha: float = typer.Option(32.0, "--alpha", help="LoRA alpha (scale = alpha/rank)."),
    lr: float = typer.Option(1e-3, "--lr", help="Learning rate."),
    batch: int = typer.Option(4, "--batch", help="Examples per step."),
    max_len: int = typer.Option(256, "--max-len", help="Tokens per example; longer ones "
                                "are cut, with a warning."),
    held_out: float = typer.Option(0.1, "--held-out", help="Part of the data kept aside to "
                                   "measure the loss (0: none)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the split, the order and the "
                             "initial adapter."),
    merge: str | None = typer.Option(None, "--merge", help="Write one merged GGUF of this "
                                     "type (q8_0, f16, Q4_K_M, ...) instead of base + "
                                     "adapter."),
    resume: bool = typer.Option(False, "--resume", help="Go on from the checkpoint that "
                                "Ctrl-C saved."),
    device: str = typer.Option("auto", "--device", help="Where to train: auto (a CUDA "
                               "GPU when torch sees one, else the CPU), cpu, cuda, cuda:N, "
                               "mps."),
    json_out: bool = typer.Option(False, "--json", help="Progress and the result as JSON "
                                  "lines on stdout."),
) -> None:
    """Fine-tune a model on your data with LoRA (PEFT) into a new model that every part of
    llmtui runs (llama.cpp applies the adapter at load).

    Ctrl-C saves a checkpoint; run the same command with --resume to go on."""
    from llmtui.config import Settings
    from llmtui.train.finetune import TuneSettings
    from llmtui.train.finetune import finetune as run

    settings = Settings.load()
    tty = sys.stderr.isatty() and not json_out
    progress = _Progress(json_out, tty)
    s = TuneSettings(steps=steps, epochs=epochs, rank=rank, alpha=alpha, lr=lr, batch=batch,
                     max_len=max_len, held_out=held_out, seed=seed, device=device)
    with progress:
        made = run(settings.store(), settings.paths.cache_dir, base, data, name, s,
                   resume=resume, merge=merge, on_event=progress)
    tuned = made.tuned or {}
    if json_out:
        sys.stdout.write(json.dumps({"done": True, "model": made.name, "size": made.size,
                                     "tuned": tuned}) + "\n")
        return
    info(f"fine-tuned {made.name} ({human_size(made.size)}): loss on the "
         f"{tuned.get('evaluated_on')} {tuned.get('loss_before')} -> "
         f"{tuned.get('loss_after')}. Try: llm run {made.name} \"...\"")


class _Progress:
    """Progress on stderr: a Rich bar with step, loss, tokens/s and ETA on a terminal,
    one plain line per step otherwise; JSON lines on stdout with --json."""

    def __init__(self, json_out: bool, tty: bool) -> None:
        self.json_out, self.tty = json_out, tty
        self.bar: Any = None
        self.task: Any = None

    def __call__(self, event: dict[str, Any]) -> None:
        if self.json_out:
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()
        if "warning" in event:
            self._say(f"warning: {event['warning']}")
        elif "step" in event:
            if self.tty:
                self._advance(event)
            elif not self.json_out:
                info(f"step {event['step']}/{event['steps']}  loss {event['loss']:.4f}  "
                     f"{event['tokens_per_s']:.0f} tok/s  eta {event['eta_s']:.0f}s")
        elif "status" in event and not self.json_out:
            self._say(str(event["status"]))

    def _say(self, text: str) -> None:
        if self.bar is not None and self.bar.finished:
            self.close()  # the finished bar stays where it is, the rest goes below it
        if self.bar is not None:  # above the bar, which stays at the bottom
            self.bar.console.print(f"llm: {text}", markup=False, highlight=False)
        else:
            info(text)

    def _advance(self, event: dict[str, Any]) -> None:
        fields = {"loss": f"{event['loss']:.4f}", "tps": f"{event['tokens_per_s']:.0f}",
                  "eta": _clock(float(event["eta_s"]))}
        if self.bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(
                TextColumn("step"), MofNCompleteColumn(), BarColumn(),
                TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"),
                TextColumn("eta {task.fields[eta]}"),
                console=Console(stderr=True), transient=False)
            self.bar.start()
            self.task = self.bar.add_task("train", total=event["steps"],
                                          completed=event["step"] - 1, **fields)
        self.bar.update(self.task, completed=event["step"], **fields)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        """The bar ends first, so what follows is printed below it; Ctrl-C says how to go
        on (the exception still propagates)."""
        from llmtui.train.checkpoint import Interrupted

        self.close()
        if isinstance(exc, Interrupted):
            info(f"interrupted at step {exc.step} of {exc.steps}; the checkpoint is saved: "
                 "run the same command with --resume to go on")


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds + 0.5), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def train(
    data: str = typer.Option(..., "--data", "-d", help="The corpus: a text/Markdown file "
                             "or folder, or JSONL (\"text\", \"messages\", "
                             "\"prompt\"/\"completion\")."),
    name: str = typer.Option(..., "--name", "-n", help="Install as this name."),
    size: str = typer.Option("tiny", "--size", help="tiny (~1M parameters, minutes on a "
                             "CPU) or small (~20M)."),
    steps: int = typer.Option(300, "--steps", help="Training steps."),
    lr: float = typer.Option(3e-3, "--lr", help="Peak learning rate (warm-up, then cosine)."),
    batch: int = typer.Option(8, "--batch", help="Windows per step."),
    seq: int = typer.Option(128, "--seq", help="Tokens per window."),
    seed: int = typer.Option(0, "--seed", help="Seed for the weights and the windows."),
    export: list[str] = typer.Option([], "--export", help="Also write the model elsewhere: "
                                     "'hf DIR' (a Hugging Face folder)."),
    resume: bool = typer.Option(False, "--resume", help="Go on from the checkpoint that "
                                "Ctrl-C saved."),
    device: str = typer.Option("auto", "--device", help="Where to train: auto (a CUDA "
                               "GPU when torch sees one, else the CPU), cpu, cuda, cuda:N, "
                               "mps."),
    json_out: bool = typer.Option(False, "--json", help="Progress and the result as JSON "
                                  "lines on stdout."),
) -> None:
    """Train a small Llama-architecture model from scratch on a text corpus (its own BPE
    tokenizer included) and install it: `llm run NAME` uses it at once.

    Ctrl-C saves a checkpoint; run the same command with --resume to go on."""
    from pathlib import Path

    from llmtui.config import Settings
    from llmtui.errors import InvalidInput
    from llmtui.train.scratch import TrainSettings
    from llmtui.train.scratch import train as run

    export_hf = None
    for item in export:
        kind, _, where = item.partition(" ")
        if kind != "hf" or not where.strip():
            raise InvalidInput(f"--export takes 'hf DIR', not '{item}' (ONNX: `llm convert "
                               "NAME --to onnx` afterwards)")
        export_hf = Path(where.strip()).expanduser()
    settings = Settings.load()
    tty = sys.stderr.isatty() and not json_out
    progress = _Progress(json_out, tty)
    s = TrainSettings(size=size, steps=steps, lr=lr, batch=batch, seq=seq, seed=seed,
                      device=device)
    with progress:
        made = run(settings.store(), settings.paths.cache_dir, data, name, s, resume=resume,
                   export_hf=export_hf, on_event=progress)
    tuned = made.tuned or {}
    if json_out:
        sys.stdout.write(json.dumps({"done": True, "model": made.name, "size": made.size,
                                     "trained": tuned}) + "\n")
        return
    info(f"trained {made.name} ({tuned.get('parameters', 0) / 1e6:.1f}M parameters, "
         f"{human_size(made.size)}): held-out perplexity {tuned.get('perplexity_before')} -> "
         f"{tuned.get('perplexity_after')}. Try: llm run {made.name} \"...\"")


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)
    app.command("train")(train)
