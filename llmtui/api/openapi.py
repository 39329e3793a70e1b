"""/openapi.json, built from the route table so it cannot drift from what is served."""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute, Route, WebSocketRoute

from llmtui import __version__
from llmtui.api.validate import _BOOL, _NUMERIC

_STR = {"type": "string"}
#: Model names as ModelName.parse takes them: [namespace/]name[:tag], any case.
_MODEL = {"type": "string", "pattern":
          r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}(/[A-Za-z0-9][A-Za-z0-9_-]{0,39})?"
          r"(:[A-Za-z0-9_][A-Za-z0-9_-]{0,39})?$"}


def _options() -> dict[str, Any]:
    """Ollama's options, built from the checks the API applies (validate.py), so the spec
    allows exactly what the code accepts."""
    props: dict[str, Any] = {}
    for name, (kind, lo, hi) in _NUMERIC.items():
        props[name] = {"type": "integer" if kind is int else "number",
                       "minimum": lo, "maximum": hi}
    for name in _BOOL:
        props[name] = {"type": "boolean"}
    props["stop"] = {"oneOf": [{"type": "string", "maxLength": 256},
                               {"type": "array", "maxItems": 16,
                                "items": {"type": "string", "maxLength": 256}}]}
    return {"type": "object", "description": "Ollama options: temperature, top_p, top_k, "
            "min_p, repeat_penalty, seed, num_predict, num_ctx, stop, ...",
            "properties": props, "additionalProperties": False}


_OPTIONS = _options()
# (images are left out until there are vision models: other models refuse them)
_MESSAGES = {"type": "array", "items": {"type": "object", "required": ["role"], "properties": {
    "role": {"enum": ["system", "user", "assistant", "tool"]}, "content": _STR}}}
_TOOLS = {"type": "array", "maxItems": 128, "items": {
    "type": "object", "required": ["type", "function"], "properties": {
        "type": {"const": "function"},
        "function": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "minLength": 1}, "description": _STR,
            "parameters": {"type": "object"}}}}}}
_DIGEST = {"type": "string", "pattern": r"^sha256[:-][0-9a-f]{64}$"}
_COLLECTION = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"}
#: Path parameters, by name.
_PARAMS = {"digest": _DIGEST, "model": _MODEL, "name": _COLLECTION}
_FORMAT = {"description": '"json" or a JSON schema object',
           "oneOf": [{"const": "json"}, {"type": "object"}]}
_KEEP = {"description": "duration (\"5m\") or seconds; 0 unloads, negative keeps forever",
         "oneOf": [{"type": "string", "pattern": r"^-?[0-9]{1,6}(ms|s|m|h)?$"},
                   {"type": "number"}]}
_ERROR = {"type": "object", "required": ["error"],
          "properties": {"error": _STR, "code": _STR}}
#: Anthropic's error shape (/v1/messages).
_ANTHROPIC_ERROR = {"type": "object", "required": ["type", "error"], "properties": {
    "type": {"const": "error"}, "error": {"type": "object", "required": ["type", "message"],
                                          "properties": {"type": _STR, "message": _STR}}}}
_OPENAI_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message"], "properties": {"message": _STR}}}}


_THINK = {"description": "a thinking model's reasoning: true/false, or \"low\", "
          "\"medium\", \"high\"", "oneOf": [{"type": "boolean"},
                                             {"enum": ["low", "medium", "high"]}]}
_TOP = {"type": "integer", "minimum": 0, "maximum": 20}
_DIMS = {"type": "integer", "minimum": 1,
         "description": "keep the first N values, re-normalised (Matryoshka)"}
_FUNCTION_NAME = {"type": "string", "minLength": 1}
#: "required" and a named function need ``tools`` holding that function (not statable
#: here); chat completions name it in ``function``, responses beside ``type``.
_TOOL_CHOICE = {"anyOf": [
    {"enum": ["auto", "none", "required"]},
    {"type": "object", "required": ["type", "function"], "properties": {
        "type": {"const": "function"},
        "function": {"type": "object", "required": ["name"],
                     "properties": {"name": _FUNCTION_NAME}}}},
    {"type": "object", "required": ["type", "name"], "properties": {
        "type": {"const": "function"}, "name": _FUNCTION_NAME}}]}
