"""Shared fixtures: real tiny models from the cache, a temp LLMTUI_HOME, the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import fetch_models  # noqa: E402
from tests.httpserver import ModelServer  # noqa: E402

LLM = [sys.executable, "-m", "llmtui"]


@pytest.fixture(scope="session")
def models_cache() -> Path:
    """The real tiny GGUF models (fetched once by `make models`, or here if missing)."""
    cache = fetch_models.cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    for name, spec in fetch_models.MODELS.items():
        fetch_models.fetch(name, spec, cache)
    return cache


@pytest.fixture(scope="session")
def smollm(models_cache: Path) -> Path:
    return models_cache / "smollm2-135m.gguf"


@pytest.fixture(scope="session")
def gemma(models_cache: Path) -> Path:
    return models_cache / "gemma3-270m.gguf"


@pytest.fixture(scope="session")
def thinker(smollm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reasoning model: the SmolLM2 test model with a template that thinks in <think>
    tags (see tests/thinking_model.py); written once per test session."""
    from tests.thinking_model import make_thinking_model

    return make_thinking_model(smollm, tmp_path_factory.mktemp("thinker"))


def stop_daemon_of(home: Path) -> None:
    """Stop a daemon a test started under this home (never leave one running)."""
    status = home / "run" / "daemon.json"
    if status.exists():
        subprocess.run([*LLM, "daemon", "stop"], env={**os.environ, "LLMTUI_HOME": str(home)},
                       capture_output=True, timeout=60)


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A hermetic llmtui home for this test (LLMTUI_HOME), used by subprocesses too."""
    h = tmp_path / "home"
    monkeypatch.setenv("LLMTUI_HOME", str(h))
    monkeypatch.delenv("LLMTUI_MODELS", raising=False)
    monkeypatch.delenv("LLMTUI_NO_DAEMON", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("LLMTUI_IDLE_TIMEOUT", "120")
    monkeypatch.setenv("NO_COLOR", "1")
    yield h
    stop_daemon_of(h)


def import_models(home: Path, smollm: Path, gemma: Path | None = None,
                  extra: dict[str, Path] | None = None) -> None:
    """Install the test models by linking them (no copy): fast and real; ``extra`` maps
    more names to files."""
    env = {**os.environ, "LLMTUI_HOME": str(home)}
    pairs = [(smollm, "smollm2:135m")] + ([(gemma, "gemma3:270m")] if gemma else [])
    pairs += [(path, name) for name, path in (extra or {}).items()]
    for path, name in pairs:
        subprocess.run([*LLM, "import", str(path), "--name", name, "--link"], env=env,
                       check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def warm_home(tmp_path_factory: pytest.TempPathFactory, smollm: Path,
              gemma: Path) -> Iterator[Path]:
    """One home, shared by a module's tests, whose daemon stays warm between them."""
    h = tmp_path_factory.mktemp("warm") / "home"
    import_models(h, smollm, gemma)
    yield h
    stop_daemon_of(h)


@pytest.fixture()
def warm(warm_home: Path) -> Runner:
    return Runner({"LLMTUI_HOME": str(warm_home), "NO_COLOR": "1",
                   "LLMTUI_IDLE_TIMEOUT": "300"})


@pytest.fixture()
def client(warm_home: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from llmtui.config import Settings
    from llmtui.daemon.client import Client

    monkeypatch.setenv("LLMTUI_IDLE_TIMEOUT", "300")
    return Client(settings=Settings.load({"LLMTUI_HOME": str(warm_home)}))


class Runner:
    """Runs the real `llm` command in a subprocess."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, *args: str, input: bytes | str | None = None, timeout: float = 120,
                 env: dict[str, str] | None = None, **kw: Any) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, **self.env, **(env or {})}
        data = input.decode() if isinstance(input, bytes) else input
        return subprocess.run([*LLM, *args], input=data, capture_output=True, text=True,
                              timeout=timeout, env=full_env, cwd=ROOT, **kw)


@pytest.fixture()
def llm(home: Path) -> Runner:
    return Runner({"LLMTUI_HOME": str(home)})


@pytest.fixture()
def server() -> Iterator[ModelServer]:
    with ModelServer() as srv:
        yield srv


def store_of(home: Path) -> Any:
    from llmtui.models.store import Store

    return Store(home / "data" / "models")


def one_line_error(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.startswith("llm: error:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return lines[0]


# -- vision (issue 19) --------------------------------------------------------------------------

#: Bump when tests/projector.py writes a different file, so the cache is rewritten.
PROJECTOR_VERSION = 1


@pytest.fixture(scope="session")
def projector(models_cache: Path) -> Path:
    """A tiny random-weight vision projector (mmproj GGUF) for SmolLM2-135M, written once
    with the ``gguf`` package (tests/projector.py): projector type ``mlp``, 576-wide output,
    32x32 images in 8x8 patches, so every image is 16 image tokens. llama.cpp's mtmd loads
    it with the SmolLM2 test model (tests/vision/test_projector.py proves it)."""
    from tests.projector import write_projector

    target = models_cache / f"llmtui-test-mmproj-v{PROJECTOR_VERSION}.gguf"
    if not target.exists():
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        write_projector(tmp)
        os.replace(tmp, target)  # atomic: a concurrent run never sees half a file
    return target


def import_vision(home: Path, smollm: Path, projector: Path,
                  name: str = "smolvision:test") -> None:
    """Install SmolLM2-135M with the test projector as one vision model (linked)."""
    env = {**os.environ, "LLMTUI_HOME": str(home)}
    subprocess.run([*LLM, "import", str(smollm), "--mmproj", str(projector), "--name", name,
                    "--link"], env=env, check=True, capture_output=True, timeout=60)


