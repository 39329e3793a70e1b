"""``llm launch CLIENT``: start a coding agent against the local daemon with a local model
(Claude Code on /v1/messages, Codex on /v1/responses, OpenCode on /v1, aider on Ollama's
API), or, with --config, print the set-up instead of starting it."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from typing import Any

import typer

from llmtui.cli.output import info
from llmtui.errors import InvalidInput, UsageError

DEFAULT_PORT = 11434


@dataclass(frozen=True)
class Agent:
    name: str
    binary: str
    install: str
    docs: str


AGENTS = {
    "claude": Agent("Claude Code", "claude", "npm install -g @anthropic-ai/claude-code",
                    "Anthropic's API on /v1/messages"),
    "codex": Agent("Codex", "codex", "npm install -g @openai/codex",
                   "a model provider on /v1 (the Responses API)"),
    "opencode": Agent("OpenCode", "opencode", "npm install -g opencode-ai",
                      "an OpenAI-compatible provider on /v1"),
    "aider": Agent("aider", "aider", "python -m pip install aider-install && aider-install",
                   "Ollama's API"),
}


def setup(client: str, url: str, model: str, key: str) -> tuple[dict[str, str], list[str],
                                                                  dict[str, Any] | None]:
    """(environment variables, arguments, a config file's JSON or None) that point
    ``client`` at the daemon at ``url`` with ``model``."""
    v1 = url.rstrip("/") + "/v1"
    if client == "claude":
        return {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_AUTH_TOKEN": key,
                "ANTHROPIC_MODEL": model, "ANTHROPIC_DEFAULT_OPUS_MODEL": model,
                "ANTHROPIC_DEFAULT_SONNET_MODEL": model,
                "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
                "ANTHROPIC_SMALL_FAST_MODEL": model,
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}, [], None
    if client == "codex":
        provider = (f'{{name="llmtui", base_url="{v1}", env_key="LLMTUI_API_KEY", '
                    'wire_api="responses"}')
        return {"LLMTUI_API_KEY": key}, [
            "-c", f"model_providers.llmtui={provider}", "-c", "model_provider=llmtui",
            "-m", model], None
    if client == "opencode":
        config = {"$schema": "https://opencode.ai/config.json",
                  "provider": {"llmtui": {
                      "npm": "@ai-sdk/openai-compatible", "name": "llmtui (local)",
                      "options": {"baseURL": v1, "apiKey": key},
                      "models": {model: {"name": model}}}},
                  "model": f"llmtui/{model}"}
        return {}, [], config
    if client == "aider":
        return {"OLLAMA_API_BASE": url, "OLLAMA_API_KEY": key}, [
            "--model", f"ollama_chat/{model}"], None
    raise InvalidInput(f"llm launch knows {', '.join(AGENTS)}, not '{client}'")


def daemon_url(port: int | None, start: bool) -> str:
    """The daemon's TCP address: the running daemon's, or a daemon started now on
    127.0.0.1:PORT (``start``); without ``start``, where it will be."""
    from llmtui.config import Settings
    from llmtui.daemon import lifecycle

    settings = Settings.load()
    live = lifecycle.running(settings)
    if live and live.get("tcp"):
        return str(live["tcp"])
    default = f"http://127.0.0.1:{port or DEFAULT_PORT}"
    if not start:
        return default
    if live:
        raise UsageError("the daemon is running without TCP, which the agent needs; stop "
                         "it (llm daemon stop) and launch again, or set a TCP address: "
                         "llm config set host 127.0.0.1:11434")
    os.environ["LLMTUI_HOST"] = f"127.0.0.1:{port or DEFAULT_PORT}"
    lifecycle.ensure_daemon(settings)
    live = lifecycle.running(settings) or {}
    return str(live.get("tcp") or default)


def api_key() -> str:
    from llmtui.config import Settings

    return os.environ.get("LLMTUI_API_KEY") or str(Settings.load().config.get("api_key")
                                                   or "llmtui")


def launch(
    client: str = typer.Argument(..., help="claude, codex, opencode or aider."),
    model: str | None = typer.Option(None, "--model", "-m", help="The model (default: the "
                                     "default_model setting)."),
    config: bool = typer.Option(False, "--config", help="Print the set-up (environment, "
                                "command, config file) instead of starting the agent."),
    port: int | None = typer.Option(None, "--port", "-p", min=1, max=65535,
                                    help="TCP port for a daemon started now (default "
                                    "11434)."),
    args: list[str] = typer.Argument(None, help="More arguments for the agent (after --).",
                                     show_default=False),
) -> None:
    """Start a coding agent (Claude Code, Codex, OpenCode, aider) on a local model.

    The daemon is started on TCP if it is not running. See docs/tools.md."""
    from llmtui.config import Settings
    from llmtui.models.names import ModelName

    if client not in AGENTS:
        raise InvalidInput(f"llm launch knows {', '.join(AGENTS)}, not '{client}'")
    agent = AGENTS[client]
    name = str(ModelName.parse(model or str(Settings.load().config.get("default_model"))))
    path = shutil.which(agent.binary)
    if path is None and not config:
        raise UsageError(f"{agent.name} is not installed; install it with: {agent.install}")
    url = daemon_url(port, start=not config)
    env, extra, file_config = setup(client, url, name, api_key())
    config_path = None
    if file_config is not None:
        from llmtui.paths import Paths, private_dir

        config_path = Paths.from_env().config_dir / "launch" / f"{client}.json"
        private_dir(config_path.parent)
        config_path.write_text(json.dumps(file_config, indent=2) + "\n", encoding="utf-8")
        env["OPENCODE_CONFIG"] = str(config_path)
    command = [agent.binary, *extra, *(args or [])]
    if config:
        sys.stdout.write(f"# {agent.name} on {name} through llmtui ({agent.docs})\n")
        for key, value in env.items():
            sys.stdout.write(f"export {key}={shlex.quote(value)}\n")
        sys.stdout.write(shlex.join(command) + "\n")
        if config_path is not None:
            sys.stdout.write(f"# {config_path}:\n")
            sys.stdout.write("".join(f"#   {line}\n" for line in
                                     json.dumps(file_config, indent=2).splitlines()))
        from llmtui.daemon import lifecycle

        live = lifecycle.running(Settings.load())
        if not (live and live.get("tcp")):
            info(f"note: start the daemon on TCP first: llm serve --port "
                 f"{url.rsplit(':', 1)[-1]}")
        return
    assert path is not None
    info(f"starting {agent.name} on {name} ({url})")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(path, command, {**os.environ, **env})


def register(app: typer.Typer) -> None:
    app.command("launch", context_settings={"allow_extra_args": True,
                                            "ignore_unknown_options": True})(launch)
