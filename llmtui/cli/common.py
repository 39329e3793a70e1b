"""What several commands share: generation options, stdin and stdout rules, streaming a reply.

Command modules import from here (and from output.py), never from each other: that keeps
llmtui/cli/ free of import circles and of private names used across modules.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from llmtui.cli.output import info
from llmtui.errors import InvalidInput


@dataclass
class GenOptions:
    """What every generating command accepts."""

    model: str
    system: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    format: Any = None
    json_out: bool = False
    truncate: bool = False
    verbose: bool = False
    keep_alive: str | None = None
    think: bool | str | None = None  # None: the model's default
    hide_thinking: bool = False


def build_options(model: str | None, system: str | None, temperature: float | None,
                  seed: int | None, max_tokens: int | None, fmt: str | None, ctx: int | None,
                  json_out: bool, truncate: bool, verbose: bool) -> GenOptions:
    from llmtui.api.validate import check_options
    from llmtui.config import Settings
    from llmtui.models.names import ModelName

    cfg = Settings.load().config
    opts: dict[str, Any] = {}
    for key in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty"):
        opts[key] = cfg.get(key)
    if cfg.get("seed") is not None and int(cfg.get("seed")) >= 0:
        opts["seed"] = int(cfg.get("seed"))
    if int(cfg.get("max_tokens")) > 0:
        opts["num_predict"] = int(cfg.get("max_tokens"))
    if temperature is not None:
        opts["temperature"] = temperature
    if seed is not None:
        opts["seed"] = seed
    if max_tokens is not None:
        opts["num_predict"] = max_tokens
    if ctx is not None:
        opts["num_ctx"] = ctx
    opts = check_options(opts)  # NaN, negative and huge values fail here, before any work
    name = str(ModelName.parse(model or str(cfg.get("default_model"))))
    return GenOptions(model=name, system=system, options=opts, format=load_format(fmt),
                      json_out=json_out, truncate=truncate, verbose=verbose)


def load_format(fmt: str | None) -> Any:
    """--format json, or a path to a JSON schema file."""
    if fmt is None:
        return None
    if fmt == "json":
        return "json"
    path = Path(fmt)
    if not path.is_file():
        raise InvalidInput(f"--format must be 'json' or a JSON schema file; no file {fmt}")
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{fmt} is not valid JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise InvalidInput(f"{fmt} must hold a JSON object (a schema)")
    return schema


def read_stdin() -> str | None:
    """stdin as text when it is piped; None on a terminal. Binary input is refused."""
    if sys.stdin is None or sys.stdin.isatty():
        return None
    return _text(sys.stdin.buffer.read())


def read_stdin_or_image() -> tuple[str | None, bytes | None]:
    """Piped stdin as (text, None), or (None, bytes) when it is an image (by its magic
    bytes): `cat photo.png | llm run MODEL "describe"`."""
    if sys.stdin is None or sys.stdin.isatty():
        return None, None
    data = sys.stdin.buffer.read()
    from llmtui.media import detect

    if detect(data) is not None:
        return None, data
    return _text(data), None


def read_images(paths: list[str]) -> list[bytes]:
    """The --image files (checked to be images by their magic bytes); '-' is stdin."""
    if paths.count("-") > 1:
        raise InvalidInput("--image - (stdin) can be given only once")
    from llmtui.config import Settings, parse_size
    from llmtui.media import read_image_file

    limit = parse_size(Settings.load().config.get("max_image_size"))
    return [read_image_file(p, max_bytes=limit) for p in paths]


def vision_model() -> str | None:
    """The model for images when none is named: vision_model, else default_model."""
    from llmtui.config import Settings

    value = Settings.load().config.get("vision_model")
    return str(value) if value else None


def _text(data: bytes) -> str:
    if b"\x00" in data:
        raise InvalidInput("stdin contains NUL bytes: binary input is not supported")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"stdin is not valid UTF-8 text (byte {exc.start}); "
                           "is it a binary file?") from None


def compose(stdin: str | None, prompt: str) -> str:
    parts = [p for p in ((stdin or "").strip(), prompt.strip()) if p]
    return "\n\n".join(parts)


class Quiet(Exception):
    """stdout went away (`| head -1`): stop generating and exit quietly."""


def write(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise Quiet() from None


def stream_reply(
    client: Any, opts: GenOptions, *, prompt: str | None = None,
    messages: list[dict[str, Any]] | None = None, echo: bool = True,
    images: list[bytes] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Stream one reply to stdout (unless echo is off); returns (text, final stats).
    ``images`` go with the prompt (a vision model reads them)."""
    kw: dict[str, Any] = {"options": opts.options, "format": opts.format,
                          "truncate": opts.truncate}
    if opts.keep_alive is not None:
        kw["keep_alive"] = opts.keep_alive
    if opts.think is not None:
        kw["think"] = opts.think
    if messages is not None:
        it = client.chat(opts.model, messages, **kw)
        key = "message"
    else:
        it = client.generate(opts.model, prompt or "", system=opts.system,
                             images=images or None, **kw)
        key = "response"
    parts: list[str] = []
    thoughts = Thoughts(echo and not opts.json_out and not opts.hide_thinking)
    final: dict[str, Any] = {}
    try:
        for part in it:
            body = part[key] if key == "message" else part
            thoughts.add(str(body.get("thinking") or ""))
            if part.get("done"):
                final = part
                break
            text = body["content"] if key == "message" else part.get("response", "")
            if text:
                thoughts.end()
            parts.append(text)
            if echo and not opts.json_out:
                write(text)
    finally:
        it.close()  # ends the HTTP stream: the daemon cancels the generation
        thoughts.end()
    if thoughts.text:
        final = {**final, "thinking": thoughts.text}
    text = "".join(parts)
    if echo and not opts.json_out and text and not text.endswith("\n"):
        write("\n")
    if final.get("truncated_tokens"):
        info(f"note: the input was truncated by {final['truncated_tokens']} tokens to fit "
             "the context")
    if final.get("done_reason") == "length" and "num_predict" not in opts.options:
        info("note: the reply stopped because the context is full")
    return text, final


