"""``llm config``: read and change the TOML config file."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import typer

from llmtui.cli.output import print_json

app = typer.Typer(help="Show and change settings (a TOML file).", no_args_is_help=True)


def _settings():  # type: ignore[no-untyped-def]
    from llmtui.config import Settings

    return Settings.load()


@app.command("path")
def path_cmd() -> None:
    """Print the config file's path."""
    from llmtui.paths import Paths

    sys.stdout.write(f"{Paths.from_env().config_file}\n")


@app.command("show")
def show_cmd(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print every setting with its effective value."""
    from llmtui.config import KEYS
    from llmtui.net import OFFLINE_ENV, offline, set_by_env

    settings = _settings()
    values = settings.config.effective()
    values["models_dir"] = str(settings.models_dir)
    values["offline"] = offline(settings)
    if json_out:
        print_json(values)
        return
    for name in sorted(KEYS):
        value = values[name]
        origin = "" if name in settings.config.values else "  # default"
        if name == "models_dir" and settings.paths.models_env is not None:
            origin = "  # from LLMTUI_MODELS"
        if name == "offline" and set_by_env():
            origin = f"  # from {OFFLINE_ENV}"
        shown = "" if value is None else value
        sys.stdout.write(f"{name} = {shown!r}{origin}\n" if isinstance(shown, str)
                         else f"{name} = {shown}{origin}\n")


@app.command("get")
def get_cmd(key: str = typer.Argument(..., help="Setting name.")) -> None:
    """Print one setting's effective value."""
    from llmtui.net import offline

    settings = _settings()
    value = str(settings.models_dir) if key == "models_dir" else settings.config.get(key)
    if key == "offline":
        value = offline(settings)
    sys.stdout.write(("" if value is None else str(value)) + "\n")


@app.command("set", context_settings={"ignore_unknown_options": True})
def set_cmd(key: str = typer.Argument(...), value: str = typer.Argument(...)) -> None:
    """Check and store a setting."""
    settings = _settings()
    stored = settings.config.set(key, value)
    sys.stderr.write(f"{key} = {stored}\n")


@app.command("unset")
def unset_cmd(key: str = typer.Argument(...)) -> None:
    """Return a setting to its default."""
    _settings().config.unset(key)


@app.command("edit")
def edit_cmd() -> None:
    """Open the config file in $VISUAL or $EDITOR, then check it."""
    from llmtui.config import Config
    from llmtui.paths import Paths

    path = Paths.from_env().config_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(exist_ok=True)
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    subprocess.run([*shlex.split(editor), str(path)], check=False)
    Config.load(path)  # report a mistake now rather than at the next command
