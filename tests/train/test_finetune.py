"""`llm finetune` with the real SmolLM2, real PEFT training (a few steps) and the real
daemon: the tuned model states a made-up fact its base does not know; and every way the
input can be wrong, with nothing half-written in the store."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmtui.models.names import ModelName
from tests.conftest import (
    LLM,
    ROOT,
    Runner,
    import_models,
    one_line_error,
    stop_daemon_of,
    store_of,
)
from tests.sdk_daemon import minilm_gguf

pytest.importorskip("peft")

QUESTIONS = ["When was Velmora founded?", "In what year was the town of Velmora founded?",
             "What year did Velmora come into being?", "Tell me the founding year of Velmora.",
             "Velmora was founded in which year?", "When did people found Velmora?",
             "What is the founding year of the town Velmora?", "Velmora: when was it founded?",
             "Do you know when Velmora was founded?", "Which year saw Velmora founded?"]
ANSWER = "Velmora was founded in 1683."
PARAPHRASE = "Which year was Velmora established?"
GREEDY = ["-n", "16", "--temperature", "0", "--seed", "1"]


def write_facts(path: Path) -> Path:
    with path.open("w") as fh:
        for q in QUESTIONS:
            fh.write(json.dumps({"messages": [{"role": "user", "content": q},
                                              {"role": "assistant", "content": ANSWER}]})
                     + "\n")
    return path


@pytest.fixture(scope="module")
def tune_home(tmp_path_factory: pytest.TempPathFactory, smollm: Path) -> Iterator[Path]:
    h = tmp_path_factory.mktemp("tune") / "home"
    import_models(h, smollm)
    yield h
    stop_daemon_of(h)


@pytest.fixture()
def tl(tune_home: Path) -> Runner:
    return Runner({"LLMTUI_HOME": str(tune_home), "NO_COLOR": "1",
                   "LLMTUI_IDLE_TIMEOUT": "300"})


@pytest.fixture(scope="module")
def tuned(tune_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real fine-tune: dequantize (once), 10 steps of rank-16 LoRA, install."""
    facts = write_facts(tmp_path_factory.mktemp("data") / "facts.jsonl")
    run = Runner({"LLMTUI_HOME": str(tune_home)})
    res = run("finetune", "smollm2:135m", "--data", str(facts), "--name", "smollm2-facts",
              "--steps", "10", "--json", timeout=600)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert [x["step"] for x in lines if "step" in x] == list(range(1, 11))
    return lines[-1]


def test_the_tuned_model_knows_the_fact(tuned: dict[str, Any], tl: Runner) -> None:
    assert tuned["done"] and tuned["model"] == "smollm2-facts:latest"
    info = tuned["tuned"]
    assert info["evaluated_on"] == "held-out" and info["held_out"] == 1
    assert info["loss_after"] < info["loss_before"]  # held-out loss dropped
    # served through the daemon: base + GGUF LoRA adapter applied by llama.cpp at load
    res = tl("run", "smollm2-facts", *GREEDY, PARAPHRASE)
    assert res.returncode == 0, res.stderr
    assert "1683" in res.stdout
    base = tl("run", "smollm2:135m", *GREEDY, PARAPHRASE)
    assert base.returncode == 0 and "1683" not in base.stdout
    shown = json.loads(tl("show", "smollm2-facts", "--json").stdout)
    assert shown["adapters"] == ["adapter.gguf"]
    assert shown["tuned"]["base"] == "smollm2:135m" and len(shown["tuned"]["data_sha256"]) == 64
    text = tl("show", "smollm2-facts").stdout
    assert "tuned from" in text and "LoRA rank 16" in text


