"""Ollama API details, WebSocket, GraphQL, batch, /metrics and /openapi.json over TCP."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.api.conftest import TcpDaemon

SMOL = "smollm2:135m"
GREEDY = {"temperature": 0, "repeat_penalty": 1.0}


def post(tcp: TcpDaemon, path: str, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(tcp.url + path, json=body, timeout=120, **kw)


def test_root_probe_and_version(tcp: TcpDaemon) -> None:
    assert httpx.get(tcp.url + "/").text == "llmtui is running"
    head = httpx.head(tcp.url + "/")
    assert head.status_code == 200 and head.text == ""
    assert httpx.get(tcp.url + "/api/version").json()["version"]


def test_empty_prompt_loads_and_keep_alive_zero_unloads(tcp: TcpDaemon) -> None:
    r = post(tcp, "/api/generate", {"model": "gemma3:270m"}).json()
    assert r["done"] and r["done_reason"] == "load"
    assert "gemma3:270m" in [m["name"] for m in httpx.get(tcp.url + "/api/ps").json()["models"]]
    r = post(tcp, "/api/chat", {"model": "gemma3:270m", "messages": [], "keep_alive": 0}).json()
    assert r["done_reason"] == "unload"
    assert "gemma3:270m" not in [m["name"] for m in
                                 httpx.get(tcp.url + "/api/ps").json()["models"]]


def test_generate_context_continues_a_conversation(tcp: TcpDaemon) -> None:
    first = post(tcp, "/api/generate", {"model": SMOL, "prompt": "1, 2, 3,", "raw": True,
                                        "stream": False,
                                        "options": {"num_predict": 5, **GREEDY}}).json()
    assert first["response"] == " 4, 5"
    ctx = first["context"]
    assert isinstance(ctx, list) and len(ctx) > first["prompt_eval_count"]
    # Only the new text is sent; the context carries "1, 2, 3, 4, 5".
    second = post(tcp, "/api/generate", {"model": SMOL, "prompt": ", 6,", "raw": True,
                                         "context": ctx, "stream": False,
                                         "options": {"num_predict": 2, **GREEDY}}).json()
    assert second["response"] == " 7"
    assert second["prompt_eval_count"] > len(ctx)
    bad = post(tcp, "/api/generate", {"model": SMOL, "prompt": "x", "context": [10**9]})
    assert bad.status_code == 400


def test_suffix_needs_fill_in_the_middle_tokens(tcp: TcpDaemon) -> None:
    r = post(tcp, "/api/generate", {"model": SMOL, "prompt": "def f(", "suffix": "return x"})
    assert r.status_code == 400 and "insert" in r.json()["error"]


def test_template_override(tcp: TcpDaemon) -> None:
    # A Go-style template: the prompt is used as written, so counting continues.
    r = post(tcp, "/api/generate", {
        "model": SMOL, "prompt": "1, 2, 3,", "stream": False,
        "template": "{{ if .System }}{{ .System }} {{ end }}{{ .Prompt }}",
        "options": {"num_predict": 5, **GREEDY}}).json()
    assert r["response"] == " 4, 5"
    bad = post(tcp, "/api/generate", {"model": SMOL, "prompt": "x",
                                      "template": "{{ range .Messages }}"})
    assert bad.status_code == 400 and "template" in bad.json()["error"]


def test_errors_before_and_during_a_stream(tcp: TcpDaemon) -> None:
    r = post(tcp, "/api/generate", {"model": "nope:1b", "prompt": "x"})
    assert r.status_code == 404 and set(r.json()) >= {"error"}
    long = "word " * 6000
    r = post(tcp, "/api/generate", {"model": SMOL, "prompt": long,
                                    "options": {"num_ctx": 512}})
    assert r.status_code == 400 and "context" in r.json()["error"]


def test_websocket_two_conversations_and_cancel(tcp: TcpDaemon) -> None:
    ws_url = tcp.url.replace("http", "ws") + "/api/x/ws"
    with connect(ws_url, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "chat", "id": "a", "model": SMOL, "options": {
            "num_predict": 6, **GREEDY}, "messages": [{"role": "user", "content": "hi"}]}))
        ws.send(json.dumps({"type": "generate", "id": "b", "model": SMOL, "raw": True,
                            "prompt": "1, 2, 3,", "options": {"num_predict": 400, **GREEDY}}))
        ws.send(json.dumps({"type": "ping", "id": "p"}))
        ws.send("not json")
        seen: dict[str, list[dict[str, Any]]] = {}
        chunks_b = 0
        ends: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 60
        while len(ends) < 2 and time.monotonic() < deadline:
            msg = json.loads(ws.recv(timeout=30))
            seen.setdefault(msg["type"], []).append(msg)
            if msg["type"] == "chunk" and msg["id"] == "b":
                chunks_b += 1
                if chunks_b == 3:
                    ws.send(json.dumps({"type": "cancel", "id": "b"}))
            if msg["type"] == "done":
                ends[msg["id"]] = msg
        assert ends["a"]["done_reason"] == "length" and ends["a"]["eval_count"] == 6
        assert ends["b"]["done_reason"] == "cancel" and chunks_b < 50
        assert seen["pong"][0]["id"] == "p"
        assert seen["error"][0]["code"] == "invalid_input"
        # the connection still works after all that
        ws.send(json.dumps({"type": "chat", "id": "c", "model": "nope:1b",
                            "messages": [{"role": "user", "content": "x"}]}))
        msg = json.loads(ws.recv(timeout=30))
        assert msg["type"] == "error" and msg["code"] == "model_not_found"


def gql(tcp: TcpDaemon, query: str) -> dict[str, Any]:
    r = post(tcp, "/api/x/graphql", {"query": query})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_graphql_queries_and_mutations(tcp: TcpDaemon) -> None:
    data = gql(tcp, '{ models { name quantization capabilities } catalog(search: "smol") '
                    "{ name fit installed } }")["data"]
    assert {"name": SMOL, "quantization": "Q4_1", "capabilities": ["chat", "completion"]} \
        in data["models"]
    assert any(c["name"] == SMOL and c["installed"] for c in data["catalog"])
    assert gql(tcp, f'mutation {{ load(model: "{SMOL}", keepAlive: "1m") }}')["data"]["load"]
    loaded = gql(tcp, "{ loaded { name pid } }")["data"]["loaded"]
    assert any(m["name"] == SMOL and m["pid"] for m in loaded)
    assert gql(tcp, f'mutation {{ unload(model: "{SMOL}") }}')["data"]["unload"] is True
    err = gql(tcp, 'mutation { delete(model: "nope:1b") }')
    assert "not found" in err["errors"][0]["message"]
    assert "/" not in err["errors"][0]["message"].split("'")[0]


def test_graphql_subscription_streams_a_generation(tcp: TcpDaemon) -> None:
    ws_url = tcp.url.replace("http", "ws") + "/api/x/graphql"
    with connect(ws_url, subprotocols=["graphql-transport-ws"], open_timeout=10) as ws:
        ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "connection_ack"
        ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": {"query": (
            f'subscription {{ generate(model: "{SMOL}", prompt: "1, 2, 3,", '
            'options: {num_predict: 4, temperature: 0, repeat_penalty: 1.0}) '
            "{ text done doneReason evalCount } }")}}))
        texts, final = [], None
        while True:
            msg = json.loads(ws.recv(timeout=60))
            if msg["type"] == "complete":
                break
            assert msg["type"] == "next", msg
            item = msg["payload"]["data"]["generate"]
            if item["done"]:
                final = item
            else:
                texts.append(item["text"])
        assert final is not None and final["evalCount"] == 4 and len(texts) >= 2


def test_batch(tcp: TcpDaemon) -> None:
    r = post(tcp, "/api/x/batch", {
        "model": SMOL, "options": {"num_predict": 5, **GREEDY},
        "requests": [{"prompt": "1, 2, 3,", "raw": True},
                     {"prompt": "10, 11, 12,", "raw": True},
                     {"messages": [{"role": "user", "content": "hi"}]},
                     {"prompt": ""},
                     {"prompt": "5, 6,", "raw": True, "options": {"num_predict": 2}}]})
    assert r.status_code == 200
    res = r.json()["results"]
    assert res[0]["response"] == " 4, 5" and res[1]["response"].startswith(" 13")
    assert res[2]["message"]["content"] and res[3]["code"] == "invalid_input"
    assert res[4]["eval_count"] == 2
    too_many = post(tcp, "/api/x/batch", {"model": SMOL, "requests": [{"prompt": "x"}] * 300})
    assert too_many.status_code == 400
    missing = post(tcp, "/api/x/batch", {"model": "nope:1b", "requests": [{"prompt": "x"}]})
    assert missing.status_code == 404


def test_metrics(tcp: TcpDaemon) -> None:
    post(tcp, "/api/generate", {"model": SMOL, "prompt": "hi", "stream": False,
                                "options": {"num_predict": 3}})
    text = httpx.get(tcp.url + "/metrics").text
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            values[key] = float(value)
    assert values["llmtui_requests_total"] >= 1
    assert values["llmtui_completion_tokens_total"] >= 3
    assert values["llmtui_prompt_tokens_total"] > 0
    assert values["llmtui_tokens_per_second"] > 0
    assert values['llmtui_time_to_first_token_seconds_bucket{le="+Inf"}'] >= 1
    assert values["llmtui_time_to_first_token_seconds_count"] >= 1
    assert values["llmtui_loaded_models"] >= 1
    assert f'llmtui_queue_depth{{model="{SMOL}"}}' in values
    assert "llmtui_worker_restarts_total" in values
    assert values['llmtui_http_requests_total{path="/api/generate",status="200"}'] >= 1
    assert "# TYPE llmtui_time_to_first_token_seconds histogram" in text


def test_openapi_lists_every_route(tcp: TcpDaemon) -> None:
    spec = httpx.get(tcp.url + "/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    for path in ("/api/generate", "/api/chat", "/api/create", "/api/blobs/{digest}",
                 "/v1/chat/completions", "/v1/embeddings", "/api/x/batch", "/api/x/ws",
                 "/api/x/graphql", "/metrics"):
        assert path in paths, path
    assert "requestBody" in paths["/api/chat"]["post"]
    assert paths["/api/generate"]["post"]["summary"]


def test_blob_upload_checks_the_digest(tcp: TcpDaemon) -> None:
    data = b"GGUF not really"
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    assert httpx.head(f"{tcp.url}/api/blobs/sha256:{digest}").status_code == 404
    wrong = httpx.post(f"{tcp.url}/api/blobs/sha256:{'0' * 64}", content=data)
    assert wrong.status_code == 400 and "mismatch" in wrong.json()["error"]
    ok = httpx.post(f"{tcp.url}/api/blobs/sha256:{digest}", content=data)
    assert ok.status_code == 201
    assert httpx.head(f"{tcp.url}/api/blobs/sha256:{digest}").status_code == 200
    bad = post(tcp, "/api/create", {"model": "broken", "files": {"x.gguf": f"sha256:{digest}"}})
    assert bad.status_code == 500 or "error" in bad.text
    assert "broken:latest" not in {m["name"] for m in
                                   httpx.get(tcp.url + "/api/tags").json()["models"]}
    assert httpx.head(f"{tcp.url}/api/blobs/sha256:nothex").status_code == 400


@pytest.mark.parametrize("doc", ["docs/api.md"])
def test_docs_curl_examples_run(tcp: TcpDaemon, doc: str) -> None:
    """Every ```sh block marked `# test` in the API reference runs against the daemon."""
    import re
    import subprocess

    from tests.conftest import ROOT

    text = (ROOT / doc).read_text()
    blocks = [b for b in re.findall(r"```sh\n(.*?)```", text, re.S) if "# test" in b]
    assert len(blocks) >= 5
    for block in blocks:
        script = block.replace("http://127.0.0.1:11434", tcp.url)
        res = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 0, (block, res.stdout, res.stderr)
        assert "error" not in res.stdout.lower() or "# expect-error" in block, (block, res.stdout)
