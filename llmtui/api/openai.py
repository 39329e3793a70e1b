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

from llmtui.api.common import guarded, model_field, shorten_vectors, unless_gone
from llmtui.api.images import RawImage, openai_image
from llmtui.api.ollama import OllamaAPI, ToolStream
from llmtui.api.reply import (
    Piece,
    ReplyStream,
    ThinkPlan,
    check_logprobs,
    collect,
    completion_logprobs,
    logprob_fields,
    merge_streams,
    openai_logprobs,
    run_all,
)
from llmtui.api.validate import check_format
from llmtui.backends.thinking import think_from_effort
from llmtui.backends.tools import check_tools, tool_choice
from llmtui.errors import InvalidInput, LlmtuiError, ModelNotFound
from llmtui.models.names import ModelName

#: The most choices one request may ask for (OpenAI's ``n``).
MAX_CHOICES = 16
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


def _usage(all_stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Token counts of one or more choices: the prompt counts once, replies add up."""
    first = all_stats[0] if all_stats else {}
    p = int(first.get("prompt_tokens") or 0)
    c = sum(int(stats.get("completion_tokens") or 0) for stats in all_stats)
    usage: dict[str, Any] = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
    if first.get("cached_tokens"):
        usage["prompt_tokens_details"] = {"cached_tokens": int(first["cached_tokens"])}
    return usage


def reasoning_fields(text: str) -> dict[str, str]:
    """A reply's reasoning, under both names clients read: ``reasoning_content``
    (DeepSeek's, read by most OpenAI-compatible clients) and ``reasoning`` (Ollama's)."""
    return {"reasoning_content": text, "reasoning": text}


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

    def _messages(self, raw: Any) -> tuple[list[dict[str, Any]], list[list[RawImage]]]:
        """The messages in Ollama's shape, and each one's images (not yet decoded)."""
        if not isinstance(raw, list) or not raw:
            raise InvalidInput("'messages' must be a non-empty list")
        out = []
        groups: list[list[RawImage]] = []
        for i, m in enumerate(raw):
            if not isinstance(m, dict):
                raise InvalidInput(f"message {i} must be an object")
            m = dict(m)
            m.pop("images", None)  # not an OpenAI field: images come as content parts
            if m.get("role") == "developer":
                m["role"] = "system"
            reasoning = m.pop("reasoning_content", None) or m.pop("reasoning", None)
            if isinstance(reasoning, str) and reasoning and m.get("role") == "assistant":
                m["thinking"] = reasoning  # earlier reasoning goes back as Ollama's field
            content = m.get("content")
            images: list[RawImage] = []
            if isinstance(content, list):  # content parts
                texts = []
                for part in content:
                    kind = part.get("type") if isinstance(part, dict) else None
                    if kind == "text":
                        texts.append(str(part.get("text") or ""))
                    elif kind in ("image_url", "input_image"):
                        assert isinstance(part, dict)
                        label = f"image {len(images) + 1} of message {i}"
                        images.append(openai_image(part, label))
                    else:
                        raise InvalidInput(f"message {i}: unsupported content part {kind!r}")
                m["content"] = "".join(texts)
            groups.append(images)
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
        return self.o.messages(out), groups

    def _requests(self, data: dict[str, Any], req: dict[str, Any]) -> list[dict[str, Any]]:
        """One engine request per choice (``n``); with a seed, choice i uses seed + i, so
        the choices differ and the same request gives the same choices."""
        n = data.get("n")
        n = 1 if n is None else int(n) if isinstance(n, float) and n.is_integer() else n
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CHOICES:
            raise InvalidInput(f"'n' must be a whole number from 1 to {MAX_CHOICES}")
        seed = req.get("options", {}).get("seed")
        out = []
        for i in range(n):
            one = dict(req)
            if i and seed is not None and seed >= 0:
                one["options"] = {**req["options"], "seed": seed + i}
            out.append(one)
        return out

    async def _plan(self, data: dict[str, Any], model: str, req: dict[str, Any],
                    raw_prompt: str | None = None) -> ThinkPlan:
        """``reasoning_effort`` / ``reasoning.effort`` (or Ollama's ``think``) and the
        request's logprobs settings, into the engine request."""
        reasoning = data.get("reasoning")
        effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
        think = data.get("think")
        if think is None:
            think = think_from_effort(effort or data.get("reasoning_effort"))
        return await self.o.think_and_logprobs({**data, "think": think}, model, req,
                                               raw_prompt=raw_prompt)

    # -- chat ------------------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        """Chat completions: SSE streaming, response_format, tools, tool_choice, stop, seed,
        n, logprobs, reasoning, usage."""
        data = await self.o.json(request)
        model = model_field(data)
        messages, images = self._messages(data.get("messages"))
        # A forced call (tool_choice "required" or a named function) is a grammar.
        tools, forced = tool_choice(check_tools(data.get("tools")), data.get("tool_choice"))
        req = {"messages": messages, "format": forced or self._format(data), "tools": tools,
               "options": self._options(data), "truncate": bool(data.get("truncate", False))}
        req["messages"] = await self.o.with_images(model, messages, images)
        plan = await self._plan({**data, "logprobs": data.get("logprobs") or None}, model,
                                req)
        reqs = self._requests(data, req)
        cid = "chatcmpl-" + secrets.token_hex(12)
        created = int(time.time())
        streams = [self.engine.stream("chat", model, r, None) for r in reqs]
        replies = [ReplyStream(plan, ToolStream(tools)) for _ in reqs]
        want_logprobs = bool(req.get("logprobs"))
        if not data.get("stream"):
            # A client that hangs up meanwhile stops every choice at once.
            results = await unless_gone(request, run_all([
                collect(s, None, r) for s, r in zip(streams, replies, strict=True)]))
            choices = []
            for i, (reply, (stats, calls)) in enumerate(zip(replies, results, strict=True)):
                message: dict[str, Any] = {"role": "assistant",
                                           "content": None if calls else reply.text}
                if reply.thought:
                    message.update(reasoning_fields(reply.thought))
                if calls:
                    message["tool_calls"] = _openai_calls(calls)
                choices.append({"index": i, "message": message,
                                "logprobs": {"content": openai_logprobs(reply.logprobs),
                                             "refusal": None} if want_logprobs else None,
                                "finish_reason": _finish(stats, calls)})
            return JSONResponse({
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "system_fingerprint": "llmtui", "choices": choices,
                "usage": _usage([stats for stats, _ in results])})
        include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
        # The first event comes before the answer: an error (missing model, prompt too
        # long) is then an HTTP status, not a broken stream.
        merged = merge_streams(streams)
        first = await anext(merged, None)
        started: set[int] = set()
        finished: dict[int, dict[str, Any]] = {}

        def chunk(i: int, delta: dict[str, Any], finish: str | None = None,
                  logprobs: list[dict[str, Any]] | None = None) -> bytes:
            return _sse({"id": cid, "object": "chat.completion.chunk", "created": created,
                         "model": model, "system_fingerprint": "llmtui",
                         "choices": [{"index": i, "delta": delta,
                                      "logprobs": {"content": openai_logprobs(logprobs),
                                                   "refusal": None}
                                      if logprobs else None,
                                      "finish_reason": finish}]})

        def render(item: tuple[int, dict[str, Any]]) -> Iterator[bytes]:
            i, event = item
            if i not in started:
                started.add(i)
                yield chunk(i, {"role": "assistant", "content": ""})
            reply = replies[i]
            if "stats" not in event:
                piece = reply.feed(event)
                yield from pieces(i, piece)
                return
            stats = event["stats"]
            rest, calls = reply.finish()
            yield from pieces(i, rest)
            if calls:
                deltas = [dict(c, index=k) for k, c in enumerate(_openai_calls(calls))]
                yield chunk(i, {"tool_calls": deltas})
            yield chunk(i, {}, _finish(stats, calls))
            finished[i] = stats
            if include_usage and len(finished) == len(reqs):
                yield _sse({"id": cid, "object": "chat.completion.chunk", "created": created,
                            "model": model, "choices": [],
                            "usage": _usage(list(finished.values()))})

        def pieces(i: int, piece: Piece) -> Iterator[bytes]:
            # Like Ollama: reasoning and answer never share a chunk.
            if piece.thinking:
                yield chunk(i, reasoning_fields(piece.thinking),
                            logprobs=piece.logprobs or None)
            if piece.content or (piece.logprobs and not piece.thinking):
                yield chunk(i, {"content": piece.content},
                            logprobs=None if piece.thinking else piece.logprobs or None)
        return sse_response(merged, first, render)  # type: ignore[arg-type]

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
        # Legacy logprobs is a number: how many alternatives per token (0: just the token).
        top = data.get("logprobs")
        if isinstance(top, float) and top.is_integer():
            top = int(top)
        if top is not None and (isinstance(top, bool) or not isinstance(top, int)):
            raise InvalidInput("'logprobs' must be a whole number from 0 to 20")
        want, top = check_logprobs(top is not None, top)
        req.update(logprob_fields(want, top))
        reqs = self._requests(data, req)
        cid = "cmpl-" + secrets.token_hex(12)
        created = int(time.time())
        streams = [self.engine.stream("generate", model, r, None) for r in reqs]

        def obj(choices: list[dict[str, Any]]) -> dict[str, Any]:
            return {"id": cid, "object": "text_completion", "created": created, "model": model,
                    "system_fingerprint": "llmtui", "choices": choices}

        def choice(i: int, text: str, finish: str | None,
                   logprobs: list[dict[str, Any]] | None, offset: int = 0) -> dict[str, Any]:
            return {"index": i, "text": text, "finish_reason": finish,
                    "logprobs": completion_logprobs(logprobs or [], offset) if want else None}

        if not data.get("stream"):
            replies = [ReplyStream(None, ToolStream(None)) for _ in reqs]
            results = await unless_gone(request, run_all([
                collect(s, None, r) for s, r in zip(streams, replies, strict=True)]))
            return JSONResponse({**obj([
                choice(i, reply.text, _finish(stats, []), reply.logprobs)
                for i, (reply, (stats, _)) in enumerate(zip(replies, results, strict=True))]),
                "usage": _usage([stats for stats, _ in results])})
        include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
        merged = merge_streams(streams)
        first = await anext(merged, None)
        offsets = [0] * len(reqs)
        finished: dict[int, dict[str, Any]] = {}

        def render(item: tuple[int, dict[str, Any]]) -> Iterator[bytes]:
            i, event = item
            if "stats" not in event:
                text = str(event.get("text") or "")
                yield _sse(obj([choice(i, text, None, event.get("logprobs"), offsets[i])]))
                offsets[i] += len(text)
                return
            yield _sse(obj([choice(i, "", _finish(event["stats"], []), None)]))
            finished[i] = event["stats"]
            if include_usage and len(finished) == len(reqs):
                yield _sse({**obj([]), "usage": _usage(list(finished.values()))})
        return sse_response(merged, first, render)  # type: ignore[arg-type]

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
        vectors = shorten_vectors(result["embeddings"], data.get("dimensions"))
        items = []
        for i, vec in enumerate(vectors):
            value: Any = vec
            if encoding == "base64":
                value = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
            items.append({"object": "embedding", "index": i, "embedding": value})
        tokens = int(result.get("tokens") or 0)
        return JSONResponse({"object": "list", "data": items, "model": model,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
