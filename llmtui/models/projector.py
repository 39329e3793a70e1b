"""Multimodal projectors (``mmproj`` GGUF files): what they are, and refusing bad ones early.

A vision model is a text GGUF plus a projector GGUF that turns an image into embeddings of
the text model's width. llama.cpp's loader (tools/mtmd/clip.cpp) aborts the whole process
when a key it reads has the wrong type, and refuses a projector whose output width differs
from the text model's ``n_embd`` only when the model is loaded. Both are checked here, at
import, pull and /api/create time, so a bad pair never reaches the store.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmtui.errors import BadModelFile
from llmtui.models.gguf_info import GGUFInfo, read_info

# GGUF value types (gguf.GGUFValueType)
_UINT32, _INT32, _FLOAT32, _BOOL, _STRING, _ARRAY = 4, 5, 6, 7, 8, 9
_TYPE_NAMES = {0: "uint8", 1: "int8", 2: "uint16", 3: "int16", 4: "uint32", 5: "int32",
               6: "float32", 7: "bool", 8: "string", 9: "array", 10: "uint64", 11: "int64",
               12: "float64"}

_MODALITIES = ("vision", "audio", "gen.audio")
_PER_MODALITY_U32 = ("embedding_length", "feed_forward_length", "block_count", "projection_dim",
                     "attention.head_count", "attention.head_count_kv", "attention.head_dim")
#: Every key llama.cpp 0.3.36's clip loader reads with gguf_get_val_u32 (an abort otherwise).
_U32_KEYS = {f"clip.{m}.{k}" for m in _MODALITIES for k in _PER_MODALITY_U32} | {
    f"clip.vision.{k}" for k in (
        "image_size", "patch_size", "image_min_pixels", "image_max_pixels",
        "preproc_min_tiles", "preproc_max_tiles", "preproc_image_size", "spatial_merge_size",
        "projector.scale_factor", "projector.query_side", "projector.window_side",
        "n_wa_pattern", "window_size", "expert_used_count", "sam.block_count",
        "sam.head_count", "sam.embedding_length")} | {
    f"clip.audio.{k}" for k in (
        "num_mel_bins", "projector.stack_factor", "chunk_size", "conv_kernel_size",
        "max_pos_emb", "projector.window_size", "projector.downsample_rate",
        "projector.head_count", "rvq.num_quantizers", "window_size", "local_block_count",
        "local_group_size", "subsampling_factor")} | {"clip.minicpmv_query_num"}
_I32_KEYS = {"clip.minicpmv_version"}
_F32_KEYS = {f"clip.{m}.attention.layer_norm_epsilon" for m in _MODALITIES} | {
    "clip.vision.swiglu_clamp"}
_BOOL_KEYS = {"clip.has_vision_encoder", "clip.has_audio_encoder",
              "clip.has_gen_audio_encoder", "clip.use_gelu", "clip.use_silu"}
_STRING_KEYS = {"clip.projector_type", "clip.vision.projector_type",
                "clip.audio.projector_type"}
_REQUIRED_VISION = ("clip.vision.embedding_length", "clip.vision.attention.head_count",
                    "clip.vision.feed_forward_length", "clip.vision.block_count",
                    "clip.vision.projection_dim", "clip.vision.attention.layer_norm_epsilon",
                    "clip.vision.image_size", "clip.vision.patch_size")

#: Projector types whose token count per image (or per tile) follows from the header.
_TOKENS_DIVISOR = {"mlp": 1, "mlp_norm": 1, "ldp": 4, "ldpv2": 4, "gemma3": 16,
                   "internvl": 4}


@dataclass(frozen=True)
class ProjectorInfo:
    """What `llm show` reports about a projector."""

    projector_type: str
    vision: bool
    audio: bool
    image_size: int | None
    patch_size: int | None
    encoder_width: int | None
    output_width: int | None  # must equal the text model's n_embd
    tokens_per_image: int | None  # None: depends on the image (dynamic resolution)
    name: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _type_name(vtype: int | None) -> str:
    return _TYPE_NAMES.get(vtype or -1, f"type {vtype}")


def _check_types(info: GGUFInfo, label: str) -> None:
    for key, vtype in info.types.items():
        if not key.startswith("clip."):
            continue
        for keys, want in ((_U32_KEYS, _UINT32), (_I32_KEYS, _INT32), (_F32_KEYS, _FLOAT32),
                           (_BOOL_KEYS, _BOOL), (_STRING_KEYS, _STRING)):
            if key in keys and vtype != want:
                raise BadModelFile(
                    f"{label} is a malformed projector: '{key}' has type "
                    f"{_type_name(vtype)}, llama.cpp needs {_type_name(want)}",
                    hint="re-convert it with llama.cpp's convert_hf_to_gguf.py --mmproj")


def _int(info: GGUFInfo, key: str) -> int | None:
    value = info.metadata.get(key)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def projector_info(info: GGUFInfo, label: str) -> ProjectorInfo:
    """Describe a projector, refusing one that llama.cpp would abort on or cannot use."""
    if not info.is_projector:
        raise BadModelFile(f"{label} is not a projector (its general.type is "
                           f"'{info.metadata.get('general.type', 'model')}')",
                           hint="a projector is the mmproj-*.gguf file next to a vision model")
    _check_types(info, label)
    md = info.metadata
    vision = md.get("clip.has_vision_encoder") is True
    audio = md.get("clip.has_audio_encoder") is True
    if not vision and not audio:
        raise BadModelFile(f"{label} is a malformed projector: it has neither a vision nor an "
                           "audio encoder (clip.has_vision_encoder is not true)")
    ptype = md.get("clip.projector_type") or md.get("clip.vision.projector_type") or \
        md.get("clip.audio.projector_type")
    if not isinstance(ptype, str) or not ptype:
        raise BadModelFile(f"{label} is a malformed projector: clip.projector_type is missing")
    if vision:
        missing = [k for k in _REQUIRED_VISION if k not in md]
        if missing:
            raise BadModelFile(f"{label} is a malformed projector: {missing[0]} is missing")
        for key in ("clip.vision.image_mean", "clip.vision.image_std"):
            if key not in md:
                raise BadModelFile(f"{label} is a malformed projector: {key} is missing")
    image_size = _int(info, "clip.vision.image_size") if vision else None
    patch_size = _int(info, "clip.vision.patch_size") if vision else None
    if vision and (not patch_size or image_size is None or image_size > 8192):
        raise BadModelFile(f"{label} is a malformed projector: image size {image_size}, "
                           f"patch size {patch_size}")
    return ProjectorInfo(
        projector_type=ptype, vision=vision, audio=audio, image_size=image_size,
        patch_size=patch_size,
        encoder_width=_int(info, "clip.vision.embedding_length" if vision
                           else "clip.audio.embedding_length"),
        output_width=_output_width(info, ptype, vision),
        tokens_per_image=_tokens(info, ptype, image_size, patch_size),
        name=md.get("general.name") if isinstance(md.get("general.name"), str) else None,
    )


def _output_width(info: GGUFInfo, ptype: str, vision: bool) -> int | None:
    """The width of the embeddings it makes: from the last projection tensor where
    llama.cpp reads it, else the projection_dim key (converters write the text width)."""
    shapes = info.tensors
    if ptype == "mlp" and "mm.2.weight" in shapes and len(shapes["mm.2.weight"]) >= 2:
        return int(shapes["mm.2.weight"][1])
    if ptype == "mlp_norm" and "mm.3.bias" in shapes:
        return int(shapes["mm.3.bias"][0])
    return _int(info, "clip.vision.projection_dim" if vision else "clip.audio.projection_dim")


def _tokens(info: GGUFInfo, ptype: str, image_size: int | None,
            patch_size: int | None) -> int | None:
    if not image_size or not patch_size:
        return None
    patches = (image_size // patch_size) ** 2
    if ptype == "idefics3":  # per 512-pixel tile, after pixel shuffle
        scale = _int(info, "clip.vision.projector.scale_factor") or 1
        return patches // (scale * scale)
    divisor = _TOKENS_DIVISOR.get(ptype)
    return patches // divisor if divisor else None


def read_projector(path: Path, label: str | None = None) -> ProjectorInfo:
    return projector_info(read_info(path), label or path.name)


def check_pair(text: GGUFInfo, projector: ProjectorInfo, *, text_label: str,
               projector_label: str) -> None:
    """Refuse a projector made for another text model (its width differs from n_embd)."""
    if text.is_projector:
        raise BadModelFile(f"{text_label} is a vision projector, not a model",
                           hint="give the text model first and the projector with --mmproj")
    width = text.embedding_length
    if width and projector.output_width and width != projector.output_width:
        raise BadModelFile(
            f"{projector_label} does not fit {text_label}: the projector makes "
            f"{projector.output_width}-wide embeddings, the model's n_embd is {width}",
            hint="use the mmproj file published with this model")
