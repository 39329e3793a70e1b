"""The compute devices llama.cpp's ggml sees (CPU, GPUs, RPC servers), through ctypes.

llama-cpp-python binds llama.h but not ggml's device registry; we need it to tell a real
GPU from the RPC backend (``llama_supports_gpu_offload`` is true whenever RPC is compiled
in), to show which devices hold a model, and for llama.cpp's RPC backend: registering
remote servers before a model loads (the daemon side) and serving this machine's devices
to another box (``llm rpc-worker``), the same calls llama.cpp's own ``rpc-server`` makes.
"""

from __future__ import annotations

import contextlib
import ctypes
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmtui.errors import ConfigError, LlmtuiError, RemoteUnavailable

TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel", 4: "meta"}


@dataclass(frozen=True)
class Device:
    name: str
    description: str
    kind: str  # cpu, gpu, igpu, accel, meta
    memory_free: int
    memory_total: int
    backend: str = ""  # the registry that made it: CPU, CUDA, Metal, RPC, ...

    @property
    def remote(self) -> bool:
        return self.backend == "RPC"


def _lib(name: str) -> ctypes.CDLL:
    """One of llama_cpp's ggml libraries, the copy its libllama really uses.

    A wheel cannot hold symbolic links, so ``libggml.so``, ``libggml.so.0`` and
    ``libggml.so.0.x.y`` are three separate files there; libllama loads the one named by
    its soname (``.so.0``). Opening another would give a second, empty device registry.
    """
    import llama_cpp

    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    for candidate in (f"{name}.so.0", f"{name}.so", f"{name}.dylib", f"{name}.dll"):
        if (lib_dir / candidate).exists():
            return ctypes.CDLL(str(lib_dir / candidate))
    raise OSError(f"{name} not found in {lib_dir}")


_GGML: Any = None


def _ggml() -> Any:
    """libggml as loaded by llama_cpp (the same process-wide registry)."""
    global _GGML
    if _GGML is not None:
        return _GGML
    lib = _lib("libggml")
    vp, sz = ctypes.c_void_p, ctypes.c_size_t
    sigs: dict[str, tuple[list[Any], Any]] = {
        "ggml_backend_dev_count": ([], sz),
        "ggml_backend_dev_get": ([sz], vp),
        "ggml_backend_dev_name": ([vp], ctypes.c_char_p),
        "ggml_backend_dev_description": ([vp], ctypes.c_char_p),
        "ggml_backend_dev_type": ([vp], ctypes.c_int),
        "ggml_backend_dev_memory": ([vp, ctypes.POINTER(sz), ctypes.POINTER(sz)], None),
        "ggml_backend_dev_backend_reg": ([vp], vp),
        "ggml_backend_dev_by_type": ([ctypes.c_int], vp),
        "ggml_backend_dev_init": ([vp, ctypes.c_char_p], vp),
        "ggml_backend_reg_name": ([vp], ctypes.c_char_p),
        "ggml_backend_reg_by_name": ([ctypes.c_char_p], vp),
        "ggml_backend_reg_get_proc_address": ([vp, ctypes.c_char_p], vp),
        "ggml_backend_register": ([vp], None),
        "ggml_backend_get_device": ([vp], vp),
    }
    for fn, (args, res) in sigs.items():
        getattr(lib, fn).argtypes = args
        getattr(lib, fn).restype = res
    _GGML = lib
    return lib


def _device(lib: Any, dev: int) -> Device:
    free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
    lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
    reg = lib.ggml_backend_dev_backend_reg(dev)
    return Device(
        name=(lib.ggml_backend_dev_name(dev) or b"").decode(errors="replace"),
        description=(lib.ggml_backend_dev_description(dev) or b"").decode(errors="replace"),
        kind=TYPES.get(lib.ggml_backend_dev_type(dev), "other"),
        memory_free=int(free.value), memory_total=int(total.value),
        backend=(lib.ggml_backend_reg_name(reg) or b"").decode(errors="replace") if reg else "")


def devices() -> list[Device]:
    """Every device registered with ggml in this process (loads llama_cpp)."""
    try:
        lib = _ggml()
    except OSError:
        return []
    return [_device(lib, lib.ggml_backend_dev_get(i)) for i in range(lib.ggml_backend_dev_count())]


