"""Is a word a model name, and which models did the user mean?

`llm run WORD ...` takes its first word as the model when it looks like one, the way
Ollama users type it; a model that is not installed then gets "not found" with the
close matches and the pull command, instead of silently becoming part of the prompt.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from llmtui.errors import ModelNotFound

#: Words that start prompts far more often than they name models: `llm run what is ...`.
_PROMPT_WORDS = """
a an the i im i'm you we they he she it its this that these those my our your
what why how who whom whose when where which whats is are was were be been am
can could would should will shall may might must do does did dont don't
please tell write explain give list make show describe summarize summarise translate
name find create generate compare define help hi hello hey thanks thank ok okay yes no
say count print compute calculate convert fix rewrite improve draft suggest answer
if in on for to of and or not with about from as at by
"""
PROMPT_WORDS = frozenset(_PROMPT_WORDS.split())

_MODEL_SHAPED = re.compile(r"^[a-z0-9][a-z0-9._/-]*(?::[a-z0-9_][a-z0-9._-]*)?$")


def model_shaped(word: str) -> bool:
    """Lowercase letters, digits, '.', '-', '_', '/' and an optional :tag — no prose."""
    return bool(_MODEL_SHAPED.match(word))


def close_names(word: str, names: Iterable[str], n: int = 3) -> list[str]:
    """Model names close to ``word``, comparing with whole names and with the part before
    the tag (``qwen`` finds ``qwen2.5:0.5b``)."""
    by_key: dict[str, list[str]] = {}
    for name in sorted(set(names)):
        by_key.setdefault(name, []).append(name)
        by_key.setdefault(name.split(":")[0], []).append(name)
    word = word.lower()
    keys = difflib.get_close_matches(word, list(by_key), n=n, cutoff=0.75)
    if len(word) >= 3:  # `qwen` for qwen2.5, `llama` for llama3.2
        keys += sorted((k for k in by_key
                        if ":" not in k and k.startswith(word) and k not in keys), key=len)
    out: list[str] = []
    for key in keys:
        for name in by_key[key]:
            if name not in out:
                out.append(name)
    return out[:n]


def looks_like_model(word: str, installed: Iterable[str], catalog: Iterable[str],
                     more_words: bool) -> bool:
    """Should ``llm run WORD ...`` take WORD as the model?

    Yes for ``name:tag``, for an installed or catalog name (or close to one), and for a
    lowercase model-shaped word followed by more words that is not a common prompt word.
    """
    if " " in word or not model_shaped(word.lower()):
        return False
    names = {*installed, *catalog}
    if ":" in word or word.lower() in names or f"{word.lower()}:latest" in names:
        return True
    if close_names(word, names):
        return True
    return more_words and word == word.lower() and word not in PROMPT_WORDS


def not_found(word: str, installed: Iterable[str], catalog: Iterable[str], *,
              prompt: str | None = None) -> ModelNotFound:
    """"model 'X' not found" with the close matches, the pull command and, when the word
    may have been meant as prose, how to send it as the prompt."""
    have = set(installed)
    close = close_names(word, {*have, *catalog})
    hints: list[str] = []
    if close:
        hints.append("did you mean: " + ", ".join(
            name if name in have else f"{name} (llm pull {name})" for name in close))
    else:
        hints.append("`llm list` shows what is installed, `llm catalog` what can be pulled")
    if prompt is not None and ":" not in word:
        hints.append(f'to send it all as the prompt, quote it: llm "{prompt}"')
    shown = word if ":" in word else word.lower()
    return ModelNotFound(f"model '{shown}' not found", hint="; ".join(hints))
