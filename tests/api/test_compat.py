"""Ollama compatibility (issue 15) with the real `ollama` and `openai` packages and raw HTTP
against a real `llm serve`: lenient options, capabilities and verbose model_info, OpenAI's
n, embeddings' dimensions, truncate and token counts."""

from __future__ import annotations

import base64
import json
import math

import httpx
import ollama
import openai
import pytest

from tests.api.conftest import TcpDaemon, ollama_client, openai_client

SMOL = "smollm2:135m"
GREEDY = {"temperature": 0, "repeat_penalty": 1.0}


@pytest.fixture(scope="module")
def oc(tcp: TcpDaemon) -> ollama.Client:
    return ollama_client(tcp)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def ai(tcp: TcpDaemon) -> openai.OpenAI:
    return openai_client(tcp)  # type: ignore[no-any-return]


# -- options leniency -----------------------------------------------------------------------

def test_null_and_unknown_options_are_ignored(tcp: TcpDaemon, oc: ollama.Client) -> None:
    # What framework clients send: every option, null when unset, and old or future keys.
    noisy = {"temperature": None, "top_p": None, "num_ctx": None, "stop": None,
             "tfs_z": 1.0, "mirostat": None, "penalize_newline": True,
             "some_future_option": {"x": 1}, "num_predict": 3, "seed": 1}
    r = httpx.post(tcp.url + "/api/generate", timeout=60, json={
        "model": SMOL, "prompt": "Hi", "stream": False, "options": noisy})
    assert r.status_code == 200, r.text
    assert r.json()["eval_count"] == 3
    chat = oc.chat(model=SMOL, messages=[{"role": "user", "content": "Hi"}],
                   options={"num_predict": 2, "temperature": None, "tfs_z": 2})
    assert chat.eval_count == 2
    v1 = httpx.post(tcp.url + "/v1/chat/completions", timeout=60, json={
        "model": SMOL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
        "temperature": None, "top_p": None, "seed": None, "stop": None, "n": None,
        "options": {"tfs_z": 1, "temperature": None}})
    assert v1.status_code == 200, v1.text


@pytest.mark.parametrize("options,needle", [
    ({"temperature": "hot"}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"num_ctx": -1}, "num_ctx"),
    ({"num_predict": 10**9}, "num_predict"),
    ({"top_k": 1.5}, "top_k"),
    ({"stop": [1, 2]}, "stop"),
    ({"use_mmap": "yes"}, "use_mmap"),
])
def test_known_options_are_still_checked(tcp: TcpDaemon, options: dict[str, object],
                                         needle: str) -> None:
    body = json.dumps({"model": SMOL, "prompt": "Hi", "options": options})  # NaN as NaN
    r = httpx.post(tcp.url + "/api/generate", timeout=60, content=body)
    assert r.status_code == 400 and needle in r.json()["error"], r.text


# -- /api/show --------------------------------------------------------------------------------

def test_show_capabilities_in_ollamas_words(oc: ollama.Client, tcp: TcpDaemon) -> None:
    assert oc.show(SMOL).capabilities == ["completion"]
    assert oc.show("gemma3:270m").capabilities == ["completion"]
    r = httpx.post(tcp.url + "/api/show", json={"model": SMOL}).json()
    info = r["model_info"]
    # as Ollama: long arrays are empty unless verbose, short ones and scalars are real
    assert info["tokenizer.ggml.tokens"] == [] and info["tokenizer.ggml.merges"] == []
    assert info["tokenizer.ggml.model"] == "gpt2" and info["llama.block_count"] == 30
    assert "tokenizer.chat_template" not in info and "general.name" not in info
    assert not any(isinstance(v, str) and v.startswith("[array of") for v in info.values())


