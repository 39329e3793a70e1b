"""Images through every API surface of a real daemon: the ollama and openai packages, the
SDK, /api/create and /api/show; every bad input a clear 400 and the daemon still serving."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest

from tests.api.conftest import TcpDaemon
from tests.projector import IMAGE_TOKENS, make_png, write_projector
from tests.vision.conftest import GREEDY, SMOL, VIS

RED = make_png(color=(200, 30, 30))
GREEN = make_png(color=(10, 200, 30), pattern=3)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + b64(data)


def bomb() -> bytes:
    """A small PNG whose header claims 60000x60000 pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2,
                                                             0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def oc(vision_tcp: TcpDaemon) -> ollama.Client:
    return ollama.Client(host=vision_tcp.url, timeout=180)


@pytest.fixture(scope="module")
def ai(vision_tcp: TcpDaemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=vision_tcp.url + "/v1", api_key="unused", timeout=180,
                         max_retries=0)


def post(tcp: TcpDaemon, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(tcp.url + path, json=body, timeout=180)


def still_serving(tcp: TcpDaemon) -> None:
    assert httpx.get(tcp.url + "/", timeout=10).text == "llmtui is running"
    r = post(tcp, "/api/generate", {"model": SMOL, "prompt": "hi", "stream": False,
                                    "options": {"num_predict": 2}})
    assert r.status_code == 200 and r.json()["done"], r.text


# -- the happy paths ---------------------------------------------------------------------------

def test_ollama_generate_and_chat_with_images(oc: ollama.Client, tmp_path: Path) -> None:
    path = tmp_path / "red.png"
    path.write_bytes(RED)
    r = oc.generate(model=VIS, prompt="What is this?", images=[str(path)],
                    options={"num_predict": 4, **GREEDY})
    assert r.done and r.eval_count and r.prompt_eval_count
    c = oc.chat(model=VIS, messages=[{"role": "user", "content": "What is this?",
                                      "images": [GREEN]}],
                options={"num_predict": 4, **GREEDY})
    assert c.done and c.message.role == "assistant"
    streamed = list(oc.chat(model=VIS, stream=True, options={"num_predict": 3, **GREEDY},
                            messages=[{"role": "user", "content": "And this?",
                                       "images": [b64(RED)]}]))
    assert streamed[-1].done


def test_openai_image_url_parts(ai: openai.OpenAI) -> None:
    for part in ({"type": "image_url", "image_url": {"url": data_uri(RED)}},
                 {"type": "image_url", "image_url": data_uri(GREEN)}):
        r = ai.chat.completions.create(
            model=VIS, max_tokens=4, temperature=0,
            messages=[{"role": "user", "content": [
                {"type": "text", "text": "What is in this picture?"}, part]}])  # type: ignore[list-item,misc]
        assert r.choices[0].message.content is not None
        assert r.usage is not None and r.usage.prompt_tokens > 0


def test_sdk_takes_paths_bytes_and_pil_images(vision_tcp: TcpDaemon, tmp_path: Path) -> None:
    from PIL import Image

    from llmtui import Client

    path = tmp_path / "green.png"
    path.write_bytes(GREEN)
    with Client(host=vision_tcp.url) as client:
        for image in (path, str(path), GREEN, Image.open(io.BytesIO(RED))):
            parts = list(client.generate(VIS, "What is this?", images=[image],
                                         options={"num_predict": 2, **GREEDY}))
            assert parts[-1]["done"]
        parts = list(client.chat(VIS, [{"role": "user", "content": "Describe it.",
                                        "images": [path]}],
                                 options={"num_predict": 2, **GREEDY}))
        assert parts[-1]["done"]


def test_show_reports_the_projector(oc: ollama.Client, vision_tcp: TcpDaemon) -> None:
    shown = oc.show(VIS)
    assert "vision" in (shown.capabilities or [])
    raw = post(vision_tcp, "/api/show", {"model": VIS}).json()
    assert raw["projector_info"]["clip.projector_type"] == "mlp"  # Ollama's field
    assert raw["projector"]["tokens_per_image"] == IMAGE_TOKENS
    assert raw["projector"]["image_size"] == 32
    assert raw["details"]["families"] == ["llama", "clip"]
    assert "vision" not in (oc.show(SMOL).capabilities or [])
    tags = {m["name"]: m for m in httpx.get(vision_tcp.url + "/api/tags").json()["models"]}
    assert "clip" in tags[VIS]["details"]["families"]


def test_create_from_blobs_with_a_projector(oc: ollama.Client, vision_tcp: TcpDaemon,
                                            smollm: Path, projector: Path,
                                            tmp_path: Path) -> None:
    model_digest = oc.create_blob(smollm)
    proj_digest = oc.create_blob(projector)
    oc.create(model="made-vision", files={"model.gguf": model_digest,
                                          "mmproj.gguf": proj_digest})
    shown = oc.show("made-vision")
    assert "vision" in (shown.capabilities or [])
    r = oc.generate(model="made-vision", prompt="What is this?", images=[RED],
                    options={"num_predict": 2, **GREEDY})
    assert r.done
    # A projector of another width is refused, and nothing is installed.
    wide = write_projector(tmp_path / "wide.gguf", n_embd_text=960)
    wide_digest = oc.create_blob(wide)
    bad = post(vision_tcp, "/api/create", {"model": "bad-vision", "stream": False, "files": {
        "model.gguf": model_digest, "wide.gguf": wide_digest}})
    assert bad.status_code == 400, bad.text
    assert "wide.gguf does not fit model.gguf" in bad.json()["error"]
    assert "bad-vision:latest" not in {m.model for m in oc.list().models}
    three = post(vision_tcp, "/api/create", {"model": "x", "stream": False, "files": {
        "a.gguf": model_digest, "b.gguf": proj_digest, "c.gguf": wide_digest}})
    assert three.status_code == 400 and "'files'" in three.json()["error"]
    assert hashlib.sha256(smollm.read_bytes()).hexdigest() in model_digest


# -- the contract with the engine: images become tokens ------------------------------------------

def _generate(tcp: TcpDaemon, images: list[bytes], n: int = 12) -> dict[str, Any]:
    body: dict[str, Any] = {"model": VIS, "prompt": "What is this?", "stream": False,
                            "options": {"num_predict": n, **GREEDY}}
    if images:
        body["images"] = [b64(i) for i in images]
    r = post(tcp, "/api/generate", body)
    assert r.status_code == 200, r.text
    return r.json()


def test_an_image_adds_its_tokens(vision_tcp: TcpDaemon) -> None:
    plain = _generate(vision_tcp, [])["prompt_eval_count"]
    one = _generate(vision_tcp, [RED])["prompt_eval_count"]
    two = _generate(vision_tcp, [RED, GREEN])["prompt_eval_count"]
    assert one - plain >= IMAGE_TOKENS
    assert two - one >= IMAGE_TOKENS


def test_different_images_give_different_greedy_replies(vision_tcp: TcpDaemon,
                                                        ai: openai.OpenAI) -> None:
    red, green = _generate(vision_tcp, [RED]), _generate(vision_tcp, [GREEN])
    assert red["response"] != green["response"]
    assert _generate(vision_tcp, [RED])["response"] == red["response"]  # no stale cache

    def openai_reply(image: bytes) -> str:
        r = ai.chat.completions.create(
            model=VIS, max_tokens=12, temperature=0, seed=1,
            messages=[{"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": data_uri(image)}}]}])
        return r.choices[0].message.content or ""
    assert openai_reply(RED) != openai_reply(GREEN)


