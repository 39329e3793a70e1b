"""The terminal face of listen and voice: a level meter and status on stderr (only on a
terminal), the transcript on stdout, and keys read from the terminal."""

from __future__ import annotations

import contextlib
import math
import os
import select
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

METER_WIDTH = 20


def meter(level: float, width: int = METER_WIDTH) -> str:
    """A bar for a level, on a dB scale from -60 to 0 dBFS."""
    db = 20 * math.log10(max(level, 1e-6))
    filled = max(0, min(width, round((db + 60) / 60 * width)))
    return "█" * filled + "·" * (width - filled)


class ConsoleUI:
    """Draws the conversation: status line and meter in place on stderr, the words said
    by each side as lines on stdout ("you: ..." / "MODEL: ...")."""

    def __init__(self, model: str, *, out: TextIO | None = None, err: TextIO | None = None,
                 verbose: bool = False) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.live = bool(getattr(self.err, "isatty", lambda: False)())
        self.model = model.split(":")[0]
        self.verbose = verbose
        self.state = ""
        self.last_draw = 0.0
        self.in_answer = False
        self.lock = threading.Lock()

    def _clear(self) -> None:
        if self.live:
            self.err.write("\r\x1b[2K")
            self.err.flush()

    def status(self, text: str) -> None:
        with self.lock:
            self.state = text
            if self.live:
                self._clear()
                self.err.write(f"[{text}]")
                self.err.flush()

    def level(self, level: float, speaking: bool) -> None:
        if not self.live:
            return
        now = time.monotonic()
        if now - self.last_draw < 0.06:
            return
        self.last_draw = now
        with self.lock:
            mark = "●" if speaking else "○"
            self.err.write(f"\r\x1b[2K{mark} {meter(level)} {self.state}")
            self.err.flush()

    def heard(self, text: str) -> None:
        with self.lock:
            self._clear()
            self.out.write(f"you: {text}\n")
            self.out.flush()

    def answer_piece(self, text: str) -> None:
        # One line per answer: the transcript reads (and greps) as one turn a line.
        text = text.replace("\r", "").replace("\n", " ")
        with self.lock:
            if not self.in_answer:
                self._clear()
                self.out.write(f"{self.model}: ")
                self.in_answer = True
                text = text.lstrip()
            self.out.write(text)
            self.out.flush()

    def answer_end(self, interrupted: bool) -> None:
        with self.lock:
            if self.in_answer:
                self.out.write(" [interrupted]\n" if interrupted else "\n")
                self.out.flush()
            self.in_answer = False

    def timings(self, timings: dict[str, float]) -> None:
        if not self.verbose:
            return
        parts = [f"{k.replace('_', ' ')} {v * 1000:.0f} ms" for k, v in timings.items()]
        with self.lock:
            self._clear()
            self.err.write("timings: " + " · ".join(parts) + "\n")
            self.err.flush()

    def close(self) -> None:
        self._clear()


@contextlib.contextmanager
def cbreak(fd: int) -> Iterator[None]:
    """Keys arrive one at a time, unechoed, while inside (a terminal only)."""
    import termios
    import tty

    old = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


class KeyWatcher:
    """Sets ``pressed`` when any key is hit on the terminal (stdin must be one)."""

    def __init__(self) -> None:
        self.pressed = threading.Event()
        self.done = threading.Event()
        self.enabled = sys.stdin is not None and sys.stdin.isatty()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> KeyWatcher:
        if self.enabled:
            self.thread = threading.Thread(target=self._run, name="llmtui-keys", daemon=True)
            self.thread.start()
        return self

    def _run(self) -> None:
        fd = sys.stdin.fileno()
        with cbreak(fd):
            while not self.done.is_set():
                ready, _, _ = select.select([fd], [], [], 0.1)
                if ready:
                    os.read(fd, 32)
                    self.pressed.set()
                    return

    def __exit__(self, *exc: Any) -> None:
        self.done.set()
        if self.thread is not None:
            self.thread.join(timeout=1)


def line_key(prompt: str, err: TextIO | None = None) -> bool:
    """Wait for Enter on stdin (a terminal or a pipe); False at the end of input."""
    stream = err or sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        stream.write(f"\r\x1b[2K[{prompt}]")
        stream.flush()
    line = sys.stdin.readline() if sys.stdin is not None else ""
    return bool(line)
