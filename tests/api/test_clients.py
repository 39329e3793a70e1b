"""The official `ollama` and `openai` Python packages against a real daemon on TCP."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from tests.api.conftest import TcpDaemon
from tests.httpserver import ModelServer

SMOL = "smollm2:135m"
GREEDY = {"temperature": 0, "repeat_penalty": 1.0}
PERSON = {"type": "object", "properties": {"name": {"type": "string"},
                                           "age": {"type": "integer"}},
          "required": ["name", "age"]}
WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]
# A schema that makes the tiny model answer with a call (it would not choose to on its own).
CALL_SCHEMA = {"type": "object", "required": ["name", "arguments"], "properties": {
    "name": {"const": "get_weather"},
    "arguments": {"type": "object", "required": ["city"],
                  "properties": {"city": {"type": "string", "maxLength": 20}}}}}


@pytest.fixture(scope="module")
def oc(tcp: TcpDaemon) -> ollama.Client:
    return ollama.Client(host=tcp.url, timeout=120)


@pytest.fixture(scope="module")
def ai(tcp: TcpDaemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=tcp.url + "/v1", api_key="unused", timeout=120,
                         max_retries=0)


# -- ollama ---------------------------------------------------------------------------------

def test_ollama_list_show_ps(oc: ollama.Client) -> None:
    names = {m.model for m in oc.list().models}
    assert {SMOL, "gemma3:270m"} <= names
    shown = oc.show(SMOL)
    assert shown.details.quantization_level == "Q4_1"
    assert "im_start" in (shown.template or "")
    assert shown.modelinfo["general.architecture"] == "llama"
    oc.generate(model=SMOL, prompt="hi", options={"num_predict": 1})
    assert SMOL in {m.model for m in oc.ps().models}


def test_ollama_chat_and_streaming_generate(oc: ollama.Client) -> None:
    r = oc.chat(model=SMOL, messages=[{"role": "user", "content": "Say hello"}],
                options={"num_predict": 8, **GREEDY})
    assert r.message.role == "assistant" and r.message.content
    assert r.done and r.eval_count == 8 and r.done_reason == "length"
    parts = list(oc.generate(model=SMOL, prompt="1, 2, 3, 4,", raw=True, stream=True,
                             options={"num_predict": 6, **GREEDY}))
    assert len(parts) >= 3 and parts[-1].done and not parts[0].done
    assert "".join(p.response for p in parts).startswith(" 5, 6")


def test_ollama_structured_output(oc: ollama.Client) -> None:
    r = oc.chat(model=SMOL, messages=[{"role": "user", "content": "Describe a person."}],
                format=PERSON, options={"num_predict": 80, **GREEDY})
    data = json.loads(r.message.content)
    assert isinstance(data["name"], str) and isinstance(data["age"], int)
    r2 = oc.generate(model=SMOL, prompt="Reply with a JSON object with one key 'ok' set to "
                     "true.", format="json", options={"num_predict": 60, **GREEDY})
    assert json.loads(r2.response) == {"ok": True}


def test_ollama_tool_calls(oc: ollama.Client) -> None:
    r = oc.chat(model=SMOL, messages=[{"role": "user", "content": "Weather in Paris?"}],
                tools=WEATHER, format=CALL_SCHEMA, options={"num_predict": 40, **GREEDY})
    assert r.message.tool_calls, r.message
    call = r.message.tool_calls[0].function
    assert call.name == "get_weather" and isinstance(call.arguments["city"], str)
    # The tool's answer goes back as a "tool" message and the model replies in text.
    r2 = oc.chat(model=SMOL, tools=WEATHER, options={"num_predict": 10, **GREEDY}, messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [r.message.tool_calls[0]]},
        {"role": "tool", "content": "18 C and sunny"}])
    assert r2.message.content and not r2.message.tool_calls


def test_ollama_embed(oc: ollama.Client) -> None:
    e = oc.embed(model=SMOL, input=["the cat sat", "a dog ran"])
    assert len(e.embeddings) == 2 and len(e.embeddings[0]) == 576
    assert abs(sum(x * x for x in e.embeddings[0]) - 1.0) < 1e-3
    legacy = oc.embeddings(model=SMOL, prompt="the cat sat")
    assert pytest.approx(list(legacy.embedding), abs=1e-4) == list(e.embeddings[0])


def test_ollama_pull_create_copy_delete(oc: ollama.Client, smollm: Path) -> None:
    with ModelServer() as server:
        url = server.add("/files/tiny.gguf", smollm)
        statuses = [p.status for p in oc.pull(url, stream=True)]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert "verifying sha256 digest" in statuses and "writing manifest" in statuses
    assert "tiny:latest" in {m.model for m in oc.list().models}
    # create from an existing model, with a system prompt and parameters
    oc.create(model="mario", from_=SMOL, system="You are Mario from Super Mario Bros.",
              parameters={"temperature": 0, "num_predict": 5})
    shown = oc.show("mario")
    assert 'SYSTEM """You are Mario from Super Mario Bros."""' in (shown.modelfile or "")
    assert "temperature 0" in (shown.parameters or "")
    r = oc.chat(model="mario", messages=[{"role": "user", "content": "Who are you?"}])
    assert r.eval_count == 5  # the model's own num_predict applies
    # create from an uploaded blob
    digest = oc.create_blob(smollm)
    oc.create(model="fromblob", files={"model.gguf": digest})
    assert oc.show("fromblob").details.family == "smollm2"
    oc.copy("fromblob", "fromblob-copy")
    for name in ("tiny", "mario", "fromblob", "fromblob-copy"):
        oc.delete(name)
    left = {m.model for m in oc.list().models}
    assert not left & {"tiny:latest", "mario:latest", "fromblob:latest"}
    with pytest.raises(ollama.ResponseError) as err:
        oc.delete("mario")
    assert err.value.status_code == 404


def test_ollama_errors(oc: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        oc.chat(model="nope:1b", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 404 and "not found" in err.value.error
    with pytest.raises(ollama.ResponseError) as err:
        oc.generate(model=SMOL, prompt="hi", options={"temperature": -1})
    assert err.value.status_code == 400


# -- openai ---------------------------------------------------------------------------------

def test_openai_models(ai: openai.OpenAI) -> None:
    ids = {m.id for m in ai.models.list()}
    assert SMOL in ids
    assert ai.models.retrieve(SMOL).id == SMOL
    with pytest.raises(openai.NotFoundError):
        ai.models.retrieve("nope:1b")


def test_openai_chat_seed_stop_usage(ai: openai.OpenAI) -> None:
    kw = {"model": SMOL, "messages": [{"role": "user", "content": "Tell me a story."}],
          "max_tokens": 12, "seed": 7, "temperature": 0.9}
    a = ai.chat.completions.create(**kw)  # type: ignore[call-overload]
    b = ai.chat.completions.create(**kw)  # type: ignore[call-overload]
    assert a.choices[0].message.content == b.choices[0].message.content  # same seed
    assert a.usage.completion_tokens == 12 and a.choices[0].finish_reason == "length"
    r = ai.completions.create(model=SMOL, prompt="1, 2, 3, 4,", max_tokens=20, stop=[", 7"],
                              temperature=0, extra_body={"repeat_penalty": 1.0})
    assert r.choices[0].text == " 5, 6" and r.choices[0].finish_reason == "stop"


def test_openai_streaming_with_usage(ai: openai.OpenAI) -> None:
    chunks = list(ai.chat.completions.create(
        model=SMOL, messages=[{"role": "user", "content": "hi"}], max_tokens=6, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_openai_structured_output(ai: openai.OpenAI) -> None:
    r = ai.chat.completions.create(
        model=SMOL, messages=[{"role": "user", "content": "A person, as JSON."}],
        max_tokens=80, temperature=0,
        response_format={"type": "json_schema",
                         "json_schema": {"name": "person", "schema": PERSON}})
    data = json.loads(r.choices[0].message.content or "")
    assert set(data) >= {"name", "age"}
    r2 = ai.chat.completions.create(
        model=SMOL, messages=[{"role": "user", "content": "Reply with a JSON object with one "
                              "key 'ok' set to true."}], max_tokens=60,
        temperature=0, response_format={"type": "json_object"}, extra_body={"repeat_penalty": 1})
    assert isinstance(json.loads(r2.choices[0].message.content or ""), dict)


def test_openai_tools(ai: openai.OpenAI) -> None:
    r = ai.chat.completions.create(
        model=SMOL, messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=WEATHER, max_tokens=40, temperature=0,  # type: ignore[arg-type]
        response_format={"type": "json_schema",
                         "json_schema": {"name": "call", "schema": CALL_SCHEMA}})
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    assert "city" in json.loads(call.function.arguments)


def test_openai_embeddings(ai: openai.OpenAI) -> None:
    e = ai.embeddings.create(model=SMOL, input=["a", "b", "c"])
    assert [d.index for d in e.data] == [0, 1, 2] and len(e.data[0].embedding) == 576
    b64 = ai.embeddings.create(model=SMOL, input="a", encoding_format="base64")
    assert b64.data[0].embedding  # the package decodes base64 itself


def test_openai_sets_context_length(ai: openai.OpenAI, tcp: TcpDaemon) -> None:
    ai.chat.completions.create(model=SMOL, messages=[{"role": "user", "content": "hi"}],
                               max_tokens=2, extra_body={"num_ctx": 1024})
    loaded = httpx.get(tcp.url + "/api/ps").json()["models"]
    assert any(m["name"] == SMOL and m["context_length"] == 1024 for m in loaded)


def test_openai_errors(ai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        ai.chat.completions.create(model="nope:1b", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as err:
        ai.chat.completions.create(model=SMOL, messages=[{"role": "user", "content": "x"}],
                                   temperature=-1)
    assert "temperature" in str(err.value)
