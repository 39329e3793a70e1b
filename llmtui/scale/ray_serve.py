"""`llm serve --ray`: the daemon's ASGI app as a Ray Serve application.

Each replica is a Ray actor that builds the very app `llm serve` runs (``make_app``) over
its own EngineManager, which starts and owns its model worker subprocesses as usual. Ray
Serve's HTTP proxy routes the Ollama and OpenAI requests to the replicas, scales them on
ongoing requests (``--autoscale``) and replaces replicas that die. Nothing here balances
or retries by itself.

Models come from one shared store: the replicas get the driver's models folder (and its
``LLMTUI_*`` settings), which on a cluster must be the same path on every node (a shared
volume; see docs/scale.md).

KubeRay's RayService imports :func:`app_builder` (``llmtui.scale.ray_serve:app_builder``)
from its serveConfigV2, with the same deployment.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any

from llmtui.errors import LlmtuiError, RemoteUnavailable, UsageError, require

APP_NAME = "llmtui"
DEPLOYMENT = "llmtui"
REPLICA_HEADER = b"x-llmtui-replica"
#: Environment the replicas inherit from the driver: llmtui's and Ollama's settings.
ENV_PREFIXES = ("LLMTUI_", "OLLAMA_")


@dataclass(frozen=True)
class Scaling:
    """A fixed replica count, or autoscaling between min and max replicas."""

    replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None

    @property
    def auto(self) -> bool:
        return self.max_replicas is not None

    def describe(self) -> str:
        if self.auto:
            return f"{self.min_replicas}..{self.max_replicas} replicas (autoscaled)"
        return f"{self.replicas} replica{'s' if self.replicas != 1 else ''}"


def parse_scaling(replicas: int | None, autoscale: str | None) -> Scaling:
    """--replicas N or --autoscale MIN..MAX (not both)."""
    if replicas is not None and autoscale is not None:
        raise UsageError("pass --replicas or --autoscale, not both")
    if autoscale is None:
        return Scaling(replicas=replicas or 1)
    match = re.fullmatch(r"\s*(\d+)\s*\.\.\s*(\d+)\s*", autoscale)
    if not match:
        raise UsageError(f"--autoscale {autoscale!r}: expected MIN..MAX, e.g. 1..4")
    lo, hi = int(match.group(1)), int(match.group(2))
    if hi < 1 or lo > hi:
        raise UsageError(f"--autoscale {autoscale!r}: need 0 <= MIN <= MAX and MAX >= 1")
    return Scaling(min_replicas=lo, max_replicas=hi)


class ReplicaHeader:
    """ASGI middleware: every response names the replica that made it, so a client (and
    the tests) can tell replicas apart behind Ray's proxy."""

    def __init__(self, app: Any, replica: str) -> None:
        self.app = app
        self.replica = replica.encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def tagged(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (REPLICA_HEADER, self.replica)]}
            await send(message)
        return await self.app(scope, receive, tagged)

    # Starlette's; Ray Serve adds its own handlers for its back-pressure errors.
    def add_exception_handler(self, exc: Any, handler: Any) -> None:
        self.app.add_exception_handler(exc, handler)


#: What a client whose stream was cut reads: Ray Serve's proxy can only drop the
#: connection once a response has started.
LOST = ("the llmtui replica serving this request stopped mid-stream (Ray Serve replaces "
        "it); send the request again")
LOST_BEFORE = ("the llmtui replica serving this request stopped before answering (Ray Serve "
               "replaces it); send the request again")
PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "llmtui.scale.ray_serve:proxy_middlewares"


