"""What this machine can run: one probe shared by `llm setup`, `llm doctor`, `llm catalog`
and the TUI's model manager.

A model's decode speed on a CPU is bound by memory bandwidth: every generated token reads
(almost) every weight once. So the probe measures bandwidth (a large memory copy, the way
`mbw` and STREAM's copy kernel do) instead of trusting RAM size, and estimates tokens/s
as ``usable bandwidth / model size``. GPUs come from the llama.cpp build itself (ggml's
backend device list), so a CUDA card that the installed build cannot use is not counted.

The measurement takes a fraction of a second; it is kept in the cache folder for a week
(keyed by CPU, cores and RAM) so that `llm catalog` stays quick.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

#: Weights read per second by llama.cpp's decode loop, per byte/s of measured copy. Calibrated
#: on the development machines (2-core EPYC, about 10 GB/s copy): SmolLM2-135M Q4_1 (98 MB)
#: decodes at 85-150 tokens/s there, that is 8-15 GB/s of weights read per second.
EFFICIENCY = 1.0
#: A model below this many tokens/s does not "feel fast": reading speed is 5-10 words/s.
FAST_TOKENS_PER_SECOND = 20.0
#: GPU memory bandwidth is not measured (that needs a kernel launch through the build):
#: a conservative figure per device kind; estimates on a GPU say "bandwidth": "assumed"
#: in their JSON (`llm catalog --json`).
ASSUMED_GPU_BANDWIDTH = {"gpu": 300e9, "igpu": 60e9, "accel": 100e9}
CACHE_DAYS = 7

FitMark = Literal["fits", "tight", "too-big"]
Speed = Literal["fast", "usable", "slow"]


@dataclass(frozen=True)
class Device:
    """A compute device the installed llama.cpp build can use (ggml backend device)."""

    name: str
    description: str
    kind: str  # cpu, gpu, igpu, accel
    memory_total: int
    memory_free: int


@dataclass(frozen=True)
class LlamaBuild:
    """What the installed llama.cpp (llama-cpp-python) was built with."""

    version: str
    system_info: str
    gpu_offload: bool
    backends: tuple[str, ...]
    devices: tuple[Device, ...]

    @property
    def gpus(self) -> tuple[Device, ...]:
        return tuple(d for d in self.devices if d.kind in ("gpu", "igpu", "accel"))


@dataclass(frozen=True)
class Machine:
    """RAM, cores, measured speed, GPUs and disk: the facts a recommendation rests on."""

    system: str
    arch: str
    cpu: str
    cores_physical: int
    cores_logical: int
    ram_total: int
    ram_available: int
    bandwidth: float  # bytes/s, measured by a large memory copy
    cpu_score: float  # MB/s of SHA-256 on one core: a plain single-core speed figure
    models_dir: str
    disk_free: int
    llama: LlamaBuild | None = None
    measured_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def best_gpu(self) -> Device | None:
        gpus = self.llama.gpus if self.llama else ()
        return max(gpus, key=lambda d: d.memory_total, default=None)


@dataclass(frozen=True)
class Estimate:
    """How a model of this size would run here."""

    tokens_per_second: float
    fit: FitMark
    speed: Speed
    where: str  # "cpu" or the GPU's name

    def to_json(self) -> dict[str, Any]:
        return {"tokens_per_second": round(self.tokens_per_second, 1), "fit": self.fit,
                "speed": self.speed, "where": self.where,
                "bandwidth": "measured" if self.where == "cpu" else "assumed"}


# -- measuring --------------------------------------------------------------------------------


def measure_bandwidth(size: int = 128 * 1024 * 1024, repeats: int = 3) -> float:
    """Bytes/s moved by copying a buffer larger than any CPU cache (read + write counted)."""
    import psutil

    # Never take more than an eighth of what is free: the probe must not push a small
    # machine into swap.
    size = max(16 * 1024 * 1024, min(size, int(psutil.virtual_memory().available) // 16))
    src = bytearray(size)
    dst = bytearray(size)
    dst[:] = src  # touch every page first: the first copy pays for page faults
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        dst[:] = src
        elapsed = time.perf_counter() - start
        if elapsed > 0:
            best = max(best, 2 * size / elapsed)
    return best


def measure_cpu(seconds: float = 0.05) -> float:
    """Single-core MB/s of SHA-256 over a buffer that fits in cache."""
    import hashlib

    block = bytes(1024 * 1024)
    count = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        hashlib.sha256(block).digest()
        count += 1
    return count / elapsed if elapsed else 0.0


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Hardware")):
                return line.split(":", 1)[1].strip()
    if sys.platform == "darwin":
        import subprocess

        with contextlib.suppress(OSError, subprocess.SubprocessError):
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                  capture_output=True, text=True, timeout=5).stdout.strip()
    return platform.processor() or platform.machine()


_DEVICE_KINDS = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel"}


def llama_build() -> LlamaBuild | None:
    """The installed llama.cpp build and its devices; None when llama-cpp-python is absent."""
    try:
        import llama_cpp
    except Exception:  # not installed, or its shared library failed to load
        return None
    info = llama_cpp.llama_print_system_info()
    system_info = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
    backends, devices = _ggml_devices(Path(llama_cpp.__file__).parent / "lib")
    return LlamaBuild(
        version=str(getattr(llama_cpp, "__version__", "?")),
        system_info=system_info.strip(" |"),
        gpu_offload=bool(llama_cpp.llama_supports_gpu_offload()),
        backends=backends, devices=devices,
    )


def _ggml_devices(libdir: Path) -> tuple[tuple[str, ...], tuple[Device, ...]]:
    """ggml's registered backends and devices, read through its C API (ctypes).

    ``llama_supports_gpu_offload`` alone says yes for a CPU build with the RPC backend, so
    the device list is what tells whether a GPU is really there.
    """
    import ctypes

    names = {"linux": "libggml.so", "darwin": "libggml.dylib", "win32": "ggml.dll"}
    path = libdir / names.get(sys.platform, "libggml.so")
    if not path.exists():
        return (), ()
    try:
        lib = ctypes.CDLL(str(path))
        lib.ggml_backend_reg_count.restype = ctypes.c_size_t
        lib.ggml_backend_reg_get.restype = ctypes.c_void_p
        lib.ggml_backend_reg_get.argtypes = [ctypes.c_size_t]
        lib.ggml_backend_reg_name.restype = ctypes.c_char_p
        lib.ggml_backend_reg_name.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_dev_count.restype = ctypes.c_size_t
        lib.ggml_backend_dev_get.restype = ctypes.c_void_p
        lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
        for fn in ("ggml_backend_dev_name", "ggml_backend_dev_description"):
            getattr(lib, fn).restype = ctypes.c_char_p
            getattr(lib, fn).argtypes = [ctypes.c_void_p]
        lib.ggml_backend_dev_type.restype = ctypes.c_int
        lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                                                ctypes.POINTER(ctypes.c_size_t)]
    except (OSError, AttributeError):
        return (), ()
    backends = tuple(lib.ggml_backend_reg_name(lib.ggml_backend_reg_get(i)).decode()
                     for i in range(lib.ggml_backend_reg_count()))
    devices: list[Device] = []
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        devices.append(Device(
            name=lib.ggml_backend_dev_name(dev).decode(errors="replace"),
            description=lib.ggml_backend_dev_description(dev).decode(errors="replace"),
            kind=_DEVICE_KINDS.get(lib.ggml_backend_dev_type(dev), "other"),
            memory_total=int(total.value), memory_free=int(free.value)))
    return backends, tuple(devices)


def disk_free(path: Path) -> int:
    """Free bytes on the disk that holds ``path`` (its nearest existing parent)."""
    for p in (path, *path.parents):
        if p.exists():
            return int(shutil.disk_usage(p).free)
    return 0


def probe(models_dir: Path, *, cache_dir: Path | None = None, fresh: bool = False,
          with_llama: bool = True) -> Machine:
    """Measure this machine (or reuse a measurement from the last week)."""
    import psutil

    vm = psutil.virtual_memory()
    cpu = cpu_name()
    logical = os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or logical
    key = f"{cpu}|{physical}|{logical}|{int(vm.total)}"
    cached = None if fresh or cache_dir is None else _read_cache(cache_dir, key)
    if cached is not None:
        bandwidth, score, measured_at = cached
    else:
        bandwidth, score, measured_at = measure_bandwidth(), measure_cpu(), time.time()
        if cache_dir is not None:
            _write_cache(cache_dir, key, bandwidth, score, measured_at)
    return Machine(
        system=f"{platform.system()} {platform.release()}", arch=platform.machine(), cpu=cpu,
        cores_physical=int(physical), cores_logical=int(logical), ram_total=int(vm.total),
        ram_available=int(vm.available), bandwidth=bandwidth, cpu_score=score,
        models_dir=str(models_dir), disk_free=disk_free(models_dir),
        llama=llama_build() if with_llama else None, measured_at=measured_at,
    )


def _cache_file(cache_dir: Path) -> Path:
    return cache_dir / "machine.json"


def _read_cache(cache_dir: Path, key: str) -> tuple[float, float, float] | None:
    try:
        data = json.loads(_cache_file(cache_dir).read_text("utf-8"))
        if data["key"] == key and time.time() - float(data["at"]) < CACHE_DAYS * 86400:
            return float(data["bandwidth"]), float(data["cpu_score"]), float(data["at"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _write_cache(cache_dir: Path, key: str, bandwidth: float, score: float, at: float) -> None:
    from llmtui.paths import open_private, private_dir

    with contextlib.suppress(OSError):
        private_dir(cache_dir)
        with open_private(_cache_file(cache_dir)) as fh:
            json.dump({"key": key, "bandwidth": bandwidth, "cpu_score": score, "at": at}, fh)


def for_settings(settings: Any, *, fresh: bool = False, with_llama: bool = True) -> Machine:
    """The probe for the folders of these settings (models disk, cache)."""
    return probe(settings.models_dir, cache_dir=settings.paths.cache_dir, fresh=fresh,
                 with_llama=with_llama)


# -- estimating -------------------------------------------------------------------------------


def fit(ram_needed: int, ram_total: int) -> FitMark:
    """Fits: at most half of the memory; tight: up to 80%; beyond that it would swap."""
    if ram_needed <= ram_total * 0.5:
        return "fits"
    if ram_needed <= ram_total * 0.8:
        return "tight"
    return "too-big"


def speed_of(tokens_per_second: float) -> Speed:
    if tokens_per_second >= FAST_TOKENS_PER_SECOND:
        return "fast"
    return "usable" if tokens_per_second >= FAST_TOKENS_PER_SECOND / 3 else "slow"


def estimate(machine: Machine, size: int, ram_needed: int) -> Estimate:
    """Expected decode tokens/s and memory fit for a model file of ``size`` bytes.

    A GPU the build can use takes the model when it fits in the GPU's memory; otherwise
    the CPU's measured bandwidth decides.
    """
    size = max(size, 1)
    gpu = machine.best_gpu
    if gpu is not None and fit(ram_needed, gpu.memory_total) != "too-big":
        bw = ASSUMED_GPU_BANDWIDTH.get(gpu.kind, 100e9)
        tps = bw * EFFICIENCY / size
        return Estimate(tps, fit(ram_needed, gpu.memory_total), speed_of(tps), gpu.name)
    # A copy moves each byte twice (read and write); decoding mostly reads: the copy
    # figure is close to the read bandwidth a multi-threaded decode reaches.
    tps = machine.bandwidth * EFFICIENCY / size
    return Estimate(tps, fit(ram_needed, machine.ram_total), speed_of(tps), "cpu")


def recommend(machine: Machine, entries: Any, capability: str = "chat",
              min_tps: float = FAST_TOKENS_PER_SECOND) -> list[Any]:
    """Catalog entries worth pulling here, best first: the largest models that fit in
    memory and decode at ``min_tps`` or faster, then (if none) the fastest that fit."""
    usable = [(e, estimate(machine, e.size, e.ram)) for e in entries
              if capability in e.capabilities]
    usable = [(e, est) for e, est in usable if est.fit == "fits"]
    fast = sorted((p for p in usable if p[1].tokens_per_second >= min_tps),
                  key=lambda p: (-p[0].size, p[0].name))
    rest = sorted((p for p in usable if p[1].tokens_per_second < min_tps),
                  key=lambda p: (-p[1].tokens_per_second, p[0].name))
    return [e for e, _ in fast + rest]
