"""Vision models in the store: import with --mmproj, pull of a catalog pair, show, list,
rm; and every bad pair refused at import with a clear message, the store unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmtui.errors import ExitCode
from tests.conftest import one_line_error, store_of
from tests.httpserver import ModelServer
from tests.projector import write_projector


def put(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def assert_nothing_installed(home: Path) -> None:
    store = store_of(home)
    assert store.models() == []
    if store.blobs.exists():
        assert list(store.blobs.iterdir()) == []


def test_import_copied_show_list_rm(llm, home: Path, smollm: Path, projector: Path) -> None:
    res = llm("import", str(smollm), "--mmproj", str(projector), "--name", "vis:1")
    assert res.returncode == 0, res.stderr
    assert "with projector" in res.stderr and "vis:1" in res.stderr
    manifest = store_of(home).get("vis:1")
    assert [layer.kind for layer in manifest.layers] == ["model", "projector"]
    assert manifest.projector is not None and manifest.projector.filename == projector.name
    assert "vision" in manifest.capabilities
    assert manifest.size == smollm.stat().st_size + projector.stat().st_size

    table = llm("list").stdout.splitlines()
    assert table[0].split("\t")[5] == "input"
    assert table[1].split("\t")[:1] == ["vis:1"] and "text+image" in table[1].split("\t")

    shown = json.loads(llm("show", "vis:1", "--json").stdout)
    assert "vision" in shown["capabilities"]
    proj = shown["projector"]
    assert (proj["projector_type"], proj["image_size"], proj["tokens_per_image"]) == \
        ("mlp", 32, 16)
    assert proj["output_width"] == shown["embedding_length"] == 576
    assert proj["file"] == projector.name
    text = llm("show", "vis:1").stdout
    assert "projector\tmlp" in text and "tokens per image\t16" in text
    assert "vision" in text

    assert llm("rm", "vis:1").returncode == 0
    assert_nothing_installed(home)  # both blobs went with the model


def test_import_linked(llm, home: Path, smollm: Path, projector: Path) -> None:
    res = llm("import", str(smollm), "--mmproj", str(projector), "--name", "vis:link",
              "--link")
    assert res.returncode == 0, res.stderr
    manifest = store_of(home).get("vis:link")
    assert [layer.link for layer in manifest.layers] == [str(smollm.resolve()),
                                                          str(projector.resolve())]
    assert not store_of(home).blobs.exists() or not list(store_of(home).blobs.iterdir())
    assert "text+image" in llm("list").stdout


def test_a_text_model_is_not_marked(llm, home: Path, smollm: Path) -> None:
    llm("import", str(smollm), "--name", "plain:1", "--link")
    assert "\ttext\t" in llm("list").stdout
    shown = json.loads(llm("show", "plain:1", "--json").stdout)
    assert "vision" not in shown["capabilities"] and "projector" not in shown


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: write_projector(d / "wide.gguf", n_embd_text=960),
     "wide.gguf does not fit smollm2-135m.gguf: the projector makes 960-wide "
     "embeddings, the model's n_embd is 576"),
    (lambda d: write_projector(d / "int32.gguf", flaw="int32_key"),
     "int32.gguf is a malformed projector: 'clip.vision.image_size' has type int32"),
    (lambda d: write_projector(d / "nopatch.gguf", flaw="no_patch_size"),
     "nopatch.gguf is a malformed projector: clip.vision.patch_size is missing"),
    (lambda d: put(d / "trunc.gguf", b"GGUF\x03\x00\x00\x00"), "trunc.gguf is truncated"),
    (lambda d: put(d / "text.gguf", b"hello"), "text.gguf is not a GGUF model"),
])
def test_bad_projectors_are_refused_at_import(llm, home: Path, smollm: Path, tmp_path: Path,
                                              make, message: str) -> None:
    bad = make(tmp_path)
    res = llm("import", str(smollm), "--mmproj", str(bad), "--name", "vis:bad")
    assert res.returncode in (ExitCode.BAD_MODEL_FILE, ExitCode.INVALID_INPUT), res.stderr
    assert message in one_line_error(res.stderr)
    assert_nothing_installed(home)


def test_swapped_or_missing_files(llm, home: Path, smollm: Path, projector: Path,
                                  tmp_path: Path) -> None:
    res = llm("import", str(projector), "--name", "p:1")
    assert res.returncode == ExitCode.BAD_MODEL_FILE
    error = one_line_error(res.stderr)
    assert "is a vision projector, not a model" in error and "--mmproj" in error
    res = llm("import", str(smollm), "--mmproj", str(smollm), "--name", "p:2")
    assert "is not a projector" in one_line_error(res.stderr)
    res = llm("import", str(smollm), "--mmproj", str(tmp_path / "none.gguf"), "--name", "p:3")
    assert res.returncode == ExitCode.INVALID_INPUT
    assert "no such projector file" in one_line_error(res.stderr)
    assert_nothing_installed(home)


def test_pull_a_catalog_vision_model(llm, home: Path, server: ModelServer, smollm: Path,
                                     projector: Path) -> None:
    """`llm pull smolvlm:256m` through the real catalog entry, from a local fake hub."""
    repo = "/cdn/ggml-org/SmolVLM-256M-Instruct-GGUF"
    server.add(f"{repo}/SmolVLM-256M-Instruct-Q8_0.gguf", smollm)
    server.add(f"{repo}/mmproj-SmolVLM-256M-Instruct-Q8_0.gguf", projector)
    res = llm("pull", "smolvlm:256m", env={"HF_ENDPOINT": server.url})
    assert res.returncode == 0, res.stderr
    manifest = store_of(home).get("smolvlm:256m")
    assert [(layer.filename, layer.kind) for layer in manifest.layers] == [
        ("SmolVLM-256M-Instruct-Q8_0.gguf", "model"),
        ("mmproj-SmolVLM-256M-Instruct-Q8_0.gguf", "projector")]
    assert "vision" in manifest.capabilities and manifest.family == "smolvlm"


def test_pull_refuses_a_mismatched_pair(llm, home: Path, server: ModelServer, smollm: Path,
                                        tmp_path: Path) -> None:
    repo = "/cdn/ggml-org/SmolVLM-256M-Instruct-GGUF"
    server.add(f"{repo}/SmolVLM-256M-Instruct-Q8_0.gguf", smollm)
    server.add(f"{repo}/mmproj-SmolVLM-256M-Instruct-Q8_0.gguf",
               write_projector(tmp_path / "wide.gguf", n_embd_text=960))
    res = llm("pull", "smolvlm:256m", env={"HF_ENDPOINT": server.url})
    assert res.returncode == ExitCode.BAD_MODEL_FILE, res.stderr
    assert "960-wide embeddings" in one_line_error(res.stderr)
    assert_nothing_installed(home)


def test_catalog_lists_vision_models(llm, home: Path) -> None:
    listed = json.loads(llm("catalog", "vision", "--json").stdout)["models"]
    names = {m["name"] for m in listed}
    assert {"smolvlm:256m", "smolvlm:500m", "gemma3:4b", "qwen2.5vl:3b"} <= names
    for m in listed:
        assert "vision" in m["capabilities"]
        assert m["sources"] and all(s.startswith("hf://") for s in m["sources"])
        assert "mmproj" in m["sources"][0]
