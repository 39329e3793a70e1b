"""Ollama's API on the daemon: the same paths, field names, NDJSON streams and errors.

Durations are nanoseconds, timestamps RFC 3339. Our extensions are extra fields or live
under /api/x/.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from llmtui import __version__
from llmtui.api.common import (
    Limits,
    error_body,
    error_response,
    first_event,
    guarded,
    model_field,
    now_rfc3339,
    ns,
    read_body,
    read_json,
    shorten_vectors,
    unless_gone,
)
from llmtui.api.images import RawImage, decode_images, ollama_images
from llmtui.api.reply import (
    Piece,
    ReplyStream,
    ThinkPlan,
    check_logprobs,
    collect,
    logprob_fields,
    plan_thinking,
)
from llmtui.api.validate import check_format, check_messages, check_options, check_text
from llmtui.backends.tools import check_tools, parse_tool_calls
from llmtui.engine.manager import EngineManager, parse_keep_alive
from llmtui.errors import InvalidInput, LlmtuiError, ModelNotFound
from llmtui.models.names import ModelName, parse_digest
from llmtui.models.store import Layer, Manifest

NDJSON = "application/x-ndjson"


def details(m: Manifest) -> dict[str, Any]:
    families = [m.family] if m.family else []
    if m.projector is not None:
        families.append("clip")  # as Ollama lists a vision model's projector
    return {
        "parent_model": "", "format": m.format, "family": m.family or "",
        "families": families or None,
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
    if stats.get("cached_tokens"):
        # Ollama's field: prompt tokens read from the cache (prompt_eval_count counts all).
        out["prompt_eval_cached_count"] = int(stats["cached_tokens"])
    if stats.get("draft_tokens"):
        # ours: speculative decoding's guesses, and how many the model kept
        out["draft_count"] = int(stats["draft_tokens"])
        out["draft_accepted_count"] = int(stats.get("draft_accepted") or 0)
    if stats.get("truncated_tokens"):
        out["truncated_tokens"] = int(stats["truncated_tokens"])
    return out


def piece_extras(piece: Piece) -> dict[str, Any]:
    """/api/generate's optional fields of a piece of reply: thinking and logprobs."""
    out: dict[str, Any] = {}
    if piece.thinking:
        out["thinking"] = piece.thinking
    if piece.logprobs:
        out["logprobs"] = piece.logprobs
    return out


def done_reason(stats: dict[str, Any]) -> str:
    reason = str(stats.get("done_reason") or "stop")
    return "stop" if reason == "cancel" else reason


class ToolStream:
    """Streams a reply while watching for a tool call.

    Text that could be the start of a call (JSON, a tag, a code fence) is held back until
    the reply shows what it is; plain answers stream as they come.
    """

    def __init__(self, tools: list[dict[str, Any]] | None) -> None:
        self.tools = tools
        self.held: list[str] = []
        self.streaming = tools is None

    def feed(self, text: str) -> str:
        if self.streaming:
            return text
        self.held.append(text)
        head = "".join(self.held).lstrip()
        if head and head[0] not in "{[<`":
            self.streaming = True
            out, self.held = "".join(self.held), []
            return out
        return ""

    def finish(self) -> tuple[str, list[dict[str, Any]]]:
        """(text not yet sent, tool calls) at the end of the reply."""
        rest = "".join(self.held)
        if self.tools and rest:
            calls = parse_tool_calls(rest, self.tools)
            if calls:
                return "", calls
        return rest, []


