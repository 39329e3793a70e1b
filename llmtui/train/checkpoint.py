"""Checkpoints for Ctrl-C and ``--resume``: written whole or not at all, after checking
there is room for them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from llmtui.errors import InvalidInput, NoSpaceError

NAME = "checkpoint.pt"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training: a checkpoint was saved at ``step`` for ``--resume``."""

    def __init__(self, step: int, steps: int) -> None:
        super().__init__(step)
        self.step, self.steps = step, steps


def disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


def save(run_dir: Path, state: dict[str, Any], need: int) -> None:
    """``state`` (tensors and plain values) to ``run_dir``/checkpoint.pt; ``need``: about
    how many bytes it takes."""
    import torch

    run_dir.mkdir(parents=True, exist_ok=True)
    free = disk_free(run_dir)
    if free < need:
        raise NoSpaceError(f"not enough disk for a checkpoint in {run_dir}: "
                           f"{need // 2**20} MB needed, {free // 2**20} MB free")
    tmp = run_dir / (NAME + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, run_dir / NAME)  # never half a checkpoint


def load(run_dir: Path, what: str, check: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint of an interrupted run; ``check``: values that must match it (the
    data's hash, the settings)."""
    import torch

    path = run_dir / NAME
    if not path.is_file():
        raise InvalidInput(f"no interrupted run of '{what}' to resume")
    state: dict[str, Any] = torch.load(path, weights_only=False)
    if any(state.get(k) != v for k, v in check.items()):
        raise InvalidInput("--resume needs the same data and settings as the interrupted run")
    return state
