"""Bad model files are refused with a clear one-line error and leave the store unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmtui.errors import ExitCode
from llmtui.models.gguf_info import read_info
from tests.conftest import one_line_error, store_of


def test_reads_real_models(smollm: Path, gemma: Path) -> None:
    info = read_info(smollm)
    assert info.architecture == "llama"
    assert info.quantization == "Q4_1"
    assert info.context_length == 8192
    assert info.chat_template and "<|im_start|>" in info.chat_template
    assert 130_000_000 < info.parameters < 140_000_000
    g = read_info(gemma)
    assert g.architecture == "gemma3"
    assert g.chat_template is None
    assert g.quantization == "Q4_K_M"


@pytest.fixture()
def bad_files(tmp_path: Path, smollm: Path) -> dict[str, Path]:
    files = {
        "empty": b"",
        "magic-only": b"GGUF",
        "not-gguf": b"PK\x03\x04 this is a zip, not a model" * 10,
        "text": b"hello world\n" * 100,
    }
    out = {}
    for name, data in files.items():
        p = tmp_path / f"{name}.gguf"
        p.write_bytes(data)
        out[name] = p
    with smollm.open("rb") as fh:
        head = fh.read(5_000_000)
    for name, n in {"truncated-header": 2_000, "truncated-data": 5_000_000}.items():
        p = tmp_path / f"{name}.gguf"
        p.write_bytes(head[:n])
        out[name] = p
    return out


@pytest.mark.parametrize("kind", ["empty", "magic-only", "not-gguf", "text",
                                  "truncated-header", "truncated-data"])
def test_import_refuses_bad_file(kind: str, bad_files: dict[str, Path], llm, home) -> None:
    res = llm("import", str(bad_files[kind]), "--name", "bad:1")
    assert res.returncode == ExitCode.BAD_MODEL_FILE, res.stderr
    line = one_line_error(res.stderr)
    assert bad_files[kind].name in line
    store = store_of(home)
    assert store.models() == []
    assert not list(store.blobs.glob("sha256-*")) if store.blobs.exists() else True
