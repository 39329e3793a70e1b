"""Low-level pieces of the native llama.cpp loop: sampler chains in C, incremental
UTF-8-safe detokenization with stop strings, llama.cpp's log, and token log-probabilities.

Everything per token runs in llama.cpp's C code or in a few Python operations; nothing
here walks the vocabulary in Python except log-probabilities, which only a request that
asks for them pays for.
"""

from __future__ import annotations

import codecs
import collections
import ctypes
import threading
from dataclasses import dataclass, field
from typing import Any

from llmtui.errors import InvalidInput

# -- llama.cpp's log -----------------------------------------------------------------------------

#: ggml's log levels (ggml_log_level): 1 debug, 2 info, 3 warn, 4 error, 5 continues the
#: previous line.
LOG_INFO, LOG_WARN, LOG_ERROR, LOG_CONT = 2, 3, 4, 5
_LOG_LEVEL = LOG_INFO
_LOG_COUNT = 0  # lines logged in all (the ring below keeps the last 200)
_LOG_LINES: collections.deque[str] = collections.deque(maxlen=200)
_LOG_LOCK = threading.Lock()
_LOG_CALLBACK: Any = None  # keep the ctypes callback alive for the life of the process
_LOG_PARTIAL: list[str] = []
_VERBOSE = False


def install_log(verbose: bool = False) -> None:
    """Route llama.cpp's log through us: kept in a ring (so load errors can say why) and
    echoed to stderr (the daemon log) only when verbose or for warnings and errors."""
    global _LOG_CALLBACK, _VERBOSE
    import sys

    import llama_cpp

    _VERBOSE = verbose
    if _LOG_CALLBACK is not None:
        return

    def on_log(level: int, text: bytes, _user: Any) -> None:
        global _LOG_LEVEL, _LOG_COUNT
        piece = text.decode("utf-8", "replace") if text else ""
        with _LOG_LOCK:
            if level != LOG_CONT:
                _LOG_LEVEL = level
            _LOG_PARTIAL.append(piece)
            if not piece.endswith("\n"):
                return
            line = "".join(_LOG_PARTIAL).rstrip("\n")
            _LOG_PARTIAL.clear()
            level = _LOG_LEVEL  # a line continued in pieces keeps its first piece's level
            _LOG_LINES.append(f"{level}:{line}")
            _LOG_COUNT += 1
        if _VERBOSE or level in (LOG_WARN, LOG_ERROR):
            print(f"llama.cpp: {line}", file=sys.stderr)

    _LOG_CALLBACK = llama_cpp.llama_log_callback(on_log)
    llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))


def log_callback() -> Any:
    """Our llama.cpp log callback (for libraries that log apart, like mtmd), or None."""
    return _LOG_CALLBACK


def log_mark() -> int:
    with _LOG_LOCK:
        return _LOG_COUNT


def recent_errors(since: int = 0, limit: int = 3) -> list[str]:
    """The last error lines llama.cpp logged since a mark (warnings when there are none),
    without the "failed to load model" lines that only repeat that something failed."""
    with _LOG_LOCK:
        new = max(0, _LOG_COUNT - since)
        lines = list(_LOG_LINES)[-new:] if new else []
    for level in (LOG_ERROR, LOG_WARN):
        picked = [ln.split(":", 1)[1].strip() for ln in lines
                  if ln.startswith(f"{level}:")]
        picked = [p for p in picked if p and not p.endswith("failed to load model")]
        if picked:
            return picked[-limit:]
    return []


# -- sampling ------------------------------------------------------------------------------------


