"""Images in the chat (Pilot, against a real daemon): `/image PATH` and a pasted path
attach an image, the preview shows in the conversation, the image goes to the vision
model and is stored with the conversation by hash; a text model's refusal is shown."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from llmtui.config import Settings
from llmtui.history import History
from llmtui.tui.app import ChatApp, MessageView
from llmtui.tui.backend import DaemonBackend
from tests.projector import make_png
from tests.tui.fake import FakeBackend, screen_text
from tests.vision.conftest import VIS


def make_app(home: Path, backend: Any = None, **kw: Any) -> ChatApp:
    settings = Settings.load({"LLMTUI_HOME": str(home)})
    return ChatApp(backend or DaemonBackend(settings), History.default(settings), settings,
                   **kw)


async def until(pilot: Any, cond: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await pilot.pause(0.05)


async def type_and_send(pilot: Any, app: ChatApp, text: str) -> None:
    area = app.main.query_one("#prompt")
    area.text = text  # type: ignore[attr-defined]
    app.action_send()
    await pilot.pause(0.1)


def test_image_in_the_chat(vision_home: Path, tmp_path: Path) -> None:
    red = tmp_path / "red square.png"
    make_png(red, color=(200, 30, 30))
    green = tmp_path / "green.png"
    make_png(green, color=(10, 200, 30), pattern=3)

    async def run() -> None:
        app = make_app(vision_home, model=VIS)
        async with app.run_test(size=(100, 32)) as pilot:
            await until(pilot, lambda: app.daemon_state == "running")
            await type_and_send(pilot, app, f"/image {red}")
            assert [a["name"] for a in app.pending] == ["red square.png"]
            assert "🖼 red square.png" in screen_text(app)
            await type_and_send(pilot, app, f"'{green}'")  # a dropped file: quoted path
            assert [a["name"] for a in app.pending] == ["red square.png", "green.png"]
            app.conv.options = {"num_predict": 4, "temperature": 0}  # type: ignore[union-attr]
            await type_and_send(pilot, app, "What is in these pictures?")
            conv = app.conv
            assert conv is not None
            await until(pilot, lambda: len(conv.messages) == 2 and not app.generating)
            reply = conv.messages[-1]
            assert reply.role == "assistant" and not reply.partial, reply
            assert reply.stats.get("prompt_eval_count")
            user = conv.messages[0]
            assert [a["kind"] for a in user.attachments] == ["image", "image"]
            views = list(app.query(MessageView))
            assert len(views[0].query(".image-preview")) == 2  # the previews
        return None

    asyncio.run(run())
    history = History.default(Settings.load({"LLMTUI_HOME": str(vision_home)}))
    conv = history.get(history.resolve("1"))
    images = conv.messages[0].images
    assert [history.image_bytes(a) for a in images] == [red.read_bytes(), green.read_bytes()]
    assert sorted(p.name for p in history.images_dir.iterdir()) == sorted(
        f"{a['sha256']}.png" for a in images)


def test_bad_image_attachments_are_explained(tmp_path: Path, home: Path) -> None:
    notes = tmp_path / "notes.bin"
    notes.write_bytes(b"\x00\x01binary")

    async def run() -> None:
        backend = FakeBackend()
        app = make_app(home, backend=backend)
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.pause(0.2)
            await type_and_send(pilot, app, f"/image {notes}")
            assert app.pending == []
            await type_and_send(pilot, app, f"/image {tmp_path / 'gone.png'}")
            assert app.pending == []
            await type_and_send(pilot, app, "/image")
            assert app.pending == []
            text = " ".join(str(n.message) for n in app._notifications)
            assert "not text, nor a PNG, JPEG, WebP or GIF image" in text
            assert "cannot read gone.png" in text
            assert "usage: /image PATH" in text
            assert backend.requests == []  # nothing was sent
    asyncio.run(run())


def test_a_text_model_refuses_images_in_the_chat(vision_home: Path, tmp_path: Path) -> None:
    red = tmp_path / "red.png"
    make_png(red)

    async def run() -> None:
        app = make_app(vision_home, model="smollm2:135m")
        async with app.run_test(size=(100, 32)) as pilot:
            await until(pilot, lambda: app.daemon_state == "running")
            await type_and_send(pilot, app, f"/image {red}")
            await type_and_send(pilot, app, "What is this?")
            await until(pilot, lambda: not app.generating and app.conv is not None
                        and len(app.conv.messages) >= 1, timeout=60)
            await pilot.pause(0.5)
            shown = screen_text(app) + " ".join(str(n.message) for n in app._notifications)
            assert "cannot read images" in shown
    asyncio.run(run())
