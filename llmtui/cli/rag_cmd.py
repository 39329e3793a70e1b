"""`llm rag ...`, `llm embed` and `llm ask --rag`: clients of the daemon's RAG endpoints.

The daemon reads, chunks, embeds and stores (it keeps LanceDB and the embedding model
warm); this side sends absolute paths, renders progress on stderr and prints results.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import typer

from llmtui.cli.common import Quiet, build_options, rag_answer, read_stdin, silence_stdout, write
from llmtui.cli.output import info, print_json, print_table
from llmtui.errors import InvalidInput, ModelNotFound

app = typer.Typer(help="Collections of your documents: add, query with citations, watch.",
                  no_args_is_help=True, rich_markup_mode=None)

CollOpt = typer.Option("default", "--collection", "-c", help="Collection name.")


def _warn(message: str) -> None:
    sys.stderr.write(f"llm: warning: {message}\n")


class IngestProgress:
    """A chunk-count bar per file on a terminal; a few plain lines otherwise."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self._progress: Any = None
        self._task: Any = None
        self._label = ""

    def __enter__(self) -> IngestProgress:
        if self.tty and not self.quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            from llmtui.cli.output import stderr_console

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TextColumn("chunks"),
                                      console=stderr_console(), transient=True)
            self._progress.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def line(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            sys.stderr.write(text + "\n")

    def __call__(self, event: dict[str, Any]) -> None:
        status = str(event.get("status", ""))
        if status in ("skipped", "warning"):
            verb = "skipped" if status == "skipped" else "note:"
            msg = f"{verb} {event.get('name')}: {event.get('reason')}"
            if self._progress is not None:
                self.line("warning: " + msg)
            else:
                _warn(msg)
            return
        if self.quiet:
            return
        if "total" in event and "completed" in event:
            if self._progress is not None:
                if status != self._label:
                    if self._task is not None:
                        self._progress.remove_task(self._task)
                    self._task = self._progress.add_task(status, total=event["total"])
                    self._label = status
                self._progress.update(self._task, completed=event["completed"])
            return
        if status in ("added", "updated"):
            self.line(f"{status} {event.get('name')} ({event.get('chunks')} chunks)")
        elif status == "removed":
            self.line(f"removed {event.get('name')}")
        elif status and status not in ("unchanged", "success"):
            self.line(status)


def _ensure_embed_model(client: Any, model: str) -> None:
    """The default embedding model is pulled on first use, as `llm run` would."""
    try:
        client.show(model)
        return
    except ModelNotFound:
        from llmtui.models.catalog import load_catalog

        if model not in load_catalog():
            raise
    from llmtui.cli.progress import PullProgress

    info(f"pulling the embedding model {model} (once)")
    with PullProgress() as progress:
        for event in client.pull(model):
            progress(event)


def _read_stdin_bytes() -> bytes:
    if sys.stdin is None or sys.stdin.isatty():
        raise InvalidInput("'-' reads stdin, but stdin is a terminal; pipe text in")
    return sys.stdin.buffer.read()


def _summary(name: str, s: dict[str, Any]) -> str:
    rate = s["new_chunks"] / s["seconds"] if s.get("seconds") else 0.0
    parts = [f"{s['added']} added", f"{s['updated']} updated", f"{s['unchanged']} unchanged"]
    if s.get("removed"):
        parts.append(f"{s['removed']} removed")
    if s.get("skipped"):
        parts.append(f"{s['skipped']} skipped")
    return (f"{name}: " + ", ".join(parts) + f" · {s['new_chunks']} chunks embedded in "
            f"{s['seconds']:.1f} s ({rate:.0f}/s) · now {s['files']} files, "
            f"{s['chunks']} chunks")


def _add(client: Any, name: str, paths: list[str], model: str | None, *,
         max_size: str | None = None, prune: bool = False, doc_name: str = "stdin",
         quiet: bool = False) -> dict[str, Any]:
    from llmtui.config import Settings

    embed_model = model or str(Settings.load().config.get("embed_model"))
    body: dict[str, Any] = {"model": embed_model, "prune": prune}
    files = [p for p in paths if p != "-"]
    for p in files:
        if not Path(p).expanduser().exists():
            raise InvalidInput(f"no such file or folder: {p}")
    body["paths"] = [str(Path(p).expanduser().absolute()) for p in files]
    body["cwd"] = os.getcwd()
    if "-" in paths:
        data = _read_stdin_bytes()
        body["documents"] = [{"name": doc_name, "data": base64.b64encode(data).decode()}]
    if max_size:
        body["max_size"] = max_size
    _ensure_embed_model(client, embed_model)
    final: dict[str, Any] = {}
    with IngestProgress(quiet=quiet) as progress:
        it = client.stream(f"/api/x/rag/{name}/add", body)
        try:
            for event in it:
                if event.get("status") == "success":
                    final = event
                else:
                    progress(event)
        finally:
            it.close()  # Ctrl-C: the daemon stops between batches; stored files stay whole
    return final


def add(
    paths: list[str] = typer.Argument(..., help="Files or folders; '-' reads stdin."),
    collection: str = CollOpt,
    model: str | None = typer.Option(None, "--model", "-m",
                                     help="Embedding model (default: embed_model setting)."),
    max_size: str | None = typer.Option(None, "--max-size",
                                        help="Skip larger files (default 20MB)."),
    prune: bool = typer.Option(False, "--prune",
                               help="Drop files that were under these folders but are gone."),
    name: str = typer.Option("stdin", "--name", help="Name that cites stdin ('-')."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Add files and folders (PDF, Markdown, text, HTML, code) to a collection."""
    from llmtui.cli.session import connect
    from llmtui.rag.index import check_name

    check_name(collection)
    with connect() as client:
        final = _add(client, collection, paths, model, max_size=max_size, prune=prune,
                     doc_name=name, quiet=quiet)
    if json_out:
        print_json(final)
    elif not quiet and final:
        info(_summary(collection, final))


def ls() -> None:
    """List collections."""
    from llmtui.cli.session import connect

    with connect() as client:
        items = client.request("GET", "/api/x/rag")["collections"]
    rows = [[c["name"], c.get("model", "?"), str(c.get("files", "")), str(c.get("chunks", "")),
             time.strftime("%Y-%m-%d %H:%M", time.localtime(c["updated_at"]))
             if c.get("updated_at") else c.get("error", "")] for c in items]
    print_table(None, ["name", "model", "files", "chunks", "updated"], rows)


def show(name: str = typer.Argument(..., help="Collection name."),
         json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """A collection's model, dimensions and files."""
    from llmtui.cli.session import connect
    from llmtui.rag.index import check_name

    with connect() as client:
        data = client.request("GET", f"/api/x/rag/{check_name(name)}")
    if json_out:
        print_json(data)
        return
    print_table(None, ["field", "value"], [
        ["name", data["name"]], ["model", data["model"]],
        ["dimensions", str(data["dimensions"])], ["files", str(len(data["files"]))],
        ["chunks", str(data["chunks"])], ["bytes", f"{data['bytes']:,}"]])
    if data["files"]:
        sys.stdout.write("\n")
        print_table(None, ["file", "chunks", "kind", "pages"],
                    [[f["name"], str(f["chunks"]), f["kind"], str(f["pages"] or "")]
                     for f in data["files"]])


def rm(name: str = typer.Argument(..., help="Collection name.")) -> None:
    """Remove a collection (your files are not touched)."""
    from llmtui.cli.session import connect
    from llmtui.rag.index import check_name

    with connect() as client:
        client.request("DELETE", f"/api/x/rag/{check_name(name)}")
    info(f"removed collection {name}")


def query(
    question: list[str] = typer.Argument(..., help="The question."),
    collection: str = CollOpt,
    k: int = typer.Option(5, "-k", "--top-k", help="Chunks to retrieve (1-50)."),
    no_answer: bool = typer.Option(False, "--no-answer",
                                   help="Print the retrieved chunks as JSON; no model."),
    model: str | None = typer.Option(None, "--model", "-m", help="Chat model for the answer."),
    min_similarity: float | None = typer.Option(
        None, "--min-similarity", help="Drop chunks less similar than this (default 0.35)."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", "-n",
                                          help="Stop the answer after this many tokens."),
) -> None:
    """Answer a question from a collection, citing file:page or file:line."""
    from llmtui.cli.session import connect
    from llmtui.rag.index import check_name

    q = " ".join(question).strip()
    if not q:
        raise InvalidInput("the question is empty")
    check_name(collection)
    with connect() as client:
        if no_answer:
            body: dict[str, Any] = {"query": q, "k": k}
            if min_similarity is not None:
                body["min_similarity"] = min_similarity
            data = client.request("POST", f"/api/x/rag/{collection}/query", body)
            print_json(data["chunks"])
            if data["nothing_relevant"]:
                info(f"nothing in '{collection}' is relevant to that question")
            return
        opts = build_options(model, None, None, None, max_tokens, None, None, False, True,
                             False)
        rag_answer(client, collection, q, k=k, model=opts.model, min_similarity=min_similarity,
               options=opts.options)


def watch(
    path: str = typer.Argument(..., help="Folder (or file) to keep in sync."),
    collection: str = CollOpt,
    model: str | None = typer.Option(None, "--model", "-m", help="Embedding model."),
    interval: float = typer.Option(2.0, "--interval", help="Seconds between checks."),
    max_size: str | None = typer.Option(None, "--max-size", help="Skip larger files."),
) -> None:
    """Keep a collection in sync with a folder: changed files re-ingest, deleted ones go."""
    from llmtui.cli.session import connect
    from llmtui.rag.index import check_name

    check_name(collection)
    if not Path(path).expanduser().exists():
        raise InvalidInput(f"no such file or folder: {path}")
    if not 0.1 <= interval <= 3600:
        raise InvalidInput("--interval must be from 0.1 to 3600 seconds")
    info(f"watching {path} for collection '{collection}' (Ctrl-C to stop)")
    seen: dict[str, tuple[float, int]] | None = None
    try:
        with connect() as client:
            while True:
                now = _snapshot(Path(path).expanduser())
                if now != seen:
                    final = _add(client, collection, [path], model, max_size=max_size,
                                 prune=True)
                    if final and (seen is None or final["added"] or final["updated"]
                                  or final["removed"]):
                        info(_summary(collection, final))
                    seen = now
                time.sleep(interval)
    except KeyboardInterrupt:
        info("stopped watching")


def _snapshot(root: Path) -> dict[str, tuple[float, int]]:
    """(mtime, size) of every file we would ingest: cheap change detection by polling."""
    if root.is_file():
        st = root.stat()
        return {str(root): (st.st_mtime, st.st_size)}
    from llmtui.rag.ingest import walk

    out: dict[str, tuple[float, int]] = {}
    for full in walk(root):
        with contextlib.suppress(OSError):  # deleted between the walk and the stat
            st = full.stat()
            out[str(full)] = (st.st_mtime, st.st_size)
    return out


# -- llm embed -----------------------------------------------------------------------------------


def embed(
    texts: list[str] = typer.Argument(None, help="Texts to embed, one vector each.",
                                      show_default=False),
    model: str | None = typer.Option(None, "--model", "-m",
                                     help="Embedding model (default: embed_model setting)."),
    whole: bool = typer.Option(False, "--whole",
                               help="Embed all of stdin as one text (default: each line)."),
    no_text: bool = typer.Option(False, "--no-text", help="Leave the text out of the output."),
) -> None:
    """Print embedding vectors as JSON lines: arguments, or stdin one line per text."""
    from llmtui.cli.session import connect
    from llmtui.config import Settings
    from llmtui.models.names import ModelName

    inputs = list(texts or [])
    if not inputs:
        stdin = read_stdin()
        if stdin is None:
            raise InvalidInput("nothing to embed: pass texts as arguments or pipe them in")
        inputs = [stdin] if whole else [ln for ln in stdin.splitlines() if ln.strip()]
    if not inputs or not any(s.strip() for s in inputs):
        raise InvalidInput("nothing to embed: the input is empty")
    name = str(ModelName.parse(model or str(Settings.load().config.get("embed_model"))))
    with connect() as client:
        _ensure_embed_model(client, name)
        try:
            for start in range(0, len(inputs), 64):
                batch = inputs[start:start + 64]
                vectors = client.embed(name, batch)["embeddings"]
                lines = []
                for i, (text, vec) in enumerate(zip(batch, vectors, strict=True), start):
                    item: dict[str, Any] = {"index": i, "model": name}
                    if not no_text:
                        item["text"] = text
                    item["embedding"] = vec
                    lines.append(json.dumps(item, ensure_ascii=False))
                write("\n".join(lines) + "\n")
        except Quiet:
            silence_stdout()


def register(root: typer.Typer) -> None:
    app.command("add")(add)
    app.command("ls")(ls)
    app.command("list", hidden=True)(ls)
    app.command("show")(show)
    app.command("rm")(rm)
    app.command("query")(query)
    app.command("watch")(watch)
    root.add_typer(app, name="rag")
    root.command("embed")(embed)
