"""What every API surface shares: request limits, safe JSON reading, error bodies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from llmtui.config import Settings, parse_duration, parse_size
from llmtui.errors import InvalidInput, LlmtuiError
from llmtui.models.names import ModelName

log = logging.getLogger("llmtui.api")

#: JSON nested deeper than this is refused before it is parsed (no recursion bombs).
MAX_DEPTH = 64


@dataclass
class Limits:
    """Per-request limits, from the config (max_body, max_prompt_chars, ...)."""

    body: int = 32 * 1024 * 1024
    prompt_chars: int = 4_000_000
    messages: int = 2000
    predict: int = 131072
    inputs: int = 4096
    read_timeout: float = 60.0
    image_bytes: int = 20 * 1000 * 1000
    image_pixels: int = 50_000_000

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        cfg = settings.config
        return cls(body=parse_size(cfg.get("max_body")),
                   prompt_chars=int(cfg.get("max_prompt_chars")),
                   messages=int(cfg.get("max_messages")),
                   predict=int(cfg.get("max_predict")),
                   read_timeout=parse_duration(cfg.get("request_timeout")),
                   image_bytes=parse_size(cfg.get("max_image_size")),
                   image_pixels=int(cfg.get("max_image_pixels")))

    @property
    def images(self) -> Any:
        """The per-image bounds (llmtui.media.ImageLimits)."""
        from llmtui.media import ImageLimits

        return ImageLimits(max_bytes=self.image_bytes, max_pixels=self.image_pixels)


class RequestTimeout(LlmtuiError):
    http_status = 408


class BodyTooLarge(InvalidInput):
    http_status = 413


class TooDeep(InvalidInput):
    """JSON nested past MAX_DEPTH (refused before parsing: no recursion bombs)."""


_SECOND: tuple[int, str] = (-1, "")


def now_rfc3339() -> str:
    """The time now as Ollama writes created_at (UTC, microseconds). Called once per
    streamed token, so the formatted second is kept: strftime each time cost about 6% of
    the daemon's CPU per token."""
    global _SECOND
    now = time.time()
    second = int(now)
    if second != _SECOND[0]:
        _SECOND = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_SECOND[1]}.{int((now - second) * 1e6):06d}Z"


def ns(seconds: float | None) -> int:
    return int((seconds or 0.0) * 1e9)


_PATH = re.compile(r"(?<![\w:/.])/(?:[^\s/'\"():,]+/)+([^\s/'\"():,]*)")


def scrub(message: str) -> str:
    """Errors go to remote clients: keep file names, drop the folders they live in."""
    return _PATH.sub(lambda m: m.group(1) or "<path>", message)


def error_body(exc: LlmtuiError) -> dict[str, Any]:
    return {"error": scrub(str(exc)), "code": exc.exit_code.name.lower()}


def error_response(exc: LlmtuiError) -> JSONResponse:
    headers = {"Retry-After": "1"} if exc.http_status == 503 else None
    return JSONResponse(error_body(exc), status_code=exc.http_status, headers=headers)


T = TypeVar("T")


class ClientGone(Exception):
    """The client closed its connection before its (non-streamed) answer was ready."""


#: What the metrics record for a request whose client left (nginx's "client closed request").
CLIENT_CLOSED = 499


async def _disconnected(request: Request) -> None:
    """Return when the client hangs up. Only call once the body has been read: after
    that, the server's receive channel has nothing more to say but ``http.disconnect``."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_gone(request: Request, work: Awaitable[T]) -> T:
    """Await ``work`` while watching the connection; a client that leaves first cancels
    it (closing its engine streams, which stops generation in the worker within a token)
    and raises ClientGone. Streamed responses get the same from Starlette itself."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise ClientGone


def guarded(fn: Callable[[Request], Awaitable[Response]],
            on_error: Callable[[LlmtuiError], Response]) -> Callable[[Request], Any]:
    """A route handler that turns our errors into a response in its API's shape."""
    async def handler(request: Request) -> Response:
        try:
            return await fn(request)
        except LlmtuiError as exc:
            return on_error(exc)
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED)  # nobody reads it; /metrics does
    handler.__doc__ = fn.__doc__  # /openapi.json reads the summaries from here
    handler.__name__ = fn.__name__
    return handler


