"""The interactive line REPL of `llm run` (the full-screen chat is `llm chat`)."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from llmtui.api.validate import check_options
from llmtui.cli.common import GenOptions, Quiet, emit_result, stream_reply, write
from llmtui.cli.output import info
from llmtui.cli.toolrun import ToolArgs
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
With --tools, --functions or --mcp, each call asks first: [y]es once, [a]lways for this
tool (the rest of the session), [n]o.
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


def repl(opts: GenOptions, tools: ToolArgs | None = None) -> None:
    """The session; with ``tools`` (--tools, --functions, --mcp) each turn runs the tool
    loop, asking on the terminal before each call ("always" holds for the session)."""
    with contextlib.ExitStack() as stack:
        toolset = approver = None
        if tools is not None and tools.wanted():
            from llmtui.cli.toolrun import open_tools
            from llmtui.tools import Approver
            from llmtui.tools.approval import terminal_ask

            toolset = stack.enter_context(open_tools(tools))
            approver = Approver(yes=tools.yes, allow=tools.allow, ask=terminal_ask())
        _repl(opts, tools, toolset, approver)


def _repl(opts: GenOptions, tools: ToolArgs | None, toolset: Any, approver: Any) -> None:
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
        info(f"{opts.model} ready" + (f" with {len(toolset)} tools "
                                      f"({', '.join(toolset.names())})" if toolset else "")
             + ". /? for help, /bye to exit.")
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
                    if toolset:
                        assert tools is not None
                        messages[:] = _tool_turn(client, opts, tools, toolset, approver,
                                                 convo, messages)
                        continue
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


def _tool_turn(client: Any, opts: GenOptions, tools: ToolArgs, toolset: Any, approver: Any,
               convo: list[dict[str, Any]], messages: list[dict[str, Any]]
               ) -> list[dict[str, Any]]:
    """One turn through the tool loop: the answer streams to stdout, calls and approvals
    go to stderr; returns the conversation with the calls, their results and the answer."""
    from llmtui.tools import run_loop

    kw: dict[str, Any] = {"options": opts.options, "truncate": opts.truncate}
    if opts.keep_alive is not None:
        kw["keep_alive"] = opts.keep_alive
    if opts.think is not None:
        kw["think"] = opts.think
    result = run_loop(client, opts.model, convo + messages, toolset, approver=approver,
                      tool_choice=tools.choice, max_rounds=tools.rounds, on_text=write, **kw)
    if result.text and not result.text.endswith("\n"):
        write("\n")
    emit_result(opts, result.text, result.final)
    return result.messages[len(convo):]


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
