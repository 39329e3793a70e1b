"""Model conversion: BERT sentence-transformers to GGUF at pull time, and `llm convert` /
`llm quantize` between GGUF, ONNX (onnxruntime-genai) and OpenVINO IR.

The heavy tools (transformers, torch, onnxruntime-genai's model builder, optimum-intel
with NNCF, llama.cpp's quantizer) are imported only inside the functions that use them.
"""

from __future__ import annotations

from llmtui.models.convert.bert import read_safetensors, sentence_transformer_to_gguf

__all__ = ["read_safetensors", "sentence_transformer_to_gguf"]
