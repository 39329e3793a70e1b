"""What differs on Windows: file locks, process checks, user ids, and how the daemon is
reached locally.

On Unix the daemon listens on a private Unix socket. Where there are none (Windows), or
when ``LLMTUI_LOCAL_TRANSPORT=tcp`` asks for it (that is how the tests exercise this path
on Linux), it listens on a random loopback TCP port instead and accepts only clients that
send the token it wrote to a per-user file (``daemon.token`` in the runtime folder, which
only the user can read).
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
from typing import Any

try:  # POSIX
    import fcntl as _fcntl
except ImportError:  # Windows
    _fcntl = None  # type: ignore[assignment]

LOCAL_TRANSPORT_ENV = "LLMTUI_LOCAL_TRANSPORT"


def local_tcp() -> bool:
    """Does the daemon listen on loopback TCP with a token rather than a Unix socket?"""
    wanted = os.environ.get(LOCAL_TRANSPORT_ENV, "").strip().lower()
    if wanted == "tcp":
        return True
    return sys.platform == "win32" or not hasattr(socket, "AF_UNIX")


def lock_fd(fd: int, *, blocking: bool = True) -> bool:
    """Take an exclusive lock on an open file; False when ``blocking`` is off and it is
    held elsewhere. Closing the file drops the lock."""
    if _fcntl is not None:
        flags = _fcntl.LOCK_EX | (0 if blocking else _fcntl.LOCK_NB)
        try:
            _fcntl.flock(fd, flags)
        except BlockingIOError:
            return False
        return True
    # Windows: lock the first byte, retrying while another process holds it.
    msvcrt: Any = importlib.import_module("msvcrt")

    mode = msvcrt.LK_LOCK if blocking else msvcrt.LK_NBLCK
    while True:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, mode, 1)
            return True
        except OSError:
            if not blocking:
                return False


def unlock_fd(fd: int) -> None:
    if _fcntl is not None:
        _fcntl.flock(fd, _fcntl.LOCK_UN)
        return
    msvcrt: Any = importlib.import_module("msvcrt")
    os.lseek(fd, 0, os.SEEK_SET)
    msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def getuid() -> int | None:
    """The user id, or None where there is none (Windows: folders are per-user already)."""
    fn: Any = getattr(os, "getuid", None)
    return int(fn()) if fn is not None else None


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate the process there
        import psutil

        return bool(psutil.pid_exists(pid))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