_N = {"type": "integer", "minimum": 1, "maximum": 16}
_RESPONSES_MESSAGE = {"type": "object", "required": ["role", "content"], "properties": {
    "type": {"const": "message"},
    "role": {"enum": ["user", "system", "developer", "assistant"]},
    "content": {"oneOf": [_STR, {"type": "array", "items": {
        "type": "object", "required": ["type", "text"], "properties": {
            "type": {"enum": ["input_text", "output_text"]}, "text": _STR}}}]}}}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


_BOOLEAN = {"type": "boolean"}
_TEXT_IN = {"type": "string", "minLength": 1, "pattern": r"\\S"}
_INPUT = {"oneOf": [_TEXT_IN, {"type": "array", "items": _TEXT_IN}]}
_OPENAI_SAMPLING = {
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
    "seed": {"type": "integer", "minimum": -1, "maximum": 2**31},
    "max_tokens": {"type": "integer", "minimum": 1, "maximum": 131072},
    "stop": {"oneOf": [{"type": "string", "maxLength": 256},
                       {"type": "array", "maxItems": 16,
                        "items": {"type": "string", "maxLength": 256}}]},
    "stream": _BOOLEAN, "options": _OPTIONS,
}

BODIES: dict[str, dict[str, Any]] = {
    "/api/generate": _obj(["model"], model=_MODEL, prompt=_STR, system=_STR, raw=_BOOLEAN,
                          format=_FORMAT, options=_OPTIONS, stream=_BOOLEAN, keep_alive=_KEEP,
                          truncate=_BOOLEAN, think=_THINK, logprobs=_BOOLEAN,
                          top_logprobs=_TOP),
    "/api/chat": _obj(["model"], model=_MODEL, messages=_MESSAGES, format=_FORMAT,
                      tools=_TOOLS, options=_OPTIONS, stream=_BOOLEAN, keep_alive=_KEEP,
                      think=_THINK, logprobs=_BOOLEAN, top_logprobs=_TOP),
    "/api/embed": _obj(["model", "input"], model=_MODEL, input=_INPUT, truncate=_BOOLEAN,
                       options=_OPTIONS, keep_alive=_KEEP, dimensions=_DIMS),
    "/api/embeddings": _obj(["model", "prompt"], model=_MODEL, prompt=_STR),
    "/api/show": _obj(["model"], model=_MODEL, verbose=_BOOLEAN),
    "/api/pull": _obj(["model"], model=_MODEL, stream=_BOOLEAN),
    "/api/delete": _obj(["model"], model=_MODEL),
    "/api/copy": _obj(["source", "destination"], source=_MODEL, destination=_MODEL),
    "/api/create": _obj(["model", "from"], model=_MODEL, **{"from": _MODEL},
                        system=_STR, template=_STR, parameters=_OPTIONS, license=_STR,
                        stream=_BOOLEAN),
    "/api/x/batch": _obj(["model", "requests"], model=_MODEL, options=_OPTIONS,
                         format=_FORMAT,
                         requests={"type": "array", "minItems": 1, "maxItems": 256,
                                   "items": _obj(["prompt"], prompt=_TEXT_IN,
                                                 options=_OPTIONS)}),
    "/api/x/tokenize": _obj(["model", "text"], model=_MODEL, text=_STR),
    "/api/x/graphql": _obj(["query"], query=_TEXT_IN, variables={"type": "object"}),
    "/api/x/rag/{name}/add": _obj(["documents"], documents={
        "type": "array", "minItems": 1, "maxItems": 16, "items": _obj(
            ["name", "text"], name={"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,40}\.md$"},
            text=_TEXT_IN)}, stream=_BOOLEAN),
    "/api/x/rag/{name}/query": _obj(["query"], query=_TEXT_IN,
                                    k={"type": "integer", "minimum": 1, "maximum": 50},
                                    min_similarity={"type": "number", "minimum": -1,
                                                    "maximum": 1}),
    "/api/x/unload": _obj(["model"], model=_MODEL),
    "/v1/chat/completions": _obj(["model", "messages"], model=_MODEL,
                                 messages={**_MESSAGES, "minItems": 1},
                                 response_format={"type": "object", "required": ["type"],
                                                  "properties": {"type": {"enum": [
                                                      "text", "json_object"]}}},
                                 tools=_TOOLS, tool_choice=_TOOL_CHOICE, n=_N,
                                 logprobs=_BOOLEAN, top_logprobs=_TOP,
                                 reasoning_effort={"enum": ["none", "minimal", "low",
                                                            "medium", "high", "xhigh"]},
                                 **_OPENAI_SAMPLING),
    "/v1/completions": _obj(["model", "prompt"], model=_MODEL, prompt=_TEXT_IN, n=_N,
                            logprobs=_TOP, **_OPENAI_SAMPLING),
    "/v1/embeddings": _obj(["model", "input"], model=_MODEL, input=_INPUT,
                           encoding_format={"enum": ["float", "base64"]}, dimensions=_DIMS),
    # (function_call items and text.format json_schema work too: see docs/api.md)
    "/v1/responses": _obj(
        ["model", "input"], model=_MODEL,
        input={"oneOf": [_TEXT_IN, {"type": "array", "minItems": 1, "maxItems": 64,
                                    "items": _RESPONSES_MESSAGE}]},
        instructions=_STR, max_output_tokens=_OPENAI_SAMPLING["max_tokens"],
        temperature=_OPENAI_SAMPLING["temperature"], top_p=_OPENAI_SAMPLING["top_p"],
        stream=_BOOLEAN, reasoning=_obj([], effort={"enum": ["none", "minimal", "low",
                                                             "medium", "high"]}),
        tools={"type": "array", "maxItems": 128, "items": _obj(
            ["type", "name"], type={"const": "function"},
            name={"type": "string", "minLength": 1}, description=_STR,
            parameters={"type": "object"})},
        tool_choice=_TOOL_CHOICE,
        text=_obj([], format=_obj(["type"], type={"enum": ["text", "json_object"]}))),
}

