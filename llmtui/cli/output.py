"""Output rules: stdout carries data only; messages, progress and errors go to stderr.

Rich is imported inside the functions: `llm --help` must not pay for it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


def color_enabled(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR")),
                   highlight=False, soft_wrap=True)


def stdout_console() -> Console:
    from rich.console import Console

    return Console(no_color=not color_enabled(sys.stdout), highlight=False, soft_wrap=True)


def info(message: str) -> None:
    """A diagnostic for the person at the terminal, on stderr."""
    stderr_console().print(message, markup=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A Rich table on a terminal; tab-separated lines (with a header) when piped."""
    if sys.stdout.isatty():
        from rich.table import Table

        table = Table(title=title, box=None, header_style="bold", pad_edge=False)
        for col in columns:
            table.add_column(col, overflow="fold")
        for row in rows:
            table.add_row(*row)
        stdout_console().print(table)
    else:
        sys.stdout.write("\t".join(c.lower() for c in columns) + "\n")
        for row in rows:
            sys.stdout.write("\t".join(row) + "\n")


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit in ("B", "KB") else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def human_age(seconds: float) -> str:
    seconds = max(0, seconds)
    for unit, span in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= span:
            n = int(seconds // span)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"