class StreamCut:
    """ASGI middleware for Ray Serve's HTTP proxy, for requests whose replica died: a
    streamed reply ends with an error in the stream's own format (an Ollama NDJSON line,
    an OpenAI server-sent event) instead of a bare dropped connection, and a request not
    yet answered gets a 503 in the API's error shape instead of a bare 500, so Ollama
    and OpenAI clients raise it as the server's error (OpenAI's retries the 503)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state: dict[str, Any] = {"type": None, "open": False, "started": False}

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                ctype = dict(message.get("headers") or []).get(b"content-type", b"")
                state["type"] = ctype.split(b";")[0].strip().lower()
                state["open"] = state["started"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                state["open"] = False
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            with contextlib.suppress(Exception):  # the client may be gone too
                if not state["started"]:
                    await _unavailable(scope, send)
                elif state["open"] and (tail := stream_error(state["type"])) is not None:
                    await send({"type": "http.response.body", "body": tail,
                                "more_body": False})


async def _unavailable(scope: dict[str, Any], send: Any) -> None:
    """A 503 (retry soon) in the error shape of the API that was asked."""
    import json

    body: dict[str, Any] = {"error": LOST_BEFORE, "code": "replica_lost"}
    if str(scope.get("path", "")).startswith("/v1/"):
        body = {"error": {"message": LOST_BEFORE, "type": "server_error", "param": None,
                          "code": "replica_lost"}}
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
        (b"retry-after", b"1")]})
    await send({"type": "http.response.body", "body": data, "more_body": False})



def stream_error(content_type: bytes | None) -> bytes | None:
    """The last piece of a cut stream, in its own format; None for other bodies."""
    import json

    if content_type == b"application/x-ndjson":
        return (json.dumps({"error": LOST}) + "\n").encode()
    if content_type == b"text/event-stream":
        body = {"error": {"message": LOST, "type": "server_error", "code": "replica_lost"}}
        return f"data: {json.dumps(body)}\n\n".encode()
    return None


def proxy_middlewares() -> list[Any]:
    """Ray Serve's proxy callback (RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH)."""
    from starlette.middleware import Middleware

    return [Middleware(StreamCut)]


def build_replica_app(policy: Any = None) -> Any:
    """The app one replica serves: `llm serve`'s, over a fresh EngineManager."""
    from llmtui.api.app import make_app
    from llmtui.config import Settings
    from llmtui.engine.manager import EngineManager
    from llmtui.net import quiet_dependencies

    quiet_dependencies()
    settings = Settings.load()
    engine = EngineManager(settings)
    replica = f"{os.getpid()}"
    try:
        from ray import serve

        replica = serve.get_replica_context().replica_id.unique_id
    except Exception:
        pass
    # Replicas on one node share the cache folder; saved prompt states stay per replica.
    engine.prompt_cache_dir = engine.prompt_cache_dir / f"replica-{replica}"
    return ReplicaHeader(make_app(engine, policy=policy), replica)


def deployment(scaling: Scaling, *, num_cpus: float = 1.0, num_gpus: float = 0.0,
               parallel: int = 4) -> Any:
    """The Ray Serve deployment (built here: importing ray is slow and optional)."""
    require("ray", "scale", "Serving on Ray")
    from ray import serve

    @serve.ingress()
    class Llmtui:
        """One replica: llmtui's engine manager and API."""

        def __init__(self, env: dict[str, str] | None = None, policy: Any = None) -> None:
            os.environ.update(env or {})
            self.policy = policy

        def __serve_build_asgi_app__(self) -> Any:
            return build_replica_app(self.policy)

    options: dict[str, Any] = {
        "name": DEPLOYMENT,
        "ray_actor_options": {"num_cpus": num_cpus, "num_gpus": num_gpus},
        # Requests a replica takes before Ray queues them at the proxy: its slots, and as
        # many again waiting in its own queue. Autoscaling aims at a full set of slots.
        "max_ongoing_requests": max(2, 2 * parallel),
        "graceful_shutdown_timeout_s": 20,
    }
    if scaling.auto:
        options["autoscaling_config"] = {
            "min_replicas": scaling.min_replicas, "max_replicas": scaling.max_replicas,
            "target_ongoing_requests": max(1, parallel),
            "upscale_delay_s": 10, "downscale_delay_s": 300}
    else:
        options["num_replicas"] = scaling.replicas
    return serve.deployment(Llmtui, **options)


def replica_env(settings: Any) -> dict[str, str]:
    """What replicas inherit: llmtui's and Ollama's variables, and the models folder."""
    from llmtui.net import TELEMETRY_OFF

    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
    env.update(settings.paths.environ())
    env["LLMTUI_MODELS"] = str(settings.models_dir)
    env.update(TELEMETRY_OFF)
    return env


