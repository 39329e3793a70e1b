"""Where llmtui keeps its files: platformdirs, overridable by LLMTUI_HOME and LLMTUI_MODELS."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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
