"""The chat with a thinking model (Pilot, real daemon): the reasoning is folded under the
reply, kept in the history, and shown again when the conversation is reopened."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llmtui.config import Settings
from llmtui.history import History, Message
from llmtui.tui.widgets.thinking import ThinkingView, thinking_title
from tests.api.test_thinking import ANSWER, SAME, SHOTS, THINKER, THOUGHT
from tests.conftest import import_models
from tests.tui.fake import screen_text
from tests.tui.test_chat import make_app, send, until


@pytest.fixture()
def think_home(home: Path, smollm: Path, thinker: Path) -> Path:
    import_models(home, smollm, extra={"thinker": thinker})
    return home


def test_titles() -> None:
    assert thinking_title("", live=True) == "Thinking…"
    assert thinking_title("one two three", live=False) == "Thought · 3 words"
    assert thinking_title("one", live=False) == "Thought · 1 word"


def test_reasoning_folded_under_the_reply(think_home: Path) -> None:
    history = History.default(Settings.load({"LLMTUI_HOME": str(think_home)}))
    conv = history.create(title="sums", model=THINKER, options=SAME)
    for m in SHOTS:  # worked examples: the tiny model then closes its reasoning
        history.add(conv.id, Message(role=m["role"], content=m["content"], model=THINKER))

    async def run() -> None:
        app = make_app(think_home, conversation=conv.id)
        async with app.run_test(size=(100, 40)) as pilot:
            await until(pilot, lambda: app.daemon_state == "running")
            assert app.conv is not None
            n = await send(pilot, app, "What is 4+4?")
            await until(pilot, lambda: len(app.conv.messages) == n and not app.generating
                        and not app.conv.messages[-1].partial, timeout=120)
            reply = app.conv.messages[-1]
            assert reply.content == ANSWER and reply.stats["thinking"] == THOUGHT, reply.stats
            folds = list(app.query(ThinkingView))
            assert len(folds) == 1 and folds[0].collapsed
            folds[0].scroll_visible(animate=False)
            await pilot.pause(0.3)
            text = screen_text(app)
            assert "▶ " + thinking_title(THOUGHT, live=False) in text  # "Thought · 7 words"
            assert "4+4 = 8" not in text
            await pilot.click(folds[0].query_one("CollapsibleTitle"))  # opens the fold
            await pilot.pause(0.3)
            assert not folds[0].collapsed
            assert "4+4 = 8" in screen_text(app)
            assert app.history.get(conv.id).messages[-1].stats["thinking"] == THOUGHT
        again = make_app(think_home, conversation=conv.id)
        async with again.run_test(size=(100, 40)) as pilot:
            await until(pilot, lambda: again.conv is not None and
                        len(list(again.query(ThinkingView))) == 1, timeout=30)
            assert again.query_one(ThinkingView).text == THOUGHT
            # the reasoning goes back to the model with the message
            assert again.conv is not None
            assert again.conv.messages[-1].for_model() == {
                "role": "assistant", "content": ANSWER, "thinking": THOUGHT}
    asyncio.run(run())
