"""The `llm` console script. `llm --help` is answered from the help cache when it is
current (see helpcache.py); everything else goes to the Typer app in app.py."""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] in (["--help"], ["-h"]):
        from llmtui.cli import helpcache

        text = helpcache.cached()
        if text is not None:
            try:
                sys.stdout.write(text)
                sys.stdout.flush()
            except BrokenPipeError:  # `llm --help | head -3`
                import os

                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return
    from llmtui.cli.app import main as run

    run()
