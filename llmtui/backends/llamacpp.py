"""GGUF models on llama.cpp, through llama-cpp-python; runs inside a worker process.

Generation runs natively: llama.cpp's low-level API with parallel slots decoded together
(llmtui.backends.slots), sampling in C. A model loaded for embeddings uses
llama-cpp-python's high-level ``Llama`` (pooling, normalization) one request at a time.
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from llmtui.backends.base import GenStats, Reply
from llmtui.backends.templates import is_jinja, render_go
from llmtui.backends.tools import with_tool_prompt
from llmtui.errors import BadModelFile, ConfigError, ContextOverflow, InvalidInput, require


def render_template(template: str, messages: list[dict[str, Any]], *, bos: str, eos: str,
                    tools: list[Any] | None = None, add_generation_prompt: bool = True,
                    think: bool | str | None = None) -> str:
    """Render a GGUF chat template in a sandboxed Jinja environment (untrusted input)."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise InvalidInput(f"the chat template rejected the messages: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    extra: dict[str, Any] = {}
    if think is not None:
        # Templates that switch reasoning read one of these (Qwen3: enable_thinking;
        # gpt-oss and others: reasoning_effort).
        extra["enable_thinking"] = think is not False
        if isinstance(think, str):
            extra["reasoning_effort"] = think
    try:
        return env.from_string(template).render(
            messages=messages, add_generation_prompt=add_generation_prompt,
            bos_token=bos, eos_token=eos, tools=tools or None, **extra,
        )
    except TemplateError as exc:
        raise InvalidInput(f"the model's chat template failed: {exc}") from None


def render_prompt(template: str | None, messages: list[dict[str, Any]],
                  tools: list[Any] | None, override: str | None = None, *, bos: str, eos: str,
                  think: bool | str | None = None) -> str:
    """A conversation as prompt text: the request's template (Go or Jinja) or the model's,
    tools described in a system message when the template cannot offer them, and plain
    text for a model without a template. Shared by every backend that renders prompts."""
    template = override or template
    if tools and (template is None or "tools" not in template):
        # The template cannot offer tools: describe them in a system message instead.
        messages = with_tool_prompt(messages, tools)
    if template is None:
        # No template (a base model): plain completion over the conversation's text.
        return "\n\n".join(str(m.get("content") or "") for m in messages)
    if override and not is_jinja(override):
        return render_go(override, messages)
    return render_template(template, messages, bos=bos, eos=eos, tools=tools, think=think)


def _pool_normalize(vector: Any) -> list[float]:
    """A sentence vector: mean of per-token vectors (models without pooling), L2-normalized."""
    if vector and isinstance(vector[0], list):
        dims = len(vector[0])
        vector = [sum(tok[i] for tok in vector) / len(vector) for i in range(dims)]
    values = [float(x) for x in vector]
    norm = sum(x * x for x in values) ** 0.5
    return [x / norm for x in values] if norm > 0 else values


def default_threads() -> int:
    """Physical cores: llama.cpp's decode does not gain from hyper-threads."""
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
    except Exception:
        n = None
    return max(1, int(n or os.cpu_count() or 1))


def json_grammar(fmt: Any) -> str | None:
    """GBNF text for Ollama's ``format``: "json" or a JSON schema object."""
    if not fmt:
        return None
    from llama_cpp.llama_grammar import JSON_GBNF

    if fmt == "json":
        return str(JSON_GBNF)
    if isinstance(fmt, dict):
        from llama_cpp.llama_grammar import json_schema_to_gbnf

        try:
            gbnf = json_schema_to_gbnf(json.dumps(fmt))
        except Exception as exc:
            raise InvalidInput(f"unsupported JSON schema: {exc}") from None
        # The converter's string characters admit raw control characters, which JSON
        # forbids; use the same character class as its plain JSON grammar.
        return str(gbnf.replace('char ::= [^"\\\\]', 'char ::= [^"\\\\\\x7F\\x00-\\x1F]'))
    raise InvalidInput("format must be \"json\" or a JSON schema object")


#: ggml type ids for the KV cache.
_GGML_TYPES = {"f16": 1, "bf16": 30, "q8_0": 8, "q4_0": 2}


