"""Summaries of input longer than the context: summarize chunks, then the summaries."""

from __future__ import annotations

import re
import sys
from typing import Any

from llmtui.cli.common import GenOptions, stream_reply

REPLY_RESERVE = 512  # tokens kept free for each partial summary (at most a quarter of ctx)
PROMPT_OVERHEAD = 160  # the template and instruction around the text


def context_length(client: Any, opts: GenOptions) -> int:
    """The context the model is (or will be) loaded with."""
    if opts.options.get("num_ctx"):
        return int(opts.options["num_ctx"])
    for item in client.ps():
        if item["name"] == opts.model and not item.get("embedding"):
            return int(item.get("context_length") or 4096)
    client.load(opts.model, keep_alive=opts.keep_alive)
    for item in client.ps():
        if item["name"] == opts.model and not item.get("embedding"):
            return int(item.get("context_length") or 4096)
    return 4096


def split_text(text: str, max_chars: int) -> list[str]:
    """Chunks of at most max_chars, cut at paragraph, then line, then sentence breaks."""
    chunks: list[str] = []
    current = ""
    for para in re.split(r"\n\s*\n", text):
        pieces = [para] if len(para) <= max_chars else _cut(para, max_chars)
        for piece in pieces:
            if current and len(current) + len(piece) + 2 > max_chars:
                chunks.append(current)
                current = ""
            current = f"{current}\n\n{piece}" if current else piece
    if current.strip():
        chunks.append(current)
    return chunks


def _cut(text: str, max_chars: int) -> list[str]:
    out: list[str] = []
    rest = text
    while len(rest) > max_chars:
        window = rest[:max_chars]
        cut = max(window.rfind("\n"), window.rfind(". "), window.rfind(" "))
        cut = cut + 1 if cut > max_chars // 2 else max_chars
        out.append(rest[:cut])
        rest = rest[cut:]
    if rest:
        out.append(rest)
    return out


def map_reduce(client: Any, opts: GenOptions, text: str,
               instruction: str) -> tuple[str, dict[str, Any]]:
    """One call when the text fits; otherwise map over chunks and reduce (recursively)."""
    ctx = context_length(client, opts)
    reserve = min(REPLY_RESERVE, ctx // 4)
    budget = max(128, ctx - reserve - PROMPT_OVERHEAD)
    n_tokens = len(client.tokenize(opts.model, text))
    if n_tokens <= budget:
        return stream_reply(client, opts, messages=[
            {"role": "system", "content": instruction}, {"role": "user", "content": text}])
    chars_per_token = max(1.0, len(text) / max(1, n_tokens))
    chunks = split_text(text, int(budget * chars_per_token * 0.9))
    partial_opts = GenOptions(model=opts.model, options={**opts.options, "num_predict": min(
        int(opts.options.get("num_predict") or reserve), reserve)},
        keep_alive=opts.keep_alive)
    part_instruction = ("Summarize this part of a longer document in a short paragraph, "
                        "keeping names, numbers and conclusions. Output only the summary.")
    summaries: list[str] = []
    progress = _Progress(len(chunks))
    try:
        for chunk in chunks:
            summary, _ = stream_reply(client, partial_opts, echo=False, messages=[
                {"role": "system", "content": part_instruction},
                {"role": "user", "content": chunk}])
            summaries.append(summary.strip())
            progress.advance()
    finally:
        progress.close()
    return map_reduce(client, opts, "\n\n".join(summaries), instruction)


class _Progress:
    """A progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, total: int) -> None:
        self.bar: Any = None
        self.task: Any = None
        if sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            from llmtui.cli.output import stderr_console

            self.bar = Progress(TextColumn("summarizing chunks"), BarColumn(),
                                MofNCompleteColumn(), console=stderr_console(), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("map", total=total)

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
