"""Anthropic's Messages API (``POST /v1/messages``, ``/v1/messages/count_tokens``), so
Claude Code and other Anthropic clients run on local models.

Content blocks (text, base64 images, ``tool_use``, ``tool_result``, ``thinking``) become
chat messages; ``tool_choice`` (auto/any/tool/none) is enforced as on /v1 (a grammar for
any and tool); ``thinking`` maps to the model's reasoning. Streaming sends the events
in Anthropic's order: message_start, content_block_start/delta/stop per block,
message_delta (stop reason, usage), message_stop. Errors use Anthropic's error shape.
The ``x-api-key`` header works as the API key (llmtui/api/security.py).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from llmtui.api.common import first_event, guarded, model_field, scrub, unless_gone
from llmtui.api.images import RawImage
from llmtui.api.ollama import OllamaAPI, ToolStream
from llmtui.api.reply import Piece, ReplyStream, collect
from llmtui.api.validate import check_format
from llmtui.backends.tools import check_tools, tool_choice
from llmtui.errors import InvalidInput, LlmtuiError

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                429: "rate_limit_error", 503: "overloaded_error"}


def anthropic_error_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error"),
                                       "message": message}}


def anthropic_error(exc: LlmtuiError) -> JSONResponse:
    return JSONResponse(anthropic_error_body(exc.http_status, scrub(str(exc))),
                        status_code=exc.http_status)


def _sse(event: dict[str, Any]) -> bytes:
    return (f"event: {event['type']}\n"
            f"data: {json.dumps(event, ensure_ascii=False)}\n\n").encode()


def _text(content: Any, where: str) -> str:
    """A block list (or string) of text only: system prompts and tool results."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise InvalidInput(f"{where} must be a string or a list of blocks")
    out = []
    for block in content:
        if not isinstance(block, dict) or block.get("type") != "text":
            kind = block.get("type") if isinstance(block, dict) else None
            raise InvalidInput(f"{where}: only text blocks are supported here, not {kind!r}")
        out.append(str(block.get("text") or ""))
    return "\n".join(out)


def _image(block: dict[str, Any], label: str) -> RawImage:
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") != "base64" or \
            not isinstance(source.get("data"), str):
        raise InvalidInput(f"{label}: only base64 image sources are supported "
                           "(source.type \"base64\" with data)")
    return RawImage(label, source["data"])


def convert_messages(data: dict[str, Any]) -> tuple[list[dict[str, Any]], list[list[RawImage]]]:
    """``system`` and ``messages`` as chat messages, and each one's images."""
    out: list[dict[str, Any]] = []
    groups: list[list[RawImage]] = []
    system = _text(data.get("system"), "'system'")
    if system:
        out.append({"role": "system", "content": system})
        groups.append([])
    raw = data.get("messages")
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("'messages' must be a non-empty list")
    names: dict[str, str] = {}  # tool_use id -> tool name, for the results
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant", "system"):
            raise InvalidInput(f"messages.{i}: role must be \"user\" or \"assistant\"")
        role, content = m["role"], m.get("content")
        if role == "system":  # Claude Code sends some instructions as system messages
            out.append({"role": "system", "content": _text(content, f"messages.{i}")})
            groups.append([])
            continue
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            groups.append([])
            continue
        if not isinstance(content, list):
            raise InvalidInput(f"messages.{i}.content must be a string or a list of blocks")
        texts: list[str] = []
        images: list[RawImage] = []
        calls: list[dict[str, Any]] = []
        thinking: list[str] = []
        results: list[dict[str, Any]] = []
        for j, block in enumerate(content):
            kind = block.get("type") if isinstance(block, dict) else None
            where = f"messages.{i}.content.{j}"
            assert isinstance(block, dict) or kind is None
            if kind == "text":
                texts.append(str(block.get("text") or ""))
            elif kind == "image" and role == "user":
                images.append(_image(block, f"image {len(images) + 1} of message {i}"))
            elif kind == "tool_use" and role == "assistant":
                args = block.get("input") or {}
                if not isinstance(args, dict) or not isinstance(block.get("name"), str):
                    raise InvalidInput(f"{where}: tool_use needs a name and an input object")
                names[str(block.get("id"))] = block["name"]
                calls.append({"function": {"name": block["name"], "arguments": args}})
            elif kind == "tool_result" and role == "user":
                text = _text(block.get("content"), where)
                if block.get("is_error"):
                    text = f"error: {text}"
                call_id = str(block.get("tool_use_id") or "")
                results.append({"role": "tool", "content": text, "tool_call_id": call_id,
                                "tool_name": names.get(call_id, "")})
            elif kind in ("thinking", "redacted_thinking") and role == "assistant":
                thinking.append(str(block.get("thinking") or ""))
            else:
                raise InvalidInput(f"{where}: unsupported block type {kind!r} in a {role} "
                                   "message")
        for result in results:  # tool results come first in a user turn
            out.append(result)
            groups.append([])
        if texts or images or calls or thinking or not results:
            msg: dict[str, Any] = {"role": role, "content": "\n".join(texts)}
            if calls:
                msg["tool_calls"] = calls
            if thinking and any(thinking):
                msg["thinking"] = "".join(thinking)
            out.append(msg)
            groups.append(images)
    return out, groups


