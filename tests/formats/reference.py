"""GGUF perplexity computed with llama-cpp-python directly, the reference the ONNX and
OpenVINO numbers are checked against (same text, same tokens, same sliding windows)."""

from __future__ import annotations

import os
from pathlib import Path


def gguf_perplexity(path: Path, text: str, ctx: int = 512) -> float:
    import numpy as np
    from llama_cpp import Llama

    from llmtui.eval import perplexity

    llm = Llama(str(path), n_ctx=ctx, n_batch=ctx, logits_all=True, verbose=False,
                n_threads=os.cpu_count() or 1)
    try:
        tokens = llm.tokenize(text.encode(), add_bos=bool(llm._model.add_bos_token()),
                              special=False)

        def logits(window: list[int]) -> object:
            llm.reset()
            llm.eval(window)
            return np.array(llm.scores[:len(window)])

        result = list(perplexity.run(tokens, ctx, None, logits))[-1]
        return float(result["perplexity"])
    finally:
        llm.close()
