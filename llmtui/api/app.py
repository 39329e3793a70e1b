"""Builds the one ASGI app that every listener (Unix socket, later TCP) serves."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llmtui import __version__
from llmtui.api.ollama import OllamaAPI
from llmtui.engine.manager import EngineManager


def make_app(engine: EngineManager, on_shutdown: Callable[[], None] | None = None) -> Starlette:
    """The daemon's app; settings and engine are passed in so tests can build their own."""
    api = OllamaAPI(engine)
    started = time.time()

    async def status(request: Request) -> Response:
        return JSONResponse({
            "version": __version__, "pid": os.getpid(), "started": started,
            "loaded": [item["key"] for item in engine.ps()],
            "models_dir": str(engine.store.root), "busy": engine.busy,
        })

    async def shutdown(request: Request) -> Response:
        if on_shutdown is not None:
            on_shutdown()
        return JSONResponse({"status": "stopping"})

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        engine.start()
        try:
            yield
        finally:
            await engine.close()

    routes = [*api.routes(),
              Route("/api/x/status", status, methods=["GET"]),
              Route("/api/x/shutdown", shutdown, methods=["POST"])]
    return Starlette(routes=routes, lifespan=lifespan)
