"""Thinking models: the reply's reasoning apart from its answer on every API, with a real
reasoning template (tests/thinking_model.py) on the SmolLM2 test model."""

from __future__ import annotations

import json
from typing import Any

import httpx
import ollama
import openai
import pytest

from llmtui.backends.thinking import (
    ThinkingParser,
    check_think,
    prompt_opens_block,
    split_thinking,
    template_tags,
    think_from_effort,
)
from llmtui.errors import InvalidInput
from tests.api.conftest import TcpDaemon, ollama_client, openai_client
from tests.thinking_model import THINK_TEMPLATE

SMOL = "smollm2:135m"
THINKER = "thinker:latest"
# Greedy with a seed: the reply is the same every time.
SAME = {"temperature": 0, "repeat_penalty": 1.0, "seed": 1, "num_predict": 40}
# A few worked examples whose replies think first: the tiny model follows the pattern,
# closing its reasoning and answering.
SHOTS: list[dict[str, Any]] = []
for q, a in (("2+2", "4"), ("3+3", "6"), ("5+1", "6")):
    SHOTS += [{"role": "user", "content": f"What is {q}?"},
              {"role": "assistant", "content": f"<think>\nI add the numbers: {q} = {a}.\n"
                                               f"</think>\n\nThe answer is {a}."}]
ASK = [*SHOTS, {"role": "user", "content": "What is 4+4?"}]
THOUGHT = "I add the numbers: 4+4 = 8.\n"
ANSWER = "The answer is 8."


# -- the parser ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text,thinking,content", [
    ("<think>Let me see.</think>Paris.", "Let me see.", "Paris."),
    ("  <think>\n\nhmm\n</think>\n\n  Paris.", "hmm\n", "Paris."),
    ("Paris.", "", "Paris."),
    ("  Paris, <think> is a tag", "", "  Paris, <think> is a tag"),
    ("<think>unfinished", "unfinished", ""),
    ("<think></think>", "", ""),
    ("<thi", "", "<thi"),
    ("<think>a</think>b</think>c", "a", "b</think>c"),
])
def test_parser_whole_and_streamed(text: str, thinking: str, content: str) -> None:
    assert split_thinking(text) == (thinking, content)
    for size in (1, 2, 3, 7):  # any chunking gives the same split
        parser = ThinkingParser()
        got = [parser.add(text[i:i + size]) for i in range(0, len(text), size)]
        got.append(parser.finish())
        assert ("".join(t for t, _ in got), "".join(c for _, c in got)) == (thinking, content)


def test_parser_started_inside_and_other_tags() -> None:
    # the template opened the block: the reply starts with reasoning, no opening tag
    assert split_thinking("I think.\n</think>\n\nYes.", inside=True) == ("I think.\n", "Yes.")
    assert split_thinking("[THINK]x[/THINK]y", ("[THINK]", "[/THINK]")) == ("x", "y")
    parser = ThinkingParser()
    assert parser.add("<think>abc</th") == ("abc", "")  # a partial closing tag waits
    assert parser.add("ink>done") == ("", "done")


def test_templates_that_think() -> None:
    assert template_tags(THINK_TEMPLATE) == ("<think>", "</think>")
    assert template_tags("{{ messages }}") is None and template_tags(None) is None
    assert template_tags("[THINK]{{ x }}[/THINK]") == ("[THINK]", "[/THINK]")
    assert prompt_opens_block(THINK_TEMPLATE, True, "<think>")
    assert not prompt_opens_block(THINK_TEMPLATE, False, "<think>")
    assert not prompt_opens_block("{{ raise_exception('no') }}", True, "<think>")
    assert check_think("MAX") == "high" and check_think(None) is None
    assert check_think(False) is False and check_think("low") == "low"
    with pytest.raises(InvalidInput, match="'think' must be"):
        check_think("extreme")
    assert think_from_effort("none") is False and think_from_effort("minimal") == "low"
    assert think_from_effort("xhigh") == "high" and think_from_effort(None) is None
    with pytest.raises(InvalidInput, match="reasoning effort"):
        think_from_effort("lots")


