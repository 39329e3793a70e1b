"""The tool loop with the real tiny model and a real daemon: the SDK, `llm run` and
`llm ask` call a tool whose result the model cannot know, with approval."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LLM, ROOT, Runner, one_line_error

SMOL = "smollm2:135m"
FACT = "ZEBRA-4471"
FUNCTIONS = f'''
def secret_code(city: str) -> str:
    """The secret code of a city."""
    return "The secret code of " + city + " is {FACT}."
'''
QUESTION = "What is the secret code of Paris?"
GEN = ["-m", SMOL, "-n", "40", "--temperature", "0", "--seed", "1"]


def secret_code(city: str) -> str:
    """The secret code of a city."""
    return f"The secret code of {city} is {FACT}."


@pytest.fixture()
def fns(tmp_path: Path) -> Path:
    path = tmp_path / "tools.py"
    path.write_text(FUNCTIONS)
    return path


def _tool_message(messages: list[dict[str, Any]]) -> dict[str, Any]:
    (msg,) = [m for m in messages if m["role"] == "tool"]
    return msg


def test_sdk_runs_a_forced_call_and_feeds_the_result_back(client: Any) -> None:
    seen: list[str] = []
    result = client.run_tools(SMOL, QUESTION, [secret_code], tool_choice="required",
                              max_rounds=1, options={"num_predict": 40, "temperature": 0},
                              on_text=seen.append)
    (call,) = result.calls
    assert call.name == "secret_code" and call.status == "ok"
    assert isinstance(call.arguments["city"], str)  # schema-valid arguments
    assert FACT in call.result
    # the conversation sent for the next turn: the call, then its result
    roles = [m["role"] for m in result.messages]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert result.messages[1]["tool_calls"][0]["function"]["name"] == "secret_code"
    assert FACT in _tool_message(result.messages)["content"]
    assert result.rounds == 2 and result.text == "".join(seen)
    assert result.final["done"] is True


def test_sdk_approve_false_refuses_and_tells_the_model(client: Any) -> None:
    result = client.run_tools(SMOL, QUESTION, [secret_code], tool_choice="secret_code",
                              approve=False, max_rounds=1,
                              # greedy, with room for the whole call: a sampled city
                              # name can outrun a short limit and leave no call at all
                              options={"num_predict": 40, "temperature": 0})
    (call,) = result.calls
    assert call.status == "denied"
    assert FACT not in json.dumps(result.messages)
    assert "approval" in _tool_message(result.messages)["content"]


def test_run_functions_in_a_pipe_with_yes(warm: Runner, fns: Path) -> None:
    res = warm("run", *GEN, "--functions", str(fns), "--tool-choice", "required", "--yes",
               "--json", input=QUESTION, start_new_session=True)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    (call,) = out["calls"]
    assert call["name"] == "secret_code" and call["status"] == "ok"
    assert FACT in call["result"]
    assert 'tool call: secret_code({"city": ' in res.stderr
    assert "tool result: secret_code ok" in res.stderr


def test_run_without_a_terminal_refuses_the_call(warm: Runner, fns: Path) -> None:
    res = warm("run", *GEN, "--functions", str(fns), "--tool-choice", "secret_code",
               "--tool-rounds", "1", "--json", input=QUESTION, start_new_session=True)
    assert res.returncode == 0, res.stderr
    assert "tool call refused: secret_code needs approval and there is no terminal" \
        in res.stderr
    assert "--allow-tool secret_code" in res.stderr
    (call,) = json.loads(res.stdout)["calls"]
    assert call["status"] == "denied" and FACT not in res.stdout


def test_ask_with_an_allowed_tool(warm: Runner, fns: Path) -> None:
    res = warm("ask", *GEN, "--functions", str(fns), "--tool-choice", "secret_code",
               "--allow-tool", "secret_code", "--tool-rounds", "1", QUESTION,
               start_new_session=True)
    assert res.returncode == 0, res.stderr
    assert "tool result: secret_code ok" in res.stderr and "refused" not in res.stderr


def test_builtin_fs_reads_a_file_in_the_working_folder(warm: Runner, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text(f"The launch code is {FACT}.\n")
    env = {**os.environ, **warm.env}
    res = subprocess.run([*LLM, "run", *GEN, "--tools", "fs", "--tool-choice", "list_files",
                          "--yes", "--tool-rounds", "1", "--json", "What files are here?"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
                         start_new_session=True)
    assert res.returncode == 0, res.stderr
    (call,) = json.loads(res.stdout)["calls"]
    assert call["name"] == "list_files"
    # the tiny model picks the path; inside the folder it lists notes.txt, outside it is
    # refused by the fence
    assert "notes.txt" in call["result"] or "outside the working folder" in call["result"]


@pytest.mark.parametrize(("args", "message"), [
    (["--tools", "web"], "--tools takes fs, shell, plugins"),
    (["--tools", "fs", "--tool-choice", "nope"], "--tool-choice must be auto, required"),
    (["--tools", "fs", "--allow-tool", "nope"], "--allow-tool nope: there is no such tool"),
    (["--tool-choice", "required"], "need tools"),
    (["--yes"], "need tools"),
    (["--functions", "/nonexistent/tools.py"], "no file"),
    (["--functions", "def broken(:"], "line 1"),
    (["--tools", "fs", "--tool-rounds", "99"], "--tool-rounds must be"),
])
def test_bad_tool_options(warm: Runner, args: list[str], message: str) -> None:
    res = warm("run", "-m", SMOL, *args, "hello", start_new_session=True)
    assert res.returncode != 0
    assert message in one_line_error(res.stderr)


def test_tools_with_empty_stdin(warm: Runner) -> None:
    res = warm("run", "-m", SMOL, "--tools", "fs", input="", start_new_session=True)
    assert "nothing to do: the prompt and stdin are empty" in one_line_error(res.stderr)


def test_interactive_session_with_tools(warm: Runner, fns: Path) -> None:
    """`llm run MODEL --functions F` at a terminal: each turn may call the tools; "a"
    allows the tool for the rest of the session."""
    from tests.cli.test_pipe import Pty

    env = {**os.environ, **warm.env, "TERM": "dumb"}
    p = Pty([*LLM, "run", *GEN, "--functions", str(fns), "--tool-choice", "required",
             "--tool-rounds", "1"], env)
    try:
        p.expect(b"with 1 tools (secret_code)")
        p.send(QUESTION.encode() + b"\r")
        p.expect(b"Run secret_code? [y]es once, [a]lways for this tool, [n]o: ")
        p.send(b"a\r")
        p.expect(b"tool result: secret_code ok")
        p.expect(b">>> ", timeout=120)
        p.send(b"And the secret code of Rome?\r")
        asked = p.expect(b"tool result: secret_code ok")
        assert b"Run secret_code?" not in asked  # allowed for the session
        p.expect(b">>> ", timeout=120)
        p.send(b"/bye\r")
        assert p.proc.wait(timeout=30) == 0
    finally:
        if p.proc.poll() is None:
            p.proc.kill()


def _with_terminal(warm: Runner, fns: Path, answers: bytes, *extra: str) -> str:
    """`llm run` with a pseudo-terminal as its controlling terminal (and stdin, which
    keeps it open): the approval prompt appears there and gets ``answers``."""
    master, slave = os.openpty()
    name = os.ttyname(slave)

    def own_terminal() -> None:  # after setsid: opening the tty makes it the controlling one
        os.close(os.open(name, os.O_RDWR))

    proc = subprocess.Popen([*LLM, "run", *GEN, "--functions", str(fns), *extra,
                             "--json", QUESTION], env={**os.environ, **warm.env}, cwd=ROOT,
                            stdin=slave, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=own_terminal)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    seen += os.read(master, 4096)
                except OSError:  # no one has the terminal open yet
                    time.sleep(0.1)
                    continue
                while b"[n]o: " in seen and answers:
                    seen = seen.replace(b"[n]o: ", b"[n]o:(answered) ", 1)
                    line, _, answers = answers.partition(b"\n")
                    os.write(master, line + b"\n")
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    assert b"Run secret_code? [y]es once, [a]lways for this tool, [n]o" in seen
    return out.decode()


def test_terminal_approval_allow_and_deny(warm: Runner, fns: Path) -> None:
    allowed = json.loads(_with_terminal(warm, fns, b"y\n", "--tool-choice", "required",
                                        "--tool-rounds", "1"))
    assert [c["status"] for c in allowed["calls"]] == ["ok"]
    assert FACT in allowed["calls"][0]["result"]
    denied = json.loads(_with_terminal(warm, fns, b"n\n", "--tool-choice", "required",
                                       "--tool-rounds", "1"))
    assert [c["status"] for c in denied["calls"]] == ["denied"]
    assert denied["calls"][0]["result"] == "the user denied this call"
