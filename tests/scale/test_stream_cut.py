"""Ray Serve's proxy can only drop a connection whose replica died: StreamCut turns that
into the API's own error. Replica deaths are forced here with ASGI apps that stop early;
tests/scale/test_ray.py kills a real replica."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from llmtui.scale.ray_serve import LOST, LOST_BEFORE, StreamCut, parse_scaling


def run(app: Any, path: str = "/api/generate") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(StreamCut(app)({"type": "http", "path": path}, receive, send))
    return sent


def dies_after(ctype: bytes, chunks: int) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", ctype)]})
        for _ in range(chunks):
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
    return app


def test_a_cut_ndjson_stream_ends_with_an_error_line() -> None:
    sent = run(dies_after(b"application/x-ndjson", 2))
    last = sent[-1]
    assert last["more_body"] is False
    assert json.loads(last["body"]) == {"error": LOST}


def test_a_cut_event_stream_ends_with_an_openai_error_event() -> None:
    sent = run(dies_after(b"text/event-stream; charset=utf-8", 1), "/v1/chat/completions")
    body = sent[-1]["body"].decode()
    assert body.startswith("data: ") and body.endswith("\n\n")
    assert json.loads(body[6:])["error"]["message"] == LOST


def test_other_cut_bodies_are_left_alone() -> None:
    sent = run(dies_after(b"application/json", 1))
    assert sent[-1]["more_body"] is True  # the proxy's server drops the connection


@pytest.mark.parametrize("path,shape", [("/api/chat", "ollama"), ("/v1/models", "openai")])
def test_no_answer_at_all_is_a_503_in_the_api_shape(path: str, shape: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    sent = run(app, path)
    assert sent[0]["status"] == 503 and (b"retry-after", b"1") in sent[0]["headers"]
    body = json.loads(sent[1]["body"])
    text = body["error"] if shape == "ollama" else body["error"]["message"]
    assert text == LOST_BEFORE


def test_a_finished_stream_is_untouched() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await dies_after(b"application/x-ndjson", 1)(scope, receive, send)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    sent = run(app)
    assert len(sent) == 3 and all(b"error" not in m.get("body", b"") for m in sent)


def test_scaling_parse() -> None:
    assert parse_scaling(None, None).replicas == 1
    assert parse_scaling(3, None).describe() == "3 replicas"
    auto = parse_scaling(None, " 0..4 ")
    assert (auto.min_replicas, auto.max_replicas, auto.auto) == (0, 4, True)
