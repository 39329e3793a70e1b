"""Where the daemon keeps its socket, lock, status file and log; and the folder checks."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from llmtui.compat import getuid, local_tcp
from llmtui.errors import DaemonUnavailable
from llmtui.paths import Paths

SUN_PATH_MAX = 107


@dataclass(frozen=True)
class DaemonPaths:
    runtime: Path
    log_dir: Path

    @classmethod
    def of(cls, paths: Paths) -> DaemonPaths:
        return cls(paths.runtime_dir, paths.log_dir)

    @property
    def socket(self) -> Path:
        return self.runtime / "llmtui.sock"

    @property
    def status(self) -> Path:
        return self.runtime / "daemon.json"

    @property
    def lock(self) -> Path:
        return self.runtime / "daemon.lock"

    @property
    def start_lock(self) -> Path:
        return self.runtime / "start.lock"

    @property
    def token(self) -> Path:
        """The local TCP mode's token (see llmtui/compat.py), readable by the user only."""
        return self.runtime / "daemon.token"

    @property
    def log(self) -> Path:
        return self.log_dir / "daemon.log"


def secure_runtime_dir(path: Path) -> None:
    """Create the runtime folder 0700, or refuse one that others can reach."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        old = os.umask(0o077)
        try:
            path.mkdir(mode=0o700, exist_ok=True)
        finally:
            os.umask(old)
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise DaemonUnavailable(f"{path} is not a folder", hint="remove it and try again")
    if getuid() is None:  # Windows: the folder is under the user's profile; no mode bits
        return
    if st.st_uid != getuid():
        raise DaemonUnavailable(f"the runtime folder {path} belongs to another user")
    if st.st_mode & 0o077:
        raise DaemonUnavailable(
            f"the runtime folder {path} has unsafe permissions {stat.S_IMODE(st.st_mode):04o}",
            hint=f"it must be private: chmod 700 {path}")
    if not local_tcp() and len(str(path / "llmtui.sock")) > SUN_PATH_MAX:
        raise DaemonUnavailable(f"the runtime folder path is too long for a socket: {path}",
                                hint="set LLMTUI_HOME or XDG_RUNTIME_DIR to a shorter path")