class _TokenArray:
    """A llama_token_data_array over a numpy buffer, for sampling from logits we hold."""

    def __init__(self, n_vocab: int) -> None:
        import llama_cpp
        import numpy as np

        self.np = np
        self.n_vocab = n_vocab
        dtype = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)
        self.data = np.empty(n_vocab, dtype=dtype)
        self.ids = np.arange(n_vocab, dtype=np.intc)
        self.one = np.empty(1, dtype=dtype)
        self.arr = llama_cpp.llama_token_data_array(
            data=self.data.ctypes.data_as(llama_cpp.llama_token_data_p), size=n_vocab,
            selected=-1, sorted=False)
        self.single = llama_cpp.llama_token_data_array(
            data=self.one.ctypes.data_as(llama_cpp.llama_token_data_p), size=1,
            selected=-1, sorted=False)

    def fill(self, logits: Any) -> Any:
        self.data["id"] = self.ids
        self.data["logit"] = logits
        self.data["p"] = 0.0
        self.arr.size = self.n_vocab
        self.arr.selected = -1
        self.arr.sorted = False
        return ctypes.byref(self.arr)

    def selected(self) -> int:
        return int(self.data[self.arr.selected]["id"])

    def check_one(self, token: int, logit: float) -> Any:
        self.one["id"] = token
        self.one["logit"] = logit
        self.one["p"] = 0.0
        self.single.size = 1
        self.single.selected = -1
        self.single.sorted = False
        return ctypes.byref(self.single)


