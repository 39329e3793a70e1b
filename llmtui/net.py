"""Outbound connections: the offline switch, and dependencies' telemetry turned off.

llmtui sends nothing anywhere unless the user pulls a model (docs/guide.md, "Offline"). With
``LLMTUI_OFFLINE=1`` or ``llm config set offline true`` even that is refused: every place
that would connect out checks :func:`require_online` before it resolves a name, and the
CLI and daemon processes also install :func:`install_guard`, an audit hook that refuses
any name lookup or connection that is not loopback or a Unix socket (a dependency that
phones home fails instead of leaking). The daemon's socket, loopback TCP and the local
package cache keep working.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from typing import Any

from llmtui.errors import ExitCode, LlmtuiError

OFFLINE_ENV = "LLMTUI_OFFLINE"
#: Set beside LLMTUI_OFFLINE when it was copied from the config for child processes: the
#: config file stays the authority (`llm config set offline false` takes effect at once).
_FROM_CONFIG = "LLMTUI_OFFLINE_FROM_CONFIG"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class OfflineError(LlmtuiError):
    """Something needed the network while the offline switch is on."""

    exit_code = ExitCode.OFFLINE
    http_status = 403


def _env_switch() -> bool | None:
    value = os.environ.get(OFFLINE_ENV)
    if value is None:
        return None
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    from llmtui.errors import ConfigError

    raise ConfigError(f"{OFFLINE_ENV}={value!r}: expected 1 or 0 (true or false)")


def offline(settings: Any = None) -> bool:
    """Is the switch on? LLMTUI_OFFLINE wins over the config's ``offline`` key, which is
    read afresh (a daemon started earlier sees `llm config set offline true` at once)."""
    env = _env_switch()
    if env is not None and not os.environ.get(_FROM_CONFIG):
        return env
    from llmtui.config import Config, Settings

    if settings is None:
        settings = Settings.load()
    else:  # the file may have changed since these settings were loaded
        settings = Settings(settings.paths, Config.load(settings.paths.config_file))
    return bool(settings.config.get("offline"))


def set_by_env() -> bool:
    """Whether LLMTUI_OFFLINE (set by the user, not copied from the config) decides."""
    return _env_switch() is not None and not os.environ.get(_FROM_CONFIG)


def switch_source() -> str:
    """Where the switch is set, for messages: the variable or the config key."""
    if _env_switch() and set_by_env():
        return f"{OFFLINE_ENV}=1 is set"
    return "offline = true in the config; llm config set offline false turns it off"


def require_online(what: str, settings: Any = None) -> None:
    """Refuse, before any name lookup, work that needs the network while offline."""
    if offline(settings):
        raise OfflineError(f"offline: {what} needs the network ({switch_source()})")


# -- the process-wide guard ----------------------------------------------------------------

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
_installed = False


def is_local(host: Any) -> bool:
    """A name or address that never leaves this machine (None: a wildcard for binding)."""
    if host is None or host == "":
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    text = str(host).strip().lower().rstrip(".")
    if text in _LOOPBACK_NAMES or text.endswith(".localhost"):
        return True
    if text == socket.gethostname().lower():  # this machine (the TCP Host allowlist asks)
        return True
    try:
        addr = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return False
    return addr.is_loopback or addr.is_unspecified


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.getaddrinfo" or event == "socket.gethostbyname":
        host = args[0]
    elif event == "socket.connect" or event == "socket.sendto":
        sock, address = args[0], args[1]
        if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
            return  # Unix sockets (the daemon), netlink, ...
        host = address[0] if isinstance(address, tuple) else address
    elif event == "socket.gethostbyaddr":
        host = args[0]
    else:
        return
    if not is_local(host):
        if os.environ.get(_FROM_CONFIG) and not offline():
            return  # switched off in the config since this process started
        raise OfflineError(f"offline: a connection to {str(host)[:80]} was refused "
                           f"({switch_source()})")


def install_guard() -> None:
    """Refuse non-local lookups and connections in this process from now on (an audit
    hook cannot be removed: for processes that stay offline, the CLI and the daemon)."""
    global _installed
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True


# -- dependencies' telemetry ----------------------------------------------------------------

#: Switches that libraries we may load read before they would send usage data.
TELEMETRY_OFF = {"HF_HUB_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1",
                 "DISABLE_TELEMETRY": "1", "GRADIO_ANALYTICS_ENABLED": "False",
                 "RAY_USAGE_STATS_ENABLED": "0"}
#: And, when offline, those that keep the Hugging Face libraries off the network.
HUB_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


class _DeclineOpenVINO:
    """A meta-path finder: when OpenVINO's telemetry is imported (by a converter), its
    consent check answers "declined". It has no variable to turn it off, and writing its
    consent file would change the user's home for every OpenVINO program."""

    target = "openvino_telemetry.utils.opt_in_checker"

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != self.target:
            return None
        import importlib.machinery

        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        real = spec.loader

        import importlib.abc

        class Loader(importlib.abc.Loader):
            def create_module(self, spec: Any) -> Any:
                return real.create_module(spec)

            def exec_module(self, module: Any) -> None:
                real.exec_module(module)
                declined = module.ConsentCheckResult.DECLINED
                module.OptInChecker.check = lambda self, *a, **k: declined

        spec.loader = Loader()
        return spec


def quiet_dependencies(settings: Any = None) -> None:
    """Turn dependencies' telemetry off in this process and the workers it starts (they
    inherit the environment); when offline, also the hub libraries' network use and
    every other outbound connection (:func:`install_guard`)."""
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
    if not any(isinstance(f, _DeclineOpenVINO) for f in sys.meta_path):
        sys.meta_path.insert(0, _DeclineOpenVINO())
    try:
        is_offline = offline(settings)
    except LlmtuiError:
        return  # a broken config: the command reports it itself
    if is_offline:
        for key, value in HUB_OFFLINE.items():
            os.environ.setdefault(key, value)
        if not _env_switch():
            os.environ[_FROM_CONFIG] = "1"
        os.environ[OFFLINE_ENV] = "1"  # workers and helpers started from here stay offline
        install_guard()
