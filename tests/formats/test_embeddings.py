"""An encoder on plain onnxruntime: all-MiniLM-L6-v2 from the package's sentence-transformers
zip, converted by `llm convert --to onnx` (optimum's exporter), embedding through the
daemon with vectors matching sentence-transformers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.conftest import store_of

REFERENCE = json.loads((Path(__file__).parent.parent / "rag" / "data" /
                        "minilm_reference.json").read_text())


def test_minilm_onnx_embeddings_match_sentence_transformers(llm, home: Path,
                                                            models_cache: Path) -> None:
    res = llm("convert", str(models_cache / "all-minilm-l6-v2.zip"), "--to", "onnx",
              "--name", "minilm:onnx", timeout=600)
    assert res.returncode == 0, res.stderr
    made = store_of(home).get("minilm:onnx")
    assert made.format == "onnx" and made.capabilities == ("embedding",)
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
