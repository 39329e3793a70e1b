"""An encoder on plain onnxruntime: all-MiniLM-L6-v2, downloaded from a hub (the local test
server serving the package's sentence-transformers folder) and converted by
`llm convert hf://... --to onnx` (optimum's exporter), embedding through the daemon with
vectors matching sentence-transformers."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from llmtui.errors import ExitCode
from tests.conftest import one_line_error, store_of
from tests.httpserver import ModelServer

REFERENCE = json.loads((Path(__file__).parent.parent / "rag" / "data" /
                        "minilm_reference.json").read_text())


def test_minilm_onnx_embeddings_match_sentence_transformers(
        llm, home: Path, models_cache: Path, server: ModelServer, tmp_path: Path) -> None:
    folder = tmp_path / "minilm"
    with zipfile.ZipFile(models_cache / "all-minilm-l6-v2.zip") as zf:
        zf.extractall(folder)
    config = next(p for p in folder.rglob("config.json") if p.parent.name != "1_Pooling")
    for path in config.parent.iterdir():
        if path.is_file():
            server.add(f"/cdn/sentence-transformers/all-MiniLM-L6-v2/{path.name}", path)
    res = llm("convert", "hf://sentence-transformers/all-MiniLM-L6-v2", "--to", "onnx",
              "--name", "minilm:onnx", env={"HF_ENDPOINT": server.url}, timeout=600)
    assert res.returncode == 0, res.stderr
    made = store_of(home).get("minilm:onnx")
    assert made.format == "onnx" and made.capabilities == ("embedding",)
    assert made.source.startswith("convert:hf://sentence-transformers/all-MiniLM-L6-v2")
    assert not [p for p in store_of(home).partial.iterdir() if p.name.startswith("hf-")]
    texts = [i["text"] for i in REFERENCE["items"] if i["text"].strip() and "\n" not in i["text"]]
    res = llm("embed", "-m", "minilm:onnx", input="\n".join(texts) + "\n", timeout=300)
    assert res.returncode == 0, res.stderr
    by_text = {i["text"]: np.asarray(i["vector"]) for i in REFERENCE["items"]}
    for line in res.stdout.splitlines():
        got = json.loads(line)
        a, b = np.asarray(got["embedding"]), by_text[got["text"]]
        assert len(a) == 384
        assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) >= 0.99, got["text"]
    ps = json.loads(llm("ps", "--json").stdout)
    assert any(m["backend"] == "onnxruntime" for m in ps)
    res = llm("run", "minilm:onnx", "hello")
    assert res.returncode != 0 and "embedding model" in res.stderr


def test_zip_without_a_model(llm, home: Path, tmp_path: Path) -> None:
    archive = tmp_path / "notes.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("notes/config.json", "{}")
    res = llm("convert", str(archive), "--to", "onnx")
    assert res.returncode == ExitCode.BAD_MODEL_FILE, res.stderr
    assert "holds no Hugging Face model" in one_line_error(res.stderr)
    assert not [p for p in store_of(home).partial.iterdir() if p.name.startswith("hf-")]
