"""OpenAI's Responses API (``POST /v1/responses``): the stateless subset Ollama serves.

Input as a string or a list of items (messages with text parts, function calls and their
outputs, earlier reasoning), ``instructions``, ``max_output_tokens``, ``temperature``,
``top_p``, ``reasoning.effort``, function ``tools`` with ``tool_choice``, ``text.format``
(``json_schema``, ``json_object``) and SSE streaming with the documented event sequence.
Nothing is stored: ``previous_response_id`` and ``background`` are refused.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from llmtui.api.common import first_event, guarded, model_field
from llmtui.api.ollama import OllamaAPI, ToolStream
from llmtui.api.openai import _openai_calls, openai_error, openai_error_body
from llmtui.api.reply import Piece, ReplyStream, collect
from llmtui.api.validate import check_format
from llmtui.backends.thinking import think_from_effort
from llmtui.backends.tools import check_tools, tool_choice
from llmtui.errors import InvalidInput, LlmtuiError


def _text_of(content: Any, where: str) -> str:
    """A message's content: a string, or a list of text parts."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise InvalidInput(f"{where}: content must be a string or a list of parts")
    texts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
            texts.append(str(part.get("text") or ""))
        elif kind in ("input_image", "input_file", "input_audio"):
            raise InvalidInput(f"{where}: /v1/responses takes text only ({kind}); send "
                               "images to /v1/chat/completions or /api/chat")
        else:
            raise InvalidInput(f"{where}: unsupported content part {kind!r}")
    return "".join(texts)


def input_messages(data: dict[str, Any]) -> list[dict[str, Any]]:
    """``instructions`` and ``input`` as chat messages (Ollama's conversion)."""
    messages: list[dict[str, Any]] = []
    if data.get("instructions"):
        if not isinstance(data["instructions"], str):
            raise InvalidInput("'instructions' must be a string")
        messages.append({"role": "system", "content": data["instructions"]})
    raw = data.get("input")
    if isinstance(raw, str):
        messages.append({"role": "user", "content": raw})
        return messages
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("'input' must be a string or a non-empty list of items")
    thinking = ""  # a reasoning item goes with the assistant message after it
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidInput(f"input item {i} must be an object")
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "reasoning":
            thinking = str(item.get("encrypted_content") or "") or _text_of(
                item.get("summary") or item.get("content"), f"input item {i}")
        elif kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise InvalidInput(f"input item {i} has an invalid role {role!r}")
            msg: dict[str, Any] = {"role": "system" if role == "developer" else role,
                                   "content": _text_of(item.get("content"),
                                                       f"input item {i}")}
            if role == "assistant" and thinking:
                msg["thinking"], thinking = thinking, ""
            messages.append(msg)
        elif kind == "function_call":
            try:
                args = json.loads(item.get("arguments") or "{}")
            except (TypeError, ValueError):
                raise InvalidInput(f"input item {i}: arguments are not valid JSON") from None
            call = {"function": {"name": str(item.get("name") or ""), "arguments": args}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
            if thinking:
                messages[-1]["thinking"], thinking = thinking, ""
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append({"role": "tool", "content": output if isinstance(output, str)
                             else _text_of(output, f"input item {i}")})
        else:
            raise InvalidInput(f"input item {i}: unsupported type {kind!r}")
    return messages


def _tools(raw: Any) -> list[dict[str, Any]] | None:
    """Responses' flat function tools ({"type", "name", "parameters"}) in chat form."""
    if raw in (None, []):
        return None
    if not isinstance(raw, list):
        raise InvalidInput("'tools' must be a list")
    out = []
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise InvalidInput(f"tool {i}: only function tools are supported, not {kind!r}")
        fn: dict[str, Any] = tool["function"] if isinstance(tool.get("function"), dict) \
            else tool
        out.append({"type": "function", "function": {
            "name": fn.get("name"), "description": fn.get("description") or "",
            "parameters": fn.get("parameters") or {}}})
    return check_tools(out)


def _format(text: Any) -> Any:
    fmt = text.get("format") if isinstance(text, dict) else None
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        if not isinstance(fmt.get("schema"), dict):
            raise InvalidInput("text.format.schema must be a JSON schema object")
        return check_format(fmt["schema"])
    raise InvalidInput("text.format.type must be text, json_object or json_schema")


def _sse(event: dict[str, Any]) -> bytes:
    return (f"event: {event['type']}\n"
            f"data: {json.dumps(event, ensure_ascii=False)}\n\n").encode()


class ResponsesAPI:
    def __init__(self, ollama: OllamaAPI) -> None:
        self.o = ollama
        self.engine = ollama.engine

    def routes(self) -> list[Route]:
        return [Route("/v1/responses", guarded(self.create, openai_error), methods=["POST"])]

    def _options(self, data: dict[str, Any]) -> dict[str, Any]:
        raw = data.get("options")
        if raw is not None and not isinstance(raw, dict):
            raise InvalidInput("'options' must be an object")
        opts = dict(raw or {})
        for key in ("temperature", "top_p", "seed", "top_k", "num_ctx"):
            if data.get(key) is not None:
                opts[key] = data[key]
        if data.get("max_output_tokens") is not None:
            opts["num_predict"] = data["max_output_tokens"]
        return self.o.options(opts)

    async def create(self, request: Request) -> Response:
        """Create a model response (stateless): text, reasoning, function calls, JSON."""
        data = await self.o.json(request)
        model = model_field(data)
        if data.get("previous_response_id"):
            raise InvalidInput("previous_response_id is not supported: responses are not "
                               "stored; send the earlier items in 'input'")
        if data.get("background"):
            raise InvalidInput("background responses are not supported")
        messages = self.o.messages(input_messages(data))
        tools, forced = tool_choice(_tools(data.get("tools")), data.get("tool_choice"))
        req: dict[str, Any] = {"messages": messages, "tools": tools,
                               "format": forced or _format(data.get("text")),
                               "options": self._options(data), "truncate": False}
        reasoning = data.get("reasoning")
        effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
        plan = await self.o.think_and_logprobs({"think": think_from_effort(effort)}, model, req)
        rid = "resp_" + secrets.token_hex(12)
        shell = Shell(rid, model, data, tools)
        events = self.engine.stream("chat", model, req, None)
        reply = ReplyStream(plan, ToolStream(tools))
        if not data.get("stream"):
            stats, calls = await collect(events, None, reply)
            return JSONResponse(shell.final(reply.thought, "" if calls else reply.text,
                                            calls, stats))
        first = await first_event(events)  # errors before the stream are HTTP statuses

        async def body() -> AsyncIterator[bytes]:
            try:
                for out in shell.start():
                    yield _sse(out)
                event = first
                while event is not None:
                    if "stats" in event:
                        rest, calls = reply.finish()
                        for out in shell.piece(rest):
                            yield _sse(out)
                        for out in shell.finish(calls, event["stats"]):
                            yield _sse(out)
                    else:
                        for out in shell.piece(reply.feed(event)):
                            yield _sse(out)
                    event = await anext(events, None)
            except LlmtuiError as exc:
                yield _sse(shell.event("response.failed", response=shell.response(
                    "failed", [], None, error=openai_error_body(exc)["error"])))
            finally:
                await events.aclose()
        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})