#: What a serve config may pass to app_builder.
BUILDER_ARGS = {"replicas", "autoscale", "num_cpus", "num_gpus", "num_parallel",
                "allowed_hosts", "cors_origins", "port", "insecure"}


def app_builder(args: dict[str, Any]) -> Any:
    """For Ray Serve's config files (KubeRay's serveConfigV2): ``import_path:
    llmtui.scale.ray_serve:app_builder``; args: replicas or autoscale ("1..4"),
    num_cpus, num_gpus, num_parallel, allowed_hosts, cors_origins, port (Serve's HTTP
    port, 8000), insecure. The API key is LLMTUI_API_KEY in the pods' environment, as are
    the other settings; the proxies listen on the pods' network, so a key is required
    unless insecure is true."""
    from llmtui.api.security import Bind, Policy

    unknown = set(args) - BUILDER_ARGS
    if unknown:
        raise UsageError(f"unknown app_builder args: {', '.join(sorted(unknown))}",
                         hint="known: " + ", ".join(sorted(BUILDER_ARGS)))
    scaling = parse_scaling(int(args["replicas"]) if "replicas" in args else None,
                            str(args["autoscale"]) if "autoscale" in args else None)
    policy = Policy.build(Bind("0.0.0.0", int(args.get("port", 8000))),
                          os.environ.get("LLMTUI_API_KEY"), args.get("allowed_hosts"),
                          args.get("cors_origins"), bool(args.get("insecure", False)))
    dep = deployment(scaling, num_cpus=float(args.get("num_cpus", 1)),
                     num_gpus=float(args.get("num_gpus", 0)),
                     parallel=int(args.get("num_parallel", 4)))
    return dep.bind({}, policy)


def serve_ray(settings: Any, listen: Any, address: str | None, scaling: Scaling,
              *, ready_line: bool = True) -> int:
    """Deploy on a Ray cluster (a local one when no address is given), serve until
    Ctrl-C or SIGTERM, then take the application down. Returns the exit status."""
    ray: Any = require("ray", "scale", "llm serve --ray")
    from ray import serve

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    local = address is None
    if local:  # the proxies this cluster starts inherit it; a cluster of yours: docs/scale.md
        os.environ.setdefault(PROXY_CALLBACK_ENV, PROXY_CALLBACK)
    try:
        if local:
            ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        else:
            ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RemoteUnavailable(f"cannot join the Ray cluster at {address}: {first}",
                                hint="start one with `ray start --head`, or pass "
                                "--address auto on a cluster node") from None
    cfg = settings.config
    parallel = int(os.environ.get("LLMTUI_NUM_PARALLEL") or os.environ.get(
        "OLLAMA_NUM_PARALLEL") or cfg.get("num_parallel"))
    try:
        serve.start(http_options={"host": listen.bind.host, "port": listen.bind.port})
        app = deployment(scaling, parallel=parallel).bind(replica_env(settings), listen.policy)
        serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    except LlmtuiError:
        raise
    except Exception as exc:
        _take_down(local)
        text = str(exc).strip().splitlines()
        raise LlmtuiError(f"Ray Serve could not start llmtui: {text[0] if text else exc}",
                          hint="see the Ray logs (/tmp/ray/session_latest/logs)") from None
    where = "a local Ray cluster" if local else f"the Ray cluster at {address}"
    if ready_line:
        print(f"llmtui on Ray Serve at {listen.bind.url} ({scaling.describe()} on {where}); "
              "Ctrl-C stops it", file=sys.stderr, flush=True)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.wait(1.0):
        pass
    print("llmtui on Ray Serve: stopping", file=sys.stderr, flush=True)
    _take_down(local)
    return 0


def _take_down(local: bool) -> None:
    """Delete the application; a cluster this process started goes down with it."""
    import ray
    from ray import serve

    with contextlib.suppress(Exception):
        serve.delete(APP_NAME)
    if local:
        with contextlib.suppress(Exception):
            serve.shutdown()
    with contextlib.suppress(Exception):
        ray.shutdown()
