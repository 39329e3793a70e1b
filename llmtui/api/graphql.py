"""GraphQL at /api/x/graphql (strawberry): models, loaded models and the catalog;
pull, delete, load and unload; a subscription streaming a generation.

strawberry is imported on the first GraphQL request, so the daemon starts without it.
Subscriptions use the graphql-transport-ws (and legacy graphql-ws) WebSocket protocols.
"""

from __future__ import annotations

import json
from typing import Any

from llmtui.api.common import Limits
from llmtui.engine.manager import EngineManager
from llmtui.errors import LlmtuiError


async def _answer(send: Any, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


class LazyGraphQL:
    """An ASGI app that builds the strawberry app on first use.

    JSON bodies are read and checked here first, with the limits every other endpoint
    has (size, read timeout, nesting depth, valid Unicode), then handed on unchanged:
    strawberry's own json.loads would hit Python's recursion limit on deep nesting.
    """

    def __init__(self, engine: EngineManager, limits: Limits | None = None) -> None:
        self.engine = engine
        self.limits = limits or Limits()
        self.app: Any = None

    async def _checked(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        """The receive channel to pass on, or None once a 4xx has been sent."""
        from starlette.requests import Request

        from llmtui.api.common import parse_json_object, read_body

        request = Request(scope, receive)
        try:
            if scope["method"] == "GET":
                from urllib.parse import parse_qs

                query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
                for text in query.get("variables", []) + query.get("extensions", []):
                    parse_json_object(text)
                return receive
            ctype = request.headers.get("content-type", "")
            if scope["method"] != "POST" or "json" not in ctype:
                return receive
            body = await read_body(request, self.limits)
            if body.strip():
                parse_json_object(body)
        except LlmtuiError as exc:
            message = str(exc)  # in both shapes: GraphQL clients read "errors"
            await _answer(send, exc.http_status, {"error": message, "code": "invalid_input",
                                                  "errors": [{"message": message}]})
            return None
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return dict(await receive())
        return replay

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            receive = await self._checked(scope, receive, send)
            if receive is None:
                return
        if self.app is None:
            try:
                from strawberry.asgi import GraphQL
            except ImportError:
                body = json.dumps({"error": "GraphQL needs strawberry-graphql: "
                                   "pip install 'llmtui[server]'",
                                   "code": "missing_extra"}).encode()
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1011})
                    return
                await send({"type": "http.response.start", "status": 501,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                return
            from llmtui.api.graphql_schema import schema

            engine = self.engine

            class App(GraphQL):
                async def get_context(self, request: Any, response: Any = None) -> Any:
                    return {"engine": engine, "request": request, "response": response}

            self.app = App(schema, graphql_ide="graphiql")
        await self.app(scope, receive, send)
