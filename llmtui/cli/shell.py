"""Shell completion scripts and where each shell looks for them (used by `llm completion`,
`llm setup` and `llm doctor`)."""

from __future__ import annotations

import os
from pathlib import Path

from llmtui.errors import InvalidInput

FILES = {"bash": "llm.bash", "zsh": "_llm", "fish": "llm.fish"}


def script(shell: str) -> str:
    if shell not in FILES:
        raise InvalidInput(f"unsupported shell '{shell}'", hint="bash, zsh or fish")
    from importlib import resources

    bundled = resources.files("llmtui").joinpath("completions", FILES[shell])
    if bundled.is_file():
        return bundled.read_text(encoding="utf-8")
    # Running from a source checkout: the scripts live at the top level.
    repo = Path(__file__).resolve().parents[2] / "completions" / FILES[shell]
    return repo.read_text(encoding="utf-8")


def detect_shell() -> str:
    name = Path(os.environ.get("SHELL", "bash")).name
    return name if name in FILES else "bash"


def target(shell: str) -> Path:
    home = Path.home()
    if shell == "bash":
        data = Path(os.environ.get("XDG_DATA_HOME", home / ".local" / "share"))
        return data / "bash-completion" / "completions" / "llm"
    if shell == "zsh":
        return home / ".zfunc" / "_llm"
    config = Path(os.environ.get("XDG_CONFIG_HOME", home / ".config"))
    return config / "fish" / "completions" / "llm.fish"


def install(shell: str) -> tuple[Path, str | None]:
    """Write the script where the shell finds it: (path, a note for the user or None)."""
    text = script(shell)
    path = target(shell)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if shell == "zsh":
        return path, "add to ~/.zshrc (before compinit): fpath=(~/.zfunc $fpath)"
    if shell == "bash":
        return path, "new shells pick it up (needs the bash-completion package)"
    return path, None
