"""Pipe commands against a warm daemon: stdin, stdout, stderr and exit codes."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

from llmtui.errors import ExitCode
from tests.conftest import LLM, ROOT, one_line_error

Q = ["-n", "8", "--temperature", "0"]


def test_run_prompt_and_stdin(warm) -> None:
    res = warm("run", "smollm2:135m", "What", "is", "2+2?", *Q)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() and "\x1b[" not in res.stdout
    res = warm("run", "-m", "smollm2:135m", "Summarize in one word.", *Q,
               input="The cat sat on the mat.")
    assert res.returncode == 0 and res.stdout.strip()
    res = warm("run", "What is the capital of France?", *Q)  # default model, prompt only
    assert res.returncode == 0 and res.stdout.strip()


def test_json_output_has_text_and_stats(warm) -> None:
    res = warm("run", "smollm2:135m", "Hello", *Q, "--json")
    data = json.loads(res.stdout)
    assert data["model"] == "smollm2:135m" and data["text"]
    stats = data["stats"]
    for key in ("load_duration", "prompt_eval_count", "eval_count", "eval_duration",
                "tokens_per_second", "time_to_first_token"):
        assert key in stats
    assert stats["eval_count"] >= 1 and stats["tokens_per_second"] > 0


def test_summarize_translate_ask(warm) -> None:
    text = (ROOT / "README.md").read_text()
    res = warm("summarize", "--length", "short", "-n", "40", input=text)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip()
    res = warm("summarize", "--bullets", "-n", "40", input=text)
    assert res.returncode == 0 and res.stdout.strip()
    res = warm("translate", "--to", "French", *Q, input="Good morning")
    assert res.returncode == 0 and res.stdout.strip()
    res = warm("ask", "What is the name of the tool?", *Q,
               input="The tool is called llmtui. It runs models locally.")
    assert res.returncode == 0 and res.stdout.strip()


def test_summarize_map_reduce_over_long_input(warm) -> None:
    paragraphs = [f"Section {i}. The committee met on day {i} and agreed on budget item {i}. "
                  "Members discussed the schedule, the staffing plan and the risks at length."
                  for i in range(30)]
    res = warm("summarize", "--ctx", "512", "-n", "60", "--temperature", "0",
               input="\n\n".join(paragraphs))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip()


def test_format_json_and_schema_file(warm, tmp_path: Path) -> None:
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "properties": {
        "answer": {"type": "string", "maxLength": 12}}, "required": ["answer"]}))
    res = warm("ask", "Capital of France?", "--format", str(schema), "-n", "60",
               "--temperature", "0")
    assert res.returncode == 0, res.stderr
    assert isinstance(json.loads(res.stdout)["answer"], str)
    res = warm("ask", "x", "--format", str(tmp_path / "missing.json"))
    assert res.returncode == ExitCode.INVALID_INPUT


def test_seed_reproducible(warm) -> None:
    args = ("run", "smollm2:135m", "Name an animal.", "-n", "10", "--temperature", "1.0",
            "--seed", "7")
    assert warm(*args).stdout == warm(*args).stdout


def test_bad_input_exit_codes(warm) -> None:
    res = warm("run", "-m", "nope:1", "hi")
    assert res.returncode == ExitCode.MODEL_NOT_FOUND
    assert "llm pull nope:1" in one_line_error(res.stderr)
    res = warm("summarize", input="")
    assert res.returncode == ExitCode.INVALID_INPUT
    assert "nothing to summarize" in one_line_error(res.stderr)
    res = warm("run", "smollm2:135m", input="   \n")
    assert res.returncode == ExitCode.INVALID_INPUT
    res = subprocess.run([*LLM, "summarize"], input=b"\xff\xfe\x00binary", capture_output=True,
                         env={**os.environ, **warm.env}, cwd=ROOT, timeout=60)
    assert res.returncode == ExitCode.INVALID_INPUT
    assert b"NUL" in res.stderr
    res = subprocess.run([*LLM, "summarize"], input=b"caf\xe9 latin-1 text", capture_output=True,
                         env={**os.environ, **warm.env}, cwd=ROOT, timeout=60)
    assert res.returncode == ExitCode.INVALID_INPUT
    assert b"UTF-8" in res.stderr
    for args in (["--temperature", "nan"], ["--temperature", "-1"], ["--max-tokens", "-9"],
                 ["--ctx", "999999999"], ["--temperature", "1e9"]):
        res = warm("run", "smollm2:135m", "hi", *args)
        assert res.returncode == ExitCode.INVALID_INPUT, (args, res.stderr)
        one_line_error(res.stderr)
    res = warm("run", "smollm2:135m", "hi", "--temperature", "warm")
    assert res.returncode == ExitCode.USAGE
    res = warm("summarize", "--length", "huge", input="text")
    assert res.returncode == ExitCode.INVALID_INPUT


def test_prompt_over_context_and_truncate(warm) -> None:
    long = "lorem ipsum dolor " * 400
    res = warm("ask", "What is this?", "--ctx", "256", *Q, input=long)
    assert res.returncode == ExitCode.CONTEXT_OVERFLOW
    line = one_line_error(res.stderr)
    assert "context holds 256" in line and "--truncate" in line
    res = warm("ask", "What is this?", "--ctx", "256", *Q, "--truncate", input=long)
    assert res.returncode == 0, res.stderr
    assert "truncated" in res.stderr
    # The daemon still serves after the error.
    assert warm("run", "smollm2:135m", "hi", *Q).returncode == 0


def _daemon_busy(warm) -> bool:
    res = warm("daemon", "status", "--json")
    return bool(json.loads(res.stdout).get("busy"))


def test_head_ends_quietly_and_cancels(warm) -> None:
    cmd = " ".join(LLM) + " run smollm2:135m 'Write a very long story.' -n 3000 | head -c 10"
    res = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}"], capture_output=True,
                         text=True, env={**os.environ, **warm.env}, cwd=ROOT, timeout=120)
    assert len(res.stdout) == 10
    assert "Traceback" not in res.stderr and "error" not in res.stderr.lower()
    deadline = time.monotonic() + 10
    while _daemon_busy(warm) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _daemon_busy(warm), "the generation went on after the reader left"


def test_ctrl_c_cancels_in_daemon(warm) -> None:
    proc = subprocess.Popen([*LLM, "run", "smollm2:135m", "Write a very long story.",
                             "-n", "3000"], env={**os.environ, **warm.env}, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.read(10)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == ExitCode.INTERRUPTED
    assert "Traceback" not in err
    deadline = time.monotonic() + 10
    while _daemon_busy(warm) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _daemon_busy(warm)


def test_ps_load_stop(warm) -> None:
    assert warm("load", "gemma3:270m", "--keep-alive", "10m").returncode == 0
    ps = warm("ps")
    assert "gemma3:270m" in ps.stdout and "CPU" in ps.stdout
    assert warm("stop", "gemma3:270m").returncode == 0
    assert "gemma3:270m" not in warm("ps").stdout
    res = warm("load", "gemma3:270m", "--keep-alive", "whenever")
    assert res.returncode == ExitCode.INVALID_INPUT


class Pty:
    """Drive an interactive command through a pseudo-terminal."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        def controlling_tty() -> None:
            # A new session whose controlling terminal is the pty: ^C becomes SIGINT.
            import fcntl
            import termios

            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     cwd=ROOT, preexec_fn=controlling_tty)
        os.close(slave)
        self.buf = b""

    def expect(self, text: bytes, timeout: float = 60) -> bytes:
        deadline = time.monotonic() + timeout
        while text not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"did not see {text!r}; got {self.buf[-500:]!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.buf += os.read(self.master, 4096)
                except OSError:
                    break
        out, _, self.buf = self.buf.partition(text)
        return out

    def send(self, data: bytes) -> None:
        os.write(self.master, data)


