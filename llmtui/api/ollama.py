"""Ollama's API on the daemon: the same paths, field names, NDJSON streams and errors.

Durations are nanoseconds, timestamps RFC 3339. Our extensions are extra fields or live
under /api/x/.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from llmtui import __version__
from llmtui.api.validate import check_format, check_messages, check_options, check_text
from llmtui.engine.manager import EngineManager, parse_keep_alive
from llmtui.errors import InvalidInput, LlmtuiError, ModelNotFound
from llmtui.models.names import ModelName
from llmtui.models.store import Manifest

MAX_BODY = 32 * 1024 * 1024
NDJSON = "application/x-ndjson"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ns(seconds: float | None) -> int:
    return int((seconds or 0.0) * 1e9)


def error_response(exc: LlmtuiError) -> JSONResponse:
    headers = {"Retry-After": "1"} if exc.http_status == 503 else None
    return JSONResponse({"error": str(exc), "code": exc.exit_code.name.lower()},
                        status_code=exc.http_status, headers=headers)


async def read_json(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise InvalidInput(f"request body too large ({len(body)} bytes)")
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidInput("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput("request body must be a JSON object")
    return data


def model_field(data: dict[str, Any]) -> str:
    name = data.get("model") or data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("'model' is required")
    return str(ModelName.parse(name))


def details(m: Manifest) -> dict[str, Any]:
    return {
        "parent_model": "", "format": m.format, "family": m.family or "",
        "families": [m.family] if m.family else None,
        "parameter_size": m.parameter_size or "", "quantization_level": m.quantization or "",
    }


def stats_fields(stats: dict[str, Any]) -> dict[str, Any]:
    """Ollama's timing fields (ns) plus ours (time to first token, truncation)."""
    out = {
        "total_duration": ns(stats.get("total_seconds")),
        "load_duration": ns(stats.get("load_seconds")),
        "prompt_eval_count": int(stats.get("prompt_tokens") or 0),
        "prompt_eval_duration": ns(stats.get("prompt_seconds")),
        "eval_count": int(stats.get("completion_tokens") or 0),
        "eval_duration": ns(stats.get("completion_seconds")),
        "first_token_duration": ns(stats.get("first_token_seconds")),
    }
    if stats.get("truncated_tokens"):
        out["truncated_tokens"] = int(stats["truncated_tokens"])
    return out


def done_reason(stats: dict[str, Any]) -> str:
    reason = str(stats.get("done_reason") or "stop")
    return "stop" if reason == "cancel" else reason


