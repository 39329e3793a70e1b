"""GPU offload with a CUDA build of llama-cpp-python (run on a machine with an NVIDIA GPU).

Prints figures, never asserts. Two steps, in separate processes (torch's CUDA libraries and
llama.cpp's must not meet in one process):

  python bench/gpu.py make-model OUT.gguf   # a random-weight ~0.5B Llama, written as F16
                                            # GGUF by llmtui's converter (needs torch)
  python bench/gpu.py measure OUT.gguf      # decode tok/s, CPU only vs every layer on the
                                            # GPU: llmtui's engine and llama-cpp-python's API

Building the CUDA wheel: CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=native"
pip install --no-binary llama-cpp-python llama-cpp-python==0.3.36
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PROMPT = "Once upon a time, " * 20


def make_model(out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from llmtui.models.convert.hf_gguf import hf_to_gguf
    from llmtui.train.scratch import make_tokenizer

    hf = Path(tempfile.mkdtemp()) / "hf"
    text = (ROOT / "llmtui/eval/data/public-domain.txt").read_text() * 3
    tok = make_tokenizer(text, 2048, hf)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=1536, intermediate_size=4096,
                      num_hidden_layers=20, num_attention_heads=12, num_key_value_heads=4,
                      max_position_embeddings=2048, tie_word_embeddings=True,
                      bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).to(torch.float16).save_pretrained(hf)
    path = hf / "tokenizer_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "llmtui_gguf_pre": "gpt-2"}))
    hf_to_gguf(hf, out, ftype="f16")
    print(f"wrote {out} ({out.stat().st_size / 1e9:.2f} GB)")


class _Reply:
    def __init__(self) -> None:
        self.final: dict = {}
        self.ev = threading.Event()

    def chunk(self, **fields: object) -> None:
        pass

    def done(self, **fields: object) -> None:
        self.final = fields
        self.ev.set()

    def error(self, exc: BaseException) -> None:
        print("error:", exc)
        self.ev.set()


def measure(path: Path) -> None:
    import llama_cpp

    from llmtui.backends.llamacpp import LlamaCppBackend

    print("GPU offload supported:", bool(llama_cpp.llama_supports_gpu_offload()))
    for ngl, label in ((0, "CPU only"), (999, "every layer on the GPU")):
        backend = LlamaCppBackend()
        backend.load(str(path), {"num_ctx": 2048, "num_gpu": ngl, "num_parallel": 4})
        for _ in range(2):  # the first warms up
            reply = _Reply()
            backend.submit("generate", {"request": {"prompt": PROMPT, "raw": True, "options": {
                "num_predict": 128, "temperature": 0, "draft": "none"}}}, reply,
                threading.Event())
            reply.ev.wait(600)
        raw_stats = reply.final["stats"]
        st = raw_stats if isinstance(raw_stats, dict) else vars(raw_stats)
        ours = st["completion_tokens"] / st["completion_seconds"]
        backend.close()
        llm = llama_cpp.Llama(str(path), n_gpu_layers=-1 if ngl else 0, n_ctx=2048,
                              verbose=False)
        llm.create_completion(PROMPT, max_tokens=8, temperature=0)
        start = time.perf_counter()
        out = llm.create_completion(PROMPT, max_tokens=128, temperature=0, top_k=1)
        raw = out["usage"]["completion_tokens"] / (time.perf_counter() - start)
        del llm
        print(f"{label}: llmtui's engine {ours:.1f} tok/s, llama-cpp-python {raw:.1f} tok/s")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("make-model", "measure"):
        raise SystemExit(__doc__)
    (make_model if sys.argv[1] == "make-model" else measure)(Path(sys.argv[2]))
