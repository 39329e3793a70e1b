"""`llm rag` end to end: a real daemon, the real embedding and chat models, real LanceDB."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import one_line_error
from tests.rag.pdfgen import encrypt, make_pdf


def chunks_for(rag, question: str, coll: str, *extra: str) -> list[dict]:
    res = rag("rag", "query", question, "-c", coll, "--no-answer", *extra)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_add_query_with_citations(rag) -> None:
    res = rag("rag", "add", "docs/", "-c", "mydocs")
    assert res.returncode == 0, res.stderr
    assert "5 added" in res.stderr, res.stderr
    # Each kind of file answers with its own citation: file:line, or file:page for PDFs.
    cases = [
        ("How many days are nightly backups kept?", "docs/guide.md:11"),
        ("What is the lighthouse project budget?", "docs/notes.txt:3"),
        ("How long should pancake batter rest?", "docs/sub/recipes.html:7"),
        ("How big is the telescope mirror?", "docs/report.pdf:2"),
        ("When did the Glimmerfield observatory open?", "docs/report.pdf:1"),
        ("function that computes the area of a circle", "docs/sub/geometry.py:6"),
    ]
    for question, citation in cases:
        chunks = chunks_for(rag, question, "mydocs")
        assert chunks, question
        assert chunks[0]["citation"] == citation, (question, chunks[0])
        assert set(chunks[0]) >= {"citation", "source", "score", "similarity", "text"}
    # -k bounds the count; sources are absolute paths, names relative to where we ran it.
    chunks = chunks_for(rag, "Zorblat", "mydocs", "-k", "2", "--min-similarity", "-1")
    assert len(chunks) == 2
    assert all(Path(c["source"]).is_absolute() for c in chunks)


def test_answer_cites_its_sources(rag) -> None:
    res = rag("ask", "--rag", "mydocs", "-n", "24", "--temperature", "0",
              "How many days are nightly backups kept?")
    assert res.returncode == 0, res.stderr
    assert "Sources:" in res.stdout
    assert "[1] docs/guide.md:11" in res.stdout
    res = rag("rag", "query", "How many days are nightly backups kept?", "-c", "mydocs",
              "-m", "smollm2:135m", "-k", "1", timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.rstrip().endswith("[1] docs/guide.md:11")


def test_nothing_relevant_says_so(rag) -> None:
    question = "What is the airspeed velocity of an unladen swallow?"
    res = rag("rag", "query", question, "-c", "mydocs")
    assert res.returncode == 0, res.stderr
    assert "Nothing in 'mydocs' is relevant" in res.stdout
    assert "Sources:" not in res.stdout
    assert chunks_for(rag, question, "mydocs") == []


def test_show_ls_and_incremental_updates(rag, tmp_path: Path) -> None:
    res = rag("rag", "show", "mydocs", "--json")
    data = json.loads(res.stdout)
    assert data["model"] == "all-minilm:l6-v2" and data["dimensions"] == 384
    names = sorted(f["name"] for f in data["files"])
    assert names == ["docs/guide.md", "docs/notes.txt", "docs/report.pdf",
                     "docs/sub/geometry.py", "docs/sub/recipes.html"]
    assert next(f for f in data["files"] if f["kind"] == "pdf")["pages"] == 2
    res = rag("rag", "ls")
    assert "mydocs" in res.stdout and "all-minilm:l6-v2" in res.stdout
    # Unchanged files are skipped; a changed file replaces its chunks.
    res = rag("rag", "add", "docs/", "-c", "mydocs")
    assert "0 added, 0 updated, 5 unchanged" in res.stderr, res.stderr
    notes = rag.cwd / "docs" / "notes.txt"
    original = notes.read_text()
    try:
        notes.write_text(original.replace("48,000 euros", "95,500 euros"))
        res = rag("rag", "add", "docs/", "-c", "mydocs")
        assert "0 added, 1 updated, 4 unchanged" in res.stderr, res.stderr
        chunks = chunks_for(rag, "What is the lighthouse project budget?", "mydocs")
        texts = " ".join(c["text"] for c in chunks)
        assert "95,500" in texts and "48,000" not in texts
    finally:
        notes.write_text(original)
        rag("rag", "add", "docs/", "-c", "mydocs")
    total = json.loads(rag("rag", "show", "mydocs", "--json").stdout)["chunks"]
    assert total == data["chunks"]


def test_stdin_document(rag) -> None:
    res = rag("rag", "add", "-", "-c", "piped", "--name", "memo",
              input="The secret launch code for the Verdigris rocket is amber-falcon-42.\n")
    assert res.returncode == 0, res.stderr
    chunks = chunks_for(rag, "What is the Verdigris launch code?", "piped")
    assert chunks[0]["citation"] == "memo:1" and "amber-falcon-42" in chunks[0]["text"]


def test_bad_files_are_skipped_and_the_rest_ingested(rag, tmp_path: Path) -> None:
    mixed = rag.cwd / "mixed"
    mixed.mkdir()
    pdf = make_pdf([["The quartz clock tower chimes every fifteen minutes."]])
    (mixed / "locked.pdf").write_bytes(encrypt(pdf))
    (mixed / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj garbage")
    (mixed / "empty.txt").write_bytes(b"")
    (mixed / "program.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 40)
    (mixed / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    (mixed / "latin1.txt").write_bytes(
        "Le gâteau du café Mélodie coûte 7 euros.".encode("cp1252"))
    (mixed / "good.md").write_text("# Harbour\n\nThe ferry to Kestrel Island leaves at 9:40.\n")
    with (mixed / "huge.txt").open("wb") as fh:  # 50 MB: over the default 20 MB limit
        line = b"filler text for a very large file that should not be ingested\n"
        fh.write(line * (50_000_000 // len(line) + 1))
    res = rag("rag", "add", "mixed", "-c", "mixed")
    assert res.returncode == 0, res.stderr
    err = res.stderr
    assert "skipped mixed/locked.pdf: encrypted PDF" in err
    assert "skipped mixed/broken.pdf: cannot read the PDF" in err
    assert "skipped mixed/empty.txt: empty file" in err
    assert "skipped mixed/program.txt: binary file" in err
    assert "skipped mixed/photo.png: unsupported type (.png)" in err
    assert "skipped mixed/huge.txt: larger than the 20 MB limit" in err
    assert "mixed/latin1.txt: not UTF-8" in err
    assert "2 added" in err and "6 skipped" in err, err
    assert "Traceback" not in err
    assert chunks_for(rag, "When does the ferry to Kestrel Island leave?",
                      "mixed")[0]["citation"] == "mixed/good.md:3"
    latin = chunks_for(rag, "How much is the cake at café Mélodie?", "mixed")
    assert latin[0]["name"] == "mixed/latin1.txt" and "gâteau" in latin[0]["text"]


@pytest.mark.parametrize("name", ["a/b", "..", "../etc", "x..y", "", "-x", "a b"])
def test_bad_collection_names(rag, name: str) -> None:
    for args in (["rag", "add", "docs/", "-c", name], ["rag", "query", "q", "-c", name],
                 ["rag", "rm", name]):
        res = rag(*args)
        assert res.returncode in (2, 4), (args, res.stderr)
        if res.returncode == 4:
            assert "invalid collection name" in one_line_error(res.stderr)
    assert not (rag.home / "data" / "rag" / "b.json").exists()


def test_missing_collection_and_path(rag) -> None:
    res = rag("rag", "query", "anything", "-c", "nope")
    assert res.returncode == 16
    assert "no collection named 'nope'" in one_line_error(res.stderr)
    res = rag("rag", "show", "nope")
    assert res.returncode == 16
    res = rag("rag", "add", "no/such/folder", "-c", "x")
    assert res.returncode == 4
    assert "no such file or folder" in one_line_error(res.stderr)


def test_other_embedding_model_is_refused(rag) -> None:
    # smollm2 can embed too (576 dimensions): mixing models in one collection is an error.
    res = rag("rag", "add", "docs/guide.md", "-c", "mydocs", "-m", "smollm2:135m")
    assert res.returncode == 17
    assert "built with all-minilm:l6-v2" in one_line_error(res.stderr)


def test_rm(rag) -> None:
    res = rag("rag", "add", "docs/notes.txt", "-c", "temp")
    assert res.returncode == 0, res.stderr
    res = rag("rag", "rm", "temp")
    assert res.returncode == 0
    assert "temp" not in rag("rag", "ls").stdout
    assert rag("rag", "query", "budget", "-c", "temp").returncode == 16
    assert (rag.cwd / "docs" / "notes.txt").exists()  # the user's files are untouched


def test_interrupted_ingest_stays_consistent_and_rerun_completes(rag) -> None:
    big = rag.cwd / "many"
    big.mkdir()
    for i in range(40):
        paras = "\n\n".join(f"Document {i} paragraph {j}: the value of item {i}-{j} is "
                            f"{i * 100 + j}. " * 6 for j in range(8))
        (big / f"doc{i:02d}.md").write_text(f"# Document {i}\n\n{paras}\n")
    proc = rag.popen("rag", "add", "many", "-c", "many")
    assert proc.stderr is not None
    added = 0
    deadline = time.monotonic() + 120
    while added < 3 and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        added += line.startswith("added ")
    assert added >= 3
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    # The daemon notices the client left and stops between batches: wait until the
    # collection stops changing (a loaded machine may finish one more file first).
    done: list = []
    for _ in range(30):
        time.sleep(1.0)
        now = json.loads(rag("rag", "show", "many", "--json").stdout)["files"]
        if done and len(now) == len(done):
            break
        done = now
    assert 3 <= len(done) < 40
    # Every stored file is whole, and nothing half-written is visible.
    assert all(f["chunks"] > 0 for f in done)
    res = rag("rag", "add", "many", "-c", "many")
    assert res.returncode == 0, res.stderr
    assert f"{40 - len(done)} added" in res.stderr and f"{len(done)} unchanged" in res.stderr
    final = json.loads(rag("rag", "show", "many", "--json").stdout)
    assert len(final["files"]) == 40
    _assert_table_matches_manifest(rag.home, "many")
    hit = chunks_for(rag, "value of item 37-5", "many")[0]
    assert hit["name"] == "many/doc37.md"


def _assert_table_matches_manifest(home: Path, name: str) -> None:
    import lancedb

    meta = json.loads((home / "data" / "rag" / f"{name}.json").read_text())
    table = lancedb.connect(str(home / "data" / "rag" / "lancedb")).open_table(name)
    rows = table.search().select(["source", "hash"]).limit(table.count_rows()).to_list()
    per_file: dict[str, int] = {}
    for r in rows:
        assert meta["files"][r["source"]]["hash"] == r["hash"]
        per_file[r["source"]] = per_file.get(r["source"], 0) + 1
    assert per_file == {s: f["chunks"] for s, f in meta["files"].items()}


def test_leftovers_of_a_crash_are_invisible_then_swept(rag) -> None:
    """A daemon killed between writing chunks and the manifest leaves orphans: unseen."""
    import lancedb

    table = lancedb.connect(str(rag.home / "data" / "rag" / "lancedb")).open_table("mydocs")
    source = str(rag.cwd / "docs" / "guide.md")
    row = table.search().where(f"source = '{source}'").limit(1).to_list()[0]
    row = {k: v for k, v in row.items() if not k.startswith("_")}
    row.update(id="orphan-0", hash="f" * 64, text="Orphaned backups are kept for 999 days.")
    table.add([row])
    chunks = chunks_for(rag, "How many days are nightly backups kept?", "mydocs")
    assert all("999" not in c["text"] for c in chunks)
    res = rag("rag", "add", "docs/", "-c", "mydocs")
    assert "cleaned 1 chunks left by an interrupted ingest" in res.stderr, res.stderr
    _assert_table_matches_manifest(rag.home, "mydocs")


def test_watch_follows_a_folder(rag) -> None:
    folder = rag.cwd / "watched"
    folder.mkdir()
    (folder / "a.md").write_text("# Alpha\n\nThe alpha code word is pineapple.\n")
    proc = rag.popen("rag", "watch", "watched", "-c", "watched", "--interval", "0.3")

    def files() -> list[str]:
        res = rag("rag", "show", "watched", "--json")
        if res.returncode != 0:
            return []
        return sorted(f["name"] for f in json.loads(res.stdout)["files"])

    def wait_for(expected: list[str]) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if files() == expected:
                return
            time.sleep(0.3)
        raise AssertionError(f"collection has {files()}, expected {expected}")

    try:
        wait_for(["watched/a.md"])
        (folder / "b.md").write_text("# Beta\n\nThe beta code word is walnut.\n")
        wait_for(["watched/a.md", "watched/b.md"])
        (folder / "a.md").write_text("# Alpha\n\nThe alpha code word is now coconut.\n")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            chunks = chunks_for(rag, "alpha code word", "watched")
            if chunks and "coconut" in chunks[0]["text"]:
                break
            time.sleep(0.3)
        else:
            raise AssertionError("the change to a.md was not picked up")
        os.remove(folder / "b.md")
        wait_for(["watched/a.md"])
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0
