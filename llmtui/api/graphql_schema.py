"""The GraphQL schema (strawberry). Imported only on the first GraphQL request.

No ``from __future__ import annotations`` here: strawberry reads the annotations at
runtime. Resolvers reach the engine through ``info.context["engine"]``.
"""

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from strawberry.scalars import JSON

from llmtui.api.common import scrub
from llmtui.api.ollama import done_reason
from llmtui.api.validate import check_messages, check_options
from llmtui.errors import LlmtuiError


@strawberry.type
class Model:
    name: str
    size: float
    digest: str
    format: str
    family: str | None
    parameter_size: str | None
    quantization: str | None
    context_length: int | None
    capabilities: list[str]


@strawberry.type
class LoadedModel:
    name: str
    size: float
    pid: int | None
    context_length: int | None
    expires_at: float | None
    active: int
    waiting: int


@strawberry.type
class CatalogModel:
    name: str
    family: str
    description: str
    parameters: str
    quantization: str
    size: float
    ram: float
    fit: str
    installed: bool


@strawberry.type
class Chunk:
    text: str
    done: bool
    done_reason: str | None = None
    eval_count: int | None = None
    prompt_eval_count: int | None = None


def as_model(m: Any) -> Model:
    return Model(name=m.name, size=m.size, digest=m.digest, format=m.format,
                 family=m.family, parameter_size=m.parameter_size,
                 quantization=m.quantization, context_length=m.context_length,
                 capabilities=list(m.capabilities))


def fail(exc: LlmtuiError) -> Exception:
    return Exception(scrub(str(exc)))


@strawberry.type
class Query:
    @strawberry.field(description="Installed models.")
    async def models(self, info: strawberry.Info) -> list[Model]:
        engine = info.context["engine"]
        return [as_model(m) for m in await asyncio.to_thread(engine.store.models)]

    @strawberry.field(description="One installed model, or null.")
    async def model(self, info: strawberry.Info, name: str) -> Model | None:
        engine = info.context["engine"]
        try:
            return as_model(engine.store.get(name))
        except LlmtuiError:
            return None

    @strawberry.field(description="Models loaded in memory now.")
    def loaded(self, info: strawberry.Info) -> list[LoadedModel]:
        engine = info.context["engine"]
        return [LoadedModel(name=p["key"], size=p["size"], pid=p["pid"],
                            context_length=p["context_length"],
                            expires_at=p["expires_at"], active=p["active"],
                            waiting=p["waiting"]) for p in engine.ps()]

    @strawberry.field(description="Models that can be pulled; 'search' filters them.")
    def catalog(self, info: strawberry.Info, search: str | None = None) -> list[CatalogModel]:
        from llmtui.models import catalog

        engine = info.context["engine"]
        entries = (catalog.search(search) if search
                   else list(catalog.load_catalog().values()))
        ram = catalog.total_ram()
        installed = {m.name for m in engine.store.models()}
        return [CatalogModel(name=e.name, family=e.family, description=e.description,
                             parameters=e.parameters, quantization=e.quantization,
                             size=e.size, ram=e.ram, fit=str(catalog.fit(e.ram, ram)),
                             installed=e.name in installed) for e in entries]


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Download a model; returns it once installed.")
    async def pull(self, info: strawberry.Info, model: str) -> Model:
        from llmtui.models.pull import pull

        engine = info.context["engine"]
        try:
            manifest = await asyncio.to_thread(pull, engine.store, model)
        except LlmtuiError as exc:
            raise fail(exc) from None
        return as_model(manifest)

    @strawberry.mutation(description="Remove a model.")
    async def delete(self, info: strawberry.Info, model: str) -> bool:
        engine = info.context["engine"]
        try:
            await engine.unload_model(model)
            await asyncio.to_thread(engine.store.remove, model)
        except LlmtuiError as exc:
            raise fail(exc) from None
        return True

    @strawberry.mutation(description="Load a model and keep it for keepAlive.")
    async def load(self, info: strawberry.Info, model: str,
                   keep_alive: str | None = None) -> bool:
        engine = info.context["engine"]
        try:
            await engine.load(model, None, keep_alive)
        except LlmtuiError as exc:
            raise fail(exc) from None
        return True

    @strawberry.mutation(description="Unload a model; false if it was not loaded.")
    async def unload(self, info: strawberry.Info, model: str) -> bool:
        engine = info.context["engine"]
        try:
            return await engine.unload_model(model)
        except LlmtuiError as exc:
            raise fail(exc) from None


@strawberry.type
class Subscription:
    @strawberry.subscription(description="Stream a generation, chunk by chunk. Pass "
                             "'prompt', or 'messages' (a JSON list) for chat.")
    async def generate(self, info: strawberry.Info, model: str, prompt: str | None = None,
                       messages: JSON | None = None, system: str | None = None,
                       options: JSON | None = None) -> AsyncGenerator[Chunk, None]:
        engine = info.context["engine"]
        try:
            opts = check_options(options)
            if messages is not None:
                kind = "chat"
                req: dict[str, Any] = {"messages": check_messages(messages),
                                       "options": opts}
            else:
                kind = "generate"
                req = {"prompt": prompt or "", "system": system, "options": opts}
            events = engine.stream(kind, model, req)
            try:
                async for event in events:
                    if "text" in event:
                        yield Chunk(text=event["text"], done=False)
                    else:
                        s = event["stats"]
                        yield Chunk(text="", done=True, done_reason=done_reason(s),
                                    eval_count=int(s.get("completion_tokens") or 0),
                                    prompt_eval_count=int(s.get("prompt_tokens") or 0))
            finally:
                await events.aclose()
        except LlmtuiError as exc:
            raise fail(exc) from None


schema = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)
