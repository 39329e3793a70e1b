"""The test SmolLM2 GGUF converted to ONNX int4 and OpenVINO int4 once, by the real
`llm convert`, and cached beside the test models, keyed by the converters' versions and
the conversion code, so a later session (or CI on the same machine) reuses them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from tests.conftest import LLM, ROOT, Runner, import_models, stop_daemon_of

CONVERTERS = ("onnxruntime-genai", "transformers", "torch", "optimum-intel", "nncf",
              "openvino", "openvino-tokenizers")


def _key() -> str:
    h = hashlib.sha256()
    for name in CONVERTERS:
        try:
            h.update(f"{name}={version(name)};".encode())
        except PackageNotFoundError:
            h.update(f"{name}=none;".encode())
    for path in sorted((ROOT / "llmtui" / "models" / "convert").glob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _convert_once(models_cache: Path, smollm: Path, to: str) -> tuple[Path, float]:
    """The converted folder (files, not links) and how long the conversion took."""
    cache = models_cache / "converted" / _key()
    for stale in cache.parent.glob("*"):  # outputs of older converters or conversion code
        if stale.is_dir() and stale != cache and not stale.name.startswith("."):
            shutil.rmtree(stale, ignore_errors=True)
    target = cache / f"smollm2-135m-{to}-int4"
    stamp = target / ".llmtui-seconds"
    if stamp.is_file():
        return target, float(stamp.read_text())
    cache.mkdir(parents=True, exist_ok=True)
    home = cache / f"home-{to}-{os.getpid()}"
    env = {**os.environ, "LLMTUI_HOME": str(home), "NO_COLOR": "1"}
    try:
        import_models(home, smollm)
        started = time.perf_counter()
        res = subprocess.run([*LLM, "convert", "smollm2:135m", "--to", to], env=env,
                             capture_output=True, text=True, timeout=900, cwd=ROOT)
        seconds = time.perf_counter() - started
        assert res.returncode == 0, res.stderr[-3000:]
        shown = json.loads(subprocess.run([*LLM, "show", f"smollm2:135m-{to}", "--json"],
                                          env=env, capture_output=True, text=True,
                                          check=True, timeout=60).stdout)
        tmp = cache / f".{target.name}.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(shown["location"], tmp, symlinks=False)  # the view's links resolved
        (tmp / ".llmtui-seconds").write_text(f"{seconds:.1f}")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        return target, seconds
    finally:
        stop_daemon_of(home)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def onnx_folder(models_cache: Path, smollm: Path) -> Path:
    return _convert_once(models_cache, smollm, "onnx")[0]


@pytest.fixture(scope="session")
def openvino_folder(models_cache: Path, smollm: Path) -> Path:
    return _convert_once(models_cache, smollm, "openvino")[0]


def import_folder(home: Path, folder: Path, name: str) -> None:
    env = {**os.environ, "LLMTUI_HOME": str(home)}
    res = subprocess.run([*LLM, "import", str(folder), "--name", name], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


@pytest.fixture(scope="module")
def formats_home(tmp_path_factory: pytest.TempPathFactory, smollm: Path, gemma: Path,
                 onnx_folder: Path, openvino_folder: Path) -> Iterator[Path]:
    """One home with the GGUF, ONNX and OpenVINO SmolLM2 (and Gemma), shared by a module."""
    home = tmp_path_factory.mktemp("formats") / "home"
    import_models(home, smollm, gemma)
    import_folder(home, onnx_folder, "smollm2:135m-onnx")
    import_folder(home, openvino_folder, "smollm2:135m-openvino")
    yield home
    stop_daemon_of(home)


@pytest.fixture()
def fm(formats_home: Path) -> Runner:
    return Runner({"LLMTUI_HOME": str(formats_home), "NO_COLOR": "1",
                   "LLMTUI_IDLE_TIMEOUT": "300"})
