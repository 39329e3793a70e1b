"""A RAG reader from a plugin: the example .docx reader, installed by pip into a folder on
PYTHONPATH, used by the real daemon to ingest Word files, with citations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.plugintools import install_example, make_docx


@pytest.fixture(scope="module")
def docx_rag(rag, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    work = tmp_path_factory.mktemp("docx-plugin")
    site = install_example(work / "site", work)
    rag.env["PYTHONPATH"] = str(site)  # the daemon this module starts inherits it
    return rag


def test_docx_files_are_ingested_and_cited(docx_rag) -> None:  # type: ignore[no-untyped-def]
    rag = docx_rag
    office = Path(rag.cwd) / "office"
    office.mkdir()
    make_docx(office / "memo.docx", "Quarterly memo",
              ["Budget talks went well.",
               "The Vantablue project ships on the ninth of March.",
               "Ingrid Solberg leads the rollout in Bergen."],
              [["room", "owner"], ["Aurora", "Petter"]])
    (office / "broken.docx").write_bytes(b"PK\x03\x04 this is no Word file")
    (office / "notes.md").write_text("# Notes\n\nThe coffee machine is on floor three.\n")
    res = rag("rag", "add", "office/", "-c", "office")
    assert res.returncode == 0, res.stderr
    assert "2 added" in res.stderr and "1 skipped" in res.stderr, res.stderr
    assert "broken.docx" in res.stderr and "not a Word document" in res.stderr
    res = rag("rag", "query", "When does the Vantablue project ship?", "-c", "office",
              "--no-answer", "-k", "1")
    assert res.returncode == 0, res.stderr
    top = json.loads(res.stdout)[0]
    assert top["citation"] == "office/memo.docx:3"  # paragraph 3 (the heading is 1)
    assert "ninth of March" in top["text"]
    shown = json.loads(rag("rag", "show", "office", "--json").stdout)
    kinds = {Path(f["name"]).name: f["kind"] for f in shown["files"]}
    assert kinds == {"memo.docx": "docx", "notes.md": "markdown"}