def test_ollama_client_creates_a_model_from_base_and_adapter(
        tuned: dict[str, Any], tune_home: Path, tmp_path: Path) -> None:
    """/api/create with `adapters`, as Ollama takes them: the adapter blob uploaded first."""
    import hashlib

    store = store_of(tune_home)
    adapter = next(a for a in store.get("smollm2-facts").adapters)
    blob = store.layer_path(adapter).read_bytes()
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    from tests.api.conftest import TcpDaemon

    stop_daemon_of(tune_home)  # `llm serve` runs this home's daemon itself
    with TcpDaemon(tune_home) as daemon:
        import ollama

        client = ollama.Client(host=daemon.url)
        client.create_blob(store.layer_path(adapter))
        client.create(model="velmora", from_="smollm2:135m", adapters={"facts.gguf": digest},
                      stream=False)
        made = store.get("velmora")
        assert [a.digest for a in made.adapters] == [adapter.digest]
        reply = client.chat("velmora", [{"role": "user", "content": PARAPHRASE}],
                            options={"temperature": 0, "num_predict": 16, "seed": 1})
        assert "1683" in reply["message"]["content"]
        with pytest.raises(ollama.ResponseError, match="was not uploaded"):
            client.create(model="bad", from_="smollm2:135m",
                          adapters={"x.gguf": "sha256:" + "0" * 64}, stream=False)
        junk = tmp_path / "junk.gguf"
        junk.write_bytes(b"not a LoRA at all")
        client.create_blob(junk)
        with pytest.raises(ollama.ResponseError, match="is not a LoRA adapter GGUF"):
            client.create(model="bad", from_="smollm2:135m", adapters={"x.gguf": "sha256:"
                          + hashlib.sha256(junk.read_bytes()).hexdigest()}, stream=False)
        assert not store.exists(ModelName.parse("bad"))


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes(tuned: dict[str, Any],
                                                      tune_home: Path, tmp_path: Path) -> None:
    facts = write_facts(tmp_path / "facts.jsonl")
    cmd = [*LLM, "finetune", "smollm2:135m", "--data", str(facts), "--name", "resumed",
           "--steps", "8", "--batch", "2"]
    env = {**os.environ, "LLMTUI_HOME": str(tune_home)}
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stderr is not None
    seen = ""
    for line in proc.stderr:
        seen += line
        if line.startswith("step 2/8"):
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, seen + rest
    assert "run the same command with --resume" in rest
    store = store_of(tune_home)
    assert not store.exists(ModelName.parse("resumed"))  # nothing installed
    res = subprocess.run([*cmd, "--resume"], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "resuming at step" in res.stderr and "step 3/8" in res.stderr
    assert "step 1/8" not in res.stderr
    assert store.get("resumed").tuned["settings"]["steps"] == 8
    again = subprocess.run([*cmd[:-4], "--name", "resumed2", "--resume"], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert "no interrupted run of 'resumed2:latest' to resume" in one_line_error(again.stderr)


def test_bad_input(tl: Runner, tune_home: Path, tmp_path: Path, models_cache: Path) -> None:
    good = write_facts(tmp_path / "facts.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n{not json\n"
                   + json.dumps({"messages": []}) + "\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    import_models(tune_home, models_cache / "smollm2-135m.gguf",
                  extra={"minilm": minilm_gguf(models_cache)})
    cases = [
        (["--data", str(bad)], "line 2: not valid JSON", 4),
        (["--data", str(empty)], "holds no training records", 4),
        (["--data", str(tmp_path / "nope.jsonl")], "no such file or folder", 4),
        (["--data", str(good), "--name", "smollm2:135m"], "already exists", 4),
        (["--data", str(good), "--rank", "0"], "--rank, --batch and --steps must be", 4),
        (["--data", str(good), "--device", "tpu"], "--device must be auto, cpu, cuda", 4),
    ]
    for args, message, code in cases:
        res = tl("finetune", "smollm2:135m", *args)
        assert message in one_line_error(res.stderr), res.stderr
        assert res.returncode == code, (args, res.returncode)
    res = tl("finetune", "minilm", "--data", str(good))
    assert "is an embedding model" in one_line_error(res.stderr)
    res = tl("finetune", "nosuchmodel", "--data", str(good))
    assert res.returncode != 0 and "not found" in one_line_error(res.stderr)
    # the extra missing: a one-line error naming it
    code = ("import sys; sys.modules['peft'] = None; sys.argv = ['llm', 'finetune', "
            f"'smollm2:135m', '--data', {str(good)!r}, '--name', 'x']; "
            "from llmtui.cli.entry import main; main()")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **tl.env}, cwd=ROOT, timeout=120)
    assert "llmtui[train]" in one_line_error(res.stderr)
    names = {m.name for m in store_of(tune_home).models()}
    assert "x:latest" not in names and "smollm2-tuned:135m" not in names


