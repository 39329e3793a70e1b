"""Every bad input to convert / import / quantize: a clear one-line error, a distinct exit
code, and nothing left in the store (no manifest, no blob, no work folder)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmtui.errors import ExitCode
from tests.conftest import LLM, ROOT, import_models, one_line_error, store_of


def _empty(home: Path) -> None:
    """The store holds only what the test put there on purpose, and no leftovers."""
    store = store_of(home)
    if store.partial.is_dir():
        leftovers = [p.name for p in store.partial.iterdir()
                     if p.name.startswith(("convert-", "quantize-", "hf-"))]
        assert leftovers == [], leftovers


def _blobs(home: Path) -> set[str]:
    store = store_of(home)
    return {p.name for p in store.blobs.iterdir()} if store.blobs.is_dir() else set()


def test_folder_that_is_not_a_model(llm, home: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello")
    for args in (("convert", str(junk), "--to", "onnx"), ("import", str(junk), "--name", "j")):
        res = llm(*args)
        assert res.returncode == ExitCode.BAD_MODEL_FILE, res.stderr
        assert "is not a model folder" in one_line_error(res.stderr)
    assert store_of(home).models() == [] and _blobs(home) == set()
    _empty(home)


def _fake_hf_folder(path: Path, model_type: str, arch: str) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    path.mkdir()
    (path / "config.json").write_text(json.dumps({
        "model_type": model_type, "architectures": [arch], "hidden_size": 8,
        "num_hidden_layers": 1, "num_attention_heads": 1, "vocab_size": 16}))
    save_file({"w": np.zeros((2, 2), dtype=np.float32)}, str(path / "model.safetensors"))
    return path


def test_architecture_no_tool_supports(llm, home: Path, tmp_path: Path) -> None:
    src = _fake_hf_folder(tmp_path / "made-up", "madeupformer", "MadeUpForCausalLM")
    for to, tool in (("onnx", "onnxruntime-genai"), ("openvino", "optimum-intel")):
        res = llm("convert", str(src), "--to", to, timeout=300)
        assert res.returncode == ExitCode.INVALID_INPUT, res.stderr
        line = one_line_error(res.stderr)
        assert tool in line and "madeupformer" in line
    # An architecture transformers knows but onnxruntime-genai's builder does not build.
    src = _fake_hf_folder(tmp_path / "gpt2", "gpt2", "GPT2LMHeadModel")
    res = llm("convert", str(src), "--to", "onnx", timeout=300)
    assert res.returncode == ExitCode.INVALID_INPUT, res.stderr
    assert "does not support the 'gpt2' architecture" in one_line_error(res.stderr)
    assert store_of(home).models() == [] and _blobs(home) == set()
    _empty(home)


def test_unknown_target_precision_and_embedding_source(llm, home: Path, smollm: Path,
                                                       tmp_path: Path) -> None:
    import_models(home, smollm)
    res = llm("convert", "smollm2:135m", "--to", "tflite")
    assert res.returncode == ExitCode.INVALID_INPUT and "unknown target" in res.stderr
    res = llm("convert", "smollm2:135m", "--to", "onnx", "--precision", "int3")
    assert res.returncode == ExitCode.INVALID_INPUT and "unknown precision" in res.stderr
    res = llm("convert", "smollm2:135m", "--to", "gguf")
    assert res.returncode == ExitCode.INVALID_INPUT and "llm quantize" in res.stderr
    res = llm("convert", "nope:1", "--to", "onnx")
    assert res.returncode == ExitCode.MODEL_NOT_FOUND
    res = llm("convert", "hf://just-one-part", "--to", "onnx")
    assert res.returncode == ExitCode.INVALID_INPUT
    assert [m.name for m in store_of(home).models()] == ["smollm2:135m"]


def test_conversion_interrupted_leaves_nothing(home: Path, smollm: Path) -> None:
    """Ctrl-C while the converter runs: exit 130, the child is gone, nothing installed."""
    import_models(home, smollm)
    before = _blobs(home)
    env = {**os.environ, "LLMTUI_HOME": str(home)}
    proc = subprocess.Popen([*LLM, "convert", "smollm2:135m", "--to", "onnx"], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    partial = store_of(home).partial
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the work folder and its log exist
        if list(partial.glob("convert-*/convert.log")):
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the conversion never started")
    time.sleep(3)  # the converter child is busy importing / dequantizing
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert "Traceback" not in err
    assert [m.name for m in store_of(home).models()] == ["smollm2:135m"]
    assert _blobs(home) == before
    _empty(home)
    found = subprocess.run(["pgrep", "-f", "llmtui.models.convert.steps.*" + str(home)],
                           capture_output=True, text=True)
    assert found.stdout.strip() == "", "the converter child was left running"


def test_converter_killed_is_a_clear_error(home: Path, smollm: Path) -> None:
    """The converter process dies (out of memory, kill -9): one error line, nothing kept."""
    import_models(home, smollm)
    env = {**os.environ, "LLMTUI_HOME": str(home)}
    proc = subprocess.Popen([*LLM, "convert", "smollm2:135m", "--to", "onnx"], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    child = ""
    while time.monotonic() < deadline and not child:
        found = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "convert.steps"],
                               capture_output=True, text=True)
        child = found.stdout.strip()
        time.sleep(0.2)
    assert child, "no converter child appeared"
    time.sleep(2)
    os.kill(int(child.split()[0]), signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.GENERATION_FAILED, err
    assert "killed by signal 9" in one_line_error(err)
    assert [m.name for m in store_of(home).models()] == ["smollm2:135m"]
    _empty(home)


def test_corrupt_onnx_file(llm, home: Path, onnx_folder: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad-onnx"
    shutil.copytree(onnx_folder, bad)
    graph = bad / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[10:4000] = os.urandom(3990)
    graph.write_bytes(bytes(data))
    res = llm("import", str(bad), "--name", "bad:1")
    assert res.returncode == ExitCode.BAD_MODEL_FILE, res.stderr
    assert "model.onnx is not a valid ONNX model" in one_line_error(res.stderr)
    graph.write_bytes(b"")
    res = llm("import", str(bad), "--name", "bad:1")
    assert res.returncode == ExitCode.BAD_MODEL_FILE
    assert store_of(home).models() == [] and _blobs(home) == set()
    _empty(home)


def test_missing_extra(llm, home: Path, smollm: Path, tmp_path: Path) -> None:
    """Without the convert extra's packages: one line naming `llmtui[convert]`."""
    import_models(home, smollm)
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('onnxruntime_genai', 'optimum'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n")
    env = {"PYTHONPATH": f"{block}{os.pathsep}{ROOT}"}
    for to, module in (("onnx", "onnxruntime_genai"), ("openvino", "optimum")):
        res = llm("convert", "smollm2:135m", "--to", to, env=env)
        assert res.returncode == ExitCode.MISSING_EXTRA, res.stderr
        line = one_line_error(res.stderr)
        assert f"'{module}'" in line and "llmtui[convert]" in line
    assert [m.name for m in store_of(home).models()] == ["smollm2:135m"]


def test_not_enough_disk(home: Path, smollm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk is refused before any work (the free space is faked small)."""
    import shutil as real_shutil
    from collections import namedtuple

    from llmtui.errors import NoSpaceError
    from llmtui.models.convert.run import convert, quantize

    import_models(home, smollm)
    store = store_of(home)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(real_shutil, "disk_usage", lambda _p: usage(10**9, 10**9, 10**6))
    with pytest.raises(NoSpaceError, match="not enough disk space"):
        convert(store, "smollm2:135m", "onnx")
    with pytest.raises(NoSpaceError):
        quantize(store, "smollm2:135m", "Q8_0")
    monkeypatch.undo()
    assert [m.name for m in store.models()] == ["smollm2:135m"]
    _empty(home)
    # And through the CLI: the same refusal is exit code NO_SPACE (a tiny tmpfs would
    # need root; the check is the same code path).
    assert sys.executable


def test_cli_help_stays_light() -> None:
    code = ("import sys; from llmtui.cli.app import app; "
            "heavy = [m for m in ('torch', 'transformers', 'onnxruntime_genai', 'openvino', "
            "'openvino_genai', 'optimum', 'nncf', 'llama_cpp') if m in sys.modules]; "
            "print(','.join(heavy))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""


def test_api_convert_errors_and_a_client_that_leaves(home: Path, smollm: Path) -> None:
    """/api/x/convert: bad requests are 4xx; a streaming client that leaves stops the
    conversion and nothing is installed."""
    import httpx

    from tests.api.conftest import TcpDaemon

    import_models(home, smollm)
    with TcpDaemon(home) as daemon:
        url = daemon.url + "/api/x/convert"
        r = httpx.post(url, json={"model": "smollm2:135m", "to": "tflite", "stream": False},
                       timeout=60)
        assert r.status_code == 400 and "unknown target" in r.json()["error"]
        r = httpx.post(url, json={"model": "nope:1", "to": "onnx"}, timeout=60)
        assert r.status_code == 404
        r = httpx.post(url, json={"model": "smollm2:135m"}, timeout=60)
        assert r.status_code == 400
        r = httpx.post(url, json={"model": "/etc", "to": "onnx"}, timeout=60)
        assert r.status_code == 400
        with httpx.stream("POST", url, json={"model": "smollm2:135m", "to": "onnx"},
                          timeout=120) as resp:
            assert resp.status_code == 200
            first = json.loads(next(resp.iter_lines()))
            assert "converting smollm2:135m" in first["status"]
        deadline = time.monotonic() + 60
        partial = store_of(home).partial
        while time.monotonic() < deadline and any(
                p.name.startswith("convert-") for p in partial.iterdir()):
            time.sleep(0.5)
        _empty(home)
        assert [m.name for m in store_of(home).models()] == ["smollm2:135m"]