def has_gpu() -> bool:
    """A local GPU (discrete or integrated) that llama.cpp can offload layers to; RPC
    servers also say "gpu" to llama.cpp but are not one."""
    return any(d.kind in ("gpu", "igpu") and not d.remote for d in devices())


# -- RPC: the daemon's side ------------------------------------------------------------------

#: llama.cpp's RPC protocol as of the pinned llama-cpp-python (ggml-rpc.h): the HELLO
#: command's number, the size of its capability block, and the version it answers.
RPC_CMD_HELLO = 14
RPC_CAPS_SIZE = 24
RPC_PROTO = (7, 0)


def parse_endpoints(text: str | None) -> list[str]:
    """'h1:p1,h2:p2' -> ['h1:p1', 'h2:p2']; a bad entry raises ValueError. IPv4 or names
    only: llama.cpp's RPC client splits host and port at the first colon."""
    out: list[str] = []
    for raw in (text or "").split(","):
        item = raw.strip()
        if not item:
            continue
        host, sep, port = item.partition(":")
        if not sep or not host or ":" in port or any(c.isspace() for c in host):
            raise ValueError(f"'{item}' is not HOST:PORT (IPv4 address or host name)")
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"'{item}': the port must be a number from 1 to 65535")
        out.append(f"{host}:{int(port)}")
    if len(out) > 16:
        raise ValueError("at most 16 RPC servers (llama.cpp's limit)")
    if len(set(out)) != len(out):
        raise ValueError("an RPC server is listed twice")
    return out


class _Closed(Exception):
    """The server hung up in the middle of the handshake."""


def _recv(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        piece = sock.recv(n - len(data))
        if not piece:
            raise _Closed
        data += piece
    return data


def rpc_hello(endpoint: str, timeout: float = 5.0) -> tuple[int, int, int]:
    """Say HELLO to an RPC server and return its protocol version.

    llama.cpp aborts the whole process when a server is unreachable or answers oddly;
    this handshake, with a timeout, turns a dead, busy or mismatched server into a
    one-line error first. A server serves one client at a time: a busy one accepts the
    connection but does not answer."""
    from llmtui.net import is_local, require_online

    host, _, port = endpoint.partition(":")
    if not is_local(host):
        require_online(f"offloading to the RPC server {endpoint}")
    hint = "start one there with `llm rpc-worker`, or fix rpc_servers / --rpc"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.sendall(bytes([RPC_CMD_HELLO]) + struct.pack("<Q", RPC_CAPS_SIZE)
                         + bytes(RPC_CAPS_SIZE))
            (size,) = struct.unpack("<Q", _recv(sock, 8))
            if size != 4 + RPC_CAPS_SIZE:
                raise RemoteUnavailable(
                    f"the RPC server {endpoint} answered with an unknown handshake",
                    hint="run the same llmtui and llama.cpp version on every box")
            body = _recv(sock, size)
    except TimeoutError:
        raise RemoteUnavailable(
            f"the RPC server {endpoint} did not answer within {timeout:.0f} s; it serves "
            "one client at a time: is another daemon or model using it?",
            hint="unload the model that uses it, or start another worker") from None
    except _Closed:
        raise RemoteUnavailable(f"the RPC server {endpoint} hung up during the handshake",
                                hint="run the same llmtui and llama.cpp version on every "
                                "box; see the worker's log") from None
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise RemoteUnavailable(f"cannot reach the RPC server {endpoint}: {why}",
                                hint=hint) from None
    version = (body[0], body[1], body[2])
    if version[0] != RPC_PROTO[0] or version[1] > RPC_PROTO[1]:
        raise RemoteUnavailable(
            f"the RPC server {endpoint} speaks protocol {'.'.join(map(str, version))}, "
            f"this llama.cpp speaks {RPC_PROTO[0]}.{RPC_PROTO[1]}",
            hint="run the same llmtui and llama.cpp version on every box")
    return version


def add_rpc_servers(endpoints: list[str], timeout: float = 5.0) -> list[Device]:
    """Register RPC servers with ggml so that the next model offloads layers to them
    (llama.cpp puts RPC devices first in a model's device list). Each is checked with a
    handshake first. Returns their devices."""
    for endpoint in endpoints:
        rpc_hello(endpoint, timeout)
    lib = _ggml()
    reg = lib.ggml_backend_reg_by_name(b"RPC")
    add = lib.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_rpc_add_server") \
        if reg else None
    if not add:
        raise LlmtuiError("this llama.cpp build has no RPC backend",
                          hint="rebuild llama-cpp-python with CMAKE_ARGS=-DGGML_RPC=ON "
                          "(make setup does)")
    add_server = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)(add)
    before = {d.name for d in devices()}
    for endpoint in endpoints:
        server_reg = add_server(endpoint.encode())
        if not server_reg:
            raise RemoteUnavailable(f"the RPC server {endpoint} offers no devices")
        lib.ggml_backend_register(server_reg)
    return [d for d in devices() if d.remote and d.name not in before]


