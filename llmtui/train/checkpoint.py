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
    # on the CPU whatever device saved it: the model and optimizer move it where they are
    state: dict[str, Any] = torch.load(path, weights_only=False, map_location="cpu")
    if any(state.get(k) != v for k, v in check.items()):
        raise InvalidInput("--resume needs the same data and settings as the interrupted run")
    return state


def pick_device(name: str) -> Any:
    """The torch device to train on: "auto" is the first CUDA GPU (or Apple's MPS) when
    this torch build sees one, else the CPU; "cpu", "cuda", "cuda:N" and "mps" on request."""
    import torch

    name = (name or "auto").strip().lower()
    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else
                            "mps" if has_mps else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    why = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        why = f"--device must be auto, cpu, cuda, cuda:N or mps, not '{name}'"
    elif device.type == "cuda" and not torch.cuda.is_available():
        why = ("--device cuda: this torch build sees no CUDA GPU (the CPU build is "
               "installed, or no driver)")
    elif device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        why = f"--device {name}: there are {torch.cuda.device_count()} CUDA GPUs"
    elif device.type == "mps" and not has_mps:
        why = "--device mps: this machine has no MPS device"
    if why:
        raise InvalidInput(why, hint="nothing was trained")
    return device


def describe(device: Any) -> str:
    """The device in words, for progress and ``llm show``."""
    if device.type == "cuda":
        import torch

        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)
