"""`llm quantize` and /api/create's `quantize` with llama.cpp's quantizer, on the test Gemma."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import ollama
import pytest

from llmtui.errors import ExitCode
from llmtui.eval.perplexity import DEFAULT_TEXT
from tests.api.conftest import TcpDaemon
from tests.conftest import Runner, import_models, one_line_error, stop_daemon_of, store_of
from tests.formats.reference import gguf_perplexity

# Part of the shipped text keeps Gemma's 262k-token vocabulary logits small and quick.
TEXT = DEFAULT_TEXT.read_text(encoding="utf-8")[:700]


@pytest.fixture(scope="module")
def qhome(tmp_path_factory: pytest.TempPathFactory, smollm: Path, gemma: Path) -> Path:
    home = tmp_path_factory.mktemp("quant") / "home"
    import_models(home, smollm, gemma)
    yield home
    stop_daemon_of(home)


@pytest.fixture()
def q(qhome: Path) -> Runner:
    return Runner({"LLMTUI_HOME": str(qhome), "NO_COLOR": "1"})


def test_quantize_gemma_q8_0_and_q4_0_perplexity_order(q: Runner, qhome: Path,
                                                         gemma: Path) -> None:
    for qtype in ("Q8_0", "Q4_0"):
        res = q("quantize", "gemma3:270m", "--type", qtype.lower(), timeout=300)
        assert res.returncode == 0, res.stderr
    store = store_of(qhome)
    q8 = store.get("gemma3:270m-q8_0")
    q4 = store.get("gemma3:270m-q4_0")
    assert (q8.quantization, q4.quantization) == ("Q8_0", "Q4_0")
    assert q8.family == "gemma3" and q4.size < q8.size
    listed = json.loads(q("list", "--json").stdout)
    assert {"gemma3:270m-q8_0", "gemma3:270m-q4_0"} <= {m["name"] for m in listed}
    ppl = {name: gguf_perplexity(store.resolve_file(name)[1], TEXT, ctx=96)
           for name in ("gemma3:270m-q8_0", "gemma3:270m", "gemma3:270m-q4_0")}
    print("\nGemma perplexity:", {k: round(v, 2) for k, v in ppl.items()})
    # More bits, lower perplexity: Q8_0 <= the Q4_K_M original < Q4_0.
    assert ppl["gemma3:270m-q8_0"] < ppl["gemma3:270m-q4_0"]
    assert ppl["gemma3:270m"] < ppl["gemma3:270m-q4_0"]
    assert ppl["gemma3:270m-q8_0"] < ppl["gemma3:270m"] * 1.05
    res = q("run", "gemma3:270m-q4_0", "The capital of France is", "-t", "0", "-n", "8")
    assert res.returncode == 0 and res.stdout.strip(), res.stderr


def _imatrix(gguf: Path, out: Path) -> None:
    """A synthetic importance matrix in llama-imatrix's GGUF layout (all ones)."""
    import gguf as g

    reader = g.GGUFReader(str(gguf))
    writer = g.GGUFWriter(str(out), "imatrix")
    writer.add_string("general.type", "imatrix")
    for tensor in reader.tensors:
        if len(tensor.shape) == 2 and tensor.name.endswith(".weight") and "blk." in tensor.name:
            cols = int(tensor.shape[0])
            writer.add_tensor(tensor.name + ".in_sum2", np.ones((1, cols), dtype=np.float32))
            writer.add_tensor(tensor.name + ".counts", np.ones((1, 1), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_quantize_with_importance_matrix(q: Runner, qhome: Path, smollm: Path,
                                         tmp_path: Path) -> None:
    imatrix = tmp_path / "imatrix.gguf"
    _imatrix(smollm, imatrix)
    res = q("quantize", "smollm2:135m", "--type", "Q4_K_S", "--imatrix", str(imatrix),
            "--name", "smol:q4ks", timeout=300)
    assert res.returncode == 0, res.stderr
    assert store_of(qhome).get("smol:q4ks").quantization == "Q4_K_S"
    res = q("run", "smol:q4ks", "Hello", "-n", "4")
    assert res.returncode == 0, res.stderr


def test_quantize_bad_input(q: Runner, qhome: Path, tmp_path: Path) -> None:
    before = {m.name for m in store_of(qhome).models()}
    res = q("quantize", "smollm2:135m", "--type", "Q3_Z")
    assert res.returncode == ExitCode.INVALID_INPUT
    assert "unknown quantization type 'Q3_Z'" in one_line_error(res.stderr)
    res = q("quantize", "smollm2:135m", "--type", "IQ2_XXS")
    assert res.returncode == ExitCode.INVALID_INPUT and "importance matrix" in res.stderr
    bad = tmp_path / "bad.imatrix"
    bad.write_bytes(b"not a gguf")
    res = q("quantize", "smollm2:135m", "--type", "Q4_K_M", "--imatrix", str(bad))
    assert res.returncode == ExitCode.BAD_MODEL_FILE, res.stderr
    one_line_error(res.stderr)
    res = q("quantize", "smollm2:135m", "--type", "Q4_K_M", "--imatrix", "/nonexistent")
    assert res.returncode == ExitCode.INVALID_INPUT
    res = q("quantize", "nope:1", "--type", "Q8_0")
    assert res.returncode == ExitCode.MODEL_NOT_FOUND
    assert {m.name for m in store_of(qhome).models()} == before
    partial = store_of(qhome).partial
    assert not [p for p in partial.iterdir() if p.name.startswith("quantize-")]


def test_api_create_quantize(qhome: Path) -> None:
    stop_daemon_of(qhome)  # `llm serve` takes the home's socket
    with TcpDaemon(qhome) as daemon:
        oc = ollama.Client(host=daemon.url, timeout=300)
        parts = list(oc.create(model="smol-q8:latest", from_="smollm2:135m",
                               quantize="q8_0", system="You are terse.", stream=True))
        statuses = [p.status for p in parts]
        assert statuses[-1] == "success" and any("quantizing" in s for s in statuses)
        shown = oc.show("smol-q8:latest")
        assert shown.details.quantization_level == "Q8_0"
        assert "You are terse." in shown.modelfile
        r = oc.generate(model="smol-q8:latest", prompt="hi", options={"num_predict": 4})
        assert r.response
        with pytest.raises(ollama.ResponseError) as err:
            oc.create(model="x:1", from_="smollm2:135m", quantize="q9_9")
        assert err.value.status_code == 400 and "unknown quantization type" in str(err.value)
