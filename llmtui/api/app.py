"""Builds the one ASGI app that every listener (the Unix socket and TCP) serves."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from llmtui import __version__
from llmtui.api.common import Limits
from llmtui.api.extras import CountRequests, Extras
from llmtui.api.graphql import LazyGraphQL
from llmtui.api.ollama import OllamaAPI
from llmtui.api.openai import OpenAIAPI
from llmtui.api.security import Guard, Policy, over_tcp
from llmtui.engine.manager import EngineManager

log = logging.getLogger("llmtui.api")


class AllowEveryMethod:
    """ASGI middleware: a 405's Allow header names every method the path serves. Starlette
    answers from the first route whose path matches, so a path split over several routes
    (GET and DELETE /api/x/rag/{name}) would list only some of its methods."""

    def __init__(self, app: Any, routes: list[Any]) -> None:
        self.app = app
        self.routes = [r for r in routes if isinstance(r, Route)]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def patched(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                methods = sorted({m for r in self.routes if r.path_regex.match(scope["path"])
                                  for m in (r.methods or ())})
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                message = {**message, "headers": [*headers,
                                                  (b"allow", ", ".join(methods).encode())]}
            await send(message)
        return await self.app(scope, receive, patched)


def make_app(engine: EngineManager, on_shutdown: Callable[[], None] | None = None, *,
             limits: Limits | None = None, policy: Policy | None = None) -> Starlette:
    """The daemon's app; the engine, limits and TCP policy are passed in so tests can
    build their own. ``policy`` applies to TCP requests only (the socket is private)."""
    limits = limits or Limits.from_settings(engine.settings)
    api = OllamaAPI(engine, limits)
    started = time.time()
    extras = Extras(api, started)

    async def status(request: Request) -> Response:
        """The daemon's pid, version, loaded models and whether it is busy."""
        return JSONResponse({
            "version": __version__, "pid": os.getpid(), "started": started,
            "loaded": [item["key"] for item in engine.ps()],
            "models_dir": os.path.basename(engine.store.root)
            if over_tcp(request.scope) else str(engine.store.root),
            "busy": engine.busy,
        })

    async def shutdown(request: Request) -> Response:
        """Stop the daemon (Unix socket only)."""
        if over_tcp(request.scope):  # TCP: never let a network client stop it
            return JSONResponse({"error": "shutdown is only allowed on the Unix socket",
                                 "code": "forbidden"}, status_code=403)
        if on_shutdown is not None:
            on_shutdown()
        return JSONResponse({"status": "stopping"})

    async def openapi(request: Request) -> Response:
        """This API's OpenAPI 3.1 description."""
        from llmtui.api.openapi import build

        return JSONResponse(build(routes, limits.predict))

    async def http_error(request: Request, exc: Exception) -> Response:
        """The router's own 404 and 405, in the error shape of the API that was asked."""
        from starlette.exceptions import HTTPException

        assert isinstance(exc, HTTPException)
        text = {404: "no such endpoint", 405: "method not allowed"}.get(exc.status_code,
                                                                          exc.detail)
        code = "not_found" if exc.status_code == 404 else "method_not_allowed"
        body: dict[str, Any] = {"error": text, "code": code}
        if request.url.path.startswith("/v1/"):
            body = {"error": {"message": text, "type": "invalid_request_error",
                              "param": None, "code": code}}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    async def internal_error(request: Request, exc: Exception) -> Response:
        # No stack traces or paths for clients; the log has the details.
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse({"error": "internal error (see the daemon log)",
                             "code": "internal"}, status_code=500)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        engine.start()
        try:
            yield
        finally:
            await engine.close()

    graphql = LazyGraphQL(engine, limits)
    from llmtui.api.anthropic import AnthropicAPI
    from llmtui.api.audio import AudioAPI
    from llmtui.api.formats import FormatsAPI
    from llmtui.api.rag import RagAPI
    from llmtui.api.responses import ResponsesAPI

    routes = [*api.routes(), *OpenAIAPI(api).routes(), *extras.routes(), *RagAPI(api).routes(),
              *ResponsesAPI(api).routes(),
              *FormatsAPI(api).routes(),
              *AudioAPI(api).routes(),
              *AnthropicAPI(api).routes(),
              Route("/api/x/graphql", graphql, methods=["GET", "POST"]),
              WebSocketRoute("/api/x/graphql", graphql),
              Route("/api/x/status", status, methods=["GET"]),
              Route("/api/x/shutdown", shutdown, methods=["POST"]),
              Route("/openapi.json", openapi, methods=["GET"])]
    middleware = [Middleware(CountRequests, counts=engine.metrics.http),
                  Middleware(AllowEveryMethod, routes=routes)]
    if policy is not None:
        middleware.insert(0, Middleware(Guard, policy=policy))
    return Starlette(routes=routes, lifespan=lifespan, middleware=middleware,
                     exception_handlers={404: http_error, 405: http_error,
                                         Exception: internal_error})
