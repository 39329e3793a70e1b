"""RAG endpoints: collections of documents, hybrid retrieval, answers with citations.

    GET    /api/x/rag                     collections with their counts
    GET    /api/x/rag/{name}              one collection: model, dimensions, files
    DELETE /api/x/rag/{name}              remove it
    POST   /api/x/rag/{name}/add          ingest (NDJSON progress): {"paths"} or {"documents"}
    POST   /api/x/rag/{name}/query        retrieve; with "answer": true, answer with citations

``paths`` are read by the daemon, so they are accepted on the Unix socket only (the same
user); network clients send ``documents`` (name + text) instead.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from llmtui.api.common import error_body, first_event, now_rfc3339, unless_gone
from llmtui.api.ollama import NDJSON, OllamaAPI, done_reason, stats_fields
from llmtui.api.security import over_tcp
from llmtui.config import parse_size
from llmtui.errors import InvalidInput, LlmtuiError
from llmtui.models.names import ModelName
from llmtui.rag.answer import MIN_SIMILARITY, messages_for, nothing_found, relevant
from llmtui.rag.extract import kind_of
from llmtui.rag.index import Collection, Collections, check_name
from llmtui.rag.ingest import Document, collect, ingest

MAX_K = 50


class RagAPI:
    def __init__(self, ollama: OllamaAPI) -> None:
        self.o = ollama
        self.engine = ollama.engine
        self.colls = Collections(self.engine.settings.paths.data_dir)
        self._open: dict[str, Collection] = {}

    def routes(self) -> list[Any]:
        e = self.o.endpoint
        return [
            Route("/api/x/rag", e(self.collections), methods=["GET"]),
            Route("/api/x/rag/{name}", e(self.show), methods=["GET"]),
            Route("/api/x/rag/{name}", e(self.delete), methods=["DELETE"]),
            Route("/api/x/rag/{name}/add", e(self.add), methods=["POST"]),
            Route("/api/x/rag/{name}/query", e(self.query), methods=["POST"]),
        ]

    def _coll(self, name: str) -> Collection:
        """An open collection (its table handle is reused between queries)."""
        coll = self._open.get(name)
        if coll is None or not self.colls.exists(name):
            coll = self.colls.get(name)
            self._open[name] = coll
        else:
            coll.reload()
        return coll

    async def collections(self, request: Request) -> Response:
        """Every collection with its model and counts."""
        def work() -> list[dict[str, Any]]:
            out = []
            for name in self.colls.names():
                try:
                    out.append(self.colls.get(name).stats())
                except LlmtuiError as exc:
                    out.append({"name": name, "error": str(exc)})
            return out
        return JSONResponse({"collections": await asyncio.to_thread(work)})

    async def show(self, request: Request) -> Response:
        """One collection: model, dimensions, and its files with their chunk counts."""
        name = check_name(request.path_params["name"])
        coll = await asyncio.to_thread(self._coll, name)
        files = [{"name": f.name, "source": f.name if over_tcp(request.scope) else src,
                  "chunks": f.chunks, "bytes": f.size, "kind": f.kind,
                  "pages": f.pages or None, "sha256": f.hash, "added": f.added}
                 for src, f in sorted(coll.meta.files.items(), key=lambda kv: kv[1].name)]
        return JSONResponse({**coll.stats(), "files": files})

    async def delete(self, request: Request) -> Response:
        """Remove a collection and its table."""
        name = check_name(request.path_params["name"])
        self._open.pop(name, None)
        await asyncio.to_thread(self.colls.delete, name)
        return JSONResponse({"status": "deleted", "name": name})

    # -- ingest ------------------------------------------------------------------------------

    def _documents(self, raw: Any) -> list[Document]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise InvalidInput("'documents' must be a list of {name, text} objects")
        docs = []
        for item in raw:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise InvalidInput("each document needs a 'name' and a 'text' (or 'data')")
            name = item["name"].strip() or "stdin"
            if isinstance(item.get("data"), str):  # base64 bytes: PDFs and unknown encodings
                try:
                    data = base64.b64decode(item["data"], validate=True)
                except (binascii.Error, ValueError):
                    raise InvalidInput(f"document {name!r}: 'data' is not base64") from None
            elif isinstance(item.get("text"), str):
                data = self.o.text(item["text"], "text").encode("utf-8")
            else:
                raise InvalidInput(f"document {name!r} needs 'text' or 'data'")
            kind = kind_of(Path(name)) or "text"
            docs.append(Document(source=f"doc:{name}", name=name, kind=kind, data=data))
        return docs

    async def add(self, request: Request) -> Response:
        """Ingest files (Unix socket) or documents; streams progress as NDJSON."""
        name = check_name(request.path_params["name"])
        data = await self.o.json(request)
        paths = data.get("paths") or []
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise InvalidInput("'paths' must be a list of strings")
        if paths and over_tcp(request.scope):
            return JSONResponse({"error": "'paths' are read only over the local socket; send "
                                 "'documents' from the network", "code": "forbidden"},
                                status_code=403)
        docs = self._documents(data.get("documents"))
        if not paths and not docs:
            raise InvalidInput("nothing to add: give 'paths' or 'documents'")
        settings = self.engine.settings
        model = str(ModelName.parse(data.get("model") or settings.config.get("embed_model")))
        if self.colls.exists(name):
            self.colls.get(name).check_model(model)  # fail before any work
        self.engine.store.get(model)  # a missing model fails now, with a 404
        max_size = parse_size(data.get("max_size") or settings.config.get("rag_max_file_size"))
        prune = data.get("prune")
        prune_roots = paths if prune is True else []
        skipped: list[tuple[str, str]] = []
        cwd = data.get("cwd") if isinstance(data.get("cwd"), str) else None
        docs = await asyncio.to_thread(collect, paths, skipped, cwd) + docs
        loop = asyncio.get_running_loop()
        gone = threading.Event()

        def embed(texts: list[str]) -> list[list[float]]:
            fut = asyncio.run_coroutine_threadsafe(
                self.engine.embed(model, texts, keep_alive=data.get("keep_alive")), loop)
            return list(fut.result()["embeddings"])

        def work(on_event: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
            try:
                return ingest(self.colls, name, model, docs, embed, on_event=on_event,
                              cancelled=gone.is_set, max_size=max_size, prune=prune_roots,
                              skipped=skipped)
            finally:
                self._open.pop(name, None)

        return await self.o._progress_stream(data.get("stream", True) is not False, work,
                                             gone)

    # -- query -------------------------------------------------------------------------------

    async def query(self, request: Request) -> Response:
        """Hybrid retrieval; with "answer": true the chat model answers from the chunks."""
        name = check_name(request.path_params["name"])
        data = await self.o.json(request)
        question = self.o.text(data.get("query") or data.get("prompt"), "query").strip()
        if not question:
            raise InvalidInput("'query' is required")
        k = data.get("k", 5)
        if isinstance(k, float) and k.is_integer():
            k = int(k)  # JSON's 5.0 is a whole number too
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
            raise InvalidInput(f"'k' must be a whole number from 1 to {MAX_K}")
        min_sim = data.get("min_similarity", MIN_SIMILARITY)
        if not isinstance(min_sim, (int, float)) or not -1 <= float(min_sim) <= 1:
            raise InvalidInput("'min_similarity' must be a number from -1 to 1")
        coll = await asyncio.to_thread(self._coll, name)
        if data.get("embed_model"):
            coll.check_model(str(ModelName.parse(data["embed_model"])))
        started = time.perf_counter()
        vec = (await self.engine.embed(coll.meta.model, [question]))["embeddings"][0]
        hits = await asyncio.to_thread(coll.search, vec, question, k)
        found = relevant(hits, float(min_sim))
        chunks = [h.to_json() for h in found]
        retrieval = {"collection": name, "embed_model": coll.meta.model, "query": question,
                     "chunks": chunks, "nothing_relevant": not found,
                     "retrieve_duration": int((time.perf_counter() - started) * 1e9)}
        if not data.get("answer"):
            return JSONResponse(retrieval)

        model = str(ModelName.parse(data.get("model")
                                    or self.engine.settings.config.get("default_model")))
        stream = data.get("stream", True) is not False
        base = {"model": model, "created_at": now_rfc3339()}
        if not found:
            text = nothing_found(name)
            answer: dict[str, Any] = {
                **base, "message": {"role": "assistant", "content": text}, "done": True,
                "done_reason": "nothing_relevant", **retrieval}
            if not stream:
                return JSONResponse(answer)

            async def one() -> AsyncIterator[bytes]:
                yield self.o._line(answer)
            return StreamingResponse(one(), media_type=NDJSON)
        history = self.o.messages(data.get("messages")) if data.get("messages") else []
        req = {"messages": messages_for(question, found, history, data.get("system")),
               "options": self.o.options(data.get("options")), "format": None,
               "truncate": True}
        events = self.engine.stream("chat", model, req, data.get("keep_alive"))
        first = await first_event(events)

        async def gen() -> AsyncIterator[dict[str, Any]]:
            event = first
            try:
                while event is not None:
                    if "text" in event:
                        yield {**base, "message": {"role": "assistant",
                                                   "content": event["text"]}, "done": False}
                    else:
                        yield {**base, "message": {"role": "assistant", "content": ""},
                               "done": True, "done_reason": done_reason(event["stats"]),
                               **stats_fields(event["stats"])}
                    event = await anext(events, None)
            finally:
                await events.aclose()

        if not stream:
            async def whole() -> dict[str, Any]:
                parts: list[str] = []
                final: dict[str, Any] = {}
                async for part in gen():
                    parts.append(part["message"]["content"])
                    final = part
                final["message"]["content"] = "".join(parts)
                return final
            return JSONResponse({**await unless_gone(request, whole()), **retrieval})

        async def body() -> AsyncIterator[bytes]:
            yield self.o._line({**base, "done": False, **retrieval})
            try:
                async for part in gen():
                    yield self.o._line(part)
            except LlmtuiError as exc:
                yield self.o._line(error_body(exc))
        return StreamingResponse(body(), media_type=NDJSON)
