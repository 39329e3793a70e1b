"""What is installed and what is broken, each with the one command that fixes it.

`llm doctor` prints these checks; `llm setup` shows the machine part before it
recommends a model. Checks never raise: a check that cannot run is itself a finding.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from llmtui.machine import Machine

Status = Literal["ok", "info", "missing", "warn", "broken"]

#: Each extra of the package and the modules that show it is installed.
EXTRAS: dict[str, tuple[str, ...]] = {
    "llama": ("llama_cpp",),
    "server": ("uvicorn", "starlette", "websockets", "strawberry"),
    "tui": ("textual",),
    "rag": ("lancedb", "pypdf"),
    "voice": ("sounddevice", "faster_whisper"),
    "onnx": ("onnxruntime",),
    "openvino": ("openvino",),
}
#: What each extra gives the user, for the "missing" lines.
EXTRA_USES = {
    "llama": "runs GGUF models", "server": "the daemon and its API", "tui": "the chat screen",
    "rag": "llm rag", "voice": "llm listen / speak / voice", "onnx": "ONNX models",
    "openvino": "OpenVINO models",
}
#: Distributions whose versions are worth showing.
VERSIONS = ("llmtui", "llama-cpp-python", "typer", "textual", "uvicorn", "starlette", "httpx",
            "lancedb", "onnxruntime", "openvino", "faster-whisper", "sounddevice")
#: Free disk below this in the models folder is a warning: the smallest chat models fit,
#: little else does.
LOW_DISK = 2 * 10**9


@dataclass(frozen=True)
class Check:
    """One finding: what was looked at, what was found, and the fix when there is one."""

    area: str
    name: str
    status: Status
    detail: str
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def pip_install(extra: str) -> str:
    """The command that installs an extra into the Python that runs llmtui."""
    return f"{Path(sys.executable).name} -m pip install 'llmtui[{extra}]'"


def have(module: str) -> bool:
    """Is the module installed (found, not imported)?"""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_extras() -> list[Check]:
    out: list[Check] = []
    for extra, modules in EXTRAS.items():
        absent = [m for m in modules if not have(m)]
        if absent:
            out.append(Check("extras", extra, "missing",
                             f"not installed ({EXTRA_USES[extra]}; no {', '.join(absent)})",
                             pip_install(extra)))
        else:
            out.append(Check("extras", extra, "ok", f"installed ({EXTRA_USES[extra]})"))
    return out


def check_versions() -> list[Check]:
    from importlib import metadata

    import llmtui

    out = [Check("versions", "python", "info",
                 f"{sys.version.split()[0]} ({sys.executable})")]
    for dist in VERSIONS:
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        if dist == "llmtui" and version != llmtui.__version__:
            out.append(Check("versions", dist, "broken",
                             f"installed metadata says {version}, the code is "
                             f"{llmtui.__version__}", f"{Path(sys.executable).name} -m pip "
                             "install --force-reinstall llmtui"))
        else:
            out.append(Check("versions", dist, "info", version))
    return out


def check_machine(m: Machine) -> list[Check]:
    from llmtui.cli.output import human_size

    out = [
        Check("machine", "system", "info", f"{m.system} {m.arch}"),
        Check("machine", "cpu", "info",
              f"{m.cpu}: {m.cores_physical} cores ({m.cores_logical} threads), "
              f"{m.cpu_score:.0f} MB/s SHA-256 on one core"),
        Check("machine", "memory", "info",
              f"{human_size(m.ram_total)} RAM, {human_size(m.ram_available)} free, "
              f"{m.bandwidth / 1e9:.1f} GB/s measured copy bandwidth"),
    ]
    if m.disk_free < LOW_DISK:
        out.append(Check("machine", "disk", "warn",
                         f"{human_size(m.disk_free)} free in {m.models_dir}: too little for "
                         "most models", "llm config set models_dir /a/bigger/disk"))
    else:
        out.append(Check("machine", "disk", "ok",
                         f"{human_size(m.disk_free)} free in {m.models_dir}"))
    return out


def _gpu_hardware() -> list[tuple[str, str]]:
    """GPUs the system has (whatever the llama.cpp build can use): (kind, how we know)."""
    found: list[tuple[str, str]] = []
    if shutil.which("nvidia-smi") or Path("/proc/driver/nvidia/version").exists():
        found.append(("CUDA", "an NVIDIA driver is installed"))
    if Path("/dev/kfd").exists():
        found.append(("HIP", "/dev/kfd (AMD ROCm) exists"))
    if sys.platform == "darwin" and os.uname().machine == "arm64":
        found.append(("Metal", "Apple silicon"))
    return found


_REBUILD = {
    "CUDA": "-DGGML_CUDA=on", "HIP": "-DGGML_HIP=on", "Metal": "-DGGML_METAL=on",
    "Vulkan": "-DGGML_VULKAN=on",
}


def rebuild_command(flag: str) -> str:
    return (f'CMAKE_ARGS="{flag}" {Path(sys.executable).name} -m pip install --force-reinstall '
            "--no-cache-dir llama-cpp-python")


def check_llama(m: Machine) -> list[Check]:
    from llmtui.cli.output import human_size

    if not have("llama_cpp"):
        return []  # the extras check already says how to install it
    build = m.llama
    if build is None:
        return [Check("llama.cpp", "library", "broken",
                      "llama_cpp is installed but its shared library does not load",
                      f"{Path(sys.executable).name} -m pip install --force-reinstall "
                      "--no-cache-dir llama-cpp-python")]
    out = [Check("llama.cpp", "build", "info", f"llama-cpp-python {build.version}; "
                 f"backends: {', '.join(build.backends) or '?'}"),
           Check("llama.cpp", "flags", "info", build.system_info)]
    gpus = build.gpus
    for dev in gpus:
        out.append(Check("llama.cpp", f"gpu {dev.name}", "ok",
                         f"{dev.description}, {human_size(dev.memory_total)} "
                         f"({human_size(dev.memory_free)} free): layers offload here"))
    if not gpus:
        missing = [(k, why) for k, why in _gpu_hardware() if k not in build.backends]
        for kind, why in missing:
            out.append(Check("llama.cpp", "gpu", "warn",
                             f"{why}, but this llama.cpp build has no {kind} backend: models "
                             "run on the CPU", rebuild_command(_REBUILD[kind])))
        if not missing:
            note = (" (the build can offload over RPC only)" if build.gpu_offload else "")
            out.append(Check("llama.cpp", "gpu", "info", "no GPU: models run on the CPU" + note))
    return out


def check_backends() -> list[Check]:
    from llmtui import plugins

    loaded, failed = plugins.load_all("llmtui.backends")
    out = [Check("backends", p.name, "ok",
                 f"{p.value} ({'built in' if p.builtin else p.dist + ' ' + p.version})")
           for p, _ in loaded]
    out += [Check("backends", p.name, "broken", f"{p.value} does not load: {why}",
                  f"{Path(sys.executable).name} -m pip install --force-reinstall {p.dist}")
            for p, why in failed]
    return out


def check_audio() -> list[Check]:
    if not have("sounddevice"):
        return []  # the voice extra is reported missing already
    try:
        import sounddevice

        devices = list(sounddevice.query_devices())
    except OSError as exc:  # PortAudio absent: sounddevice fails at import
        fix = ("brew install portaudio" if sys.platform == "darwin"
               else "sudo apt-get install libportaudio2")
        return [Check("audio", "portaudio", "broken", f"sounddevice cannot load PortAudio "
                      f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})", fix)]
    except Exception as exc:  # (a driver error is a finding, not a crash)
        return [Check("audio", "devices", "warn", f"cannot list audio devices: {exc}")]
    inputs = [d["name"] for d in devices if int(d.get("max_input_channels", 0)) > 0]
    outputs = [d["name"] for d in devices if int(d.get("max_output_channels", 0)) > 0]
    out = []
    out.append(Check("audio", "input", "ok" if inputs else "warn",
                     f"{len(inputs)} input device(s)" + (f": {inputs[0]}" if inputs else
                                                         " (llm listen needs a microphone; "
                                                         "files still work)")))
    out.append(Check("audio", "output", "ok" if outputs else "warn",
                     f"{len(outputs)} output device(s)" + (f": {outputs[0]}" if outputs else
                                                          " (llm speak can still write files)")))
    return out


def check_home(settings: Any) -> list[Check]:
    from llmtui.daemon import lifecycle

    out: list[Check] = []
    try:
        models = settings.store().models()
    except Exception as exc:  # (an unreadable store is a finding)
        models = []
        out.append(Check("models", "store", "broken", f"cannot read {settings.models_dir}: "
                         f"{exc}", f"ls -ld {settings.models_dir}"))
    if models:
        out.append(Check("models", "installed", "ok", f"{len(models)} model(s): "
                         + ", ".join(sorted(m.name for m in models)[:6])
                         + (" ..." if len(models) > 6 else "")))
    else:
        out.append(Check("models", "installed", "warn", "no models installed", "llm setup"))
    default = str(settings.config.get("default_model"))
    if models and default not in {m.name for m in models}:
        out.append(Check("models", "default", "warn", f"the default model {default} is not "
                         "installed", f"llm pull {default}"))
    try:
        live = lifecycle.running(settings)
    except Exception as exc:
        live = None
        out.append(Check("daemon", "status", "warn", f"cannot ask the daemon: {exc}"))
    else:
        import llmtui

        if live is None:
            out.append(Check("daemon", "status", "info",
                             "not running (it starts on the first command that needs it)"))
        elif live.get("version") not in (None, llmtui.__version__):
            out.append(Check("daemon", "status", "warn", f"running version {live['version']}, "
                             f"this is {llmtui.__version__}", "llm daemon restart"))
        else:
            out.append(Check("daemon", "status", "ok", f"running (pid {live.get('pid')})"))
    out.append(check_offline(settings))
    return out


def check_offline(settings: Any) -> Check:
    """The offline switch: on, everything that would leave this machine is refused."""
    from llmtui import net

    if not net.offline(settings):
        return Check("network", "offline", "info", "off: pulls and downloads may reach the "
                     "network (nothing else leaves this machine)")
    how = net.OFFLINE_ENV if net.set_by_env() else "the config's offline key"
    return Check("network", "offline", "ok", f"on ({how}): every outbound connection is "
                 "refused; loopback and the socket still work")


def check_shell() -> list[Check]:
    from llmtui.cli.shell import detect_shell, target

    shell = detect_shell()
    path = target(shell)
    if path.exists():
        return [Check("shell", "completion", "ok", f"{shell} completion in {path}")]
    return [Check("shell", "completion", "info", f"{shell} completion not installed",
                  f"llm completion install {shell}")]


def run_checks(settings: Any, machine: Machine) -> list[Check]:
    """Every check, in the order `llm doctor` prints them."""
    out: list[Check] = []
    for step in (check_versions, check_extras, lambda: check_machine(machine),
                 lambda: check_llama(machine), check_backends, check_audio,
                 lambda: check_home(settings), check_shell):
        try:
            out += step()
        except Exception as exc:  # (one failing check must not hide the rest)
            out.append(Check("doctor", getattr(step, "__name__", "check"), "warn",
                             f"this check failed: {type(exc).__name__}: {exc}"))
    return out


def config_problem(exc: BaseException) -> Check:
    return Check("config", "file", "broken", str(exc), "llm config edit")

