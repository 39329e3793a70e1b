"""Schema-driven fuzzing of the whole HTTP API: schemathesis generates requests from the
daemon's own /openapi.json (valid ones and deliberately invalid ones) and every answer
must be documented, in its documented content type and schema, and never a 5xx.

Bounded: LLMTUI_FUZZ_EXAMPLES examples per operation and mode (default 10), and a time
budget (LLMTUI_FUZZ_SECONDS, default 240) after which the remaining operations are
skipped. Generation is derandomized, so a run is repeatable; set LLMTUI_FUZZ_SEED to
explore other inputs. The daemon is offline (a generated model name that happens to be
in the catalog cannot start a download) with a small context and memory budget.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import TcpDaemon
from tests.conftest import import_models

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

SMOL = "smollm2:135m"
EXAMPLES = int(os.environ.get("LLMTUI_FUZZ_EXAMPLES", "10"))
BUDGET = float(os.environ.get("LLMTUI_FUZZ_SECONDS", "240"))
SEED = os.environ.get("LLMTUI_FUZZ_SEED")


@pytest.fixture(scope="module")
def fuzz_daemon(tmp_path_factory: pytest.TempPathFactory, smollm: Path) -> Iterator[TcpDaemon]:
    home = tmp_path_factory.mktemp("fuzz") / "home"
    import_models(home, smollm)
    cfg = home / "config" / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text('context_length = 256\nmax_predict = 64\nmemory_budget = "1GB"\n'
                   'max_prompt_chars = 2000\nrequest_timeout = "5s"\nmax_queue = 8\n'
                   'keep_alive = "5m"\n')
    with TcpDaemon(home, env={"LLMTUI_OFFLINE": "1"}) as daemon:
        yield daemon


def _checks() -> list[Any]:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [not_a_server_error, status_code_conformance, content_type_conformance,
            response_schema_conformance, accepts_valid_input]


#: 400s that a request valid by the schema may still get: limits that depend on the model
#: or the machine (the context size, the memory budget) or on totals across fields
#: (max_prompt_chars) or on content (an upload must hash to its digest), which a JSON
#: schema cannot state.
MODEL_DEPENDENT = ("memory budget", "context holds", "does not fit", "embedding model",
                   "fill-in-the-middle", "template", "too long", "digest mismatch",
                   "does not support thinking", "dimension vectors",
                   # a format schema llama.cpp's grammar converter cannot express
                   "unsupported JSON schema",
                   # tool_choice: "required" or a named function needs it among the tools
                   "needs 'tools'", "there are no 'tools'", "is not in 'tools'",
                   "not a speech-to-text model", "not a text-to-speech model",
                   # perplexity: stride against ctx, ctx against the model, text in tokens
                   "stride must be between", "larger than the model's context",
                   "text is too short")


def accepts_valid_input(ctx: Any, response: Any, case: Any) -> bool | None:
    """What the spec allows is accepted: a schema-valid request is never a plain 400."""
    meta = getattr(case, "meta", None)
    positive = meta is not None and meta.generation.mode.is_positive
    if positive and response.status_code == 400 and not any(
            m in response.text for m in MODEL_DEPENDENT):
        raise AssertionError(f"valid input refused: {response.text[:300]}")
    return None


def _with_real_model(case: Any) -> None:
    """Half the valid cases name the installed model, so that generation and tokenizing
    run on fuzzed parameters instead of stopping at "model not found". (Not embeddings:
    a chat model embedding fuzzed text is slow on a small machine, and test_hardening
    covers the embedding endpoints with a real embedding model.)"""
    body = case.body
    if "embed" in case.operation.path:
        return
    if isinstance(body, dict) and "model" in body and zlib.crc32(repr(body).encode()) % 2:
        body["model"] = SMOL


def fuzz_operation(op: Any, mode: Any, url: str, checks: list[Any]) -> tuple[int, list[str]]:
    """Run one operation's examples in one mode: (requests sent, first failure if any)."""
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from schemathesis import GenerationMode

    sent = 0
    seen: list[str] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              derandomize=SEED is None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet)
    @given(case=op.as_strategy(generation_mode=mode))
    def one(case: Any) -> None:
        nonlocal sent
        if mode is GenerationMode.POSITIVE:
            _with_real_model(case)
        sent += 1
        response = case.call(base_url=url, timeout=60)
        try:
            case.validate_response(response, checks=checks)
        except (Exception, BaseExceptionGroup) as exc:
            text = " | ".join(str(exc).strip().splitlines()[:8])
            seen.append(f"{op.method.upper()} {op.path} [{mode.value}] "
                        f"{response.status_code}: {text[:700]}")
            raise

    try:
        one()
    except (Exception, BaseExceptionGroup) as exc:
        if not seen and sent == 0:
            return 0, []  # nothing to generate (no negative form of a parameterless GET)
        why = " | ".join(str(exc).strip().splitlines()[:4])[:400]
        return sent, seen[:1] or [f"{op.method.upper()} {op.path} [{mode.value}]: "
                                  f"{type(exc).__name__}: {why}"]
    return sent, []


def test_fuzz_the_openapi_surface(fuzz_daemon: TcpDaemon) -> None:
    from schemathesis import GenerationMode

    spec = httpx.get(fuzz_daemon.url + "/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(spec)
    checks = _checks()
    started = time.monotonic()
    count = 0
    failures: list[str] = []
    skipped: list[str] = []
    operations = [r.ok() for r in schema.get_all_operations()]
    for op in operations:
        if op.path in ("/api/x/shutdown", "/api/x/ws"):
            continue  # TCP may not stop the daemon (tested elsewhere); WebSocket: no HTTP
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if time.monotonic() - started > BUDGET:
                skipped.append(f"{op.method.upper()} {op.path} {mode.value}")
                continue
            sent, failed = fuzz_operation(op, mode, fuzz_daemon.url, checks)
            count += sent
            failures += failed
    elapsed = time.monotonic() - started
    print(f"\nfuzz: {count} requests over {len(operations)} operations in {elapsed:.0f} s "
          f"({EXAMPLES} examples per operation and mode)")
    if skipped:
        print("fuzz: over the time budget, skipped: " + ", ".join(skipped))
    assert not failures, "\n".join(failures)
    assert count >= len(operations), "the fuzz run hardly ran"
    assert httpx.get(fuzz_daemon.url + "/api/version", timeout=30).status_code == 200


def test_405_lists_every_method_of_the_path(fuzz_daemon: TcpDaemon) -> None:
    """A method a path does not serve gets 405 and an Allow header naming every method
    the path does serve (across all of its routes), as the spec lists them."""
    spec = httpx.get(fuzz_daemon.url + "/openapi.json", timeout=30).json()
    for path, ops in spec["paths"].items():
        if path in ("/api/x/ws",):
            continue
        url = fuzz_daemon.url + path.replace("{digest}", "sha256:" + "0" * 64).replace(
            "{model}", "m").replace("{name}", "c")
        documented = {m.upper() for m in ops}
        if "GET" in documented:
            documented.add("HEAD")
        wrong = next(m for m in ("PATCH", "PUT", "DELETE", "POST") if m not in documented)
        r = httpx.request(wrong, url, timeout=30)
        assert r.status_code == 405, (path, wrong, r.status_code)
        allowed = {m.strip() for m in r.headers.get("allow", "").split(",") if m.strip()}
        assert allowed == documented, (path, allowed, documented)
