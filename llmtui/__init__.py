"""llmtui: run language models locally from the terminal.

``llmtui.Client`` and ``llmtui.AsyncClient`` are the Python SDK (imported lazily so that
``import llmtui`` stays light).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typing costs milliseconds at run time, and `llm --help` counts them
    from typing import Any

__version__ = "0.1.0"

__all__ = ["AsyncClient", "Client", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Client", "AsyncClient"):
        from llmtui.daemon import client

        return getattr(client, name)
    raise AttributeError(name)
