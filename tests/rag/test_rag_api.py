"""The RAG endpoints over TCP: documents from the network, paths only on the socket."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import TcpDaemon
from tests.rag.pdfgen import make_pdf


@pytest.fixture(scope="module")
def served(rag) -> Iterator[TcpDaemon]:
    rag("daemon", "stop")  # `llm serve` takes over this home
    with TcpDaemon(rag.home) as daemon:
        yield daemon


def test_documents_over_tcp_then_query(served: TcpDaemon) -> None:
    url = served.url + "/api/x/rag/netdocs"
    pdf = make_pdf([["Cover page."], ["The Osprey bridge is 1,230 metres long."]])
    body = {"documents": [
        {"name": "handbook.md", "text": "# Parking\n\nVisitors park on level minus two.\n"},
        {"name": "bridge.pdf", "data": base64.b64encode(pdf).decode()},
    ]}
    with httpx.stream("POST", url + "/add", json=body, timeout=120) as resp:
        assert resp.status_code == 200
        events = [json.loads(line) for line in resp.iter_lines() if line.strip()]
    assert events[-1]["status"] == "success" and events[-1]["added"] == 2
    resp = httpx.post(url + "/query", json={"query": "Where do visitors park?"}, timeout=60)
    assert resp.status_code == 200
    data = resp.json()
    assert data["chunks"][0]["citation"] == "handbook.md:3"
    assert data["embed_model"] == "all-minilm:l6-v2"
    resp = httpx.post(url + "/query", json={"query": "How long is the Osprey bridge?",
                                            "answer": True, "stream": False, "k": 1,
                                            "options": {"num_predict": 8}}, timeout=120)
    assert resp.status_code == 200
    data = resp.json()
    assert data["done"] is True and data["chunks"][0]["citation"] == "bridge.pdf:2"
    assert isinstance(data["message"]["content"], str)
    listing = httpx.get(served.url + "/api/x/rag", timeout=30).json()["collections"]
    assert "netdocs" in [c["name"] for c in listing]
    shown = httpx.get(url, timeout=30).json()
    assert all("/" not in f["source"] for f in shown["files"])  # no server paths over TCP
    assert httpx.delete(url, timeout=30).status_code == 200
    assert httpx.get(url, timeout=30).status_code == 404


def test_bad_requests(served: TcpDaemon, tmp_path: Path) -> None:
    base = served.url + "/api/x/rag"
    resp = httpx.post(base + "/x/add", json={"paths": [str(tmp_path)]}, timeout=30)
    assert resp.status_code == 403 and "local socket" in resp.json()["error"]
    resp = httpx.post(base + "/x/add", json={}, timeout=30)
    assert resp.status_code == 400 and "nothing to add" in resp.json()["error"]
    resp = httpx.post(base + "/x/add", json={"documents": [{"name": "a", "data": "!!"}]},
                      timeout=30)
    assert resp.status_code == 400 and "base64" in resp.json()["error"]
    resp = httpx.post(base + "/nope/query", json={"query": "hi"}, timeout=30)
    assert resp.status_code == 404 and resp.json()["code"] == "collection_not_found"
    resp = httpx.post(base + "/mydocs/query", json={"query": "hi", "k": 0}, timeout=30)
    assert resp.status_code == 400
    resp = httpx.post(base + "/mydocs/query", json={}, timeout=30)
    assert resp.status_code == 400
    resp = httpx.post(base + "/small/add", json={"stream": False, "documents": [
        {"name": "a.txt", "text": "A short note."}]}, timeout=60)
    assert resp.status_code == 200 and resp.json()["added"] == 1
    resp = httpx.post(base + "/small/query",
                      json={"query": "hi", "embed_model": "smollm2:135m"}, timeout=30)
    assert resp.status_code == 409 and resp.json()["code"] == "embedding_mismatch"
    resp = httpx.get(base + "/..%2Fetc", timeout=30)
    assert resp.status_code in (400, 404)
    # The daemon still serves.
    assert httpx.get(served.url + "/api/version", timeout=10).status_code == 200
