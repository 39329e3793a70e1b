"""A home with the text test model and the vision test model (SmolLM2 + the test
projector), and a warm daemon on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import TcpDaemon
from tests.conftest import Runner, import_models, import_vision, stop_daemon_of

VIS = "smolvision:test"
SMOL = "smollm2:135m"
GREEDY = {"temperature": 0, "repeat_penalty": 1.0, "seed": 1}


@pytest.fixture(scope="module")
def vision_home(tmp_path_factory: pytest.TempPathFactory, smollm: Path,
                projector: Path) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("vision") / "home"
    import_models(home, smollm)
    import_vision(home, smollm, projector, VIS)
    yield home
    stop_daemon_of(home)


@pytest.fixture(scope="module")
def vision_tcp(vision_home: Path) -> Iterator[TcpDaemon]:
    with TcpDaemon(vision_home) as daemon:
        yield daemon


@pytest.fixture()
def vllm(vision_home: Path) -> Runner:
    """The real `llm` command on the vision home (its daemon stays warm)."""
    return Runner({"LLMTUI_HOME": str(vision_home), "NO_COLOR": "1",
                   "LLMTUI_IDLE_TIMEOUT": "300"})
