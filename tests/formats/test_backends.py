"""The converted SmolLM2 on ONNX Runtime GenAI and OpenVINO GenAI, through every face:
the CLI, the daemon, an Ollama client, perplexity against the GGUF, and `llm bench`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import ollama
import pytest

from llmtui.eval.perplexity import DEFAULT_TEXT
from tests.api.conftest import TcpDaemon
from tests.conftest import Runner, stop_daemon_of
from tests.formats.reference import gguf_perplexity

ONNX = "smollm2:135m-onnx"
OV = "smollm2:135m-openvino"
GREEDY = {"temperature": 0, "repeat_penalty": 1.0}
QUESTION = "What is the capital of France?"
CAPITAL = "The capital of France is"


def test_list_and_show_read_each_format(fm: Runner) -> None:
    listed = {m["name"]: m for m in json.loads(fm("list", "--json").stdout)}
    assert listed[ONNX]["format"] == "onnx" and listed[OV]["format"] == "openvino"
    assert listed[ONNX]["quantization"] == "int4" and listed[OV]["quantization"] == "int4"
    header = fm("list").stdout.splitlines()[0].split("\t")
    assert "format" in header
    onnx = json.loads(fm("show", ONNX, "--json", "--metadata").stdout)
    assert onnx["runtime"] == "onnxruntime-genai" and onnx["architecture"] == "llama"
    assert onnx["metadata"]["genai.model.type"] == "llama"
    assert "<|im_start|>" in onnx["template"]
    ov = json.loads(fm("show", OV, "--json", "--metadata").stdout)
    assert ov["runtime"] == "openvino-genai"
    assert ov["metadata"]["config.model_type"] == "llama" and ov["quantization"] == "int4"
    assert fm("show", OV, "--template").stdout.startswith("{%")


@pytest.mark.parametrize("model", [ONNX, OV])
def test_run_answers_and_ps_shows_the_runtime(fm: Runner, model: str) -> None:
    res = fm("run", model, QUESTION, "--temperature", "0", timeout=180)
    assert res.returncode == 0, res.stderr
    assert "Paris" in res.stdout
    ps = {m["name"]: m for m in json.loads(fm("ps", "--json").stdout)}
    assert ps[model]["backend"] == ("onnxruntime-genai" if model == ONNX else "openvino-genai")
    assert ps[model]["device"] == ("cpu" if model == ONNX else "CPU")
    table = fm("ps").stdout
    assert ("onnxruntime-genai: cpu" if model == ONNX else "openvino-genai: CPU") in table


def test_pipes_and_stop_strings(fm: Runner) -> None:
    res = fm("summarize", ONNX, input="The cat sat on the mat. It was a sunny day.",
             timeout=180)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip()


@pytest.fixture(scope="module")
def tcp(formats_home: Path) -> Iterator[TcpDaemon]:
    stop_daemon_of(formats_home)  # `llm serve` takes over the home's socket too
    with TcpDaemon(formats_home) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def oc(tcp: TcpDaemon) -> ollama.Client:
    return ollama.Client(host=tcp.url, timeout=180)


@pytest.mark.parametrize("model", [ONNX, OV])
def test_ollama_client_generate_chat_stream(oc: ollama.Client, model: str) -> None:
    # A completion both conversions share with the GGUF (whose chat answer to QUESTION
    # wanders: "L'Étoile, la Cité, ..."; the exact OpenVINO model says the same).
    r = oc.generate(model=model, prompt=CAPITAL, raw=True, options={**GREEDY, "num_predict": 8})
    assert "Paris" in r.response
    assert r.eval_count and r.prompt_eval_count and r.eval_duration
    parts = list(oc.chat(model=model, stream=True, options={**GREEDY, "num_predict": 8},
                         messages=[{"role": "user", "content": "Say hello"}]))
    assert parts[-1].done and parts[-1].done_reason == "length"
    assert parts[-1].eval_count == 8
    assert "".join(p.message.content for p in parts).strip()
    # Stop strings end the reply before the stop text.
    r = oc.generate(model=model, prompt="Count from 1 to 10, separated by commas.",
                    options={**GREEDY, "num_predict": 40, "stop": ["5"]})
    assert "5" not in r.response and r.done_reason == "stop"


def test_json_mode_on_onnx_and_openvino(oc: ollama.Client) -> None:
    for model in (ONNX, OV):
        r = oc.generate(model=model, prompt="Give a person with a name and an age as JSON.",
                        format={"type": "object", "additionalProperties": False,
                                "properties": {"name": {"type": "string", "maxLength": 12},
                                               "age": {"type": "integer"}},
                                "required": ["name", "age"]},
                        options={**GREEDY, "num_predict": 40})
        data = json.loads(r.response)
        assert set(data) == {"name", "age"}, model


@pytest.mark.parametrize("model", [ONNX, OV])
def test_openai_client(tcp: TcpDaemon, model: str) -> None:
    import openai

    ai = openai.OpenAI(base_url=tcp.url + "/v1", api_key="unused", timeout=180, max_retries=0)
    r = ai.chat.completions.create(model=model, max_tokens=20, temperature=0,
                                   messages=[{"role": "user", "content": QUESTION}])
    assert r.choices[0].message.content.strip() and 0 < r.usage.completion_tokens <= 20
    c = ai.completions.create(model=model, prompt=CAPITAL, max_tokens=8, temperature=0)
    assert "Paris" in c.choices[0].text
    chunks = list(ai.completions.create(model=model, prompt="The sky is", max_tokens=4,
                                        stream=True, temperature=0))
    assert "".join(c.choices[0].text for c in chunks if c.choices).strip()


def test_two_formats_loaded_side_by_side(oc: ollama.Client) -> None:
    oc.generate(model=ONNX, prompt="hi", options={"num_predict": 1})
    oc.generate(model=OV, prompt="hi", options={"num_predict": 1})
    oc.generate(model="smollm2:135m", prompt="hi", options={"num_predict": 1})
    loaded = {m.model for m in oc.ps().models}
    assert {ONNX, OV, "smollm2:135m"} <= loaded
    oc.generate(model=ONNX, prompt="", keep_alive=0)  # unload, as Ollama does
    assert ONNX not in {m.model for m in oc.ps().models}


#: The whole shipped text (about 1,600 tokens, seven windows): on shorter parts the int4
#: ratio swings (2.1x on its first half), so the figure the docs state is this one.
TEXT = DEFAULT_TEXT.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def reference_ppl(smollm: Path) -> float:
    return gguf_perplexity(smollm, TEXT)


@pytest.mark.parametrize("model", [ONNX, OV])
def test_perplexity_against_the_gguf(fm: Runner, model: str, reference_ppl: float,
                                     record_property: pytest.FixtureRequest) -> None:
    res = fm("eval", "perplexity", model, "--json", "-f", "-", input=TEXT, timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    ratio = out["perplexity"] / reference_ppl
    print(f"\nperplexity {model}: {out['perplexity']:.2f}, GGUF {reference_ppl:.2f}, "
          f"ratio {ratio:.2f}")
    assert out["tokens"] > 1500
    # From a Q4_0/Q4_1 GGUF both conversions keep the GGUF's own 4-bit blocks
    # (llmtui/models/convert/gguf_blocks.py): the bound, 15 %. Measured: ONNX 16.1
    # (its LM head, Q8_0 in the GGUF, is int4), OpenVINO 14.9, against the GGUF's 14.9.
    assert 0.85 < ratio < 1.15


def test_perplexity_errors(fm: Runner) -> None:
    res = fm("eval", "perplexity", ONNX, "--file", "/nonexistent.txt")
    assert res.returncode == 4 and "no such file" in res.stderr
    res = fm("eval", "perplexity", ONNX, "-f", "-", input="   ")
    assert res.returncode == 4 and "empty" in res.stderr
    res = fm("eval", "perplexity", ONNX, "-f", "-", "--ctx", "100000", input="hello there")
    assert res.returncode == 4 and "larger than the model's context" in res.stderr
    res = fm("eval", "perplexity", "nope:1")
    assert res.returncode == 3


def test_bench_compares_formats(fm: Runner) -> None:
    res = fm("bench", "smollm2:135m", ONNX, OV, "--runs", "1", "--tokens", "16", "--json",
             timeout=600)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    got = {r["model"]: r for r in data["results"]}
    assert set(got) == {"smollm2:135m", ONNX, OV}
    for r in got.values():
        assert r["decode_tps"] > 0 and r["prompt_tps"] > 0 and r["ttft_seconds"] > 0
        assert r["load_seconds"] > 0 and r["peak_rss"] > 10_000_000
    best = max(got.values(), key=lambda r: r["decode_tps"])
    assert data["fastest"] == best["model"]
    res = fm("bench", "smollm2:135m", "--backend", "onnx,openvino", "--runs", "1",
             "--tokens", "4", timeout=600)
    assert res.returncode == 0, res.stderr
    rows = res.stdout.splitlines()
    assert rows[0].startswith("model\tformat") and len(rows) == 3
    assert "fastest:" in res.stderr
    res = fm("bench", "gemma3:270m", "--backend", "onnx")
    assert res.returncode == 4 and "llm convert gemma3:270m --to onnx" in res.stderr


@pytest.mark.parametrize("model", [ONNX, OV])
def test_what_the_runtime_cannot_do_is_a_clear_400(tcp: TcpDaemon, oc: ollama.Client,
                                                    model: str) -> None:
    import openai

    with pytest.raises(ollama.ResponseError, match=r"insert \('suffix'\) is not available") as e:
        oc.generate(model=model, prompt="def f(", suffix="    return 1",
                    options={"num_predict": 4})
    assert e.value.status_code == 400
    ai = openai.OpenAI(base_url=tcp.url + "/v1", api_key="unused", timeout=180, max_retries=0)
    with pytest.raises(openai.BadRequestError, match="log-probabilities"):
        ai.chat.completions.create(model=model, max_tokens=4, logprobs=True,
                                   messages=[{"role": "user", "content": "Hi"}])
    assert oc.generate(model=model, prompt="hi", options={"num_predict": 1}).done
