"""Parallel slots with continuous batching for one llama.cpp model.

One context holds ``n_slots`` sequences, each with its own KV cells (llama.cpp's
non-unified cache: a sequence's numbers do not depend on what the other slots are doing,
which keeps seeded requests reproducible under load). One scheduler thread owns the
context and loops:

1. admit waiting requests into free slots, picking the slot whose cached tokens share the
   longest prefix with the prompt (chat turns re-send the whole history);
2. decode one token for every slot that is generating, all in one ``llama_decode``;
3. evaluate one chunk of one waiting prompt (small while others stream, so a new prompt
   never stalls them for long; the full batch when nothing else runs);
4. sample in C, detokenize, check stops, send.

A request leaves as soon as it is done or cancelled and its slot takes the next request at
the next step. A slot keeps its tokens after a request (the prefix cache) and the logits
that followed its last prompt, so the same prompt again evaluates nothing and samples
from exactly the same numbers: a seed gives the same reply with the cache, not by
throwing it away.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from llmtui.backends.base import GenStats, Reply
from llmtui.backends.llama_native import Sampler, TextStream, logprob_entry
from llmtui.errors import GenerationError

#: Prompt tokens per step while other slots are generating (bounds their stall).
SHARED_CHUNK = 128
#: Rows per evaluation when scoring a text (perplexity): bounds the logits buffer.
SCORE_CHUNK = 128


class ThreadTuner:
    """Picks the thread count that decodes fastest right now: all cores, or one.

    On an idle machine every core helps; on a busy one (other models, builds, a test
    suite), llama.cpp's threads wait for each other at every graph node and a decode step
    can take a hundred times longer than on one thread. So every so often a few steps run
    on the other setting, and the faster one stays. Probes back off exponentially while
    they lose, so on a quiet machine they cost a fraction of a percent.
    """

    PROBE = 4
    MIN_INTERVAL = 16
    MAX_INTERVAL = 1024

    def __init__(self, L: Any, ctx: Any, threads: int) -> None:
        self.L = L
        self.ctx = ctx
        self.arms = [threads, 1] if threads > 1 else [threads]
        self.current = 0
        self.probing: int | None = None
        self.recent: list[tuple[int, float]] = []  # (rows, seconds) on the current arm
        self.probe: list[float] = []
        self.probe_rows = 0
        self.countdown = self.MIN_INTERVAL
        self.interval = self.MIN_INTERVAL
        self.switches = 0

    @property
    def threads(self) -> int:
        arm = self.current if self.probing is None else self.probing
        return self.arms[arm]

    def _apply(self) -> None:
        n = self.threads
        self.L.llama_set_n_threads(self.ctx, n, n)

    def record(self, rows: int, seconds: float) -> None:
        """After each decode step (one token per generating slot)."""
        if len(self.arms) == 1:
            return
        if self.probing is not None:
            if rows == self.probe_rows:
                self.probe.append(seconds)
            if len(self.probe) >= self.PROBE or rows != self.probe_rows:
                self._judge()
            return
        self.recent.append((rows, seconds))
        del self.recent[:-16]
        same = sorted(t for r, t in self.recent if r == rows)
        slow = len(same) >= 4 and seconds > 4 * same[len(same) // 2]
        self.countdown -= 1
        if self.countdown <= 0 or slow:
            self.probing = 1 - self.current
            self.probe, self.probe_rows = [], rows
            self._apply()

    def _judge(self) -> None:
        rows = self.probe_rows
        mine = sorted(t for r, t in self.recent if r == rows)
        theirs = sorted(self.probe)
        won = bool(mine and theirs and theirs[len(theirs) // 2] < 0.9 * mine[len(mine) // 2])
        if won:
            assert self.probing is not None
            self.current = self.probing
            self.recent = [(rows, t) for t in self.probe]
            self.interval = self.MIN_INTERVAL
            self.switches += 1
        else:
            self.interval = min(self.MAX_INTERVAL, self.interval * 2)
        self.probing = None
        self.countdown = self.interval
        self._apply()


@dataclass
class Job:
    """One request in the scheduler."""

    reply: Reply
    cancelled: threading.Event
    prompt: list[int]
    sampler: Sampler | None = None
    max_tokens: int = 0
    length_is_limit: bool = False  # num_predict was set: 'length' means the limit
    stream: TextStream = field(default_factory=TextStream)
    logprobs: int = -1  # -1 off; 0 the chosen token; N also the top N
    arrived: float = field(default_factory=time.perf_counter)
    kind: str = "gen"  # gen | score
    draft: str = "none"  # none | lookup | model: where speculative guesses come from
    lookup: Any = None  # drafts.Lookup over the prompt and the reply so far
    media: Any = None  # vision.Media: the prompt's image chunks by position
    adapt: Any = None  # drafts.Adaptive: how many guesses, and when to pause
    slot: Slot | None = None
    n_past: int = 0
    pending: int | None = None
    generated: list[int] = field(default_factory=list)
    stats: GenStats = field(default_factory=GenStats)
    prompt_started: float | None = None
    prompt_done: float | None = None
    first_text: float | None = None
    # scoring (perplexity)
    window: int = 0
    stride: int = 0
    score_begin: int = 0
    score_prev_end: int = 0
    nll: float = 0.0
    scored: int = 0

    @property
    def in_prompt(self) -> bool:
        return self.pending is None and self.prompt_done is None


@dataclass
class Slot:
    seq: int
    cells: list[int] = field(default_factory=list)
    saved_at: int = -1  # cells[:saved_at] is a prompt whose next-token logits we kept
    saved_logits: Any = None
    job: Job | None = None
    last_used: float = 0.0


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # binary search on equal prefixes: list slices compare in C
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class Scheduler:
    """Owns the llama.cpp context; every call into it happens on this thread."""

    def __init__(self, model: Any, ctx: Any, n_slots: int, n_ctx_seq: int,
                 n_batch: int, disk: Any = None, threads: int = 1, draft: Any = None,
                 projector: Any = None) -> None:
        import llama_cpp as L

        self.L = L
        self.projector = projector  # a vision.Projector, or None
        self.draft = draft  # a drafts.DraftModel, or None
        self.disk = disk  # a kvcache.DiskCache, or None
        self.tuner = ThreadTuner(L, ctx, threads)
        self.model = model
        self.ctx = ctx
        self.memory = L.llama_get_memory(ctx)
        self.n_ctx_seq = n_ctx_seq
        self.n_batch = n_batch
        self.n_vocab = int(L.llama_vocab_n_tokens(model.vocab))
        self.slots = [Slot(seq=i) for i in range(n_slots)]
        self.batch = L.llama_batch_init(max(n_batch, n_slots), 0, 1)
        self.inbox: queue.Queue[Job | None] = queue.Queue()
        self.waiting: list[Job] = []
        self._pieces: dict[int, bytes] = {}
        self._piece_buf = ctypes.create_string_buffer(256)
        self._turn = 0
        self.steps = 0
        self.thread = threading.Thread(target=self._run, name="llmtui-slots", daemon=True)
        self.thread.start()

    # -- outside the thread ----------------------------------------------------------------

    def submit(self, job: Job) -> None:
        self.inbox.put(job)

    def close(self) -> None:
        """Stop the loop, then keep every slot's long prompt on disk for next time."""
        self.inbox.put(None)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            for slot in self.slots:
                self._save_slot(slot)
            if self.disk is not None:
                self.disk.flush()
            if self.draft is not None:
                self.draft.close()
        with contextlib.suppress(Exception):
            self.L.llama_batch_free(self.batch)

    def piece(self, token: int) -> bytes:
        """The bytes of one token (special tokens render as nothing)."""
        out = self._pieces.get(token)
        if out is None:
            buf = self._piece_buf
            n = self.L.llama_token_to_piece(self.model.vocab, token, buf, len(buf), 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = self.L.llama_token_to_piece(self.model.vocab, token, buf, len(buf), 0,
                                                False)
            out = bytes(buf.raw[:max(n, 0)])
            self._pieces[token] = out
        return out

    # -- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._admit():
                self._drop_cancelled()
                decoding = [s.job for s in self.slots if s.job and s.job.pending is not None]
                if decoding:
                    self._decode(decoding)
                prompting = [s.job for s in self.slots if s.job and s.job.in_prompt]
                if prompting:
                    job = prompting[self._turn % len(prompting)]
                    self._turn += 1
                    chunk = SHARED_CHUNK if decoding else self.n_batch
                    if job.kind == "score":
                        self._score_step(job)
                    else:
                        self._prompt_step(job, chunk)
                self.steps += 1
        except BaseException as exc:  # never leave a client waiting on a dead loop
            for slot in self.slots:
                if slot.job is not None:
                    slot.job.reply.error(exc)
            for job in self.waiting:
                job.reply.error(exc)
            raise

    def _admit(self) -> bool:
        """Take new requests; block when there is nothing to do. False: shut down."""
        busy = any(s.job is not None for s in self.slots)
        while True:
            try:
                job = self.inbox.get(block=not busy and not self.waiting, timeout=None)
            except queue.Empty:
                break
            if job is None:
                self._shutdown()
                return False
            self.waiting.append(job)
            busy = True
        while self.waiting:
            free = [s for s in self.slots if s.job is None]
            if not free:
                break
            job = self.waiting.pop(0)
            if job.cancelled.is_set():
                if job.media is not None:
                    job.media.free()
                job.reply.done(stats={"done_reason": "cancel"})
                continue
            self._place(job, free)
        return True

    def _shutdown(self) -> None:
        for slot in self.slots:
            if slot.job is not None:
                self._finish(slot.job, "cancel")
        for job in self.waiting:
            job.reply.done(stats={"done_reason": "cancel"})
        self.waiting.clear()

    def _place(self, job: Job, free: list[Slot]) -> None:
        """Put a job in the free slot that already holds most of its prompt."""
        prompt = job.prompt
        scored = [(common_prefix(s.cells, prompt), s) for s in free]
        best_len, best = max(scored, key=lambda x: (x[0], -x[1].last_used))
        if job.kind == "score" or best_len == 0 or best_len < 0.1 * len(prompt):
            best_len, best = 0, min(free, key=lambda s: s.last_used)  # keep other caches
        job.slot = best
        best.job = job
        job.prompt_started = time.perf_counter()
        if job.kind == "score":
            self._save_slot(best)
            self._forget(best, 0)
            return
        if self.disk is not None:
            found = self.disk.best(prompt, better_than=best_len)
            if found is not None:
                entry, shared = found
                self._save_slot(best)
                if self._restore(best, entry):
                    best_len = shared
                    job.stats.restored_tokens = shared
        if best.saved_at == len(prompt) and best_len == len(prompt):
            # The very same prompt: its cells and next-token logits are kept.
            self._forget(best, len(prompt))
            job.n_past = len(prompt)
            job.stats.cached_tokens = len(prompt)
            self._prompt_finished(job, None, best.saved_logits)
            return
        keep = min(best_len, len(prompt) - 1)  # evaluate at least one token for logits
        if job.media is not None:
            keep = job.media.align(keep)
        self._forget(best, keep)
        job.n_past = keep
        job.stats.cached_tokens = keep

    def _forget(self, slot: Slot, keep: int) -> None:
        """Drop a slot's cells from position ``keep`` on (a long prompt that would be
        lost goes to the disk cache first)."""
        if keep < slot.saved_at:
            self._save_slot(slot)
        if len(slot.cells) > keep:
            self.L.llama_memory_seq_rm(self.memory, slot.seq, keep, -1)
            del slot.cells[keep:]
        if slot.saved_at > keep:
            slot.saved_at, slot.saved_logits = -1, None

    def _save_slot(self, slot: Slot) -> None:
        """Write the slot's last prompt (with the logits that followed it) to the disk
        cache, when it is long enough to be worth it and not there already."""
        from llmtui.backends.kvcache import MIN_TOKENS

        disk = self.disk
        n = slot.saved_at
        if disk is None or n < MIN_TOKENS or disk.has(slot.cells[:n]):
            return
        if len(slot.cells) > n:  # only the prompt: what followed is a reply
            self.L.llama_memory_seq_rm(self.memory, slot.seq, n, -1)
            del slot.cells[n:]
        size = int(self.L.llama_state_seq_get_size(self.ctx, slot.seq))
        buf = (ctypes.c_uint8 * size)()
        got = int(self.L.llama_state_seq_get_data(self.ctx, buf, size, slot.seq))
        if got != size:
            return
        disk.save(slot.cells[:n], bytes(buf), slot.saved_logits)

    def _restore(self, slot: Slot, entry: Any) -> bool:
        """Load a saved prompt's state into a slot; a file llama.cpp refuses is removed."""
        assert self.disk is not None
        loaded = self.disk.load(entry)
        self._forget(slot, 0)
        if loaded is None:
            return False
        state, logits = loaded
        buf = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if int(self.L.llama_state_seq_set_data(self.ctx, buf, len(state), slot.seq)) == 0:
            self.L.llama_memory_seq_rm(self.memory, slot.seq, -1, -1)
            self.disk.drop(entry)
            return False
        slot.cells = list(entry.tokens)
        if logits is not None and len(logits) == self.n_vocab:
            slot.saved_at, slot.saved_logits = len(entry.tokens), logits
        self.disk.restored += 1
        return True

    def _drop_cancelled(self) -> None:
        for slot in self.slots:
            job = slot.job
            if job is not None and job.cancelled.is_set():
                self._finish(job, "cancel")

    # -- evaluation ------------------------------------------------------------------------

    def _fill(self, rows: list[tuple[int, int, int, bool]]) -> None:
        b = self.batch
        b.n_tokens = len(rows)
        for i, (tok, pos, seq, want) in enumerate(rows):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = want

    def _eval(self, rows: list[tuple[int, int, int, bool]]) -> int:
        self._fill(rows)
        return int(self.L.llama_decode(self.ctx, self.batch))

    def _decode(self, jobs: list[Job]) -> None:
        """One token for every generating slot, in one llama_decode; a slot with guesses
        (speculative decoding) also evaluates them, in the same call."""
        jobs.sort(key=lambda j: j.slot.seq if j.slot else 0)  # consecutive sequences
        rows: list[tuple[int, int, int, bool]] = []
        plan: list[tuple[Job, int, list[int]]] = []
        for job in jobs:
            assert job.slot is not None and job.pending is not None
            guesses = self._guesses(job)
            p = len(job.slot.cells)
            plan.append((job, len(rows), guesses))
            rows.append((job.pending, p, job.slot.seq, True))
            rows.extend((g, p + 1 + i, job.slot.seq, True) for i, g in enumerate(guesses))
        started = time.perf_counter()
        rc = self._eval(rows)
        if len(rows) == len(jobs):  # thread tuning compares like with like: no guesses
            self.tuner.record(len(rows), time.perf_counter() - started)
        if rc != 0:
            for job in jobs:
                self._fail(job, GenerationError(f"llama_decode failed ({rc}) while generating"))
            return
        for job, first, guesses in plan:
            self._verify(job, first, guesses)

    def _guesses(self, job: Job) -> list[int]:
        """Speculative guesses for a job's next tokens (none when drafting is off, paused
        for not paying, or there is no room)."""
        if job.draft == "none" or job.adapt is None or not job.adapt.allowed():
            return []
        slot = job.slot
        assert slot is not None and job.pending is not None
        room = min(job.max_tokens - len(job.generated) - 1,
                   self.n_ctx_seq - len(slot.cells) - 2, self.n_batch // 2)
        k = min(job.adapt.next_k(), room)
        if k <= 0:
            return []
        if job.draft == "lookup":
            return list(job.lookup.guess(k))
        if job.draft == "model" and self.draft is not None:
            return list(self.draft.guess(slot.seq, [*slot.cells, job.pending], k))
        return []

    def _verify(self, job: Job, first: int, guesses: list[int]) -> None:
        """Sample the target's own token at each evaluated row in turn: a guess that equals
        it is kept (its cells are already computed) and the next row is valid; at the first
        difference the sampled token is the next one and the rest is dropped."""
        slot = job.slot
        assert slot is not None and job.pending is not None and job.sampler is not None
        slot.cells.append(job.pending)
        job.pending = None
        accepted = 0
        token = -1
        for i in range(len(guesses) + 1):
            token = job.sampler.sample(self.ctx, first + i)
            if not self._take(job, token, first + i, None):
                if job.adapt is not None:
                    job.adapt.record(len(guesses), accepted)
                return
            if i < len(guesses) and token == guesses[i]:
                slot.cells.append(token)
                accepted += 1
                continue
            break
        if len(guesses) > accepted:
            self.L.llama_memory_seq_rm(self.memory, slot.seq, len(slot.cells), -1)
        if job.adapt is not None:
            job.adapt.record(len(guesses), accepted)
        job.pending = token

    def _prompt_step(self, job: Job, chunk: int) -> None:
        slot = job.slot
        assert slot is not None
        start = job.n_past
        media = job.media
        if media is not None and start in media.spans:
            self._image_step(job, *media.spans[start])
            return
        end = min(len(job.prompt), start + chunk)
        if media is not None:
            nxt = media.starts_after(start)
            if nxt is not None:
                end = min(end, nxt)
        last = end == len(job.prompt)
        rows = [(job.prompt[p], p, slot.seq, last and p == end - 1) for p in range(start, end)]
        rc = self._eval(rows)
        if rc != 0:
            self._forget(slot, start)
            self._fail(job, GenerationError(f"llama_decode failed ({rc}) on the prompt"))
            return
        slot.cells.extend(job.prompt[start:end])
        job.n_past = end
        if last:
            self._prompt_finished(job, len(rows) - 1, None)

    def _image_step(self, job: Job, chunk: Any, n_pos: int) -> None:
        """Encode one image and put it in the slot's sequence (llama.cpp's mtmd)."""
        slot = job.slot
        assert slot is not None and self.projector is not None
        start = job.n_past
        last = start + n_pos == len(job.prompt)
        rc = self.projector.eval(self.ctx, chunk, start, slot.seq, self.n_batch, last)
        if rc != 0:
            self._forget(slot, start)
            self._fail(job, GenerationError(f"the image could not be evaluated ({rc})"))
            return
        slot.cells.extend(job.prompt[start:start + n_pos])
        job.n_past = start + n_pos
        if last:
            self._prompt_finished(job, -1, None)

    def _prompt_finished(self, job: Job, row: int | None, logits: Any) -> None:
        """The prompt is in the cache: keep its next-token logits, sample the first token."""
        import numpy as np

        slot = job.slot
        assert slot is not None and job.sampler is not None
        if logits is None:
            assert row is not None
            logits = np.ctypeslib.as_array(self.L.llama_get_logits_ith(self.ctx, row),
                                           shape=(self.n_vocab,)).copy()
            slot.saved_at, slot.saved_logits = len(job.prompt), logits
        job.prompt_done = time.perf_counter()
        job.stats.prompt_eval_tokens = len(job.prompt) - job.stats.cached_tokens
        self._sampled(job, None, logits)

    def _sampled(self, job: Job, row: int | None, logits: Any) -> None:
        """Sample the next token from a decoded row (or kept logits) and act on it."""
        assert job.sampler is not None and job.slot is not None
        if row is not None:
            token = job.sampler.sample(self.ctx, row)
        else:
            token = job.sampler.sample(self.ctx, -1, logits)
        if self._take(job, token, row, logits):
            job.pending = token

    def _take(self, job: Job, token: int, row: int | None, logits: Any) -> bool:
        """Act on a sampled token: end of generation, text out, stops and limits. True
        when the job goes on (the token is to be decoded next)."""
        assert job.sampler is not None and job.slot is not None
        if self.L.llama_vocab_is_eog(self.model.vocab, token):
            self._finish(job, "stop")
            return False
        job.generated.append(token)
        if job.lookup is not None:
            job.lookup.append(token)
        fields: dict[str, Any] = {}
        if job.logprobs >= 0:
            view = logits if logits is not None else job.sampler.logits_view(self.ctx, row or 0)
            fields["logprobs"] = [logprob_entry(view, token, job.logprobs, self.piece)]
        text = job.stream.feed(self.piece(token))
        if text:
            fields["text"] = text
            if job.first_text is None:
                job.first_text = time.perf_counter()
        if fields:
            fields.setdefault("text", "")
            job.reply.chunk(**fields)
        if job.stream.stopped:
            self._finish(job, "stop")
            return False
        if len(job.generated) >= job.max_tokens or len(job.slot.cells) + 1 > self.n_ctx_seq:
            self._finish(job, "length")
            return False
        return True

    def _finish(self, job: Job, reason: str) -> None:
        slot = job.slot
        now = time.perf_counter()
        rest = job.stream.finish()
        if rest and reason != "cancel":
            job.reply.chunk(text=rest)
        st = job.stats
        st.prompt_tokens = len(job.prompt)
        done = job.prompt_done or now
        st.prompt_seconds = done - (job.prompt_started or job.arrived)
        st.completion_tokens = len(job.generated)
        st.completion_seconds = max(0.0, now - done)
        st.first_token_seconds = (job.first_text or now) - job.arrived
        st.done_reason = reason
        st.context = job.prompt + job.generated
        if job.adapt is not None:
            st.draft_tokens, st.draft_accepted = job.adapt.drafted, job.adapt.accepted
        if slot is not None and len(slot.cells) < self.n_ctx_seq:
            # cells past the reply (refused guesses) must not outlive it
            self.L.llama_memory_seq_rm(self.memory, slot.seq, len(slot.cells), -1)
        if job.sampler is not None:
            job.sampler.close()
        if job.media is not None:
            job.media.free()
        if slot is not None:
            slot.job = None
            slot.last_used = now
        job.reply.done(stats=st.to_dict())

    def _fail(self, job: Job, exc: BaseException) -> None:
        if job.sampler is not None:
            job.sampler.close()
        if job.media is not None:
            job.media.free()
        if job.slot is not None:
            job.slot.job = None
        job.reply.error(exc)

    # -- scoring a text (perplexity) -------------------------------------------------------

    def _score_step(self, job: Job) -> None:
        """One chunk of a sliding-window perplexity run: each window starts from an empty
        sequence and scores only the tokens the previous window did not."""
        import numpy as np

        slot = job.slot
        assert slot is not None
        tokens = job.prompt
        n = len(tokens)
        begin = job.score_begin
        end = min(begin + job.window, n)
        pos0 = len(slot.cells)  # evaluated so far in this window
        first_target = max(job.score_prev_end, begin + 1)  # tokens scored in this window
        lo = begin + pos0
        hi = min(end, lo + SCORE_CHUNK)
        rows = [(tokens[p], p - begin, slot.seq, p + 1 >= first_target and p + 1 < end)
                for p in range(lo, hi)]
        rc = self._eval(rows)
        if rc != 0:
            self._forget(slot, 0)
            self._fail(job, GenerationError(f"llama_decode failed ({rc}) while scoring"))
            return
        slot.cells.extend(tokens[lo:hi])
        for i, (_tok, _pos, _seq, want) in enumerate(rows):
            if not want:
                continue
            p = lo + i
            x = np.ctypeslib.as_array(self.L.llama_get_logits_ith(self.ctx, i),
                                      shape=(self.n_vocab,)).astype(np.float64)
            peak = x.max()
            lse = peak + math.log(float(np.exp(x - peak).sum()))
            job.nll += lse - float(x[tokens[p + 1]])
            job.scored += 1
        if hi < end:
            return
        job.reply.chunk(progress=end, total=n)
        job.score_prev_end = end
        self._forget(slot, 0)
        if end >= n or job.cancelled.is_set():
            ppl = math.exp(job.nll / job.scored) if job.scored else float("nan")
            slot.job = None
            slot.last_used = time.perf_counter()
            job.reply.done(tokens=job.scored, nll=job.nll, perplexity=ppl,
                           done_reason="cancel" if job.cancelled.is_set() else "stop")
            return
        job.score_begin = begin + job.stride
