"""The shell completions know every command the CLI has (a new command must be added to
all three scripts), and complete the new commands' words."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import typer.main

from llmtui.cli.app import app

ROOT = Path(__file__).resolve().parents[2]


def visible_commands() -> set[str]:
    group = typer.main.get_command(app)
    return {name for name, cmd in group.commands.items()  # type: ignore[attr-defined]
            if not getattr(cmd, "hidden", False)}


def test_every_command_is_in_every_completion_script() -> None:
    want = visible_commands()
    assert {"run", "finetune", "convert", "eval"} <= want
    bash = (ROOT / "completions/llm.bash").read_text()
    fish = (ROOT / "completions/llm.fish").read_text()
    zsh = (ROOT / "completions/_llm").read_text()
    listed = {
        "bash": set(re.search(r'local commands="([^"]+)"', bash).group(1).split()),  # type: ignore[union-attr]
        "fish": set(re.search(r"set -l cmds (.+)", fish).group(1).split()),  # type: ignore[union-attr]
        "zsh": set(re.findall(r"'([a-z][a-z-]*):", zsh)),
    }
    for shell, names in listed.items():
        assert want - names == set(), f"{shell} completion lacks {sorted(want - names)}"


def test_bash_completes_the_new_commands(tmp_path: Path) -> None:
    def complete(words: str) -> list[str]:
        n = len(words.split()) - (0 if words.endswith(" ") else 1)
        arr = " ".join(f'"{w}"' for w in words.split()) + (' ""' if words.endswith(" ") else "")
        res = subprocess.run(
            ["bash", "-c", f"source {ROOT / 'completions/llm.bash'}; COMP_WORDS=({arr}); "
             f"COMP_CWORD={n}; _llm; echo ${{COMPREPLY[@]}}"],
            capture_output=True, text=True,
            env={"LLMTUI_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
        return res.stdout.split()

    assert complete("llm eval ") == ["perplexity", "compare"]
    assert complete("llm cache c") == ["clear"]
    assert complete("llm convert x --to o") == ["onnx", "openvino"]
    assert "finetune" in complete("llm fi")
