"""How CLI commands reach the engine: the daemon (autostarted) or in-process (--no-daemon)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

#: Set by the root callback's --no-daemon flag.
NO_DAEMON = False


def no_daemon() -> bool:
    return NO_DAEMON or os.environ.get("LLMTUI_NO_DAEMON", "") not in ("", "0", "false")


@contextlib.contextmanager
def connect() -> Iterator[Any]:
    """A Client for this command: the shared daemon, or a private in-process engine."""
    from llmtui.config import Settings
    from llmtui.daemon.client import Client

    settings = Settings.load()
    if no_daemon():
        from llmtui.daemon.server import InProcessServer

        with InProcessServer(settings) as server:
            yield Client(socket=server.endpoint, settings=settings, api_key=server.token)
    else:
        yield Client(settings=settings)
