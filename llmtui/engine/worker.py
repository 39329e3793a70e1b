"""The worker process: loads one model with its backend and serves framed requests.

Started as ``python -m llmtui.engine.worker``. Frames arrive on stdin and leave on a
private copy of stdout; fd 1 is pointed at stderr so that a stray print from a library
can never corrupt the protocol.

Two kinds of backend run here. A backend with a ``submit`` method takes requests as they
arrive and runs them concurrently itself (llama.cpp's parallel slots, decoded together in
one batch). Any other backend gets one request at a time on a single execution thread:
``generate``/``chat``/``embed``/``tokenize`` call the methods of those names, and any
other operation ``op`` calls ``op_<op>(msg, reply, cancelled)`` (speech, for example).
Replies leave through one writer thread that coalesces text chunks of the same request
when the daemon reads slower than tokens arrive; the first chunk is never held back.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
import traceback
from typing import Any

from llmtui.engine.protocol import Message, ProtocolError, read_frame, write_frame

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
        self.outbox: queue.Queue[Message | None] = queue.Queue()
        self.jobs: queue.Queue[Message | None] = queue.Queue()
        self.cancels: dict[Any, threading.Event] = {}
        self.cancel_lock = threading.Lock()
        self.backend: Any = None
        self.writer = threading.Thread(target=self._write_loop, name="llmtui-writer",
                                       daemon=True)
        self.writer.start()

    # -- output ----------------------------------------------------------------------------

    def send(self, msg: Message) -> None:
        self.outbox.put(msg)

    def _write_loop(self) -> None:
        while (msg := self.outbox.get()) is not None:
            batch = [msg]
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
            try:
                for frame in coalesce(batch) if len(batch) > 1 else batch:
                    write_frame(self.out, frame)
            except (OSError, ValueError):
                return  # the daemon went away; the reader will see the end of stdin
            if stop:
                return

    def flush(self, timeout: float = 5.0) -> None:
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