# -- speech (llmtui/api/audio.py) -------------------------------------------------------------
_LANG = {"type": "string", "pattern": r"^[A-Za-z]{2,3}$"}
_VOICE = {"anyOf": [{"enum": ["alloy", "ash", "ballad", "coral", "echo", "fable", "nova",
                              "onyx", "sage", "shimmer", "verse"]}, _MODEL]}
_STT_FIELDS: dict[str, Any] = {
    "file": {"type": "string", "format": "binary"}, "model": _MODEL,
    "prompt": {"type": "string", "maxLength": 2000},
    "response_format": {"enum": ["json", "text", "srt", "vtt", "verbose_json"]},
    "temperature": {"type": "number", "minimum": 0, "maximum": 1},
    "timestamp_granularities[]": {"type": "array", "items": {"enum": ["word", "segment"]}},
    "stream": _BOOLEAN}
#: Multipart bodies (OpenAI's uploads), by path.
MULTIPART: dict[str, dict[str, Any]] = {
    "/v1/audio/transcriptions": _obj(["file"], language=_LANG, **_STT_FIELDS),
    "/v1/audio/translations": _obj(["file"], **_STT_FIELDS),
}
BODIES.update({
    # ctx/stride are checked against the model's context by the worker (model-dependent).
    "/api/x/perplexity": _obj(["model", "text"], model=_MODEL, text=_TEXT_IN,
                              ctx={"type": "integer", "minimum": 2},
                              stride={"type": "integer", "minimum": 1},
                              keep_alive=_KEEP, stream=_BOOLEAN),
    "/api/x/convert": _obj(["model", "to"], model=_MODEL, to={"enum": ["onnx", "openvino"]},
                           precision={"enum": ["int4", "int8", "fp16", "fp32"]},
                           name=_MODEL, stream=_BOOLEAN),
})
BODIES.update({
    "/v1/audio/speech": _obj(["input"], input=_TEXT_IN, model=_MODEL, voice=_VOICE,
                             response_format={"enum": ["mp3", "wav", "pcm", "flac", "opus",
                                                       "aac"]},
                             speed={"type": "number", "minimum": 0.25, "maximum": 4},
                             stream_format={"enum": ["audio", "sse"]}),
    "/api/x/speak": _obj(["input"], input=_TEXT_IN, model=_MODEL, voice=_VOICE,
                         rate={"type": "number", "minimum": 0.25, "maximum": 4},
                         speaker={"type": "integer", "minimum": 0, "maximum": 10000},
                         keep_alive=_KEEP),
    "/api/x/transcribe": _obj(["audio"], audio={
        "type": "string", "pattern": r"^([A-Za-z0-9+/]{4})+$",
        "description": "the audio file, base64 (or send it raw as the body, options in "
                       "the query string; or \"path\" on the Unix socket)"},
        model=_MODEL, language=_LANG, translate=_BOOLEAN, word_timestamps=_BOOLEAN,
        vad=_BOOLEAN, beam_size={"type": "integer", "minimum": 1, "maximum": 10},
        stream=_BOOLEAN, keep_alive=_KEEP),
})
#: What a 200 carries, for paths whose answer is not JSON (or not only).
CONTENT: dict[str, list[str]] = {
    "/v1/audio/transcriptions": ["application/json", "text/plain", "text/vtt",
                                 "text/event-stream"],
    "/v1/audio/translations": ["application/json", "text/plain", "text/vtt",
                               "text/event-stream"],
    "/v1/audio/speech": ["audio/mpeg", "audio/wav", "audio/pcm", "audio/flac", "audio/ogg",
                         "audio/aac", "text/event-stream"],
    "/api/x/transcribe": ["application/json", "application/x-ndjson"],
    "/api/x/speak": ["application/x-ndjson"],
}