def model_devices() -> list[Device]:
    """The devices a model offloads to when none are named, in llama.cpp's order: RPC
    servers, then local GPUs (integrated ones only when there is no discrete one)."""
    found = devices()
    rpc = [d for d in found if d.remote and d.kind == "gpu"]
    gpus = [d for d in found if d.kind == "gpu" and not d.remote]
    igpus = [d for d in found if d.kind == "igpu"][:1]
    return rpc + gpus + (igpus if not gpus else [])


def _f32(x: float) -> float:
    return float(struct.unpack("f", struct.pack("f", x))[0])


def plan_layers(n_layer: int, n_gpu_layers: int, devs: list[Device]) -> dict[str, Any]:
    """Which device holds which layers: llama.cpp's layer split (llama-model.cpp,
    load_tensors), in float32 as it computes it. The layers offloaded are the last
    ``n_gpu_layers`` of the ``n_layer`` blocks plus the output layer (index n_layer),
    spread over the devices in proportion to their free memory; the rest, and the input
    embeddings, stay on the CPU. Returns {device name: [layer indices]} and 'output'."""
    gpu = n_layer + 1 if n_gpu_layers < 0 else n_gpu_layers
    start = max(n_layer + 1 - gpu, 0)
    act = min(gpu, n_layer + 1) if devs else 0
    total, cumulative = 0.0, []
    for d in devs:
        total = _f32(total + _f32(float(d.memory_free)))
        cumulative.append(total)
    splits = [_f32(c / total) if total else 0.0 for c in cumulative]
    layers: dict[str, list[int]] = {d.name: [] for d in devs}
    layers["CPU"] = []
    output = "CPU"
    for il in range(n_layer + 1):
        if il < start or il - start >= act:
            name = "CPU"
        else:
            value = _f32(_f32(float(il - start)) / _f32(float(act)))
            idx = next((i for i, s in enumerate(splits) if s > value), len(devs) - 1)
            name = devs[min(idx, len(devs) - 1)].name
        if il == n_layer:
            output = name
        else:
            layers[name].append(il)
    return {"layers": layers, "output": output}


def placement(n_layer: int, n_gpu_layers: int) -> list[dict[str, Any]]:
    """Where a just-loaded model lives, for `llm ps`: each device with its layer count
    (and endpoint, for RPC servers). The input embeddings always stay on the CPU."""
    devs = model_devices()
    plan = plan_layers(n_layer, n_gpu_layers, devs)
    out = []
    for d in devs:
        entry: dict[str, Any] = {"name": d.name, "kind": "rpc" if d.remote else d.kind,
                                 "layers": len(plan["layers"][d.name]),
                                 "memory_free": d.memory_free}
        if d.remote:
            entry["endpoint"] = d.description
        if plan["output"] == d.name:
            entry["output"] = True
        out.append(entry)
    out.append({"name": "CPU", "kind": "cpu", "layers": len(plan["layers"]["CPU"]),
                "input": True, **({"output": True} if plan["output"] == "CPU" else {})})
    return out


# -- RPC: the worker's side ------------------------------------------------------------------

_GET_MEMORY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                               ctypes.POINTER(ctypes.c_size_t))
_INIT_BACKEND = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)
#: ggml-backend-impl.h: struct ggml_backend_device is 15 function pointers (get_memory
#: the 3rd, init_backend the 6th), then reg and context; struct ggml_backend is a guid
#: pointer and 16 function pointers, then its device. Both layouts are checked against
#: the public accessors before use.
_DEV_FNS, _DEV_GET_MEMORY, _DEV_INIT = 15, 2, 5
_BACKEND_DEVICE = 17


