"""`llm train`: a tiny Llama from scratch on the public-domain text shipped with llmtui
(its own BPE tokenizer), for a bounded number of steps; the GGUF it installs runs through
the real daemon, and the Hugging Face export loads with transformers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmtui.eval.perplexity import DEFAULT_TEXT
from llmtui.models.names import ModelName
from tests.conftest import Runner, import_models, one_line_error, stop_daemon_of, store_of

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def scratch_home(tmp_path_factory: pytest.TempPathFactory, smollm: Path) -> Iterator[Path]:
    h = tmp_path_factory.mktemp("scratch") / "home"
    import_models(h, smollm)
    yield h
    stop_daemon_of(h)


@pytest.fixture()
def sl(scratch_home: Path) -> Runner:
    return Runner({"LLMTUI_HOME": str(scratch_home), "NO_COLOR": "1",
                   "LLMTUI_IDLE_TIMEOUT": "300"})


def test_train_a_tiny_model_and_run_it(sl: Runner, scratch_home: Path, tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    res = sl("train", "--data", str(DEFAULT_TEXT), "--name", "tiny-pd", "--steps", "60",
             "--seq", "64", "--export", f"hf {hf}", "--json", timeout=600)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    losses = [x["loss"] for x in lines if "step" in x]
    assert len(losses) == 60 and min(losses[-10:]) < losses[0]  # the loss falls
    trained = lines[-1]["trained"]
    assert trained["loss_after"] < trained["loss_before"]  # held-out, step 0 vs the end
    assert trained["perplexity_after"] < trained["perplexity_before"]
    made = store_of(scratch_home).get("tiny-pd")
    assert made.format == "gguf" and made.architecture == "llama"
    out = sl("run", "tiny-pd", "-n", "24", "--temperature", "0", "The")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip()) > 10
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(hf)
    tok = AutoTokenizer.from_pretrained(hf)
    assert model.config.model_type == "llama" and len(tok) == model.config.vocab_size
    shown = json.loads(sl("show", "tiny-pd", "--json").stdout)
    assert shown["tuned"]["trained_from_scratch"] is True
    # and on to ONNX Runtime through the converter (issue 11)
    conv = sl("convert", "tiny-pd", "--to", "onnx", "--precision", "fp32", timeout=600)
    assert conv.returncode == 0, conv.stderr
    onnx = sl("run", "tiny-pd:onnx", "-n", "12", "--temperature", "0", "The")
    assert onnx.returncode == 0 and onnx.stdout.strip(), onnx.stderr


def test_train_bad_input(sl: Runner, scratch_home: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    short = tmp_path / "short.txt"
    short.write_text("Too little text to learn anything from.\n")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    cases = [
        (["--data", str(empty), "--name", "a"], "holds no training records"),
        (["--data", str(tmp_path / "nope.txt"), "--name", "a"], "no such file or folder"),
        (["--data", str(short), "--name", "a"], "is too little text"),
        (["--data", str(DEFAULT_TEXT), "--name", "a", "--size", "huge"],
         "--size must be tiny or small"),
        (["--data", str(DEFAULT_TEXT), "--name", "smollm2:135m"], "already exists"),
        (["--data", str(DEFAULT_TEXT), "--name", "a", "--export", "onnx x"],
         "--export takes 'hf DIR'"),
        (["--data", str(DEFAULT_TEXT), "--name", "a", "--export", f"hf {tmp_path / 'taken'}"],
         "is not empty"),
        (["--data", str(DEFAULT_TEXT), "--name", "a", "--resume"],
         "no interrupted run of 'a:latest' to resume"),
        (["--data", str(DEFAULT_TEXT), "--name", "a", "--device", "tpu"],
         "--device must be auto, cpu, cuda"),
    ]
    for args, message in cases:
        res = sl("train", *args)
        assert res.returncode == 4, (args, res.stderr)
        assert message in one_line_error(res.stderr)
    assert not store_of(scratch_home).exists(ModelName.parse("a"))
