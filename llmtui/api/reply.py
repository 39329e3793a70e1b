"""Turning the engine's text stream into what every API answers: thinking apart from the
answer, tool calls, log-probabilities. Shared by /api/chat, /api/generate, /v1 and
/v1/responses, so they all split a reply the same way.

A request's reasoning settings are worked out once (:func:`plan_thinking`), then each
reply goes through a :class:`ReplyStream`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from llmtui.backends.thinking import (
    ThinkingParser,
    check_think,
    is_on,
    prompt_opens_block,
    template_tags,
)
from llmtui.errors import InvalidInput

#: Ollama's bound on top_logprobs (OpenAI's is 20 too).
MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class ThinkPlan:
    """How one request thinks: the ``think`` value the template gets (None: leave it
    unset) and, when the reply is to be split, the delimiters and whether the prompt
    already opened the block."""

    think: bool | str | None = None
    tags: tuple[str, str] | None = None
    inside: bool = False

    def parser(self) -> ThinkingParser | None:
        return ThinkingParser(self.tags, inside=self.inside) if self.tags else None


async def plan_thinking(store: Any, model: str, think_raw: Any, *,
                        template: str | None = None, structured: bool = False,
                        raw_prompt: str | None = None) -> ThinkPlan:
    """Ollama's rules: a model whose template thinks does so unless ``think`` is false;
    asking a model that cannot think to think is a 400. ``template`` is a per-request
    override; ``raw_prompt`` a prompt sent without the template. With a grammar
    (``structured``) the reply must be the JSON itself, so thinking is turned off."""
    think = check_think(think_raw)
    from llmtui.backends.templates import is_jinja
    from llmtui.models.capabilities import model_facts

    facts = await asyncio.to_thread(model_facts, store, model)
    source = template if template else facts.template
    if template and not is_jinja(template):
        source = None  # Ollama's Go templates here have no .Thinking
    tags = template_tags(source)
    if tags is None:
        if is_on(think):
            raise InvalidInput(f"'{model}' does not support thinking")
        return ThinkPlan(think=think)
    if structured:
        return ThinkPlan(think=False)
    if think is None:
        think = True
    if not is_on(think):
        return ThinkPlan(think=think)
    if raw_prompt is not None:
        inside = raw_prompt.rstrip().endswith(tags[0])
    else:
        assert source is not None
        inside = await asyncio.to_thread(prompt_opens_block, source, think, tags[0])
    return ThinkPlan(think=think, tags=tags, inside=inside)


def check_logprobs(logprobs: Any, top: Any) -> tuple[bool, int]:
    """Validate ``logprobs`` (bool) and ``top_logprobs`` (0 to 20)."""
    if logprobs is not None and not isinstance(logprobs, bool):
        raise InvalidInput("'logprobs' must be true or false")
    if top is None:
        top = 0
    if isinstance(top, float) and top.is_integer():
        top = int(top)  # 2.0 is 2, as for the integer options
    if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= MAX_TOP_LOGPROBS:
        raise InvalidInput(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}")
    return bool(logprobs) or top > 0, top


def logprob_fields(want: bool, top: int) -> dict[str, Any]:
    """The request fields the engine reads for log-probabilities."""
    if not want:
        return {}
    return {"logprobs": True, "top_logprobs": top}


@dataclass
class Piece:
    """What one engine event becomes: thinking, answer text, and its tokens' logprobs."""

    thinking: str = ""
    content: str = ""
    logprobs: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.thinking or self.content or self.logprobs)


