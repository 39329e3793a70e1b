"""GGUF models on llama.cpp, through llama-cpp-python; runs inside a worker process."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from typing import Any

from llmtui.backends.base import Emit, GenStats
from llmtui.backends.templates import is_jinja, render_go
from llmtui.backends.tools import with_tool_prompt
from llmtui.errors import ContextOverflow, InvalidInput, require


def render_template(template: str, messages: list[dict[str, Any]], *, bos: str, eos: str,
                    tools: list[Any] | None = None, add_generation_prompt: bool = True) -> str:
    """Render a GGUF chat template in a sandboxed Jinja environment (untrusted input)."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise InvalidInput(f"the chat template rejected the messages: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(template).render(
            messages=messages, add_generation_prompt=add_generation_prompt,
            bos_token=bos, eos_token=eos, tools=tools or None,
        )
    except TemplateError as exc:
        raise InvalidInput(f"the model's chat template failed: {exc}") from None


def _pool_normalize(vector: Any) -> list[float]:
    """A sentence vector: mean of per-token vectors (models without pooling), L2-normalized."""
    if vector and isinstance(vector[0], list):
        dims = len(vector[0])
        vector = [sum(tok[i] for tok in vector) / len(vector) for i in range(dims)]
    values = [float(x) for x in vector]
    norm = sum(x * x for x in values) ** 0.5
    return [x / norm for x in values] if norm > 0 else values


