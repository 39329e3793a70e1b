"""What the ONNX Runtime and OpenVINO backends share: prompts from chat templates (the
same sandboxed renderer as llama.cpp), context checks, stop strings, stats, perplexity.

A subclass loads its runtime and provides ``encode``/``decode``, ``_stream`` (token ids
in, text pieces out, one per generated token, stopping when told) and ``_logits`` (the
logits of every position of a token window, for perplexity).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmtui.backends.base import Emit, GenStats, Reply
from llmtui.errors import ContextOverflow, InvalidInput


class StopScanner:
    """Holds back text that may be the start of a stop string; reports when one appears."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.held = ""
        self.hit = False

    def feed(self, text: str) -> str:
        if not self.stops:
            return text
        self.held += text
        cut = min((i for i in (self.held.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.hit = True
            out, self.held = self.held[:cut], ""
            return out
        keep = 0
        for stop in self.stops:  # the longest tail that could still grow into a stop
            for n in range(min(len(stop) - 1, len(self.held)), 0, -1):
                if self.held.endswith(stop[:n]):
                    keep = max(keep, n)
                    break
        out = self.held[:len(self.held) - keep]
        self.held = self.held[len(self.held) - keep:]
        return out

    def flush(self) -> str:
        out, self.held = self.held, ""
        return out


class TextGenBackend:
    """Generation, chat and perplexity over a runtime that decodes one token at a time."""

    formats: tuple[str, ...] = ()
    name = "text"  # the runtime's name in errors ("onnxruntime-genai", "openvino-genai")

    def __init__(self) -> None:
        self.n_ctx = 0
        self.template: str | None = None
        self.bos_text = ""
        self.eos_text = ""
        self.last_tokens = 0
        #: Set by ``_stream`` when its pieces are not one per token (a runtime's streamer
        #: may hold back partial words): the true count of generated tokens.
        self.generated: int | None = None

    # -- for subclasses ------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def _stream(self, tokens: list[int], opts: dict[str, Any], fmt: Any, max_new: int,
                cancelled: threading.Event) -> Iterator[str]:
        raise NotImplementedError

    def _logits(self, tokens: list[int]) -> Any:
        raise NotImplementedError

    def _check_format(self, fmt: Any) -> None:
        if fmt:
            raise InvalidInput(f"JSON mode ('format') is not available on {self.name}: this "
                               "runtime cannot constrain its output",
                               hint="use the GGUF model (llama.cpp) for JSON output")

    # -- shared --------------------------------------------------------------------------------

    def _read_template(self, folder: Path) -> None:
        from llmtui.models.folders import chat_template_of

        self.template = chat_template_of(folder)

    def tokenize(self, text: str) -> list[int]:
        return self.encode(text)

    def _render(self, messages: list[dict[str, Any]], tools: list[Any] | None,
                override: str | None) -> str:
        from llmtui.backends.llamacpp import render_prompt

        return render_prompt(self.template, messages, tools, override, bos=self.bos_text,
                             eos=self.eos_text)

    def _reserve(self, opts: dict[str, Any]) -> int:
        n = int(opts.get("num_predict", -1) or -1)
        return min(n, self.n_ctx // 2) if n > 0 else 1

    def _fit(self, tokens: list[int], request: dict[str, Any], stats: GenStats) -> list[int]:
        opts = request.get("options") or {}
        budget = self.n_ctx - self._reserve(opts)
        if len(tokens) <= budget:
            return tokens
        if not request.get("truncate"):
            raise ContextOverflow(
                f"the prompt is {len(tokens)} tokens but the context holds {self.n_ctx}",
                hint="shorten the input, raise num_ctx / --ctx, or pass --truncate")
        drop = len(tokens) - budget
        stats.truncated_tokens = drop
        return tokens[:1] + tokens[1 + drop:]  # keep the first (often BOS/system) token

    def generate(self, request: dict[str, Any], emit: Emit,
                 cancelled: threading.Event) -> GenStats:
        if request.get("suffix"):
            raise InvalidInput(f"insert ('suffix') is not available on {self.name}")
        prompt = str(request.get("prompt") or "")
        if request.get("raw") or (self.template is None and not request.get("template")):
            system = str(request.get("system") or "")
            text = (system + "\n\n" if system and self.template is None else "") + prompt
        else:
            messages = []
            if request.get("system"):
                messages.append({"role": "system", "content": request["system"]})
            messages.append({"role": "user", "content": prompt})
            text = self._render(messages, request.get("tools"), request.get("template"))
        return self._run(text, request, emit, cancelled)

    def chat(self, request: dict[str, Any], emit: Emit, cancelled: threading.Event) -> GenStats:
        messages = []
        for m in request.get("messages", []):
            out = {"role": m.get("role", "user"), "content": m.get("content") or ""}
            if m.get("tool_calls"):
                out["tool_calls"] = m["tool_calls"]
            messages.append(out)
        text = self._render(messages, request.get("tools"), request.get("template"))
        return self._run(text, request, emit, cancelled)

    def _run(self, text: str, request: dict[str, Any], emit: Emit,
             cancelled: threading.Event) -> GenStats:
        if request.get("logprobs"):  # the GenAI pipelines do not hand out their logits
            raise InvalidInput(f"log-probabilities ('logprobs') are not available on "
                               f"{self.name}: use a GGUF model")
        stats = GenStats()
        opts = dict(request.get("options") or {})
        fmt = request.get("format")
        self._check_format(fmt)
        tokens = self.encode(text)
        context = [int(t) for t in request.get("context") or []]
        if context:
            tokens = context + tokens
        tokens = self._fit(tokens, request, stats)
        stats.prompt_tokens = len(tokens)
        room = self.n_ctx - len(tokens)
        wanted = int(opts.get("num_predict", -1) or -1)
        max_new = min(wanted, room) if wanted > 0 else room
        scanner = StopScanner([str(s) for s in opts.get("stop") or []])
        start = time.perf_counter()
        first: float | None = None
        count = 0
        pieces: list[str] = []
        self.generated = None
        for piece in self._stream(tokens, opts, fmt, max_new, cancelled):
            count += 1
            if first is None:
                first = time.perf_counter() - start
            out = scanner.feed(piece)
            if out:
                pieces.append(out)
                emit(out)
            if scanner.hit or cancelled.is_set():
                break
        rest = scanner.flush() if not scanner.hit else ""
        if rest:
            pieces.append(rest)
            emit(rest)
        end = time.perf_counter()
        count = self.generated if self.generated is not None else count
        first = end - start if first is None else first
        stats.first_token_seconds = first
        stats.prompt_seconds = first
        stats.completion_tokens = count
        stats.completion_seconds = max(0.0, end - start - first)
        if cancelled.is_set():
            stats.done_reason = "cancel"
        elif not scanner.hit and count >= max_new:
            stats.done_reason = "length"
        reply = "".join(pieces)
        stats.context = tokens + (self.encode(reply) if reply and request.get("prompt")
                                  is not None else [])
        return stats

    # -- perplexity ----------------------------------------------------------------------------

    def op_perplexity(self, msg: dict[str, Any], reply: Reply,
                      cancelled: threading.Event) -> None:
        """The `perplexity` operation (see llmtui.eval.perplexity for the contract)."""
        from llmtui.eval import perplexity

        text, ctx, stride = perplexity.op_request(msg, self.n_ctx)
        tokens = self.encode(text)
        for event in perplexity.run(tokens, ctx, stride, self._logits, cancelled.is_set):
            if "perplexity" in event:
                reply.done(**event)
            else:
                reply.chunk(**event)
        if cancelled.is_set():
            reply.done(done_reason="cancel")

    def embed(self, texts: list[str], options: dict[str, Any]) -> list[list[float]]:
        raise InvalidInput(f"this model makes text, not vectors ({self.name})",
                           hint="use an embedding model for llm embed")
