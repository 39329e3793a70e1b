"""Perplexity with a sliding window, the one implementation every backend and
`llm eval perplexity` (and fine-tuning's evaluation) share.

The text's tokens are read in windows of ``ctx`` tokens that advance by ``stride``; each
window scores only the tokens the previous one did not, with everything before them in
the window as context (Hugging Face's "perplexity of fixed-length models" recipe). The
first token has no context and is never scored, so ``n - 1`` tokens are scored in all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmtui.errors import InvalidInput

#: The public-domain evaluation text shipped with the package (see data/README).
DEFAULT_TEXT = Path(__file__).with_name("data") / "public-domain.txt"


@dataclass(frozen=True)
class Window:
    """Tokens ``begin:end`` go in; the targets ``score_from:end`` are scored."""

    begin: int
    end: int
    score_from: int


def windows(n_tokens: int, ctx: int, stride: int | None = None) -> list[Window]:
    """The windows over ``n_tokens`` tokens; every token after the first is scored once."""
    if ctx < 2:
        raise InvalidInput("the perplexity window (ctx) must be at least 2 tokens")
    stride = stride or max(1, ctx // 2)
    if not 0 < stride <= ctx:
        raise InvalidInput(f"stride must be between 1 and ctx ({ctx})")
    if n_tokens < 2:
        raise InvalidInput("the text is too short: it needs at least two tokens")
    out: list[Window] = []
    scored_to = 1  # token 0 has no context
    begin = 0
    while scored_to < n_tokens:
        end = min(begin + ctx, n_tokens)
        out.append(Window(begin, end, max(scored_to, begin + 1)))
        scored_to = end
        if end == n_tokens:
            break
        begin += stride
    return out


def window_nll(logits: Any, tokens: list[int], window: Window) -> tuple[float, int]:
    """Sum of negative log-likelihoods of the window's targets, from its logits.

    ``logits[i]`` (row i of the window) predicts token ``begin + i + 1``.
    """
    import numpy as np

    rows = np.asarray(logits, dtype=np.float32)
    first = window.score_from - window.begin - 1
    last = window.end - window.begin - 1
    pred = rows[first:last].astype(np.float64)
    targets = np.asarray(tokens[window.score_from:window.end])
    peak = pred.max(axis=1, keepdims=True)
    logz = np.log(np.exp(pred - peak).sum(axis=1)) + peak[:, 0]
    nll = logz - pred[np.arange(len(targets)), targets]
    return float(nll.sum()), len(targets)


def run(tokens: list[int], ctx: int, stride: int | None,
        logits_of: Callable[[list[int]], Any],
        cancelled: Callable[[], bool] = lambda: False) -> Iterator[dict[str, Any]]:
    """Yield ``{"progress", "total"}`` after each window, then the result
    ``{"tokens", "nll", "perplexity"}`` (the `perplexity` operation's contract)."""
    plan = windows(len(tokens), ctx, stride)
    total = len(tokens) - 1
    nll = 0.0
    scored = 0
    for window in plan:
        if cancelled():
            return
        part, count = window_nll(logits_of(tokens[window.begin:window.end]), tokens, window)
        nll += part
        scored += count
        yield {"progress": scored, "total": total}
    yield {"tokens": scored, "nll": nll, "perplexity": math.exp(nll / scored)}


def default_ctx(model_ctx: int | None) -> int:
    """min(512, the model's context), the operation's default window."""
    return min(512, model_ctx) if model_ctx else 512


def op_request(msg: dict[str, Any], model_ctx: int) -> tuple[str, int, int | None]:
    """Validate a perplexity request: (text, ctx, stride)."""
    text = msg.get("text")
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("'text' must be a non-empty string")
    ctx = msg.get("ctx")
    stride = msg.get("stride")
    for label, value in (("ctx", ctx), ("stride", stride)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 1):
            raise InvalidInput(f"'{label}' must be a positive whole number")
    ctx = ctx or default_ctx(model_ctx)
    if model_ctx and ctx > model_ctx:
        raise InvalidInput(f"ctx {ctx} is larger than the model's context ({model_ctx})")
    return text, int(ctx), stride
