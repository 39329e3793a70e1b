"""The OpenAI-compatible API under /v1: models, chat completions, completions, embeddings.

Requests map onto the same engine calls as Ollama's API. Unlike Ollama's endpoint, a
request may set the context length: ``"num_ctx": 8192`` at the top level, or any Ollama
option inside ``"options"`` (with the openai package: ``extra_body={...}``).
"""

from __future__ import annotations

import base64
import json
import secrets
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from llmtui.api.common import first_event, guarded, model_field
from llmtui.api.ollama import OllamaAPI, ToolStream
from llmtui.api.validate import check_format
from llmtui.backends.tools import check_tools, parse_tool_calls
from llmtui.errors import InvalidInput, LlmtuiError, ModelNotFound
from llmtui.models.names import ModelName

#: OpenAI's default for /v1/completions without max_tokens (not "until the context ends").
DEFAULT_COMPLETION_TOKENS = 16

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                404: "not_found_error", 503: "server_busy"}


def openai_error_body(exc: LlmtuiError) -> dict[str, Any]:
    from llmtui.api.common import scrub

    return {"error": {"message": scrub(str(exc)),
                      "type": _ERROR_TYPES.get(exc.http_status, "api_error"),
                      "param": None, "code": exc.exit_code.name.lower()}}


def openai_error(exc: LlmtuiError) -> JSONResponse:
    headers = {"Retry-After": "1"} if exc.http_status == 503 else None
    return JSONResponse(openai_error_body(exc), status_code=exc.http_status, headers=headers)


def _sse(obj: Any) -> bytes:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()


def sse_response(events: Any, first: dict[str, Any] | None,
                 render: Callable[[dict[str, Any]], Iterator[bytes]]) -> StreamingResponse:
    """An SSE stream: each engine event rendered to frames, then ``[DONE]``; an error
    mid-stream becomes a final OpenAI error frame; the engine stream is always closed."""
    async def body() -> AsyncIterator[bytes]:
        try:
            event = first
            while event is not None:
                for frame in render(event):
                    yield frame
                event = await anext(events, None)
            yield b"data: [DONE]\n\n"
        except LlmtuiError as exc:
            yield _sse(openai_error_body(exc))
        finally:
            await events.aclose()
    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


def _finish(stats: dict[str, Any], calls: list[Any]) -> str:
    if calls:
        return "tool_calls"
    return "length" if stats.get("done_reason") == "length" else "stop"


def _usage(stats: dict[str, Any]) -> dict[str, Any]:
    p = int(stats.get("prompt_tokens") or 0)
    c = int(stats.get("completion_tokens") or 0)
    usage: dict[str, Any] = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
    if stats.get("cached_tokens"):
        usage["prompt_tokens_details"] = {"cached_tokens": int(stats["cached_tokens"])}
    return usage


def _openai_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": "call_" + secrets.token_hex(8), "type": "function",
             "function": {"name": c["function"]["name"],
                          "arguments": json.dumps(c["function"]["arguments"],
                                                  ensure_ascii=False)}}
            for c in calls]


