"""Habits users bring: simonw/llm's `llm "prompt"`, -m, -s, -c, -o and `llm logs`; Ollama's
`llm run MODEL "prompt"` with a model that is not installed; and a fast `llm --help`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmtui.cli.router import route
from llmtui.errors import ExitCode, UsageError
from tests.conftest import ROOT, one_line_error

Q = ["-n", "8", "--temperature", "0"]
COMMANDS = {"run", "prompt", "list", "pull", "logs", "chat", "serve", "show"}


@pytest.mark.parametrize(("args", "expected"), [
    ([], []),
    (["--help"], ["--help"]),
    (["-V"], ["-V"]),
    (["list"], ["list"]),
    (["hello there"], ["prompt", "hello there"]),
    (["hello"], ["prompt", "hello"]),
    (["-m", "gemma3:270m", "hi"], ["prompt", "-m", "gemma3:270m", "hi"]),
    (["-c", "and then?"], ["prompt", "-c", "and then?"]),
    (["--no-daemon", "hi"], ["--no-daemon", "prompt", "hi"]),
    (["--no-daemon", "list"], ["--no-daemon", "list"]),
    (["smollm2:135m", "hi"], ["run", "smollm2:135m", "hi"]),
    (["-o", "temperature", "0.5", "hi"], ["prompt", "-o", "temperature=0.5", "hi"]),
    (["prompt", "--option", "seed", "3", "hi"], ["prompt", "--option", "seed=3", "hi"]),
    (["-o", "seed=3", "hi"], ["prompt", "-o", "seed=3", "hi"]),
    (["--", "-o", "a", "b"], ["prompt", "--", "-o", "a", "b"]),
    (["run", "-o", "x"], ["run", "-o", "x"]),  # other commands keep their arguments
])
def test_route(args: list[str], expected: list[str]) -> None:
    assert route(args, COMMANDS) == expected


def test_route_refuses_a_lone_near_command() -> None:
    with pytest.raises(UsageError) as err:
        route(["lsit"], COMMANDS)
    assert "did you mean list?" in str(err.value) and "llm prompt lsit" in str(err.value)
    assert route(["lsit", "the", "planets"], COMMANDS)[0] == "prompt"  # more words: prose


def test_bare_prompt_continue_system_options_and_logs(warm) -> None:
    res = warm("Say hi to Ada", *Q)
    assert res.returncode == 0, res.stderr
    first = res.stdout.strip()
    assert first
    res = warm("-c", "Now say bye", *Q)
    assert res.returncode == 0, res.stderr
    logs = json.loads(warm("logs", "-n", "2", "--json").stdout)
    assert [e["prompt"] for e in logs] == ["Say hi to Ada", "Now say bye"]
    assert logs[0]["conversation"] == logs[1]["conversation"]  # -c continued it
    assert logs[0]["response"].strip() == first and logs[0]["model"] == "smollm2:135m"
    assert logs[1]["stats"]["eval_count"] >= 1
    # the Markdown form, and -r for the last reply's text alone
    text = warm("logs", "-n", "1").stdout
    assert "## Prompt\n\nNow say bye" in text and "## Response" in text
    assert warm("logs", "-r").stdout.strip() == logs[1]["response"].strip()
    # -m, -s and -o (simonw's `-o KEY VALUE` and our KEY=VALUE) start a new conversation
    res = warm("-m", "gemma3:270m", "-s", "You answer in one word.", "-o", "temperature", "0",
               "-o", "seed=3", "Colour of the sky?", "-n", "4")
    assert res.returncode == 0, res.stderr
    last = json.loads(warm("logs", "-n", "1", "--json").stdout)[0]
    assert last["model"] == "gemma3:270m" and last["system"] == "You answer in one word."
    assert last["conversation"] != logs[1]["conversation"]
    # --cid continues an older conversation; it keeps that conversation's model
    res = warm("--cid", logs[0]["conversation"][:6], "One more", *Q)
    assert res.returncode == 0, res.stderr
    again = json.loads(warm("logs", "-c", "--json").stdout)
    assert again[-1]["prompt"] == "One more" and again[-1]["model"] == "smollm2:135m"
    # piped stdin comes before the prompt; --no-log keeps nothing
    res = warm("--no-log", "Summarize in one word.", *Q, input="The cat sat on the mat.")
    assert res.returncode == 0 and res.stdout.strip()
    assert json.loads(warm("logs", "-n", "1", "--json").stdout)[0]["prompt"] == "One more"
    assert json.loads(warm("logs", "-q", "Ada", "--json").stdout)[0]["prompt"] == \
        "Say hi to Ada"
    assert warm("logs", "path").stdout.strip().endswith("history.db")


def test_bare_prompt_mistakes(warm, tmp_path: Path) -> None:
    res = warm("-o", "temperature", "hot", "hi", *Q)  # not a number: the option check says so
    assert res.returncode == ExitCode.INVALID_INPUT
    assert "temperature" in one_line_error(res.stderr)
    res = warm("-o", "temperature", env={})  # no value after the key
    assert res.returncode in (ExitCode.INVALID_INPUT, ExitCode.USAGE)
    res = warm("--cid", "nosuchid", "hi")
    assert res.returncode == ExitCode.INVALID_INPUT
    assert "no conversation 'nosuchid'" in one_line_error(res.stderr)
    res = warm("-c", input="")  # -c with nothing to send
    assert res.returncode == ExitCode.INVALID_INPUT
    res = warm("lsit")
    assert res.returncode == ExitCode.USAGE
    assert "unknown command 'lsit'" in one_line_error(res.stderr)
    res = warm("-m", "nope:1b", "hi")
    assert res.returncode == ExitCode.MODEL_NOT_FOUND
    empty = {"LLMTUI_HOME": str(tmp_path / "fresh")}
    res = warm("-c", "hi", env=empty)
    assert res.returncode == ExitCode.INVALID_INPUT
    assert "no conversation to continue yet" in one_line_error(res.stderr)
    assert warm("logs", env=empty).stdout == ""
    res = warm("logs", "--cid", "nosuchid")
    assert res.returncode == ExitCode.INVALID_INPUT
    assert "no conversation 'nosuchid'" in one_line_error(res.stderr)
    res = warm("logs", "-m", "Bad Name!")
    assert res.returncode == ExitCode.INVALID_INPUT
    assert "invalid model name" in one_line_error(res.stderr)
    assert warm("logs", "-n", "-1").returncode == ExitCode.USAGE


def test_run_with_a_model_that_is_not_installed(warm) -> None:
    res = warm("run", "nosuchmodel", "hi")
    assert res.returncode == ExitCode.MODEL_NOT_FOUND, res.stderr
    line = one_line_error(res.stderr)
    assert "model 'nosuchmodel' not found" in line and 'llm "nosuchmodel hi"' in line
    assert "llm catalog" in line
    line = one_line_error(warm("run", "smolm2", "hi").stderr)  # close to an installed one
    assert "model 'smolm2' not found" in line and "did you mean: smollm2:135m" in line
    line = one_line_error(warm("run", "qwen", "hi").stderr)  # close to catalog names
    assert "llm pull qwen2.5:0.5b" in line
    res = warm("run", "nope:1b", "hi")  # name:tag is a model, always
    assert res.returncode == ExitCode.MODEL_NOT_FOUND
    assert "model 'nope:1b' not found" in one_line_error(res.stderr)
    res = warm("nope:1b", "hi")  # Ollama habit without `run`
    assert res.returncode == ExitCode.MODEL_NOT_FOUND
    # prose still runs on the default model
    res = warm("run", "what", "is", "2+2?", *Q)
    assert res.returncode == 0, res.stderr
    res = warm("run", "Hello", "there", *Q)
    assert res.returncode == 0, res.stderr
    res = warm("run", "gemma3:270m", "Hello", *Q)
    assert res.returncode == 0, res.stderr


def test_extract_code_block() -> None:
    from llmtui.cli.prompt_cmd import _pick_block, parse_option

    text = "Here:\n```python\nprint(1)\n```\nand\n```sh\nls\n```\n"
    assert _pick_block(text, last=False) == "print(1)\n"
    assert _pick_block(text, last=True) == "ls\n"
    assert _pick_block("no code", last=False) == "no code"
    assert parse_option("temperature=0.5") == ("temperature", 0.5)
    assert parse_option("stop=END") == ("stop", "END")
    assert parse_option("num_ctx=2048") == ("num_ctx", 2048)


def test_help_is_served_from_the_cache_without_typer(tmp_path: Path) -> None:
    env = {**os.environ, "LLMTUI_HOME": str(tmp_path / "h"), "COLUMNS": "100"}
    first = subprocess.run([sys.executable, "-m", "llmtui", "--help"], capture_output=True,
                           text=True, env=env, cwd=ROOT)
    assert first.returncode == 0 and "prompt" in first.stdout and "logs" in first.stdout
    assert list((tmp_path / "h" / "cache").glob("help-*.txt"))
    code = ("import sys\nsys.argv = ['llm', '--help']\nfrom llmtui.cli.entry import main\n"
            "main()\nprint(sorted(m for m in ('typer', 'rich', 'llmtui.cli.app') "
            "if m in sys.modules), file=sys.stderr)\n")
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, cwd=ROOT)
    assert second.stdout == first.stdout
    assert second.stderr.strip() == "[]", second.stderr
    # another width is another screen (Click wraps to the terminal)
    narrow = subprocess.run([sys.executable, "-m", "llmtui", "--help"], capture_output=True,
                            text=True, env={**env, "COLUMNS": "60"}, cwd=ROOT)
    assert narrow.returncode == 0
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 60
    assert len(list((tmp_path / "h" / "cache").glob("help-*.txt"))) == 1  # old ones go
