"""Draft tokens for speculative decoding: prompt lookup and a small draft model.

A draft is a guess at the next few tokens. The target model evaluates the pending token
and the guesses in one batch and keeps the guesses that match what it samples itself, so
accepted guesses come almost for free. Both kinds of guess are deterministic, so sampling
from the target and comparing is the standard rejection test: the output keeps the
target's distribution exactly (and, with a seed, its very random draws).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Any

from llmtui.errors import InvalidInput


@dataclass
class Lookup:
    """Prompt lookup: when the text so far ends with an n-gram seen earlier in the prompt
    or the reply, guess that what followed it then follows it again. Pays where the reply
    copies its input (summaries, quotes, RAG answers, code edits)."""

    tokens: list[int]
    # No 2-grams: in free-form text they match often and guess wrong (bench/speculative.py
    # chat: 9 of 23 kept and 0.93x with them, 32 of 46 and 1.06x without).
    sizes: tuple[int, ...] = (4, 3)
    # n -> n-gram -> (latest start, the start before it)
    index: dict[int, dict[tuple[int, ...], tuple[int, int]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {n: {} for n in self.sizes}
        for end in range(1, len(self.tokens) + 1):
            self._add(end)

    def _add(self, end: int) -> None:
        for n in self.sizes:
            if end >= n:
                key = tuple(self.tokens[end - n:end])
                before = self.index[n].get(key)
                self.index[n][key] = (end - n, before[0] if before else -1)

    def append(self, token: int) -> None:
        self.tokens.append(token)
        self._add(len(self.tokens))

    def guess(self, k: int) -> list[int]:
        toks = self.tokens
        for n in self.sizes:
            if len(toks) <= n:
                continue
            hit = self.index[n].get(tuple(toks[-n:]))
            if hit is None:
                continue
            start = hit[1]  # hit[0] is the text's own end
            if start < 0:
                continue
            follow = toks[start + n:start + n + k]
            for i, tok in enumerate(follow):
                if tok < 0:  # an image's positions: not a token anyone can guess
                    follow = follow[:i]
                    break
            if follow:
                return follow
        return []


@dataclass
class Adaptive:
    """Turns drafting down when it does not pay: after a few steps whose guesses were all
    refused, it pauses for a while (longer each time), and any accepted guess resets it.

    How many tokens to guess follows how many were kept: it starts at ``k``, drops to one
    more than were kept after a step where some were refused, and doubles back (up to
    ``k``) after a step whose guesses were all kept. Checking a guess costs a row of the batch, so
    long guesses only pay while they are being kept (copying); in free-form text a short
    guess wins the occasional token for little."""

    k: int
    size: int = 0  # how many to guess at the next step (0: k)
    misses: int = 0
    pause: int = 0
    cooldown: int = 16
    drafted: int = 0
    accepted: int = 0
    recent: list[tuple[int, int]] = field(default_factory=list)  # (drafted, kept) per step

    def allowed(self) -> bool:
        if self.pause > 0:
            self.pause -= 1
            return False
        return True

    def next_k(self) -> int:
        return max(1, min(self.k, self.size or self.k))

    def record(self, drafted: int, accepted: int) -> None:
        self.drafted += drafted
        self.accepted += accepted
        if drafted == 0:
            return
        self.size = min(self.k, self.next_k() * 2) if accepted == drafted else accepted + 1
        self.recent.append((drafted, accepted))
        del self.recent[:-8]
        kept = sum(a for _, a in self.recent) / sum(d for d, _ in self.recent)
        if accepted == 0:
            self.misses += 1
            if self.misses >= 3:
                self._back_off()
        elif len(self.recent) >= 4 and kept < 0.5:
            # Some guesses kept, most refused (free-form chat): checking them costs more
            # than the few kept tokens save on a CPU, so this is a loss too.
            self._back_off()
        else:
            self.misses = 0
            if kept >= 0.5:
                self.cooldown = 16

    def _back_off(self) -> None:
        self.pause, self.misses = self.cooldown, 0
        self.cooldown = min(256, self.cooldown * 2)
        self.recent.clear()


class DraftModel:
    """A small model with the same vocabulary, guessing greedily; one sequence per slot in
    its own context, kept in step with the target's cells."""

    def __init__(self, L: Any, model: Any, ctx: Any, target_vocab: Any, n_slots: int,
                 n_batch: int) -> None:
        self.L = L
        self.model = model
        self.ctx = ctx
        self.memory = L.llama_get_memory(ctx)
        self.n_vocab = int(L.llama_vocab_n_tokens(model.vocab))
        check_same_vocab(L, target_vocab, model.vocab)
        self.cells: list[list[int]] = [[] for _ in range(n_slots)]
        self.n_batch = n_batch
        self.batch = L.llama_batch_init(n_batch, 0, 1)
        params = L.llama_sampler_chain_default_params()
        self.greedy = L.llama_sampler_chain_init(params)
        L.llama_sampler_chain_add(self.greedy, L.llama_sampler_init_greedy())

    def _eval(self, seq: int, tokens: list[int], start: int) -> bool:
        b = self.batch
        for lo in range(0, len(tokens), self.n_batch):
            part = tokens[lo:lo + self.n_batch]
            b.n_tokens = len(part)
            for i, tok in enumerate(part):
                b.token[i] = tok
                b.pos[i] = start + lo + i
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = seq
                b.logits[i] = lo + i == len(tokens) - 1
            if self.L.llama_decode(self.ctx, b) != 0:
                return False
        return True

    def guess(self, seq: int, context: list[int], k: int) -> list[int]:
        """Up to k greedy guesses after ``context`` (the target's cells plus its pending
        token); the draft's own cells are brought in step first."""
        from llmtui.backends.slots import common_prefix

        cells = self.cells[seq]
        keep = min(common_prefix(cells, context), len(context) - 1)
        if len(cells) > keep:
            self.L.llama_memory_seq_rm(self.memory, seq, keep, -1)
            del cells[keep:]
        if not self._eval(seq, context[keep:], keep):
            self.reset(seq)
            return []
        cells.extend(context[keep:])
        out: list[int] = []
        for _ in range(k):
            tok = int(self.L.llama_sampler_sample(self.greedy, self.ctx, -1))
            if self.L.llama_vocab_is_eog(self.model.vocab, tok):
                break
            out.append(tok)
            if len(out) == k or not self._eval(seq, [tok], len(cells)):
                break
            cells.append(tok)
        return out

    def reset(self, seq: int) -> None:
        self.L.llama_memory_seq_rm(self.memory, seq, -1, -1)
        self.cells[seq] = []

    def close(self) -> None:
        L = self.L
        if self.greedy:
            L.llama_sampler_free(self.greedy)
            self.greedy = None
        if self.batch is not None:
            L.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx:
            L.llama_free(self.ctx)
            self.ctx = None
        self.model.close()


def check_same_vocab(L: Any, a: Any, b: Any) -> None:
    """A draft must speak the target's tokens: the same size and the same text per id."""
    na, nb = int(L.llama_vocab_n_tokens(a)), int(L.llama_vocab_n_tokens(b))
    if na != nb:
        raise InvalidInput(f"the draft model cannot draft for this model: their vocabularies "
                           f"differ ({nb} tokens against {na})",
                           hint="use a smaller model of the same family, or draft lookup")
    buf_a, buf_b = ctypes.create_string_buffer(256), ctypes.create_string_buffer(256)
    step = max(1, na // 2000)  # a spread sample: a different tokenizer differs early
    for tok in range(0, na, step):
        la = L.llama_token_to_piece(a, tok, buf_a, 256, 0, True)
        lb = L.llama_token_to_piece(b, tok, buf_b, 256, 0, True)
        if la != lb or buf_a.raw[:max(la, 0)] != buf_b.raw[:max(lb, 0)]:
            raise InvalidInput("the draft model cannot draft for this model: their "
                               f"vocabularies differ (token {tok})",
                               hint="use a smaller model of the same family, or draft lookup")
