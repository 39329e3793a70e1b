"""`llm --help` from a file: the root help screen, kept per install and terminal width.

Typer and its Click take most of the time `llm --help` needs; the screen only changes
when llmtui, a plugin or the terminal's width does. So the first `llm --help` writes
what it printed to the cache folder, under a key made of llmtui's version, the CLI's
source files, the folders on sys.path (an install or a removal changes them) and the
width, and the next ones print that file without importing Typer at all.
Only the standard library's cheapest modules are imported here.
"""

from __future__ import annotations

import os
import sys

HELP_ARGS = (["--help"], ["-h"])


def cache_dir() -> str:
    """The user's cache folder for llmtui (what platformdirs gives, without importing it)."""
    home = os.environ.get("LLMTUI_HOME")
    if home:
        return os.path.join(os.path.abspath(os.path.expanduser(home)), "cache")
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
        return os.path.join(base, "llmtui", "Cache")
    if sys.platform == "darwin":
        return os.path.expanduser("~/Library/Caches/llmtui")
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.expanduser("~/.cache")
    return os.path.join(base, "llmtui")


def _width() -> int:
    """The width Click formats help for: the terminal's columns (COLUMNS first), at most 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 80
    return min(columns or 80, 80)


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def key() -> str:
    """A short hash of everything the help screen depends on."""
    import binascii

    from llmtui import __version__

    parts = [__version__, sys.version, sys.prefix, str(_width())]
    for entry in sys.path:  # '' and the full path of the working folder are the same
        full = os.path.abspath(entry or ".")
        parts.append(f"{full}={_mtime(full)}")
    here = os.path.dirname(os.path.abspath(__file__))
    with os.scandir(here) as entries:
        parts += sorted(f"{e.name}={e.stat().st_mtime_ns}" for e in entries
                        if e.name.endswith(".py"))
    return f"{binascii.crc32(chr(10).join(parts).encode('utf-8', 'replace')):08x}"


def path() -> str:
    return os.path.join(cache_dir(), f"help-{key()}.txt")


def cached() -> str | None:
    """The cached help screen, or None (not written yet, or out of date)."""
    try:
        with open(path(), encoding="utf-8") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError):
        return None


def store(text: str) -> None:
    """Keep the help screen for next time; older ones go (a failure only costs speed)."""
    target = path()
    folder = os.path.dirname(target)
    try:
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(folder):
            if name.startswith("help-") and name.endswith(".txt"):
                os.unlink(os.path.join(folder, name))
        tmp = f"{target}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except OSError:
        pass
