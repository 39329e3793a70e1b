"""The worker process: loads one model with its backend and serves framed requests.

Started as ``python -m llmtui.engine.worker``. Frames arrive on stdin and leave on a
private copy of stdout; fd 1 is pointed at stderr so that a stray print from a library
can never corrupt the protocol.

Two kinds of backend run here. A backend with a ``submit`` method takes requests as they
arrive and runs them concurrently itself (llama.cpp's parallel slots, decoded together in
one batch). Any other backend gets one request at a time on a single execution thread:
``generate``/``chat``/``embed``/``tokenize`` call the methods of those names, and any
other operation ``op`` calls ``op_<op>(msg, reply, cancelled)`` (speech, for example).
A reply is written at once by the thread that made it when nothing is waiting before it
(a token reaches the daemon without a thread hand-off: on a small machine the wake-up of
another thread is CPU taken from the model's threads). When the pipe is full, replies wait
for one writer thread, which coalesces text chunks of the same request while the daemon
reads slower than tokens arrive; the first chunk is never held back.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import sys
import threading
import time
import traceback
from typing import Any

from llmtui.engine.protocol import Message, ProtocolError, encode, read_frame

#: Chunk fields that can be merged by concatenation (text, and lists of per-token data).
_MERGEABLE = {"type", "id", "text", "thinking", "logprobs"}


def coalesce(batch: list[Message]) -> list[Message]:
    """Merge consecutive text chunks of each request; keep every other frame in order."""
    out: list[Message] = []
    open_chunk: dict[Any, Message] = {}
    for msg in batch:
        rid = msg.get("id")
        if msg.get("type") == "chunk" and set(msg) <= _MERGEABLE:
            cur = open_chunk.get(rid)
            if cur is None:
                cur = dict(msg)
                if "logprobs" in cur:
                    cur["logprobs"] = list(cur["logprobs"])
                open_chunk[rid] = cur
                out.append(cur)
            else:
                for key in ("text", "thinking"):
                    if key in msg:
                        cur[key] = cur.get(key, "") + msg[key]
                if "logprobs" in msg:
                    cur.setdefault("logprobs", []).extend(msg["logprobs"])
            continue
        open_chunk.pop(rid, None)  # later chunks of this id go after this frame
        out.append(msg)
    return out


class Reply:
    """Where one request's results go: chunks, then exactly one done or error."""

    def __init__(self, worker: Worker, req_id: Any) -> None:
        self.worker = worker
        self.id = req_id
        self.finished = False

    def chunk(self, **fields: Any) -> None:
        if not self.finished:
            self.worker.send({"type": "chunk", "id": self.id, **fields})

    def done(self, **fields: Any) -> None:
        if not self.finished:
            self.finished = True
            self.worker.send({"type": "done", "id": self.id, **fields})
            self.worker.forget(self.id)

    def error(self, exc: BaseException) -> None:
        if not self.finished:
            self.finished = True
            self.worker.error(self.id, exc)
            self.worker.forget(self.id)


