"""`llm launch`: the set-up written for each coding agent, a missing agent, and a launch
that starts the daemon on TCP and execs the agent (a stand-in script that reports what
it was given, then talks to the daemon as Claude Code would)."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import pytest

from llmtui.cli.launch_cmd import setup
from tests.api.conftest import free_port
from tests.conftest import Runner, one_line_error

SMOL = "smollm2:135m"


def _exports(stdout: str) -> dict[str, str]:
    out = {}
    for line in stdout.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            out[key] = shlex.split(value)[0]
    return out


def test_setup_for_each_agent() -> None:
    url = "http://127.0.0.1:5000"
    env, args, cfg = setup("claude", url, SMOL, "k")
    assert env["ANTHROPIC_BASE_URL"] == url and env["ANTHROPIC_AUTH_TOKEN"] == "k"
    assert env["ANTHROPIC_MODEL"] == SMOL and env["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == SMOL
    assert args == [] and cfg is None
    env, args, cfg = setup("codex", url, SMOL, "k")
    assert env == {"LLMTUI_API_KEY": "k"}
    assert args[-2:] == ["-m", SMOL] and "model_provider=llmtui" in args
    assert f'base_url="{url}/v1"' in args[1] and 'wire_api="responses"' in args[1]
    env, args, cfg = setup("opencode", url, SMOL, "k")
    assert cfg is not None and cfg["model"] == f"llmtui/{SMOL}"
    assert cfg["provider"]["llmtui"]["options"] == {"baseURL": f"{url}/v1", "apiKey": "k"}
    env, args, cfg = setup("aider", url, SMOL, "k")
    assert env["OLLAMA_API_BASE"] == url and args == ["--model", f"ollama_chat/{SMOL}"]


@pytest.mark.parametrize("agent", ["claude", "codex", "opencode", "aider"])
def test_config_prints_a_setup(llm: Runner, agent: str, home: Path) -> None:
    res = llm("launch", agent, "-m", SMOL, "--config")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("# ") and SMOL in lines[0]
    env = _exports(res.stdout)
    command = next(ln for ln in lines if ln.split()[0] == agent)
    if agent == "claude":
        assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:11434"
        assert command == "claude"
    if agent == "opencode":
        written = json.loads(Path(env["OPENCODE_CONFIG"]).read_text())
        assert written["model"] == f"llmtui/{SMOL}"
    assert "llm serve --port 11434" in res.stderr  # no daemon on TCP yet: says how


def test_bad_agent_and_missing_agent(llm: Runner) -> None:
    assert "llm launch knows claude, codex, opencode, aider" in \
        one_line_error(llm("launch", "vim").stderr)
    res = llm("launch", "claude", "-m", SMOL, env={"PATH": "/nonexistent"})
    line = one_line_error(res.stderr)
    assert "Claude Code is not installed" in line
    assert "npm install -g @anthropic-ai/claude-code" in line


FAKE_CLAUDE = """#!{python}
import json, os, sys, urllib.request
base = os.environ["ANTHROPIC_BASE_URL"]
req = urllib.request.Request(base + "/v1/messages", data=json.dumps({{
    "model": os.environ["ANTHROPIC_MODEL"], "max_tokens": 5,
    "messages": [{{"role": "user", "content": "hi"}}]}}).encode(),
    headers={{"content-type": "application/json",
             "authorization": "Bearer " + os.environ["ANTHROPIC_AUTH_TOKEN"],
             "anthropic-version": "2023-06-01"}})
reply = json.load(urllib.request.urlopen(req, timeout=120))
print(json.dumps({{"argv": sys.argv[1:], "base": base, "reply_type": reply["type"]}}))
"""


def test_launch_starts_the_daemon_on_tcp_and_runs_the_agent(llm: Runner, smollm: Path,
                                                             tmp_path: Path) -> None:
    from tests.conftest import import_models

    import_models(Path(llm.env["LLMTUI_HOME"]), smollm)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "claude"
    fake.write_text(FAKE_CLAUDE.format(python=sys.executable))
    fake.chmod(0o755)
    port = free_port()
    res = llm("launch", "claude", "-m", SMOL, "--port", str(port), "--", "-p", "hello",
              env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["argv"] == ["-p", "hello"]
    assert out["base"] == f"http://127.0.0.1:{port}"
    assert out["reply_type"] == "message"  # the daemon answered on /v1/messages
    # the daemon stays up on TCP: --config now prints its address, with no note
    again = llm("launch", "claude", "-m", SMOL, "--config")
    assert _exports(again.stdout)["ANTHROPIC_BASE_URL"] == f"http://127.0.0.1:{port}"
    assert "llm serve" not in again.stderr
