"""The ``llm`` entry point: builds the Typer app and maps errors to exit codes.

Imports stay light here so that ``llm --help`` is fast: command modules import the
heavy parts (llama_cpp, lancedb, textual) inside the functions that need them.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from llmtui import __version__
from llmtui.cli import (
    cache_cmd,
    chat_cmd,
    completion_cmd,
    config_cmd,
    doctor_cmd,
    formats_cmd,
    gen_cmd,
    history_cmd,
    launch_cmd,
    logs_cmd,
    mcp_cmd,
    models_cmd,
    plugins_cmd,
    prompt_cmd,
    rag_cmd,
    runtime_cmd,
    scale_cmd,
    setup_cmd,
    train_cmd,
    vision_cmd,
    voice_cmd,
)
from llmtui.errors import ExitCode, LlmtuiError

app = typer.Typer(
    name="llm",
    help="Run language models locally: chat, pipe commands and an Ollama-compatible daemon."
    "\n\nWith no command, the full-screen chat; `llm \"PROMPT\"` runs a prompt (see `llm prompt`).",
    no_args_is_help=False,
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

chat_cmd.register(app)
gen_cmd.register(app)
models_cmd.register(app)
runtime_cmd.register(app)
scale_cmd.register(app)
rag_cmd.register(app)
prompt_cmd.register(app)
logs_cmd.register(app)
plugins_cmd.register(app)
setup_cmd.register(app)
doctor_cmd.register(app)
formats_cmd.register(app)
train_cmd.register(app)
vision_cmd.register(app)
voice_cmd.register(app)
launch_cmd.register(app)
app.add_typer(config_cmd.app, name="config")
app.add_typer(completion_cmd.app, name="completion")
app.add_typer(history_cmd.app, name="history")
app.add_typer(cache_cmd.app, name="cache")
app.add_typer(mcp_cmd.app, name="mcp")


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"llmtui {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    no_daemon: bool = typer.Option(False, "--no-daemon",
                                   help="Run the engine in this process (LLMTUI_NO_DAEMON=1)."),
) -> None:
    """Run language models locally from the terminal. With no command: the full-screen chat."""
    if no_daemon:
        from llmtui.cli import session

        session.NO_DAEMON = True
    if ctx.invoked_subcommand is None:
        if setup_cmd.first_run():  # nothing installed yet: the wizard first, then the chat
            setup_cmd.setup(yes=False, model=None, min_speed=20.0, prompt=False,
                            completion=None, autostart=None)
        chat_cmd.chat(model=None, conversation=None)


def error_line(exc: LlmtuiError) -> str:
    return f"llm: error: {exc}"


def _help(args: list[str]) -> None:
    """Print the root help screen and keep it for the next `llm --help` (helpcache.py)."""
    import contextlib
    import io

    from llmtui.cli import helpcache

    buf = io.StringIO()
    code: Any = 0
    with contextlib.redirect_stdout(buf):
        try:
            app(args=args, prog_name="llm")
        except SystemExit as exc:
            code = exc.code
    text = buf.getvalue()
    sys.stdout.write(text)
    sys.stdout.flush()
    if code in (0, None) and text:
        helpcache.store(text)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: one-line errors on stderr, distinct exit codes, 130 on Ctrl-C."""
    from llmtui.net import quiet_dependencies
    from llmtui.paths import private_umask

    private_umask()  # whatever this process writes (history, config, indexes) is owner-only
    quiet_dependencies()  # no telemetry; with the offline switch, no outbound connection
    try:
        from llmtui.cli.plugins_cmd import add_plugin_commands
        from llmtui.cli.router import command_names, route

        add_plugin_commands(app)
        args = route(list(sys.argv[1:] if argv is None else argv), command_names(app))
        if args in (["--help"], ["-h"]):
            _help(args)
        else:
            app(args=args, prog_name="llm")
    except LlmtuiError as exc:
        sys.stderr.write(error_line(exc) + "\n")
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        sys.stderr.write("llm: interrupted\n")
        sys.exit(int(ExitCode.INTERRUPTED))
    except BrokenPipeError:
        # `llm list | head -1`: the reader went away; end quietly.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