class Shell:
    """One response's envelope and its stream of events, in OpenAI's sequence: created,
    in_progress, a reasoning item, a message (or function call) item, completed."""

    def __init__(self, rid: str, model: str, data: dict[str, Any],
                 tools: list[dict[str, Any]] | None) -> None:
        self.rid = rid
        self.model = model
        self.data = data
        self.tools = [{"type": "function", "name": t["function"]["name"],
                       "description": t["function"]["description"],
                       "parameters": t["function"]["parameters"], "strict": False}
                      for t in tools or []]
        self.created = int(time.time())
        self.seq = 0
        self.index = 0  # output index of the item being written
        self.items: list[dict[str, Any]] = []
        self.reasoning: list[str] | None = None
        self.text: list[str] | None = None
        self.rs_id = "rs_" + rid.removeprefix("resp_")
        self.msg_id = "msg_" + rid.removeprefix("resp_")

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        out = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return out

    def response(self, status: str, output: list[dict[str, Any]],
                 stats: dict[str, Any] | None, error: Any = None) -> dict[str, Any]:
        d = self.data
        text = d.get("text") if isinstance(d.get("text"), dict) else {}
        reasoning = d.get("reasoning") if isinstance(d.get("reasoning"), dict) else None
        out: dict[str, Any] = {
            "id": self.rid, "object": "response", "created_at": self.created,
            "status": status, "error": error, "incomplete_details": None,
            "instructions": d.get("instructions"), "max_output_tokens":
                d.get("max_output_tokens"), "model": self.model, "output": output,
            "parallel_tool_calls": True, "previous_response_id": None,
            "reasoning": {"effort": reasoning.get("effort"), "summary": None}
            if reasoning else None,
            "store": False, "temperature": d.get("temperature", 1.0),
            "text": {"format": (text or {}).get("format") or {"type": "text"}},
            "tool_choice": d.get("tool_choice") or "auto", "tools": self.tools,
            "top_p": d.get("top_p", 1.0), "truncation": "disabled", "metadata": {},
            "usage": None,
        }
        if stats is not None:
            p = int(stats.get("prompt_tokens") or 0)
            c = int(stats.get("completion_tokens") or 0)
            out["usage"] = {"input_tokens": p, "input_tokens_details": {"cached_tokens": 0},
                            "output_tokens": c,
                            "output_tokens_details": {"reasoning_tokens": 0},
                            "total_tokens": p + c}
            if stats.get("done_reason") == "length" and status == "completed":
                out["status"] = "incomplete"
                out["incomplete_details"] = {"reason": "max_output_tokens"}
        return out

    # -- whole -----------------------------------------------------------------------------

    def final(self, thinking: str, text: str, calls: list[dict[str, Any]],
              stats: dict[str, Any]) -> dict[str, Any]:
        output = []
        if thinking:
            output.append(self._reasoning_item(thinking))
        if calls:
            output.extend(self._call_items(calls))
        else:
            output.append(self._message_item(text))
        return self.response("completed", output, stats)

    def _reasoning_item(self, thinking: str) -> dict[str, Any]:
        return {"id": self.rs_id, "type": "reasoning", "encrypted_content": thinking,
                "summary": [{"type": "summary_text", "text": thinking}]}

    def _message_item(self, text: str, status: str = "completed") -> dict[str, Any]:
        return {"id": self.msg_id, "type": "message", "status": status, "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": [],
                             "logprobs": []}]}

    def _call_items(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"id": f"fc_{self.rid.removeprefix('resp_')}_{i}", "type": "function_call",
                 "status": "completed", "call_id": c["id"], "name": c["function"]["name"],
                 "arguments": c["function"]["arguments"]}
                for i, c in enumerate(_openai_calls(calls))]

    # -- streamed --------------------------------------------------------------------------

    def start(self) -> Iterator[dict[str, Any]]:
        yield self.event("response.created", response=self.response("in_progress", [], None))
        yield self.event("response.in_progress",
                         response=self.response("in_progress", [], None))

    def piece(self, piece: Piece) -> Iterator[dict[str, Any]]:
        if piece.thinking:
            if self.reasoning is None:
                self.reasoning = []
                yield self.event("response.output_item.added", output_index=self.index,
                                 item={"id": self.rs_id, "type": "reasoning", "summary": []})
                yield self.event("response.reasoning_summary_part.added", item_id=self.rs_id,
                                 output_index=self.index, summary_index=0,
                                 part={"type": "summary_text", "text": ""})
            self.reasoning.append(piece.thinking)
            yield self.event("response.reasoning_summary_text.delta", item_id=self.rs_id,
                             output_index=self.index, summary_index=0, delta=piece.thinking)
        if piece.content:
            yield from self._end_reasoning()
            yield from self._open_message()
            assert self.text is not None
            self.text.append(piece.content)
            yield self.event("response.output_text.delta", item_id=self.msg_id,
                             output_index=self.index, content_index=0, delta=piece.content,
                             logprobs=[])

    def _open_message(self) -> Iterator[dict[str, Any]]:
        """Start the message item and its text part, once."""
        if self.text is not None:
            return
        self.text = []
        yield self.event("response.output_item.added", output_index=self.index,
                         item={**self._message_item("", "in_progress"), "content": []})
        yield self.event("response.content_part.added", item_id=self.msg_id,
                         output_index=self.index, content_index=0,
                         part={"type": "output_text", "text": "", "annotations": [],
                               "logprobs": []})

    def _end_reasoning(self) -> Iterator[dict[str, Any]]:
        if self.reasoning is None:
            return
        thinking = "".join(self.reasoning)
        self.reasoning = None
        item = self._reasoning_item(thinking)
        part = {"type": "summary_text", "text": thinking}
        yield self.event("response.reasoning_summary_text.done", item_id=self.rs_id,
                         output_index=self.index, summary_index=0, text=thinking)
        yield self.event("response.reasoning_summary_part.done", item_id=self.rs_id,
                         output_index=self.index, summary_index=0, part=part)
        yield self.event("response.output_item.done", output_index=self.index, item=item)
        self.items.append(item)
        self.index += 1

    def finish(self, calls: list[dict[str, Any]],
               stats: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield from self._end_reasoning()
        for item in self._call_items(calls):
            yield self.event("response.output_item.added", output_index=self.index,
                             item={**item, "status": "in_progress", "arguments": ""})
            yield self.event("response.function_call_arguments.delta", item_id=item["id"],
                             output_index=self.index, delta=item["arguments"])
            yield self.event("response.function_call_arguments.done", item_id=item["id"],
                             output_index=self.index, arguments=item["arguments"])
            yield self.event("response.output_item.done", output_index=self.index, item=item)
            self.items.append(item)
            self.index += 1
        if not calls:
            text = "".join(self.text or [])
            yield from self._open_message()  # an empty reply is still a message
            part = self._message_item(text)["content"][0]
            yield self.event("response.output_text.done", item_id=self.msg_id,
                             output_index=self.index, content_index=0, text=text,
                             logprobs=[])
            yield self.event("response.content_part.done", item_id=self.msg_id,
                             output_index=self.index, content_index=0, part=part)
            item = self._message_item(text)
            yield self.event("response.output_item.done", output_index=self.index, item=item)
            self.items.append(item)
        # Always "response.completed" (as Ollama sends it): the openai package's stream
        # helper knows no other end; a reply cut by max_output_tokens says so in its status.
        yield self.event("response.completed", response=self.response("completed",
                                                                      self.items, stats))