def test_show_verbose_returns_the_real_arrays(tcp: TcpDaemon) -> None:
    r = httpx.post(tcp.url + "/api/show", json={"model": SMOL, "verbose": True},
                   timeout=60).json()
    info = r["model_info"]
    tokens = info["tokenizer.ggml.tokens"]
    assert len(tokens) == info["llama.vocab_size"] == 49152
    assert tokens[:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert len(info["tokenizer.ggml.token_type"]) == 49152
    assert all(isinstance(t, int) for t in info["tokenizer.ggml.token_type"][:100])
    assert info["tokenizer.ggml.merges"][0] == "Ġ t"


def test_capabilities_from_the_model_file() -> None:
    from llmtui.models.capabilities import capabilities
    from llmtui.models.store import Manifest

    m = Manifest(name="x:latest", format="gguf", layers=(), source="", created="")
    qwen = "{%- if tools %}<tool_call>{% endif %}{{ '<think>' }}...{{ '</think>' }}"
    assert capabilities(m, {"general.architecture": "qwen3"}, qwen) == \
        ["completion", "tools", "thinking"]
    fim = {"general.architecture": "qwen2", "tokenizer.ggml.fim_pre_token_id": 151659}
    assert capabilities(m, fim, None) == ["completion", "insert"]
    bert = {"general.architecture": "bert", "bert.pooling_type": 1}
    assert capabilities(m, bert, None) == ["embedding"]
    splits = "{% set c = message.content.split('</think>')[-1] %}"
    assert capabilities(m, {}, splits) == ["completion", "thinking"]
    vision = Manifest(name="v:latest", format="gguf", layers=(), source="", created="",
                      capabilities=("chat", "completion", "vision"))
    assert capabilities(vision, {}, "{{ messages }}") == ["completion", "vision"]


# -- OpenAI n -------------------------------------------------------------------------------

def test_openai_n_returns_n_choices(ai: openai.OpenAI) -> None:
    r = ai.chat.completions.create(model=SMOL, messages=[{"role": "user", "content": "Hi"}],
                                   n=3, max_tokens=4, seed=5, temperature=1.0)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert all(c.message.content and c.finish_reason == "length" for c in r.choices)
    assert r.usage is not None and r.usage.completion_tokens == 12
    again = ai.chat.completions.create(model=SMOL, messages=[{"role": "user", "content": "Hi"}],
                                       n=3, max_tokens=4, seed=5, temperature=1.0)
    assert [c.message.content for c in again.choices] == [c.message.content
                                                          for c in r.choices]
    chunks = list(ai.chat.completions.create(
        model=SMOL, messages=[{"role": "user", "content": "Hi"}], n=2, max_tokens=4,
        stream=True, stream_options={"include_usage": True}, temperature=0))
    texts: dict[int, str] = {}
    finishes: dict[int, str | None] = {}
    for c in chunks:
        for ch in c.choices:
            texts[ch.index] = texts.get(ch.index, "") + (ch.delta.content or "")
            finishes[ch.index] = ch.finish_reason or finishes.get(ch.index)
    assert set(texts) == {0, 1} and all(texts.values())
    assert finishes == {0: "length", 1: "length"}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8
    legacy = ai.completions.create(model=SMOL, prompt="1, 2, 3,", n=2, max_tokens=3,
                                   temperature=0)
    assert [c.index for c in legacy.choices] == [0, 1]
    assert legacy.choices[0].text == legacy.choices[1].text  # greedy: the same reply


def test_openai_n_bounds(ai: openai.OpenAI) -> None:
    for n in (0, 17, -1):
        with pytest.raises(openai.BadRequestError, match="'n' must be"):
            ai.chat.completions.create(model=SMOL, n=n, max_tokens=1,
                                       messages=[{"role": "user", "content": "Hi"}])


# -- embeddings -------------------------------------------------------------------------------

def _norm(vec: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vec))


def test_embedding_dimensions_on_both_apis(oc: ollama.Client, ai: openai.OpenAI) -> None:
    full = oc.embed(model=SMOL, input=["the cat sat", "a dog ran"]).embeddings
    short = oc.embed(model=SMOL, input=["the cat sat", "a dog ran"], dimensions=64)
    assert [len(v) for v in short.embeddings] == [64, 64]
    for cut, whole in zip(short.embeddings, full, strict=True):
        assert abs(_norm(list(cut)) - 1.0) < 1e-4
        scale = _norm(list(whole[:64]))
        assert list(cut) == pytest.approx([x / scale for x in whole[:64]], abs=1e-5)
    v1 = ai.embeddings.create(model=SMOL, input=["the cat sat", "a dog ran"], dimensions=64)
    for a, b in zip(v1.data, short.embeddings, strict=True):
        assert a.embedding == pytest.approx(list(b), abs=1e-5)  # the same on both APIs
    b64 = ai.embeddings.create(model=SMOL, input="the cat sat", dimensions=32,
                               encoding_format="base64")
    assert len(base64.b64decode(str(b64.data[0].embedding))) == 32 * 4  # float32s
    assert len(oc.embed(model=SMOL, input="x", dimensions=576).embeddings[0]) == 576
    for bad in (0, 577, -3):
        with pytest.raises(ollama.ResponseError) as err:
            oc.embed(model=SMOL, input="x", dimensions=bad)
        assert err.value.status_code == 400 and "dimensions" in err.value.error
    with pytest.raises(openai.BadRequestError, match="at most 576"):
        ai.embeddings.create(model=SMOL, input="x", dimensions=1000)