class OpenAIAPI:
    def __init__(self, ollama: OllamaAPI) -> None:
        self.o = ollama
        self.engine = ollama.engine

    def routes(self) -> list[Route]:
        e = self.endpoint
        return [
            Route("/v1/models", e(self.models), methods=["GET"]),
            Route("/v1/models/{model:path}", e(self.model), methods=["GET"]),
            Route("/v1/chat/completions", e(self.chat), methods=["POST"]),
            Route("/v1/completions", e(self.completions), methods=["POST"]),
            Route("/v1/embeddings", e(self.embeddings), methods=["POST"]),
        ]

    @staticmethod
    def endpoint(fn: Any) -> Any:
        return guarded(fn, openai_error)

    # -- models ----------------------------------------------------------------------------

    def _model_obj(self, m: Any) -> dict[str, Any]:
        return {"id": m.name, "object": "model",
                "created": int(self.engine.store.modified(m)), "owned_by": "library"}

    async def models(self, request: Request) -> Response:
        """Installed models, OpenAI-style."""
        items = [self._model_obj(m) for m in self.engine.store.models()]
        return JSONResponse({"object": "list", "data": items})

    async def model(self, request: Request) -> Response:
        """One installed model."""
        name = ModelName.parse(request.path_params["model"])
        try:
            return JSONResponse(self._model_obj(self.engine.store.get(name)))
        except ModelNotFound:
            raise ModelNotFound(f"model '{name}' not found") from None

    # -- shared request mapping -------------------------------------------------------------

    def _options(self, data: dict[str, Any]) -> dict[str, Any]:
        opts: dict[str, Any] = dict(data.get("options") or {}) \
            if isinstance(data.get("options"), dict) else {}
        if data.get("options") is not None and not isinstance(data.get("options"), dict):
            raise InvalidInput("'options' must be an object")
        mapping = {"temperature": "temperature", "top_p": "top_p", "seed": "seed",
                   "frequency_penalty": "frequency_penalty",
                   "presence_penalty": "presence_penalty", "num_ctx": "num_ctx",
                   "top_k": "top_k", "min_p": "min_p", "repeat_penalty": "repeat_penalty"}
        for key, opt in mapping.items():
            if data.get(key) is not None:
                opts[opt] = data[key]
        limit = data.get("max_completion_tokens", data.get("max_tokens"))
        if limit is not None:
            opts["num_predict"] = limit
        if data.get("stop") is not None:
            opts["stop"] = data["stop"]
        n = data.get("n", 1)
        if n not in (1, None):
            raise InvalidInput("'n' must be 1 (one choice per request)")
        return self.o.options(opts, data.get("model"))

    @staticmethod
    def _format(data: dict[str, Any]) -> Any:
        rf = data.get("response_format")
        if rf is None:
            return None
        kind = rf.get("type") if isinstance(rf, dict) else None
        if kind == "text":
            return None
        if kind == "json_object":
            return "json"
        if kind == "json_schema":
            schema = (rf.get("json_schema") or {}).get("schema")
            if not isinstance(schema, dict):
                raise InvalidInput("response_format.json_schema.schema must be an object")
            return check_format(schema)
        raise InvalidInput("response_format.type must be text, json_object or json_schema")

    def _messages(self, raw: Any) -> list[dict[str, Any]]:
        if not isinstance(raw, list) or not raw:
            raise InvalidInput("'messages' must be a non-empty list")
        out = []
        for i, m in enumerate(raw):
            if not isinstance(m, dict):
                raise InvalidInput(f"message {i} must be an object")
            m = dict(m)
            if m.get("role") == "developer":
                m["role"] = "system"
            content = m.get("content")
            if isinstance(content, list):  # content parts
                texts = []
                for part in content:
                    kind = part.get("type") if isinstance(part, dict) else None
                    if kind == "text":
                        texts.append(str(part.get("text") or ""))
                    elif kind in ("image_url", "input_image"):
                        raise InvalidInput("this model cannot read images (it is not a "
                                           "vision model)")
                    else:
                        raise InvalidInput(f"message {i}: unsupported content part {kind!r}")
                m["content"] = "".join(texts)
            if m.get("tool_calls"):
                calls = []
                for call in m["tool_calls"]:
                    fn = dict(call.get("function") or {}) if isinstance(call, dict) else {}
                    args = fn.get("arguments")
                    if isinstance(args, str):
                        try:
                            fn["arguments"] = json.loads(args or "{}")
                        except ValueError:
                            raise InvalidInput(f"message {i}: tool call arguments are not "
                                               "valid JSON") from None
                    calls.append({"function": fn})
                m["tool_calls"] = calls
            out.append(m)
        return self.o.messages(out)

    # -- chat ------------------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        """Chat completions: SSE streaming, response_format, tools, stop, seed, usage."""
        data = await self.o.json(request)
        model = model_field(data)
        messages = self._messages(data.get("messages"))
        tools = None if data.get("tool_choice") == "none" else check_tools(data.get("tools"))
        req = {"messages": messages, "format": self._format(data), "tools": tools,
               "options": self._options(data), "truncate": bool(data.get("truncate", False))}
        cid = "chatcmpl-" + secrets.token_hex(12)
        created = int(time.time())
        if not data.get("stream"):
            text, stats = await self.o.collect(request, "chat", model, req)
            calls = parse_tool_calls(text, tools) if tools else []
            message: dict[str, Any] = {"role": "assistant", "content": None if calls else text}
            if calls:
                message["tool_calls"] = _openai_calls(calls)
            return JSONResponse({
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "system_fingerprint": "llmtui",
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": _finish(stats, calls)}],
                "usage": _usage(stats)})
        include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
        events = self.engine.stream("chat", model, req, None)
        first = await first_event(events)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"id": cid, "object": "chat.completion.chunk", "created": created,
                    "model": model, "system_fingerprint": "llmtui",
                    "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                 "finish_reason": finish}]}

        watcher = ToolStream(tools)

        def render(event: dict[str, Any]) -> Iterator[bytes]:
            if event is first:
                yield _sse(chunk({"role": "assistant", "content": ""}))
            if "text" in event:
                out = watcher.feed(event["text"])
                if out:
                    yield _sse(chunk({"content": out}))
                return
            stats = event["stats"]
            rest, calls = watcher.finish()
            if rest:
                yield _sse(chunk({"content": rest}))
            if calls:
                deltas = [dict(c, index=i) for i, c in enumerate(_openai_calls(calls))]
                yield _sse(chunk({"tool_calls": deltas}))
            yield _sse(chunk({}, _finish(stats, calls)))
            if include_usage:
                yield _sse({"id": cid, "object": "chat.completion.chunk", "created": created,
                            "model": model, "choices": [], "usage": _usage(stats)})
        return sse_response(events, first, render)

    # -- completions -----------------------------------------------------------------------

    async def completions(self, request: Request) -> Response:
        """Legacy text completions (the prompt is used raw, without a chat template)."""
        data = await self.o.json(request)
        model = model_field(data)
        prompt = data.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise InvalidInput("'prompt' must be a string (one prompt per request)")
        if not prompt:
            raise InvalidInput("'prompt' is empty: there is nothing to complete")
        options = self._options(data)
        if data.get("max_tokens") is None and data.get("max_completion_tokens") is None \
                and "num_predict" not in options:
            options["num_predict"] = DEFAULT_COMPLETION_TOKENS
        req = {"prompt": self.o.text(prompt, "prompt"), "raw": True,
               "suffix": self.o.text(data.get("suffix"), "suffix") or None,
               "format": self._format(data), "options": options,
               "truncate": bool(data.get("truncate", False))}
        cid = "cmpl-" + secrets.token_hex(12)
        created = int(time.time())

        def obj(text: str, finish: str | None) -> dict[str, Any]:
            return {"id": cid, "object": "text_completion", "created": created, "model": model,
                    "system_fingerprint": "llmtui",
                    "choices": [{"index": 0, "text": text, "logprobs": None,
                                 "finish_reason": finish}]}

        if not data.get("stream"):
            text, stats = await self.o.collect(request, "generate", model, req)
            return JSONResponse({**obj(text, _finish(stats, [])), "usage": _usage(stats)})
        include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
        events = self.engine.stream("generate", model, req, None)
        first = await first_event(events)

        def render(event: dict[str, Any]) -> Iterator[bytes]:
            if "text" in event:
                yield _sse(obj(event["text"], None))
                return
            yield _sse(obj("", _finish(event["stats"], [])))
            if include_usage:
                yield _sse({**obj("", None), "choices": [], "usage": _usage(event["stats"])})
        return sse_response(events, first, render)

    # -- embeddings ------------------------------------------------------------------------

    async def embeddings(self, request: Request) -> Response:
        """Embeddings for a string or a list of strings (float or base64)."""
        data = await self.o.json(request)
        model = model_field(data)
        inputs = self.o.inputs(data.get("input"))
        encoding = data.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise InvalidInput("encoding_format must be float or base64")
        options = self._options(data)
        if inputs:
            result = await self.engine.embed(model, inputs, options)
        else:  # an empty list: an empty (correct) answer
            self.engine.store.get(ModelName.parse(model))
            result = {"embeddings": [], "tokens": 0}
        vectors = result["embeddings"]
        dims = data.get("dimensions")
        if dims is not None and vectors and dims != len(vectors[0]):
            raise InvalidInput(f"this model makes {len(vectors[0])}-dimension vectors; "
                               f"'dimensions' {dims} is not available")
        items = []
        for i, vec in enumerate(vectors):
            value: Any = vec
            if encoding == "base64":
                value = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
            items.append({"object": "embedding", "index": i, "embedding": value})
        tokens = int(result.get("tokens") or 0)
        return JSONResponse({"object": "list", "data": items, "model": model,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