def test_repl(warm) -> None:
    env = {**os.environ, **warm.env, "TERM": "dumb"}
    p = Pty([*LLM, "run", "smollm2:135m", "-n", "8", "--temperature", "0"], env)
    try:
        p.expect(b"ready")
        p.send(b"/set parameter num_predict 400\r")
        p.expect(b"set num_predict = 400")
        p.send(b"Tell me a long story about a fox.\r")
        time.sleep(1.5)
        p.send(b"\x03")  # Ctrl-C stops the reply, not the REPL
        p.expect(b"reply stopped")
        p.send(b'/set parameter num_predict 6\r')
        p.expect(b"set num_predict = 6")
        p.send(b'"""\rline one\rline two\r"""\r')
        p.expect(b">>> ", timeout=60)
        p.send(b"/bye\r")
        assert p.proc.wait(30) == 0
    finally:
        if p.proc.poll() is None:
            p.proc.kill()


def test_completion_scripts(warm, tmp_path: Path) -> None:
    script = warm("completion", "show", "bash").stdout
    assert "_llm_models" in script
    path = tmp_path / "llm.bash"
    path.write_text(script)
    res = subprocess.run(["bash", "-c", f"source {path}; _llm_models"], capture_output=True,
                         text=True, env={**os.environ, **warm.env})
    assert set(res.stdout.split()) >= {"smollm2:135m", "gemma3:270m"}
    res = subprocess.run(["bash", "-c", f"source {path}; COMP_WORDS=(llm show sm); COMP_CWORD=2;"
                          " _llm; echo ${COMPREPLY[@]}"], capture_output=True, text=True,
                         env={**os.environ, **warm.env})
    assert res.stdout.split() == ["smollm2:135m"]
    for shell in ("zsh", "fish"):
        assert warm("completion", "show", shell).stdout.strip()
    target = tmp_path / "xdg"
    res = warm("completion", "install", "bash", env={"XDG_DATA_HOME": str(target)})
    assert res.returncode == 0
    assert (target / "bash-completion" / "completions" / "llm").exists()
