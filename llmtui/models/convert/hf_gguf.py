"""Hugging Face folder (safetensors + config + tokenizer) -> GGUF, with the ``gguf`` package.

This follows llama.cpp's own ``convert_hf_to_gguf.py`` for the decoder architectures listed
in ``ARCHS``: the same tensor names (``gguf.get_tensor_name_map``), the same hyperparameter
keys, the llama Q/K permutation, Gemma 3's norm shift, F32 norms and 1-D tensors, and the
same tokenizer metadata (BPE vocabulary with ``tokenizer.ggml.pre`` found by hashing the
tokenization of llama.cpp's check text; SentencePiece from ``tokenizer.model``; special
token ids, add_bos/add_eos, merges and the chat template through ``gguf.SpecialVocab``), so
the file matches one converted upstream. Tensors are read memory-mapped and written one at
a time (the tensor table first, then each tensor's data), so memory stays near the size of
the largest tensor. No torch, no transformers: numpy, gguf and tokenizers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

from llmtui.errors import BadModelFile, InvalidInput

#: llama.cpp's check text: its tokenization's hash names the BPE pre-tokenizer.
CHKTXT = (
    '\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multipl'
    'e emojis concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3.'
    '.3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= нещо на Български '
    '\'\'\'\'\'\'```````""""......!!!!!!?????? I\'ve been \'told he\'s there, \'RE '
    "you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)

#: sha256 of str(ids of CHKTXT) -> tokenizer.ggml.pre, for the BPE tokenizers of the
#: families below (from llama.cpp's convert_hf_to_gguf_update.py).
BPE_PRE = {
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",
    "c136ed14d01c2745d4f60a9596ae66800e2b61fa45643e72436041855ad4089d": "smaug-bpe",
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",
    "b3f499bb4255f8ca19fccd664443283318f2fd2414d5e0b040fbdd0cc195d6c5": "deepseek-r1-qwen",
    "9d032fcbd5501f4a38150912590928bfb36091efb5df11b8e2124b0390e3fb1e": "falcon3",
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
}


@dataclass(frozen=True)
class Arch:
    gguf_arch: Any  # gguf.MODEL_ARCH
    permute_qk: bool = False  # llama's rotary layout differs between HF and GGUF
    norm_shift: float = 0.0  # Gemma 3's RMSNorm multiplies by (1 + weight)
    vocab_order: tuple[str, ...] = ("spm", "gpt2")


def _archs() -> dict[str, Arch]:
    import gguf

    llama = Arch(gguf.MODEL_ARCH.LLAMA, permute_qk=True, vocab_order=("spm", "llama-hf", "gpt2"))
    return {
        "LlamaForCausalLM": llama, "MistralForCausalLM": llama,
        "Qwen2ForCausalLM": Arch(gguf.MODEL_ARCH.QWEN2),
        "Gemma3ForCausalLM": Arch(gguf.MODEL_ARCH.GEMMA3, norm_shift=1.0),
    }


SUPPORTED = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Gemma3ForCausalLM")


def hf_architecture(folder: Path) -> tuple[str, dict[str, Any]]:
    try:
        hp = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadModelFile(f"cannot read {folder / 'config.json'}: {exc}") from None
    archs = hp.get("architectures") or []
    arch = str(archs[0]) if archs else ""
    if arch not in SUPPORTED:
        known = ", ".join(a.removesuffix("ForCausalLM") for a in SUPPORTED)
        raise InvalidInput(
            f"llmtui's GGUF converter does not support the '{arch or hp.get('model_type')}' "
            f"architecture (it converts {known})",
            hint="llama.cpp's convert_hf_to_gguf.py covers more; then: llm import FILE.gguf")
    return arch, hp


def _find(hp: dict[str, Any], *keys: str) -> Any:
    return next((hp[k] for k in keys if hp.get(k) is not None), None)


# -- tensors ------------------------------------------------------------------------------------


