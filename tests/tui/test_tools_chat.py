"""Tools in the full-screen chat, with a real daemon, the real tiny model and a real MCP
server from mcp.json: the picker (Alt+T, /tools), the approval dialog (allow once, allow for
the session, deny), and the calls kept folded in the history."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from llmtui.config import Settings
from llmtui.history import History
from llmtui.tui.app import ChatApp
from llmtui.tui.backend import DaemonBackend
from llmtui.tui.screens import ToolApproval, ToolsScreen
from llmtui.tui.widgets import ToolCallView
from tests.conftest import import_models
from tests.tools.test_mcp import FACT, SERVER
from tests.tui.fake import FakeBackend, screen_text
from tests.tui.test_chat import send, until

QUESTION = "What is the secret code of Paris?"
GREEDY = {"num_predict": 40, "temperature": 0}


@pytest.fixture()
def tools_home(home: Path, smollm: Path, tmp_path: Path) -> Path:
    import_models(home, smollm)
    server = tmp_path / "facts.py"
    server.write_text(SERVER)
    config = Settings.load({"LLMTUI_HOME": str(home)}).paths.config_dir
    Path(config).mkdir(parents=True, exist_ok=True)
    (Path(config) / "mcp.json").write_text(json.dumps(
        {"mcpServers": {"facts": {"command": sys.executable, "args": [str(server)]}}}))
    return home


def make_app(home: Path, **kw: Any) -> ChatApp:
    settings = Settings.load({"LLMTUI_HOME": str(home)})
    return ChatApp(DaemonBackend(settings), History.default(settings), settings, **kw)


async def ask(pilot: Any, app: ChatApp, answer: str | None) -> None:
    """Send the question; answer the approval dialog with a key (None: expect none)."""
    assert app.conv is not None
    n = len(app.conv.messages)
    await send(pilot, app, QUESTION)
    if answer is None:
        await until(pilot, lambda: len(app.conv.messages) > n + 1 and not app.generating)
        return
    await until(pilot, lambda: isinstance(app.screen, ToolApproval))
    await until(pilot, lambda: "Run the tool facts.secret_code?" in screen_text(app), 10)
    assert '"city"' in screen_text(app)
    await pilot.press(answer)
    await until(pilot, lambda: not app.generating and not app.sending)


def tool_messages(app: ChatApp) -> list[Any]:
    assert app.conv is not None
    return [m for m in app.conv.messages if m.role == "tool"]


def test_chat_calls_an_mcp_tool_after_approval(tools_home: Path) -> None:
    async def run() -> None:
        app = make_app(tools_home, model="smollm2:135m")
        async with app.run_test(size=(110, 36)) as pilot:
            await until(pilot, lambda: app.daemon_state == "running")
            assert app.conv is not None
            app.conv.options = dict(GREEDY)
            # Alt+T: the picker lists the built-in groups and the server from mcp.json
            await pilot.press("alt+t")
            await until(pilot, lambda: isinstance(app.screen, ToolsScreen))
            picker = screen_text(app)
            assert "MCP server facts" in picker and "Files: read and list" in picker
            app.screen.query_one("SelectionList").select("facts")  # type: ignore[attr-defined]
            app.screen.query_one("#choice").value = "facts.secret_code"  # type: ignore[attr-defined]
            await pilot.press("ctrl+s")
            await until(pilot, lambda: app.toolset is not None, timeout=60)
            assert app.tool_choice == "facts.secret_code"
            assert "tools 3" in screen_text(app)  # secret_code, hang, crash

            # allow once: the call runs, its result goes into the next turn
            await ask(pilot, app, "y")
            conv = app.conv
            roles = [m.role for m in conv.messages]
            assert roles == ["user", "assistant", "tool", "assistant"], roles
            call = conv.messages[1].stats["tool_calls"][0]["function"]
            assert call["name"] == "facts.secret_code" and isinstance(
                call["arguments"]["city"], str)  # schema-valid
            (result,) = tool_messages(app)
            assert result.stats["status"] == "ok" and FACT in result.content
            request = app._request_messages()
            assert request[2]["role"] == "tool" and FACT in request[2]["content"]
            assert request[1]["tool_calls"][0]["function"]["name"] == "facts.secret_code"
            assert conv.messages[-1].content  # the answer, in words
            await until(pilot, lambda: "⚙ facts.secret_code" in screen_text(app), 10)
            assert "✓ ok" in screen_text(app)
            # the folded result opens to show what the tool returned
            assert FACT not in screen_text(app)
            view = app.query(ToolCallView).last()
            view.query_one("Collapsible").collapsed = False  # type: ignore[attr-defined]
            await until(pilot, lambda: FACT in screen_text(app), 10)

            # always for this tool: asked once more, then never again this session
            await ask(pilot, app, "a")
            assert [m.stats["status"] for m in tool_messages(app)] == ["ok", "ok"]
            await ask(pilot, app, None)
            assert [m.stats["status"] for m in tool_messages(app)] == ["ok", "ok", "ok"]
            conv_id = conv.id
        # the MCP server ended with the chat
        assert app._mcp is None or app._mcp.loop is None

        # the calls are in the history: shown folded again, exported in Markdown
        saved = app.history.get(conv_id)
        assert [m.role for m in saved.messages][:4] == ["user", "assistant", "tool",
                                                        "assistant"]
        assert "### Tool: facts.secret_code · ok" in saved.to_markdown()
        again = make_app(tools_home, conversation=conv_id)
        async with again.run_test(size=(110, 36)) as pilot:
            await until(pilot, lambda: again.conv is not None and again.conv.id == conv_id)
            await until(pilot, lambda: "⚙ facts.secret_code" in screen_text(again), 10)
    asyncio.run(run())


def test_chat_denied_call_tells_the_model(tools_home: Path) -> None:
    async def run() -> None:
        app = make_app(tools_home, model="smollm2:135m")
        async with app.run_test(size=(110, 36)) as pilot:
            await until(pilot, lambda: app.daemon_state == "running")
            assert app.conv is not None
            app.conv.options = dict(GREEDY)
            await pilot.press(*"/tools facts facts.secret_code")
            app.action_send()
            await until(pilot, lambda: app.toolset is not None, timeout=60)
            await ask(pilot, app, "n")
            (result,) = tool_messages(app)
            assert result.stats["status"] == "denied"
            assert "denied" in result.content
            assert FACT not in json.dumps(app._request_messages())
            assert app.conv.messages[-1].role == "assistant"  # the model was told, and went on
            await until(pilot, lambda: "⊘ denied" in screen_text(app), 10)
    asyncio.run(run())


def test_tools_bad_input_keeps_the_chat(home: Path) -> None:
    """An unknown source, a forced call of a tool not offered, a malformed mcp.json and a
    server that cannot start: one clear notice each, and the chat goes on without them."""
    settings = Settings.load({"LLMTUI_HOME": str(home)})
    config = Path(settings.paths.config_dir)
    config.mkdir(parents=True, exist_ok=True)

    async def run() -> None:
        app = ChatApp(FakeBackend(), History.default(settings), settings)
        async with app.run_test(size=(110, 36)) as pilot:
            await pilot.pause(0.3)
            seen: list[str] = []
            app.notify = lambda message, **kw: seen.append(str(message))  # type: ignore
            for command, expect in (
                    ("/tools nosuch", "'nosuch' is not a built-in tool group"),
                    ("/tools fs nosuch_tool", "--tool-choice must be auto, required or a "
                                              "tool's name"),
                    ("/tools ghost", "failed to start")):
                if command == "/tools ghost":
                    (config / "mcp.json").write_text(json.dumps(
                        {"mcpServers": {"ghost": {"command": "/nonexistent/mcp-server"}}}))
                seen.clear()
                await pilot.press(*command)
                app.action_send()
                await until(pilot, lambda want=expect: any(want in s for s in seen),
                            timeout=60)
                assert not app.toolset and app.tool_sources in ([], ["ghost"])
            (config / "mcp.json").write_text("{not json")
            await pilot.press("alt+t")
            await until(pilot, lambda: isinstance(app.screen, ToolsScreen))
            await until(pilot, lambda: "Cancel" in screen_text(app), 10)
            problem = app.screen.query_one("#problem").content  # type: ignore[attr-defined]
            assert "is not valid JSON" in str(problem)  # the picker says why
            await pilot.press("escape")
            await pilot.press(*"/tools fs")
            app.action_send()
            await until(pilot, lambda: app.toolset is not None)
            assert app.toolset.names() == ["read_file", "list_files"]
            await pilot.press(*"/tools off")
            app.action_send()
            await until(pilot, lambda: app.toolset is None)
    asyncio.run(run())


def test_chat_tools_option_offers_them_from_the_start(home: Path) -> None:
    """`llm chat --tools fs,shell`: the tools are there when the chat opens."""
    settings = Settings.load({"LLMTUI_HOME": str(home)})

    async def run() -> None:
        app = ChatApp(FakeBackend(), History.default(settings), settings,
                      tools=["fs", "shell"])
        async with app.run_test(size=(110, 36)) as pilot:
            await until(pilot, lambda: app.toolset is not None, timeout=30)
            assert app.toolset.names() == ["read_file", "list_files", "run_command"]
            await until(pilot, lambda: "tools 3" in screen_text(app), 10)
    asyncio.run(run())
