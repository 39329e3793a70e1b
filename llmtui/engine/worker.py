"""The worker process: loads one model with its backend and serves framed requests.

Started as ``python -m llmtui.engine.worker``. Frames arrive on stdin and leave on a
private copy of stdout; fd 1 is pointed at stderr so that a stray print from a library
can never corrupt the protocol. One operation runs at a time (llama.cpp contexts are not
thread-safe); requests carry ids so that parallel slots can come later.
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


class Worker:
    def __init__(self, out: Any) -> None:
        self.out = out
        self.write_lock = threading.Lock()
        self.jobs: queue.Queue[Message | None] = queue.Queue()
        self.cancels: dict[Any, threading.Event] = {}
        self.backend: Any = None

    def send(self, msg: Message) -> None:
        with self.write_lock:
            write_frame(self.out, msg)

    def error(self, req_id: Any, exc: BaseException) -> None:
        from llmtui.errors import LlmtuiError

        if isinstance(exc, LlmtuiError):
            self.send({"type": "error", "id": req_id, "kind": type(exc).__name__,
                       "error": str(exc)})
        else:
            traceback.print_exc(file=sys.stderr)
            self.send({"type": "error", "id": req_id, "kind": "GenerationError",
                       "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:500]})

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

    def run_jobs(self) -> None:
        """The single execution thread: generation, embedding and tokenizing, in order."""
        while (msg := self.jobs.get()) is not None:
            req_id = msg.get("id")
            cancelled = self.cancels.setdefault(req_id, threading.Event())
            try:
                op = msg["op"]
                if cancelled.is_set():
                    self.send({"type": "done", "id": req_id,
                               "stats": {"done_reason": "cancel"}})
                elif op in ("generate", "chat"):
                    def emit(text: str, _id: Any = req_id) -> None:
                        self.send({"type": "chunk", "id": _id, "text": text})

                    fn = self.backend.generate if op == "generate" else self.backend.chat
                    stats = fn(msg["request"], emit, cancelled)
                    self.send({"type": "done", "id": req_id, "stats": stats.to_dict()})
                elif op == "embed":
                    start = time.perf_counter()
                    vectors = self.backend.embed(msg["input"], msg.get("options", {}))
                    self.send({"type": "done", "id": req_id, "embeddings": vectors,
                               "tokens": int(getattr(self.backend, "last_tokens", 0)),
                               "seconds": time.perf_counter() - start})
                elif op == "tokenize":
                    tokens = self.backend.tokenize(msg["text"])
                    self.send({"type": "done", "id": req_id, "tokens": tokens})
                else:
                    self.send({"type": "error", "id": req_id, "kind": "InvalidInput",
                               "error": f"unknown operation {op!r}"})
            except BaseException as exc:
                self.error(req_id, exc)
            finally:
                self.cancels.pop(req_id, None)

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
                    self.cancels.setdefault(msg.get("id"), threading.Event()).set()
                elif op == "stats":
                    self.send({"type": "stats", "id": msg.get("id"), **_rss()})
                else:
                    self.cancels.setdefault(msg.get("id"), threading.Event())
                    self.jobs.put(msg)
        except ProtocolError as exc:
            print(f"llmtui worker: {exc}", file=sys.stderr)
        finally:
            for event in list(self.cancels.values()):
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
    code = Worker(out).serve(sys.stdin.buffer)
    sys.stderr.flush()
    os._exit(code)  # skip interpreter teardown: the model is freed with the process


if __name__ == "__main__":
    main()