def convert_tools(data: dict[str, Any]) -> tuple[list[dict[str, Any]] | None,
                                                  dict[str, Any] | None]:
    """``tools`` ({name, description, input_schema}) and ``tool_choice``: (the tools in
    chat form, a schema that forces a call or None)."""
    raw = data.get("tools")
    tools = None
    if raw not in (None, []):
        if not isinstance(raw, list):
            raise InvalidInput("'tools' must be a list")
        chat = []
        for i, tool in enumerate(raw):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                raise InvalidInput(f"tools.{i}: a tool needs a name and an input_schema")
            if tool.get("type") not in (None, "custom"):
                raise InvalidInput(f"tools.{i}: server tools ({tool.get('type')}) are not "
                                   "supported; only client tools with an input_schema")
            chat.append({"type": "function", "function": {
                "name": tool["name"], "description": tool.get("description") or "",
                "parameters": tool.get("input_schema") or {"type": "object"}}})
        tools = check_tools(chat)
    choice = data.get("tool_choice")
    if choice is None:
        return tools, None
    kind = choice.get("type") if isinstance(choice, dict) else None
    assert isinstance(choice, dict) or kind is None
    mapped: Any
    if kind == "auto":
        mapped = "auto"
    elif kind == "any":
        mapped = "required"
    elif kind == "none":
        mapped = "none"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        mapped = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise InvalidInput('tool_choice must be {"type": "auto"}, {"type": "any"}, '
                           '{"type": "none"} or {"type": "tool", "name": "..."}')
    return tool_choice(tools, mapped)


def _output_format(data: dict[str, Any]) -> Any:
    """``output_config.format`` ({"type": "json_schema", "schema": {...}}): structured
    output, enforced with a grammar as Ollama's ``format`` is."""
    config = data.get("output_config")
    if config is None:
        return None
    fmt = config.get("format") if isinstance(config, dict) else None
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or \
            not isinstance(fmt.get("schema"), dict):
        raise InvalidInput('output_config.format must be {"type": "json_schema", '
                           '"schema": {...}}')
    return check_format(fmt["schema"])


def _stop_reason(stats: dict[str, Any], calls: list[dict[str, Any]]) -> str:
    if calls:
        return "tool_use"
    return "max_tokens" if stats.get("done_reason") == "length" else "end_turn"


