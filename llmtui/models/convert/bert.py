"""Convert a sentence-transformers BERT folder (safetensors) into a GGUF llama.cpp can run.

The default embedding model ships on the package index as a sentence-transformers folder
(``config.json``, ``model.safetensors``, ``tokenizer.json``, ``1_Pooling/``); llama.cpp
runs BERT encoders natively, with its own WordPiece tokenizer and mean pooling, so one
conversion at pull time lets the same backend that runs chat models serve embeddings.

The tensor names and metadata follow llama.cpp's own ``convert_hf_to_gguf.py`` for
``BertModel`` (the phantom-space vocabulary, F32 norms, positions and token types), so the
file is interchangeable with GGUFs converted upstream.
"""

from __future__ import annotations

import json
import struct
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from llmtui.errors import BadModelFile

_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8"}
# Pooling modes of sentence-transformers' 1_Pooling/config.json -> llama.cpp pooling types.
_POOLING = (("pooling_mode_mean_tokens", 1), ("pooling_mode_cls_token", 2),
            ("pooling_mode_lasttoken", 3))


def read_safetensors(path: Path) -> Iterator[tuple[str, Any]]:
    """Yield (name, array) from a .safetensors file, memory-mapped (no torch needed)."""
    import numpy as np

    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise BadModelFile(f"{path.name} is not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", raw)
        if n > 100_000_000:
            raise BadModelFile(f"{path.name} is not a safetensors file (bad header)")
        try:
            header = json.loads(f.read(n))
        except ValueError:
            raise BadModelFile(f"{path.name} is not a safetensors file (bad header)") from None
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise BadModelFile(f"{path.name}: tensor {name} has unsupported type {info['dtype']}")
        start, end = info["data_offsets"]
        arr = data[start:end].view(dtype).reshape(info["shape"])
        if info["dtype"] == "BF16":  # widen bfloat16 to float32 by shifting into the high half
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        yield name, arr


