"""`llm describe`: one line per image, for pipelines such as
``ls *.jpg | xargs llm describe > captions.txt``."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import typer

from llmtui.cli.common import (
    MaxOpt,
    ModelOpt,
    SeedOpt,
    TempOpt,
    build_options,
    read_images,
    stream_reply,
    vision_model,
)
from llmtui.errors import InvalidInput

PROMPT = "Describe this image in one sentence."


def describe(
    files: list[str] = typer.Argument(None, help="Image files ('-': stdin; default: stdin "
                                      "when an image is piped in).", show_default=False),
    prompt: str = typer.Option(PROMPT, "--prompt", "-p", help="What to ask about each image."),
    model: str | None = ModelOpt, temperature: float | None = TempOpt,
    seed: int | None = SeedOpt, max_tokens: int | None = MaxOpt,
    json_out: bool = typer.Option(False, "--json", help="One JSON object per image: "
                                  "{file, text}."),
) -> None:
    """Describe images with a vision model: one line per image, FILE<TAB>DESCRIPTION."""
    names = list(files or [])
    if not names:
        if sys.stdin is None or sys.stdin.isatty():
            raise InvalidInput("no images: give image files, or pipe one in")
        names = ["-"]
    images = read_images(names)  # every file is checked before any work starts
    opts = build_options(model or vision_model(), None, temperature, seed,
                         max_tokens if max_tokens is not None else 80, None, None, False,
                         False, False)
    from llmtui.cli.session import connect

    with connect() as client:
        for name, data in zip(names, images, strict=True):
            text, _ = stream_reply(client, opts, prompt=prompt, images=[data], echo=False)
            line = " ".join(text.split())  # one line, whatever the model wrote
            label = "stdin" if name == "-" else name
            out: Any = {"file": label, "text": line}
            try:
                sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n" if json_out
                                 else f"{label}\t{line}\n")
                sys.stdout.flush()
            except BrokenPipeError:  # the reader went away (`| head -1`): end quietly
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return


def register(app: typer.Typer) -> None:
    app.command("describe")(describe)
