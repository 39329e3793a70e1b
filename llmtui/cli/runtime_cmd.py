"""Runtime commands: serve, daemon start|stop|status|logs, ps, load, stop."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import Any

import typer

from llmtui.cli.output import human_size, info, print_json, print_table

daemon_app = typer.Typer(help="Start, stop and inspect the background daemon.",
                         no_args_is_help=True)


def _settings() -> Any:
    from llmtui.config import Settings

    return Settings.load()


def serve(
    host: str | None = typer.Option(
        None, "--host", help="Also listen on TCP at HOST[:PORT] (e.g. 127.0.0.1:11434). "
        "Default: LLMTUI_HOST, OLLAMA_HOST, or the config's host key; off when none is set."),
    port: int | None = typer.Option(None, "--port", "-p", min=1, max=65535,
                                    help="TCP port (default 11434); implies TCP."),
    api_key: str | None = typer.Option(
        None, "--api-key", help="Key TCP clients must send (or LLMTUI_API_KEY / config).",
        show_default=False),
    insecure: bool = typer.Option(
        False, "--insecure", help="Allow a non-loopback address without an API key."),
    rpc: str | None = typer.Option(
        None, "--rpc", help="llama.cpp RPC servers HOST:PORT[,HOST:PORT...] (`llm "
        "rpc-worker` on other boxes) that GGUF models offload their layers to; overrides "
        "the rpc_servers setting."),
    ray: bool = typer.Option(
        False, "--ray", help="Deploy as a Ray Serve application: replicas each run the "
        "engine, behind Ray's HTTP proxy on --host/--port (default 127.0.0.1:11434)."),
    address: str | None = typer.Option(
        None, "--address", help="With --ray: the Ray cluster (auto, HOST:PORT or "
        "ray://HOST:10001). Default: start a local one for this run."),
    replicas: int | None = typer.Option(None, "--replicas", min=1,
                                        help="With --ray: how many replicas (default 1)."),
    autoscale: str | None = typer.Option(
        None, "--autoscale", help="With --ray: MIN..MAX replicas, scaled on ongoing "
        "requests."),
) -> None:
    """Run the daemon in the foreground, with logs on stderr (Ctrl-C stops it)."""
    import logging
    import os

    from llmtui.daemon.server import serve as run_server
    from llmtui.daemon.server import tcp_listener
    from llmtui.errors import UsageError

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings()
    if rpc is not None:
        from llmtui.backends.ggml_devices import parse_endpoints

        try:
            servers = parse_endpoints(rpc)
        except ValueError as exc:
            raise UsageError(f"--rpc: {exc}") from None
        if not servers:
            raise UsageError("--rpc: expected HOST:PORT[,HOST:PORT...]")
        os.environ["LLMTUI_RPC_SERVERS"] = ",".join(servers)  # the engine and its replicas
    if not ray:
        if address is not None or replicas is not None or autoscale is not None:
            raise UsageError("--address, --replicas and --autoscale go with --ray")
        listen = tcp_listener(settings, host, port, api_key, insecure, use_ollama_env=True)
        raise typer.Exit(run_server(settings, listen=listen))
    from llmtui.api.security import DEFAULT_PORT
    from llmtui.scale.ray_serve import parse_scaling, serve_ray

    scaling = parse_scaling(replicas, autoscale)
    listen = tcp_listener(settings, host, port, api_key, insecure, use_ollama_env=True) or \
        tcp_listener(settings, "127.0.0.1", DEFAULT_PORT, api_key, insecure)
    assert listen is not None  # a host is given, so TCP is on
    raise typer.Exit(serve_ray(settings, listen, address, scaling))


@daemon_app.command("start")
def daemon_start() -> None:
    """Start the daemon in the background (commands also start it on demand)."""
    from llmtui.daemon.lifecycle import ensure_daemon, running

    settings = _settings()
    live = running(settings)
    socket = ensure_daemon(settings)
    info(("already running on " if live else "started on ") + socket)


@daemon_app.command("stop")
def daemon_stop() -> None:
    """Stop the daemon (its models are unloaded)."""
    from llmtui.daemon.lifecycle import stop_daemon

    info("stopped" if stop_daemon(_settings()) else "not running")


@daemon_app.command("status")
def daemon_status(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Is the daemon running, where, and what has it loaded?"""
    from llmtui.daemon.lifecycle import running

    live = running(_settings())
    if json_out:
        print_json(live or {"running": False})
        if not live:
            raise typer.Exit(1)
        return
    if not live:
        sys.stdout.write("not running\n")
        raise typer.Exit(1)
    uptime = time.time() - float(live.get("started", time.time()))
    sys.stdout.write(f"running\tpid {live['pid']}\tversion {live['version']}\t"
                     f"socket {live['socket']}\tup {uptime:.0f}s\t"
                     f"loaded {','.join(live.get('loaded') or []) or '-'}\n")


