"""Our own endpoints beyond Ollama and OpenAI: WebSocket chat, batches, Prometheus metrics.

WebSocket ``/api/x/ws`` — JSON text frames, several requests at once on one connection::

    → {"type": "chat", "id": "a", "model": "smollm2:135m", "messages": [...], "options": {}}
    → {"type": "generate", "id": "b", "model": "...", "prompt": "..."}
    ← {"type": "chunk", "id": "a", "content": "Hel"}   (a thinking model: {"thinking": ...})
    ← {"type": "done", "id": "a", "done_reason": "stop", "eval_count": 12, ...}
    → {"type": "cancel", "id": "b"}        ← {"type": "done", "id": "b", "done_reason": "cancel"}
    ← {"type": "error", "id": "a", "error": "...", "code": "model_not_found"}

Batch ``POST /api/x/batch`` — many prompts (or conversations) for one model in one call,
scheduled through the engine's queue, answered together in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from llmtui.api.common import (
    TooDeep,
    error_body,
    model_field,
    ns,
    parse_json_object,
    unless_gone,
)
from llmtui.api.ollama import OllamaAPI, ToolStream, done_reason, stats_fields
from llmtui.api.reply import ReplyStream, ThinkPlan, collect
from llmtui.api.validate import check_format
from llmtui.errors import InvalidInput, LlmtuiError

MAX_BATCH = 256
BATCH_PARALLEL = 4
MAX_WS_REQUESTS = 16  # requests in flight on one WebSocket
WS_POLICY_VIOLATION = 1008
WS_UNSUPPORTED_DATA = 1003


class Extras:
    def __init__(self, ollama: OllamaAPI, started: float) -> None:
        self.o = ollama
        self.engine = ollama.engine
        self.started = started

    def routes(self) -> list[Any]:
        e = self.o.endpoint
        return [
            WebSocketRoute("/api/x/ws", self.ws),
            Route("/api/x/batch", e(self.batch), methods=["POST"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]

    def _request(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        """An engine request from a JSON object, checked as the HTTP API checks it."""
        req: dict[str, Any] = {"format": check_format(data.get("format")),
                               "options": self.o.options(data.get("options"),
                                                         data.get("model")),
                               "truncate": bool(data.get("truncate", False))}
        if kind == "chat":
            req["messages"] = self.o.messages(data.get("messages"))
            if not req["messages"]:
                raise InvalidInput("'messages' must not be empty")
        else:
            req["prompt"] = self.o.text(data.get("prompt"), "prompt")
            req["system"] = self.o.text(data.get("system"), "system") or None
            req["raw"] = bool(data.get("raw"))
            if not req["prompt"]:
                raise InvalidInput("'prompt' must not be empty")
        return req

    # -- WebSocket ---------------------------------------------------------------------------

    async def ws(self, websocket: WebSocket) -> None:
        """Streamed chat both ways; one connection carries several conversations."""
        await websocket.accept()
        send_lock = asyncio.Lock()
        tasks: dict[str, asyncio.Task[None]] = {}

        async def send(obj: dict[str, Any]) -> None:
            async with send_lock:
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                    await websocket.send_text(json.dumps(obj, ensure_ascii=False))

        async def run(rid: str, kind: str, data: dict[str, Any]) -> None:
            events = None
            try:
                model = model_field(data)
                req = self._request(kind, data)
                plan = await self.o.think_and_logprobs(
                    data, model, req, raw_prompt=req["prompt"] if req.get("raw") else None)
                reply = ReplyStream(plan, ToolStream(None))
                events = self.engine.stream(kind, model, req, data.get("keep_alive"))
                async for event in events:
                    if "stats" not in event:
                        piece = reply.feed(event)
                        if piece.thinking:
                            await send({"type": "chunk", "id": rid,
                                        "thinking": piece.thinking})
                        if piece.content:
                            await send({"type": "chunk", "id": rid, "content": piece.content})
                    else:
                        rest, _ = reply.finish()
                        if rest.content:
                            await send({"type": "chunk", "id": rid, "content": rest.content})
                        stats = event["stats"]
                        await send({"type": "done", "id": rid, "model": model,
                                    "done_reason": done_reason(stats), **stats_fields(stats)})
            except asyncio.CancelledError:
                await send({"type": "done", "id": rid, "done_reason": "cancel"})
            except LlmtuiError as exc:
                await send({"type": "error", "id": rid, **error_body(exc)})
            finally:
                if events is not None:
                    await events.aclose()
                tasks.pop(rid, None)

        async def refuse(code: int, error: str) -> None:
            """An error message, then a close frame with a code (RFC 6455 section 7.4)."""
            await send({"type": "error", "id": None, "error": error, "code": "invalid_input"})
            async with send_lock:
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                    await websocket.close(code=code, reason=error[:120])

        try:
            while True:
                frame = await websocket.receive()
                if frame["type"] == "websocket.disconnect":
                    break
                text = frame.get("text")
                if text is None:
                    await refuse(WS_UNSUPPORTED_DATA, "binary frames are not supported: "
                                 "send JSON objects in text frames")
                    break
                try:
                    msg = parse_json_object(text)
                except TooDeep as exc:
                    await refuse(WS_POLICY_VIOLATION, str(exc))
                    break
                except InvalidInput as exc:
                    await send({"type": "error", "id": None, "error": "frames must be JSON "
                                f"objects ({exc})", "code": "invalid_input"})
                    continue
                kind, rid = msg.get("type"), str(msg.get("id") or "")
                if kind == "ping":
                    await send({"type": "pong", "id": rid})
                elif kind == "cancel":
                    task = tasks.get(rid)
                    if task is not None:
                        task.cancel()
                elif kind in ("chat", "generate"):
                    if not rid or rid in tasks:
                        await send({"type": "error", "id": rid or None, "code": "invalid_input",
                                    "error": "each request needs an 'id' not already in use"})
                    elif len(tasks) >= MAX_WS_REQUESTS:
                        await send({"type": "error", "id": rid, "code": "busy",
                                    "error": f"at most {MAX_WS_REQUESTS} requests at once "
                                             "on one connection"})
                    else:
                        tasks[rid] = asyncio.create_task(run(rid, kind, msg))
                else:
                    await send({"type": "error", "id": rid or None, "code": "invalid_input",
                                "error": f"unknown message type {kind!r} (chat, generate, "
                                         "cancel, ping)"})
        except WebSocketDisconnect:
            pass
        finally:
            for task in list(tasks.values()):
                task.cancel()

    # -- batch -------------------------------------------------------------------------------

    async def batch(self, request: Request) -> Response:
        """Many prompts for one model in one call; results in order, errors per item."""
        data = await self.o.json(request)
        model = model_field(data)
        items = data.get("requests")
        if not isinstance(items, list) or not items:
            raise InvalidInput("'requests' must be a non-empty list")
        if len(items) > MAX_BATCH:
            raise InvalidInput(f"at most {MAX_BATCH} requests per batch")
        shared = {k: data[k] for k in ("options", "format", "system", "truncate", "think")
                  if k in data}
        parsed: list[tuple[str, dict[str, Any], LlmtuiError | None, dict[str, Any]]] = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise InvalidInput(f"request {i} must be an object")
            merged = {**shared, **item}
            if "options" in shared and "options" in item and isinstance(item["options"], dict):
                merged["options"] = {**shared["options"], **item["options"]}
            kind = "chat" if "messages" in merged else "generate"
            try:
                parsed.append((kind, self._request(kind, {**merged, "model": model}), None,
                               merged))
            except InvalidInput as exc:
                parsed.append((kind, {}, exc, merged))
        self.engine.store.get(model)  # a missing model is one 404, not N errors
        plans: list[tuple[str, dict[str, Any], LlmtuiError | None, ThinkPlan | None]] = []
        for kind, req, bad, merged in parsed:
            plan = None
            if bad is None:
                try:  # each item thinks (or not) and splits its reply like /api/chat
                    plan = await self.o.think_and_logprobs(
                        merged, model, req,
                        raw_prompt=req["prompt"] if req.get("raw") else None)
                except InvalidInput as exc:
                    bad = exc
            plans.append((kind, req, bad, plan))
        started = time.perf_counter()
        gate = asyncio.Semaphore(BATCH_PARALLEL)

        async def one(kind: str, req: dict[str, Any], bad: LlmtuiError | None,
                      plan: ThinkPlan | None) -> dict[str, Any]:
            if bad is not None:
                return error_body(bad)
            reply = ReplyStream(plan, ToolStream(None))
            async with gate:
                try:
                    stats, _ = await collect(
                        self.engine.stream(kind, model, req, data.get("keep_alive")), None,
                        reply)
                except LlmtuiError as exc:
                    return error_body(exc)
            extra = {"thinking": reply.thought} if reply.thought else {}
            body: dict[str, Any] = (
                {"message": {"role": "assistant", "content": reply.text, **extra}}
                if kind == "chat" else {"response": reply.text, **extra})
            return {**body, "done_reason": done_reason(stats), **stats_fields(stats)}

        results = await unless_gone(request, asyncio.gather(*(one(*p) for p in plans)))
        return JSONResponse({"model": model, "results": results,
                             "total_duration": ns(time.perf_counter() - started)})

    # -- metrics -----------------------------------------------------------------------------

    async def metrics(self, request: Request) -> Response:
        """Prometheus text exposition."""
        m = self.engine.metrics
        lines: list[str] = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {help_}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                lines.append(f"{name}{labels} {value:g}")

        metric("llmtui_requests_total", "counter", "Generation and embedding requests served.",
               [("", m.requests)])
        metric("llmtui_http_requests_total", "counter", "HTTP requests by path and status.",
               [(f'{{path="{p}",status="{s}"}}', n) for (p, s), n in sorted(m.http.items())])
        metric("llmtui_prompt_tokens_total", "counter", "Prompt tokens evaluated.",
               [("", m.prompt_tokens)])
        metric("llmtui_completion_tokens_total", "counter", "Tokens generated.",
               [("", m.completion_tokens)])
        metric("llmtui_completion_seconds_total", "counter", "Time spent generating tokens.",
               [("", round(m.completion_seconds, 6))])
        metric("llmtui_draft_tokens_total", "counter",
               "Speculative guesses evaluated (prompt lookup or a draft model).",
               [("", m.draft_tokens)])
        metric("llmtui_draft_accepted_total", "counter", "Speculative guesses the model kept.",
               [("", m.draft_accepted)])
        metric("llmtui_draft_acceptance_ratio", "gauge", "Kept guesses / evaluated guesses.",
               [("", m.draft_accepted / m.draft_tokens if m.draft_tokens else 0.0)])
        metric("llmtui_prompt_cached_tokens_total", "counter",
               "Prompt tokens reused from a cache instead of evaluated.",
               [("", m.cached_tokens)])
        rate = m.completion_tokens / m.completion_seconds if m.completion_seconds else 0.0
        metric("llmtui_tokens_per_second", "gauge",
               "Generated tokens per second over the daemon's life.", [("", round(rate, 3))])
        buckets: list[tuple[str, float]] = []
        acc = 0
        for bound, count in zip(m.TTFT_BOUNDS, m.ttft_buckets, strict=True):
            acc += count
            buckets.append((f'_bucket{{le="{bound:g}"}}', acc))
        buckets.append(('_bucket{le="+Inf"}', m.ttft_count))
        buckets.append(("_sum", round(m.ttft_sum, 6)))
        buckets.append(("_count", m.ttft_count))
        lines.append("# HELP llmtui_time_to_first_token_seconds Time from the request "
                     "reaching the model to its first token.")
        lines.append("# TYPE llmtui_time_to_first_token_seconds histogram")
        lines.extend(f"llmtui_time_to_first_token_seconds{s} {v:g}" for s, v in buckets)
        ps = self.engine.ps()
        metric("llmtui_loaded_models", "gauge", "Models loaded now.", [("", len(ps))])
        metric("llmtui_model_memory_bytes", "gauge", "Estimated memory of each loaded model.",
               [(f'{{model="{p["key"]}"}}', p["size"]) for p in ps])
        metric("llmtui_queue_depth", "gauge", "Requests waiting for a model, by model.",
               [(f'{{model="{p["key"]}"}}', p["waiting"]) for p in ps])
        metric("llmtui_active_requests", "gauge", "Requests running now, by model.",
               [(f'{{model="{p["key"]}"}}', p["active"]) for p in ps])
        metric("llmtui_worker_restarts_total", "counter", "Workers that died unexpectedly.",
               [("", m.worker_restarts)])
        metric("llmtui_model_loads_total", "counter", "Model loads.", [("", m.loads)])
        metric("llmtui_uptime_seconds", "gauge", "Seconds since the daemon started.",
               [("", round(time.time() - self.started, 3))])
        return PlainTextResponse("\n".join(lines) + "\n",
                                 media_type="text/plain; version=0.0.4; charset=utf-8")


class CountRequests:
    """ASGI middleware counting HTTP requests by route and status for /metrics."""

    KNOWN = ("/api/", "/v1/", "/metrics", "/openapi.json")

    def __init__(self, app: Any, counts: dict[tuple[str, int], int]) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path.startswith("/api/blobs/"):
            path = "/api/blobs/{digest}"
        elif path.startswith("/v1/models/"):
            path = "/v1/models/{model}"
        elif not (path == "/" or path.startswith(self.KNOWN)):
            path = "other"
        status = 500

        async def watch(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)
        try:
            await self.app(scope, receive, watch)
        finally:
            key = (path, status)
            self.counts[key] = self.counts.get(key, 0) + 1