def _open_folder(src: Path, scratch: Path) -> Path:
    """The model folder itself, or the folder a zip of one unpacks to under ``scratch``."""
    if src.is_dir():
        return src
    if not zipfile.is_zipfile(src):
        raise BadModelFile(f"{src.name} is neither a model folder nor a zip of one")
    with zipfile.ZipFile(src) as zf:
        for member in zf.namelist():
            if member.startswith("/") or ".." in Path(member).parts:
                raise BadModelFile(f"{src.name} holds an unsafe path: {member}")
        zf.extractall(scratch)
    root = scratch
    configs = sorted(root.glob("**/config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise BadModelFile(f"{src.name} holds no config.json")
    return configs[0].parent


def _pooling_type(folder: Path) -> int:
    modules = folder / "modules.json"
    pooling_dir = folder / "1_Pooling"
    if modules.is_file():
        for mod in json.loads(modules.read_text()):
            if mod.get("type", "").endswith(".Pooling"):
                pooling_dir = folder / mod.get("path", "1_Pooling")
    cfg = pooling_dir / "config.json"
    if cfg.is_file():
        conf = json.loads(cfg.read_text())
        for key, value in _POOLING:
            if conf.get(key):
                return value
    return 1  # mean, what sentence-transformers uses when it is not told


def sentence_transformer_to_gguf(src: Path, out: Path, *, ftype: str = "f16",
                                 name: str | None = None,
                                 progress: Callable[[int, int], None] | None = None) -> None:
    """Write ``out`` from a sentence-transformers BERT folder or a zip of one.

    ``ftype`` is "f16" (half the size, cosine > 0.9999 to f32 here) or "f32".
    """
    import gguf
    import numpy as np

    if ftype not in ("f16", "f32"):
        raise ValueError(f"ftype must be f16 or f32, not {ftype}")
    with tempfile.TemporaryDirectory(prefix="st-") as tmp:
        folder = _open_folder(src, Path(tmp))
        try:
            hp = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise BadModelFile(f"cannot read config.json: {exc}") from None
        archs = hp.get("architectures") or ["BertModel"]
        if hp.get("model_type") != "bert" or not any("Bert" in a for a in archs):
            raise BadModelFile(
                f"only BERT sentence-transformers models convert; this is "
                f"{hp.get('model_type')!r} ({', '.join(archs)})")
        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise BadModelFile("the model folder has no model.safetensors")
        tok_file = folder / "tokenizer.json"
        if not tok_file.is_file():
            raise BadModelFile("the model folder has no tokenizer.json")

        n_layers = int(hp["num_hidden_layers"])
        arch = gguf.MODEL_ARCH.BERT
        writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[arch])
        writer.add_name(name or folder.name)
        writer.add_context_length(int(hp.get("max_position_embeddings", 512)))
        writer.add_embedding_length(int(hp["hidden_size"]))
        writer.add_feed_forward_length(int(hp["intermediate_size"]))
        writer.add_block_count(n_layers)
        writer.add_head_count(int(hp["num_attention_heads"]))
        writer.add_layer_norm_eps(float(hp.get("layer_norm_eps", 1e-12)))
        writer.add_causal_attention(False)
        writer.add_pooling_type(gguf.PoolingType(_pooling_type(folder)))
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if ftype == "f16"
                             else gguf.LlamaFileType.ALL_F32)

        _add_vocab(writer, folder, tok_file, int(hp.get("type_vocab_size", 1)))

        tmap = gguf.get_tensor_name_map(arch, n_layers)
        keep_f32 = ("position_embd.weight", "token_types.weight")
        tensors = list(read_safetensors(weights))
        for i, (hf_name, arr) in enumerate(tensors):
            base = hf_name.removeprefix("bert.")
            if base in ("embeddings.position_ids",) or base.startswith(("pooler.", "cls.")):
                continue
            new = tmap.get_name(base, try_suffixes=(".weight", ".bias"))
            if new is None:
                raise BadModelFile(f"unexpected tensor {hf_name} for a BERT model")
            data = np.asarray(arr, dtype=np.float32)
            if ftype == "f16" and data.ndim > 1 and new not in keep_f32:
                data = data.astype(np.float16)
            writer.add_tensor(new, data)
            if progress:
                progress(i + 1, len(tensors))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()


def _add_vocab(writer: Any, folder: Path, tok_file: Path, type_count: int) -> None:
    import gguf

    tok = json.loads(tok_file.read_text(encoding="utf-8"))
    model = tok.get("model") or {}
    if model.get("type") != "WordPiece":
        raise BadModelFile(f"expected a WordPiece tokenizer, found {model.get('type')!r}")
    vocab: dict[str, int] = model["vocab"]
    special = {t["content"] for t in tok.get("added_tokens", []) if t.get("special")}
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise BadModelFile("the tokenizer's vocabulary has gaps")
    prefix = model.get("continuing_subword_prefix", "##")
    tokens: list[str] = []
    types: list[int] = []
    for text, _ in by_id:
        if text in special:
            tokens.append(text)
            types.append(gguf.TokenType.CONTROL)
        else:
            # llama.cpp's WordPiece marks word starts with U+2581 and continuations bare.
            tokens.append(text[len(prefix):] if text.startswith(prefix) else "\u2581" + text)
            types.append(gguf.TokenType.NORMAL)
    writer.add_token_type_count(type_count)
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    specials = gguf.SpecialVocab(folder, n_vocab=len(tokens),
                                 special_token_types=("unk", "sep", "pad", "mask"))
    specials.add_to_gguf(writer, quiet=True)
    # llama.cpp reads BERT's [CLS] as its BOS token (the separate cls key was retired).
    cls = next((t["id"] for t in tok.get("added_tokens", []) if t["content"] == "[CLS]"),
               vocab.get("[CLS]"))
    if cls is not None:
        writer.add_bos_token_id(int(cls))
