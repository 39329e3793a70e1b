"""/openapi.json, built from the route table so it cannot drift from what is served."""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute, Route, WebSocketRoute

from llmtui import __version__

_STR = {"type": "string"}
_OPTIONS = {"type": "object", "description": "Ollama options: temperature, top_p, top_k, "
            "min_p, repeat_penalty, seed, num_predict, num_ctx, stop, ...",
            "additionalProperties": True}
_MESSAGES = {"type": "array", "items": {"type": "object", "required": ["role"], "properties": {
    "role": {"enum": ["system", "user", "assistant", "tool"]}, "content": _STR,
    "images": {"type": "array", "items": _STR},
    "tool_calls": {"type": "array", "items": {"type": "object"}}}}}
_FORMAT = {"description": '"json" or a JSON schema object',
           "oneOf": [{"const": "json"}, {"type": "object"}]}
_KEEP = {"description": "duration (\"5m\") or seconds; 0 unloads, negative keeps forever",
         "oneOf": [_STR, {"type": "number"}]}


_THINK = {"description": "a thinking model's reasoning: true/false, or \"low\", "
          "\"medium\", \"high\"", "oneOf": [{"type": "boolean"},
                                             {"enum": ["low", "medium", "high"]}]}
_TOP = {"type": "integer", "minimum": 0, "maximum": 20}
_DIMS = {"type": "integer", "minimum": 1,
         "description": "keep the first N values, re-normalised (Matryoshka)"}
_TOOL_CHOICE = {"oneOf": [{"enum": ["auto", "none", "required"]}, {"type": "object"}]}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


BODIES: dict[str, dict[str, Any]] = {
    "/api/generate": _obj(["model"], model=_STR, prompt=_STR, suffix=_STR, system=_STR,
                          template=_STR, raw={"type": "boolean"}, format=_FORMAT,
                          images={"type": "array", "items": _STR}, options=_OPTIONS,
                          context={"type": "array", "items": {"type": "integer"}},
                          stream={"type": "boolean"}, keep_alive=_KEEP,
                          truncate={"type": "boolean"}, think=_THINK,
                          logprobs={"type": "boolean"}, top_logprobs=_TOP),
    "/api/chat": _obj(["model"], model=_STR, messages=_MESSAGES, format=_FORMAT,
                      tools={"type": "array", "items": {"type": "object"}}, options=_OPTIONS,
                      stream={"type": "boolean"}, keep_alive=_KEEP, think=_THINK,
                      logprobs={"type": "boolean"}, top_logprobs=_TOP),
    "/api/embed": _obj(["model", "input"], model=_STR,
                       input={"oneOf": [_STR, {"type": "array", "items": _STR}]},
                       truncate={"type": "boolean"}, options=_OPTIONS, keep_alive=_KEEP,
                       dimensions=_DIMS),
    "/api/embeddings": _obj(["model", "prompt"], model=_STR, prompt=_STR),
    "/api/show": _obj(["model"], model=_STR, verbose={"type": "boolean"}),
    "/api/pull": _obj(["model"], model=_STR, stream={"type": "boolean"}),
    "/api/delete": _obj(["model"], model=_STR),
    "/api/copy": _obj(["source", "destination"], source=_STR, destination=_STR),
    "/api/create": _obj(["model"], model=_STR, **{"from": _STR},
                        files={"type": "object", "additionalProperties": _STR},
                        system=_STR, template=_STR, parameters=_OPTIONS, license=_STR,
                        stream={"type": "boolean"}),
    "/api/x/batch": _obj(["model", "requests"], model=_STR, options=_OPTIONS, format=_FORMAT,
                         requests={"type": "array", "maxItems": 256, "items": _obj(
                             [], prompt=_STR, messages=_MESSAGES, options=_OPTIONS)}),
    "/api/x/tokenize": _obj(["model", "text"], model=_STR, text=_STR),
    "/api/x/unload": _obj(["model"], model=_STR),
    "/v1/chat/completions": _obj(["model", "messages"], model=_STR, messages=_MESSAGES,
                                 stream={"type": "boolean"}, temperature={"type": "number"},
                                 max_tokens={"type": "integer"}, seed={"type": "integer"},
                                 stop={"oneOf": [_STR, {"type": "array"}]},
                                 response_format={"type": "object"},
                                 tools={"type": "array"}, num_ctx={"type": "integer"},
                                 options=_OPTIONS, tool_choice=_TOOL_CHOICE,
                                 n={"type": "integer", "minimum": 1, "maximum": 16},
                                 logprobs={"type": "boolean"}, top_logprobs=_TOP,
                                 reasoning_effort={"enum": ["none", "minimal", "low",
                                                            "medium", "high", "xhigh"]}),
    "/v1/completions": _obj(["model", "prompt"], model=_STR, prompt=_STR, suffix=_STR,
                            max_tokens={"type": "integer"}, stream={"type": "boolean"},
                            n={"type": "integer", "minimum": 1, "maximum": 16},
                            logprobs=_TOP),
    "/v1/embeddings": _obj(["model", "input"], model=_STR,
                           input={"oneOf": [_STR, {"type": "array", "items": _STR}]},
                           encoding_format={"enum": ["float", "base64"]}, dimensions=_DIMS),
    "/v1/responses": _obj(["model", "input"], model=_STR,
                          input={"oneOf": [_STR, {"type": "array", "items": {
                              "type": "object"}}]},
                          instructions=_STR, max_output_tokens={"type": "integer"},
                          temperature={"type": "number"}, top_p={"type": "number"},
                          reasoning={"type": "object"}, tools={"type": "array"},
                          tool_choice=_TOOL_CHOICE, text={"type": "object"},
                          stream={"type": "boolean"}),
}