class AnthropicAPI:
    def __init__(self, ollama: OllamaAPI) -> None:
        self.o = ollama
        self.engine = ollama.engine

    def routes(self) -> list[Route]:
        return [Route("/v1/messages", guarded(self.messages, anthropic_error),
                      methods=["POST"]),
                Route("/v1/messages/count_tokens", guarded(self.count_tokens,
                                                           anthropic_error),
                      methods=["POST"])]

    def _options(self, data: dict[str, Any]) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        for key in ("temperature", "top_p", "top_k"):
            if data.get(key) is not None:
                opts[key] = data[key]
        if data.get("max_tokens") is not None:
            opts["num_predict"] = data["max_tokens"]
        stops = data.get("stop_sequences")
        if stops is not None:
            if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
                raise InvalidInput("'stop_sequences' must be a list of strings")
            opts["stop"] = stops
        return self.o.options(opts)

    @staticmethod
    def _think(data: dict[str, Any]) -> Any:
        thinking = data.get("thinking")
        if thinking is None:
            return None
        kind = thinking.get("type") if isinstance(thinking, dict) else None
        if kind in ("enabled", "adaptive"):
            return True
        if kind == "disabled":
            return False
        raise InvalidInput('thinking must be {"type": "enabled", "budget_tokens": N} or '
                           '{"type": "disabled"}')

    async def _request(self, data: dict[str, Any], model: str) -> tuple[dict[str, Any], Any]:
        messages, groups = convert_messages(data)
        messages = self.o.messages(messages, images=True)
        tools, forced = convert_tools(data)
        req: dict[str, Any] = {"messages": messages, "tools": tools,
                               "format": forced or _output_format(data),
                               "options": self._options(data), "truncate": False}
        req["messages"] = await self.o.with_images(model, messages, groups)
        think = self._think(data)
        try:
            plan = await self.o.think_and_logprobs({"think": think}, model, req)
        except InvalidInput as exc:
            # Agents (Claude Code) ask every model to think: one that cannot just answers.
            if think is None or "does not support thinking" not in str(exc):
                raise
            plan = await self.o.think_and_logprobs({"think": None}, model, req)
        return req, (plan, tools)

    async def messages(self, request: Request) -> Response:
        """Create a message (Anthropic's Messages API), streamed as SSE or whole."""
        data = await self.o.json(request)
        model = model_field(data)
        limit = data.get("max_tokens")
        if isinstance(limit, float) and limit.is_integer():
            data["max_tokens"] = limit = int(limit)  # JSON's 5.0 is a whole number
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):
            raise InvalidInput("max_tokens must be a whole number of at least 1")
        req, (plan, tools) = await self._request(data, model)
        mid = "msg_" + secrets.token_hex(12)
        events = self.engine.stream("chat", model, req, None)
        reply = ReplyStream(plan, ToolStream(tools))
        if not data.get("stream"):
            stats, calls = await unless_gone(request, collect(events, None, reply))
            blocks: list[dict[str, Any]] = []
            if reply.thought:
                blocks.append({"type": "thinking", "thinking": reply.thought,
                               "signature": ""})
            if reply.text and not calls:
                blocks.append({"type": "text", "text": reply.text})
            blocks.extend(_tool_blocks(calls))
            return JSONResponse({
                "id": mid, "type": "message", "role": "assistant", "model": model,
                "content": blocks, "stop_reason": _stop_reason(stats, calls),
                "stop_sequence": None, "usage": _usage(stats)})
        first = await first_event(events)  # errors before the stream are HTTP statuses
        writer = BlockWriter()

        async def body() -> AsyncIterator[bytes]:
            try:
                yield _sse({"type": "message_start", "message": {
                    "id": mid, "type": "message", "role": "assistant", "model": model,
                    "content": [], "stop_reason": None, "stop_sequence": None,
                    "usage": {"input_tokens": 0, "output_tokens": 0}}})
                yield _sse({"type": "ping"})
                event = first
                while event is not None:
                    if "stats" in event:
                        rest, calls = reply.finish()
                        for out in writer.piece(rest):
                            yield _sse(out)
                        for out in writer.finish(calls):
                            yield _sse(out)
                        stats = event["stats"]
                        yield _sse({"type": "message_delta",
                                    "delta": {"stop_reason": _stop_reason(stats, calls),
                                              "stop_sequence": None},
                                    "usage": _usage(stats)})
                        yield _sse({"type": "message_stop"})
                    else:
                        for out in writer.piece(reply.feed(event)):
                            yield _sse(out)
                    event = await anext(events, None)
            except LlmtuiError as exc:
                yield _sse(anthropic_error_body(exc.http_status, scrub(str(exc))))
            finally:
                await events.aclose()

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def count_tokens(self, request: Request) -> Response:
        """Count a request's input tokens with the model's tokenizer (the messages' text,
        the system prompt and the tools; the chat template's markup is not counted)."""
        data = await self.o.json(request)
        model = model_field(data)
        messages, _ = convert_messages(data)
        tools, _ = convert_tools(data)
        parts = [m["content"] for m in messages]
        parts += [json.dumps(c, ensure_ascii=False) for m in messages
                  for c in m.get("tool_calls") or []]
        if tools:
            parts.append(json.dumps([t["function"] for t in tools], ensure_ascii=False))
        tokens = await self.engine.tokenize(model, "\n".join(parts), None)
        return JSONResponse({"input_tokens": len(tokens)})


def _usage(stats: dict[str, Any]) -> dict[str, Any]:
    return {"input_tokens": int(stats.get("prompt_tokens") or 0),
            "output_tokens": int(stats.get("completion_tokens") or 0),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": int(stats.get("cached_tokens") or 0)}


def _tool_blocks(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "tool_use", "id": "toolu_" + secrets.token_hex(12),
             "name": c["function"]["name"], "input": c["function"]["arguments"]}
            for c in calls]


class BlockWriter:
    """A streamed message's content blocks: thinking, then text, then tool_use blocks,
    each opened, filled with deltas and closed in order."""

    def __init__(self) -> None:
        self.index = -1
        self.open: str | None = None

    def _start(self, kind: str, block: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield from self._stop()
        self.index += 1
        self.open = kind
        yield {"type": "content_block_start", "index": self.index, "content_block": block}

    def _stop(self) -> Iterator[dict[str, Any]]:
        if self.open is None:
            return
        if self.open == "thinking":
            yield {"type": "content_block_delta", "index": self.index,
                   "delta": {"type": "signature_delta", "signature": ""}}
        yield {"type": "content_block_stop", "index": self.index}
        self.open = None

    def piece(self, piece: Piece) -> Iterator[dict[str, Any]]:
        if piece.thinking:
            if self.open != "thinking":
                yield from self._start("thinking", {"type": "thinking", "thinking": "",
                                                    "signature": ""})
            yield {"type": "content_block_delta", "index": self.index,
                   "delta": {"type": "thinking_delta", "thinking": piece.thinking}}
        if piece.content:
            if self.open != "text":
                yield from self._start("text", {"type": "text", "text": ""})
            yield {"type": "content_block_delta", "index": self.index,
                   "delta": {"type": "text_delta", "text": piece.content}}

    def finish(self, calls: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for block in _tool_blocks(calls):
            yield from self._start("tool_use", {**block, "input": {}})
            yield {"type": "content_block_delta", "index": self.index,
                   "delta": {"type": "input_json_delta",
                             "partial_json": json.dumps(block["input"], ensure_ascii=False)}}
        if self.index < 0:  # an empty reply is still one (empty) text block
            yield from self._start("text", {"type": "text", "text": ""})
        yield from self._stop()
