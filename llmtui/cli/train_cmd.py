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
    json_out: bool = typer.Option(False, "--json", help="Progress and the result as JSON "
                                  "lines on stdout."),
) -> None:
    """Fine-tune a model on your data with LoRA (PEFT) into a new model that every part of
    llmtui runs (llama.cpp applies the adapter at load).

    Ctrl-C saves a checkpoint; run the same command with --resume to go on."""
    from llmtui.config import Settings
    from llmtui.train.finetune import Interrupted, TuneSettings
    from llmtui.train.finetune import finetune as run

    settings = Settings.load()
    tty = sys.stderr.isatty() and not json_out

    def on_event(event: dict[str, Any]) -> None:
        if json_out:
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()
        if "warning" in event:
            info(f"warning: {event['warning']}")
        elif "step" in event:
            line = (f"step {event['step']}/{event['steps']}  loss {event['loss']:.4f}  "
                    f"{event['tokens_per_s']:.0f} tok/s  eta {event['eta_s']:.0f}s")
            if tty:
                sys.stderr.write("\r\033[K" + line)
                sys.stderr.flush()
            elif not json_out:
                info(line)
        elif "status" in event and not json_out:
            if tty:
                sys.stderr.write("\r\033[K")
            info(str(event["status"]))

    s = TuneSettings(steps=steps, epochs=epochs, rank=rank, alpha=alpha, lr=lr, batch=batch,
                     max_len=max_len, held_out=held_out, seed=seed)
    try:
        made = run(settings.store(), settings.paths.cache_dir, base, data, name, s,
                   resume=resume, merge=merge, on_event=on_event)
    except Interrupted as exc:
        if tty:
            sys.stderr.write("\n")
        info(f"interrupted at step {exc.step} of {exc.steps}; the checkpoint is saved: "
             "run the same command with --resume to go on")
        raise
    if tty:
        sys.stderr.write("\r\033[K")
    tuned = made.tuned or {}
    if json_out:
        sys.stdout.write(json.dumps({"done": True, "model": made.name, "size": made.size,
                                     "tuned": tuned}) + "\n")
        return
    info(f"fine-tuned {made.name} ({human_size(made.size)}): loss on the "
         f"{tuned.get('evaluated_on')} {tuned.get('loss_before')} -> "
         f"{tuned.get('loss_after')}. Try: llm run {made.name} \"...\"")


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)
