"""Voice in the full-screen chat, driven with Pilot against a real daemon: push-to-talk
from the file-fed ALSA microphone into the message box, replies read aloud into the ALSA
file speaker, and both refusing politely when their model is missing."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmtui.config import Settings
from llmtui.history import History
from llmtui.tui.app import ChatApp
from llmtui.tui.backend import DaemonBackend
from tests.conftest import import_models
from tests.tui.test_chat import until
from tests.voice.conftest import AlsaHome, raw_pcm, say


def _app(home: Path) -> tuple[ChatApp, list[str]]:
    settings = Settings.load({"LLMTUI_HOME": str(home)})
    app = ChatApp(DaemonBackend(settings), History.default(settings), settings,
                  model="smollm2:135m")
    seen: list[str] = []
    notify = app.notify

    def record(message: Any, **kw: Any) -> None:
        seen.append(str(message))
        notify(message, **kw)

    app.notify = record  # type: ignore[method-assign]
    return app, seen


@pytest.fixture()
def alsa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AlsaHome]:
    """This process's PortAudio sees the file-fed devices (HOME points at them)."""
    feed = raw_pcm(say("What is the capital of France?", tmp_path / "q.wav"),
                   tmp_path / "in.raw", silence_before=0.5, silence_after=30)
    devices = AlsaHome(tmp_path, feed)
    monkeypatch.setenv("HOME", str(devices.home))
    sd = sys.modules.get("sounddevice")
    if sd is not None:  # imported earlier with another HOME: read the devices again
        sd._terminate()
        sd._initialize()
    yield devices
    if sd is not None:
        sd._terminate()
        sd._initialize()


def test_voice_keys_say_how_to_get_the_models(home: Path, smollm: Path, gemma: Path) -> None:
    import_models(home, smollm)

    async def run() -> None:
        app, seen = _app(home)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("f5")
            await pilot.press("f9")
            await pilot.pause(0.2)
            assert not app.voice.read_aloud and not app.voice.recording
        assert any("llm pull whisper:tiny.en" in s for s in seen), seen
        assert any("llm pull piper:en_us-joe" in s for s in seen), seen

    asyncio.run(run())


def test_push_to_talk_and_read_aloud(alsa: AlsaHome, voice_home: Path) -> None:
    async def run() -> None:
        app, seen = _app(voice_home)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("f5")  # record until the pause, transcribe into the input
            prompt = app.query_one("#prompt")
            await until(pilot, lambda: "capital" in prompt.text.lower(),  # type: ignore[attr-defined]
                        timeout=90)
            assert "france" in prompt.text.lower()  # type: ignore[attr-defined]
            await pilot.press("f9")
            assert app.voice.read_aloud
            assert "read aloud" in str(app.query_one("#status").render())
            # a bounded, greedy reply: an unbounded sampled one can run for minutes while
            # it is also being read aloud on two cores
            assert app.conv is not None
            app.conv.options = {"num_predict": 48, "temperature": 0}
            app.action_send()
            await until(pilot, lambda: app.conv is not None and len(app.conv.messages) == 2
                        and not app.generating, timeout=90)
            await until(pilot, lambda: alsa.played_seconds(22050) > 0.5)
            await until(pilot, lambda: not app.voice.speaking, timeout=60)
        assert alsa.played_rms() > 0.005
        assert any("listening" in s for s in seen)

    asyncio.run(run())
