"""`llm convert FOLDER --to gguf`: a Hugging Face folder to GGUF with the gguf package.

The folders are the test GGUFs dequantized by the existing gguf_to_hf step (transformers),
so a round trip must give back the same tokenizer, the same tensors (the llama Q/K
permutation undone and redone) and the same perplexity within a few per cent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from llmtui.errors import ExitCode
from tests.conftest import ROOT, Runner, import_models, one_line_error, stop_daemon_of, store_of
from tests.formats.test_convert_errors import _blobs, _empty, _fake_hf_folder


def _dequantize(gguf: Path, out: Path) -> Path:
    """The existing GGUF -> Hugging Face step, in a child process (torch stays out of here)."""
    code = ("import sys; from pathlib import Path; "
            "from llmtui.models.convert.steps import gguf_to_hf, _quiet_tools; "
            "_quiet_tools(); gguf_to_hf(Path(sys.argv[1]), Path(sys.argv[2]))")
    res = subprocess.run([sys.executable, "-c", code, str(gguf), str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def smol_hf(tmp_path_factory: pytest.TempPathFactory, smollm: Path) -> Path:
    return _dequantize(smollm, tmp_path_factory.mktemp("smol-hf") / "smollm2-hf")


@pytest.fixture(scope="module")
def ghome(tmp_path_factory: pytest.TempPathFactory, smollm: Path) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("gguf") / "home"
    import_models(home, smollm)
    yield home
    stop_daemon_of(home)


@pytest.fixture()
def g(ghome: Path) -> Runner:
    return Runner({"LLMTUI_HOME": str(ghome), "NO_COLOR": "1", "LLMTUI_IDLE_TIMEOUT": "300"})


def _perplexity(run: Runner, model: str) -> float:
    res = run("eval", "perplexity", model, "--json", timeout=600)
    assert res.returncode == 0, res.stderr
    return float(json.loads(res.stdout)["perplexity"])


def _fields(path: Path) -> dict[str, object]:
    from gguf import GGUFReader

    return {k: f.contents() for k, f in GGUFReader(str(path)).fields.items()
            if not k.startswith("GGUF.")}


@pytest.mark.timeout(1500)  # three perplexity runs over the shipped text on a busy machine
def test_smollm_folder_round_trip(g: Runner, ghome: Path, smol_hf: Path, smollm: Path) -> None:
    from gguf import GGUFReader
    from gguf.quants import dequantize

    res = g("convert", str(smol_hf), "--to", "gguf", "--name", "smol:f16", timeout=600)
    assert res.returncode == 0, res.stderr
    assert "converted to smol:f16 (gguf F16" in res.stderr
    store = store_of(ghome)
    made = store.get("smol:f16")
    assert (made.format, made.quantization, made.family) == ("gguf", "F16", "llama")
    assert made.chat_template and "chat" in made.capabilities
    path = store.resolve_file("smol:f16")[1]

    # The tokenizer as llama.cpp's converter writes it: the same vocabulary, merges, types,
    # special ids and the "smollm" pre-tokenizer the original carries.
    ours, orig = _fields(path), _fields(smollm)
    assert ours["tokenizer.ggml.pre"] == "smollm" == orig["tokenizer.ggml.pre"]
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.merges",
                "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id",
                "tokenizer.ggml.eos_token_id", "tokenizer.chat_template",
                "llama.context_length", "llama.embedding_length", "llama.block_count",
                "llama.attention.head_count", "llama.attention.head_count_kv",
                "llama.rope.freq_base", "llama.rope.dimension_count", "llama.vocab_size"):
        assert ours[key] == orig[key], key
    # Same tensors; the weights are the original's (Q4_1 dequantized, stored as F16), so
    # attn_q/attn_k prove the rotary permutation is undone by transformers and redone here.
    a = {t.name: t for t in GGUFReader(str(smollm)).tensors}
    b = {t.name: t for t in GGUFReader(str(path)).tensors}
    assert a.keys() == b.keys()
    for name in ("blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.3.ffn_down.weight",
                 "output_norm.weight"):
        want = dequantize(a[name].data, a[name].tensor_type).astype(np.float32)
        got = np.asarray(b[name].data, dtype=np.float32).reshape(want.shape)
        assert np.allclose(got, want, atol=2e-3, rtol=2e-3), name
    assert b["blk.0.attn_norm.weight"].tensor_type.name == "F32"

    res = g("run", "smol:f16", "The capital of France is", "-t", "0", "-n", "12")
    assert res.returncode == 0 and res.stdout.strip(), res.stderr

    # q8_0 goes through llama.cpp's quantizer after writing F16.
    res = g("convert", str(smol_hf), "--to", "gguf", "--precision", "q8_0", timeout=600)
    assert res.returncode == 0, res.stderr
    q8 = store.get("smollm2-hf:q8_0")
    assert q8.quantization == "Q8_0" and q8.size < made.size * 0.6

    ppl = {m: _perplexity(g, m) for m in ("smollm2:135m", "smol:f16", "smollm2-hf:q8_0")}
    print("\nSmolLM2 perplexity (shipped text):", {k: round(v, 3) for k, v in ppl.items()})
    for name in ("smol:f16", "smollm2-hf:q8_0"):
        assert abs(ppl[name] / ppl["smollm2:135m"] - 1) < 0.03, ppl
    _empty(ghome)


def test_gguf_conversion_bad_inputs(llm: Runner, home: Path, smol_hf: Path, smollm: Path,
                                    tmp_path: Path) -> None:
    import_models(home, smollm)
    before = _blobs(home)

    def refused(src: Path, code: int, text: str, *extra: str) -> None:
        res = llm("convert", str(src), "--to", "gguf", *extra, timeout=300)
        assert res.returncode == code, res.stderr
        assert text in one_line_error(res.stderr), res.stderr

    # Architectures the converter does not cover: a made-up one and a real one (GPT-2).
    refused(_fake_hf_folder(tmp_path / "made-up", "madeupformer", "MadeUpForCausalLM"),
            ExitCode.INVALID_INPUT,
            "GGUF converter does not support the 'MadeUpForCausalLM' architecture")
    refused(_fake_hf_folder(tmp_path / "gpt2", "gpt2", "GPT2LMHeadModel"),
            ExitCode.INVALID_INPUT, "does not support the 'GPT2LMHeadModel' architecture")
    refused(smol_hf, ExitCode.INVALID_INPUT, "unknown precision 'q9' for GGUF", "-p", "q9")
    refused(smol_hf, ExitCode.INVALID_INPUT, "IQ2_XS needs an importance matrix",
            "-p", "iq2_xs")
    res = llm("convert", "smollm2:135m", "--to", "gguf")
    assert res.returncode == ExitCode.INVALID_INPUT and "llm quantize" in res.stderr

    def variant(name: str) -> Path:
        """The SmolLM2 folder with its weights linked, to break one file of."""
        folder = tmp_path / name
        folder.mkdir()
        for f in smol_hf.iterdir():
            if f.suffix == ".safetensors":
                (folder / f.name).symlink_to(f)
            else:
                shutil.copy(f, folder / f.name)
        return folder

    odd = variant("odd-pretokenizer")
    tok = json.loads((odd / "tokenizer.json").read_text())
    tok["pre_tokenizer"] = {"type": "Whitespace"}
    (odd / "tokenizer.json").write_text(json.dumps(tok))
    refused(odd, ExitCode.INVALID_INPUT, "BPE pre-tokenizer is not one llmtui's GGUF "
            "converter knows")
    junk = variant("junk-spm")
    (junk / "tokenizer.model").write_bytes(b"not a sentencepiece model")
    refused(junk, ExitCode.BAD_MODEL_FILE, "tokenizer.model is not a SentencePiece model")
    bare = variant("no-tokenizer")
    (bare / "tokenizer.json").unlink()
    refused(bare, ExitCode.BAD_MODEL_FILE, "has no tokenizer.json")

    # Without the tokenizers package: one line naming the extra.
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'tokenizers':\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n")
    res = llm("convert", str(smol_hf), "--to", "gguf",
              env={"PYTHONPATH": f"{block}{os.pathsep}{ROOT}"})
    assert res.returncode == ExitCode.MISSING_EXTRA, res.stderr
    assert "'tokenizers'" in res.stderr and "llmtui[convert]" in res.stderr

    assert [m.name for m in store_of(home).models()] == ["smollm2:135m"]
    assert _blobs(home) == before
    _empty(home)


@pytest.mark.timeout(900)
def test_gemma3_folder_round_trip(llm: Runner, home: Path, gemma: Path,
                                  tmp_path: Path) -> None:
    """Gemma 3: SentencePiece vocabulary, the norm shift, sliding-window keys."""
    from llmtui.eval.perplexity import DEFAULT_TEXT
    from tests.formats.reference import gguf_perplexity

    folder = _dequantize(gemma, tmp_path / "gemma3-hf")
    head = (folder / "tokenizer.model").read_bytes()[:4]
    assert head != b"GGUF"  # a real SentencePiece model, not the GGUF under that name
    res = llm("convert", str(folder), "--to", "gguf", timeout=600)
    assert res.returncode == 0, res.stderr
    path = store_of(home).resolve_file("gemma3-hf:f16")[1]
    ours, orig = _fields(path), _fields(gemma)
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                "tokenizer.ggml.token_type", "tokenizer.ggml.add_bos_token",
                "tokenizer.ggml.add_space_prefix", "gemma3.attention.sliding_window",
                "gemma3.attention.key_length", "gemma3.context_length",
                "gemma3.rope.freq_base"):
        assert ours[key] == orig[key], key
    text = DEFAULT_TEXT.read_text(encoding="utf-8")[:700]
    want, got = gguf_perplexity(gemma, text, ctx=96), gguf_perplexity(path, text, ctx=96)
    print(f"\nGemma 3 perplexity: original {want:.2f}, converted F16 {got:.2f}")
    # F16 weights skip the Q8 activation rounding of quantized matmuls: a little lower.
    assert 0.85 < got / want < 1.03


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
def test_tiny_random_models_match_transformers(kind: str, smol_hf: Path,
                                               tmp_path: Path) -> None:
    """Tiny random Qwen2 (q/k/v biases, an untied LM head) and Llama (grouped-query
    attention, the rotary permutation) from transformers: llama.cpp's logits of the
    converted F32 file equal transformers' own."""
    import torch
    from llama_cpp import Llama
    from transformers import (
        AutoTokenizer,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    from llmtui.models.convert.hf_gguf import hf_to_gguf

    tok = AutoTokenizer.from_pretrained(smol_hf)
    torch.manual_seed(0)
    sizes = dict(vocab_size=49152, hidden_size=64, intermediate_size=128,
                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 max_position_embeddings=256, rope_theta=10000.0, tie_word_embeddings=False,
                 bos_token_id=1, eos_token_id=2)
    model = (Qwen2ForCausalLM(Qwen2Config(**sizes)) if kind == "qwen2"
             else LlamaForCausalLM(LlamaConfig(**sizes)))
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 0.2)
    folder = tmp_path / kind
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    hf_to_gguf(folder, tmp_path / "m.gguf", ftype="f32")
    ids = tok("The quick brown fox jumps over the lazy dog")["input_ids"]
    with torch.no_grad():
        want = model(torch.tensor([ids])).logits[0].numpy()
    llm = Llama(str(tmp_path / "m.gguf"), n_ctx=64, logits_all=True, verbose=False)
    try:
        llm.eval(ids)
        got = np.array(llm.scores[:len(ids)])
    finally:
        llm.close()
    assert np.abs(got - want).max() < 5e-3 * np.abs(want).max()
    assert (got.argmax(-1) == want.argmax(-1)).all()


def test_bert_encoder_folder_to_gguf(llm: Runner, home: Path, models_cache: Path) -> None:
    """A sentence-transformers BERT (a zip of its folder) goes to GGUF through the same
    command, as an embedding model."""
    res = llm("convert", str(models_cache / "all-minilm-l6-v2.zip"), "--to", "gguf",
              "--name", "minilm:f16", timeout=300)
    assert res.returncode == 0, res.stderr
    made = store_of(home).get("minilm:f16")
    assert (made.architecture, made.quantization) == ("bert", "F16")
    assert made.capabilities == ("embedding",)
    res = llm("embed", "-m", "minilm:f16", "hello world", timeout=120)
    assert res.returncode == 0, res.stderr
    vector = json.loads(res.stdout.splitlines()[0])
    assert len(vector["embedding"]) == 384
    _empty(home)
