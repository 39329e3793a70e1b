"""The Ollama API core on a real daemon over its Unix socket, with the real tiny models."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from llmtui.errors import BusyError, ContextOverflow, InvalidInput, ModelNotFound

GREEDY = {"temperature": 0, "num_predict": 12, "seed": 1}
# Greedy counting without a repeat penalty runs to the token limit: a reliably long job.
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,"
LONG = {"temperature": 0, "repeat_penalty": 1.0, "num_predict": 400}


def raw(client: Any) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=client._socket_path()),
                        base_url="http://llmtui", timeout=60)


def test_version_root_and_tags(client: Any) -> None:
    with raw(client) as http:
        assert http.get("/").text == "llmtui is running"
        assert http.head("/").status_code == 200
        assert http.get("/api/version").json()["version"]
        tags = http.get("/api/tags").json()["models"]
    names = {m["name"] for m in tags}
    assert {"smollm2:135m", "gemma3:270m"} <= names
    m = next(t for t in tags if t["name"] == "smollm2:135m")
    assert set(m) >= {"name", "model", "modified_at", "size", "digest", "details"}
    assert m["details"]["quantization_level"] == "Q4_1"
    assert m["details"]["format"] == "gguf"


def test_generate_stream_fields(client: Any) -> None:
    parts = list(client.generate("smollm2:135m", "Say hello.", options=GREEDY))
    assert all(p["model"] == "smollm2:135m" for p in parts)
    assert all(not p["done"] for p in parts[:-1])
    final = parts[-1]
    assert final["done"] is True and final["done_reason"] in ("stop", "length")
    for key in ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
                "eval_count", "eval_duration", "first_token_duration", "created_at"):
        assert key in final, key
    assert final["eval_count"] >= 1 and final["prompt_eval_count"] > 5
    assert isinstance(final["eval_duration"], int)  # nanoseconds
    assert "".join(p["response"] for p in parts).strip()


def test_generate_non_stream_and_seed(client: Any) -> None:
    with raw(client) as http:
        body = {"model": "smollm2:135m", "prompt": "Name a colour.", "stream": False,
                "options": {"temperature": 0.9, "seed": 42, "num_predict": 16}}
        a = http.post("/api/generate", json=body).json()
        b = http.post("/api/generate", json=body).json()
    assert a["done"] is True and a["response"]
    assert a["response"] == b["response"], "same seed, same reply"


def test_chat_stream(client: Any) -> None:
    msgs = [{"role": "user", "content": "What is 2+2?"}]
    parts = list(client.chat("smollm2:135m", msgs, options=GREEDY))
    assert parts[0]["message"]["role"] == "assistant"
    text = "".join(p["message"]["content"] for p in parts)
    assert text.strip()
    assert parts[-1]["done"] and parts[-1]["eval_count"] >= 1


def test_model_without_template_completes(client: Any) -> None:
    parts = list(client.generate("gemma3:270m", "The capital of France is",
                                 options={"temperature": 0, "num_predict": 6}))
    assert "".join(p["response"] for p in parts).strip()


def test_json_mode_and_schema(client: Any) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
              "required": ["city"]}
    parts = list(client.chat("smollm2:135m",
                             [{"role": "user", "content": "Give the capital of France as JSON."}],
                             format=schema, options={"temperature": 0, "num_predict": 64}))
    data = json.loads("".join(p["message"]["content"] for p in parts))
    assert isinstance(data["city"], str)
    parts = list(client.generate("smollm2:135m", "A JSON object with a key a:", format="json",
                                 options={"temperature": 0, "num_predict": 48}))
    text = "".join(p["response"] for p in parts).strip()
    # The grammar allows only JSON; the token limit may cut it (done_reason says so).
    assert text[:1] in "{["
    if parts[-1]["done_reason"] == "stop":
        json.loads(text)


def test_embed(client: Any) -> None:
    out = client.embed("smollm2:135m", ["hello world", "a second text"])
    assert len(out["embeddings"]) == 2 and len(out["embeddings"][0]) == 576
    norm = sum(x * x for x in out["embeddings"][0]) ** 0.5
    assert abs(norm - 1) < 1e-3
    with raw(client) as http:
        legacy = http.post("/api/embeddings", json={"model": "smollm2:135m",
                                                    "prompt": "hello world"}).json()
    assert len(legacy["embedding"]) == 576
    assert legacy["embedding"] == pytest.approx(out["embeddings"][0], abs=1e-5)


def test_show_ps_load_unload(client: Any) -> None:
    show = client.show("smollm2:135m")
    assert "{% for message in messages %}" in show["template"]
    assert show["details"]["family"] == "smollm2"
    assert show["model_info"]["general.architecture"] == "llama"
    assert show["capabilities"] == ["completion"]  # Ollama's vocabulary
    client.load("smollm2:135m", keep_alive="-1")
    ps = {m["name"]: m for m in client.ps() if not m["embedding"]}
    assert ps["smollm2:135m"]["expires_at"].startswith("2318")
    assert ps["smollm2:135m"]["context_length"] == 4096
    assert ps["smollm2:135m"]["size_vram"] == 0
    with raw(client) as http:
        r = http.post("/api/generate", json={"model": "smollm2:135m", "keep_alive": 0}).json()
    assert r["done_reason"] == "unload"
    assert "smollm2:135m" not in {m["name"] for m in client.ps() if not m["embedding"]}


def test_keep_alive_expires(client: Any) -> None:
    client.load("gemma3:270m", keep_alive="1s")
    assert "gemma3:270m" in {m["name"] for m in client.ps()}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if "gemma3:270m" not in {m["name"] for m in client.ps()}:
            break
        time.sleep(0.25)
    else:
        raise AssertionError("keep_alive did not unload the model")


def test_errors_have_ollama_shape(client: Any) -> None:
    with raw(client) as http:
        r = http.post("/api/generate", json={"model": "nope:1", "prompt": "x"})
        assert r.status_code == 404 and "not found" in r.json()["error"]
        r = http.post("/api/generate", content=b"{not json")
        assert r.status_code == 400 and "error" in r.json()
        r = http.post("/api/chat", json={"model": "smollm2:135m",
                                         "messages": [{"role": "wizard", "content": "x"}]})
        assert r.status_code == 400
        for bad in ({"temperature": "hot"}, {"num_predict": -5}, {"top_p": 2.0},
                    {"num_ctx": 10**9}):  # an unknown key is ignored, as by Ollama
            r = http.post("/api/generate", json={"model": "smollm2:135m", "prompt": "x",
                                                 "options": bad})
            assert r.status_code == 400, bad
        r = http.post("/api/generate", content=b'{"model":"smollm2:135m","prompt":"x",'
                      b'"options":{"temperature":NaN}}')
        assert r.status_code == 400
        r = http.post("/api/generate", json={"model": "../../etc/passwd", "prompt": "x"})
        assert r.status_code == 400
        assert "/" not in r.json()["error"].split("'")[0]
    with pytest.raises(ModelNotFound):
        list(client.generate("nope:1", "x"))
    with pytest.raises(InvalidInput):
        list(client.generate("smollm2:135m", "x", options={"seed": 1.5}))


def test_prompt_over_context(client: Any) -> None:
    long = "word " * 3000
    with pytest.raises(ContextOverflow) as exc:
        list(client.generate("smollm2:135m", long, options={"num_ctx": 512, "num_predict": 4}))
    assert "context holds 512" in str(exc.value)
    parts = list(client.generate("smollm2:135m", long, truncate=True,
                                 options={"num_ctx": 512, "num_predict": 4, "temperature": 0}))
    assert parts[-1]["truncated_tokens"] > 2000
    client.unload("smollm2:135m")


def test_client_disconnect_frees_model(client: Any) -> None:
    client.load("smollm2:135m")
    it = client.generate("smollm2:135m", COUNTING, raw=True,
                         options={**LONG, "num_predict": 2000})
    for _ in range(3):
        next(it)
    it.close()  # the client goes away mid-stream
    started = time.monotonic()
    parts = list(client.generate("smollm2:135m", "Hi", options=GREEDY))
    assert parts[-1]["done"]
    # Had the first generation kept running, this one would wait ~40 s behind it.
    assert time.monotonic() - started < 10
    assert not client.status()["busy"]


def test_bounded_queue_answers_busy(warm_home, monkeypatch) -> None:
    """max_queue=1 with one slot: while one request runs and one waits, a third is refused
    with 503."""
    import threading

    from llmtui.config import Settings
    from llmtui.daemon.client import Client
    from tests.conftest import stop_daemon_of

    home = warm_home.parent / "queue-home"
    cfg = home / "config" / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text("max_queue = 1\nnum_parallel = 1\n")
    store_src = warm_home / "data"
    (home / "data").mkdir(parents=True, exist_ok=True)
    import shutil

    shutil.copytree(store_src / "models", home / "data" / "models", symlinks=True,
                    dirs_exist_ok=True)
    c = Client(settings=Settings.load({"LLMTUI_HOME": str(home)}))
    try:
        c.load("smollm2:135m")
        long = LONG
        results: list[Any] = []

        def run() -> None:
            try:
                # A raw counting prompt runs to the token limit (no early end).
                results.append(list(c.generate("smollm2:135m", COUNTING, raw=True,
                                               options=long))[-1]["done"])
            except Exception as exc:
                results.append(exc)

        first = threading.Thread(target=run)
        first.start()
        time.sleep(1.0)
        second = threading.Thread(target=run)
        second.start()
        time.sleep(1.0)
        with raw(c) as http:
            r = http.post("/api/generate", json={"model": "smollm2:135m", "prompt": "x"})
        assert r.status_code == 503, r.text
        assert r.headers.get("retry-after")
        with pytest.raises(BusyError):
            list(c.generate("smollm2:135m", "x"))
        with raw(c) as http:  # cancel the long ones: the test need not wait for them
            http.post("/api/x/shutdown")
        first.join(60)
        second.join(60)
    finally:
        stop_daemon_of(home)
