"""`llm run` with a thinking model: the reasoning on stderr ("Thinking..." ...
"...done thinking."), the answer alone on stdout; --hidethinking, --think/--no-think,
--think-level, and /set think in the REPL."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmtui.errors import ExitCode
from tests.cli.test_pipe import Pty
from tests.conftest import LLM, Runner, import_models, one_line_error, stop_daemon_of

Q = ["-n", "6", "--temperature", "0", "--seed", "1"]


@pytest.fixture(scope="module")
def think_home(tmp_path_factory: pytest.TempPathFactory, smollm: Path,
               thinker: Path) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("thinkcli") / "home"
    import_models(home, smollm, extra={"thinker": thinker})
    yield home
    stop_daemon_of(home)


@pytest.fixture()
def tllm(think_home: Path) -> Runner:
    return Runner({"LLMTUI_HOME": str(think_home), "NO_COLOR": "1",
                   "LLMTUI_IDLE_TIMEOUT": "300"})


def test_reasoning_goes_to_stderr(tllm: Runner) -> None:
    # Asked without examples, the tiny model never closes its reasoning: all of it is
    # thinking, so stdout stays empty and stderr frames the reasoning.
    res = tllm("run", "thinker", "What is 4+4?", *Q)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""
    assert res.stderr.startswith("Thinking...\n") and "...done thinking." in res.stderr
    thought = res.stderr.split("Thinking...\n", 1)[1].split("...done thinking.")[0].strip()
    assert thought
    hidden = tllm("run", "thinker", "What is 4+4?", *Q, "--hidethinking")
    assert hidden.returncode == 0 and "Thinking" not in hidden.stderr
    data = json.loads(tllm("run", "thinker", "What is 4+4?", *Q, "--json").stdout)
    assert data["thinking"].strip() == thought and data["text"] == ""
    level = tllm("run", "thinker", "What is 4+4?", *Q, "--think-level", "high")
    assert level.returncode == 0 and "Thinking..." in level.stderr
    off = tllm("run", "thinker", "What is 4+4?", *Q, "--no-think")
    assert off.returncode == 0 and "Thinking..." not in off.stderr


def test_show_lists_thinking(tllm: Runner) -> None:
    shown = json.loads(tllm("show", "thinker", "--json").stdout)
    assert shown["capabilities"] == ["completion", "thinking"]
    assert json.loads(tllm("show", "smollm2:135m", "--json").stdout)["capabilities"] == \
        ["completion"]


def test_think_errors(tllm: Runner) -> None:
    res = tllm("run", "smollm2:135m", "hi", *Q, "--think")
    assert res.returncode == ExitCode.INVALID_INPUT
    assert "does not support thinking" in one_line_error(res.stderr)
    res = tllm("run", "thinker", "hi", *Q, "--think-level", "extreme")
    assert res.returncode == ExitCode.INVALID_INPUT and "--think-level" in res.stderr
    plain = tllm("run", "smollm2:135m", "hi", *Q, "--no-think")  # nothing to turn off
    assert plain.returncode == 0 and plain.stdout.strip()


def test_repl_set_think(think_home: Path) -> None:
    env = {**os.environ, "LLMTUI_HOME": str(think_home), "NO_COLOR": "1", "TERM": "dumb"}
    p = Pty([*LLM, "run", "thinker", *Q], env)
    try:
        p.expect(b"ready")
        p.send(b"What is 4+4?\r")
        p.expect(b"Thinking...")
        p.expect(b"...done thinking.")
        p.send(b"/set hidethinking\r")
        p.send(b"And 2+2?\r")
        shown = p.expect(b">>> ", timeout=60)
        shown += p.expect(b">>> ", timeout=60)
        assert b"Thinking" not in shown
        p.send(b"/set nothink\r")
        p.expect(b"thinking off")
        p.send(b"/bye\r")
        assert p.proc.wait(30) == 0
    finally:
        if p.proc.poll() is None:
            p.proc.kill()