class Thoughts:
    """A thinking model's reasoning, shown on stderr (stdout stays the answer alone), as
    Ollama's CLI frames it: "Thinking..." then the reasoning then "...done thinking."."""

    def __init__(self, show: bool) -> None:
        self.show = show
        self.parts: list[str] = []
        self.open = False
        self.dim = show and sys.stderr.isatty() and not os.environ.get("NO_COLOR")

    def add(self, text: str) -> None:
        if not text:
            return
        self.parts.append(text)
        if self.show:
            if not self.open:
                self.open = True
                self._err("Thinking...\n")
            self._err(text)

    def end(self) -> None:
        if self.open:
            self.open = False
            tail = "" if "".join(self.parts).endswith("\n") else "\n"
            self._err(tail + "...done thinking.\n\n")

    def _err(self, text: str) -> None:
        try:
            sys.stderr.write(f"\x1b[2m{text}\x1b[0m" if self.dim else text)
            sys.stderr.flush()
        except (BrokenPipeError, ValueError):
            self.show = False

    @property
    def text(self) -> str:
        return "".join(self.parts)


def stats_of(final: dict[str, Any]) -> dict[str, Any]:
    eval_ns = final.get("eval_duration") or 0
    count = final.get("eval_count") or 0
    return {
        "total_duration": final.get("total_duration"),
        "load_duration": final.get("load_duration"),
        "prompt_eval_count": final.get("prompt_eval_count"),
        "prompt_eval_duration": final.get("prompt_eval_duration"),
        "eval_count": count, "eval_duration": eval_ns,
        "tokens_per_second": round(count / (eval_ns / 1e9), 2) if eval_ns else None,
        "time_to_first_token": (final.get("first_token_duration") or 0) / 1e9,
        "done_reason": final.get("done_reason"),
        "truncated_tokens": final.get("truncated_tokens", 0),
        "prompt_eval_cached_count": final.get("prompt_eval_cached_count", 0),
        "draft_count": final.get("draft_count", 0),
        "draft_accepted_count": final.get("draft_accepted_count", 0),
    }