def kv_types(name: str, gpu: bool = False) -> tuple[int, int]:
    """(key type, value type) for a kv_cache_type setting.

    "auto" on the CPU keeps keys in f16 and values in bf16. With key and value types that
    differ, llama.cpp's CPU flash attention computes every row of a batch the same way,
    whatever the batch's size or the sequence's length (the tiled and split-KV kernels
    need both in f16), so a prompt gives bit-identical results evaluated at once, in
    chunks, continued from a cache, token by token or verified speculatively.

    "auto" with layers on a GPU is f16 for both: CUDA's flash attention has kernels for
    equal types only, and converts a mixed f16/bf16 cache on every step (slow; measured
    on an H100).
    """
    if name in ("auto", ""):
        if gpu:
            return _GGML_TYPES["f16"], _GGML_TYPES["f16"]
        return _GGML_TYPES["f16"], _GGML_TYPES["bf16"]
    if name not in _GGML_TYPES:
        raise InvalidInput(f"unknown kv_cache_type {name!r} (auto, f16, bf16, q8_0, q4_0)")
    return _GGML_TYPES[name], _GGML_TYPES[name]


class LlamaCppBackend:
    """One loaded GGUF model: a slot scheduler for generation, or an embedder."""

    formats = ("gguf",)

    def __init__(self) -> None:
        self.model: Any = None  # llama_cpp._internals.LlamaModel
        self.llm: Any = None  # llama_cpp.Llama, for embedding models only
        self.ctx: Any = None
        self.sched: Any = None
        self.template: str | None = None
        self.n_ctx = 0  # per slot
        self._gpu = False
        self._adapters: list[Any] = []
        self.projector: Any = None  # vision.Projector when the model has a projector
        self.draft_name: str | None = None
        self.default_draft = "lookup"
        self.bos_text = ""
        self.eos_text = ""
        self.last_tokens = 0  # tokens in the last embed call

    # -- loading -------------------------------------------------------------------------------

    def load(self, path: str, options: dict[str, Any]) -> dict[str, Any]:
        llama_cpp = require("llama_cpp", "llama", "Running GGUF models")
        from llmtui.backends.ggml_devices import (
            add_rpc_servers,
            has_gpu,
            parse_endpoints,
            placement,
        )
        from llmtui.backends.llama_native import install_log, log_mark

        install_log(verbose=bool(os.environ.get("LLMTUI_DEBUG")))
        try:
            rpc = parse_endpoints(str(options.get("rpc_servers") or ""))
        except ValueError as exc:
            raise ConfigError(f"rpc_servers: {exc}") from None
        if rpc:
            # Registered before the model loads: llama.cpp offloads layers to them first.
            # A server lost later aborts this worker (llama.cpp's way); skip its gdb trace.
            os.environ.setdefault("GGML_NO_BACKTRACE", "1")
            add_rpc_servers(rpc)
        # Not llama_supports_gpu_offload(): it is also true for a CPU build with RPC.
        supports_gpu = has_gpu()
        gpu_layers = int(options.get("num_gpu", -1))
        if not supports_gpu and not rpc:
            gpu_layers = 0
        self._gpu = supports_gpu and gpu_layers != 0
        threads = int(options.get("num_thread") or 0) or default_threads()
        n_ctx = int(options.get("num_ctx") or 0)
        embedding = bool(options.get("embedding", False))
        mark = log_mark()
        try:
            if embedding:
                info = self._load_embedder(llama_cpp, path, n_ctx, threads, gpu_layers)
            else:
                slots = max(1, int(options.get("num_parallel") or 1))
                info = self._load_generator(llama_cpp, path, n_ctx, threads, gpu_layers,
                                            slots, options)
        except ValueError as exc:
            raise self._load_error(path, mark, exc) from None
        self.bos_text = self._token_text(self.model.token_bos())
        self.eos_text = self._token_text(self.model.token_eos())
        return {
            **info,
            "n_ctx": self.n_ctx,
            "n_ctx_train": int(self.model.n_ctx_train()),
            "gpu_offload": supports_gpu and gpu_layers != 0,
            "gpu_layers": gpu_layers,
            "chat_template": self.template is not None,
            "embedding": embedding,
            "threads": threads,
            "devices": placement(self._block_count(), gpu_layers),
        }

    def _block_count(self) -> int:
        md = self.model.metadata()
        arch = md.get("general.architecture", "")
        if md.get(f"{arch}.block_count"):
            return int(md[f"{arch}.block_count"])
        import llama_cpp

        return int(llama_cpp.llama_model_n_layer(self.model.model))

    @staticmethod
    def _load_error(path: str, mark: int, exc: BaseException) -> BadModelFile:
        """llama.cpp's own reason (from its log) rather than the wrapper's generic one."""
        from llmtui.backends.llama_native import recent_errors

        reasons = recent_errors(mark)
        why = "; ".join(reasons) if reasons else str(exc)
        # (the path is a blob's digest name: the engine says which model it is)
        return BadModelFile(f"llama.cpp could not load the model file: {why}")

    def _load_embedder(self, llama_cpp: Any, path: str, n_ctx: int, threads: int,
                       gpu_layers: int) -> dict[str, Any]:
        self.llm = llama_cpp.Llama(
            model_path=path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
            n_gpu_layers=gpu_layers, n_batch=min(512, n_ctx or 512), embedding=True,
            verbose=False)
        self.model = self.llm._model
        self.n_ctx = int(self.llm.n_ctx())
        self.template = (self.llm.metadata or {}).get("tokenizer.chat_template") or None
        return {"slots": 1}

    def _load_generator(self, L: Any, path: str, n_ctx: int, threads: int, gpu_layers: int,
                        slots: int, options: dict[str, Any]) -> dict[str, Any]:
        from llama_cpp._internals import LlamaModel

        from llmtui.backends.slots import Scheduler

        mp = L.llama_model_default_params()
        mp.n_gpu_layers = gpu_layers
        if not os.path.exists(path):
            raise ValueError(f"model file not found: {path}")
        self.model = LlamaModel(path_model=path, params=mp, verbose=False)
        per_slot = n_ctx or int(self.model.n_ctx_train())
        n_batch = 512
        cp = L.llama_context_default_params()
        cp.n_ctx = per_slot * slots
        cp.n_batch = n_batch
        cp.n_ubatch = n_batch
        cp.n_seq_max = slots
        cp.n_threads = threads
        cp.n_threads_batch = threads
        # One KV stream per slot: a sequence's numbers never depend on its neighbours.
        cp.kv_unified = False
        cp.no_perf = True
        flash = str(options.get("flash_attention", "auto")).lower()
        cp.flash_attn_type = {"on": 1, "true": 1, "off": 0, "false": 0}.get(flash, -1)
        # A GPU of this build, not llama_supports_gpu_offload(): that is true for a CPU
        # build with RPC too, whose remote CPU layers want the CPU's cache types (the same
        # numbers as a local run).
        cp.type_k, cp.type_v = kv_types(str(options.get("kv_cache_type") or "auto"),
                                        self._gpu)
        ctx = L.llama_init_from_model(self.model.model, cp)
        if not ctx:
            raise ValueError("failed to create a llama.cpp context (out of memory?)")
        self.ctx = ctx
        self.n_ctx = int(L.llama_n_ctx_seq(ctx))
        self._apply_adapters(L, list(options.get("adapters") or []))
        self.template = self.model.metadata().get("tokenizer.chat_template") or None
        disk = None
        if int(options.get("kv_cache_bytes") or 0) > 0 and options.get("digest"):
            from llmtui.backends.kvcache import DiskCache

            root = Path(str(options["kv_cache_dir"]))
            key = str(options["digest"])
            if options.get("adapters"):  # the same base with an adapter is another model
                import hashlib

                names = "".join(os.path.basename(str(a["path"] if isinstance(a, dict) else a))
                                for a in options["adapters"])
                key = hashlib.sha256((key + names).encode()).hexdigest()
            # The state's layout depends on llama.cpp's version and on flash attention
            # (V is stored transposed without it): both are part of the key.
            version = f"{L.__version__}/fa={cp.flash_attn_type}/kv={cp.type_k},{cp.type_v}"
            disk = DiskCache(root / key, key, version,
                             int(options["kv_cache_bytes"]), root=root)
        draft = None
        self.draft_name = None
        self.default_draft = str(options.get("draft") or "lookup")
        if options.get("draft_model"):
            draft = self._load_draft(L, str(options["draft_model"]), cp, slots, n_batch)
            self.draft_name = str(options.get("draft_name") or "")
        if options.get("mmproj"):
            from llmtui.backends.vision import Projector

            self.projector = Projector(str(options["mmproj"]), self.model, threads, self._gpu)
        self.sched = Scheduler(self.model, ctx, slots, self.n_ctx, n_batch, disk=disk,
                               threads=threads, draft=draft, projector=self.projector)
        info: dict[str, Any] = {"slots": slots, "n_ctx_total": int(L.llama_n_ctx(ctx))}
        if self.projector is not None:
            info["vision"] = True
        if self.draft_name:
            info["draft_model"] = self.draft_name
        return info

    def _apply_adapters(self, L: Any, adapters: list[Any]) -> None:
        """LoRA adapters (GGUF, general.type "adapter") applied over the base weights, as
        Ollama's ADAPTER does; they stay loaded with the model."""
        from llmtui.backends.llama_native import log_mark, recent_errors

        if not adapters:
            return
        loaded, scales = [], []
        for item in adapters:
            path = str(item["path"] if isinstance(item, dict) else item)
            scale = float(item.get("scale", 1.0) if isinstance(item, dict) else 1.0)
            mark = log_mark()
            ptr = L.llama_adapter_lora_init(self.model.model, path.encode())
            if not ptr:
                why = "; ".join(recent_errors(mark)) or "llama.cpp refused it"
                raise BadModelFile(f"the LoRA adapter {os.path.basename(path)} could not be "
                                   f"loaded: {why}")
            loaded.append(ptr)
            scales.append(scale)
        self._adapters = loaded  # freed with the model
        arr = (L.llama_adapter_lora_p_ctypes * len(loaded))(*loaded)
        fl = (ctypes.c_float * len(scales))(*scales)
        if int(L.llama_set_adapters_lora(self.ctx, arr, len(loaded), fl)) != 0:
            raise BadModelFile("the LoRA adapters could not be applied to this model")

    def _load_draft(self, L: Any, path: str, cp: Any, slots: int, n_batch: int) -> Any:
        """A small model with the same vocabulary that guesses tokens for this one."""
        from llama_cpp._internals import LlamaModel

        from llmtui.backends.drafts import DraftModel

        mp = L.llama_model_default_params()
        mp.n_gpu_layers = 0 if not self._gpu else -1
        try:
            model = LlamaModel(path_model=path, params=mp, verbose=False)
        except ValueError as exc:
            raise BadModelFile(f"the draft model could not be loaded: {exc}") from None
        ctx = L.llama_init_from_model(model.model, cp)
        if not ctx:
            model.close()
            raise BadModelFile("the draft model's context could not be created")
        try:
            return DraftModel(L, model, ctx, self.model.vocab, slots, n_batch)
        except BaseException:
            L.llama_free(ctx)
            model.close()
            raise

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        try:
            return bytes(self.model.detokenize([token], special=True)).decode("utf-8", "replace")
        except Exception:
            return ""

    def close(self) -> None:
        if self.sched is not None:
            self.sched.close()
            self.sched = None
        if self.projector is not None:
            self.projector.close()
            self.projector = None
        if self.llm is not None:
            self.llm.close()
            self.llm = None
        elif self.ctx is not None:
            import llama_cpp

            llama_cpp.llama_free(self.ctx)
            self.ctx = None
            if self.model is not None:
                self.model.close()
        self.model = None

    # -- requests ------------------------------------------------------------------------------

    def submit(self, op: str, msg: dict[str, Any], reply: Reply,
               cancelled: threading.Event) -> bool:
        """Take a request into the scheduler (generation) or answer it now (tokenize)."""
        if self.sched is None:
            return False  # an embedder: the worker's serial path
        if op in ("generate", "chat"):
            self.sched.submit(self._job(op, msg["request"], reply, cancelled))
            return True
        if op == "tokenize":
            reply.done(tokens=self.tokenize(str(msg.get("text") or "")))
            return True
        if op == "perplexity":
            self.sched.submit(self._score_job(msg, reply, cancelled))
            return True
        if op == "embed":
            raise InvalidInput("this model is loaded for generation, not embeddings")
        return False

    def _job(self, op: str, request: dict[str, Any], reply: Reply,
             cancelled: threading.Event) -> Any:
        from llmtui.backends.llama_native import Sampler, SamplerSettings, TextStream
        from llmtui.backends.slots import Job

        stats = GenStats()
        tokens, media = self._prompt(op, request, stats)
        opts = request.get("options", {})
        room = self.n_ctx - len(tokens)
        wanted = int(opts.get("num_predict", -1) or -1)
        max_tokens = min(wanted, room) if wanted > 0 else room
        settings = SamplerSettings.from_options(opts)
        try:
            sampler = Sampler(self.model, settings, json_grammar(request.get("format")),
                              [t for t in tokens[-64:] if t >= 0])
        except BaseException:
            if media is not None:
                media.free()
            raise
        logprobs = -1
        if request.get("logprobs"):
            logprobs = max(0, min(20, int(request.get("top_logprobs") or 0)))
        job = Job(reply=reply, cancelled=cancelled, prompt=tokens, sampler=sampler,
                  max_tokens=max_tokens, length_is_limit=wanted > 0,
                  stream=TextStream(stops=list(opts.get("stop") or [])), logprobs=logprobs,
                  stats=stats, media=media)
        self._plan_drafts(job, str(opts.get("draft") or self.default_draft))
        if media is not None and job.draft == "model":
            # a draft model cannot see the images: guess from the text instead
            from llmtui.backends.drafts import Adaptive, Lookup

            job.draft, job.lookup, job.adapt = "lookup", Lookup(list(tokens)), Adaptive(k=8)
        return job

    def _plan_drafts(self, job: Any, draft: str) -> None:
        """Speculative decoding for a request: "lookup" (guesses copied from the prompt
        and the reply), "none", or the name of the draft model this model was loaded with."""
        from llmtui.backends.drafts import Adaptive, Lookup
        from llmtui.models.names import ModelName

        if draft in ("none", "off", ""):
            return
        if draft == "lookup":
            job.draft, job.lookup, job.adapt = "lookup", Lookup(list(job.prompt)), Adaptive(k=8)
            return
        if self.draft_name and str(ModelName.parse(draft)) == self.draft_name:
            job.draft, job.adapt = "model", Adaptive(k=4)
            return
        raise InvalidInput(f"draft model '{draft}' is not loaded with this model",
                           hint="name it in the request's options (the daemon loads it), "
                                "or use draft lookup / none")

    def _score_job(self, msg: dict[str, Any], reply: Reply, cancelled: threading.Event) -> Any:
        from llmtui.backends.slots import Job

        text = str(msg.get("text") or "")
        tokens = self.tokenize(text)
        if len(tokens) < 2:
            raise InvalidInput("the text is too short to score (it needs at least 2 tokens)")
        window = int(msg.get("ctx") or 0) or min(512, self.n_ctx)
        if window > self.n_ctx:
            raise ContextOverflow(f"a window of {window} tokens does not fit the context "
                                  f"({self.n_ctx})", hint="use a smaller --ctx")
        window = max(2, window)
        stride = int(msg.get("stride") or 0) or max(1, window // 2)
        stride = max(1, min(stride, window))
        return Job(reply=reply, cancelled=cancelled, prompt=tokens, kind="score",
                   window=window, stride=stride)

    # -- prompts -------------------------------------------------------------------------------

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        add_bos = not (self.bos_text and text.startswith(self.bos_text))
        return list(self.model.tokenize(text.encode("utf-8"), add_bos, special))

    def _render(self, messages: list[dict[str, Any]], tools: list[Any] | None,
                override: str | None = None, think: bool | str | None = None) -> str:
        return render_prompt(self.template, messages, tools, override, bos=self.bos_text,
                             eos=self.eos_text, think=think)

    def _prompt(self, op: str, request: dict[str, Any], stats: GenStats) -> tuple[list[int], Any]:
        """The prompt's tokens, and its images (None for text alone)."""
        if op == "chat":
            messages = [self._message(m) for m in request.get("messages", [])]
            if any(m.get("images") for m in messages):
                return self._vision_prompt(messages, request)
            return self._fit(messages, request, stats), None
        if request.get("images"):
            images = list(request["images"])
            if request.get("raw") or (self.template is None and not request.get("template")):
                return self._vision_tokens(str(request.get("prompt") or ""), images, request)
            messages = []
            if request.get("system"):
                messages.append({"role": "system", "content": request["system"]})
            messages.append({"role": "user", "content": str(request.get("prompt") or ""),
                             "images": images})
            return self._vision_prompt(messages, request)
        return self._prompt_tokens(request, stats), None

    def _vision_prompt(self, messages: list[dict[str, Any]],
                       request: dict[str, Any]) -> tuple[list[int], Any]:
        from llmtui.backends.vision import with_markers

        if self.projector is None:
            raise InvalidInput("this model cannot read images (it is not a vision model)")
        marked, images = with_markers(messages, self.projector.marker)
        text = self._render(marked, request.get("tools"), request.get("template") or None,
                            request.get("think"))
        return self._vision_tokens(text, images, request, rendered=True)

    def _vision_tokens(self, text: str, images: list[dict[str, Any]], request: dict[str, Any],
                       rendered: bool = False) -> tuple[list[int], Any]:
        if self.projector is None:
            raise InvalidInput("this model cannot read images (it is not a vision model)")
        if not rendered:
            text = "".join(self.projector.marker + "\n" for _ in images) + text
        tokens, media = self.projector.tokenize(text, images)
        reserve = self._reserve(request)
        if len(tokens) > self.n_ctx - reserve:
            media.free()
            raise ContextOverflow(
                f"the prompt with its images is {len(tokens)} tokens but the context holds "
                f"{self.n_ctx}", hint="use fewer or smaller images, or raise num_ctx / --ctx")
        return tokens, media

    def _prompt_tokens(self, request: dict[str, Any], stats: GenStats) -> list[int]:
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
            n_vocab = int(self.model.n_vocab())
            if any(t < 0 or t >= n_vocab for t in context):
                raise InvalidInput("'context' holds token ids this model does not have")
            if self.bos_text and tokens and tokens[0] == self.model.token_bos():
                tokens = tokens[1:]  # the earlier context already starts with BOS
            tokens = context + tokens
            if len(tokens) >= self.n_ctx:
                raise ContextOverflow(
                    f"'context' plus the prompt is {len(tokens)} tokens but the context "
                    f"holds {self.n_ctx}", hint="start a new conversation (drop 'context')")
        if not tokens:
            raise InvalidInput("the prompt is empty after tokenization")
        return tokens

    def _fit(self, messages: list[dict[str, Any]], request: dict[str, Any],
             stats: GenStats) -> list[int]:
        """Tokens of the rendered prompt; over the context it errors, or truncates if asked."""
        tools = request.get("tools")
        override = request.get("template") or None
        think = request.get("think")
        tokens = self.tokenize(self._render(messages, tools, override, think))
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
        cut = bytes(self.model.detokenize(ids[-keep:])).decode("utf-8", "ignore")
        messages = [dict(m, content=cut) if m is target else m for m in messages]
        tokens = self.tokenize(self._render(messages, tools, override, think))
        stats.truncated_tokens = len(ids) - keep
        if len(tokens) > budget:
            raise ContextOverflow("the prompt does not fit the context even after truncation")
        return tokens

    def _reserve(self, request: dict[str, Any]) -> int:
        """Tokens kept free for the reply: max_tokens when set, else at least one."""
        n = int(request.get("options", {}).get("num_predict", -1) or -1)
        return min(n, self.n_ctx // 2) if n > 0 else 1

    def _fim(self, prefix: str, suffix: str) -> list[int]:
        """Fill-in-the-middle: <PRE> prefix <SUF> suffix <MID>, with the model's own tokens."""
        import llama_cpp

        vocab = self.model.vocab
        pre, suf, mid = (llama_cpp.llama_vocab_fim_pre(vocab), llama_cpp.llama_vocab_fim_suf(vocab),
                         llama_cpp.llama_vocab_fim_mid(vocab))
        if min(pre, suf, mid) < 0:
            raise InvalidInput("this model does not support insert ('suffix'): it has no "
                               "fill-in-the-middle tokens")
        body = self.model.tokenize(prefix.encode("utf-8"), False, False)
        tail = self.model.tokenize(suffix.encode("utf-8"), False, False)
        head = [self.model.token_bos()] if self.model.add_bos_token() else []
        return [*head, pre, *body, suf, *tail, mid]

    @staticmethod
    def _message(m: dict[str, Any]) -> dict[str, Any]:
        out = {"role": m.get("role", "user"), "content": m.get("content") or ""}
        if m.get("tool_calls"):
            out["tool_calls"] = m["tool_calls"]
        if m.get("images"):
            out["images"] = m["images"]
        if m.get("thinking"):
            # An earlier reply's reasoning, under the names templates read: Ollama's
            # ``thinking`` and Hugging Face's ``reasoning_content`` (Qwen3, DeepSeek-R1).
            out["thinking"] = out["reasoning_content"] = m["thinking"]
        for key in ("tool_call_id", "name", "tool_name"):  # a tool result's call
            if m.get(key):
                out[key] = m[key]
        return out

    # -- embeddings ----------------------------------------------------------------------------

    def embed(self, texts: list[str], options: dict[str, Any]) -> list[list[float]]:
        if self.llm is None:
            raise InvalidInput("this model is loaded for generation, not embeddings")
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