class Worker:
    def __init__(self, out: Any) -> None:
        self.out = out
        self.fd: int = out.fileno()
        # Direct writes need a pipe that never blocks the caller (POSIX pipes: a write of
        # up to PIPE_BUF bytes is all or nothing); elsewhere every reply takes the queue.
        self.direct = os.name == "posix"
        if self.direct:
            os.set_blocking(self.fd, False)
        self.send_lock = threading.Lock()
        self.queued = 0  # items in the outbox or being written by the writer thread
        self.gone = False  # the daemon closed the pipe
        self.outbox: queue.Queue[Message | bytes | None] = queue.Queue()
        # Pacing (stream_interval): after a reply's first chunk, its text chunks are held
        # and leave merged, at most one interval late; a done, an error or any other frame
        # takes everything held with it, in order.
        self.pace_of: dict[Any, float] = {}  # request id -> its interval (seconds)
        self.paced: set[Any] = set()  # of those, the ones whose first chunk went out
        self.held: list[Message] = []
        self.pacer_wake = threading.Condition(self.send_lock)
        self.pacer: threading.Thread | None = None
        self.last_out = 0.0  # when frames were last written (monotonic)
        self.jobs: queue.Queue[Message | None] = queue.Queue()
        self.cancels: dict[Any, threading.Event] = {}
        self.cancel_lock = threading.Lock()
        self.backend: Any = None
        self.writer = threading.Thread(target=self._write_loop, name="llmtui-writer",
                                       daemon=True)
        self.writer.start()

    # -- output ----------------------------------------------------------------------------

    def send(self, msg: Message) -> None:
        with self.send_lock:
            if self.gone:
                return
            rid = msg.get("id")
            kind = msg.get("type")
            pace = 0.0
            if kind == "chunk":
                if rid in self.paced:
                    if self.held or time.monotonic() - self.last_out < self.pace_of[rid]:
                        self.held.append(msg)
                        if len(self.held) == 1:
                            self.pacer_wake.notify()
                        return
                else:
                    pace = self.pace_of.get(rid, 0.0)
            elif kind in ("done", "error"):
                self.paced.discard(rid)
                self.pace_of.pop(rid, None)
            self._emit_held(msg)
            if pace > 0:  # the first chunk went at once; the next ones are paced
                self.paced.add(rid)
                if self.pacer is None:
                    self.pacer = threading.Thread(target=self._pace_loop,
                                                  name="llmtui-pacer", daemon=True)
                    self.pacer.start()

    def pace(self, req_id: Any, interval: float) -> None:
        """How long the chunks of a request after its first may wait (0: not at all)."""
        if interval > 0:
            with self.send_lock:
                self.pace_of[req_id] = interval

    def _pace_loop(self) -> None:
        """Sends what is held one interval after the last write; sleeps while nothing is
        held. (A chunk that comes an interval or more after the last write goes at once:
        pacing never delays a model slower than the interval.)"""
        with self.send_lock:
            while not self.gone:
                if not self.held:
                    self.pacer_wake.wait()
                    continue
                interval = min((self.pace_of[rid] for rid in self.paced), default=0.0)
                due = self.last_out + interval - time.monotonic()
                if due > 0:
                    self.pacer_wake.wait(due)
                    continue
                self._emit_held()

    def _emit_held(self, msg: Message | None = None) -> None:
        """Write what is held, then ``msg`` (under send_lock)."""
        frames, self.held = self.held, []
        if msg is not None:
            frames.append(msg)
        if frames:
            self._emit(frames)

    def _emit(self, frames: list[Message]) -> None:
        """Write frames (under send_lock): at once when nothing is queued before them and
        the pipe has room, else through the writer thread."""
        if len(frames) > 1:
            frames = coalesce(frames)
        self.last_out = time.monotonic()
        if self.direct and self.queued == 0:
            data = b"".join(encode(frame) for frame in frames)
            try:
                n = os.write(self.fd, data)
            except BlockingIOError:
                n = 0  # the pipe is full: the writer thread waits for room
            except OSError:
                self.gone = True
                return
            if n < len(data):  # (more than PIPE_BUF bytes can be written in part)
                self.queued += 1
                self.outbox.put(data[n:])
            return
        for frame in frames:
            self.queued += 1
            self.outbox.put(frame)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view):]
            except BlockingIOError:  # not now: wait for room
                select.select([], [self.fd], [], 1.0)

    def _write_loop(self) -> None:
        while (item := self.outbox.get()) is not None:
            batch = [item]
            stop = False
            while True:  # whatever piled up while the last write blocked goes out merged
                try:
                    more = self.outbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            parts: list[bytes] = []
            run: list[Message] = []
            for entry in batch:
                if isinstance(entry, bytes):  # the rest of a partly written frame
                    parts.extend(encode(frame) for frame in coalesce(run))
                    run = []
                    parts.append(entry)
                else:
                    run.append(entry)
            parts.extend(encode(frame) for frame in coalesce(run))
            try:
                self._write_all(b"".join(parts))
            except (OSError, ValueError):
                with self.send_lock:
                    self.gone = True
                    self.pacer_wake.notify_all()
                return  # the daemon went away; the reader will see the end of stdin
            finally:
                with self.send_lock:
                    self.queued -= len(batch)
            if stop:
                return

    def flush(self, timeout: float = 5.0) -> None:
        with self.send_lock:
            if not self.gone:
                self._emit_held()
        self.outbox.put(None)
        self.writer.join(timeout)

    def error(self, req_id: Any, exc: BaseException) -> None:
        from llmtui.errors import LlmtuiError

        if isinstance(exc, LlmtuiError):
            self.send({"type": "error", "id": req_id, "kind": type(exc).__name__,
                       "error": str(exc)})
        else:
            traceback.print_exc(file=sys.stderr)
            self.send({"type": "error", "id": req_id, "kind": "GenerationError",
                       "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:500]})

    # -- cancellation ----------------------------------------------------------------------

    def event(self, req_id: Any) -> threading.Event:
        with self.cancel_lock:
            return self.cancels.setdefault(req_id, threading.Event())

    def forget(self, req_id: Any) -> None:
        with self.cancel_lock:
            self.cancels.pop(req_id, None)

    # -- requests --------------------------------------------------------------------------

    def load(self, msg: Message) -> bool:
        from llmtui.backends.base import backend_for

        start = time.perf_counter()
        try:
            self.backend = backend_for(msg["format"])()
            info = self.backend.load(msg["path"], msg.get("options", {}))
        except BaseException as exc:
            self.error(None, exc)
            return False
        self.send({"type": "ready", "load_seconds": time.perf_counter() - start,
                   "pid": os.getpid(), **info})
        return True

    def dispatch(self, msg: Message) -> None:
        """A request from the daemon: to the backend's own scheduler, or to the queue."""
        req_id = msg.get("id")
        cancelled = self.event(req_id)
        with contextlib.suppress(TypeError, ValueError):
            self.pace(req_id, float(msg.get("stream_interval") or 0))
        submit = getattr(self.backend, "submit", None)
        if submit is not None:
            reply = Reply(self, req_id)
            try:
                if submit(str(msg.get("op")), msg, reply, cancelled):
                    return
            except BaseException as exc:
                reply.error(exc)
                return
        self.jobs.put(msg)

    def run_jobs(self) -> None:
        """The serial execution thread for backends without their own scheduler."""
        while (msg := self.jobs.get()) is not None:
            reply = Reply(self, msg.get("id"))
            cancelled = self.event(reply.id)
            try:
                if cancelled.is_set():
                    reply.done(stats={"done_reason": "cancel"})
                else:
                    self.run_one(str(msg.get("op")), msg, reply, cancelled)
            except BaseException as exc:
                reply.error(exc)
            finally:
                if not reply.finished:
                    reply.done()
                self.forget(reply.id)

    def run_one(self, op: str, msg: Message, reply: Reply, cancelled: threading.Event) -> None:
        backend = self.backend
        if op in ("generate", "chat"):
            fn = backend.generate if op == "generate" else backend.chat
            stats = fn(msg["request"], lambda text: reply.chunk(text=text), cancelled)
            reply.done(stats=stats.to_dict())
        elif op == "embed":
            start = time.perf_counter()
            vectors = backend.embed(msg["input"], msg.get("options", {}))
            reply.done(embeddings=vectors, tokens=int(getattr(backend, "last_tokens", 0)),
                       seconds=time.perf_counter() - start)
        elif op == "tokenize":
            reply.done(tokens=backend.tokenize(msg["text"]))
        elif callable(handler := getattr(backend, f"op_{op}", None)):
            handler(msg, reply, cancelled)
        else:
            from llmtui.errors import InvalidInput

            raise InvalidInput(f"this model does not support the operation {op!r}")

    def serve(self, stdin: Any) -> int:
        first = read_frame(stdin)
        if first is None or first.get("op") != "load":
            return 2
        if not self.load(first):
            return 1
        runner = threading.Thread(target=self.run_jobs, name="llmtui-exec", daemon=True)
        runner.start()
        try:
            while True:
                msg = read_frame(stdin)
                if msg is None or msg.get("op") == "shutdown":
                    break
                op = msg.get("op")
                if op == "cancel":
                    self.event(msg.get("id")).set()
                elif op == "stats":
                    extra = getattr(self.backend, "stats", None)
                    self.send({"type": "stats", "id": msg.get("id"), **_rss(),
                               **(extra() if callable(extra) else {})})
                else:
                    self.dispatch(msg)
        except ProtocolError as exc:
            print(f"llmtui worker: {exc}", file=sys.stderr)
        finally:
            with self.cancel_lock:
                events = list(self.cancels.values())
            for event in events:
                event.set()
            self.jobs.put(None)
            runner.join(timeout=5)
            if self.backend is not None:
                with contextlib.suppress(Exception):
                    self.backend.close()
        return 0


def _rss() -> dict[str, Any]:
    try:
        import psutil

        return {"rss": psutil.Process().memory_info().rss}
    except Exception:
        return {}


def main() -> None:
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # stray prints go to the log, not into the protocol
    sys.stdout = sys.stderr
    worker = Worker(out)
    code = worker.serve(sys.stdin.buffer)
    worker.flush()  # replies still queued (a load error, the last done) reach the daemon
    sys.stderr.flush()
    os._exit(code)  # skip interpreter teardown: the model is freed with the process


if __name__ == "__main__":
    main()
