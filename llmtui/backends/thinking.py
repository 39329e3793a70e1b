"""Reasoning ("thinking") models: which templates think, and splitting a reply into its
thinking and its answer.

One module for every surface: /api/chat and /api/generate (``thinking``), /v1
(``reasoning_content``), /v1/responses, the CLI and the chat read the split from here.
The delimiters are the ones Ollama's parsers know; the model's chat template says which
pair a model uses, and whether the prompt already opened the block (templates such as
DeepSeek-R1's end the generation prompt with ``<think>``, so the reply starts inside it).
"""

from __future__ import annotations

import functools
from typing import Any

from llmtui.errors import InvalidInput

#: (opening, closing) delimiters of a thinking block, as models write them.
TAGS: tuple[tuple[str, str], ...] = (
    ("<think>", "</think>"),                        # Qwen3, DeepSeek-R1, GLM, LFM2, ...
    ("<thinking>", "</thinking>"),
    ("[THINK]", "[/THINK]"),                        # Magistral / Ministral
    ("<|START_THINKING|>", "<|END_THINKING|>"),     # Command A Reasoning
    ("<seed:think>", "</seed:think>"),              # Seed-OSS
    ("◁think▷", "◁/think▷"),                        # Kimi
)

#: The values ``think`` takes: on/off, or an effort for templates that read one.
LEVELS = ("low", "medium", "high")


def check_think(value: Any) -> bool | str | None:
    """Validate a request's ``think``: true/false, "low"/"medium"/"high" ("max" is read
    as "high", as Ollama does), or null for the model's default."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in (*LEVELS, "max"):
        level = value.lower()
        return "high" if level == "max" else level
    raise InvalidInput("'think' must be true, false, \"low\", \"medium\" or \"high\"")


def is_on(think: bool | str | None) -> bool:
    return think is not None and think is not False


def template_tags(template: str | None) -> tuple[str, str] | None:
    """The thinking delimiters a chat template uses, or None if it does not think.

    Ollama's test: the template writes both tags, or strips earlier reasoning by
    splitting replies at the closing tag (Qwen and DeepSeek templates do).
    """
    if not template:
        return None
    for opening, closing in TAGS:
        if opening in template and closing in template:
            return opening, closing
        if (f"split('{closing}')" in template or f'split("{closing}")' in template) \
                and "reasoning_content" not in template:
            return opening, closing
    return None


@functools.lru_cache(maxsize=64)
def prompt_opens_block(template: str, think: bool | str | None, opening: str) -> bool:
    """Whether the rendered generation prompt ends inside a thinking block (the template
    wrote the opening tag itself), for this ``think`` setting."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: "2025-01-01"
    values: dict[str, Any] = {}
    if think is not None:
        values["enable_thinking"] = is_on(think)
        values["reasoning_effort"] = think if isinstance(think, str) else None
    try:
        text = env.from_string(template).render(
            messages=[{"role": "user", "content": "Hi"}], add_generation_prompt=True,
            bos_token="", eos_token="", tools=None, **values)
    except Exception:  # a template that needs more than this probe: assume no prefill
        return False
    return text.rstrip().endswith(opening)


class ThinkingParser:
    """Splits streamed text into (thinking, content), holding back only what could still be
    the start of a delimiter. A port of Ollama's thinking.Parser, whitespace rules included:
    blank space around the block is dropped; a reply that does not open with the tag is
    all content."""

    def __init__(self, tags: tuple[str, str] = TAGS[0], *, inside: bool = False) -> None:
        self.opening, self.closing = tags
        self.state = "thinking-start" if inside else "looking"
        self.acc = ""

    def add(self, text: str) -> tuple[str, str]:
        self.acc += text
        thinking: list[str] = []
        content: list[str] = []
        while True:
            t, c, more = self._step()
            thinking.append(t)
            content.append(c)
            if not more:
                return "".join(thinking), "".join(content)

    def finish(self) -> tuple[str, str]:
        """What is still held at the end of the reply (an unfinished tag is text)."""
        rest, self.acc = self.acc, ""
        if self.state in ("looking", "done-start", "done"):
            self.state = "done"
            return "", rest if rest.strip() else ""
        return rest, ""

    def _step(self) -> tuple[str, str, bool]:
        acc = self.acc
        if self.state == "looking":
            trimmed = acc.lstrip()
            if trimmed.startswith(self.opening):
                self.acc = trimmed[len(self.opening):].lstrip()
                self.state = "thinking" if self.acc else "thinking-start"
                return "", "", True
            if not trimmed or self.opening.startswith(trimmed):
                return "", "", False  # blank so far, or a partial tag: wait
            self.state, self.acc = "done", ""
            return "", acc, False
        if self.state == "thinking-start":
            self.acc = acc.lstrip()
            if not self.acc:
                return "", "", False
            self.state = "thinking"
            return "", "", True
        if self.state == "thinking":
            if self.closing in acc:
                thought, _, rest = acc.partition(self.closing)
                rest = rest.lstrip()
                self.acc = ""
                self.state = "done" if rest else "done-start"
                return thought, rest, False
            keep = _overlap(acc, self.closing)
            self.acc = acc[len(acc) - keep:] if keep else ""
            return acc[:len(acc) - keep], "", False
        if self.state == "done-start":
            self.acc = ""
            rest = acc.lstrip()
            if rest:
                self.state = "done"
            return "", rest, False
        self.acc = ""
        return "", acc, False


def _overlap(text: str, delim: str) -> int:
    """Length of the longest suffix of ``text`` that is a prefix of ``delim``."""
    for n in range(min(len(delim), len(text)), 0, -1):
        if text.endswith(delim[:n]):
            return n
    return 0


def split_thinking(text: str, tags: tuple[str, str] = TAGS[0], *,
                   inside: bool = False) -> tuple[str, str]:
    """(thinking, content) of a whole reply."""
    parser = ThinkingParser(tags, inside=inside)
    t1, c1 = parser.add(text)
    t2, c2 = parser.finish()
    return t1 + t2, c1 + c2


def think_from_effort(effort: Any) -> bool | str | None:
    """OpenAI's reasoning effort as a ``think`` value, clamped like Ollama: "none" turns
    thinking off, "minimal" is "low", "xhigh" and above are "high"; unset is the model's
    default."""
    if effort is None or effort == "":
        return None
    table: dict[str, bool | str] = {"none": False, "minimal": "low", "low": "low",
                                    "medium": "medium", "high": "high", "xhigh": "high",
                                    "max": "high", "ultra": "high"}
    if not isinstance(effort, str) or effort.lower() not in table:
        raise InvalidInput("reasoning effort must be none, minimal, low, medium, high or "
                           "xhigh")
    return table[effort.lower()]