# -- over the API -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def think_daemon(think_tcp: TcpDaemon) -> TcpDaemon:
    return think_tcp


@pytest.fixture(scope="module")
def oc(think_tcp: TcpDaemon) -> ollama.Client:
    return ollama_client(think_tcp)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def ai(think_tcp: TcpDaemon) -> openai.OpenAI:
    return openai_client(think_tcp)  # type: ignore[no-any-return]


def test_capabilities(oc: ollama.Client) -> None:
    assert oc.show(THINKER).capabilities == ["completion", "thinking"]
    assert oc.show(SMOL).capabilities == ["completion"]


def test_ollama_chat_thinks_apart_from_the_answer(oc: ollama.Client) -> None:
    r = oc.chat(model=THINKER, messages=ASK, options=SAME)
    assert r.message.thinking == THOUGHT and r.message.content == ANSWER
    assert oc.chat(model=THINKER, messages=ASK, think=True, options=SAME).message.thinking \
        == THOUGHT
    parts = list(oc.chat(model=THINKER, messages=ASK, options=SAME, stream=True))
    kinds = ["t" if p.message.thinking else "c" for p in parts
             if p.message.thinking or p.message.content]
    assert kinds == sorted(kinds, reverse=True) and "t" in kinds and "c" in kinds  # t then c
    assert "".join(p.message.thinking or "" for p in parts) == THOUGHT
    assert "".join(p.message.content for p in parts) == ANSWER
    assert not any("<think>" in (p.message.content + (p.message.thinking or ""))
                   for p in parts)


def test_ollama_generate_thinks(oc: ollama.Client) -> None:
    # Without examples the tiny model never closes its reasoning: all of it is thinking.
    r = oc.generate(model=THINKER, prompt="What is 4+4?", options={**SAME, "num_predict": 6})
    assert r.thinking and r.response == "" and r.done_reason == "length"
    streamed = list(oc.generate(model=THINKER, prompt="What is 4+4?", stream=True,
                                options={**SAME, "num_predict": 6}))
    assert "".join(p.thinking or "" for p in streamed) == r.thinking
    # raw: the prompt is the caller's; it opened the block, so the reply starts inside it
    raw = oc.generate(model=THINKER, raw=True, options={**SAME, "num_predict": 4},
                      prompt="<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n")
    assert raw.thinking and not raw.response


def test_think_errors(oc: ollama.Client, think_daemon: TcpDaemon) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        oc.chat(model=SMOL, think=True, messages=[{"role": "user", "content": "Hi"}])
    assert err.value.status_code == 400 and "does not support thinking" in err.value.error
    # think false on a model that cannot think is fine (there is nothing to turn off)
    assert oc.chat(model=SMOL, think=False, messages=[{"role": "user", "content": "Hi"}],
                   options={"num_predict": 1}).done
    for bad in ("extreme", 3, ["high"]):
        r = httpx.post(think_daemon.url + "/api/chat", json={
            "model": THINKER, "think": bad, "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 400 and "think" in r.json()["error"], bad


def test_levels_are_accepted(oc: ollama.Client) -> None:
    for level in ("low", "medium", "high"):
        r = oc.chat(model=THINKER, messages=ASK, think=level, options=SAME)  # type: ignore[arg-type]
        assert r.message.content == ANSWER


def test_structured_output_does_not_think(oc: ollama.Client) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}},
              "required": ["answer"]}
    r = oc.chat(model=THINKER, messages=ASK, format=schema, options=SAME)
    assert isinstance(json.loads(r.message.content)["answer"], int)
    assert not r.message.thinking


