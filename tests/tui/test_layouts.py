"""Layout snapshots at 80x24 and 120x40, with a fake backend so the text is fixed.

Set LLMTUI_UPDATE_SNAPSHOTS=1 to rewrite the files after an intended change.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from llmtui.config import Settings
from llmtui.history import History
from llmtui.tui.app import ChatApp
from tests.tui.fake import FakeBackend, screen_text

SNAPSHOTS = Path(__file__).parent / "snapshots"


def check(name: str, text: str) -> None:
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("LLMTUI_UPDATE_SNAPSHOTS") or not path.exists():
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
    assert text + "\n" == path.read_text(encoding="utf-8"), f"layout changed: {path}"


@pytest.fixture()
def app_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, History]:
    from llmtui import machine

    # The same machine on every box: 16 GB of RAM, 10 GB/s, no GPU.
    here = machine.Machine(system="Linux", arch="x86_64", cpu="test", cores_physical=4,
                           cores_logical=8, ram_total=16 * 10**9, ram_available=12 * 10**9,
                           bandwidth=10e9, cpu_score=500.0, models_dir="/tmp",
                           disk_free=100 * 10**9)
    monkeypatch.setattr(machine, "probe", lambda *a, **kw: here)
    monkeypatch.chdir(tmp_path)
    settings = Settings.load({"LLMTUI_HOME": str(tmp_path / "home")})
    return settings, History.default(settings)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_layouts(app_parts: tuple[Any, History], size: tuple[int, int]) -> None:
    asyncio.run(layouts(*app_parts, size))


async def layouts(settings: Any, history: History, size: tuple[int, int]) -> None:
    app = ChatApp(FakeBackend(), history, settings)
    tag = f"{size[0]}x{size[1]}"
    async with app.run_test(size=size) as pilot:
        await pilot.pause(0.3)
        check(f"empty-{tag}", screen_text(app))
        await pilot.press(*"Write add()")
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause(0.3)
        check(f"chat-{tag}", screen_text(app))
        await pilot.press("f1")
        await pilot.pause(0.3)
        check(f"help-{tag}", screen_text(app))
        await pilot.press("escape", "f3")
        await pilot.pause(0.5)
        await app.workers.wait_for_complete()
        await pilot.pause(0.2)
        check(f"manager-{tag}", screen_text(app))


def test_no_color_still_shows_everything(app_parts: tuple[Any, History],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    settings, history = app_parts

    async def run() -> None:
        app = ChatApp(FakeBackend(), history, settings)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.3)
            text = screen_text(app)
            assert "smollm2:135m" in text and "F1 help" in text
            assert app.no_color
    asyncio.run(run())
