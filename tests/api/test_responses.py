"""/v1/responses with the openai package's responses.create against a real daemon."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from llmtui.api.responses import input_messages
from llmtui.errors import InvalidInput
from tests.api.conftest import TcpDaemon, openai_client
from tests.api.test_thinking import ANSWER, ASK, THINKER, THOUGHT

SMOL = "smollm2:135m"
WEATHER = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
            "parameters": {"type": "object", "required": ["city"],
                           "properties": {"city": {"type": "string", "maxLength": 20}}}}]
PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 30},
                                           "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}


@pytest.fixture(scope="module")
def daemon(think_tcp: TcpDaemon) -> TcpDaemon:
    return think_tcp


@pytest.fixture(scope="module")
def ai(think_tcp: TcpDaemon) -> openai.OpenAI:
    return openai_client(think_tcp)  # type: ignore[no-any-return]


def test_input_items_become_messages() -> None:
    msgs = input_messages({"instructions": "Be brief.", "input": [
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Use the tool."}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather",
         "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "18 C"},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "It is 18 C."}]},
        {"role": "developer", "content": [{"type": "input_text", "text": "Thanks"}]}]})
    assert msgs == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "thinking": "Use the tool.", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "18 C"},
        {"role": "assistant", "content": "It is 18 C."},
        {"role": "system", "content": "Thanks"}]
    for bad, needle in (({"input": []}, "'input'"), ({"input": [{"type": "web_search_call"}]},
                                                     "unsupported type"),
                        ({"input": [{"role": "user", "content": [
                            {"type": "input_image", "image_url": "x"}]}]}, "input_image")):
        with pytest.raises(InvalidInput, match=needle):
            input_messages(bad)


def test_text_reply(ai: openai.OpenAI) -> None:
    r = ai.responses.create(model=SMOL, input="Say hello", instructions="Be brief.",
                            max_output_tokens=8, temperature=0)
    assert r.object == "response" and r.id.startswith("resp_")
    assert r.output_text and r.output[0].type == "message"
    assert r.usage is not None and r.usage.output_tokens == 8
    assert r.status == "incomplete" and r.incomplete_details is not None
    assert r.incomplete_details.reason == "max_output_tokens"
    done = ai.responses.create(model=SMOL, input=[{"role": "user", "content": "Hi"}],
                               max_output_tokens=60, temperature=0)
    assert done.status == "completed" and done.output_text


def test_streaming_events(ai: openai.OpenAI) -> None:
    events = list(ai.responses.create(model=SMOL, input="Say hello", max_output_tokens=8,
                                      temperature=0, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert events[-1].response.status == "incomplete"  # type: ignore[union-attr]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = [e for e in events if e.type == "response.output_text.done"]
    assert text and done[0].text == text
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == text
    with ai.responses.stream(model=SMOL, input="Say hello", max_output_tokens=5,
                             temperature=0) as stream:
        for _ in stream:
            pass
        assert stream.get_final_response().output_text


def test_structured_output(ai: openai.OpenAI) -> None:
    r = ai.responses.create(model=SMOL, input="Describe a person as JSON.", temperature=0,
                            max_output_tokens=80, text={"format": {
                                "type": "json_schema", "name": "person", "schema": PERSON}})
    data = json.loads(r.output_text)
    assert isinstance(data["name"], str) and isinstance(data["age"], int)


def test_function_calls(ai: openai.OpenAI) -> None:
    r = ai.responses.create(model=SMOL, input="What is the weather in Paris?", tools=WEATHER,  # type: ignore[arg-type]
                            tool_choice="required", max_output_tokens=40, temperature=0)
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert "city" in json.loads(calls[0].arguments) and calls[0].call_id.startswith("call_")
    # the result goes back as input items; the model then answers in text
    follow = ai.responses.create(model=SMOL, tools=WEATHER, max_output_tokens=12,  # type: ignore[arg-type]
                                 temperature=0, input=[
        {"role": "user", "content": "What is the weather in Paris?"},
        {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather",
         "arguments": calls[0].arguments},
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18 C, sunny"}])
    assert follow.output_text
    streamed = list(ai.responses.create(
        model=SMOL, input="Weather in Rome?", tools=WEATHER, max_output_tokens=40,  # type: ignore[arg-type]
        temperature=0, stream=True, tool_choice={"type": "function", "name": "get_weather"}))
    args = [e for e in streamed if e.type == "response.function_call_arguments.done"]
    assert len(args) == 1 and "city" in json.loads(args[0].arguments)
    assert not [e for e in streamed if e.type == "response.output_text.delta"]


def test_reasoning(ai: openai.OpenAI) -> None:
    inputs = [{"role": m["role"], "content": m["content"]} for m in ASK]
    r = ai.responses.create(model=THINKER, input=inputs, max_output_tokens=40,  # type: ignore[arg-type]
                            temperature=0, extra_body={"seed": 1, "options": {
                                "repeat_penalty": 1.0}})
    assert [o.type for o in r.output] == ["reasoning", "message"]
    assert r.output[0].summary[0].text == THOUGHT  # type: ignore[union-attr]
    assert r.output_text == ANSWER
    events = list(ai.responses.create(model=THINKER, input=inputs, max_output_tokens=40,  # type: ignore[arg-type]
                                      temperature=0, stream=True, extra_body={
                                          "seed": 1, "options": {"repeat_penalty": 1.0}}))
    thought = "".join(e.delta for e in events
                      if e.type == "response.reasoning_summary_text.delta")
    assert thought == THOUGHT
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == ANSWER


def test_errors(ai: openai.OpenAI, daemon: TcpDaemon) -> None:
    with pytest.raises(openai.NotFoundError):
        ai.responses.create(model="nope:1b", input="hi")
    with pytest.raises(openai.BadRequestError, match="previous_response_id"):
        ai.responses.create(model=SMOL, input="hi", previous_response_id="resp_123")
    with pytest.raises(openai.BadRequestError, match="only function tools"):
        ai.responses.create(model=SMOL, input="hi", tools=[{"type": "web_search"}])  # type: ignore[list-item]
    with pytest.raises(openai.BadRequestError, match="reasoning effort"):
        ai.responses.create(model=SMOL, input="hi", reasoning={"effort": "lots"})  # type: ignore[typeddict-item]
    r = httpx.post(daemon.url + "/v1/responses", json={"model": SMOL, "input": 3})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