class OllamaAPI:
    """Route handlers bound to one engine."""

    def __init__(self, engine: EngineManager) -> None:
        self.engine = engine

    def routes(self) -> list[Route]:
        e = self.endpoint
        return [
            Route("/", e(self.root), methods=["GET", "HEAD"]),
            Route("/api/version", e(self.version), methods=["GET"]),
            Route("/api/generate", e(self.generate), methods=["POST"]),
            Route("/api/chat", e(self.chat), methods=["POST"]),
            Route("/api/embed", e(self.embed), methods=["POST"]),
            Route("/api/embeddings", e(self.embeddings), methods=["POST"]),
            Route("/api/tags", e(self.tags), methods=["GET"]),
            Route("/api/ps", e(self.ps), methods=["GET"]),
            Route("/api/show", e(self.show), methods=["POST"]),
            Route("/api/pull", e(self.pull), methods=["POST"]),
            Route("/api/delete", e(self.delete), methods=["DELETE"]),
            Route("/api/copy", e(self.copy), methods=["POST"]),
            Route("/api/x/tokenize", e(self.tokenize), methods=["POST"]),
            Route("/api/x/unload", e(self.unload), methods=["POST"]),
        ]

    @staticmethod
    def endpoint(fn: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def handler(request: Request) -> Response:
            try:
                return await fn(request)
            except LlmtuiError as exc:
                return error_response(exc)
        return handler

    # -- plain ------------------------------------------------------------------------------

    async def root(self, request: Request) -> Response:
        return PlainTextResponse("llmtui is running")

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": __version__})

    # -- generation -------------------------------------------------------------------------

    def _stream(self, events: AsyncGenerator[dict[str, Any], None], first: dict[str, Any] | None,
                make_chunk: Callable[[str], dict[str, Any]],
                make_final: Callable[[dict[str, Any]], dict[str, Any]]) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            try:
                if first is not None:
                    yield self._line(self._event_line(first, make_chunk, make_final))
                async for event in events:
                    yield self._line(self._event_line(event, make_chunk, make_final))
            except LlmtuiError as exc:
                yield self._line({"error": str(exc), "code": exc.exit_code.name.lower()})
            finally:
                await events.aclose()
        return StreamingResponse(body(), media_type=NDJSON)

    @staticmethod
    def _line(obj: dict[str, Any]) -> bytes:
        return (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")

    @staticmethod
    def _event_line(event: dict[str, Any], make_chunk: Callable[[str], dict[str, Any]],
                    make_final: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        if "text" in event:
            return make_chunk(event["text"])
        return make_final(event["stats"])

    async def _run(self, kind: str, model: str, req: dict[str, Any], keep_alive: Any,
                   stream: bool, make_chunk: Callable[[str], dict[str, Any]],
                   make_final: Callable[[dict[str, Any]], dict[str, Any]],
                   collect: Callable[[str, dict[str, Any]], dict[str, Any]]) -> Response:
        events = self.engine.stream(kind, model, req, keep_alive)
        # Pull the first event before answering, so that errors (missing model, prompt too
        # long) become a proper HTTP status instead of an error line in a 200 stream.
        try:
            first = await events.__anext__()
        except StopAsyncIteration:
            first = None
        except LlmtuiError:
            await events.aclose()
            raise
        if stream:
            return self._stream(events, first, make_chunk, make_final)
        parts: list[str] = []
        stats: dict[str, Any] = {}
        try:
            event = first
            while event is not None:
                if "text" in event:
                    parts.append(event["text"])
                else:
                    stats = event["stats"]
                event = await anext(events, None)
        finally:
            await events.aclose()
        return JSONResponse(collect("".join(parts), stats))

    async def _load_or_unload(self, model: str, keep_alive: Any, key: str) -> Response:
        base: dict[str, Any] = {"model": model, "created_at": now_rfc3339(), "done": True}
        if key == "message":
            base["message"] = {"role": "assistant", "content": ""}
        else:
            base["response"] = ""
        if keep_alive is not None and parse_keep_alive(keep_alive) == 0:
            self.engine.store.get(model)
            await self.engine.unload_model(model)
            return JSONResponse({**base, "done_reason": "unload"})
        started = time.perf_counter()
        await self.engine.load(model, None, keep_alive)
        return JSONResponse({**base, "done_reason": "load",
                             "total_duration": ns(time.perf_counter() - started)})

    async def generate(self, request: Request) -> Response:
        data = await read_json(request)
        model = model_field(data)
        prompt = check_text(data.get("prompt"), "prompt")
        keep_alive = data.get("keep_alive")
        if keep_alive is not None:
            parse_keep_alive(keep_alive)
        if not prompt and not data.get("suffix"):
            return await self._load_or_unload(model, keep_alive, "response")
        if data.get("images"):
            raise InvalidInput(f"'{model}' cannot read images (it is not a vision model)")
        req = {
            "prompt": prompt, "system": check_text(data.get("system"), "system") or None,
            "raw": bool(data.get("raw")), "format": check_format(data.get("format")),
            "options": check_options(data.get("options")),
            "truncate": bool(data.get("truncate", False)),
        }
        stream = data.get("stream", True) is not False

        def chunk(text: str) -> dict[str, Any]:
            return {"model": model, "created_at": now_rfc3339(), "response": text,
                    "done": False}

        def final(stats: dict[str, Any]) -> dict[str, Any]:
            return {"model": model, "created_at": now_rfc3339(), "response": "",
                    "done": True, "done_reason": done_reason(stats), **stats_fields(stats)}

        def collect(text: str, stats: dict[str, Any]) -> dict[str, Any]:
            return {**final(stats), "response": text}

        return await self._run("generate", model, req, keep_alive, stream, chunk, final,
                               collect)

    async def chat(self, request: Request) -> Response:
        data = await read_json(request)
        model = model_field(data)
        messages = check_messages(data.get("messages"))
        keep_alive = data.get("keep_alive")
        if keep_alive is not None:
            parse_keep_alive(keep_alive)
        if not messages:
            return await self._load_or_unload(model, keep_alive, "message")
        if any(m.get("images") for m in messages):
            raise InvalidInput(f"'{model}' cannot read images (it is not a vision model)")
        req = {
            "messages": messages, "format": check_format(data.get("format")),
            "options": check_options(data.get("options")), "tools": data.get("tools"),
            "truncate": bool(data.get("truncate", False)),
        }
        stream = data.get("stream", True) is not False

        def chunk(text: str) -> dict[str, Any]:
            return {"model": model, "created_at": now_rfc3339(),
                    "message": {"role": "assistant", "content": text}, "done": False}

        def final(stats: dict[str, Any]) -> dict[str, Any]:
            return {"model": model, "created_at": now_rfc3339(),
                    "message": {"role": "assistant", "content": ""}, "done": True,
                    "done_reason": done_reason(stats), **stats_fields(stats)}

        def collect(text: str, stats: dict[str, Any]) -> dict[str, Any]:
            out = final(stats)
            out["message"]["content"] = text
            return out

        return await self._run("chat", model, req, keep_alive, stream, chunk, final, collect)

    async def embed(self, request: Request) -> Response:
        data = await read_json(request)
        model = model_field(data)
        raw = data.get("input")
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not all(isinstance(s, str) for s in inputs):
            raise InvalidInput("'input' must be a string or a list of strings")
        if len(inputs) > 4096:
            raise InvalidInput("at most 4096 inputs per request")
        started = time.perf_counter()
        result = await self.engine.embed(model, inputs, check_options(data.get("options")),
                                         data.get("keep_alive"),
                                         truncate=data.get("truncate", True) is not False)
        return JSONResponse({
            "model": model, "embeddings": result["embeddings"],
            "total_duration": ns(time.perf_counter() - started),
            "load_duration": ns(result["load_seconds"]),
            "prompt_eval_count": sum(len(s.split()) for s in inputs),
        })

    async def embeddings(self, request: Request) -> Response:
        """The legacy single-prompt endpoint: {"prompt"} in, {"embedding"} out."""
        data = await read_json(request)
        model = model_field(data)
        prompt = check_text(data.get("prompt"), "prompt")
        result = await self.engine.embed(model, [prompt], check_options(data.get("options")),
                                         data.get("keep_alive"))
        return JSONResponse({"embedding": result["embeddings"][0]})

    async def tokenize(self, request: Request) -> Response:
        data = await read_json(request)
        model = model_field(data)
        tokens = await self.engine.tokenize(model, check_text(data.get("text"), "text"),
                                            data.get("keep_alive"))
        return JSONResponse({"model": model, "tokens": tokens, "count": len(tokens)})

    async def unload(self, request: Request) -> Response:
        data = await read_json(request)
        model = model_field(data)
        return JSONResponse({"model": model, "unloaded": await self.engine.unload_model(model)})

    # -- models ------------------------------------------------------------------------------

    async def tags(self, request: Request) -> Response:
        store = self.engine.store
        models = []
        for m in await asyncio.to_thread(store.models):
            modified = datetime.fromtimestamp(store.modified(m), UTC)
            models.append({
                "name": m.name, "model": m.name,
                "modified_at": modified.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "size": m.size, "digest": m.digest, "details": details(m),
            })
        return JSONResponse({"models": models})

    async def ps(self, request: Request) -> Response:
        models = []
        for item in self.engine.ps():
            m: Manifest = item["manifest"]
            expires = item["expires_at"]
            models.append({
                "name": m.name, "model": m.name, "size": item["size"], "digest": m.digest,
                "details": details(m),
                "expires_at": (datetime.fromtimestamp(expires, UTC).isoformat()
                               if expires else "2318-01-01T00:00:00Z"),
                "size_vram": item["size_vram"], "context_length": item["context_length"],
                "pid": item["pid"], "gpu_layers": item["gpu_layers"],
                "embedding": item["key"].endswith("#embed"),
            })
        return JSONResponse({"models": models})

    async def show(self, request: Request) -> Response:
        data = await read_json(request)
        model = model_field(data)
        store = self.engine.store
        manifest, path = store.resolve_file(model)
        model_info: dict[str, Any] = {}
        template = manifest.template or ""
        license_ = manifest.license or ""
        if manifest.format == "gguf":
            from llmtui.models.gguf_info import read_info

            info = await asyncio.to_thread(read_info, path)
            model_info = {k: v for k, v in info.metadata.items()
                          if not k.startswith("tokenizer.") or data.get("verbose")}
            model_info["general.parameter_count"] = info.parameters
            template = template or info.chat_template or ""
            license_ = info.license or license_
        params = manifest.parameters_override or {}
        modelfile = f"FROM {path.name}\n" + (f'TEMPLATE """{template}"""\n' if template else "")
        return JSONResponse({
            "modelfile": modelfile,
            "parameters": "\n".join(f"{k} {v}" for k, v in params.items()),
            "template": template, "system": manifest.system or "", "license": license_,
            "details": details(manifest), "model_info": model_info,
            "capabilities": list(manifest.capabilities),
            "modified_at": datetime.fromtimestamp(store.modified(manifest), UTC).isoformat(),
        })

    async def pull(self, request: Request) -> Response:
        data = await read_json(request)
        spec = data.get("model") or data.get("name")
        if not isinstance(spec, str) or not spec.strip():
            raise InvalidInput("'model' is required")
        stream = data.get("stream", True) is not False
        from llmtui.models.pull import plan, pull

        plan(spec)  # a bad or unknown name fails now, with a proper status
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        last: dict[str, float] = {}

        def on_event(event: dict[str, Any]) -> None:
            key = str(event.get("digest") or event.get("status"))
            now = time.monotonic()
            partial = event.get("total") and event.get("completed") != event.get("total")
            if partial and now - last.get(key, 0.0) < 0.1:
                return  # at most ten progress lines a second per file
            last[key] = now
            loop.call_soon_threadsafe(queue.put_nowait, dict(event))

        async def run() -> None:
            try:
                await asyncio.to_thread(pull, self.engine.store, spec, on_event=on_event)
            except LlmtuiError as exc:
                await queue.put({"error": str(exc), "code": exc.exit_code.name.lower()})
            finally:
                await queue.put(None)

        task = asyncio.create_task(run())
        if not stream:
            final: dict[str, Any] = {}
            while (event := await queue.get()) is not None:
                final = event
            await task
            if "error" in final:
                return JSONResponse(final, status_code=500)
            return JSONResponse({"status": "success"})

        async def body() -> AsyncIterator[bytes]:
            while (event := await queue.get()) is not None:
                yield self._line(event)
            await task
        return StreamingResponse(body(), media_type=NDJSON)

    async def delete(self, request: Request) -> Response:
        data = await read_json(request)
        model = model_field(data)
        await self.engine.unload_model(model)
        try:
            await asyncio.to_thread(self.engine.store.remove, model)
        except ModelNotFound:
            raise ModelNotFound(f"model '{model}' not found") from None
        return Response(status_code=200)

    async def copy(self, request: Request) -> Response:
        data = await read_json(request)
        src, dst = data.get("source"), data.get("destination")
        if not isinstance(src, str) or not isinstance(dst, str):
            raise InvalidInput("'source' and 'destination' are required")
        await asyncio.to_thread(self.engine.store.copy, src, dst)
        return Response(status_code=200)
