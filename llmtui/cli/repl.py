"""The interactive line REPL of `llm run` (the full-screen chat is `llm chat`)."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from llmtui.api.validate import check_options
from llmtui.cli.common import GenOptions, Quiet, emit_result, stream_reply
from llmtui.cli.output import info
from llmtui.errors import LlmtuiError

HELP = """Commands:
  /set system TEXT          set the system prompt
  /set parameter NAME VALUE set an option (temperature, top_p, top_k, seed, num_predict, num_ctx)
  /set verbose | quiet      show or hide timing stats
  /set think | nothink      turn a thinking model's reasoning on or off
  /set hidethinking | nohidethinking   hide or show the reasoning
  /show                     show the model and the current settings
  /clear                    forget the conversation
  /bye                      exit (Ctrl-D too)
Start and end a message with \"\"\" to write several lines.
Ctrl-C stops a reply without leaving."""


def _history_file() -> Any:
    from llmtui.paths import Paths, private_dir, private_file

    path = Paths.from_env().data_dir / "repl_history"
    private_dir(path.parent)
    return private_file(path)  # what was typed is as private as the conversations


def _read_message(prompt: str = ">>> ") -> str | None:
    """One message; a line starting with triple quotes reads until the closing ones."""
    try:
        line = input(prompt)
    except EOFError:
        return None
    if not line.lstrip().startswith('"""'):
        return line
    first = line.lstrip()[3:]
    if first.rstrip().endswith('"""') and first.strip() != "":
        return first.rstrip()[:-3]
    lines = [first] if first else []
    while True:
        try:
            more = input("... ")
        except EOFError:
            return "\n".join(lines)
        if more.rstrip().endswith('"""'):
            lines.append(more.rstrip()[:-3])
            return "\n".join(lines).strip("\n")
        lines.append(more)


def repl(opts: GenOptions) -> None:
    from llmtui.cli.session import connect

    try:
        import readline

        hist = _history_file()
        with contextlib.suppress(OSError):
            readline.read_history_file(hist)
        readline.set_history_length(2000)
    except ImportError:  # pragma: no cover - not on every platform
        readline = None  # type: ignore[assignment]
        hist = None
    messages: list[dict[str, Any]] = []
    with connect() as client:
        client.load(opts.model, keep_alive=opts.keep_alive)  # fail fast on a missing model
        info(f"{opts.model} ready. /? for help, /bye to exit.")
        try:
            while True:
                try:
                    text = _read_message()
                except KeyboardInterrupt:
                    sys.stderr.write("\n(use /bye or Ctrl-D to exit)\n")
                    continue
                if text is None:
                    sys.stderr.write("\n")
                    break
                if not text.strip():
                    continue
                if text.strip().startswith("/"):
                    if not _command(text.strip(), opts, messages):
                        break
                    continue
                convo = ([{"role": "system", "content": opts.system}] if opts.system else [])
                messages.append({"role": "user", "content": text})
                try:
                    reply, final = stream_reply(client, opts, messages=convo + messages)
                except KeyboardInterrupt:
                    sys.stdout.write("\n")
                    info("(reply stopped)")
                    messages.pop()
                    continue
                except Quiet:
                    break
                except LlmtuiError as exc:
                    info(f"error: {exc}")
                    messages.pop()
                    continue
                answer: dict[str, Any] = {"role": "assistant", "content": reply}
                if final.get("thinking"):
                    answer["thinking"] = final["thinking"]
                messages.append(answer)
                emit_result(opts, reply, final)
        finally:
            if readline is not None and hist is not None:
                with contextlib.suppress(OSError):
                    readline.write_history_file(hist)


def _command(line: str, opts: GenOptions, messages: list[dict[str, Any]]) -> bool:
    """Handle a /command; False means leave the REPL."""
    words = line.split(maxsplit=3)
    cmd = words[0].lower()
    if cmd in ("/bye", "/exit", "/quit"):
        return False
    if cmd in ("/?", "/help"):
        info(HELP)
    elif cmd == "/clear":
        messages.clear()
        info("conversation cleared")
    elif cmd == "/show":
        info(f"model: {opts.model}\nsystem: {opts.system or '(none)'}\n"
             f"options: {opts.options}")
    elif cmd == "/set" and len(words) >= 2:
        what = words[1].lower()
        if what == "system":
            opts.system = line.split(maxsplit=2)[2] if len(words) > 2 else None
            info("system prompt set" if opts.system else "system prompt cleared")
        elif what in ("think", "nothink"):
            opts.think = what == "think"
            info("thinking on" if opts.think else "thinking off")
        elif what in ("hidethinking", "nohidethinking"):
            opts.hide_thinking = what == "hidethinking"
        elif what == "verbose":
            opts.verbose = True
        elif what == "quiet":
            opts.verbose = False
        elif what == "parameter" and len(words) == 4:
            name, raw = words[2], words[3]
            try:
                value: Any = int(raw) if raw.lstrip("-").isdigit() else float(raw)
                opts.options = check_options({**opts.options, name: value}, strict=True)
                info(f"set {name} = {value}")
            except (ValueError, LlmtuiError) as exc:
                info(f"error: {exc}")
        else:
            info("usage: /set system TEXT | /set parameter NAME VALUE | /set verbose|quiet "
                 "| /set think|nothink")
    else:
        info(f"unknown command {cmd}; /? for help")
    return True