@daemon_app.command("logs")
def daemon_logs(
    lines: int = typer.Option(50, "--lines", "-n", help="How many lines."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
) -> None:
    """Print the daemon's log."""
    from llmtui.daemon.paths import DaemonPaths

    path = DaemonPaths.of(_settings().paths).log
    if not path.exists():
        info(f"no log yet ({path})")
        return
    with path.open("r", errors="replace") as fh:
        for line in fh.readlines()[-lines:]:
            sys.stdout.write(line)
        sys.stdout.flush()
        while follow:
            line = fh.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.3)


def ps(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Loaded models: size, CPU/GPU, context, and until when they are kept."""
    from llmtui.cli.session import connect

    with connect() as client:
        models = client.ps()
    if json_out:
        print_json(models)
        return
    rows = []
    for m in models:
        where = "GPU" if m.get("size_vram") else "CPU"
        if m.get("backend") not in (None, "llama.cpp"):  # the runtime and its device/EPs
            where += f" ({m['backend']}: {m.get('device') or '-'})"
        until = m.get("expires_at") or ""
        if until.startswith("2318"):
            until = "forever"
        elif until:
            left = datetime.fromisoformat(until.replace("Z", "+00:00")).timestamp() - time.time()
            until = f"in {max(0, left) / 60:.0f} min" if left >= 60 else f"in {max(0, left):.0f} s"
        slots = int(m.get("slots") or 1)
        busy = f"{m.get('active', 0)}/{slots}"
        rows.append([m["name"] + (" (embed)" if m.get("embedding") else ""),
                     human_size(m.get("size")), _placement(m.get("devices")) or f"100% {where}",
                     str(m.get("context_length") or "-") + (f" ×{slots}" if slots > 1 else ""),
                     busy, until])
    print_table(None, ["NAME", "SIZE", "PROCESSOR", "CONTEXT", "BUSY", "UNTIL"], rows)


def _placement(devices: list[dict[str, Any]] | None) -> str:
    """Where a model's layers are, when some are off this machine's CPU: the devices
    that hold them (RPC servers by address) with their layer counts."""
    held = [d for d in devices or [] if d.get("layers")]
    if not any(d.get("kind") != "cpu" for d in held):
        return ""
    return ", ".join(f"{d.get('endpoint') or d.get('name')} ({d['layers']} layers)"
                     for d in held)


def load(
    model: str = typer.Argument(..., help="Model to preload."),
    keep_alive: str | None = typer.Option(None, "--keep-alive", help="e.g. 30m, -1 (forever)."),
) -> None:
    """Load a model now so the next request starts at once."""
    from llmtui.cli.session import connect
    from llmtui.engine.manager import parse_keep_alive

    if keep_alive is not None:
        parse_keep_alive(keep_alive)
    with connect() as client:
        started = time.perf_counter()
        client.load(model, keep_alive=keep_alive)
    info(f"loaded {model} in {time.perf_counter() - started:.2f}s")


def stop(model: str = typer.Argument(..., help="Model to unload.")) -> None:
    """Unload a model and free its memory."""
    from llmtui.daemon.client import Client
    from llmtui.errors import DaemonUnavailable
    from llmtui.models.names import ModelName

    name = str(ModelName.parse(model))
    try:
        unloaded = Client(autostart=False).unload(name)
    except DaemonUnavailable:
        unloaded = False
    info(f"unloaded {name}" if unloaded else f"{name} was not loaded")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(daemon_app, name="daemon")
    app.command("ps")(ps)
    app.command("load")(load)
    app.command("stop")(stop)
