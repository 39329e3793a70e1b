"""Issue 21: no work left running for a client that left, and no 500 on any input.

A real daemon on a loopback port with the real tiny models; raw sockets where a client
must misbehave (hang up mid-request, send binary WebSocket frames, lone surrogates).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.api.conftest import TcpDaemon
from tests.conftest import LLM, ROOT
from tests.rag.conftest import minilm_gguf  # noqa: F401 - the real embedding model

SMOL = "smollm2:135m"
EMBED = "minilm:test"
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,"
# Greedy counting without a repeat penalty runs to the token limit: minutes of work.
ENDLESS = {"temperature": 0, "repeat_penalty": 1.0, "num_predict": 8000, "num_ctx": 8192}


@pytest.fixture(scope="module")
def hard(api_home: Path) -> Iterator[TcpDaemon]:
    cfg = api_home / "config" / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text('header_timeout = "2s"\nidle_connection_timeout = "2s"\n')
    with TcpDaemon(api_home) as daemon:
        yield daemon


def post(d: TcpDaemon, path: str, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(d.url + path, json=body, timeout=120, **kw)


def loaded(d: TcpDaemon) -> list[dict[str, Any]]:
    return list(httpx.get(d.url + "/api/ps", timeout=30).json()["models"])


def busy(d: TcpDaemon) -> bool:
    return bool(httpx.get(d.url + "/api/x/status", timeout=30).json()["busy"])


def wait_for(cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def send_and_hang_up(d: TcpDaemon, path: str, body: dict[str, Any]) -> None:
    """Send a whole request, wait until the model is working on it, then disconnect."""
    data = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", d.port), timeout=30) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                  f"application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
        assert wait_for(lambda: busy(d), 60), "the request never started"
        time.sleep(0.5)  # well into the generation


ABANDONED = {
    "/api/generate": {"model": SMOL, "prompt": COUNTING, "raw": True, "stream": False,
                      "options": ENDLESS},
    "/api/chat": {"model": SMOL, "stream": False, "options": ENDLESS,
                  "messages": [{"role": "user", "content": "Count to ten thousand: " +
                                COUNTING}]},
    "/v1/chat/completions": {"model": SMOL, "max_tokens": 8000, "temperature": 0,
                             "options": {"num_ctx": 8192, "repeat_penalty": 1.0},
                             "messages": [{"role": "user", "content": COUNTING}]},
    "/v1/completions": {"model": SMOL, "prompt": COUNTING, "max_tokens": 8000,
                        "temperature": 0, "options": {"num_ctx": 8192,
                                                      "repeat_penalty": 1.0}},
    "/api/x/batch": {"model": SMOL, "options": ENDLESS, "raw": True,
                     "requests": [{"prompt": COUNTING}, {"prompt": COUNTING + " 13,"}]},
}


@pytest.mark.parametrize("path", list(ABANDONED))
def test_abandoned_non_streamed_request_stops(hard: TcpDaemon, path: str) -> None:
    """Without the fix the model stays busy for minutes (8000 tokens) after the hang-up."""
    send_and_hang_up(hard, path, ABANDONED[path])
    assert wait_for(lambda: not busy(hard), 15), f"{path}: still generating for nobody"
    r = post(hard, "/api/generate", {"model": SMOL, "prompt": "Hi", "stream": False,
                                     "options": {"num_predict": 3}})
    assert r.status_code == 200 and r.json()["done"]
    metrics = httpx.get(hard.url + "/metrics").text
    assert f'path="{path}",status="499"' in metrics


def test_v1_completions_default_max_tokens_is_16(hard: TcpDaemon) -> None:
    r = post(hard, "/v1/completions", {"model": SMOL, "prompt": COUNTING, "temperature": 0,
                                       "options": {"repeat_penalty": 1.0}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["usage"]["completion_tokens"] == 16
    assert body["choices"][0]["finish_reason"] == "length"
    r = post(hard, "/v1/completions", {"model": SMOL, "prompt": COUNTING, "max_tokens": 3})
    assert r.json()["usage"]["completion_tokens"] == 3


@pytest.fixture(scope="module")
def embedder(hard: TcpDaemon, api_home: Path, minilm_gguf: Path) -> str:  # noqa: F811
    subprocess.run([*LLM, "import", str(minilm_gguf), "--name", EMBED, "--link"],
                   env={**os.environ, "LLMTUI_HOME": str(api_home)}, check=True,
                   capture_output=True, timeout=120, cwd=ROOT)
    return EMBED


@pytest.mark.parametrize("path,body,answer", [
    ("/api/embed", {"input": []}, {"embeddings": []}),
    ("/api/embed", {"input": ""}, 400),
    ("/api/embed", {"input": ["a", " "]}, 400),
    ("/api/embeddings", {"prompt": ""}, {"embedding": []}),
    ("/v1/embeddings", {"input": []}, {"data": []}),
    ("/v1/embeddings", {"input": [""]}, 400),
])
def test_empty_embedding_input(hard: TcpDaemon, embedder: str, path: str,
                               body: dict[str, Any], answer: Any) -> None:
    r = post(hard, path, {"model": embedder, **body})
    if answer == 400:
        assert r.status_code == 400, r.text
        assert "empty" in r.text
    else:
        assert r.status_code == 200, r.text
        assert answer.items() <= r.json().items()
    # A real text still embeds afterwards (the worker did not fall over).
    r = post(hard, "/api/embed", {"model": embedder, "input": "hello"})
    assert r.status_code == 200 and len(r.json()["embeddings"][0]) == 384


def test_empty_completion_prompt_is_a_400(hard: TcpDaemon) -> None:
    for prompt in ("", [""]):
        r = post(hard, "/v1/completions", {"model": SMOL, "prompt": prompt})
        assert r.status_code == 400 and "empty" in r.json()["error"]["message"], r.text


SURROGATE = b'"x\\ud800y"'  # a lone high surrogate escape: valid JSON, not valid Unicode


@pytest.mark.parametrize("path,body", [
    ("/api/generate", b'{"model": "smollm2:135m", "prompt": %s}'),
    ("/api/generate", b'{"model": "smollm2:135m", "prompt": "x", "system": %s}'),
    ("/api/chat", b'{"model": "smollm2:135m", "messages": [{"role": "user", "content": %s}]}'),
    ("/api/embed", b'{"model": "smollm2:135m", "input": [%s]}'),
    ("/v1/chat/completions", b'{"model": "smollm2:135m", "messages": '
                             b'[{"role": "user", "content": %s}]}'),
    ("/v1/completions", b'{"model": "smollm2:135m", "prompt": %s}'),
    ("/v1/embeddings", b'{"model": "smollm2:135m", "input": %s}'),
    ("/api/x/tokenize", b'{"model": "smollm2:135m", "text": %s}'),
    ("/api/show", b'{"model": %s}'),
    ("/api/create", b'{"model": "x:1", "from": "smollm2:135m", "system": %s}'),
    ("/api/x/batch", b'{"model": "smollm2:135m", "requests": [{"prompt": %s}]}'),
    ("/api/generate", b'{"model": "smollm2:135m", "prompt": "x", %s: 1}'),
])
def test_lone_surrogates_are_a_400(hard: TcpDaemon, path: str, body: bytes) -> None:
    r = httpx.post(hard.url + path, content=body % SURROGATE, timeout=60,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert "surrogate" in r.text
    raw_utf8 = body % '"x\ud800y"'.encode("utf-8", "surrogatepass")  # not UTF-8 at all
    r = httpx.post(hard.url + path, content=raw_utf8, timeout=60,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text


def test_create_errors_are_400s(hard: TcpDaemon, tmp_path: Path) -> None:
    import hashlib

    junk = b"GGUF\x03\x00\x00\x00" + b"\xff" * 64  # a header that promises too much
    digest = hashlib.sha256(junk).hexdigest()
    r = httpx.post(f"{hard.url}/api/blobs/sha256:{digest}", content=junk, timeout=60)
    assert r.status_code == 201
    cases = [
        {"model": "x:1", "files": {"m.gguf": "sha256:nothex"}},
        {"model": "x:1", "files": {"m.gguf": "md5:" + "0" * 32}},
        {"model": "x:1", "files": {"m.gguf": 42}},
        {"model": "x:1", "files": {"../m.gguf": f"sha256:{digest}"}},
        {"model": "x:1", "files": {"m.gguf": f"sha256:{digest}"}},  # a bad GGUF
        {"model": "x:1", "from": "/etc/passwd"},
        {"model": "x:1", "from": "../../outside"},
        {"model": "x:1", "from": 7},
        {"model": "x:1", "from": SMOL, "license": {"a": 1}},
    ]
    for body in cases:
        for stream in (False, True):
            r = post(hard, "/api/create", {**body, "stream": stream})
            assert r.status_code == 400, (body, r.text)
            assert "error" in r.json(), r.text
    r = post(hard, "/api/create", {"model": "x:1", "from": "nope:9", "stream": False})
    assert r.status_code == 404
    assert "x:1" not in {m["name"] for m in httpx.get(hard.url + "/api/tags").json()["models"]}


def ws_url(d: TcpDaemon) -> str:
    return d.url.replace("http", "ws") + "/api/x/ws"


@pytest.mark.parametrize("frame,code", [
    (b"\x00\x01binary", 1003),
    ('{"type": "ping", "id": "p", "x": ' + "[" * 5000 + "]" * 5000 + "}", 1008),
])
def test_websocket_refuses_with_a_close_code(hard: TcpDaemon, frame: Any, code: int) -> None:
    with connect(ws_url(hard), open_timeout=10, max_size=None) as ws:
        ws.send(frame)
        msg = json.loads(ws.recv(timeout=30))
        assert msg["type"] == "error" and msg["code"] == "invalid_input", msg
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)
        assert ws.close_code == code, ws.close_code
    # The endpoint still serves the next connection.
    with connect(ws_url(hard), open_timeout=10) as ws:
        ws.send(json.dumps({"type": "ping", "id": "q"}))
        assert json.loads(ws.recv(timeout=30))["type"] == "pong"


def test_websocket_surrogate_is_an_error_not_a_crash(hard: TcpDaemon) -> None:
    with connect(ws_url(hard), open_timeout=10) as ws:
        ws.send('{"type": "generate", "id": "s", "model": "smollm2:135m", '
                '"prompt": "x\\ud800"}')
        msg = json.loads(ws.recv(timeout=30))
        assert msg["type"] == "error" and "surrogate" in msg["error"], msg
        ws.send(json.dumps({"type": "ping", "id": "q"}))
        assert json.loads(ws.recv(timeout=30))["type"] == "pong"


def gql(d: TcpDaemon, query: str, **extra: Any) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    r = post(d, "/api/x/graphql", {"query": query, **extra})
    return time.perf_counter() - started, r


def test_graphql_limits(hard: TcpDaemon) -> None:
    many_aliases = "{" + " ".join(f"a{i}: catalog {{ name }}" for i in range(300)) + "}"
    deep = "{" + "models { " * 12 + "name" + " }" * 13
    frags = "fragment F0 on Query { catalog { name description } }\n" + "".join(
        f"fragment F{i} on Query {{ ...F{i - 1} loaded {{ name }} ...F{i - 1} }}\n"
        for i in range(1, 25))
    bomb = "{ ...F24 }\n" + frags
    huge = "{ models { name } " + "__typename " * 5000 + "}"
    for query, needle in ((many_aliases, "aliases"), (deep, "deep"),
                          (bomb, "fields"), (huge, "tokens")):
        _, r = gql(hard, query)
        assert r.status_code in (200, 400), r.text
        errors = r.json()["errors"]
        assert any(needle in e["message"] for e in errors), (needle, errors)
        assert r.json().get("data") is None
    nested = '{"query": "{ models { name } }", "variables": {"a": %s}}' % (
        "[" * 3000 + "]" * 3000)
    r = httpx.post(hard.url + "/api/x/graphql", timeout=60, content=nested,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "nested" in r.text
    # GraphiQL's own introspection query stays within the limits.
    from graphql import get_introspection_query

    _, r = gql(hard, get_introspection_query(descriptions=True))
    assert r.status_code == 200 and "errors" not in r.json(), r.text[:300]


# -- slow and idle connections ----------------------------------------------------------------

def read_until_closed(s: socket.socket, limit: float) -> tuple[bytes, bool]:
    """What the server sends until it closes the connection (True) or ``limit`` passes."""
    s.settimeout(0.2)
    data = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            return data, True
        data += chunk
    return data, False


def test_slow_headers_are_cut_off(hard: TcpDaemon) -> None:
    """Slowloris: header bytes trickle in and never finish; the daemon closes after
    header_timeout (2 s here) instead of holding the connection for ever."""
    with socket.create_connection(("127.0.0.1", hard.port), timeout=30) as s:
        s.sendall(b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        closed = False
        for i in range(40):  # 20 s of trickling, if nobody stops it
            try:
                s.sendall(b"X-Slow-%d: 1\r\n" % i)
            except OSError:
                closed = True
                break
            _, closed = read_until_closed(s, 0.5)
            if closed:
                break
        assert closed, "the slow client was never cut off"


def test_silent_and_idle_connections_are_closed(hard: TcpDaemon) -> None:
    with socket.create_connection(("127.0.0.1", hard.port), timeout=30) as s:
        data, closed = read_until_closed(s, 20)  # connects, says nothing
        assert closed and (data == b"" or b" 408 " in data), data[:100]
    with socket.create_connection(("127.0.0.1", hard.port), timeout=30) as s:
        s.sendall(b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data, closed = read_until_closed(s, 20)  # one answer, then idle keep-alive
        assert data.startswith(b"HTTP/1.1 200") and closed, data[:100]


def test_a_slow_but_steady_request_is_served(hard: TcpDaemon) -> None:
    with socket.create_connection(("127.0.0.1", hard.port), timeout=30) as s:
        for part in (b"GET /api/version HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n",
                     b"Connection: close\r\n\r\n"):
            s.sendall(part)
            time.sleep(0.4)
        data, _ = read_until_closed(s, 20)
    assert data.startswith(b"HTTP/1.1 200"), data[:100]
