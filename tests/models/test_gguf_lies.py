"""GGUF files whose metadata lies are refused at import, with one line naming the problem
(llama.cpp would refuse them later, at load, with no cause the user can see)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from llmtui.errors import ExitCode
from tests.conftest import one_line_error, store_of

U32, F32, STRING, F64 = 4, 6, 8, 12


def kv(key: str, vtype: int, value: object) -> bytes:
    out = struct.pack("<Q", len(key)) + key.encode() + struct.pack("<I", vtype)
    if vtype == STRING:
        text = str(value).encode()
        return out + struct.pack("<Q", len(text)) + text
    return out + struct.pack({U32: "<I", F32: "<f", F64: "<d"}[vtype], value)


def make_gguf(path: Path, *, kvs: list[bytes] | None = None, arch: str = "llama",
              offsets: tuple[int, int] = (0, 64), alignment: int = 32) -> Path:
    """A small GGUF: two F32 tensors of 16 values, data aligned as the file says."""
    kvs = [kv("general.architecture", STRING, arch), *(kvs or [])]
    tensors = b""
    for i, offset in enumerate(offsets):
        name = f"t{i}.weight".encode()
        tensors += struct.pack("<Q", len(name)) + name + struct.pack("<IQIQ", 1, 16, 0, offset)
    head = struct.pack("<4sIQQ", b"GGUF", 3, len(offsets), len(kvs)) + b"".join(kvs) + tensors
    pad = -len(head) % alignment
    path.write_bytes(head + b"\0" * pad + b"\0" * (max(offsets) + 64))
    return path


LIES = {
    "alignment-string": ([kv("general.alignment", STRING, "32")], "general.alignment"),
    "alignment-nan": ([kv("general.alignment", F32, float("nan"))], "general.alignment"),
    "alignment-inf": ([kv("general.alignment", F64, float("inf"))], "general.alignment"),
    "alignment-zero": ([kv("general.alignment", U32, 0)], "power of two"),
    "alignment-48": ([kv("general.alignment", U32, 48)], "power of two"),
    "duplicate-key": ([kv("general.name", STRING, "a"), kv("general.name", STRING, "b")],
                      "duplicate metadata key 'general.name'"),
}


@pytest.mark.parametrize("kind", list(LIES))
def test_lying_metadata_is_refused_at_import(kind: str, tmp_path: Path, llm, home) -> None:
    kvs, needle = LIES[kind]
    bad = make_gguf(tmp_path / f"{kind}.gguf", kvs=kvs)
    res = llm("import", str(bad), "--name", "bad:1")
    assert res.returncode == ExitCode.BAD_MODEL_FILE, res.stderr
    line = one_line_error(res.stderr)
    assert needle in line and bad.name in line, line
    assert store_of(home).models() == []


def test_unaligned_tensor_offset_is_refused(tmp_path: Path, llm, home) -> None:
    bad = make_gguf(tmp_path / "unaligned.gguf", offsets=(0, 40))
    res = llm("import", str(bad), "--name", "bad:1")
    assert res.returncode == ExitCode.BAD_MODEL_FILE, res.stderr
    line = one_line_error(res.stderr)
    assert "offset 40" in line and "alignment 32" in line, line


def test_vision_projector_is_not_a_model(tmp_path: Path, llm, home) -> None:
    mmproj = make_gguf(tmp_path / "mmproj-model-f16.gguf", arch="clip",
                       kvs=[kv("clip.projector_type", STRING, "mlp")])
    res = llm("import", str(mmproj), "--name", "eyes:1")
    assert res.returncode == ExitCode.BAD_MODEL_FILE, res.stderr
    assert "a vision projector, not a model" in one_line_error(res.stderr)
    assert store_of(home).models() == []


def test_an_honest_small_file_still_imports(tmp_path: Path, llm, home) -> None:
    good = make_gguf(tmp_path / "honest.gguf", kvs=[kv("general.alignment", U32, 64)],
                     alignment=64)
    res = llm("import", str(good), "--name", "honest:1")
    assert res.returncode == 0, res.stderr
    assert [m.name for m in store_of(home).models()] == ["honest:1"]


def test_llama_cpp_s_own_reason_reaches_the_user(tmp_path: Path, llm, home) -> None:
    """A file honest about itself that llama.cpp still cannot load (a "llama" with no
    hyperparameters): the one-line error carries llama.cpp's reason from its log, not the
    binding's generic failure, and the daemon goes on serving."""
    good = make_gguf(tmp_path / "honest.gguf")
    assert llm("import", str(good), "--name", "honest:1").returncode == 0
    res = llm("run", "honest:1", "hi")
    assert res.returncode == ExitCode.BAD_MODEL_FILE, res.stderr
    line = one_line_error(res.stderr)
    assert "llama.cpp could not load" in line and "honest" in line, line
    assert "key not found" in line or "missing" in line, line  # llama.cpp's own words
    assert llm("ps").returncode == 0