def test_embed_counts_and_truncate(oc: ollama.Client, tcp: TcpDaemon) -> None:
    texts = ["the cat sat on the mat", "a dog ran"]
    counts = [httpx.post(tcp.url + "/api/x/tokenize", json={"model": SMOL, "text": t})
              .json()["count"] for t in texts]
    r = oc.embed(model=SMOL, input=texts)
    assert r.prompt_eval_count == sum(counts)
    # An input longer than the context: truncated by default (and counted as embedded),
    # a 400 naming the limit with truncate: false.
    long = "word " * 400
    small = {"num_ctx": 128}
    cut = oc.embed(model=SMOL, input=long, options=small)
    ctx = next(m for m in httpx.get(tcp.url + "/api/ps").json()["models"]
               if m["name"] == SMOL and m["embedding"])["context_length"]
    assert 128 <= ctx < 400  # llama.cpp rounds the context up
    assert cut.prompt_eval_count == ctx and len(cut.embeddings[0]) == 576
    with pytest.raises(ollama.ResponseError) as err:
        oc.embed(model=SMOL, input=long, truncate=False, options=small)
    assert err.value.status_code == 400 and f"holds {ctx}" in err.value.error
    raw = httpx.post(tcp.url + "/api/embed", timeout=60, json={
        "model": SMOL, "input": long, "truncate": False, "options": small})
    assert raw.status_code == 400 and raw.json()["code"] == "context_overflow"


# -- logprobs ---------------------------------------------------------------------------------

def test_logprobs_bounds(tcp: TcpDaemon, ai: openai.OpenAI) -> None:
    for body in ({"top_logprobs": 21}, {"top_logprobs": -1}, {"logprobs": "yes"},
                 {"top_logprobs": "3"}):
        r = httpx.post(tcp.url + "/api/chat", timeout=60, json={
            "model": SMOL, "messages": [{"role": "user", "content": "Hi"}], **body})
        assert r.status_code == 400, body
    with pytest.raises(openai.BadRequestError, match="top_logprobs"):
        ai.chat.completions.create(model=SMOL, messages=[{"role": "user", "content": "Hi"}],
                                   logprobs=True, top_logprobs=25, max_tokens=1)


def _check_logprobs(items: list[dict[str, object]], text: str, top: int) -> None:
    """One entry per generated token, aligned with the text; real log-probabilities."""
    assert items and "".join(str(i["token"]) for i in items) == text
    if all(i.get("bytes") is not None for i in items):  # (the ollama package drops bytes)
        assert b"".join(bytes(i["bytes"]) for i in items) == text.encode()  # type: ignore[arg-type]
    for item in items:
        assert float(item["logprob"]) <= 0.0  # type: ignore[arg-type]
        alts = item.get("top_logprobs") or []
        assert len(alts) == top  # type: ignore[arg-type]
        values = [float(a["logprob"]) for a in alts]  # type: ignore[union-attr]
        assert values == sorted(values, reverse=True)
        if top:  # greedy: the token taken is the most likely one
            assert alts[0]["token"] == item["token"]  # type: ignore[index]


def test_ollama_logprobs(oc: ollama.Client) -> None:
    r = oc.chat(model=SMOL, messages=[{"role": "user", "content": "Say hello"}],
                logprobs=True, top_logprobs=3, options={"num_predict": 6, **GREEDY})
    items = [lp.model_dump() for lp in r.logprobs or []]
    assert len(items) == r.eval_count
    _check_logprobs(items, r.message.content, 3)
    parts = list(oc.generate(model=SMOL, prompt="1, 2, 3,", raw=True, stream=True,
                             logprobs=True, options={"num_predict": 5, **GREEDY}))
    streamed = [lp.model_dump() for p in parts for lp in (p.logprobs or [])]
    _check_logprobs(streamed, "".join(p.response for p in parts), 0)
    for p in parts:  # each chunk carries the tokens of its own text
        if p.response:
            assert "".join(lp.token for lp in p.logprobs or []) == p.response


def test_openai_logprobs(ai: openai.OpenAI) -> None:
    r = ai.chat.completions.create(model=SMOL, messages=[{"role": "user", "content": "Hi"}],
                                   logprobs=True, top_logprobs=2, max_tokens=5, temperature=0)
    lp = r.choices[0].logprobs
    assert lp is not None and lp.content is not None
    _check_logprobs([t.model_dump() for t in lp.content], r.choices[0].message.content or "",
                    2)
    chunks = list(ai.chat.completions.create(
        model=SMOL, messages=[{"role": "user", "content": "Hi"}], logprobs=True,
        max_tokens=5, temperature=0, stream=True))
    streamed = [t.model_dump() for c in chunks if c.choices and c.choices[0].logprobs
                for t in c.choices[0].logprobs.content or []]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    _check_logprobs(streamed, text, 0)
    legacy = ai.completions.create(model=SMOL, prompt="1, 2, 3,", max_tokens=4,
                                   temperature=0, logprobs=2)
    lg = legacy.choices[0].logprobs
    assert lg is not None and "".join(lg.tokens or []) == legacy.choices[0].text
    assert len(lg.token_logprobs or []) == 4 and all(len(t) == 2 for t in lg.top_logprobs or [])
    assert lg.text_offset == [sum(len(t) for t in (lg.tokens or [])[:i]) for i in range(4)]
