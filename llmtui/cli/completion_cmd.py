"""``llm completion``: print or install the bash, zsh and fish scripts."""

from __future__ import annotations

import sys

import typer

from llmtui.cli.output import info
from llmtui.cli.shell import FILES, detect_shell, script, target
from llmtui.cli.shell import install as install_script

__all__ = ["FILES", "app", "detect_shell", "script", "target"]  # kept importable here

app = typer.Typer(help="Shell completion (model names complete without starting Python).",
                  no_args_is_help=True)


@app.command("show")
def show(shell: str = typer.Argument(None, help="bash, zsh or fish (default: $SHELL).")) -> None:
    """Print the completion script."""
    sys.stdout.write(script(shell or detect_shell()))


@app.command("install")
def install(shell: str = typer.Argument(None, help="bash, zsh or fish (default: $SHELL).")) -> None:
    """Install the completion script where the shell looks for it."""
    sh = shell or detect_shell()
    path, note = install_script(sh)
    info(f"installed {sh} completion to {path}")
    if note:
        info(note)
