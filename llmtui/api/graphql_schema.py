"""The GraphQL schema (strawberry). Imported only on the first GraphQL request.

No ``from __future__ import annotations`` here: strawberry reads the annotations at
runtime. Resolvers reach the engine through ``info.context["engine"]``.
"""

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    ValidationContext,
    ValidationRule,
)
from strawberry.extensions import AddValidationRules, MaxTokensLimiter
from strawberry.scalars import JSON

from llmtui.api.common import check_unicode, scrub
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
            check_unicode([model, prompt, messages, system, options])
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


#: Limits that keep one GraphQL document from taking seconds of server time or recursing
#: past Python's limit: lexer tokens, then nesting depth, aliases and field selections,
#: all counted with fragments expanded (memoised, so a chain of spreads that doubles at
#: each step is measured at once instead of being walked 2^n times).
MAX_TOKENS = 2000
MAX_DEPTH = 8
MAX_ALIASES = 20
MAX_COST = 500


class DocumentLimits(ValidationRule):
    """Refuse operations deeper than MAX_DEPTH, with more than MAX_ALIASES aliases or
    selecting more than MAX_COST fields in all."""

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        document = context.document
        fragments = {d.name.value: d for d in document.definitions
                     if isinstance(d, FragmentDefinitionNode)}
        memo: dict[str, tuple[int, int, int]] = {}
        over = (MAX_COST + 1, MAX_DEPTH + 1, MAX_ALIASES + 1)

        def measure(node: Any, level: int) -> tuple[int, int, int]:
            """(fields, depth, aliases) of a selection set."""
            if level > 2 * MAX_DEPTH + len(fragments):
                return over
            cost = depth = aliases = 0
            for sel in node.selections if node is not None else ():
                if isinstance(sel, FieldNode):
                    c, d, a = measure(sel.selection_set, level + 1)
                    if sel.name.value.startswith("__"):
                        d = 0  # introspection (GraphiQL's query nests ofType deeply)
                    cost, depth = cost + 1 + c, max(depth, 1 + d)
                    aliases += a + (sel.alias is not None)
                    continue
                if isinstance(sel, InlineFragmentNode):
                    c, d, a = measure(sel.selection_set, level + 1)
                elif isinstance(sel, FragmentSpreadNode):
                    name = sel.name.value
                    if name not in memo:
                        memo[name] = over  # a cycle stops here (another rule names it)
                        frag = fragments.get(name)
                        memo[name] = measure(frag.selection_set, level + 1) if frag \
                            else (0, 0, 0)
                    c, d, a = memo[name]
                else:
                    continue
                cost, depth, aliases = cost + c, max(depth, d), aliases + a
                if cost > MAX_COST:
                    break
            return cost, depth, aliases

        for definition in document.definitions:
            if not isinstance(definition, OperationDefinitionNode):
                continue
            cost, depth, aliases = measure(definition.selection_set, 0)
            problem = (f"is nested more than {MAX_DEPTH} levels deep"
                       if depth > MAX_DEPTH else
                       f"uses {aliases} aliases (the limit is {MAX_ALIASES})"
                       if aliases > MAX_ALIASES else
                       f"selects more than {MAX_COST} fields, fragments counted each time "
                       "they are used" if cost > MAX_COST else None)
            if problem:
                self.report_error(GraphQLError(f"the query {problem}; split it up",
                                               definition))


_LIMITS: list[Any] = [MaxTokensLimiter(max_token_count=MAX_TOKENS),
                      AddValidationRules([DocumentLimits])]
schema = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription,
                           extensions=_LIMITS)