def emit_result(opts: GenOptions, text: str, final: dict[str, Any]) -> None:
    if opts.json_out:
        out: dict[str, Any] = {"model": opts.model, "text": text}
        if final.get("thinking"):
            out["thinking"] = final["thinking"]
        write(json.dumps({**out, "stats": stats_of(final)}, ensure_ascii=False) + "\n")
    if opts.verbose:
        s = stats_of(final)
        cached = f" ({s['prompt_eval_cached_count']} cached)" \
            if s["prompt_eval_cached_count"] else ""
        drafts = ""
        if s["draft_count"]:
            drafts = (f" · drafts {s['draft_accepted_count']}/{s['draft_count']} kept "
                      f"({100 * s['draft_accepted_count'] / s['draft_count']:.0f}%)")
        info(f"load {(s['load_duration'] or 0) / 1e9:.2f}s · prompt {s['prompt_eval_count']} "
             f"tokens{cached} · {s['eval_count']} tokens at {s['tokens_per_second'] or 0:.1f}/s"
             f" · first token {s['time_to_first_token'] * 1000:.0f} ms{drafts}")


def run_one(opts: GenOptions, prompt: str | None = None,
            messages: list[dict[str, Any]] | None = None,
            images: list[bytes] | None = None) -> None:
    from llmtui.cli.session import connect

    with connect() as client:
        try:
            text, final = stream_reply(client, opts, prompt=prompt, messages=messages,
                                       images=images)
        except Quiet:
            silence_stdout()
            return
        emit_result(opts, text, final)


def silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def rag_answer(client: Any, collection: str, question: str, *, k: int, model: str | None,
               min_similarity: float | None, options: dict[str, Any] | None = None) -> None:
    """Stream a RAG collection's cited answer to stdout, then the list of sources."""
    body: dict[str, Any] = {"query": question, "k": k, "answer": True}
    if model:
        body["model"] = model
    if min_similarity is not None:
        body["min_similarity"] = min_similarity
    if options:
        body["options"] = options
    it = client.stream(f"/api/x/rag/{collection}/query", body)
    chunks: list[dict[str, Any]] = []
    text = ""
    try:
        for part in it:
            if "chunks" in part:
                chunks = part["chunks"]
            content = (part.get("message") or {}).get("content", "")
            if content:
                text += content
                write(content)
    except Quiet:
        silence_stdout()
        return
    finally:
        it.close()
    try:
        if text and not text.endswith("\n"):
            write("\n")
        if chunks:
            write("\nSources:\n" + "".join(f"  [{i}] {c['citation']}\n"
                                           for i, c in enumerate(chunks, 1)))
    except Quiet:
        silence_stdout()


# -- option declarations the generating commands share -------------------------------------

ModelOpt = typer.Option(None, "--model", "-m", help="Model (default: the default_model setting).")
SystemOpt = typer.Option(None, "--system", "-s", help="System prompt.")
TempOpt = typer.Option(None, "--temperature", "-t", help="Sampling temperature.")
SeedOpt = typer.Option(None, "--seed", help="Sampling seed (same seed, same reply).")
MaxOpt = typer.Option(None, "--max-tokens", "-n", help="Stop after this many tokens.")
FormatOpt = typer.Option(None, "--format", help="'json', or a JSON schema file to follow.")
JsonOpt = typer.Option(False, "--json", help="Print one JSON object with the text and stats.")
CtxOpt = typer.Option(None, "--ctx", help="Context length to load the model with.")
TruncOpt = typer.Option(False, "--truncate", help="Cut input that does not fit the context "
                        "(reported on stderr) instead of failing.")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="Print timing stats on stderr.")
ImageOpt = typer.Option(None, "--image", "-i", help="An image for a vision model (PNG, "
                        "JPEG, WebP, GIF); repeatable; '-' reads it from stdin.")
#: The prompt when only an image is given.
DESCRIBE_PROMPT = "Describe this image."
