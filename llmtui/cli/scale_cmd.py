"""Past one machine: `llm rpc-worker` serves this box's CPU or GPU to another box's daemon
(llama.cpp RPC). `llm serve --rpc/--ray` live with serve in runtime_cmd.py."""

from __future__ import annotations

import typer


def rpc_worker(
    host: str = typer.Option("127.0.0.1", "--host", "-H",
                             help="IPv4 address to listen on. Anything but loopback needs "
                             "--insecure."),
    port: int = typer.Option(50052, "--port", "-p", min=1, max=65535, help="TCP port."),
    mem: str | None = typer.Option(
        None, "--mem", help="Memory this worker offers, e.g. 8GB (default: the device's own "
        "figure). The daemon splits layers in proportion to what each worker offers; it is "
        "not a hard limit."),
    threads: int = typer.Option(0, "--threads", "-t", min=0,
                                help="CPU threads (0: the physical cores)."),
    cache: bool = typer.Option(False, "--cache",
                               help="Keep large tensors in a local cache, so reloading a big "
                               "model sends only their hashes."),
    insecure: bool = typer.Option(
        False, "--insecure", help="Allow a non-loopback address. The RPC protocol has no "
        "authentication: use it only on a private network you trust."),
) -> None:
    """Serve this machine's CPU or GPU to a daemon on another box (llama.cpp RPC), in
    the foreground; Ctrl-C stops it. Then, on the daemon's box:
    llm serve --rpc HOST:PORT[,HOST:PORT] (or llm config set rpc_servers ...)."""
    from llmtui.config import Settings, parse_size
    from llmtui.errors import UsageError
    from llmtui.scale.rpc_worker import run

    offer = None
    if mem is not None:
        try:
            offer = parse_size(mem)
        except ValueError as exc:
            raise UsageError(f"--mem: {exc}") from None
        if offer <= 0:
            raise UsageError("--mem must be more than 0")
    cache_dir = None
    if cache:
        from llmtui.paths import private_dir

        cache_dir = Settings.load().paths.cache_dir / "rpc"
        private_dir(cache_dir)
    raise typer.Exit(run(host, port, offer, threads, str(cache_dir) if cache_dir else None,
                         insecure))


def register(app: typer.Typer) -> None:
    app.command("rpc-worker")(rpc_worker)