STREAMING = {"/api/generate", "/api/chat", "/api/pull", "/api/create",
             "/api/x/rag/{name}/add", "/api/x/rag/{name}/query"}
SSE = {"/v1/chat/completions", "/v1/completions", "/v1/messages"}
PLAIN = {"/", "/metrics"}
EMPTY = {"/api/delete", "/api/copy", "/api/blobs/{digest}"}
#: Statuses every operation may answer besides its success (the API key, the Host
#: allowlist, limits on bodies and time, a missing model, a busy queue).
_COMMON = {"400": "Invalid request", "401": "Missing or wrong API key (TCP)",
           "403": "Forbidden: Host or Origin not allowed, the offline switch, or an "
                  "operation only the Unix socket may do",
           "404": "Model, collection or conversation not found",
           "408": "The request did not arrive in time", "409": "Conflict",
           "413": "Request body too large", "501": "An optional extra is not installed",
           "502": "A remote machine failed: a download source, or an RPC server "
                  "(rpc_servers) that cannot be reached",
           "503": "Busy (Retry-After)", "507": "Not enough disk space"}


def _tag(path: str) -> str:
    if path.startswith("/v1/"):
        return "openai"
    if path.startswith("/api/x/"):
        return "llmtui"
    return "ollama" if path.startswith("/api/") or path == "/" else "operations"


def _json(schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"application/json": {"schema": schema or {}}}


def _responses(path: str, method: str) -> dict[str, Any]:
    if path in PLAIN:
        ok: dict[str, Any] = {"description": "OK", "content": {"text/plain": {}}}
    elif path in EMPTY:
        ok = {"description": "OK (no body)"}
    elif path == "/api/x/graphql":
        ok = {"description": "A GraphQL result (GET without a query: the GraphiQL page)",
              "content": {**_json(), "text/html": {}}}
    elif path in CONTENT:
        ok = {"description": "OK", "content": {
            t: {"schema": {}} if t == "application/json" else {} for t in CONTENT[path]}}
    else:
        content = _json()
        if path in STREAMING:
            content["application/x-ndjson"] = {}
        if path in SSE:
            content["text/event-stream"] = {}
        ok = {"description": "OK" + (" (NDJSON stream unless stream is false)"
                                     if path in STREAMING else ""), "content": content}
    error = _ANTHROPIC_ERROR if path.startswith("/v1/messages") else \
        _OPENAI_ERROR if path.startswith("/v1/") else _ERROR
    out: dict[str, Any] = {"200": ok}
    if path == "/api/blobs/{digest}":
        out["201"] = {"description": "Stored (POST), or already there"}
    for code, text in _COMMON.items():
        out[code] = {"description": text, "content": _json(error)}
        if code in ("401", "403"):  # the TCP guard answers these in Ollama's shape
            out[code]["content"] = _json({"anyOf": [_ERROR, error]} if error is not _ERROR
                                         else _ERROR)
    if path == "/api/x/graphql":  # strawberry answers malformed requests in plain text
        out["400"]["content"]["text/plain"] = {}
    if path == "/api/blobs/{digest}" and method == "HEAD":
        out["404"] = {"description": "Not in the store"}
    return out


def _with_limits(schema: Any, predict: int) -> Any:
    """A copy of a body schema whose token limits are this daemon's (max_predict)."""
    if isinstance(schema, dict):
        out = {k: _with_limits(v, predict) for k, v in schema.items()}
        props = out.get("properties")
        if isinstance(props, dict):
            for key in ("num_predict", "max_tokens", "max_output_tokens"):
                if isinstance(props.get(key), dict) and "maximum" in props[key]:
                    props[key] = {**props[key], "maximum": predict}
        return out
    if isinstance(schema, list):
        return [_with_limits(v, predict) for v in schema]
    return schema


