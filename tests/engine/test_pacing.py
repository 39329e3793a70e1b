"""Paced streaming (stream_interval): a reply's first token goes out at once, later text
at most once per interval, merged, with the same text and counts; bad values are 400s;
and the worker's direct writes fall back to its writer thread, in order, when the pipe
to the daemon is full."""

from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Any

from llmtui.engine.protocol import read_frame
from tests.daemon.test_api import COUNTING, raw

SMOL = "smollm2:135m"


def timed_lines(client: Any, interval: Any, n: int) -> tuple[list[float], str, dict[str, Any]]:
    """Arrival times of the lines carrying text, the text, and the final line."""
    opts = {"temperature": 0, "repeat_penalty": 1.0, "num_predict": n, "draft": "none",
            "stream_interval": interval}
    times: list[float] = []
    text = ""
    final: dict[str, Any] = {}
    for part in client.generate(SMOL, COUNTING, raw=True, options=opts):
        if part.get("response"):
            times.append(time.monotonic())
            text += part["response"]
        if part.get("done"):
            final = part
    return times, text, final


def test_paced_stream_merges_later_tokens_and_keeps_the_text(client: Any) -> None:
    client.load(SMOL, keep_alive="-1")
    each, text0, final0 = timed_lines(client, 0, 64)
    paced, text1, final1 = timed_lines(client, "300ms", 64)
    assert text1 == text0 and final1["eval_count"] == final0["eval_count"] == 64
    # Each token alone: about a line per token (a few merge if the reader falls behind).
    assert len(each) >= 32, len(each)
    # Paced: the first line at once, then one per 300 ms tick, then the rest with the end.
    span = paced[-1] - paced[0]
    assert len(paced) <= 3 + span / 0.3, (len(paced), span)
    gaps = [b - a for a, b in itertools.pairwise(paced)]
    assert all(g >= 0.15 for g in gaps[:-1]), gaps


def test_paced_first_token_is_not_held(client: Any) -> None:
    """Time to first token is the same paced or not (the first chunk is never held)."""
    client.load(SMOL, keep_alive="-1")
    firsts = {}
    for interval in (0, "1s"):
        opts = {"temperature": 0, "num_predict": 4, "stream_interval": interval}
        for _ in range(2):  # the second run is warm: its prompt is cached
            start = time.monotonic()
            for part in client.generate(SMOL, COUNTING, raw=True, options=opts):
                if part.get("response"):
                    firsts[str(interval)] = time.monotonic() - start
                    break
    assert firsts["1s"] < 0.5, firsts


def test_bad_stream_interval_is_a_400(client: Any) -> None:
    with raw(client) as http:
        for value, words in (("fast", "not an interval"), ("2s", "out of range"),
                             (-1, "out of range"), (True, "not an interval")):
            r = http.post("/api/generate", json={
                "model": SMOL, "prompt": "hi", "stream": False,
                "options": {"num_predict": 2, "stream_interval": value}})
            assert r.status_code == 400, (value, r.text)
            assert "stream_interval" in r.json()["error"] and words in r.json()["error"]
        # the daemon still serves
        r = http.post("/api/generate", json={"model": SMOL, "prompt": "hi", "stream": False,
                                             "options": {"num_predict": 2,
                                                         "stream_interval": "10ms"}})
        assert r.status_code == 200 and r.json()["done"]


def test_worker_writes_in_order_through_a_full_pipe() -> None:
    """The worker writes a frame itself when nothing waits before it; when the pipe is
    full it hands frames to its writer thread, which sends them (text merged) in order."""
    from llmtui.engine.worker import Worker

    r, w = os.pipe()
    worker = Worker(os.fdopen(w, "wb", buffering=0))  # makes the write end non-blocking
    filler = 0
    try:
        while True:
            filler += os.write(w, b"\0" * 4096)
    except BlockingIOError:
        pass
    worker.pace("a", 0.05)
    sent = [str(i) for i in range(300)]
    for piece in sent:
        worker.send({"type": "chunk", "id": "a", "text": piece})
        worker.send({"type": "chunk", "id": "b", "text": piece})
    worker.send({"type": "done", "id": "a", "stats": {}})
    worker.send({"type": "done", "id": "b", "stats": {}})
    reader = os.fdopen(r, "rb")
    got: list[dict[str, Any]] = []

    def drain() -> None:
        remaining = filler
        while remaining:
            remaining -= len(reader.read(min(remaining, 65536)))
        while (frame := read_frame(reader)) is not None:
            got.append(frame)
            if sum(1 for f in got if f["type"] == "done") == 2:
                return

    t = threading.Thread(target=drain)
    t.start()
    t.join(30)
    worker.flush()
    assert not t.is_alive()
    for rid in ("a", "b"):
        mine = [f for f in got if f["id"] == rid]
        assert mine[-1]["type"] == "done"
        assert "".join(f.get("text", "") for f in mine[:-1]) == "".join(sent)
    assert len(got) < 2 * len(sent), len(got)  # merged while the pipe was full
    reader.close()


def test_worker_paces_fast_chunks_but_never_delays_slow_ones() -> None:
    """A chunk that comes an interval or more after the last write goes at once; one that
    comes sooner waits for the rest of the interval, then leaves merged."""
    import select

    from llmtui.engine.worker import Worker

    r, w = os.pipe()
    worker = Worker(os.fdopen(w, "wb", buffering=0))
    reader = os.fdopen(r, "rb", buffering=0)

    def ready(timeout: float) -> bool:
        return bool(select.select([r], [], [], timeout)[0])

    def frame() -> dict[str, Any]:
        got = read_frame(reader)
        assert got is not None
        return got

    worker.pace("s", 0.2)
    worker.send({"type": "chunk", "id": "s", "text": "a"})  # the first: at once
    assert ready(0.05) and frame() == {"type": "chunk", "id": "s", "text": "a"}
    time.sleep(0.25)
    worker.send({"type": "chunk", "id": "s", "text": "b"})  # slow: at once
    assert ready(0.05) and frame()["text"] == "b"
    sent = time.monotonic()
    worker.send({"type": "chunk", "id": "s", "text": "c"})  # fast: held...
    worker.send({"type": "chunk", "id": "s", "text": "d"})
    assert not ready(0.1)
    assert ready(1.0) and frame()["text"] == "cd"  # ... then merged
    assert 0.15 <= time.monotonic() - sent < 0.6
    worker.send({"type": "chunk", "id": "s", "text": "e"})
    worker.send({"type": "done", "id": "s", "stats": {}})  # takes what is held with it
    assert ready(0.05) and frame()["text"] == "e"
    assert frame()["type"] == "done"
    worker.flush()
    reader.close()
