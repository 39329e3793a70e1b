"""``llm setup``: the first-run wizard. Measures the machine, recommends a model that will
feel fast here, pulls it, runs a first prompt and offers shell completion and autostart.

Also what a bare ``llm`` runs on a terminal when no model is installed yet. Questions and
progress go to stderr; stdout carries only the first prompt's reply.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from llmtui.cli.output import human_size, info
from llmtui.errors import DownloadError, UsageError

FIRST_PROMPT = "Say hello and introduce yourself in one short sentence."


def first_run() -> bool:
    """A terminal, and no model installed yet: what makes a bare `llm` start the wizard."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    from llmtui.config import Settings

    try:
        return not Settings.load().store().models()
    except Exception:  # (an unreadable store: let the chat report it)
        return False


def _ask(question: str, default: bool, yes: bool) -> bool:
    if yes:
        return default
    return bool(typer.confirm(question, default=default, err=True))


def setup(
    yes: bool = typer.Option(False, "--yes", "-y", help="Answer every question with its "
                             "default (for scripts): pull the recommendation, install "
                             "completion, no autostart unless --autostart."),
    model: str | None = typer.Option(None, "--model", "-m", help="Pull this model instead "
                                     "of the recommendation."),
    min_speed: float = typer.Option(20.0, "--min-speed", min=0.1, help="Tokens/s a model "
                                    "must be expected to reach to be recommended."),
    prompt: bool = typer.Option(True, "--prompt/--no-prompt", help="Run a first prompt."),
    completion: bool | None = typer.Option(None, "--completion/--no-completion",
                                           help="Install shell completion (default: ask)."),
    autostart: bool | None = typer.Option(None, "--autostart/--no-autostart",
                                          help="Start the daemon at login (default: ask)."),
) -> None:
    """Set up llmtui on this machine: measure it, pull a model that will feel fast here,
    run a first prompt, offer shell completion and daemon autostart."""
    from llmtui.config import Settings
    from llmtui.machine import for_settings

    if not yes and not sys.stdin.isatty():
        raise UsageError("llm setup asks questions and stdin is not a terminal",
                         hint="run `llm setup --yes` in scripts")
    settings = Settings.load()
    info("measuring this machine ...")
    machine = for_settings(settings, fresh=True)
    _describe(machine)
    if model is not None:
        from llmtui.models.names import ModelName

        model = str(ModelName.parse(model))
        have = {m.name for m in settings.store().models()}
        name: str | None = model if model in have else _pull(settings.store(), model)
    else:
        name = _choose(settings, machine, min_speed, yes)
    if name is None:
        info("no model pulled; `llm catalog` lists what there is")
        return
    if name != settings.config.get("default_model"):
        settings.config.set("default_model", name)
        settings.config.save()
        info(f"default model is now {name}")
    if prompt:
        _first_prompt(name)
    shell_on = completion if completion is not None else _ask(
        "Install shell completion?", True, yes)
    if shell_on:
        _completion()
    start_on = autostart if autostart is not None else _ask(
        "Start the llmtui daemon when you log in?", False, yes)
    if start_on:
        _autostart()
    info('ready: llm "your question"   ·   llm chat   ·   llm doctor')


def _describe(machine: Any) -> None:
    gpu = machine.best_gpu
    info(f"  {machine.cpu}: {machine.cores_physical} cores, {human_size(machine.ram_total)} "
         f"RAM ({human_size(machine.ram_available)} free), "
         f"{machine.bandwidth / 1e9:.1f} GB/s memory bandwidth")
    info(f"  GPU: {gpu.description} ({human_size(gpu.memory_total)})" if gpu
         else "  GPU: none that this llama.cpp build can use (models run on the CPU)")
    info(f"  disk: {human_size(machine.disk_free)} free in {machine.models_dir}")


