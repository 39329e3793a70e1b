"""Putting the daemon on a network: keys, Host allowlist, CORS, limits, safe errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from llmtui.errors import ExitCode
from tests.api.conftest import TcpDaemon, free_port
from tests.conftest import LLM, ROOT, import_models

SMOL = "smollm2:135m"
KEY = "s3cret-key-for-tests"


def configure(home: Path, **values: object) -> None:
    cfg = home / "config" / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))


@pytest.fixture(scope="module")
def sec_home(tmp_path_factory: pytest.TempPathFactory, smollm: Path) -> Path:
    home = tmp_path_factory.mktemp("sec") / "home"
    import_models(home, smollm)
    configure(home, cors_origins="https://app.example", allowed_hosts="llm.internal",
              max_body="64KB", max_messages=50, max_prompt_chars=20000, max_predict=1000,
              request_timeout="2s", max_queue=1, num_parallel=1)
    return home


@pytest.fixture(scope="module")
def guarded(sec_home: Path) -> TcpDaemon:
    with TcpDaemon(sec_home, "--api-key", KEY) as daemon:
        yield daemon


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# -- binding --------------------------------------------------------------------------------

def test_non_loopback_needs_a_key(tmp_path: Path) -> None:
    env = {**os.environ, "LLMTUI_HOME": str(tmp_path / "h")}
    env.pop("LLMTUI_API_KEY", None)
    res = subprocess.run([*LLM, "serve", "--host", "0.0.0.0", "--port", str(free_port())],
                         env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert res.returncode == ExitCode.CONFIG
    assert "without an API key" in res.stderr and "--insecure" in res.stderr
    assert "Traceback" not in res.stderr


def test_policy_rules() -> None:
    from llmtui.api.security import Policy, parse_bind
    from llmtui.errors import ConfigError

    assert parse_bind("0.0.0.0:8080").port == 8080
    assert parse_bind("http://[::1]:9000").host == "::1"
    assert parse_bind(":11500").host == "127.0.0.1"
    assert parse_bind("localhost").port == 11434
    assert parse_bind("127.0.0.1").loopback and not parse_bind("0.0.0.0").loopback
    with pytest.raises(ConfigError):
        parse_bind("http://x:99999")
    with pytest.raises(ConfigError):
        Policy.build(parse_bind("0.0.0.0"), None, None, None, insecure=False)
    open_policy = Policy.build(parse_bind("0.0.0.0"), None, None, None, insecure=True)
    assert open_policy.key_ok({})
    keyed = Policy.build(parse_bind("0.0.0.0"), KEY, None, None, insecure=False)
    assert keyed.key_ok({"authorization": f"Bearer {KEY}"})
    assert keyed.key_ok({"x-api-key": KEY})
    assert not keyed.key_ok({"authorization": f"Bearer {KEY}x"})
    assert not keyed.key_ok({})


def test_ollama_host_form_and_port_in_use(sec_home: Path) -> None:
    port = free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen(1)
    try:
        env = {**os.environ, "LLMTUI_HOME": str(sec_home), "OLLAMA_HOST": f"127.0.0.1:{port}"}
        res = subprocess.run([*LLM, "serve"], env=env, capture_output=True, text=True,
                             timeout=60, cwd=ROOT)
    finally:
        holder.close()
    assert res.returncode == ExitCode.CONFIG, res.stderr
    assert f"127.0.0.1:{port}" in res.stderr and "in use" in res.stderr


# -- keys, hosts, origins -------------------------------------------------------------------

def test_api_key(guarded: TcpDaemon) -> None:
    url = guarded.url + "/api/tags"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers=auth("wrong")).status_code == 401
    assert httpx.get(url, headers=auth()).status_code == 200
    assert httpx.get(url, headers={"x-api-key": KEY}).status_code == 200
    assert httpx.get(guarded.url + "/").status_code == 200  # probes stay open
    r = httpx.get(guarded.url + "/v1/models", headers=auth())
    assert r.status_code == 200


def test_real_clients_send_the_key(guarded: TcpDaemon) -> None:
    import ollama
    import openai

    oc = ollama.Client(host=guarded.url, headers=auth())
    assert SMOL in {m.model for m in oc.list().models}
    with pytest.raises(ollama.ResponseError) as err:
        ollama.Client(host=guarded.url).list()
    assert err.value.status_code == 401
    ai = openai.OpenAI(base_url=guarded.url + "/v1", api_key=KEY, max_retries=0)
    assert SMOL in {m.id for m in ai.models.list()}
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=guarded.url + "/v1", api_key="nope", max_retries=0).models.list()


def test_host_allowlist(guarded: TcpDaemon) -> None:
    url = guarded.url + "/api/tags"
    ok = {"localhost", "127.0.0.1", "llm.internal", socket.gethostname()}
    for host in ok:
        assert httpx.get(url, headers={**auth(), "Host": f"{host}:1"}).status_code == 200, host
    for host in ("evil.example", "127.0.0.1.evil.example", "attacker.test:80"):
        r = httpx.get(url, headers={**auth(), "Host": host})
        assert r.status_code == 403 and "Host" in r.json()["error"], host


def raw_request(url: str, request: bytes, wait: float = 5.0) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as s:
        s.sendall(request)
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except TimeoutError:
            pass
    return data


def test_empty_host_is_rejected(guarded: TcpDaemon) -> None:
    reply = raw_request(guarded.url, b"GET /api/tags HTTP/1.0\r\nHost: \r\n"
                        b"Authorization: Bearer " + KEY.encode() + b"\r\n\r\n")
    assert reply.split(b" ")[1] in (b"400", b"403"), reply[:200]
    reply = raw_request(guarded.url, b"GET /api/tags HTTP/1.0\r\n"
                        b"Authorization: Bearer " + KEY.encode() + b"\r\n\r\n")
    assert reply.split(b" ")[1] in (b"400", b"403"), reply[:200]


def test_cors(guarded: TcpDaemon) -> None:
    url = guarded.url + "/api/tags"
    good = httpx.get(url, headers={**auth(), "Origin": "https://app.example"})
    assert good.headers["access-control-allow-origin"] == "https://app.example"
    pre = httpx.options(url, headers={"Origin": "https://app.example",
                                      "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 204 and "POST" in pre.headers["access-control-allow-methods"]
    bad = httpx.get(url, headers={**auth(), "Origin": "https://evil.example"})
    assert bad.status_code == 403 and "access-control-allow-origin" not in bad.headers
    plain = httpx.get(url, headers=auth())
    assert "access-control-allow-origin" not in plain.headers


def test_default_origins_and_local_hosts_like_ollama(guarded: TcpDaemon) -> None:
    url = guarded.url + "/api/tags"
    for origin in ("http://localhost:5173", "https://127.0.0.1:8443", "http://0.0.0.0",
                   "app://obsidian.md", "vscode-webview://abc123", "tauri://localhost",
                   "file://"):
        r = httpx.get(url, headers={**auth(), "Origin": origin})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin
    for origin in ("http://localhost.evil.example", "http://localhost:80.evil.example",
                   "https://evil.example:3000", "chrome-extension://abc", "null"):
        assert httpx.get(url, headers={**auth(), "Origin": origin}).status_code == 403, origin
    # the openai package in a browser sends its x-stainless-* headers: preflight allows them
    pre = httpx.options(url, headers={"Origin": "http://localhost:3000",
                                      "Access-Control-Request-Method": "POST",
                                      "Access-Control-Request-Headers": "x-stainless-os"})
    assert "x-stainless-os" in pre.headers["access-control-allow-headers"].lower()
    # a front-end in a container reaches the host as host.docker.internal
    for host in ("host.docker.internal:11434", "ollama.local", "app.localhost",
                 "192.168.1.20:11434", "[::1]:11434", "10.1.2.3"):
        r = httpx.get(url, headers={**auth(), "Host": host})
        assert r.status_code == 200, host
    for host in ("docker.internal.evil.example", "local", "8.8.8.8", "localhost.evil"):
        assert httpx.get(url, headers={**auth(), "Host": host}).status_code == 403, host


def test_origin_patterns(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmtui.api.security import Policy, parse_bind

    monkeypatch.setenv("OLLAMA_ORIGINS", "https://*.corp.example, chrome-extension://*")
    policy = Policy.build(parse_bind("127.0.0.1"), None, None, "https://one.example", False)
    for origin in ("https://app.corp.example", "chrome-extension://abcdef",
                   "https://one.example", "http://localhost:8080", "HTTP://LOCALHOST:8080/"):
        assert policy.origin_ok(origin), origin
    for origin in ("http://app.corp.example", "https://corp.example.evil",
                   "https://two.example", "http://localhost:x", "http://127.0.0.2"):
        assert not policy.origin_ok(origin), origin
    monkeypatch.setenv("OLLAMA_ORIGINS", "*")
    assert Policy.build(parse_bind("127.0.0.1"), None, None, None, False).origin_ok(
        "https://anything.example")


def test_unix_socket_needs_no_key_and_tcp_cannot_shut_down(guarded: TcpDaemon,
                                                           sec_home: Path) -> None:
    from llmtui.config import Settings
    from llmtui.daemon.client import Client

    client = Client(settings=Settings.load({"LLMTUI_HOME": str(sec_home)}), autostart=False)
    assert SMOL in [m["name"] for m in client.list()]
    r = httpx.post(guarded.url + "/api/x/shutdown", headers=auth())
    assert r.status_code == 403
    assert httpx.get(guarded.url + "/api/version", headers=auth()).status_code == 200


# -- limits and bad input -------------------------------------------------------------------

@pytest.mark.parametrize("body,needle", [
    ({"model": SMOL, "prompt": "x", "options": {"temperature": -1}}, "temperature"),
    ({"model": SMOL, "prompt": "x", "options": {"top_k": "many"}}, "top_k"),
    ({"model": SMOL, "prompt": "x", "options": {"num_predict": 10**6}}, "num_predict"),
    ({"model": SMOL, "prompt": "x", "options": {"seed": 2**70}}, "seed"),
    ({"model": SMOL, "prompt": 42}, "prompt"),
    ({"model": SMOL, "prompt": "x" * 20001}, "too long"),
    ({"model": SMOL, "prompt": "x", "keep_alive": "forever-ish"}, "keep_alive"),
    ({"model": "../../etc/passwd", "prompt": "x"}, "model name"),
    ({"model": SMOL, "prompt": "x", "format": "yaml"}, "format"),
    ({"prompt": "x"}, "model"),
])
def test_bad_generate_parameters(guarded: TcpDaemon, body: dict[str, object],
                                 needle: str) -> None:
    r = httpx.post(guarded.url + "/api/generate", json=body, headers=auth(), timeout=60)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]


def test_nan_too_many_messages_deep_and_malformed_json(guarded: TcpDaemon) -> None:
    url = guarded.url + "/api/chat"
    h = {**auth(), "Content-Type": "application/json"}
    nan = b'{"model": "smollm2:135m", "prompt": "x", "options": {"temperature": NaN}}'
    r = httpx.post(guarded.url + "/api/generate", content=nan, headers=h)
    assert r.status_code == 400 and "finite" in r.json()["error"]
    many = {"model": SMOL, "messages": [{"role": "user", "content": "x"}] * 51}
    r = httpx.post(url, json=many, headers=auth())
    assert r.status_code == 400 and "too many messages" in r.json()["error"]
    deep = b'{"model": "smollm2:135m", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    r = httpx.post(url, content=deep, headers=h)
    assert r.status_code == 400 and "nested" in r.json()["error"]
    for body in (b"{not json", b"[1, 2]", b'"string"', b"\xff\xfe"):
        r = httpx.post(url, content=body, headers=h)
        assert r.status_code == 400, body
    big = b'{"model": "smollm2:135m", "prompt": "' + b"x" * 70_000 + b'"}'
    r = httpx.post(guarded.url + "/api/generate", content=big, headers=h)
    assert r.status_code == 413


def test_slow_client_times_out(guarded: TcpDaemon) -> None:
    host, port = guarded.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as s:
        s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: localhost\r\n"
                  b"Authorization: Bearer " + KEY.encode() + b"\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"mo")
        started = time.monotonic()
        reply = s.recv(65536)
    assert b" 408 " in reply.split(b"\r\n")[0], reply[:200]
    assert time.monotonic() - started < 10


def test_full_queue_answers_503_with_retry_after(guarded: TcpDaemon) -> None:
    body = {"model": SMOL, "prompt": "1, 2, 3,", "raw": True,
            "options": {"num_predict": 200, "temperature": 0, "repeat_penalty": 1.0}}
    statuses: list[int] = []
    retry: list[str] = []

    def one() -> None:
        r = httpx.post(guarded.url + "/api/generate", json={**body, "stream": False},
                       headers=auth(), timeout=240)
        statuses.append(r.status_code)
        if r.status_code == 503:
            retry.append(r.headers.get("retry-after", ""))

    httpx.post(guarded.url + "/api/generate", json={"model": SMOL}, headers=auth(), timeout=60)
    threads = [threading.Thread(target=one) for _ in range(4)]  # 1 running + 1 queued max
    for t in threads:
        t.start()
        time.sleep(0.15)
    for t in threads:
        t.join(timeout=240)
    assert 503 in statuses and 200 in statuses, statuses
    assert retry and all(v.isdigit() for v in retry)
    assert httpx.get(guarded.url + "/api/version", headers=auth()).status_code == 200


def test_errors_carry_no_paths(guarded: TcpDaemon, sec_home: Path, tmp_path: Path,
                               smollm: Path) -> None:
    import shutil

    victim = tmp_path / "secret-folder" / "gone.gguf"
    victim.parent.mkdir()
    shutil.copy(smollm, victim)
    env = {**os.environ, "LLMTUI_HOME": str(sec_home)}
    subprocess.run([*LLM, "import", str(victim), "--name", "gone", "--link"], env=env,
                   check=True, capture_output=True, timeout=60, cwd=ROOT)
    victim.unlink()
    for path, body in (("/api/show", {"model": "gone"}),
                       ("/api/generate", {"model": "gone", "prompt": "x"}),
                       ("/api/pull", {"model": "/etc/passwd", "stream": False})):
        r = httpx.post(guarded.url + path, json=body, headers=auth(), timeout=60)
        assert r.status_code >= 400, r.text
        text = r.text
        assert "secret-folder" not in text and str(tmp_path) not in text, text
        assert "/etc/" not in text and "Traceback" not in text, text
    subprocess.run([*LLM, "rm", "gone"], env=env, capture_output=True, timeout=60, cwd=ROOT)
