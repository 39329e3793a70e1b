"""A tiny vision projector (mmproj GGUF) for llama.cpp's mtmd, written with the ``gguf`` package.

No real vision weights are reachable from the test machines, so the tests make their own:
a LLaVA-style ``mlp`` projector with a one-block ViT encoder and random weights. llama.cpp
loads it like a real one (tools/mtmd/clip.cpp at the llama-cpp-python 0.3.36 pin):

- every integer ``clip.*`` key is a uint32 and every flag a bool (``gguf_get_val_u32`` and
  friends abort the process on a wrong type), ``layer_norm_epsilon`` a float32, and
  ``image_mean``/``image_std`` float32 arrays of 3 (required in practice: fewer throws);
- the encoder tensors are ``v.*`` (patch embedding as a conv kernel, position embedding,
  ``v.blk.N.{attn_q,attn_k,attn_v,attn_out,ln1,ln2,ffn_up,ffn_down}``), and the projector
  ``mm.0`` (encoder width -> hidden) then GELU then ``mm.2`` (hidden -> the text model's
  ``n_embd``); mtmd refuses a projector whose ``mm.2`` width differs from the text model;
- the LLaVA graph runs the encoder up to its second-to-last block, so two blocks are
  written and one runs;
- with ``image_size`` 32 and ``patch_size`` 8 every image (padded to a square and resized
  to 32x32 by mtmd's fixed-size preprocessor) becomes 16 image tokens.

Shapes below are numpy order (the reverse of ggml's ``ne``).
"""

from __future__ import annotations

from pathlib import Path

#: SmolLM2-135M's width: the projector's output must match the text model's n_embd.
SMOLLM_EMBD = 576
IMAGE_SIZE = 32
PATCH_SIZE = 8
#: Tokens one image becomes: (32 / 8) ** 2.
IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2


def write_projector(path: Path, *, n_embd_text: int = SMOLLM_EMBD, n_embd: int = 64,
                    n_head: int = 4, n_ff: int = 128, n_layer: int = 2, hidden: int = 128,
                    image_size: int = IMAGE_SIZE, patch_size: int = PATCH_SIZE,
                    seed: int = 0, name: str = "llmtui-test-mmproj",
                    mm_scale: float = 1.0, flaw: str = "") -> Path:
    """Write a random-weight ``mlp`` projector to ``path`` (and return it).

    ``flaw`` writes a broken one on purpose: ``int32_key`` (clip.vision.image_size as an
    int32: llama.cpp aborts on it), ``no_patch_size`` (a required key missing),
    ``model_type`` (general.type "model", architecture "llama": only its clip.* keys say
    it is a projector).
    """
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    n_patches = (image_size // patch_size) ** 2

    def tensor(*shape: int, scale: float = 0.05) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "clip" if flaw != "model_type" else "llama")
    # general.type = "mmproj", as llama.cpp's converters write it
    writer.add_type(gguf.GGUFType.MMPROJ if flaw != "model_type" else gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_file_type(0)  # all F32
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_bool("clip.has_audio_encoder", False)
    writer.add_bool("clip.use_gelu", True)
    writer.add_string("clip.projector_type", "mlp")
    for key, value in (("embedding_length", n_embd), ("feed_forward_length", n_ff),
                       ("block_count", n_layer), ("projection_dim", n_embd_text),
                       ("attention.head_count", n_head), ("image_size", image_size),
                       ("patch_size", patch_size)):
        if flaw == "int32_key" and key == "image_size":
            writer.add_int32(f"clip.vision.{key}", value)
        elif not (flaw == "no_patch_size" and key == "patch_size"):
            writer.add_uint32(f"clip.vision.{key}", value)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    writer.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    writer.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])

    writer.add_tensor("v.patch_embd.weight", tensor(n_embd, 3, patch_size, patch_size))
    writer.add_tensor("v.patch_embd.bias", tensor(n_embd))
    writer.add_tensor("v.position_embd.weight", tensor(n_patches, n_embd))
    writer.add_tensor("v.pre_ln.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("v.pre_ln.bias", np.zeros(n_embd, dtype=np.float32))
    for il in range(n_layer):
        blk = f"v.blk.{il}"
        for part in ("attn_q", "attn_k", "attn_v", "attn_out"):
            writer.add_tensor(f"{blk}.{part}.weight", tensor(n_embd, n_embd))
            writer.add_tensor(f"{blk}.{part}.bias", tensor(n_embd))
        for norm in ("ln1", "ln2"):
            writer.add_tensor(f"{blk}.{norm}.weight", np.ones(n_embd, dtype=np.float32))
            writer.add_tensor(f"{blk}.{norm}.bias", np.zeros(n_embd, dtype=np.float32))
        # n_ff != n_embd, or clip.cpp takes these for a legacy swapped up/down pair
        writer.add_tensor(f"{blk}.ffn_up.weight", tensor(n_ff, n_embd))
        writer.add_tensor(f"{blk}.ffn_up.bias", tensor(n_ff))
        writer.add_tensor(f"{blk}.ffn_down.weight", tensor(n_embd, n_ff))
        writer.add_tensor(f"{blk}.ffn_down.bias", tensor(n_embd))
    # Large enough that the image's embeddings move the text model's greedy reply.
    writer.add_tensor("mm.0.weight", tensor(hidden, n_embd, scale=mm_scale))
    writer.add_tensor("mm.0.bias", tensor(hidden))
    writer.add_tensor("mm.2.weight", tensor(n_embd_text, hidden, scale=mm_scale))
    writer.add_tensor("mm.2.bias", tensor(n_embd_text))

    path.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def make_png(path: Path | None = None, *, size: tuple[int, int] = (32, 32),
             color: tuple[int, int, int] = (200, 30, 30), pattern: int = 0) -> bytes:
    """A small PNG (a colour field with a pattern); written to ``path`` when given."""
    import io

    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, color)
    draw = ImageDraw.Draw(img)
    w, h = size
    for i in range(pattern):
        draw.line([(0, i * h // max(pattern, 1)), (w, h - 1)], fill=(255 - 40 * i, 255, 40 * i))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    data = buf.getvalue()
    if path is not None:
        path.write_bytes(data)
    return data
