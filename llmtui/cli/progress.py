"""Render pull events (Ollama-shaped dicts) as a progress bar on stderr."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any


class PullProgress:
    """A Rich progress bar on a terminal; a few plain lines otherwise."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}
        self._last_status = ""
        self._last_plain = 0.0

    def __enter__(self) -> PullProgress:
        if self.tty and not self.quiet:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            from llmtui.cli.output import stderr_console

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TimeRemainingColumn(), console=stderr_console(),
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, event: dict[str, Any]) -> None:
        if self.quiet:
            return
        status = str(event.get("status", ""))
        digest = event.get("digest")
        if (digest and event.get("total") is not None) or (digest and "completed" in event):
            total, done = event.get("total"), int(event.get("completed") or 0)
            if self._progress is not None:
                task = self._tasks.get(digest)
                if task is None:
                    task = self._progress.add_task(f"pulling {digest}", total=total)
                    self._tasks[digest] = task
                self._progress.update(task, completed=done, total=total)
            else:
                now = time.monotonic()
                if status != self._last_status or now - self._last_plain > 5 or done == total:
                    pct = f" {done * 100 // total}%" if total else ""
                    sys.stderr.write(f"{status}{pct}\n")
                    self._last_plain = now
                    self._last_status = status
            return
        if status and status != self._last_status:
            self._last_status = status
            if self._progress is not None:
                self._progress.console.print(status, markup=False, highlight=False)
            else:
                sys.stderr.write(status + "\n")
