"""Anthropic's Messages API on a real `llm serve`, with the official `anthropic` package."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from tests.api.conftest import TcpDaemon

SMOL = "smollm2:135m"
TOOLS = [{"name": "get_weather", "description": "Current weather for a city",
          "input_schema": {"type": "object", "properties": {
              "city": {"type": "string", "maxLength": 20}}, "required": ["city"]}}]
T0 = {"temperature": 0}  # the newest anthropic package has no temperature argument
HELLO = [{"role": "user", "content": "Hello there! How are you?"}]


@pytest.fixture(scope="module")
def claude(tcp: TcpDaemon) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=tcp.url, api_key="unused", timeout=120,
                               max_retries=0)


def test_a_message(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(model=SMOL, max_tokens=20, extra_body=T0,
                                 system="You are terse.", messages=HELLO)  # type: ignore
    assert msg.type == "message" and msg.role == "assistant" and msg.model == SMOL
    assert msg.id.startswith("msg_")
    assert msg.content[0].type == "text" and msg.content[0].text.strip()
    assert msg.stop_reason in ("end_turn", "max_tokens")
    assert msg.usage.input_tokens > 0 and 0 < msg.usage.output_tokens <= 20


def test_max_tokens_stop_reason(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(model=SMOL, max_tokens=3, messages=[  # type: ignore
        {"role": "user", "content": "Write a long story about a dragon."}])
    assert msg.stop_reason == "max_tokens" and msg.usage.output_tokens == 3


def test_streaming_events_in_order(claude: anthropic.Anthropic) -> None:
    kinds = []
    with claude.messages.stream(model=SMOL, max_tokens=20, extra_body=T0,  # type: ignore
                                messages=HELLO) as stream:
        for event in stream:
            kinds.append(event.type)
        final = stream.get_final_message()
    raw = [k for k in kinds if k in ("message_start", "content_block_start",
                                     "content_block_delta", "content_block_stop",
                                     "message_delta", "message_stop")]
    assert raw[0] == "message_start" and raw[1] == "content_block_start"
    assert raw[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert "text" in kinds  # the SDK's own text events, built from text_delta
    assert final.content[0].type == "text" and final.content[0].text.strip()
    assert final.usage.output_tokens > 0 and final.stop_reason in ("end_turn", "max_tokens")


def test_forced_tool_call_and_the_result_back(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(model=SMOL, max_tokens=60, extra_body=T0, tools=TOOLS,  # type: ignore
                                 tool_choice={"type": "any"}, messages=HELLO)
    assert msg.stop_reason == "tool_use"
    (use,) = [b for b in msg.content if b.type == "tool_use"]
    assert use.name == "get_weather" and isinstance(use.input["city"], str)  # type: ignore
    # the tool's result goes back in a tool_result block; the model answers in words
    follow = claude.messages.create(model=SMOL, max_tokens=20, extra_body=T0, tools=TOOLS,  # type: ignore
                                    messages=[*HELLO, {"role": "assistant",
                                                       "content": msg.content},
                                              {"role": "user", "content": [
                                                  {"type": "tool_result",
                                                   "tool_use_id": use.id,
                                                   "content": "Sunny, 21 C"}]}],
                                    tool_choice={"type": "none"})
    assert follow.stop_reason in ("end_turn", "max_tokens")
    assert follow.content[0].type == "text"


def test_forced_named_tool_streams_input_json(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model=SMOL, max_tokens=60, extra_body=T0, tools=TOOLS,  # type: ignore
                                tool_choice={"type": "tool", "name": "get_weather"},
                                messages=HELLO) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert "input_json" in kinds
    assert final.stop_reason == "tool_use"
    (use,) = final.content
    assert use.type == "tool_use" and isinstance(use.input["city"], str)  # type: ignore


def test_count_tokens(claude: anthropic.Anthropic) -> None:
    short = claude.messages.count_tokens(model=SMOL, messages=HELLO)  # type: ignore
    more = claude.messages.count_tokens(model=SMOL, messages=HELLO, tools=TOOLS,  # type: ignore
                                        system="Be brief.")
    assert 0 < short.input_tokens < more.input_tokens


def test_errors_in_anthropic_shape(claude: anthropic.Anthropic, tcp: TcpDaemon) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        claude.messages.create(model="nope:1b", max_tokens=5, messages=HELLO)  # type: ignore
    assert info.value.body["type"] == "error"  # type: ignore[index]
    assert info.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude.messages.create(model=SMOL, max_tokens=5, messages=[  # type: ignore
            {"role": "tool", "content": "x"}])
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    for body, needle in [
        ({"model": SMOL, "max_tokens": 5, "messages": []}, "non-empty"),
        ({"model": SMOL, "max_tokens": 0, "messages": HELLO}, "max_tokens"),
        ({"model": SMOL, "max_tokens": 5, "messages": HELLO, "tool_choice": {"type": "x"}},
         "tool_choice"),
        ({"model": SMOL, "max_tokens": 5, "messages": HELLO, "tools": TOOLS,
          "tool_choice": {"type": "tool", "name": "other"}}, "not in 'tools'"),
        ({"model": SMOL, "max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "document"}]}]}, "unsupported block"),
        ({"model": SMOL, "max_tokens": 5, "messages": HELLO, "thinking": "yes"},
         "thinking"),
    ]:
        resp = httpx.post(tcp.url + "/v1/messages", json=body, timeout=60,
                          headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
        assert resp.status_code == 400, (body, resp.text)
        err = resp.json()
        assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
        assert needle in err["error"]["message"], err


def test_output_config_format_gives_json(claude: anthropic.Anthropic) -> None:
    import json

    schema = {"type": "object", "properties": {"mood": {"type": "string", "maxLength": 10}},
              "required": ["mood"], "additionalProperties": False}
    msg = claude.messages.create(model=SMOL, max_tokens=40, messages=HELLO,  # type: ignore
                                 output_config={"format": {"type": "json_schema",
                                                           "schema": schema}})
    assert isinstance(json.loads(msg.content[0].text)["mood"], str)  # type: ignore


def test_what_claude_code_sends(tcp: TcpDaemon) -> None:
    """Claude Code 2.x (tried for real against this server) sends a system-role message
    among the messages, asks every model for adaptive thinking, adds cache_control,
    metadata, context_management and output_config.effort, and ?beta=true."""
    body = {"model": SMOL, "max_tokens": 8, "stream": False,
            "system": [{"type": "text", "text": "You are a coding agent.",
                        "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>x</system-reminder>"},
                {"type": "text", "text": "Say hi", "cache_control": {"type": "ephemeral"}}]},
                {"role": "system", "content": "Be brief."}],
            "tools": [{"name": "Bash", "description": "Run a command",
                       "input_schema": {"type": "object", "properties": {
                           "command": {"type": "string"}}, "required": ["command"]}}],
            "metadata": {"user_id": "u"}, "thinking": {"type": "adaptive"},
            "context_management": {"edits": []}, "output_config": {"effort": "high"}}
    resp = httpx.post(tcp.url + "/v1/messages?beta=true", json=body, timeout=120,
                      headers={"authorization": "Bearer x", "anthropic-version": "2023-06-01",
                               "anthropic-beta": "claude-code-20250219"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["type"] == "message"