def test_openai_reasoning_content(ai: openai.OpenAI) -> None:
    r = ai.chat.completions.create(model=THINKER, messages=ASK,  # type: ignore[arg-type]
                                   max_tokens=40, temperature=0, seed=1,
                                   extra_body={"repeat_penalty": 1.0})
    msg = r.choices[0].message
    assert msg.content == ANSWER
    extra = msg.model_extra or {}
    assert extra["reasoning_content"] == THOUGHT and extra["reasoning"] == THOUGHT
    chunks = list(ai.chat.completions.create(
        model=THINKER, messages=ASK, max_tokens=40, temperature=0, seed=1,  # type: ignore[arg-type]
        stream=True, extra_body={"repeat_penalty": 1.0}))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    thought = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    assert thought == THOUGHT and "".join(d.content or "" for d in deltas) == ANSWER
    assert not any((d.model_extra or {}).get("reasoning_content") and d.content
                   for d in deltas)  # reasoning and answer never share a chunk
    # earlier reasoning sent back as reasoning_content is accepted
    again = ai.chat.completions.create(model=THINKER, max_tokens=2, messages=[  # type: ignore[arg-type]
        *ASK, {"role": "assistant", "content": ANSWER, "reasoning_content": THOUGHT},
        {"role": "user", "content": "And 1+1?"}])
    assert again.choices[0].message is not None
    with pytest.raises(openai.BadRequestError, match="reasoning effort"):
        ai.chat.completions.create(model=THINKER, messages=ASK, max_tokens=1,  # type: ignore[arg-type]
                                   reasoning_effort="lots")  # type: ignore[arg-type]


# -- the template's enable_thinking / reasoning_effort, through the llama.cpp backend -----------


def test_think_false_turns_reasoning_off(oc: ollama.Client, ai: openai.OpenAI) -> None:
    # The template closes an empty block when enable_thinking is false: a plain answer.
    r = oc.chat(model=THINKER, messages=ASK, think=False, options=SAME)
    assert not r.message.thinking and r.message.content == "4 + 4 = 8."
    o = ai.chat.completions.create(model=THINKER, messages=ASK, max_tokens=40,  # type: ignore[arg-type]
                                   temperature=0, seed=1, reasoning_effort="none",
                                   extra_body={"repeat_penalty": 1.0})
    assert o.choices[0].message.content == "4 + 4 = 8."


def test_thinking_field_of_earlier_replies_reaches_the_template(oc: ollama.Client) -> None:
    # Ollama's clients send earlier reasoning back as message.thinking, not inside content.
    shots = []
    for m in SHOTS:
        if m["role"] == "assistant":
            thought, answer = split_thinking(m["content"])
            m = {"role": "assistant", "content": answer, "thinking": thought.strip()}
        shots.append(m)
    r = oc.chat(model=THINKER, messages=[*shots, ASK[-1]], options=SAME)
    assert r.message.thinking == THOUGHT and r.message.content == ANSWER


def test_batch_and_websocket_split_thinking(think_daemon: TcpDaemon) -> None:
    from websockets.sync.client import connect

    r = httpx.post(think_daemon.url + "/api/x/batch", timeout=120, json={
        "model": THINKER, "options": SAME,
        "requests": [{"messages": ASK}, {"prompt": "What is 4+4?", "think": "extreme"}]})
    first, second = r.json()["results"]
    assert first["message"] == {"role": "assistant", "content": ANSWER, "thinking": THOUGHT}
    assert second["code"] == "invalid_input" and "think" in second["error"]
    ws_url = think_daemon.url.replace("http://", "ws://") + "/api/x/ws"
    with connect(ws_url, open_timeout=30) as ws:
        ws.send(json.dumps({"type": "chat", "id": "a", "model": THINKER, "messages": ASK,
                            "options": SAME}))
        frames = []
        while not frames or frames[-1]["type"] not in ("done", "error"):
            frames.append(json.loads(ws.recv(timeout=120)))
    assert "".join(f.get("thinking", "") for f in frames) == THOUGHT
    assert "".join(f.get("content", "") for f in frames) == ANSWER
