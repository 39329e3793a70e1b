"""RAG fixtures: the real all-MiniLM-L6-v2 (converted from the package's safetensors by our
converter), the real chat model, a real daemon, and a small corpus with known facts."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LLM, stop_daemon_of
from tests.rag.pdfgen import make_pdf


@pytest.fixture(scope="session")
def minilm_gguf(models_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from llmtui.models.convert import sentence_transformer_to_gguf

    out = tmp_path_factory.mktemp("minilm") / "all-MiniLM-L6-v2.F16.gguf"
    sentence_transformer_to_gguf(models_cache / "all-minilm-l6-v2.zip", out,
                                 name="all-MiniLM-L6-v2")
    return out


class Rag:
    """Runs the real `llm` in a subprocess under one home, from a chosen folder."""

    def __init__(self, home: Path, cwd: Path) -> None:
        self.home = home
        self.cwd = cwd
        self.env = {**os.environ, "LLMTUI_HOME": str(home), "NO_COLOR": "1",
                    "LLMTUI_IDLE_TIMEOUT": "300"}
        self.env.pop("LLMTUI_NO_DAEMON", None)
        self.env.pop("LLMTUI_MODELS", None)

    def __call__(self, *args: str, input: str | bytes | None = None, timeout: float = 180,
                 cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        data = input.encode() if isinstance(input, str) else input
        res = subprocess.run([*LLM, *args], input=data, capture_output=True,
                             timeout=timeout, env=self.env, cwd=cwd or self.cwd)
        return subprocess.CompletedProcess(res.args, res.returncode,
                                           res.stdout.decode("utf-8", "replace"),
                                           res.stderr.decode("utf-8", "replace"))

    def popen(self, *args: str, cwd: Path | None = None, **kw: Any) -> subprocess.Popen[str]:
        return subprocess.Popen([*LLM, *args], env=self.env, cwd=cwd or self.cwd, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


GUIDE = """# Zorblat user guide

Zorblat is a fictional tool used to test retrieval.

## Installing

Install Zorblat with `pipx install zorblat`. It needs Python 3.11 or newer.

## Backups

Zorblat keeps nightly backups for 17 days in the vault folder. Older backups are
deleted automatically at 03:00 local time.

```sh
zorblat backup --now   # take a backup right away
```

## Colours

The default theme is called Mossy Teal. You can switch to Ember with `zorblat theme ember`.
"""

NOTES = """Meeting notes, March.

The quarterly budget for the lighthouse project is 48,000 euros.
Maria leads the lighthouse project; Tomas handles procurement.

The next review meeting is on the first Tuesday of April.
"""

HTML = """<!doctype html>
<html><head><title>Recipes</title><style>body { color: red }</style>
<script>var secret = "never index scripts";</script></head>
<body>
<h1>Pancakes</h1>
<p>Whisk two eggs with 300 ml of milk and 200 g of flour.</p>
<p>Rest the batter for thirty minutes before frying.</p>
</body></html>
"""

CODE = '''"""Geometry helpers."""

import math


def circle_area(radius: float) -> float:
    """The area of a circle of the given radius."""
    return math.pi * radius ** 2


class Rectangle:
    def __init__(self, w: float, h: float) -> None:
        self.w, self.h = w, h

    def area(self) -> float:
        return self.w * self.h
'''


def write_corpus(root: Path) -> Path:
    docs = root / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "guide.md").write_text(GUIDE)
    (docs / "notes.txt").write_text(NOTES)
    (docs / "sub" / "recipes.html").write_text(HTML)
    (docs / "sub" / "geometry.py").write_text(CODE)
    (docs / "report.pdf").write_bytes(make_pdf([
        ["Annual report of the Glimmerfield observatory.",
         "The observatory opened to the public in 1987."],
        ["The main telescope has a mirror of 2.4 metres.",
         "It was built by the Halvorsen optical works."],
    ]))
    return docs


@pytest.fixture(scope="module")
def rag(tmp_path_factory: pytest.TempPathFactory, smollm: Path,
        minilm_gguf: Path) -> Iterator[Rag]:
    """A home with the chat and embedding models, the corpus in its working folder."""
    root = tmp_path_factory.mktemp("rag")
    home = root / "home"
    runner = Rag(home, root)
    for path, name in ((smollm, "smollm2:135m"), (minilm_gguf, "all-minilm:l6-v2")):
        res = runner("import", str(path), "--name", name)
        assert res.returncode == 0, res.stderr
    write_corpus(root)
    try:
        yield runner
    finally:
        stop_daemon_of(home)
