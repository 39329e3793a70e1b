"""EngineManager: loads models into workers on first use, keeps them warm, evicts by LRU
under a memory budget, queues requests per model, and survives worker crashes."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from llmtui.config import Settings, parse_duration, parse_size, stream_interval
from llmtui.engine.process import WorkerProcess, error_from
from llmtui.errors import BusyError, GenerationError, InvalidInput, LlmtuiError
from llmtui.models.names import ModelName
from llmtui.models.store import Manifest, Store

#: Speculative decoding settings that need no second model.
DRAFT_MODES = ("lookup", "none", "off")

#: Options that change how a model is loaded; a request that changes one reloads it.
LOAD_OPTIONS = ("num_ctx", "num_gpu", "num_thread", "num_parallel")


@dataclass
class Runner:
    """One loaded model: its worker and bookkeeping."""

    key: str
    manifest: Manifest
    process: WorkerProcess
    load_options: dict[str, Any]
    memory: int
    load_seconds: float
    slots: asyncio.Semaphore
    last_used: float = field(default_factory=time.monotonic)
    expires_at: float = math.inf  # monotonic; inf: kept until evicted
    expires_wall: float | None = None
    active: int = 0
    waiting: int = 0
    fresh: bool = True  # the next request reports the load time

    @property
    def busy(self) -> bool:
        return self.active > 0 or self.waiting > 0


@dataclass
class Metrics:
    """Counters for /metrics; fixed-size, so a long-lived daemon does not grow."""

    TTFT_BOUNDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    completion_seconds: float = 0.0
    worker_restarts: int = 0
    loads: int = 0
    draft_tokens: int = 0
    draft_accepted: int = 0
    cached_tokens: int = 0
    ttft_buckets: list[int] = field(default_factory=lambda: [0] * len(Metrics.TTFT_BOUNDS))
    ttft_sum: float = 0.0
    ttft_count: int = 0
    http: dict[tuple[str, int], int] = field(default_factory=dict)

    def observe_ttft(self, seconds: float) -> None:
        self.ttft_sum += seconds
        self.ttft_count += 1
        for i, bound in enumerate(self.TTFT_BOUNDS):
            if seconds <= bound:
                self.ttft_buckets[i] += 1
                break


def estimate_memory(manifest: Manifest, path: Any, num_ctx: int, slots: int = 1) -> int:
    """Weights plus the f16 KV cache of every slot's context plus a compute buffer."""
    weights = manifest.size
    if manifest.format != "gguf":
        return int(weights * 1.3)
    try:
        from llmtui.models.gguf_info import read_info

        info = read_info(path)
        md = info.metadata
        arch = info.architecture
        layers = int(md.get(f"{arch}.block_count") or 0)
        embd = int(md.get(f"{arch}.embedding_length") or 0)
        heads = int(md.get(f"{arch}.attention.head_count") or 1) or 1
        kv_heads = int(md.get(f"{arch}.attention.head_count_kv") or heads) or heads
        ctx = num_ctx or int(info.context_length or 4096)
        kv = 2 * layers * ctx * (embd * kv_heads // heads) * 2 * max(1, slots)
    except LlmtuiError:
        kv = 0
    return int(weights + kv + 96 * 1024 * 1024)


class EngineManager:
    """The daemon's engine. All methods run on one asyncio loop."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store or settings.store()
        cfg = settings.config
        self.default_keep_alive = parse_duration(
            os.environ.get("LLMTUI_KEEP_ALIVE") or cfg.get("keep_alive"))
        self.max_loaded = int(cfg.get("max_loaded_models"))
        self.max_queue = int(cfg.get("max_queue"))
        self.default_ctx = int(cfg.get("context_length"))
        self.default_threads = int(cfg.get("threads"))
        self.default_gpu_layers = int(cfg.get("gpu_layers"))
        env_parallel = os.environ.get("LLMTUI_NUM_PARALLEL") or \
            os.environ.get("OLLAMA_NUM_PARALLEL")
        try:
            self.default_parallel = max(1, min(64, int(env_parallel or 0))) if env_parallel \
                else int(cfg.get("num_parallel"))
        except ValueError:
            self.default_parallel = int(cfg.get("num_parallel"))
        self.flash_attention = str(os.environ.get("LLMTUI_FLASH_ATTENTION") or
                                   cfg.get("flash_attention"))
        self.default_draft = str(cfg.get("draft"))
        self.stream_interval = stream_interval(os.environ.get("LLMTUI_STREAM_INTERVAL") or
                                               cfg.get("stream_interval"))
        self.kv_cache_type = str(os.environ.get("LLMTUI_KV_CACHE_TYPE") or
                                 os.environ.get("OLLAMA_KV_CACHE_TYPE") or
                                 cfg.get("kv_cache_type")).lower()
        self.prompt_cache_bytes = parse_size(cfg.get("prompt_cache_size"))
        # llama.cpp RPC servers GGUF models offload to (`llm serve --rpc` sets the variable)
        self.rpc_servers = str(os.environ.get("LLMTUI_RPC_SERVERS") or
                               cfg.get("rpc_servers") or "")
        self.prompt_cache_dir = settings.paths.cache_dir / "kvcache"
        self.budget = self._budget(str(cfg.get("memory_budget")))
        self.runners: dict[str, Runner] = {}
        self._load_locks: dict[str, asyncio.Lock] = {}
        self._evict_lock = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None
        self.metrics = Metrics()
        self._tasks: set[asyncio.Future[Any]] = set()
        self.last_activity = time.monotonic()

    @staticmethod
    def _budget(text: str) -> int:
        from llmtui.models.catalog import total_ram

        if text.endswith("%"):
            return int(total_ram() * float(text[:-1]) / 100)
        return parse_size(text)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_loop(), name="engine-reaper")

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        await asyncio.gather(*(self.unload(k) for k in list(self.runners)),
                             return_exceptions=True)

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for key, runner in list(self.runners.items()):
                if not runner.busy and now >= runner.expires_at:
                    await self.unload(key)

    @property
    def busy(self) -> bool:
        return any(r.busy for r in self.runners.values())

    # -- loading -------------------------------------------------------------------------------

    def _load_options(self, manifest: Manifest, options: dict[str, Any],
                      embedding: bool) -> dict[str, Any]:
        if embedding and "embedding" in manifest.capabilities:
            # An embedding model runs with the context it was trained for.
            ctx = int(options.get("num_ctx") or 0)
        else:
            ctx = int(options.get("num_ctx") or self.default_ctx or 0)
        parallel = 1 if embedding else int(
            options.get("num_parallel") or manifest.parameters_override.get("num_parallel")
            or self.default_parallel)
        return {
            "num_ctx": ctx,
            "num_gpu": int(options.get("num_gpu", self.default_gpu_layers)),
            "num_thread": int(options.get("num_thread") or self.default_threads or 0),
            "num_parallel": parallel,
            "flash_attention": self.flash_attention,
            "kv_cache_type": self.kv_cache_type,
            "embedding": embedding,
            "digest": manifest.digest,
            "kv_cache_dir": str(self.prompt_cache_dir),
            "kv_cache_bytes": 0 if embedding else self.prompt_cache_bytes,
            "rpc_servers": self.rpc_servers,
            **({} if embedding else self._draft_options(manifest, options)),
            **({"mmproj": str(mm)} if not embedding and (mm := self.store.projector_path(manifest))
               else {}),  # a vision model's projector (issue 19)
            # LoRA adapters (Ollama's ADAPTER, `llm finetune`): applied at load
            **({"adapters": [{"path": str(self.store.layer_path(a)), "scale": 1.0}
                             for a in manifest.adapters]} if manifest.adapters else {}),
        }

    def _draft_options(self, manifest: Manifest, options: dict[str, Any]) -> dict[str, Any]:
        """Speculative decoding: the default for requests that set none (the model's
        parameters, else the config), and the draft model to load beside this one when
        the request or that default names one."""
        default = str(manifest.parameters_override.get("draft") or self.default_draft)
        asked = str(options.get("draft") or "")
        out: dict[str, Any] = {"draft": default}
        name_text = asked if asked and asked not in DRAFT_MODES else \
            (default if default not in DRAFT_MODES else "")
        if not name_text:
            return out
        name = ModelName.parse(name_text)
        draft_manifest, path = self.store.resolve_file(name)
        if draft_manifest.format != "gguf":
            raise InvalidInput(f"draft model '{name}' is not a GGUF model")
        if default == name_text:
            out["draft"] = str(name)
        return {**out, "draft_model": str(path), "draft_name": str(name)}

    async def _runner(self, model: str, options: dict[str, Any], *,
                      embedding: bool = False) -> Runner:
        """The loaded runner for a model, loading (or reloading) it when needed."""
        name = ModelName.parse(model)
        manifest, path = self.store.resolve_file(name)
        model_embeds = "embedding" in manifest.capabilities
        use_embedding = embedding or model_embeds
        key = str(name) + ("#embed" if use_embedding and not model_embeds else "")
        wanted = self._load_options(manifest, options, use_embedding)
        lock = self._load_locks.setdefault(key, asyncio.Lock())
        async with lock:
            runner = self.runners.get(key)
            if runner is not None and not runner.process.dead:
                same_file = runner.manifest.digest == manifest.digest
                changed = any(k in options and wanted[k] != runner.load_options[k]
                              for k in LOAD_OPTIONS)
                if wanted.get("draft_model") and \
                        wanted["draft_model"] != runner.load_options.get("draft_model"):
                    changed = True  # a request names a draft model not loaded yet
                if same_file and not changed:
                    return runner
                while runner.busy:  # let in-flight requests finish before reloading
                    await asyncio.sleep(0.05)
                await self.unload(key)
            need = estimate_memory(manifest, path, wanted["num_ctx"], wanted["num_parallel"])
            while need > self.budget and wanted["num_parallel"] > 1:
                # Fewer slots before refusing: one request at a time still works.
                wanted["num_parallel"] = max(1, wanted["num_parallel"] // 2)
                need = estimate_memory(manifest, path, wanted["num_ctx"],
                                       wanted["num_parallel"])
            if wanted["rpc_servers"] and manifest.format == "gguf":
                # Layers live on the RPC servers; this box keeps the input embeddings and
                # compute buffers. A rough share, so a model bigger than the box can load.
                need //= len(wanted["rpc_servers"].split(",")) + 1
            await self._make_room(need, str(name))
            process = WorkerProcess(str(name), on_exit=self._on_worker_exit)
            info = await process.start(manifest.format, str(path), wanted)
            self.metrics.loads += 1
            runner = Runner(key=key, manifest=manifest, process=process,
                            load_options=wanted, memory=need,
                            load_seconds=float(info.get("load_seconds", 0.0)),
                            slots=asyncio.Semaphore(int(info.get("slots", 1))))
            self.runners[key] = runner
            return runner

    async def _make_room(self, need: int, label: str) -> None:
        """Evict idle models, least recently used first, until the new one fits."""
        if need > self.budget:
            raise InvalidInput(
                f"'{label}' needs about {need / 1e9:.1f} GB but the memory budget is "
                f"{self.budget / 1e9:.1f} GB",
                hint="use a smaller model or context, or raise memory_budget "
                     "(llm config set memory_budget 90%)")
        async with self._evict_lock:
            while True:
                used = sum(r.memory for r in self.runners.values())
                if used + need <= self.budget and len(self.runners) < self.max_loaded:
                    return
                idle = sorted((r for r in self.runners.values() if not r.busy),
                              key=lambda r: r.last_used)
                if not idle:
                    raise BusyError(
                        f"no room to load '{label}': every loaded model is busy",
                        hint="try again shortly, or raise max_loaded_models / memory_budget")
                await self.unload(idle[0].key)

    def _on_worker_exit(self, process: WorkerProcess) -> None:
        for key, runner in list(self.runners.items()):
            if runner.process is process:
                del self.runners[key]
                if not process.stopping:
                    self.metrics.worker_restarts += 1

    async def unload(self, key: str) -> bool:
        runner = self.runners.pop(key, None)
        if runner is None:
            return False
        await runner.process.shutdown()
        return True

    async def unload_model(self, model: str) -> bool:
        name = str(ModelName.parse(model))
        keys = [k for k in self.runners if k == name or k == f"{name}#embed"]
        done = [await self.unload(k) for k in keys]
        return any(done)

    async def load(self, model: str, options: dict[str, Any] | None = None,
                   keep_alive: Any = None) -> Runner:
        runner = await self._runner(model, options or {})
        self._touch(runner, keep_alive)
        return runner

    def _touch(self, runner: Runner, keep_alive: Any) -> None:
        seconds = self.default_keep_alive if keep_alive is None else parse_keep_alive(keep_alive)
        runner.last_used = time.monotonic()
        self.last_activity = runner.last_used
        if seconds < 0:
            runner.expires_at, runner.expires_wall = math.inf, None
        else:
            runner.expires_at = runner.last_used + seconds
            runner.expires_wall = time.time() + seconds

    # -- requests ------------------------------------------------------------------------------

    async def stream(self, kind: str, model: str, request: dict[str, Any],
                     keep_alive: Any = None) -> AsyncGenerator[dict[str, Any], None]:
        """Run a generate or chat request; yields {"text"} chunks then a final {"done"}.

        Closing the iterator early (a client went away) cancels the generation in the
        worker within a token.
        """
        if kind not in ("generate", "chat"):
            raise InvalidInput(f"unknown request kind {kind!r}")
        if keep_alive is not None:
            parse_keep_alive(keep_alive)  # a bad value fails before any work
        manifest = self.store.get(ModelName.parse(model))
        if tuple(manifest.capabilities) == ("embedding",):
            raise InvalidInput(f"{model} is an embedding model: it makes vectors, not text",
                               hint="use `llm embed` or /api/embed")
        request = with_model_defaults(manifest, kind, request)
        options = request.get("options") or {}
        interval = self.stream_interval
        if options.get("stream_interval") is not None:
            try:
                interval = stream_interval(options["stream_interval"])
            except ValueError as exc:
                raise InvalidInput(f"stream_interval: {exc}") from None
        queued_at = time.perf_counter()
        runner = await self._runner(model, options)
        await self._acquire(runner)
        self.metrics.requests += 1
        load_seconds = runner.load_seconds if runner.fresh else 0.0
        runner.fresh = False
        started = time.perf_counter()
        first = True
        exchange = self._exchange(runner, {"op": kind, "request": request,
                                           "stream_interval": interval}, keep_alive)
        async with contextlib.aclosing(exchange) as replies:
            async for msg in replies:
                if msg.get("type") == "chunk":
                    if first:
                        self.metrics.observe_ttft(time.perf_counter() - started)
                        first = False
                    yield {k: v for k, v in msg.items() if k not in ("type", "id")}
                else:
                    stats = dict(msg.get("stats") or {})
                    stats["load_seconds"] = load_seconds
                    stats["queue_seconds"] = started - queued_at - load_seconds
                    stats["total_seconds"] = time.perf_counter() - queued_at
                    self.metrics.prompt_tokens += int(stats.get("prompt_tokens") or 0)
                    self.metrics.completion_tokens += int(stats.get("completion_tokens") or 0)
                    self.metrics.completion_seconds += float(stats.get("completion_seconds") or 0.0)
                    self.metrics.draft_tokens += int(stats.get("draft_tokens") or 0)
                    self.metrics.draft_accepted += int(stats.get("draft_accepted") or 0)
                    self.metrics.cached_tokens += int(stats.get("cached_tokens") or 0)
                    yield {"done": True, "stats": stats}

    async def run(self, model: str, op: str, payload: dict[str, Any],
                  keep_alive: Any = None) -> AsyncGenerator[dict[str, Any], None]:
        """Run any operation the model's backend offers (``op_<name>`` in the worker):
        yields its chunk frames, then its done frame. Closing early cancels it."""
        if keep_alive is not None:
            parse_keep_alive(keep_alive)
        runner = await self._runner(model, {})
        await self._acquire(runner)
        self.metrics.requests += 1
        async with contextlib.aclosing(
                self._exchange(runner, {**payload, "op": op}, keep_alive)) as replies:
            async for msg in replies:
                yield msg

    async def _exchange(self, runner: Runner, msg: dict[str, Any],
                        keep_alive: Any) -> AsyncGenerator[dict[str, Any], None]:
        """Send one request to an acquired runner; yield its chunks (merged when several
        are waiting: a slow reader gets fewer, larger pieces) and its done frame; raise
        its error. Always releases the slot; leaving early cancels the request."""
        req_id = None
        finished = False
        try:
            req_id, queue = await runner.process.request(msg)
            while True:
                reply = await queue.get()
                kind = reply.get("type")
                if kind == "chunk":
                    while not queue.empty() and _mergeable(reply, queue):
                        reply = _merge(reply, queue.get_nowait())
                    yield reply
                elif kind == "done":
                    finished = True
                    yield reply
                    return
                else:
                    finished = True
                    raise error_from(reply)
        finally:
            # No awaits here: this runs when a client disconnects, inside a cancelled
            # scope; follow-up work goes to background tasks so it cannot be cut short.
            if req_id is not None:
                if not finished:
                    self._spawn(runner.process.cancel(req_id))
                runner.process.release(req_id)
            self._finish(runner, keep_alive)

    async def _acquire(self, runner: Runner) -> None:
        """Wait for a slot in the model's bounded queue; a full queue answers busy."""
        if runner.waiting >= self.max_queue:
            raise BusyError(f"'{runner.manifest.name}' is busy: {runner.waiting} requests are "
                            "waiting", hint="retry later")
        runner.waiting += 1
        try:
            await runner.slots.acquire()
        finally:
            runner.waiting -= 1
        runner.active += 1

    async def _simple(self, runner: Runner, msg: dict[str, Any], keep_alive: Any) -> dict[str, Any]:
        await self._acquire(runner)
        last: dict[str, Any] = {}
        async with contextlib.aclosing(self._exchange(runner, msg, keep_alive)) as replies:
            async for reply in replies:
                last = reply
        return last

    def _finish(self, runner: Runner, keep_alive: Any) -> None:
        runner.active -= 1
        runner.slots.release()
        self._touch(runner, keep_alive)
        if runner.expires_at <= time.monotonic() and not runner.busy:
            self._spawn(self.unload(runner.key))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def embed(self, model: str, inputs: list[str], options: dict[str, Any] | None = None,
                    keep_alive: Any = None, truncate: bool = True) -> dict[str, Any]:
        runner = await self._runner(model, options or {}, embedding=True)
        load_seconds = runner.load_seconds if runner.fresh else 0.0
        runner.fresh = False
        reply = await self._simple(runner, {"op": "embed", "input": inputs,
                                            "options": {"truncate": truncate}}, keep_alive)
        self.metrics.requests += 1
        self.metrics.prompt_tokens += int(reply.get("tokens") or 0)
        return {"embeddings": reply["embeddings"], "load_seconds": load_seconds,
                "tokens": int(reply.get("tokens") or 0), "seconds": reply.get("seconds", 0.0)}

    async def tokenize(self, model: str, text: str, keep_alive: Any = None) -> list[int]:
        runner = await self._runner(model, {})
        reply = await self._simple(runner, {"op": "tokenize", "text": text}, keep_alive)
        return list(reply["tokens"])

    def ps(self) -> list[dict[str, Any]]:
        out = []
        for runner in sorted(self.runners.values(), key=lambda r: r.key):
            info = runner.process.info
            out.append({
                "name": runner.manifest.name, "key": runner.key, "pid": runner.process.pid,
                "digest": runner.manifest.digest, "size": runner.memory,
                "size_vram": runner.memory if info.get("gpu_offload") else 0,
                "gpu_layers": info.get("gpu_layers", 0), "context_length": info.get("n_ctx"),
                "slots": int(info.get("slots", 1)), "context_total": info.get("n_ctx_total"),
                "expires_at": runner.expires_wall, "active": runner.active,
                "waiting": runner.waiting, "manifest": runner.manifest,
                "devices": info.get("devices"),
            })
        return out


_TEXT_FIELDS = ("text", "thinking")


def _mergeable(reply: dict[str, Any], queue: Any) -> bool:
    """Whether the next waiting frame is a plain text chunk that can join this one."""
    nxt = queue._queue[0]  # asyncio.Queue keeps its items in a deque
    keys = {"type", "id", *_TEXT_FIELDS, "logprobs"}
    return bool(nxt.get("type") == "chunk" and set(nxt) <= keys and set(reply) <= keys)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key in _TEXT_FIELDS:
        if key in b:
            out[key] = out.get(key, "") + b[key]
    if "logprobs" in b:
        out["logprobs"] = [*out.get("logprobs", []), *b["logprobs"]]
    return out


def with_model_defaults(manifest: Manifest, kind: str, request: dict[str, Any]) -> dict[str, Any]:
    """Apply a model's own parameters, system prompt and template (set by /api/create)
    under what the request says."""
    if not (manifest.parameters_override or manifest.system or manifest.template):
        return request
    out = dict(request)
    out["options"] = {**manifest.parameters_override, **(request.get("options") or {})}
    if manifest.template and not out.get("template"):
        out["template"] = manifest.template
    if manifest.system:
        if kind == "generate" and not out.get("system"):
            out["system"] = manifest.system
        elif kind == "chat":
            messages = list(out.get("messages") or [])
            if not any(m.get("role") == "system" for m in messages):
                out["messages"] = [{"role": "system", "content": manifest.system}, *messages]
    return out


def parse_keep_alive(value: Any) -> float:
    """Ollama's keep_alive: a duration string or a number of seconds; negative is forever."""
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise InvalidInput(f"invalid keep_alive: {exc}") from None
    if math.isnan(seconds):
        raise InvalidInput("invalid keep_alive")
    return seconds


__all__ = ["EngineManager", "GenerationError", "Runner", "parse_keep_alive"]