def _choose(settings: Any, machine: Any, min_speed: float, yes: bool) -> str | None:
    """Pull the best candidate the user accepts; fall back to the next when a source is
    out of reach (a hub that this network blocks). Returns the installed name."""
    from llmtui.machine import estimate, recommend
    from llmtui.models.catalog import load_catalog

    store = settings.store()
    installed = {m.name for m in store.models()}
    candidates = [e for e in recommend(machine, load_catalog().values(), min_tps=min_speed)
                  if e.size < machine.disk_free * 0.9]
    if not candidates:
        info("no chat model in the catalog fits this machine's memory and disk")
        return None
    info("recommended for this machine (largest that decodes fast enough, then smaller):")
    for e in candidates[:3]:
        est = estimate(machine, e.size, e.ram)
        info(f"  {e.name:<16} {human_size(e.size):>9}  ~{est.tokens_per_second:.0f} tokens/s "
             f"({est.speed})  {e.description}")
    for e in candidates:
        if e.name in installed:
            info(f"{e.name} is already installed")
            return e.name
        est = estimate(machine, e.size, e.ram)
        if not _ask(f"Pull {e.name} ({human_size(e.size)}, ~{est.tokens_per_second:.0f} "
                    "tokens/s expected)?", True, yes):
            continue
        try:
            return _pull(store, e.name)
        except DownloadError as exc:
            info(f"could not pull {e.name}: {exc}")
            info("trying the next recommendation")
    return None


def _pull(store: Any, name: str) -> str:
    from llmtui.cli.progress import PullProgress
    from llmtui.models.pull import pull

    with PullProgress() as progress:
        manifest = pull(store, name, on_event=progress)
    info(f"pulled {manifest.name} ({human_size(manifest.size)})")
    return str(manifest.name)


def _first_prompt(name: str) -> None:
    from llmtui.cli.common import GenOptions, stream_reply
    from llmtui.cli.session import connect

    info(f"first prompt ({name}): {FIRST_PROMPT}")
    opts = GenOptions(model=name, options={"num_predict": 64, "temperature": 0.7})
    with connect() as client:
        _, final = stream_reply(client, opts, messages=[{"role": "user",
                                                           "content": FIRST_PROMPT}])
    count, ns = final.get("eval_count") or 0, final.get("eval_duration") or 0
    if count and ns:
        info(f"({count} tokens at {count / (ns / 1e9):.0f} tokens/s)")


def _completion() -> None:
    from llmtui.cli.shell import detect_shell, install

    shell = detect_shell()
    path, note = install(shell)
    info(f"installed {shell} completion to {path}" + (f"; {note}" if note else ""))


def autostart_files() -> dict[str, Path]:
    """Where the login-time service goes on this system (a systemd user unit, or a
    launchd agent on macOS)."""
    import os

    home = Path.home()
    if sys.platform == "darwin":
        return {"launchd": home / "Library" / "LaunchAgents" / "dev.llmtui.daemon.plist"}
    config = Path(os.environ.get("XDG_CONFIG_HOME", home / ".config"))
    return {"systemd": config / "systemd" / "user" / "llmtui.service"}


def _autostart() -> None:
    import shlex

    exe = [sys.executable, "-m", "llmtui", "serve"]
    (kind, path), = autostart_files().items()
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "systemd":
        path.write_text(
            "[Unit]\nDescription=llmtui daemon (local language models)\n\n"
            f"[Service]\nExecStart={shlex.join(exe)}\nRestart=on-failure\n\n"
            "[Install]\nWantedBy=default.target\n", encoding="utf-8")
        info(f"wrote {path}; turn it on with: systemctl --user enable --now llmtui")
    else:
        args = "".join(f"<string>{a}</string>" for a in exe)
        path.write_text(
            '<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0"><dict>'
            "<key>Label</key><string>dev.llmtui.daemon</string>"
            f"<key>ProgramArguments</key><array>{args}</array>"
            "<key>RunAtLoad</key><true/><key>KeepAlive</key><true/></dict></plist>\n",
            encoding="utf-8")
        info(f"wrote {path}; turn it on with: launchctl load {path}")


def register(app: typer.Typer) -> None:
    app.command("setup")(setup)
