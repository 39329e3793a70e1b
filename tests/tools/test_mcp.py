"""MCP servers as tool sources: a real server written here with the `mcp` SDK, over stdio
and streamable HTTP on 127.0.0.1; mcp.json; `llm mcp`; `llm run --mcp` with the real
tiny model; and the ways a server can fail."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmtui.errors import ConfigError, InvalidInput
from llmtui.tools import ToolSet
from llmtui.tools.mcp import McpHost, ServerSpec, load_config, spec_from_arg
from tests.api.conftest import free_port
from tests.conftest import Runner, one_line_error

FACT = "ZEBRA-4471"
SERVER = f'''
import os, sys, time
from mcp.server.mcpserver import MCPServer

app = MCPServer("facts")


@app.tool()
def secret_code(city: str) -> str:
    """The secret code of a city."""
    return "The secret code of " + city + " is {FACT}."


@app.tool()
def hang(seconds: float) -> str:
    """Sleep, then answer."""
    time.sleep(seconds)
    return "woke"


@app.tool()
def crash() -> str:
    """Exit in the middle of the call."""
    os._exit(3)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        app.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
    else:
        app.run()
'''


@pytest.fixture(scope="module")
def server_py(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mcp") / "facts.py"
    path.write_text(SERVER)
    return path


def _stdio(server_py: Path) -> ServerSpec:
    return ServerSpec("facts", command=sys.executable, args=[str(server_py)])


def test_stdio_server_tools_calls_and_failures(server_py: Path) -> None:
    lines: list[str] = []
    bad = ServerSpec("ghost", command="/nonexistent/mcp-server")
    with McpHost([_stdio(server_py), bad], call_timeout=2, warn=lines.append) as host:
        tools = ToolSet()
        tools.extend(host.tools())
        assert tools.names() == ["facts.secret_code", "facts.hang", "facts.crash"]
        params = tools.tools["facts.secret_code"].parameters
        assert params["required"] == ["city"]
        assert FACT in tools.call("facts.secret_code", {"city": "Oslo"}).result
        # a missing command: one line, and the rest go on
        assert len(lines) == 1 and "MCP server 'ghost'" in lines[0]
        assert "no such command" in lines[0] and "going on without it" in lines[0]
        # a call that hangs past the timeout fails; the server still answers after it
        started = time.monotonic()
        slow = tools.call("facts.hang", {"seconds": 30})
        assert slow.status == "error" and "did not answer within 2 s" in slow.result
        assert time.monotonic() - started < 20
        assert tools.call("facts.secret_code", {"city": "Rome"}).status == "ok"
        # a server that dies mid-call fails that call, then every later one, clearly
        died = tools.call("facts.crash", {})
        assert died.status == "error" and "stopped" in died.result
        after = tools.call("facts.secret_code", {"city": "Rome"})
        assert after.status == "error" and "is not running" in after.result


def test_server_processes_end_with_the_host(server_py: Path) -> None:
    with McpHost([_stdio(server_py)]) as host:
        assert host.tools()
    time.sleep(0.5)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(server_py) not in ps


@pytest.fixture(scope="module")
def http_server(server_py: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(server_py), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_streamable_http_server(http_server: str) -> None:
    with McpHost([spec_from_arg(f"facts={http_server}", {})]) as host:
        tools = ToolSet()
        tools.extend(host.tools())
        assert "facts.secret_code" in tools.names()
        assert FACT in tools.call("facts.secret_code", {"city": "Oslo"}).result


def test_mcp_json_and_arguments(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    assert load_config(path) == {}
    path.write_text(json.dumps({"mcpServers": {
        "files": {"command": "npx", "args": ["-y", "server-fs", "."], "env": {"A": "1"}},
        "web": {"url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": "x"}}}}))
    servers = load_config(path)
    assert servers["files"].args == ["-y", "server-fs", "."] and servers["files"].env == \
        {"A": "1"}
    assert servers["web"].url == "http://127.0.0.1:9/mcp"
    assert spec_from_arg("files", servers) is servers["files"]
    assert spec_from_arg("python3 -u tools/facts.py --verbose", {}).name == "facts"
    assert spec_from_arg("kb=python3 x.py", {}).name == "kb"
    with pytest.raises(InvalidInput, match="needs a server"):
        spec_from_arg("  ", {})
    for text, needle in [
        ("{", "not valid JSON"), ('{"mcpServers": []}', "expected"),
        ('{"mcpServers": {"a": {"args": []}}}', "needs a 'command'"),
        ('{"mcpServers": {"a": {"command": "x", "args": "y"}}}', "list of strings"),
        ('{"mcpServers": {"a b": {"command": "x"}}}', "letters, digits"),
    ]:
        path.write_text(text)
        with pytest.raises(ConfigError, match=needle):
            load_config(path)
    with pytest.raises(InvalidInput, match="two MCP servers"):
        McpHost([ServerSpec("a", command="x"), ServerSpec("a", command="y")])


def test_llm_mcp_commands(llm: Runner, server_py: Path, home: Path) -> None:
    res = llm("mcp", "add", "facts", sys.executable, str(server_py))
    assert res.returncode == 0, res.stderr
    assert "added 'facts'" in res.stderr
    assert "already a server" in one_line_error(llm("mcp", "add", "facts", "x").stderr)
    listed = json.loads(llm("mcp", "list", "--json").stdout)
    assert listed == {"facts": {"command": sys.executable, "args": [str(server_py)]}}
    tested = llm("mcp", "test", "facts", "--json")
    assert tested.returncode == 0, tested.stderr
    assert [t["name"] for t in json.loads(tested.stdout)] == \
        ["facts.secret_code", "facts.hang", "facts.crash"]
    gone = llm("mcp", "test", "/nonexistent/server --flag")
    assert gone.returncode != 0 and "did not start" in one_line_error(gone.stderr)
    assert "no such command" in gone.stderr
    assert llm("mcp", "rm", "facts").returncode == 0
    assert "no MCP server named 'facts'" in one_line_error(llm("mcp", "rm", "facts").stderr)
    (home / "config" / "mcp.json").write_text("{")
    bad = llm("mcp", "list")
    assert "mcp.json is not valid JSON" in one_line_error(bad.stderr)
    assert (home / "config" / "mcp.json").read_text() == "{"  # nothing lost
    assert "not valid JSON" in one_line_error(llm("mcp", "add", "x", "y").stderr)
    assert (home / "config" / "mcp.json").read_text() == "{"


def test_run_calls_an_mcp_tool(warm: Runner, server_py: Path) -> None:
    res = warm("run", "-m", "smollm2:135m", "-n", "40", "--temperature", "0",
               "--mcp", f"{sys.executable} {server_py}", "--tool-choice", "facts.secret_code",
               "--yes", "--tool-rounds", "1", "--json", "What is the secret code of Paris?",
               start_new_session=True)
    assert res.returncode == 0, res.stderr
    (call,) = json.loads(res.stdout)["calls"]
    assert call["name"] == "facts.secret_code" and call["status"] == "ok"
    assert isinstance(call["arguments"]["city"], str) and FACT in call["result"]


def test_sdk_with_mcp_tools(client: Any, server_py: Path) -> None:
    with McpHost([_stdio(server_py)]) as host:
        result = client.run_tools("smollm2:135m", "What is the secret code of Paris?",
                                  host.tools(), tool_choice="facts.secret_code",
                                  max_rounds=1,
                                  options={"num_predict": 40, "temperature": 0})
    (call,) = result.calls
    assert call.name == "facts.secret_code" and call.status == "ok"
    assert FACT in call.result
    tool_msgs = [m for m in result.messages if m["role"] == "tool"]
    assert tool_msgs and tool_msgs[0]["content"] == call.result


def test_run_with_a_server_that_does_not_start(warm: Runner) -> None:
    res = warm("run", "-m", "smollm2:135m", "-n", "5", "--mcp", "/nonexistent/srv",
               "--tools", "fs", "--yes", "hi", start_new_session=True)
    assert res.returncode == 0, res.stderr
    assert "MCP server 'srv'" in res.stderr and "going on without it" in res.stderr
    assert "Traceback" not in res.stderr
