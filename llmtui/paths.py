"""Where llmtui keeps its files: platformdirs, overridable by LLMTUI_HOME and LLMTUI_MODELS."""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmtui.compat import getuid

APP_NAME = "llmtui"


@dataclass(frozen=True)
class Paths:
    """The folders llmtui uses; built from the environment, never created at import."""

    config_dir: Path
    data_dir: Path
    cache_dir: Path
    runtime_dir: Path
    #: Set only when LLMTUI_MODELS overrides the models folder.
    models_env: Path | None = None
    #: Set only when LLMTUI_HOME put everything under one folder.
    home: Path | None = None

    def environ(self) -> dict[str, str]:
        """The variables a child process (the daemon) needs to see the same folders."""
        env: dict[str, str] = {}
        if self.home is not None:
            env["LLMTUI_HOME"] = str(self.home)
        if self.models_env is not None:
            env["LLMTUI_MODELS"] = str(self.models_env)
        return env

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def default_models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Paths:
        """Resolve the folders: LLMTUI_HOME puts everything under one folder (tests use it)."""
        env = os.environ if environ is None else environ
        models_env = Path(env["LLMTUI_MODELS"]).expanduser() if env.get("LLMTUI_MODELS") else None
        home = env.get("LLMTUI_HOME")
        if home:
            root = Path(home).expanduser().absolute()
            return cls(
                config_dir=root / "config",
                data_dir=root / "data",
                cache_dir=root / "cache",
                runtime_dir=root / "run",
                models_env=models_env,
                home=root,
            )
        import warnings

        import platformdirs

        dirs = platformdirs.PlatformDirs(APP_NAME, appauthor=False)
        with warnings.catch_warnings():  # no XDG_RUNTIME_DIR: its /tmp fallback is fine
            warnings.simplefilter("ignore")
            runtime = Path(dirs.user_runtime_dir)
        return cls(
            config_dir=Path(dirs.user_config_dir),
            data_dir=Path(dirs.user_data_dir),
            cache_dir=Path(dirs.user_cache_dir),
            runtime_dir=runtime,
            models_env=models_env,
        )


#: Permission bits that let other users change a folder's contents.
_OTHERS_WRITE = 0o022


def private_dir(path: Path, *, tighten: bool = True) -> Path:
    """Make sure a folder of ours is private, whatever the umask.

    Missing folders (and missing parents) are created 0700. An existing folder that
    other users can write to is refused (they could swap a model, a config or a
    database under us), as the daemon's socket folder already is. ``tighten`` also
    takes away the read bits of a folder this user owns: folders llmtui made before it
    did this (with umask 022) hold API keys and conversations.
    """
    from llmtui.errors import ConfigError

    path = Path(path)
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it first
            folder.mkdir(mode=0o700)  # the umask can only take bits away from 0700
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{path} is not a folder", hint="remove it or choose another path")
    mode = stat.S_IMODE(st.st_mode)
    if mode & _OTHERS_WRITE:
        raise ConfigError(
            f"the folder {path} can be written by other users (mode {mode:04o})",
            hint=f"make it private: chmod 700 {path}")
    if tighten and st.st_uid == getuid() and mode & 0o077:
        with contextlib.suppress(OSError):
            os.chmod(path, mode & 0o700)
    return path


def private_file(path: Path) -> Path:
    """Create a file 0600 if it is missing (else take away other users' access to it)
    before a library opens it: SQLite gives its -wal and -shm files the same mode."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path


def open_private(path: Path, mode: str = "w", encoding: str | None = "utf-8") -> Any:
    """open() for a new file of ours: created 0600 from the first instant (no chmod race)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    return os.fdopen(fd, mode, encoding=None if "b" in mode else encoding)


def private_umask() -> None:
    """Files and folders this process creates are owner-only from now on, including those
    libraries create (LanceDB tables, logs): o+g bits are added to the umask."""
    os.umask(os.umask(0o077) | 0o077)