@dataclass
class SamplerSettings:
    """Ollama's sampling options, with the defaults a request gets when it sets none."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = -1
    mirostat: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1

    @classmethod
    def from_options(cls, opts: dict[str, Any]) -> SamplerSettings:
        out = cls()
        for key in cls.__dataclass_fields__:
            value = opts.get(key)
            if value is not None:
                kind = type(getattr(out, key))
                setattr(out, key, kind(value))
        return out


class Sampler:
    """One request's sampler chain, built from llama.cpp's samplers and run in C.

    With a grammar, the chain first samples freely and the grammar only checks the chosen
    token; only when it refuses is the grammar applied to the whole vocabulary (the way
    llama.cpp's own server does it: checking one token is far cheaper than 49k).
    """

    def __init__(self, model: Any, settings: SamplerSettings, grammar: str | None,
                 prompt_tail: list[int]) -> None:
        import llama_cpp as L

        self.L = L
        self.vocab = model.vocab
        self.n_vocab = int(L.llama_vocab_n_tokens(model.vocab))
        s = settings
        params = L.llama_sampler_chain_default_params()
        params.no_perf = True
        self.chain = L.llama_sampler_chain_init(params)
        add = lambda smpl: L.llama_sampler_chain_add(self.chain, smpl)  # noqa: E731
        seed = s.seed if s.seed >= 0 else L.LLAMA_DEFAULT_SEED
        seed &= 0xFFFFFFFF
        if s.repeat_penalty != 1.0 or s.presence_penalty or s.frequency_penalty:
            last_n = self.n_vocab if s.repeat_last_n < 0 else s.repeat_last_n
            add(L.llama_sampler_init_penalties(self.n_vocab, last_n, s.repeat_penalty,
                                               s.frequency_penalty, s.presence_penalty))
        if s.temperature <= 0:
            add(L.llama_sampler_init_greedy())
        elif s.mirostat == 1:
            add(L.llama_sampler_init_temp(s.temperature))
            add(L.llama_sampler_init_mirostat(self.n_vocab, seed, s.mirostat_tau,
                                              s.mirostat_eta, 100))
        elif s.mirostat == 2:
            add(L.llama_sampler_init_temp(s.temperature))
            add(L.llama_sampler_init_mirostat_v2(seed, s.mirostat_tau, s.mirostat_eta))
        else:
            if s.top_k > 0:
                add(L.llama_sampler_init_top_k(s.top_k))
            if 0 < s.typical_p < 1:
                add(L.llama_sampler_init_typical(s.typical_p, 1))
            if 0 < s.top_p < 1:
                add(L.llama_sampler_init_top_p(s.top_p, 1))
            if s.min_p > 0:
                add(L.llama_sampler_init_min_p(s.min_p, 1))
            add(L.llama_sampler_init_temp(s.temperature))
            add(L.llama_sampler_init_dist(seed))
        self.grammar = None
        if grammar:
            self.grammar = L.llama_sampler_init_grammar(self.vocab, grammar.encode("utf-8"),
                                                        b"root")
            if not self.grammar:
                self.close()
                raise InvalidInput("the output format's grammar could not be parsed")
        # The repetition penalty looks back over the prompt too, as llama.cpp's does.
        for tok in prompt_tail[-max(0, s.repeat_last_n if s.repeat_last_n >= 0 else 64):]:
            L.llama_sampler_accept(self.chain, tok)
        self._array: _TokenArray | None = None

    def _arr(self) -> _TokenArray:
        if self._array is None:
            self._array = _TokenArray(self.n_vocab)
        return self._array

    def sample(self, ctx: Any, idx: int, logits: Any = None) -> int:
        """Sample (and accept) the next token from output row ``idx`` of the last decode,
        or from ``logits`` we kept (a prompt whose evaluation was cached)."""
        L = self.L
        if self.grammar is None and logits is None:
            return int(L.llama_sampler_sample(self.chain, ctx, idx))
        if logits is None:
            logits = self.logits_view(ctx, idx)
        arr = self._arr()
        L.llama_sampler_apply(self.chain, arr.fill(logits))
        token = arr.selected()
        if self.grammar is not None:
            L.llama_sampler_apply(self.grammar, arr.check_one(token, float(logits[token])))
            if arr.one["logit"][0] == float("-inf"):
                ref = arr.fill(logits)
                L.llama_sampler_apply(self.grammar, ref)
                L.llama_sampler_apply(self.chain, ref)
                token = arr.selected()
            L.llama_sampler_accept(self.grammar, token)
        L.llama_sampler_accept(self.chain, token)
        return token

    def logits_view(self, ctx: Any, idx: int) -> Any:
        import numpy as np

        ptr = self.L.llama_get_logits_ith(ctx, idx)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def close(self) -> None:
        if getattr(self, "chain", None):
            self.L.llama_sampler_free(self.chain)
            self.chain = None
        if getattr(self, "grammar", None):
            self.L.llama_sampler_free(self.grammar)
            self.grammar = None


def logprob_entry(logits: Any, token: int, top: int, piece: Any) -> dict[str, Any]:
    """Log-probability of the chosen token under the model (log-softmax of the raw logits)
    and the ``top`` most likely alternatives, in the shape both APIs build on."""
    import numpy as np

    x = np.asarray(logits, dtype=np.float64)
    peak = float(x.max())
    log_z = peak + float(np.log(np.exp(x - peak).sum()))

    def one(tok: int) -> dict[str, Any]:
        raw = piece(tok)
        return {"token": raw.decode("utf-8", "replace"), "logprob": float(x[tok]) - log_z,
                "bytes": list(raw)}

    entry = one(token)
    if top > 0:
        best = np.argpartition(-x, min(top, len(x) - 1))[:top]
        best = best[np.argsort(-x[best])]
        entry["top_logprobs"] = [one(int(t)) for t in best]
    return entry


# -- text out ------------------------------------------------------------------------------------


@dataclass
class TextStream:
    """Turns token pieces into text: UTF-8 safe across token boundaries, with stop strings
    held back until they can no longer match (the stop string itself is never sent)."""

    stops: list[str] = field(default_factory=list)
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    held: str = ""
    text: list[str] = field(default_factory=list)
    stopped: bool = False

    def feed(self, piece: bytes) -> str:
        """Text that is now safe to send (may be empty)."""
        new = self.decoder.decode(piece)
        if not self.stops:
            if new:
                self.text.append(new)
            return new
        buf = self.held + new
        for stop in self.stops:
            at = buf.find(stop)
            if at >= 0:
                self.stopped = True
                self.held = ""
                out = buf[:at]
                if out:
                    self.text.append(out)
                return out
        keep = 0
        for stop in self.stops:  # the longest tail of buf that begins a stop string
            for n in range(min(len(stop) - 1, len(buf)), 0, -1):
                if stop.startswith(buf[-n:]):
                    keep = max(keep, n)
                    break
        out, self.held = (buf[:-keep], buf[-keep:]) if keep else (buf, "")
        if out:
            self.text.append(out)
        return out

    def finish(self) -> str:
        """What is left at the end (held text that turned out not to be a stop)."""
        rest = self.held + self.decoder.decode(b"", final=True)
        self.held = ""
        if self.stopped:
            return ""
        if rest:
            self.text.append(rest)
        return rest

    @property
    def full(self) -> str:
        return "".join(self.text)