STREAMING = {"/api/generate", "/api/chat", "/api/pull", "/api/create"}


def _tag(path: str) -> str:
    if path.startswith("/v1/"):
        return "openai"
    if path.startswith("/api/x/"):
        return "llmtui"
    return "ollama" if path.startswith("/api/") or path == "/" else "operations"


def build(routes: list[BaseRoute]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if isinstance(route, WebSocketRoute):
            paths.setdefault(route.path, {})["get"] = {
                "tags": [_tag(route.path)], "summary": "WebSocket (upgrade)",
                "description": (route.endpoint.__doc__ or "").strip(),
                "responses": {"101": {"description": "Switching protocols"}}}
            continue
        if not isinstance(route, Route):
            continue
        path = route.path.replace("{model:path}", "{model}")
        doc = (route.endpoint.__doc__ or "").strip()
        for method in sorted((route.methods or set()) - {"HEAD"}) or ["HEAD"]:
            op: dict[str, Any] = {
                "tags": [_tag(path)], "summary": doc.split("\n")[0], "description": doc,
                "responses": {
                    "200": {"description": "OK" + (" (NDJSON stream unless stream is false)"
                                                   if path in STREAMING else "")},
                    "400": {"description": "Invalid request: {\"error\": ...}"},
                    "404": {"description": "Model not found"},
                    "503": {"description": "Busy (Retry-After)"}},
            }
            params = [p.strip("{}").split(":")[0] for p in path.split("/")
                      if p.startswith("{")]
            if params:
                op["parameters"] = [{"name": p, "in": "path", "required": True,
                                     "schema": _STR} for p in params]
            if path in BODIES and method in ("POST", "DELETE"):
                op["requestBody"] = {"required": True, "content": {
                    "application/json": {"schema": BODIES[path]}}}
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "llmtui daemon API", "version": __version__,
                 "description": "Ollama's API (/api), an OpenAI-compatible API (/v1) and "
                                "llmtui's own endpoints (/api/x). See docs/api.md."},
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}}},
        "security": [{}, {"bearer": []}, {"apiKey": []}],
        "paths": paths,
    }