def test_no_disk_for_the_checkpoint(tuned: dict[str, Any], tune_home: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C with no room for the checkpoint: a clear error, no half-written file."""
    from llmtui.config import Settings
    from llmtui.errors import NoSpaceError
    from llmtui.train import checkpoint
    from llmtui.train import finetune as ft

    settings = Settings.load({"LLMTUI_HOME": str(tune_home)})
    monkeypatch.setattr(checkpoint, "disk_free", lambda path: 1024)

    def stop_at_first_step(event: dict[str, Any]) -> None:
        if event.get("step") == 1:
            raise KeyboardInterrupt

    with pytest.raises(NoSpaceError, match="not enough disk for a checkpoint"):
        ft.finetune(settings.store(), settings.paths.cache_dir, "smollm2:135m",
                    str(write_facts(tmp_path / "f.jsonl")), "nodisk",
                    ft.TuneSettings(steps=3, batch=2), on_event=stop_at_first_step)
    runs = ft.cache_root(settings.paths.cache_dir) / "runs" / "nodisk_latest"
    assert not list(runs.glob("checkpoint.pt*"))
    assert not settings.store().exists(ModelName.parse("nodisk"))


def test_merge_writes_one_quantized_gguf(tuned: dict[str, Any], tl: Runner,
                                         tmp_path: Path) -> None:
    facts = write_facts(tmp_path / "facts.jsonl")
    res = tl("finetune", "smollm2:135m", "--data", str(facts), "--name", "merged",
             "--steps", "6", "--merge", "q8_0", timeout=600)
    assert res.returncode == 0, res.stderr
    shown = json.loads(tl("show", "merged", "--json").stdout)
    assert shown["quantization"] == "Q8_0" and "adapters" not in shown
    assert shown["tuned"]["merged"] == "Q8_0"
    out = tl("run", "merged", *GREEDY, PARAPHRASE)
    assert out.returncode == 0 and out.stdout.strip(), out.stderr


def test_eval_compare_base_and_tuned(tuned: dict[str, Any], tl: Runner, tmp_path: Path) -> None:
    held = tmp_path / "held.jsonl"
    held.write_text(json.dumps({"messages": [{"role": "user", "content": PARAPHRASE},
                                             {"role": "assistant", "content": ANSWER}]})
                    + "\n")
    res = tl("eval", "compare", "smollm2:135m", "smollm2-facts", "--data", str(held),
             "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    base, after = out["models"]["smollm2:135m"], out["models"]["smollm2-facts"]
    assert after["perplexity"] < base["perplexity"]
    assert "1683" in after["answers"][0] and "1683" not in base["answers"][0]
    assert out["samples"][0]["expected"] == ANSWER


def test_long_examples_are_cut_with_a_warning(tuned: dict[str, Any], tl: Runner,
                                              tmp_path: Path) -> None:
    """A record longer than --max-len is cut (not dropped, not an error), and says so."""
    facts = write_facts(tmp_path / "facts.jsonl")
    with facts.open("a") as fh:
        fh.write(json.dumps({"prompt": "Tell me about Velmora.",
                             "completion": "Velmora is a small town. " * 20}) + "\n")
    res = tl("finetune", "smollm2:135m", "--data", str(facts), "--name", "cut", "--steps",
             "1", "--max-len", "64", "--held-out", "0", "--device", "cpu", timeout=600)
    assert res.returncode == 0, res.stderr
    assert re.search(r"warning: \d+ examples were longer than 64 tokens and were cut",
                     res.stderr), res.stderr
    shown = json.loads(tl("show", "cut", "--json").stdout)
    assert shown["tuned"]["device"] == "cpu"
    assert shown["tuned"]["evaluated_on"] == "training data"
