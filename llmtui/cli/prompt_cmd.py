"""`llm prompt` — what a bare `llm "..."` runs, the way simonw/llm users type it.

`llm "prompt"`, `llm -m MODEL "prompt"`, `llm -s SYSTEM ...`, `llm -c "and then?"`
(continue the last conversation). Each exchange is kept in the conversation history
(the chat's too), so `-c` can continue it and `llm logs` can show it.
"""

from __future__ import annotations

from typing import Any

import typer

from llmtui.cli.common import (
    CtxOpt,
    FormatOpt,
    JsonOpt,
    MaxOpt,
    ModelOpt,
    Quiet,
    SeedOpt,
    SystemOpt,
    TempOpt,
    TruncOpt,
    VerboseOpt,
    build_options,
    compose,
    emit_result,
    read_stdin,
    silence_stdout,
    stream_reply,
    write,
)
from llmtui.errors import InvalidInput


def parse_option(text: str) -> tuple[str, Any]:
    """`-o KEY=VALUE` (the router turns `-o KEY VALUE` into this): numbers and true/false
    become JSON values; the daemon's option check does the rest."""
    import json

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InvalidInput(f"-o takes KEY VALUE (or KEY=VALUE), e.g. -o temperature 0.2; "
                           f"got '{text}'")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def prompt(
    words: list[str] = typer.Argument(None, help="The prompt; piped stdin comes before it.",
                                      show_default=False),
    model: str | None = ModelOpt, system: str | None = SystemOpt,
    cont: bool = typer.Option(False, "--continue", "-c",
                              help="Continue the last conversation (from here or the chat)."),
    cid: str | None = typer.Option(None, "--cid", "--conversation",
                                   help="Continue this conversation (number, id or prefix)."),
    option: list[str] = typer.Option(None, "--option", "-o",
                                     help="Model option: -o temperature 0.2 (repeatable).",
                                     show_default=False),
    extract: bool = typer.Option(False, "--extract", "-x",
                                 help="Print only the first fenced code block of the reply."),
    extract_last: bool = typer.Option(False, "--xl", "--extract-last",
                                      help="Print only the last fenced code block."),
    no_stream: bool = typer.Option(False, "--no-stream", help="Print the reply when done."),
    no_log: bool = typer.Option(False, "--no-log", help="Do not keep this exchange."),
    temperature: float | None = TempOpt, seed: int | None = SeedOpt,
    max_tokens: int | None = MaxOpt, fmt: str | None = FormatOpt, json_out: bool = JsonOpt,
    ctx: int | None = CtxOpt, truncate: bool = TruncOpt, verbose: bool = VerboseOpt,
) -> None:
    """Run a prompt and keep the exchange: what a bare `llm "..."` does."""
    from llmtui.config import Settings
    from llmtui.history import History

    extra = dict(parse_option(o) for o in option or [])
    stdin = read_stdin()
    text = compose(stdin, " ".join(words or []))
    if not text and (stdin is not None or words):
        raise InvalidInput("nothing to send: the prompt and stdin are empty")
    settings = Settings.load()
    history = History.default(settings)
    try:
        conv = None
        if cont or cid:
            conv = _conversation(history, cid)
            if model is None and conv.model:
                model = conv.model
            system = system if system is not None else (conv.system or None)
        if not text:
            if conv is not None:
                raise InvalidInput("nothing to send: give the next message, or pipe it in")
            from llmtui.cli.repl import repl

            opts = build_options(model, system, temperature, seed, max_tokens, fmt, ctx,
                                 json_out, truncate, verbose)
            repl(opts)
            return
        opts = build_options(model, system, temperature, seed, max_tokens, fmt, ctx,
                             json_out, truncate, verbose)
        if conv is not None:  # the conversation's own settings, unless given now
            given = {k for k, v in (("temperature", temperature), ("seed", seed),
                                    ("num_predict", max_tokens), ("num_ctx", ctx))
                     if v is not None}
            opts.options.update({k: v for k, v in conv.options.items() if k not in given})
        if extra:
            from llmtui.api.validate import check_options

            opts.options = check_options({**opts.options, **extra})
        messages = [{"role": "system", "content": opts.system}] if opts.system else []
        if conv is not None:
            messages += [m.for_model() for m in conv.messages
                         if m.role in ("user", "assistant") and (m.content or m.attachments)]
        messages.append({"role": "user", "content": text})
        buffered = extract or extract_last or no_stream
        from llmtui.cli.session import connect

        with connect() as client:
            try:
                reply, final = stream_reply(client, opts, messages=messages,
                                            echo=not buffered)
                if buffered and not opts.json_out:
                    shown = _pick_block(reply, last=extract_last) if (
                        extract or extract_last) else reply
                    write(shown if shown.endswith("\n") or not shown else shown + "\n")
            except Quiet:
                silence_stdout()
                return
            emit_result(opts, reply, final)
        if not no_log:
            _log(history, conv, opts.model, opts.system or "", text, reply, final)
    finally:
        history.close()


def _conversation(history: Any, ref: str | None) -> Any:
    if ref:
        return history.get(history.resolve(ref))
    latest = history.list(limit=1)
    if not latest:
        raise InvalidInput("no conversation to continue yet", hint='start one: llm "hello"')
    return history.get(latest[0].id)


def _pick_block(text: str, last: bool) -> str:
    """The first (or last) fenced code block; the whole reply when it has none."""
    from llmtui.markdown import code_blocks

    blocks = code_blocks(text)
    if not blocks:
        return text
    return blocks[-1] if last else blocks[0]


def _log(history: Any, conv: Any, model: str, system: str, text: str, reply: str,
         final: dict[str, Any]) -> None:
    from llmtui.history import Message, title_from

    if conv is None:
        conv = history.create(title=title_from(text), model=model, system=system)
    elif conv.model != model:
        history.update(conv.id, model=model)
    history.add(conv.id, Message(role="user", content=text))
    stats = {k: v for k, v in final.items()
             if k.endswith(("_count", "_duration")) or k == "done_reason"}
    history.add(conv.id, Message(role="assistant", content=reply, model=model, stats=stats))


def register(app: typer.Typer) -> None:
    app.command("prompt", context_settings={"allow_interspersed_args": True})(prompt)