async def first_event(events: AsyncGenerator[dict[str, Any], None]) -> dict[str, Any] | None:
    """Pull a stream's first event before answering, so that errors (missing model, prompt
    too long) become a proper HTTP status instead of an error inside a 200 stream."""
    try:
        return await events.__anext__()
    except StopAsyncIteration:
        return None
    except LlmtuiError:
        await events.aclose()
        raise


def _depth_ok(body: bytes) -> bool:
    """Nesting depth of a JSON text, counted without parsing (brackets outside strings)."""
    depth = 0
    in_string = escaped = False
    for ch in body.decode("utf-8", "replace"):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif ch in "]}":
            depth -= 1
    return True


async def read_body(request: Request, limits: Limits) -> bytes:
    """The body, refusing oversize ones as they arrive and cutting off slow senders."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.body:
        raise BodyTooLarge(f"request body too large ({declared} bytes; the limit is "
                           f"{limits.body})")

    async def collect() -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.body:
                raise BodyTooLarge(f"request body too large (over {limits.body} bytes)")
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(collect(), timeout=limits.read_timeout)
    except TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {limits.read_timeout:g} s") from None
    except ClientDisconnect:
        raise InvalidInput("the client went away while sending its request") from None


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate_at(data: Any) -> str | None:
    """Where in parsed JSON a string holds a lone UTF-16 surrogate ("\\ud800" escapes
    parse to one), or None. Such text cannot be encoded, so it must never get further."""
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return where or "the body"
        elif isinstance(value, dict):
            for key, item in value.items():
                stack.append((key, where or "a key"))
                stack.append((item, f"{where}.{key}" if where else str(key)))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(value))
    return None


def check_unicode(data: Any) -> None:
    """Refuse text with lone surrogates: a 400 naming the field, not a 500 later."""
    where = _lone_surrogate_at(data)
    if where is not None:
        shown = where[:80].encode("ascii", "backslashreplace").decode()
        raise InvalidInput(f"'{shown}' holds a lone UTF-16 surrogate (such as \\ud800): "
                           "text must be valid Unicode")


def parse_json_object(body: bytes | str) -> dict[str, Any]:
    """A JSON object from a request body or a WebSocket frame, with the checks every
    surface shares: nesting depth, valid JSON, an object, valid Unicode text."""
    if isinstance(body, bytes):
        try:  # strict: json.loads(bytes) would let encoded surrogates through
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInput("request body is not valid UTF-8") from None
        raw = body
    else:
        text, raw = body, body.encode("utf-8", "surrogatepass")
    if (b"[[" in raw or b"{" in raw) and not _depth_ok(raw):
        raise TooDeep(f"request JSON is nested deeper than {MAX_DEPTH} levels")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidInput("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput("request body must be a JSON object")
    if _SURROGATE_ESCAPE.search(raw) or (isinstance(body, str) and _SURROGATE.search(body)):
        check_unicode(data)  # walked only when such text can be there at all
    return data


async def read_json(request: Request, limits: Limits) -> dict[str, Any]:
    body = await read_body(request, limits)
    if not body.strip():
        return {}
    return parse_json_object(body)


def model_field(data: dict[str, Any]) -> str:
    name = data.get("model") or data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("'model' is required")
    return str(ModelName.parse(name))


def shorten_vectors(vectors: list[list[float]], dimensions: Any) -> list[list[float]]:
    """``dimensions`` on /api/embed and /v1/embeddings: keep the first N values and scale
    back to unit length (Matryoshka-trained models stay meaningful when cut this way)."""
    if dimensions is None or not vectors:
        return vectors
    size = len(vectors[0])
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
        raise InvalidInput("'dimensions' must be a positive whole number")
    if dimensions > size:
        raise InvalidInput(f"this model makes {size}-dimension vectors; 'dimensions' "
                           f"may be at most {size}")
    if dimensions == size:
        return vectors
    out = []
    for vec in vectors:
        cut = vec[:dimensions]
        norm = sum(x * x for x in cut) ** 0.5
        out.append([x / norm for x in cut] if norm > 0 else cut)
    return out
