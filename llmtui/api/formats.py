"""Our extensions for formats and measuring: perplexity over a text on any backend, and
conversion to ONNX / OpenVINO, as NDJSON progress streams under /api/x/."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from llmtui.api.common import error_body, first_event, model_field
from llmtui.errors import InvalidInput, LlmtuiError

NDJSON = "application/x-ndjson"


class FormatsAPI:
    def __init__(self, api: Any) -> None:
        self.api = api  # the OllamaAPI: its engine, limits, JSON reader and progress stream
        self.engine = api.engine

    def routes(self) -> list[Route]:
        e = self.api.endpoint
        return [Route("/api/x/perplexity", e(self.perplexity), methods=["POST"]),
                Route("/api/x/convert", e(self.convert), methods=["POST"])]

    @staticmethod
    def _line(obj: dict[str, Any]) -> bytes:
        return (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")

    async def perplexity(self, request: Request) -> Response:
        """Perplexity of a model over a text, with a sliding window; streams progress."""
        data = await self.api.json(request)
        model = model_field(data)
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput("'text' must be a non-empty string")
        self.api.text(text, "text")  # the prompt size limit
        payload = {"text": text, "ctx": data.get("ctx"), "stride": data.get("stride")}
        events = self.engine.run(model, "perplexity", payload, data.get("keep_alive"))
        first = await first_event(events)

        def shape(msg: dict[str, Any]) -> dict[str, Any]:
            out = {k: v for k, v in msg.items() if k not in ("type", "id")}
            if msg.get("type") == "done":
                out = {"model": model, "done": True, **out}
            return out

        if data.get("stream", True) is False:
            last: dict[str, Any] = {}
            try:
                event = first
                while event is not None:
                    last = event
                    event = await anext(events, None)
            finally:
                await events.aclose()
            return JSONResponse(shape(last))

        async def body() -> AsyncIterator[bytes]:
            try:
                event = first
                while event is not None:
                    yield self._line(shape(event))
                    event = await anext(events, None)
            except LlmtuiError as exc:
                yield self._line(error_body(exc))
            finally:
                await events.aclose()
        return StreamingResponse(body(), media_type=NDJSON)

    async def convert(self, request: Request) -> Response:
        """Convert a model in the store to ONNX or OpenVINO (like `llm convert`)."""
        data = await self.api.json(request)
        model = model_field(data)
        to = data.get("to")
        if not isinstance(to, str):
            raise InvalidInput("'to' must be onnx or openvino")
        precision = data.get("precision")
        name = data.get("name")
        for label, value in (("precision", precision), ("name", name)):
            if value is not None and not isinstance(value, str):
                raise InvalidInput(f"'{label}' must be a string")
        if "://" in model or model.startswith(("/", ".", "~")):
            raise InvalidInput("the API converts models in the store; use `llm convert` "
                               "for folders and hf:// sources")
        store = self.engine.store
        from llmtui.models.convert.run import PRECISIONS, TARGETS

        if to.lower() not in TARGETS[:2]:
            raise InvalidInput(f"unknown target format '{to}'", hint="use onnx or openvino")
        if precision is not None and precision.lower() not in PRECISIONS:
            raise InvalidInput(f"unknown precision '{precision}'")
        store.get(model)  # a missing model is a 404 now, not a failed stream
        gone = threading.Event()

        def work(on_event: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
            from llmtui.models.convert.run import convert

            made = convert(store, model, to, precision=precision, name=name,
                           on_event=on_event, cancel=gone)
            return {"model": made.name}
        return await self.api._progress_stream(data.get("stream", True) is not False, work,
                                               gone)


__all__ = ["FormatsAPI"]
