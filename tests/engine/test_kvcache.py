"""The prompt cache that outlives the model: a long prompt's state saved on unload or
daemon stop, restored (not evaluated) by the next request that shares it, and files that
lie (truncated, tampered, another model's) ignored and removed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import import_models, stop_daemon_of

SMOL = "smollm2:135m"
SYSTEM = ("You are the archivist of the lighthouse at Ormsby Point. You keep the logbook of "
          "every ship that passes, the weather of each day, and the names of the keepers "
          "before you. ") * 12
OPTS = {"temperature": 0, "num_predict": 12}


def client_for(home: Path) -> Any:
    from llmtui.config import Settings
    from llmtui.daemon.client import Client

    return Client(settings=Settings.load({"LLMTUI_HOME": str(home)}))


def chat(c: Any, question: str) -> dict[str, Any]:
    """A non-streamed /api/chat through the client (which starts the daemon if needed)."""
    return dict(c.request("POST", "/api/chat", {
        "model": SMOL, "stream": False, "options": OPTS,
        "messages": [{"role": "system", "content": SYSTEM},
                     {"role": "user", "content": question}]}))


def unload(c: Any) -> None:
    c.request("POST", "/api/x/unload", {"model": SMOL})


def files(home: Path) -> list[Path]:
    return sorted((home / "cache" / "kvcache").glob("*/*.kv"))


@pytest.fixture()
def cache_home(home: Path, smollm: Path) -> Path:
    import_models(home, smollm)
    return home


def test_restored_after_a_daemon_restart(cache_home: Path) -> None:
    c = client_for(cache_home)
    first = chat(c, "Who keeps the logbook?")
    assert first["prompt_eval_count"] > 256
    assert not first.get("prompt_eval_cached_count")
    stop_daemon_of(cache_home)  # the daemon stops: the slot's prompt goes to disk
    saved = files(cache_home)
    assert len(saved) == 1
    assert saved[0].stat().st_mode & 0o077 == 0  # owner-only
    again = chat(c, "Who keeps the logbook?")
    # the very same prompt: restored with the logits that followed it, nothing evaluated
    assert again["prompt_eval_cached_count"] == again["prompt_eval_count"]
    assert again["message"]["content"] == first["message"]["content"]
    unload(c)
    other = chat(c, "What does the archivist record?")  # shares the system prompt
    cached = other.get("prompt_eval_cached_count", 0)
    assert cached >= 256 and other["prompt_eval_count"] - cached < 40, other


def test_files_that_lie_are_ignored(cache_home: Path) -> None:
    c = client_for(cache_home)
    reference = chat(c, "Who keeps the logbook?")["message"]["content"]
    unload(c)
    (path,) = files(cache_home)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the state
    path.write_bytes(bytes(data))
    tampered = chat(c, "Who keeps the logbook?")
    assert not tampered.get("prompt_eval_cached_count")
    assert tampered["message"]["content"] == reference
    unload(c)
    (path,) = files(cache_home)  # rewritten from the good state
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])  # truncated
    truncated = chat(c, "Who keeps the logbook?")
    assert not truncated.get("prompt_eval_cached_count")
    assert truncated["message"]["content"] == reference
    stop_daemon_of(cache_home)
    # a state saved for another model (its digest in the header) is not this model's
    (path,) = files(cache_home)
    digest = path.parent.name
    path.write_bytes(path.read_bytes().replace(digest.encode(), b"0" * 64, 1))
    alien = chat(c, "Who keeps the logbook?")
    assert not alien.get("prompt_eval_cached_count")
    assert alien["message"]["content"] == reference


def test_size_bound_and_cache_commands(cache_home: Path, llm: Any) -> None:
    c = client_for(cache_home)
    chat(c, "Who keeps the logbook?")
    unload(c)
    (one,) = files(cache_home)
    size = one.stat().st_size
    llm("config", "set", "prompt_cache_size", str(int(size * 2.5)))
    stop_daemon_of(cache_home)
    global SYSTEM
    original = SYSTEM
    try:
        for i in range(4):  # four different long prompts: only two fit
            SYSTEM = f"Variant {i}. " + original
            chat(c, "Who keeps the logbook?")
            unload(c)
    finally:
        SYSTEM = original
    kept = files(cache_home)
    assert 1 <= len(kept) <= 2
    assert sum(p.stat().st_size for p in kept) <= size * 2.5
    listed = llm("cache", "ls")
    assert listed.returncode == 0 and SMOL in listed.stdout, listed.stderr
    cleared = llm("cache", "clear", "--model", SMOL)
    assert cleared.returncode == 0 and "removed" in cleared.stderr
    assert files(cache_home) == []
    missing = llm("cache", "clear", "--model", "nosuch:model")
    assert missing.returncode == 3 and "not found" in missing.stderr


def test_auto_kv_types_cpu_and_gpu() -> None:
    """"auto": K f16 / V bf16 on the CPU (batch-invariant flash attention); f16 for both
    with layers on a GPU, where CUDA has flash-attention kernels for equal types only."""
    from llmtui.backends.llamacpp import kv_types

    assert kv_types("auto") == (1, 30)
    assert kv_types("auto", gpu=True) == (1, 1)
    assert kv_types("q8_0", gpu=True) == (8, 8)
