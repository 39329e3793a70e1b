"""GGUF quantization with llama.cpp's own quantizer (``llama_model_quantize``, exposed by
llama-cpp-python), optionally guided by an importance matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmtui.errors import BadModelFile, InvalidInput

#: The quantization types `llm quantize` accepts, as llama.cpp's llama-quantize names them.
QUANT_TYPES: dict[str, int] = {
    "F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9,
    "Q2_K": 10, "Q3_K_S": 11, "Q3_K_M": 12, "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15,
    "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18, "IQ2_XXS": 19, "IQ2_XS": 20, "Q2_K_S": 21,
    "IQ3_XS": 22, "IQ3_XXS": 23, "IQ1_S": 24, "IQ4_NL": 25, "IQ3_S": 26, "IQ3_M": 27,
    "IQ2_S": 28, "IQ2_M": 29, "IQ4_XS": 30, "IQ1_M": 31, "BF16": 32, "TQ1_0": 36,
    "TQ2_0": 37,
}
#: Types whose quality collapses without an importance matrix (llama-quantize refuses them).
NEEDS_IMATRIX = frozenset({"IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_S", "IQ1_M", "Q2_K_S"})


def quant_type(text: str) -> str:
    """The canonical name of a quantization type, or a clear error listing the known ones."""
    key = text.strip().upper().replace("-", "_")
    if key not in QUANT_TYPES:
        raise InvalidInput(f"unknown quantization type '{text}'",
                           hint="one of: " + ", ".join(QUANT_TYPES))
    return key


def read_imatrix(path: Path) -> dict[str, Any]:
    """Per-tensor importance (mean squared activations) from llama-imatrix's GGUF output."""
    import numpy as np
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except Exception as exc:
        raise BadModelFile(f"{path.name} is not an importance matrix (GGUF): "
                           f"{str(exc).splitlines()[0][:200] if str(exc) else exc}") from None
    sums: dict[str, Any] = {}
    counts: dict[str, Any] = {}
    for tensor in reader.tensors:
        if tensor.name.endswith(".in_sum2"):
            sums[tensor.name[:-8]] = np.asarray(tensor.data, dtype=np.float32).reshape(-1)
        elif tensor.name.endswith(".counts"):
            counts[tensor.name[:-7]] = np.asarray(tensor.data, dtype=np.float32).reshape(-1)
    if not sums:
        raise BadModelFile(f"{path.name} holds no importance data (no *.in_sum2 tensors)")
    out: dict[str, Any] = {}
    for name, values in sums.items():
        count = counts.get(name)
        n = float(count[0]) if count is not None and count.size and count[0] > 0 else 1.0
        out[name] = (values / n).astype(np.float32)
    return out


def quantize_gguf(src: Path, dst: Path, qtype: str, *, imatrix: Path | None = None,
                  threads: int = 0) -> None:
    """Write ``dst`` as ``src`` quantized to ``qtype`` (requantizing already-quantized
    tensors, as llama-quantize --allow-requantize does)."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_TYPES[qtype]
    params.nthread = threads
    params.allow_requantize = True
    keep: list[Any] = []  # the arrays must outlive the call
    if imatrix is not None:
        entries = read_imatrix(imatrix)
        table = (llama_cpp.llama_model_imatrix_data * (len(entries) + 1))()
        for i, (name, values) in enumerate(entries.items()):
            raw = name.encode()
            keep.extend([raw, values])
            table[i].name = raw
            table[i].data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            table[i].size = values.size
        keep.append(table)
        params.imatrix = ctypes.cast(table, type(params.imatrix))
    elif qtype in NEEDS_IMATRIX:
        raise InvalidInput(f"{qtype} needs an importance matrix",
                           hint="pass --imatrix FILE (made by llama.cpp's llama-imatrix)")
    code = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                          ctypes.byref(params))
    if code != 0 or not dst.is_file():
        raise BadModelFile(f"llama.cpp could not quantize this model to {qtype} "
                           f"(code {code}); see the log above")