class LlamaCppBackend:
    """One loaded GGUF model. Not thread-safe: the worker runs one operation at a time."""

    formats = ("gguf",)

    def __init__(self) -> None:
        self.llm: Any = None
        self.template: str | None = None
        self.n_ctx = 0
        self.bos_text = ""
        self.eos_text = ""
        self._last_reply = ""
        self.last_tokens = 0  # tokens in the last embed call

    def load(self, path: str, options: dict[str, Any]) -> dict[str, Any]:
        llama_cpp = require("llama_cpp", "llama", "Running GGUF models")
        from llmtui.backends.ggml_devices import has_gpu

        # Not llama_supports_gpu_offload(): it is also true for a CPU build with RPC.
        supports_gpu = has_gpu()
        gpu_layers = int(options.get("num_gpu", -1))
        if not supports_gpu:
            gpu_layers = 0
        threads = int(options.get("num_thread") or 0) or None
        n_ctx = int(options.get("num_ctx") or 0)
        self.llm = llama_cpp.Llama(  # type: ignore[attr-defined]
            model_path=path,
            n_ctx=n_ctx,  # 0: the model's training context
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=gpu_layers,
            n_batch=min(512, n_ctx or 512),
            embedding=bool(options.get("embedding", False)),
            verbose=False,
        )
        self.n_ctx = int(self.llm.n_ctx())
        meta = self.llm.metadata or {}
        self.template = meta.get("tokenizer.chat_template") or None
        self.bos_text = self._token_text(self.llm.token_bos())
        self.eos_text = self._token_text(self.llm.token_eos())
        return {
            "n_ctx": self.n_ctx,
            "n_ctx_train": int(self.llm._model.n_ctx_train()),
            "gpu_offload": supports_gpu and gpu_layers != 0,
            "gpu_layers": gpu_layers,
            "chat_template": self.template is not None,
            "embedding": bool(options.get("embedding", False)),
        }

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        try:
            return bytes(self.llm.detokenize([token], special=True)).decode("utf-8", "replace")
        except Exception:
            return ""

    # -- prompts -------------------------------------------------------------------------------

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        add_bos = not (self.bos_text and text.startswith(self.bos_text))
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special))

    def _render(self, messages: list[dict[str, Any]], tools: list[Any] | None,
                override: str | None = None) -> str:
        template = override or self.template
        if tools and (template is None or "tools" not in template):
            # The template cannot offer tools: describe them in a system message instead.
            messages = with_tool_prompt(messages, tools)
        if template is None:
            # No template (a base model): plain completion over the conversation's text.
            return "\n\n".join(str(m.get("content") or "") for m in messages)
        if override and not is_jinja(override):
            return render_go(override, messages)
        return render_template(template, messages, bos=self.bos_text, eos=self.eos_text,
                               tools=tools)

    def _fit(self, messages: list[dict[str, Any]], request: dict[str, Any],
             stats: GenStats) -> list[int]:
        """Tokens of the rendered prompt; over the context it errors, or truncates if asked."""
        tools = request.get("tools")
        override = request.get("template") or None
        tokens = self.tokenize(self._render(messages, tools, override))
        reserve = self._reserve(request)
        budget = self.n_ctx - reserve
        if len(tokens) <= budget:
            return tokens
        if not request.get("truncate"):
            raise ContextOverflow(
                f"the prompt is {len(tokens)} tokens but the context holds {self.n_ctx}"
                + (f" ({reserve} kept for the reply)" if reserve else ""),
                hint="shorten the input, raise num_ctx / --ctx, or pass --truncate",
            )
        # Truncate the longest user message from its start (keep the end: the question).
        over = len(tokens) - budget
        users = [m for m in messages if m.get("role") == "user" and m.get("content")]
        if not users:
            raise ContextOverflow("the prompt does not fit the context and cannot be truncated")
        target = max(users, key=lambda m: len(str(m["content"])))
        content = str(target["content"])
        ids = self.tokenize(content, special=False)
        if self.bos_text and ids and self._token_text(ids[0]) == self.bos_text:
            ids = ids[1:]
        keep = len(ids) - over - 8
        if keep <= 0:
            raise ContextOverflow("the prompt's fixed part alone does not fit the context")
        cut = bytes(self.llm.detokenize(ids[-keep:])).decode("utf-8", "ignore")
        messages = [dict(m, content=cut) if m is target else m for m in messages]
        tokens = self.tokenize(self._render(messages, tools, override))
        stats.truncated_tokens = len(ids) - keep
        if len(tokens) > budget:
            raise ContextOverflow("the prompt does not fit the context even after truncation")
        return tokens

    def _reserve(self, request: dict[str, Any]) -> int:
        """Tokens kept free for the reply: max_tokens when set, else at least one."""
        n = int(request.get("options", {}).get("num_predict", -1) or -1)
        return min(n, self.n_ctx // 2) if n > 0 else 1

    # -- generation ----------------------------------------------------------------------------

    def generate(self, request: dict[str, Any], emit: Emit,
                 cancelled: threading.Event) -> GenStats:
        stats = GenStats()
        prompt = str(request.get("prompt") or "")
        if request.get("suffix"):
            tokens = self._fim(prompt, str(request["suffix"]))
        elif request.get("raw") or (self.template is None and not request.get("template")):
            system = str(request.get("system") or "")
            text = (system + "\n\n" if system and self.template is None else "") + prompt
            tokens = self.tokenize(text)
            reserve = self._reserve(request)
            if len(tokens) > self.n_ctx - reserve:
                if not request.get("truncate"):
                    raise ContextOverflow(
                        f"the prompt is {len(tokens)} tokens but the context holds {self.n_ctx}",
                        hint="shorten the input, raise num_ctx / --ctx, or pass --truncate")
                drop = len(tokens) - (self.n_ctx - reserve)
                stats.truncated_tokens = drop
                tokens = tokens[:1] + tokens[1 + drop:]
        else:
            messages = []
            if request.get("system"):
                messages.append({"role": "system", "content": request["system"]})
            messages.append({"role": "user", "content": prompt})
            tokens = self._fit(messages, request, stats)
        context = [int(t) for t in request.get("context") or []]
        if context:
            if any(t < 0 or t >= self.llm.n_vocab() for t in context):
                raise InvalidInput("'context' holds token ids this model does not have")
            if self.bos_text and tokens and tokens[0] == self.llm.token_bos():
                tokens = tokens[1:]  # the earlier context already starts with BOS
            tokens = context + tokens
            if len(tokens) >= self.n_ctx:
                raise ContextOverflow(
                    f"'context' plus the prompt is {len(tokens)} tokens but the context "
                    f"holds {self.n_ctx}", hint="start a new conversation (drop 'context')")
        stats = self._run(tokens, request, emit, cancelled, stats)
        reply = self._last_reply.encode("utf-8")
        stats.context = tokens + (list(self.llm.tokenize(reply, add_bos=False, special=False))
                                  if reply else [])
        return stats

    def _fim(self, prefix: str, suffix: str) -> list[int]:
        """Fill-in-the-middle: <PRE> prefix <SUF> suffix <MID>, with the model's own tokens."""
        import llama_cpp

        vocab = llama_cpp.llama_model_get_vocab(self.llm._model.model)
        pre, suf, mid = (llama_cpp.llama_vocab_fim_pre(vocab), llama_cpp.llama_vocab_fim_suf(vocab),
                         llama_cpp.llama_vocab_fim_mid(vocab))
        if min(pre, suf, mid) < 0:
            raise InvalidInput("this model does not support insert ('suffix'): it has no "
                               "fill-in-the-middle tokens")
        body = self.llm.tokenize(prefix.encode("utf-8"), add_bos=False, special=False)
        tail = self.llm.tokenize(suffix.encode("utf-8"), add_bos=False, special=False)
        head = [self.llm.token_bos()] if self.llm._model.add_bos_token() else []
        return [*head, pre, *body, suf, *tail, mid]

    def chat(self, request: dict[str, Any], emit: Emit, cancelled: threading.Event) -> GenStats:
        stats = GenStats()
        messages = [self._message(m) for m in request.get("messages", [])]
        tokens = self._fit(messages, request, stats)
        return self._run(tokens, request, emit, cancelled, stats)

    @staticmethod
    def _message(m: dict[str, Any]) -> dict[str, Any]:
        out = {"role": m.get("role", "user"), "content": m.get("content") or ""}
        if m.get("tool_calls"):
            out["tool_calls"] = m["tool_calls"]
        return out

    def _grammar(self, fmt: Any) -> Any:
        if not fmt:
            return None
        from llama_cpp import LlamaGrammar
        from llama_cpp.llama_grammar import JSON_GBNF

        if fmt == "json":
            return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
        if isinstance(fmt, dict):
            from llama_cpp.llama_grammar import json_schema_to_gbnf

            try:
                gbnf = json_schema_to_gbnf(json.dumps(fmt))
                # The converter's string characters admit raw control characters, which
                # JSON forbids; use the same character class as its plain JSON grammar.
                gbnf = gbnf.replace('char ::= [^"\\\\]', 'char ::= [^"\\\\\\x7F\\x00-\\x1F]')
                return LlamaGrammar.from_string(gbnf, verbose=False)
            except Exception as exc:
                raise InvalidInput(f"unsupported JSON schema: {exc}") from None
        raise InvalidInput("format must be \"json\" or a JSON schema object")

    def _run(self, tokens: list[int], request: dict[str, Any], emit: Emit,
             cancelled: threading.Event, stats: GenStats) -> GenStats:
        opts = request.get("options", {})
        stats.prompt_tokens = len(tokens)
        room = self.n_ctx - len(tokens)
        wanted = int(opts.get("num_predict", -1) or -1)
        max_tokens = min(wanted, room) if wanted > 0 else room
        count = 0

        def stop_check(_ids: Any, _logits: Any) -> bool:
            nonlocal count
            count += 1
            return cancelled.is_set()

        from llama_cpp import StoppingCriteriaList

        seed = opts.get("seed")
        if seed is not None and int(seed) >= 0:
            # Reusing a cached prompt prefix replays its last token alone, whose logits
            # differ in the last bits from a batched decode; with a seed, the same request
            # must give the same reply, so evaluate the prompt afresh.
            self.llm.reset()
        start = time.perf_counter()
        first: float | None = None
        finish = "stop"
        stream = self.llm.create_completion(
            prompt=tokens,
            max_tokens=max_tokens,
            temperature=float(opts.get("temperature", 0.8)),
            top_p=float(opts.get("top_p", 0.9)),
            top_k=int(opts.get("top_k", 40)),
            min_p=float(opts.get("min_p", 0.05)),
            repeat_penalty=float(opts.get("repeat_penalty", 1.1)),
            presence_penalty=float(opts.get("presence_penalty", 0.0)),
            frequency_penalty=float(opts.get("frequency_penalty", 0.0)),
            seed=int(seed) if seed is not None and int(seed) >= 0 else None,
            stop=list(opts.get("stop") or []),
            stream=True,
            grammar=self._grammar(request.get("format")),
            stopping_criteria=StoppingCriteriaList([stop_check]),
        )
        pieces: list[str] = []
        for chunk in stream:
            choice = chunk["choices"][0]
            text = choice.get("text") or ""
            if text:
                if first is None:
                    first = time.perf_counter() - start
                pieces.append(text)
                emit(text)
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
        end = time.perf_counter()
        if first is None:
            first = end - start
        stats.first_token_seconds = first
        stats.prompt_seconds = first
        stats.completion_tokens = min(count, max_tokens)
        stats.completion_seconds = max(0.0, end - start - first)
        if cancelled.is_set():
            finish = "cancel"
        elif finish == "length" and wanted <= 0:
            finish = "length"  # the context filled up, reported, never silent
        stats.done_reason = finish
        self._last_reply = "".join(pieces)
        return stats

    def embed(self, texts: list[str], options: dict[str, Any]) -> list[list[float]]:
        self.last_tokens = 0
        for text in texts:
            n = len(self.tokenize(text))
            self.last_tokens += min(n, self.n_ctx)
            if n > self.n_ctx and not options.get("truncate", True):
                raise ContextOverflow(
                    f"an input is {n} tokens but the context holds {self.n_ctx}")
        # One text per call: llama.cpp packs a list into one batch whose attention spans
        # all of it (masked), so for encoders one at a time is faster (14 vs 11 chunks/s
        # for ~190-token chunks with all-MiniLM here).
        truncate = bool(options.get("truncate", True))
        return [_pool_normalize(self.llm.embed(t, normalize=False, truncate=truncate))
                for t in texts]

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
            self.llm = None