class CappedDevice:
    """A ggml device that reports at most ``cap`` bytes of memory (``--mem``).

    An RPC client splits layers over servers in proportion to the memory they report;
    rpc-server reports the whole device. This copies the device's interface, swaps in a
    get_memory that caps the figure, and makes backends created from it point back at
    it (the server asks its backend's device for the memory)."""

    def __init__(self, lib: Any, dev: int, cap: int) -> None:
        self.lib, self.orig, self.cap = lib, dev, cap
        size = _DEV_FNS + 2
        self.raw = (ctypes.c_void_p * size)()
        ctypes.memmove(self.raw, dev, ctypes.sizeof(self.raw))
        if self.raw[_DEV_FNS] != lib.ggml_backend_dev_backend_reg(dev):
            raise LlmtuiError("--mem is not supported with this llama.cpp build "
                              "(its device layout changed)")
        self.real_memory = _GET_MEMORY(int(self.raw[_DEV_GET_MEMORY] or 0))
        self.real_init = _INIT_BACKEND(int(self.raw[_DEV_INIT] or 0))
        self._memory = _GET_MEMORY(self._get_memory)
        self._init = _INIT_BACKEND(self._init_backend)
        self.raw[_DEV_GET_MEMORY] = ctypes.cast(self._memory, ctypes.c_void_p).value
        self.raw[_DEV_INIT] = ctypes.cast(self._init, ctypes.c_void_p).value
        self.patched = 0

    @property
    def address(self) -> int:
        return ctypes.addressof(self.raw)

    def _get_memory(self, _dev: int, free: Any, total: Any) -> None:
        self.real_memory(self.orig, free, total)
        free[0] = min(int(free[0]), self.cap)
        total[0] = min(int(total[0]), self.cap)

    def _init_backend(self, _dev: int, params: bytes | None) -> int:
        backend = self.real_init(self.orig, params)
        if backend:
            slots = ctypes.cast(backend, ctypes.POINTER(ctypes.c_void_p))
            if slots[_BACKEND_DEVICE] == self.lib.ggml_backend_get_device(backend) and \
                    slots[_BACKEND_DEVICE] == self.orig:
                slots[_BACKEND_DEVICE] = self.address
                self.patched += 1
        return int(backend or 0)


def server_devices(cap: int | None = None) -> list[Any]:
    """The devices an RPC worker serves, as llama.cpp's rpc-server picks them: every
    accelerator, else the CPU. With a cap, each reports at most that much memory."""
    lib = _ggml()
    found = [lib.ggml_backend_dev_get(i) for i in range(lib.ggml_backend_dev_count())]
    picked = [d for d in found if lib.ggml_backend_dev_type(d) not in (0, 3)
              and _device(lib, d).backend != "RPC"]
    if not picked:
        cpu = lib.ggml_backend_dev_by_type(0)
        picked = [cpu] if cpu else []
    if not picked:
        raise LlmtuiError("ggml found no device to serve")
    return [CappedDevice(lib, d, cap) if cap else d for d in picked]


def describe(dev: Any) -> Device:
    """A served device (plain or capped) as a Device."""
    lib = _ggml()
    return _device(lib, dev.address if isinstance(dev, CappedDevice) else dev)


def start_rpc_server(endpoint: str, devs: list[Any], threads: int,
                     cache_dir: str | None = None) -> None:
    """Serve these devices on endpoint (IPv4:port) until the process ends: llama.cpp's
    ggml_backend_rpc_start_server, which blocks in its accept loop (run it in a thread)."""
    lib = _ggml()
    reg = lib.ggml_backend_reg_by_name(b"RPC")
    addr = lib.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_rpc_start_server") \
        if reg else None
    if not addr:
        raise LlmtuiError("this llama.cpp build has no RPC backend",
                          hint="rebuild llama-cpp-python with CMAKE_ARGS=-DGGML_RPC=ON")
    start = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t,
                             ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p))(addr)
    array = (ctypes.c_void_p * len(devs))(
        *[d.address if isinstance(d, CappedDevice) else d for d in devs])
    start(endpoint.encode(), cache_dir.encode() if cache_dir else None, threads, len(devs),
          array)


def check_bindable(host: str, port: int) -> None:
    """Fail early, with a clear message, when the worker's address cannot be bound."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                              hint="pick another --port" if port else None) from None
