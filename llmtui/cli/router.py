"""Habits users bring: `llm "prompt"` and `llm -m MODEL "prompt"` (simonw/llm) run a
prompt, `llm MODEL:TAG "prompt"` (Ollama without `run`) runs it on that model.

The router looks at the words before Typer does: when the first one is not a command,
the arguments go to `llm prompt` (or `llm run` for a name:tag). It never imports more
than the standard library, so `llm --help` pays nothing for it.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from llmtui.errors import UsageError

#: Root options that may come before a command; they stay where they are.
ROOT_FLAGS = {"--no-daemon"}
#: Root options that answer by themselves.
ROOT_ANSWERS = {"-h", "--help", "-V", "--version"}
_NAME_TAG = re.compile(r"^[a-z0-9][a-z0-9._/-]*:[a-z0-9_][a-z0-9._-]*$")
_WORD = re.compile(r"^[a-z][a-z-]*$")


def unknown_command(word: str, close: list[str]) -> UsageError:
    """A lone word that is almost a command (`llm lsit`): say so instead of prompting."""
    return UsageError(f"unknown command '{word}'",
                      hint=f"did you mean {' or '.join(close)}? To send it as a prompt: "
                      f"llm prompt {word}")


def command_names(app: Any) -> set[str]:
    """The names a Typer app's root answers to: its commands and command groups."""
    names = {c.name or (c.callback.__name__.lower().replace("_", "-") if c.callback else "")
             for c in app.registered_commands}
    names |= {g.name or "" for g in app.registered_groups}
    return names - {""}


def route(args: list[str], commands: set[str]) -> list[str]:
    """The arguments Typer should see."""
    i = 0
    while i < len(args) and args[i] in ROOT_FLAGS:
        i += 1
    head, rest = args[:i], args[i:]
    if not rest or rest[0] in ROOT_ANSWERS:
        return args
    first = rest[0]
    if first in commands:
        return [*head, first, *_pairs(rest[1:])] if first == "prompt" else args
    if _NAME_TAG.match(first):
        return [*head, "run", *rest]
    if len(rest) == 1 and _WORD.match(first):
        close = difflib.get_close_matches(first, sorted(commands), n=3, cutoff=0.75)
        if close:
            raise unknown_command(first, close)
    return [*head, "prompt", *_pairs(rest)]


def _pairs(words: list[str]) -> list[str]:
    """simonw/llm's `-o KEY VALUE` becomes `-o KEY=VALUE` (Typer options take one value)."""
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            out += words[i:]
            break
        if word in ("-o", "--option") and i + 2 < len(words) and "=" not in words[i + 1]:
            out += [word, f"{words[i + 1]}={words[i + 2]}"]
            i += 3
            continue
        out.append(word)
        i += 1
    return out