def test_a_projector_that_crashes_llama_cpp_kills_only_its_worker(
        vision_tcp: TcpDaemon, vision_home: Path, smollm: Path, tmp_path: Path) -> None:
    """A projector that slipped past the import checks (written into the store by hand)
    makes llama.cpp abort when loaded: the request fails, the daemon keeps serving."""
    from llmtui.models.store import Layer, Store

    store = Store(vision_home / "data" / "models")
    broken = write_projector(tmp_path / "broken.gguf", flaw="int32_key")
    base = store.get(VIS)
    layer = Layer(digest=hashlib.sha256(broken.read_bytes()).hexdigest(),
                  size=broken.stat().st_size, filename=broken.name, link=str(broken),
                  kind="projector")
    from dataclasses import replace

    store.write_manifest(replace(base, name="broken:vision", layers=(base.layers[0], layer)))
    r = post(vision_tcp, "/api/generate", {"model": "broken:vision", "prompt": "hi",
                                           "images": [b64(RED)], "stream": False})
    assert r.status_code >= 400 and "error" in r.json()
    still_serving(vision_tcp)


# -- every bad input: a clear 400, and the daemon still serving ------------------------------

@pytest.mark.parametrize(("body", "status", "message"), [
    ({"model": SMOL, "prompt": "x", "images": [b64(RED)]}, 400,
     "'smollm2:135m' cannot read images (it is not a vision model)"),
    ({"model": VIS, "prompt": "x", "images": [b64(b"plain text, not a picture")]}, 400,
     "image 1 is not a PNG, JPEG, WebP or GIF image"),
    ({"model": VIS, "prompt": "x", "images": [b64(RED[: len(RED) // 2])]}, 400,
     "image 1 is truncated or corrupt"),
    ({"model": VIS, "prompt": "x", "images": [b64(bomb())]}, 400,
     "image 1 is too large: its header declares 3600 megapixels"),
    ({"model": VIS, "prompt": "x", "images": ["%%% not base64 %%%"]}, 400,
     "image 1 is not valid base64"),
    ({"model": VIS, "prompt": "x", "images": "abc"}, 400,
     "'images' must be a list of base64 strings"),
    ({"model": VIS, "prompt": "x", "images": ["http://127.0.0.1/cat.png"]}, 400,
     "image 1 is not valid base64"),
    ({"model": "nope:1b", "prompt": "x", "images": [b64(RED)]}, 404, "not found"),
])
def test_bad_generate_images(vision_tcp: TcpDaemon, body: dict[str, Any], status: int,
                             message: str) -> None:
    r = post(vision_tcp, "/api/generate", {**body, "stream": False})
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_bad_chat_images(vision_tcp: TcpDaemon) -> None:
    r = post(vision_tcp, "/api/chat", {"model": VIS, "stream": False, "messages": [
        {"role": "user", "content": "a", "images": [b64(RED)]},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c", "images": [b64(RED), b64(b"GIF89a broken")]}]})
    assert r.status_code == 400
    assert "image 2 of message 3 is" in r.json()["error"]
    r = post(vision_tcp, "/api/chat", {"model": SMOL, "stream": False, "messages": [
        {"role": "user", "content": "a", "images": [b64(RED)]}]})
    assert r.status_code == 400 and "cannot read images" in r.json()["error"]


@pytest.mark.parametrize("url", ["file:///etc/passwd", "http://127.0.0.1:9/cat.png",
                                 "https://example.org/cat.jpg", "ftp://example.org/a.png",
                                 "/etc/passwd", "data:image/png;base64,@@@"])
def test_openai_refuses_urls_other_than_data_uris(vision_tcp: TcpDaemon, ai: openai.OpenAI,
                                                  url: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        ai.chat.completions.create(model=VIS, max_tokens=2, messages=[
            {"role": "user", "content": [{"type": "text", "text": "x"},
                                         {"type": "image_url", "image_url": {"url": url}}]}])
    body = info.value.body
    assert isinstance(body, dict)
    text = json.dumps(body)
    assert "image 1 of message 0" in text
    assert "/etc/passwd" not in text
    if not url.startswith("data:"):
        assert "send the image inline as a data: URI" in text
    still_serving(vision_tcp)


def test_openai_text_only_model_and_bad_parts(ai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="cannot read images"):
        ai.chat.completions.create(model=SMOL, max_tokens=2, messages=[
            {"role": "user", "content": [{"type": "image_url",
                                          "image_url": {"url": data_uri(RED)}}]}])
    with pytest.raises(openai.BadRequestError, match="'image_url' must be"):
        ai.chat.completions.create(model=VIS, max_tokens=2, messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {}}]}])  # type: ignore[typeddict-item]


def test_endpoints_without_images_refuse_them(vision_tcp: TcpDaemon) -> None:
    r = post(vision_tcp, "/api/x/batch", {"model": VIS, "requests": [
        {"messages": [{"role": "user", "content": "x", "images": [b64(RED)]}]}]})
    assert "does not take" in json.dumps(r.json())
    still_serving(vision_tcp)


def test_docs_examples_run(vision_tcp: TcpDaemon) -> None:
    """Every ```sh block marked `# test` in docs/vision.md runs against the daemon (with
    the test vision model standing in for smolvlm:256m)."""
    import re
    import subprocess

    from tests.conftest import ROOT

    text = (ROOT / "docs" / "vision.md").read_text()
    blocks = [b for b in re.findall(r"```sh\n(.*?)```", text, re.S) if "# test" in b]
    assert len(blocks) >= 2
    for block in blocks:
        script = block.replace("http://127.0.0.1:11434", vision_tcp.url).replace(
            "smolvlm:256m", VIS)
        res = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True,
                             text=True, timeout=180)
        assert res.returncode == 0, (block, res.stdout, res.stderr)
        assert "error" not in res.stdout.lower() or "# expect-error" in block, (block,
                                                                                res.stdout)