def build(routes: list[BaseRoute], predict: int | None = None) -> dict[str, Any]:
    """The spec of these routes; ``predict`` is the daemon's max_predict limit."""
    paths: dict[str, dict[str, Any]] = {}
    http_paths = {r.path for r in routes if isinstance(r, Route)}
    for route in routes:
        if isinstance(route, WebSocketRoute):
            if route.path in http_paths:
                continue  # GraphQL: the same path serves HTTP; its GET is documented there
            paths.setdefault(route.path, {})["get"] = {
                "tags": [_tag(route.path)], "summary": "WebSocket (upgrade)",
                "description": (route.endpoint.__doc__ or "").strip(),
                "responses": {"101": {"description": "Switching protocols"},
                              "404": {"description": "A plain HTTP request: this path "
                                      "speaks WebSocket only", "content": {
                                          "text/plain": {}}}}}
            continue
        if not isinstance(route, Route):
            continue
        path = route.path.replace("{model:path}", "{model}")
        doc = (route.endpoint.__doc__ or "").strip()
        methods = set(route.methods or ())
        if "GET" in methods:
            methods.discard("HEAD")  # implied by GET
        for method in sorted(methods):
            op: dict[str, Any] = {
                "tags": [_tag(path)], "summary": doc.split("\n")[0], "description": doc,
                "responses": _responses(path, method),
            }
            params = [p.strip("{}").split(":")[0] for p in path.split("/")
                      if p.startswith("{")]
            if params:
                op["parameters"] = [{"name": p, "in": "path", "required": True,
                                     "schema": _PARAMS.get(p, _STR)} for p in params]
            if path in BODIES and method in ("POST", "DELETE"):
                body = BODIES[path] if predict is None else _with_limits(BODIES[path], predict)
                op["requestBody"] = {"required": True, "content": {
                    "application/json": {"schema": body}}}
                if path == "/api/x/transcribe":  # or the audio itself as the body
                    op["requestBody"]["content"]["application/octet-stream"] = {
                        "schema": {"type": "string", "format": "binary"}}
            if path in MULTIPART and method == "POST":
                op["requestBody"] = {"required": True, "content": {
                    "multipart/form-data": {"schema": MULTIPART[path]}}}
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


# -- Anthropic's Messages API (llmtui/api/anthropic.py) ------------------------------------------

#: Text blocks only here: which other blocks a message may hold depends on its role (image
#: and tool_result in user turns, tool_use and thinking in assistant ones; docs/api.md).
_A_BLOCKS = {"type": "array", "minItems": 1, "items": _obj(["type", "text"],
                                                            type={"const": "text"}, text=_STR)}
_A_MESSAGES = {"type": "array", "minItems": 1, "maxItems": 64, "items": _obj(
    ["role", "content"], role={"enum": ["user", "assistant"]},
    content={"oneOf": [_TEXT_IN, _A_BLOCKS]})}
_A_TOOLS = {"type": "array", "maxItems": 128, "items": _obj(
    ["name", "input_schema"], name={"type": "string", "minLength": 1, "maxLength": 64},
    description=_STR, input_schema={"type": "object"})}
_A_CHOICE = {"oneOf": [_obj(["type"], type={"enum": ["auto", "any", "none"]}),
                       _obj(["type", "name"], type={"const": "tool"}, name=_STR)]}
_A_COMMON = {"model": _MODEL, "messages": _A_MESSAGES, "system": _STR, "tools": _A_TOOLS}
BODIES.update({
    "/v1/messages": _obj(
        ["model", "messages", "max_tokens"], **_A_COMMON,
        max_tokens=_OPENAI_SAMPLING["max_tokens"], tool_choice=_A_CHOICE,
        stop_sequences={"type": "array", "maxItems": 16,
                        "items": {"type": "string", "minLength": 1, "maxLength": 256}},
        temperature=_OPENAI_SAMPLING["temperature"], top_p=_OPENAI_SAMPLING["top_p"],
        top_k={"type": "integer", "minimum": 1, "maximum": 1000}, stream=_BOOLEAN,
        thinking=_obj(["type"], type={"enum": ["enabled", "disabled", "adaptive"]},
                      budget_tokens={"type": "integer", "minimum": 1})),
    "/v1/messages/count_tokens": _obj(["model", "messages"], **_A_COMMON),
})