class ReplyStream:
    """Splits a streamed reply into thinking and answer, and holds back answer text that
    may be a tool call until the reply shows what it is (``watcher``: a ToolStream)."""

    def __init__(self, plan: ThinkPlan | None, watcher: Any) -> None:
        self.parser = plan.parser() if plan else None
        self.watcher = watcher
        self.thinking: list[str] = []
        self.content: list[str] = []
        self.logprobs: list[dict[str, Any]] = []

    def feed(self, event: dict[str, Any]) -> Piece:
        text = str(event.get("text") or "")
        thinking, content = self.parser.add(text) if self.parser else ("", text)
        thinking += str(event.get("thinking") or "")  # a backend that splits it itself
        piece = Piece(thinking=thinking, content=self.watcher.feed(content) if content else "",
                      logprobs=list(event.get("logprobs") or []))
        self._keep(piece)
        return piece

    def finish(self) -> tuple[Piece, list[dict[str, Any]]]:
        """What is still held at the end, and the tool calls the answer made."""
        thinking, content = self.parser.finish() if self.parser else ("", "")
        if content:
            self.watcher.feed(content)
        rest, calls = self.watcher.finish()
        piece = Piece(thinking=thinking, content=rest)
        self._keep(piece)
        return piece, calls

    def _keep(self, piece: Piece) -> None:
        if piece.thinking:
            self.thinking.append(piece.thinking)
        if piece.content:
            self.content.append(piece.content)
        self.logprobs.extend(piece.logprobs)

    @property
    def text(self) -> str:
        return "".join(self.content)

    @property
    def thought(self) -> str:
        return "".join(self.thinking)


async def collect(events: Any, first: dict[str, Any] | None, reply: ReplyStream
                  ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Drain an engine stream through ``reply``: (the final stats, tool calls). ``first``
    is its first event, when already read."""
    stats: dict[str, Any] = {}
    try:
        event = first if first is not None else await anext(events, None)
        while event is not None:
            if "stats" in event:
                stats = event["stats"]
            else:
                reply.feed(event)
            event = await anext(events, None)
    finally:
        await events.aclose()
    _, calls = reply.finish()
    return stats, calls


# -- OpenAI's logprob shapes ------------------------------------------------------------------

def openai_logprobs(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat completions' ``logprobs.content``: every entry has ``top_logprobs`` (a list)."""
    out = []
    for item in items:
        out.append({"token": item.get("token", ""), "logprob": item.get("logprob", 0.0),
                    "bytes": item.get("bytes"),
                    "top_logprobs": [{"token": t.get("token", ""),
                                      "logprob": t.get("logprob", 0.0),
                                      "bytes": t.get("bytes")}
                                     for t in item.get("top_logprobs") or []]})
    return out


def completion_logprobs(items: list[dict[str, Any]], offset: int = 0) -> dict[str, Any]:
    """Legacy completions' ``logprobs``: parallel lists and offsets into the text."""
    tokens, values, tops, offsets = [], [], [], []
    for item in items:
        tokens.append(item.get("token", ""))
        values.append(item.get("logprob", 0.0))
        tops.append({t.get("token", ""): t.get("logprob", 0.0)
                     for t in item.get("top_logprobs") or []})
        offsets.append(offset)
        offset += len(item.get("token", ""))
    return {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops,
            "text_offset": offsets}



# -- several replies at once (OpenAI's n) --------------------------------------------------------

async def run_all(coros: list[Any]) -> list[Any]:
    """Await coroutines concurrently; if one fails, cancel the others and raise."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def merge_streams(streams: list[Any]
                        ) -> AsyncGenerator[tuple[int, dict[str, Any]], None]:
    """Interleave engine streams as their events arrive: (stream index, event). Each is
    drained as it comes, so streams waiting for a model's only slot do not block the one
    holding it. An error in one ends them all; closing the merge cancels every stream."""
    queue: asyncio.Queue[tuple[int, dict[str, Any] | None, BaseException | None]] = \
        asyncio.Queue()

    async def pump(i: int, events: Any) -> None:
        try:
            async for event in events:
                await queue.put((i, event, None))
            await queue.put((i, None, None))
        except Exception as exc:
            await queue.put((i, None, exc))
        finally:
            await events.aclose()

    tasks = [asyncio.ensure_future(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(tasks)
        while remaining:
            i, event, exc = await queue.get()
            if exc is not None:
                raise exc
            if event is None:
                remaining -= 1
                continue
            yield i, event
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
