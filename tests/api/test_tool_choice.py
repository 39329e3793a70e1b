"""Forced tool calls (OpenAI tool_choice "required" and a named function): a grammar makes
even the tiny model answer with a well-formed call."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from llmtui.backends.tools import call_schema, check_tools, parse_tool_calls, tool_choice
from llmtui.errors import InvalidInput
from tests.api.conftest import TcpDaemon

SMOL = "smollm2:135m"
TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string",
                                                                 "maxLength": 20}},
                       "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "add", "description": "Add two integers",
        "parameters": {"type": "object", "properties": {"a": {"type": "integer"},
                                                        "b": {"type": "integer"}},
                       "required": ["a", "b"]}}},
]


def test_call_schema_and_tool_choice_values() -> None:
    tools = check_tools(TOOLS)
    assert tools is not None
    one = call_schema(tools, "add")
    assert one["properties"]["name"] == {"const": "add"}
    assert one["properties"]["arguments"]["required"] == ["a", "b"]
    assert [s["properties"]["name"]["const"] for s in call_schema(tools)["anyOf"]] == \
        ["get_weather", "add"]
    assert tool_choice(tools, "auto") == (tools, None)
    assert tool_choice(tools, None) == (tools, None)
    assert tool_choice(tools, "none") == (None, None)
    assert tool_choice(tools, "required")[1] == call_schema(tools)
    named = {"type": "function", "function": {"name": "add"}}
    assert tool_choice(tools, named)[1] == one
    assert tool_choice(tools, {"type": "function", "name": "add"})[1] == one  # responses
    assert tool_choice(tools, {"type": "function", "function": {}, "name": "add"})[1] == one
    # a tool without parameters still gets an object for its arguments
    bare = check_tools([{"type": "function", "function": {"name": "now"}}])
    assert bare is not None
    assert call_schema(bare)["properties"]["arguments"] == {"type": "object"}
    for bad in ("sometimes", {"type": "function"}, {"type": "function", "function": {}}, 3):
        with pytest.raises(InvalidInput, match="tool_choice must be"):
            tool_choice(tools, bad)
    with pytest.raises(InvalidInput, match="not in 'tools'"):
        tool_choice(tools, {"type": "function", "function": {"name": "nope"}})
    with pytest.raises(InvalidInput, match="needs 'tools'"):
        tool_choice(None, "required")
    # what the grammar makes the model write parses back into a call
    assert parse_tool_calls('{"name": "add", "arguments": {"a": 1, "b": 2}}', tools) == \
        [{"function": {"name": "add", "arguments": {"a": 1, "b": 2}}}]


@pytest.fixture(scope="module")
def ai(tcp: TcpDaemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=tcp.url + "/v1", api_key="unused", timeout=120,
                         max_retries=0)


def _ask(ai: openai.OpenAI, choice: object, stream: bool = False, **kw: object) -> object:
    return ai.chat.completions.create(  # type: ignore[call-overload]
        model=SMOL, messages=[{"role": "user", "content": "Hello there! How are you?"}],
        tools=TOOLS, tool_choice=choice, max_tokens=60, temperature=0, stream=stream, **kw)


def test_required_forces_a_call(ai: openai.OpenAI) -> None:
    # A greeting: left to itself ("auto") the tiny model answers in words.
    auto = _ask(ai, "auto")
    assert auto.choices[0].finish_reason == "stop"  # type: ignore[attr-defined]
    assert not auto.choices[0].message.tool_calls  # type: ignore[attr-defined]
    forced = _ask(ai, "required")
    choice = forced.choices[0]  # type: ignore[attr-defined]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name in {"get_weather", "add"}
    args = json.loads(call.function.arguments)
    assert set(args) == ({"city"} if call.function.name == "get_weather" else {"a", "b"})


def test_named_function_forces_that_call(ai: openai.OpenAI) -> None:
    r = _ask(ai, {"type": "function", "function": {"name": "add"}})
    call = r.choices[0].message.tool_calls[0]  # type: ignore[attr-defined]
    assert call.function.name == "add"
    args = json.loads(call.function.arguments)
    assert isinstance(args["a"], int) and isinstance(args["b"], int)


def test_forced_call_streams_as_tool_call_deltas(ai: openai.OpenAI) -> None:
    chunks = list(_ask(ai, {"type": "function", "function": {"name": "get_weather"}},
                       stream=True))  # type: ignore[call-overload]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    calls = [tc for d in deltas for tc in (d.tool_calls or [])]
    assert len(calls) == 1 and calls[0].function.name == "get_weather"
    assert "city" in json.loads(calls[0].function.arguments)
    assert not "".join(d.content or "" for d in deltas)  # no call text leaks as content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_tool_choice_errors(ai: openai.OpenAI, tcp: TcpDaemon) -> None:
    with pytest.raises(openai.BadRequestError, match="not in 'tools'"):
        _ask(ai, {"type": "function", "function": {"name": "nope"}})
    with pytest.raises(openai.BadRequestError, match="tool_choice must be"):
        _ask(ai, "always")
    r = httpx.post(tcp.url + "/v1/chat/completions", timeout=60, json={
        "model": SMOL, "tool_choice": "required",
        "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400 and "needs 'tools'" in r.json()["error"]["message"]