class OllamaAPI:
    """Route handlers bound to one engine."""

    def __init__(self, engine: EngineManager, limits: Limits | None = None) -> None:
        self.engine = engine
        self.limits = limits or Limits()

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
            Route("/api/create", e(self.create), methods=["POST"]),
            Route("/api/blobs/{digest}", e(self.blob), methods=["HEAD", "POST"]),
            Route("/api/x/tokenize", e(self.tokenize), methods=["POST"]),
            Route("/api/x/unload", e(self.unload), methods=["POST"]),
        ]

    @staticmethod
    def endpoint(fn: Callable[[Request], Any]) -> Callable[[Request], Any]:
        return guarded(fn, error_response)

    async def json(self, request: Request) -> dict[str, Any]:
        return await read_json(request, self.limits)

    def options(self, raw: Any, model: Any = None) -> dict[str, Any]:
        options = check_options(raw)
        if options.get("num_predict", 0) > self.limits.predict:
            raise InvalidInput(f"option 'num_predict' may be at most {self.limits.predict}")
        cpus = os.cpu_count() or 1
        if options.get("num_thread", 0) > cpus:  # more threads than cores only thrash
            options["num_thread"] = cpus
        if options.get("num_ctx") and isinstance(model, str):
            self._check_fits(model, int(options["num_ctx"]))
        return options

    def _check_fits(self, model: str, num_ctx: int) -> None:
        """A context that cannot fit the memory budget is the request's mistake (a 400),
        found before anything is evicted or loaded."""
        from llmtui.engine.manager import estimate_memory

        try:
            manifest, path = self.engine.store.resolve_file(ModelName.parse(model))
        except LlmtuiError:
            return  # the request fails on the model itself, with its own status
        need = estimate_memory(manifest, path, num_ctx)
        if need > self.engine.budget:
            raise InvalidInput(
                f"'num_ctx' {num_ctx} needs about {need / 1e9:.1f} GB for '{model}', more "
                f"than the memory budget ({self.engine.budget / 1e9:.1f} GB)",
                hint="ask for a smaller context, or raise memory_budget")

    def text(self, value: Any, field: str) -> str:
        text = check_text(value, field)
        if len(text) > self.limits.prompt_chars:
            raise InvalidInput(f"'{field}' is too long ({len(text)} characters; the limit "
                               f"is {self.limits.prompt_chars})")
        return text

    def messages(self, raw: Any, *, images: bool = False) -> list[dict[str, Any]]:
        messages = check_messages(raw, self.limits.messages, images=images)
        total = sum(len(m["content"]) for m in messages)
        if total > self.limits.prompt_chars:
            raise InvalidInput(f"the messages are too long ({total} characters; the limit "
                               f"is {self.limits.prompt_chars})")
        return messages

    # -- plain ------------------------------------------------------------------------------

    async def root(self, request: Request) -> Response:
        """Plain-text liveness probe, as Ollama answers it."""
        return PlainTextResponse("llmtui is running")

    async def version(self, request: Request) -> Response:
        """The daemon's version."""
        return JSONResponse({"version": __version__})

    # -- generation -------------------------------------------------------------------------

    @staticmethod
    def _line(obj: dict[str, Any]) -> bytes:
        return (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")

    async def _run(self, request: Request, kind: str, model: str, req: dict[str, Any],
                   keep_alive: Any, stream: bool, make_chunk: Callable[[Piece], dict[str, Any]],
                   make_final: Callable[[Piece, dict[str, Any], list[dict[str, Any]]],
                                        dict[str, Any]],
                   tools: list[dict[str, Any]] | None = None,
                   plan: ThinkPlan | None = None) -> Response:
        events = self.engine.stream(kind, model, req, keep_alive)
        reply = ReplyStream(plan, ToolStream(tools))
        if not stream:
            # A client that hangs up meanwhile stops it at once instead of leaving the
            # model busy for minutes.
            stats, calls = await unless_gone(request, collect(events, None, reply))
            whole = Piece(thinking=reply.thought, content="" if calls else reply.text,
                          logprobs=reply.logprobs)
            return JSONResponse(make_final(whole, stats, calls))
        first = await first_event(events)

        async def body() -> AsyncIterator[bytes]:
            try:
                event = first
                while event is not None:
                    if "stats" in event:
                        rest, calls = reply.finish()
                        if rest:
                            yield self._line(make_chunk(rest))
                        yield self._line(make_final(Piece(), event["stats"], calls))
                    else:
                        piece = reply.feed(event)
                        if piece:
                            yield self._line(make_chunk(piece))
                    event = await anext(events, None)
            except LlmtuiError as exc:
                yield self._line(error_body(exc))
            finally:
                await events.aclose()
        return StreamingResponse(body(), media_type=NDJSON)

    async def think_and_logprobs(self, data: dict[str, Any], model: str, req: dict[str, Any],
                                 raw_prompt: str | None = None) -> ThinkPlan:
        """Read ``think``, ``logprobs`` and ``top_logprobs`` into the engine request;
        the plan says how to split the reply."""
        want, top = check_logprobs(data.get("logprobs"), data.get("top_logprobs"))
        req.update(logprob_fields(want, top))
        plan = await plan_thinking(self.engine.store, model, data.get("think"),
                                   template=req.get("template"),
                                   structured=bool(req.get("format") or req.get("suffix")),
                                   raw_prompt=raw_prompt)
        if plan.think is not None:
            req["think"] = plan.think
        return plan

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

    async def images(self, model: str, groups: list[list[RawImage]]) -> list[list[Any]]:
        """Each group's images decoded for the worker (400 for a text-only model)."""
        return await decode_images(self.engine.store, model, groups, self.limits.images)

    @staticmethod
    def _keep_alive(data: dict[str, Any]) -> Any:
        keep_alive = data.get("keep_alive")
        if keep_alive is not None:
            parse_keep_alive(keep_alive)
        return keep_alive

    async def generate(self, request: Request) -> Response:
        """Complete a prompt (NDJSON stream unless "stream": false)."""
        data = await self.json(request)
        model = model_field(data)
        prompt = self.text(data.get("prompt"), "prompt")
        suffix = self.text(data.get("suffix"), "suffix")
        keep_alive = self._keep_alive(data)
        images = ollama_images(data.get("images"), "")
        if not prompt and not suffix and not images:
            return await self._load_or_unload(model, keep_alive, "response")
        context = data.get("context")
        if context is not None and (not isinstance(context, list) or not all(
                isinstance(t, int) and not isinstance(t, bool) for t in context)):
            raise InvalidInput("'context' must be a list of token ids")
        req = {
            "prompt": prompt, "suffix": suffix or None,
            "system": self.text(data.get("system"), "system") or None,
            "template": self.text(data.get("template"), "template") or None,
            "raw": bool(data.get("raw")), "format": check_format(data.get("format")),
            "options": self.options(data.get("options"), model), "context": context or None,
            "truncate": bool(data.get("truncate", False)),
        }
        if images:  # they belong to the prompt's user turn
            req["images"] = (await self.images(model, [images]))[0]
        stream = data.get("stream", True) is not False
        plan = await self.think_and_logprobs(data, model, req,
                                             raw_prompt=prompt if req["raw"] else None)

        def chunk(piece: Piece) -> dict[str, Any]:
            return {"model": model, "created_at": now_rfc3339(), "response": piece.content,
                    **piece_extras(piece), "done": False}

        def final(piece: Piece, stats: dict[str, Any], _calls: Any) -> dict[str, Any]:
            out = {"model": model, "created_at": now_rfc3339(), "response": piece.content,
                   **piece_extras(piece), "done": True, "done_reason": done_reason(stats)}
            if stats.get("context"):
                out["context"] = stats["context"]
            return {**out, **stats_fields(stats)}

        return await self._run(request, "generate", model, req, keep_alive, stream, chunk,
                               final, plan=plan)

    async def chat(self, request: Request) -> Response:
        """Chat over a list of messages; tools and tool calls as Ollama documents them."""
        data = await self.json(request)
        model = model_field(data)
        messages = self.messages(data.get("messages"), images=True)
        keep_alive = self._keep_alive(data)
        if not messages:
            return await self._load_or_unload(model, keep_alive, "message")
        groups = [ollama_images(m.get("images"), f" of message {i}")
                  for i, m in enumerate(messages, 1)]
        tools = check_tools(data.get("tools"))
        req = {
            "messages": messages, "format": check_format(data.get("format")),
            "options": self.options(data.get("options"), model), "tools": tools,
            "template": self.text(data.get("template"), "template") or None,
            "truncate": bool(data.get("truncate", False)),
        }
        req["messages"] = await self.with_images(model, messages, groups)
        stream = data.get("stream", True) is not False
        plan = await self.think_and_logprobs(data, model, req)

        def message(piece: Piece) -> dict[str, Any]:
            out: dict[str, Any] = {"role": "assistant", "content": piece.content}
            if piece.thinking:
                out["thinking"] = piece.thinking
            return out

        def chunk(piece: Piece) -> dict[str, Any]:
            extra = {"logprobs": piece.logprobs} if piece.logprobs else {}
            return {"model": model, "created_at": now_rfc3339(), "message": message(piece),
                    **extra, "done": False}

        def final(piece: Piece, stats: dict[str, Any],
                  calls: list[dict[str, Any]]) -> dict[str, Any]:
            msg = message(piece)
            if calls:
                msg["tool_calls"] = calls
            extra = {"logprobs": piece.logprobs} if piece.logprobs else {}
            return {"model": model, "created_at": now_rfc3339(), "message": msg, **extra,
                    "done": True, "done_reason": done_reason(stats), **stats_fields(stats)}

        return await self._run(request, "chat", model, req, keep_alive, stream, chunk, final,
                               tools, plan)

    async def with_images(self, model: str, messages: list[dict[str, Any]],
                          groups: list[list[RawImage]]) -> list[dict[str, Any]]:
        """The messages with each one's images decoded (and no empty ``images`` lists)."""
        decoded = await self.images(model, groups)
        out = []
        for message, images in zip(messages, decoded, strict=True):
            message = {k: v for k, v in message.items() if k != "images"}
            if images:
                message["images"] = images
            out.append(message)
        return out

    def inputs(self, raw: Any) -> list[str]:
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not all(isinstance(s, str) for s in inputs):
            raise InvalidInput("'input' must be a string or a list of strings")
        if len(inputs) > self.limits.inputs:
            raise InvalidInput(f"at most {self.limits.inputs} inputs per request")
        if sum(len(s) for s in inputs) > self.limits.prompt_chars:
            raise InvalidInput("the inputs are too long")
        empty = [i for i, s in enumerate(inputs) if not s.strip()]
        if empty:  # decided here, for every backend: nothing to embed is not a vector
            which = "'input'" if isinstance(raw, str) else f"input {empty[0]}"
            raise InvalidInput(f"{which} is empty: there is no text to embed")
        return inputs

    async def embed(self, request: Request) -> Response:
        """Embed one text or a list of texts."""
        data = await self.json(request)
        model = model_field(data)
        inputs = self.inputs(data.get("input"))
        options = self.options(data.get("options"), model)
        keep_alive = self._keep_alive(data)
        started = time.perf_counter()
        if not inputs:  # an empty list: the correct answer is an empty list
            self.engine.store.get(model)
            return JSONResponse({"model": model, "embeddings": [], "total_duration": 0,
                                 "load_duration": 0, "prompt_eval_count": 0})
        result = await self.engine.embed(model, inputs, options, keep_alive,
                                         truncate=data.get("truncate", True) is not False)
        return JSONResponse({
            "model": model,
            "embeddings": shorten_vectors(result["embeddings"], data.get("dimensions")),
            "total_duration": ns(time.perf_counter() - started),
            "load_duration": ns(result["load_seconds"]),
            "prompt_eval_count": result.get("tokens", 0),
        })

    async def embeddings(self, request: Request) -> Response:
        """The legacy single-prompt endpoint: {"prompt"} in, {"embedding"} out."""
        data = await self.json(request)
        model = model_field(data)
        prompt = self.text(data.get("prompt"), "prompt")
        options = self.options(data.get("options"))
        keep_alive = self._keep_alive(data)
        if not prompt.strip():  # as Ollama answers it: no text, no vector
            self.engine.store.get(model)
            return JSONResponse({"embedding": []})
        result = await self.engine.embed(model, [prompt], options, keep_alive)
        return JSONResponse({"embedding": result["embeddings"][0]})

    async def tokenize(self, request: Request) -> Response:
        """Token ids of a text, for a model."""
        data = await self.json(request)
        model = model_field(data)
        tokens = await self.engine.tokenize(model, self.text(data.get("text"), "text"),
                                            self._keep_alive(data))
        return JSONResponse({"model": model, "tokens": tokens, "count": len(tokens)})

    async def unload(self, request: Request) -> Response:
        """Unload a model now."""
        data = await self.json(request)
        model = model_field(data)
        return JSONResponse({"model": model, "unloaded": await self.engine.unload_model(model)})

    # -- models ------------------------------------------------------------------------------

    async def tags(self, request: Request) -> Response:
        """Installed models."""
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
        """Loaded models."""
        models = []
        for item in self.engine.ps():
            m: Manifest = item["manifest"]
            expires = item["expires_at"]
            runner = self.engine.runners.get(item["key"])
            info = runner.process.info if runner is not None else {}
            models.append({
                "name": m.name, "model": m.name, "size": item["size"], "digest": m.digest,
                "details": details(m),
                "expires_at": (datetime.fromtimestamp(expires, UTC).isoformat()
                               if expires else "2318-01-01T00:00:00Z"),
                "size_vram": item["size_vram"], "context_length": item["context_length"],
                "pid": item["pid"], "gpu_layers": item["gpu_layers"],
                "embedding": item["key"].endswith("#embed"),
                # ours: parallel slots, each with context_length tokens; requests running
                "slots": item["slots"], "active": item["active"], "waiting": item["waiting"],
                "backend": info.get("backend", "llama.cpp"),
                "device": info.get("device") or ("gpu" if item["size_vram"] else "cpu"),
                # ours: which devices hold its layers (RPC servers, GPUs, the CPU)
                **({"devices": item["devices"]} if item.get("devices") else {}),
            })
        return JSONResponse({"models": models})

    async def show(self, request: Request) -> Response:
        """A model's details, template, parameters and metadata."""
        data = await self.json(request)
        model = model_field(data)
        store = self.engine.store
        manifest, path = store.resolve_file(model)
        model_info: dict[str, Any] = {}
        metadata: dict[str, Any] = {}
        template = manifest.template or ""
        license_ = manifest.license or ""
        if manifest.format == "gguf":
            from llmtui.models.gguf_info import SkippedArray, read_info

            # Like Ollama: arrays of more than five items are empty unless verbose.
            info = await asyncio.to_thread(read_info, path, -1 if data.get("verbose") else 5)
            metadata = info.metadata
            model_info = {k: [] if isinstance(v, SkippedArray) else v
                          for k, v in metadata.items()
                          if k not in ("general.name", "tokenizer.chat_template")}
            model_info["general.parameter_count"] = info.parameters
            template = template or info.chat_template or ""
            license_ = info.license or license_
        from llmtui.models.capabilities import capabilities
        extra: dict[str, Any] = {}
        proj_path = store.projector_path(manifest)
        if proj_path is not None:
            from llmtui.models.gguf_info import read_info
            from llmtui.models.projector import projector_info

            proj = await asyncio.to_thread(read_info, proj_path)
            assert manifest.projector is not None
            # Ollama's field: the projector's GGUF metadata; ours: what it means.
            extra["projector_info"] = proj.metadata
            extra["projector"] = projector_info(proj, manifest.projector.filename).to_json()
        params = manifest.parameters_override or {}
        modelfile = (f"FROM {path.name}\n"
                     + (f"FROM {proj_path.name}\n" if proj_path is not None else "")
                     + (f'TEMPLATE """{template}"""\n' if template else "")
                     + (f'SYSTEM """{manifest.system}"""\n' if manifest.system else "")
                     + "".join(f"PARAMETER {k} {json.dumps(v)}\n" for k, v in params.items()))
        return JSONResponse({
            "modelfile": modelfile,
            "parameters": "\n".join(f"{k} {json.dumps(v)}" for k, v in params.items()),
            "template": template, "system": manifest.system or "", "license": license_,
            "details": details(manifest), "model_info": model_info,
            "capabilities": capabilities(manifest, metadata, template or None),
            "modified_at": datetime.fromtimestamp(store.modified(manifest), UTC).isoformat(),
            **extra,
        })

    def _progress_stream(self, stream: bool,
                         work: Callable[[Callable[[dict[str, Any]], None]], Any],
                         gone: threading.Event | None = None) -> Any:
        """Run blocking work in a thread, reporting Ollama-style status lines.

        A dict the work returns is added to the final "success" line; ``gone`` is set
        when a streaming client leaves early, for work that can stop between steps.
        """
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

        failed: list[LlmtuiError] = []

        async def run() -> None:
            try:
                result = await asyncio.to_thread(work, on_event)
                await queue.put({"status": "success",
                                 **(result if isinstance(result, dict) else {})})
            except LlmtuiError as exc:
                failed.append(exc)
                await queue.put(error_body(exc))
            finally:
                await queue.put(None)

        task = asyncio.create_task(run())

        async def collect() -> Response:
            final: dict[str, Any] = {}
            while (event := await queue.get()) is not None:
                final = event
            await task
            if failed:  # the error's own status: a bad input is a 400, not a 500
                return error_response(failed[0])
            return JSONResponse(final)

        if not stream:
            return collect()

        async def body() -> AsyncIterator[bytes]:
            try:
                while (event := await queue.get()) is not None:
                    yield self._line(event)
                await task
            finally:
                if gone is not None:
                    gone.set()

        async def streaming() -> Response:
            return StreamingResponse(body(), media_type=NDJSON)
        return streaming()

    async def pull(self, request: Request) -> Response:
        """Download a model, streaming Ollama's status lines."""
        data = await self.json(request)
        spec = data.get("model") or data.get("name")
        if not isinstance(spec, str) or not spec.strip():
            raise InvalidInput("'model' is required")
        from llmtui.models.pull import plan, pull

        plan(spec)  # a bad or unknown name fails now, with a proper status
        store = self.engine.store

        def work(on_event: Callable[[dict[str, Any]], None]) -> None:
            def forward(event: dict[str, Any]) -> None:
                if event.get("status") != "success":  # sent once the work returns
                    on_event(event)
            pull(store, spec, on_event=forward)
        return await self._progress_stream(data.get("stream", True) is not False, work)

    async def delete(self, request: Request) -> Response:
        """Remove a model (and its files once no other name uses them)."""
        data = await self.json(request)
        model = model_field(data)
        await self.engine.unload_model(model)
        try:
            await asyncio.to_thread(self.engine.store.remove, model)
        except ModelNotFound:
            raise ModelNotFound(f"model '{model}' not found") from None
        return Response(status_code=200)

    async def copy(self, request: Request) -> Response:
        """Give a model a second name (no files are copied)."""
        data = await self.json(request)
        src, dst = data.get("source"), data.get("destination")
        if not isinstance(src, str) or not isinstance(dst, str):
            raise InvalidInput("'source' and 'destination' are required")
        await asyncio.to_thread(self.engine.store.copy, src, dst)
        return Response(status_code=200)

    async def blob(self, request: Request) -> Response:
        """HEAD: is this blob in the store?  POST: upload it (checked against the digest)."""
        digest = parse_digest(request.path_params["digest"])
        store = self.engine.store
        if request.method == "HEAD":
            return Response(status_code=200 if store.has_blob(digest) else 404)
        if store.has_blob(digest):
            return Response(status_code=201)
        body = await read_body(request, replace(self.limits, body=1 << 42))
        await asyncio.to_thread(self._store_blob, body, digest)
        return Response(status_code=201)

    def _store_blob(self, body: bytes, digest: str) -> None:
        import io

        store = self.engine.store
        store.check_space(len(body))
        try:
            store.add_blob_from_stream(io.BytesIO(body), expected_sha256=digest)
        except LlmtuiError as exc:
            raise InvalidInput(f"digest mismatch: {exc}") from None

    async def create(self, request: Request) -> Response:
        """Make a model from an existing one or an uploaded GGUF blob, with a system
        prompt, template and parameters (what a Modelfile says)."""
        data = await self.json(request)
        model = model_field(data)
        target = ModelName.parse(model)
        source = data.get("from")
        files = data.get("files")
        quantize = data.get("quantize")
        if quantize is not None:
            if not isinstance(quantize, str):
                raise InvalidInput("'quantize' must be a quantization type such as q4_K_M")
            from llmtui.models.convert.quantize import quant_type

            quantize = quant_type(quantize)  # an unknown type fails before any work
        if bool(source) == bool(files):
            raise InvalidInput("create needs either 'from' (a model) or 'files' "
                               "({\"name.gguf\": \"sha256:...\"})")
        if files is not None and (not isinstance(files, dict) or not 1 <= len(files) <= 2):
            raise InvalidInput("'files' must map one GGUF file name (or a model and its "
                               "projector) to sha256 digests")
        adapters = data.get("adapters")
        if adapters is not None and (not isinstance(adapters, dict) or not all(
                isinstance(v, str) for v in adapters.values())):
            raise InvalidInput("'adapters' must map LoRA GGUF file names to "
                               "\"sha256:...\" digests")
        params = self.options(data.get("parameters"))
        system = data.get("system")
        template = data.get("template")
        for field, value in (("system", system), ("template", template)):
            if value is not None and not isinstance(value, str):
                raise InvalidInput(f"'{field}' must be a string")
        if template:
            from llmtui.backends.templates import compile_go, is_jinja

            if not is_jinja(template):
                compile_go(template)  # a broken template fails now, not on first use
        license_ = data.get("license")
        if isinstance(license_, list):
            license_ = "\n".join(str(x) for x in license_)
        if license_ is not None and not isinstance(license_, str):
            raise InvalidInput("'license' must be a string or a list of strings")
        store = self.engine.store

        def prepare() -> tuple[Manifest, str]:
            """Everything that can fail on the client's input, checked before the first
            status line (so it is a 4xx, not an error inside a 200 stream)."""
            if source:
                if not isinstance(source, str):
                    raise InvalidInput("'from' must be the name of an installed model")
                try:
                    base_name = ModelName.parse(source)
                except InvalidInput:  # a path, a URL: only models in the store can be bases
                    raise InvalidInput(f"'from' must name an installed model, not "
                                       f"{source[:80]!r}") from None
                found = store.get(base_name)
                return found, f"sha256:{found.digest}"
            assert isinstance(files, dict)
            from llmtui.models.pull import build_manifest
            from llmtui.models.store import _safe_filename

            layers = []
            for filename, digest_text in files.items():
                if not isinstance(digest_text, str):
                    raise InvalidInput("'files' must map a file name to a \"sha256:...\" "
                                       "digest")
                digest = parse_digest(digest_text)
                if not store.has_blob(digest):
                    raise InvalidInput(f"blob sha256:{digest[:12]}… was not uploaded "
                                       "(POST /api/blobs/:digest first)")
                size = store.blob_path(digest).stat().st_size
                layers.append(Layer(digest=digest, size=size,
                                    filename=_safe_filename(str(filename))))
            # With two files, the projector is the one whose general.type is mmproj.
            made = build_manifest(store, target, layers, "gguf", "create", None)
            return made, ", ".join(f"sha256:{layer.digest}" for layer in made.layers)

        base, layer = await asyncio.to_thread(prepare)

        def adapter_layers() -> list[Layer]:
            """Ollama's ADAPTER: LoRA GGUFs uploaded as blobs, applied at load."""
            from llmtui.models.store import _safe_filename

            out = []
            for filename, digest_text in (adapters or {}).items():
                digest = parse_digest(digest_text)
                if not store.has_blob(digest):
                    raise InvalidInput(f"adapter blob sha256:{digest[:12]}… was not uploaded "
                                       "(POST /api/blobs/:digest first)")
                path = store.blob_path(digest)
                if not is_lora_gguf(path):
                    raise InvalidInput(f"adapter {filename} is not a LoRA adapter GGUF "
                                       "(general.type \"adapter\")")
                out.append(Layer(digest=digest, size=path.stat().st_size,
                                 filename=_safe_filename(str(filename)), kind="adapter"))
            if out and base.format != "gguf":
                raise InvalidInput("adapters apply to GGUF models only")
            return out

        extra_layers = await asyncio.to_thread(adapter_layers)

        def work(on_event: Callable[[dict[str, Any]], None]) -> None:
            on_event({"status": f"using existing layer {layer}"})
            made = base
            if quantize:
                from llmtui.models.convert.run import quantize_model

                on_event({"status": f"quantizing {base.quantization or 'the'} model to "
                                    f"{quantize}"})
                made = quantize_model(store, base, store.layer_path(base.layers[0]), quantize,
                                      target, on_event=on_event)
            on_event({"status": "creating new layer"})
            merged = {**base.parameters_override, **params}
            if extra_layers:
                on_event({"status": "using adapter layers " + ", ".join(
                    f"sha256:{a.digest}" for a in extra_layers)})
                made = replace(made, layers=(*made.layers, *extra_layers))
            made = replace(
                made, name=str(target), source=f"create:{source or 'blob'}",
                system=system if system is not None else base.system,
                template=template if template is not None else base.template,
                license=license_ if isinstance(license_, str) else base.license,
                parameters_override=merged)
            from llmtui.models.store import now_iso

            made = replace(made, created=now_iso())
            on_event({"status": "writing manifest"})
            store.write_manifest(made)

        return await self._progress_stream(data.get("stream", True) is not False, work)


def is_lora_gguf(path: Any) -> bool:
    """A GGUF whose general.type is "adapter" (llama.cpp's LoRA files)."""
    try:
        from gguf import GGUFReader

        field = GGUFReader(str(path)).fields.get("general.type")
        return field is not None and field.contents() == "adapter"
    except (ValueError, OSError, KeyError):
        return False
