"""Helpers for plugin tests: install the real example plugin into a folder, or lay out a
small distribution by hand (to force the faults a broken plugin brings)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "llmtui-docx"


def install_example(target: Path, work: Path) -> Path:
    """pip-install examples/llmtui-docx into ``target`` (a folder for PYTHONPATH), offline:
    built from a copy (so the repository stays clean) with the venv's setuptools."""
    src = work / "llmtui-docx"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                          "--no-build-isolation", "--no-index", "--target", str(target),
                          str(src)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (target / "llmtui_docx").is_dir()
    return target


def make_dist(site: Path, name: str, entry_points: dict[str, dict[str, str]],
              modules: dict[str, str] | None = None) -> None:
    """An installed distribution in ``site``: its modules and a dist-info with entry points."""
    site.mkdir(parents=True, exist_ok=True)
    for filename, source in (modules or {}).items():
        (site / filename).write_text(source, encoding="utf-8")
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{ep} = {value}" for ep, value in eps.items()]
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))


def make_docx(path: Path, heading: str, paragraphs: list[str],
              table: list[list[str]] | None = None) -> Path:
    import docx

    document = docx.Document()
    document.add_heading(heading, 1)
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, text in enumerate(row):
                grid.rows[r].cells[c].text = text
    document.save(str(path))
    return path
