"""The compute devices llama.cpp's ggml sees (CPU, GPUs, RPC servers), through ctypes.

llama-cpp-python binds llama.h but not ggml's device registry; we need it to tell a real
GPU from the RPC backend (``llama_supports_gpu_offload`` is true whenever RPC is compiled
in) and to show which devices hold a model.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel", 4: "meta"}


@dataclass(frozen=True)
class Device:
    name: str
    description: str
    kind: str  # cpu, gpu, igpu, accel, meta
    memory_free: int
    memory_total: int


def _ggml() -> Any:
    """libggml as loaded by llama_cpp (the same process-wide registry)."""
    import llama_cpp

    lib_dir = __import__("pathlib").Path(llama_cpp.__file__).parent / "lib"
    lib = ctypes.CDLL(str(lib_dir / "libggml.so"))
    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    lib.ggml_backend_dev_get.restype = ctypes.c_void_p
    for fn in ("ggml_backend_dev_name", "ggml_backend_dev_description"):
        getattr(lib, fn).argtypes = [ctypes.c_void_p]
        getattr(lib, fn).restype = ctypes.c_char_p
    lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_type.restype = ctypes.c_int
    lib.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                                            ctypes.POINTER(ctypes.c_size_t)]
    lib.ggml_backend_dev_memory.restype = None
    return lib


def devices() -> list[Device]:
    """Every device registered with ggml in this process (loads llama_cpp)."""
    try:
        lib = _ggml()
    except OSError:
        return []
    out = []
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        out.append(Device(
            name=(lib.ggml_backend_dev_name(dev) or b"").decode(errors="replace"),
            description=(lib.ggml_backend_dev_description(dev) or b"").decode(errors="replace"),
            kind=TYPES.get(lib.ggml_backend_dev_type(dev), "other"),
            memory_free=int(free.value), memory_total=int(total.value)))
    return out


def has_gpu() -> bool:
    """A GPU (discrete or integrated) that llama.cpp can offload layers to."""
    return any(d.kind in ("gpu", "igpu") for d in devices())
