"""GraphQL at /api/x/graphql (strawberry): models, loaded models and the catalog;
pull, delete, load and unload; a subscription streaming a generation.

strawberry is imported on the first GraphQL request, so the daemon starts without it.
Subscriptions use the graphql-transport-ws (and legacy graphql-ws) WebSocket protocols.
"""

from __future__ import annotations

import json
from typing import Any

from llmtui.engine.manager import EngineManager


class LazyGraphQL:
    """An ASGI app that builds the strawberry app on first use."""

    def __init__(self, engine: EngineManager) -> None:
        self.engine = engine
        self.app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
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
