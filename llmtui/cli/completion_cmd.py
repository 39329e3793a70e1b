"""``llm completion``: print or install the bash, zsh and fish scripts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from llmtui.cli.output import info
from llmtui.errors import InvalidInput

app = typer.Typer(help="Shell completion (model names complete without starting Python).",
                  no_args_is_help=True)

FILES = {"bash": "llm.bash", "zsh": "_llm", "fish": "llm.fish"}


def script(shell: str) -> str:
    if shell not in FILES:
        raise InvalidInput(f"unsupported shell '{shell}'", hint="bash, zsh or fish")
    from importlib import resources

    bundled = resources.files("llmtui").joinpath("completions", FILES[shell])
    if bundled.is_file():
        return bundled.read_text(encoding="utf-8")
    # Running from a source checkout: the scripts live at the top level.
    repo = Path(__file__).resolve().parents[2] / "completions" / FILES[shell]
    return repo.read_text(encoding="utf-8")


def detect_shell() -> str:
    name = Path(os.environ.get("SHELL", "bash")).name
    return name if name in FILES else "bash"


def target(shell: str) -> Path:
    home = Path.home()
    if shell == "bash":
        data = Path(os.environ.get("XDG_DATA_HOME", home / ".local" / "share"))
        return data / "bash-completion" / "completions" / "llm"
    if shell == "zsh":
        return home / ".zfunc" / "_llm"
    config = Path(os.environ.get("XDG_CONFIG_HOME", home / ".config"))
    return config / "fish" / "completions" / "llm.fish"


@app.command("show")
def show(shell: str = typer.Argument(None, help="bash, zsh or fish (default: $SHELL).")) -> None:
    """Print the completion script."""
    sys.stdout.write(script(shell or detect_shell()))


@app.command("install")
def install(shell: str = typer.Argument(None, help="bash, zsh or fish (default: $SHELL).")) -> None:
    """Install the completion script where the shell looks for it."""
    sh = shell or detect_shell()
    text = script(sh)
    path = target(sh)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    info(f"installed {sh} completion to {path}")
    if sh == "zsh":
        info("add to ~/.zshrc (before compinit): fpath=(~/.zfunc $fpath)")
    elif sh == "bash":
        info("new shells pick it up (needs the bash-completion package)")