def _weights(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [folder / s for s in shards]
    else:
        files = sorted(folder.glob("*.safetensors"))
    if not files or not all(f.is_file() for f in files):
        raise BadModelFile(f"{folder} has no (or missing) safetensors weights")
    return files


def _permute(w: Any, n_head: int) -> Any:
    """HF's rotary halves -> GGUF's interleaved pairs (LlamaModel.permute upstream)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def _llama3_rope_factors(hp: dict[str, Any], rope: dict[str, Any]) -> Any:
    import numpy as np

    base = rope.get("rope_theta", hp.get("rope_theta", 10000.0))
    dim = hp.get("head_dim") or hp["hidden_size"] // hp["num_attention_heads"]
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    factor = rope.get("factor", 8.0)
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old = rope.get("original_max_position_embeddings", 8192)
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


@dataclass
class _Planned:
    name: str
    shape: tuple[int, ...]
    f32: bool  # norms, 1-D tensors (and everything in an F32 file) stay F32
    load: Callable[[], Any]  # -> the final numpy array


def _plan_tensors(folder: Path, arch: Arch, hp: dict[str, Any], n_vocab: int,
                  ftype: str) -> list[_Planned]:
    import gguf
    import numpy as np

    from llmtui.models.convert.bert import read_safetensors

    n_layers = int(hp["num_hidden_layers"])
    tmap = gguf.get_tensor_name_map(arch.gguf_arch, n_layers)
    n_head = int(hp["num_attention_heads"])
    n_kv = int(hp.get("num_key_value_heads") or n_head)
    plan: list[_Planned] = []
    rope = hp.get("rope_scaling") or hp.get("rope_parameters") or {}
    if str(rope.get("rope_type", rope.get("type", ""))).lower() == "llama3":
        factors = _llama3_rope_factors(hp, rope)
        def rope_freqs(f: Any = factors) -> Any:
            return f

        plan.append(_Planned(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight",
                             factors.shape, True, rope_freqs))
    for path in _weights(folder):
        for hf_name, arr in read_safetensors(path):
            if hf_name.endswith((".rotary_emb.inv_freq", ".attention.masked_bias",
                                 ".attention.bias")):
                continue
            name = hf_name.replace("text_model.", "")
            new = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
            if new is None:
                raise BadModelFile(f"unexpected tensor {hf_name} for this architecture")
            shape = tuple(int(d) for d in arr.shape)
            trim = None
            if arch.norm_shift and name.endswith("embed_tokens.weight") and shape[0] > n_vocab:
                trim = n_vocab  # Gemma 3: drop the rows past the real vocabulary
                shape = (n_vocab, *shape[1:])
            keep_f32 = len(shape) <= 1 or new.endswith("_norm.weight")
            heads = (n_head if name.endswith(("q_proj.weight", "q_proj.bias")) else
                     n_kv if name.endswith(("k_proj.weight", "k_proj.bias")) else 0)

            def load(arr: Any = arr, trim: int | None = trim, heads: int = heads,
                     keep_f32: bool = keep_f32, name: str = name) -> Any:
                data = np.asarray(arr, dtype=np.float32)
                if trim is not None:
                    data = data[:trim]
                if arch.permute_qk and heads:
                    data = _permute(data, heads)
                if arch.norm_shift and name.endswith("norm.weight"):
                    data = data + np.float32(arch.norm_shift)
                if ftype == "f16" and not keep_f32:
                    data = data.astype(np.float16)
                return np.ascontiguousarray(data)

            plan.append(_Planned(new, shape, keep_f32 or ftype == "f32", load))
    return plan


# -- hyperparameters ----------------------------------------------------------------------------


def _add_hparams(writer: Any, arch_name: str, arch: Arch, hp: dict[str, Any],
                 ftype: str) -> None:
    import gguf

    gemma3 = arch.gguf_arch == gguf.MODEL_ARCH.GEMMA3
    writer.add_block_count(int(hp["num_hidden_layers"]))
    n_ctx = _find(hp, "max_position_embeddings", "n_ctx", "n_positions")
    if n_ctx is not None and not gemma3:
        writer.add_context_length(int(n_ctx))
    writer.add_embedding_length(int(hp["hidden_size"]))
    writer.add_feed_forward_length(int(hp["intermediate_size"]))
    writer.add_head_count(int(hp["num_attention_heads"]))
    if (n_kv := hp.get("num_key_value_heads")) is not None and not gemma3:
        writer.add_head_count_kv(int(n_kv))
    rope = hp.get("rope_scaling") or hp.get("rope_parameters") or {}
    rope_type = str(rope.get("rope_type", rope.get("type", "")) or "").lower()
    if rope_type == "linear" and rope.get("factor") is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    elif rope_type == "yarn" and rope.get("factor") is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(rope["factor"]))
        writer.add_rope_scaling_orig_ctx_len(int(rope["original_max_position_embeddings"]))
    elif rope_type not in ("", "default", "llama3"):
        raise InvalidInput(f"llmtui's GGUF converter does not handle '{rope_type}' RoPE scaling",
                           hint="llama.cpp's convert_hf_to_gguf.py may")
    theta = _find(hp, "rope_theta") or rope.get("rope_theta")
    if theta is not None and not gemma3:
        writer.add_rope_freq_base(float(theta))
    local = _find(hp, "local_rope_theta", "rope_local_theta", "rope_theta_local", "swa_rope_theta",
                  "rope_local_base_freq")
    if local is not None:  # the sliding-window layers' RoPE base (Gemma 3)
        writer.add_rope_freq_base_swa(float(local))
    if (eps := hp.get("rms_norm_eps")) is not None and not gemma3:
        writer.add_layer_norm_rms_eps(float(eps))
    if (head_dim := hp.get("head_dim")) is not None and not gemma3:
        writer.add_key_length(int(head_dim))
        writer.add_value_length(int(head_dim))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if ftype == "f16"
                         else gguf.LlamaFileType.ALL_F32)
    if arch.gguf_arch == gguf.MODEL_ARCH.LLAMA:
        writer.add_vocab_size(int(hp["vocab_size"]))
        writer.add_rope_dimension_count(int(hp.get("head_dim")
                                            or hp["hidden_size"] // hp["num_attention_heads"]))
    elif gemma3:
        # llama.cpp's defaults for keys Gemma 3 configs may leave out
        writer.add_context_length(int(hp.get("max_position_embeddings", 131072)))
        writer.add_layer_norm_rms_eps(float(hp.get("rms_norm_eps", 1e-6)))
        writer.add_key_length(int(hp.get("head_dim", 256)))
        writer.add_value_length(int(hp.get("head_dim", 256)))
        writer.add_rope_freq_base(float(theta if theta is not None else 1_000_000.0))
        if (softcap := hp.get("final_logit_softcapping")):
            writer.add_final_logit_softcapping(float(softcap))
        if hp.get("sliding_window_pattern") != 1 and hp.get("sliding_window") is not None:
            writer.add_sliding_window(int(hp["sliding_window"]))
        writer.add_head_count_kv(int(hp.get("num_key_value_heads", 4)))
    _ = arch_name


# -- tokenizer ----------------------------------------------------------------------------------


def _looks_special(token: str) -> bool:
    return (token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (token.startswith("<|") and token.endswith("|>"))
            or (token.startswith("<\uff5c") and token.endswith("\uff5c>"))
            or (token.startswith("<unused") and token.endswith(">")))


def _declared_pre(folder: Path) -> str | None:
    try:
        cfg = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    pre = cfg.get("llmtui_gguf_pre") if isinstance(cfg, dict) else None
    return pre if pre in ("gpt-2",) else None


def _vocab_gpt2(writer: Any, folder: Path, hp: dict[str, Any]) -> int:
    import gguf

    from llmtui.errors import require

    require("tokenizers", "convert", "Converting to GGUF")
    from tokenizers import Tokenizer

    tok_file = folder / "tokenizer.json"
    if not tok_file.is_file():
        raise BadModelFile(f"{folder} has no tokenizer.json (nor tokenizer.model)")
    tk = Tokenizer.from_file(str(tok_file))
    raw = json.loads(tok_file.read_text(encoding="utf-8"))
    if (raw.get("model") or {}).get("type") != "BPE":
        raise InvalidInput(f"expected a BPE tokenizer.json, found "
                           f"{(raw.get('model') or {}).get('type')!r}")
    chkhsh = sha256(str(tk.encode(CHKTXT).ids).encode()).hexdigest()
    # a tokenizer trained by `llm train` says which of llama.cpp's pre-tokenizers its own
    # is (its vocabulary is new, so the hash of the check text cannot be known)
    declared = _declared_pre(folder)
    pre = BPE_PRE.get(chkhsh) or declared
    if pre is None:
        raise InvalidInput(f"this model's BPE pre-tokenizer is not one llmtui's GGUF converter "
                           f"knows (check hash {chkhsh[:16]}…)",
                           hint="llama.cpp's convert_hf_to_gguf.py knows more")
    vocab = tk.get_vocab(with_added_tokens=True)
    n_vocab = int(hp.get("vocab_size") or len(vocab))
    if max(vocab.values()) >= n_vocab:
        raise BadModelFile("the tokenizer has ids past the model's vocab_size")
    added = {t["content"]: t for t in raw.get("added_tokens", [])}
    by_id = {i: t for t, i in vocab.items()}
    tokens: list[str] = []
    types: list[int] = []
    for i in range(n_vocab):
        text = by_id.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        if text in added:
            info = added[text]
            if not info.get("normalized", False):  # llama.cpp wants them pre-normalized
                text = tk.decode(tk.encode(text, add_special_tokens=False).ids,
                                 skip_special_tokens=False)
            if info.get("special") or _looks_special(text):
                types.append(gguf.TokenType.CONTROL)
            else:
                text = text.replace("\u2581", " ")
                types.append(gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(text)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    gguf.SpecialVocab(folder, load_merges=True).add_to_gguf(writer, quiet=True)
    return n_vocab


def _spm_vocab(folder: Path, hp: dict[str, Any]) -> tuple[list[bytes], list[float], list[int]]:
    from llmtui.errors import require

    require("sentencepiece", "convert", "Converting a SentencePiece tokenizer to GGUF")
    from sentencepiece import SentencePieceProcessor

    # SentencePiece token types as llama.cpp numbers them
    normal, unknown, control, user, unused, byte = 1, 2, 3, 4, 5, 6
    sp = SentencePieceProcessor()
    try:
        sp.LoadFromFile(str(folder / "tokenizer.model"))
    except (RuntimeError, OSError) as exc:
        raise BadModelFile(f"tokenizer.model is not a SentencePiece model: "
                           f"{str(exc).splitlines()[0][:200]}") from None
    n_vocab = int(hp.get("vocab_size") or sp.vocab_size())
    tokens = [f"[PAD{i}]".encode() for i in range(n_vocab)]
    scores = [-10000.0] * n_vocab
    types = [unused] * n_vocab
    for i in range(min(sp.vocab_size(), n_vocab)):
        tokens[i] = sp.IdToPiece(i).encode("utf-8")
        scores[i] = sp.GetScore(i)
        types[i] = (unknown if sp.IsUnknown(i) else control if sp.IsControl(i)
                    else unused if sp.IsUnused(i) else byte if sp.IsByte(i) else normal)
    for i in _user_defined_pieces(folder / "tokenizer.model"):
        if i < n_vocab:
            types[i] = user
    added_file = folder / "added_tokens.json"
    if added_file.is_file():
        for text, i in json.loads(added_file.read_text(encoding="utf-8")).items():
            if i < n_vocab:
                tokens[i], scores[i], types[i] = text.encode("utf-8"), -1000.0, user
    cfg_file = folder / "tokenizer_config.json"
    if cfg_file.is_file():
        decoder = json.loads(cfg_file.read_text(encoding="utf-8")).get("added_tokens_decoder", {})
        for key, data in decoder.items():
            i, text = int(key), data["content"]
            if i >= n_vocab:
                continue
            if data.get("special") or _looks_special(text):
                types[i] = control
            else:
                text = text.replace("\u2581", " ")
                types[i] = user
            scores[i], tokens[i] = -1000.0, text.encode("utf-8")
    return tokens, scores, types


def _user_defined_pieces(path: Path) -> list[int]:
    """Ids the SentencePiece model itself marks user-defined (its Python API cannot say)."""
    try:
        from sentencepiece import sentencepiece_model_pb2 as pb
    except ImportError:  # protobuf missing: only tokenizer_config.json marks them
        return []
    model = pb.ModelProto()  # type: ignore[attr-defined]
    model.ParseFromString(path.read_bytes())
    user = pb.ModelProto.SentencePiece.USER_DEFINED  # type: ignore[attr-defined]
    return [i for i, p in enumerate(model.pieces) if p.type == user]


def _vocab_spm(writer: Any, folder: Path, hp: dict[str, Any]) -> int:
    import gguf

    tokens, scores, types = _spm_vocab(folder, hp)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    gguf.SpecialVocab(folder, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)
    return len(tokens)


def _vocab_llama_hf(writer: Any, folder: Path, hp: dict[str, Any]) -> int:
    """A SentencePiece-style BPE in tokenizer.json (byte fallback), no tokenizer.model."""
    import gguf

    vocab = gguf.LlamaHfVocab(folder)  # FileNotFoundError / TypeError: not that kind
    tokens, scores, types = [], [], []
    for text, score, kind in vocab.all_tokens():
        tokens.append(text)
        scores.append(score)
        types.append(kind)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    gguf.SpecialVocab(folder, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)
    return len(tokens)


def _add_vocab(writer: Any, folder: Path, arch: Arch, hp: dict[str, Any]) -> int:
    """Write the tokenizer the way llama.cpp picks it for the architecture; the vocab size."""
    import gguf

    cfg_file = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text(encoding="utf-8")) if cfg_file.is_file() else {}
    for kind in arch.vocab_order:
        if kind == "spm" and (folder / "tokenizer.model").is_file():
            n = _vocab_spm(writer, folder, hp)
            if arch.gguf_arch == gguf.MODEL_ARCH.GEMMA3:
                writer.add_add_space_prefix(False)
            break
        if kind == "llama-hf" and (folder / "tokenizer.json").is_file():
            try:
                n = _vocab_llama_hf(writer, folder, hp)
                break
            except (FileNotFoundError, TypeError):
                continue
        if kind == "gpt2":
            n = _vocab_gpt2(writer, folder, hp)
            break
    else:
        raise BadModelFile(f"{folder} has no tokenizer llmtui can convert")
    if arch.gguf_arch == gguf.MODEL_ARCH.LLAMA:
        if (prefix := cfg.get("add_prefix_space")) is not None:
            writer.add_add_space_prefix(bool(prefix))
        if int(hp.get("vocab_size", 32000)) == 49152:
            writer.add_add_bos_token(False)  # as upstream does for this vocabulary size
    return n


# -- the whole file -----------------------------------------------------------------------------


def hf_to_gguf(folder: Path, out: Path, *, ftype: str = "f16", name: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> None:
    """Write ``out`` (F16 or F32) from a Hugging Face decoder folder."""
    import gguf

    if ftype not in ("f16", "f32"):
        raise ValueError(f"ftype must be f16 or f32, not {ftype}")
    arch_name, hp = hf_architecture(folder)
    if "text_config" in hp:
        hp = {**hp, **hp["text_config"]}
    arch = _archs()[arch_name]
    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[arch.gguf_arch])
    writer.add_type(gguf.GGUFType.MODEL)
    label = hp.get("_name_or_path") or hp.get("_model_name_or_path") or folder.name
    writer.add_name(name or str(label).rstrip("/").split("/")[-1] or folder.name)
    _add_hparams(writer, arch_name, arch, hp, ftype)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    n_vocab = _add_vocab(writer, folder, arch, hp)
    plan = _plan_tensors(folder, arch, hp, n_vocab, ftype)
    import numpy as np

    writer.add_size_label(gguf.size_label(sum(math.prod(t.shape) for t in plan), 0, 0, 0))
    for t in plan:  # the tensor table first, from shapes alone
        dtype = np.dtype(np.float32 if t.f32 else np.float16)
        writer.add_tensor_info(t.name, t.shape, dtype, math.prod(t.shape) * dtype.itemsize)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for i, t in enumerate(plan):
        writer.write_tensor_data(t.load())
        if progress:
            progress(i + 1, len(plan))
    writer.close()

