"""Keep a 4-bit GGUF's own weights when it becomes an ONNX int4 model.

Converting a Q4_0/Q4_1 GGUF goes GGUF -> dequantized Hugging Face folder -> onnxruntime-genai's
builder, which quantizes the weights again. Re-rounding values that already lie on a 4-bit
grid onto a different grid adds a second rounding error as large as the first: on the 135M
test model perplexity rose from 14.9 to 24.8. Both formats hold blocks of 32 weights with a
scale, so the GGUF's blocks can be written into the builder's ``MatMulNBits`` weights as they
are:

- Q4_0 is ``d * (q - 8)``: MatMulNBits' symmetric form (zero point 8), exactly.
- Q4_1 is ``d * q + m``, with a minimum ``m`` that is not a whole number of steps, which
  MatMulNBits' integer zero points cannot hold (its float zero points can, but leave
  onnxruntime's fast int4 kernels). So it is written as ``d * (q - 8)`` plus a constant per
  block, ``c = m + 8d``, whose contribution is ``sum_blocks c * sum(x in block)``: one small
  extra MatMul of the input's block sums (1/32 of the work) added to the output.

Each matrix is checked against the dequantized folder the builder read (rows in the same
order, or in llama.cpp's permuted Q/K order) before it is replaced; any matrix that does not
match exactly, or is in another GGUF type, keeps the builder's own quantization.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

#: GGUF tensor names for the builder's projection nodes.
_GGUF_NAMES = {"attn/q_proj": ["attn_q"], "attn/k_proj": ["attn_k"], "attn/v_proj": ["attn_v"],
               "attn/qkv_proj": ["attn_q", "attn_k", "attn_v"], "attn/o_proj": ["attn_output"],
               "mlp/gate_proj": ["ffn_gate"], "mlp/up_proj": ["ffn_up"],
               "mlp/down_proj": ["ffn_down"]}
_HF_NAMES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
             "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
_NODE = re.compile(r"/model/layers\.(\d+)/(attn/\w+_proj|mlp/\w+_proj)/MatMul_Q4")
BLOCK = 32


def _blocks(tensor: Any) -> tuple[Any, Any, Any] | None:
    """(q [rows, nb, 32] uint8, d [rows, nb], m [rows, nb]) of a Q4_0/Q4_1 tensor."""
    import numpy as np

    kind = tensor.tensor_type.name
    if kind not in ("Q4_0", "Q4_1"):
        return None
    ne0 = int(tensor.shape[0])
    rows = int(np.prod([int(n) for n in tensor.shape[1:]])) if len(tensor.shape) > 1 else 1
    nb = ne0 // BLOCK
    size = 18 if kind == "Q4_0" else 20
    raw = np.asarray(tensor.data).reshape(-1).view(np.uint8).reshape(rows, nb, size)
    d = raw[:, :, 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    if kind == "Q4_0":
        qs = raw[:, :, 2:18]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=2)
        m = -8.0 * d  # d * (q - 8) = d * q + (-8d)
    else:
        m = raw[:, :, 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
        qs = raw[:, :, 4:20]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=2)  # element j, then j + 16
    return q.astype(np.uint8), d, m


def _unpermute(x: Any, n_head: int) -> Any:
    """Undo llama.cpp's Q/K row permutation (its converter's ``permute``)."""
    rows = x.shape[0]
    return x.reshape(n_head, rows // n_head // 2, 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)


def _matching(q: Any, d: Any, m: Any, hf: Any, heads: int | None) -> tuple[Any, Any, Any] | None:
    """The blocks in the HF folder's row order, if they dequantize to exactly its weights."""
    import numpy as np

    def same(qq: Any, dd: Any, mm: Any) -> bool:
        w = (dd[..., None] * qq.astype(np.float32) + mm[..., None]).reshape(hf.shape)
        return bool(np.allclose(w, hf, rtol=1e-5, atol=1e-6))

    if same(q, d, m):
        return q, d, m
    if heads:
        moved = tuple(_unpermute(a, heads) for a in (q, d, m))
        if same(*moved):
            return moved
    return None


def keep_gguf_blocks(onnx_dir: Path, gguf_path: Path, hf_dir: Path) -> tuple[int, int]:
    """Rewrite the builder's int4 projections with the GGUF's blocks; (kept, total)."""
    import numpy as np
    import onnx
    from gguf import GGUFReader
    from onnx import helper, numpy_helper
    from safetensors.numpy import load_file

    reader = GGUFReader(str(gguf_path))
    fields = reader.fields
    arch = bytes(fields["general.architecture"].parts[-1]).decode()

    def count(key: str) -> int | None:
        field = fields.get(f"{arch}.{key}")
        return int(field.parts[-1][0]) if field is not None else None

    heads = {"attn_q": count("attention.head_count"),
             "attn_k": count("attention.head_count_kv") or count("attention.head_count")}
    tensors = {t.name: t for t in reader.tensors}
    hf: dict[str, Any] = {}
    for shard in sorted(hf_dir.glob("*.safetensors")):
        hf.update(load_file(str(shard)))

    model = onnx.load(str(onnx_dir / "model.onnx"))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    nodes: list[Any] = []
    sums: dict[str, str] = {}  # an input's block sums, shared by the nodes that read it
    kept = total = 0
    for node in list(graph.node):
        nodes.append(node)
        found = _NODE.fullmatch(node.name)
        if node.op_type != "MatMulNBits" or not found:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("bits") != 4 or attrs.get("block_size") != BLOCK:
            continue
        total += 1
        layer, part = found.group(1), found.group(2)
        parts = []
        for name in _GGUF_NAMES.get(part, []):
            tensor = tensors.get(f"blk.{layer}.{name}.weight")
            weight = hf.get(f"model.layers.{layer}.{_HF_NAMES[name]}.weight")
            blocks = _blocks(tensor) if tensor is not None else None
            if blocks is None or weight is None:
                break
            match = _matching(*blocks, weight.astype(np.float32), heads.get(name))
            if match is None:
                break
            parts.append(match)
        if not parts or len(parts) != len(_GGUF_NAMES[part]):
            continue  # keep the builder's quantization for this one
        q = np.concatenate([p[0] for p in parts])
        d = np.concatenate([p[1] for p in parts])
        offset = np.concatenate([p[2] for p in parts]) + 8.0 * d
        weight_name, scale_name = node.input[1], node.input[2]
        if tuple(inits[weight_name].dims) != (q.shape[0], q.shape[1], BLOCK // 2):
            continue
        dtype = numpy_helper.to_array(inits[scale_name]).dtype
        inits[weight_name].CopyFrom(numpy_helper.from_array(
            (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8), weight_name))
        inits[scale_name].CopyFrom(numpy_helper.from_array(
            d.astype(dtype).reshape(tuple(inits[scale_name].dims)), scale_name))
        if len(node.input) > 3 and node.input[3]:  # zero points: the implied 8 from now on
            zero_points = node.input[3]
            node.input[3] = ""
            if not any(zero_points in n.input for n in graph.node):
                graph.initializer.remove(inits.pop(zero_points))
        while node.input and node.input[-1] == "":
            del node.input[-1]
        kept += 1
        if not np.any(offset):
            continue  # Q4_0: exact as it is
        x = node.input[0]
        if x not in sums:
            shape, axes, summed = (f"{node.name}/block_shape", f"{node.name}/block_axes",
                                   f"{node.name}/block_sums")
            graph.initializer.extend([
                numpy_helper.from_array(np.array([0, 0, q.shape[1], BLOCK], np.int64), shape),
                numpy_helper.from_array(np.array([-1], np.int64), axes)])
            nodes += [helper.make_node("Reshape", [x, shape], [f"{node.name}/blocks"],
                                       name=f"{node.name}/block_reshape"),
                      helper.make_node("ReduceSum", [f"{node.name}/blocks", axes], [summed],
                                       keepdims=0, name=f"{node.name}/block_sum")]
            sums[x] = summed
        offsets = f"{node.name}/block_offsets"
        graph.initializer.append(numpy_helper.from_array(
            np.ascontiguousarray(offset.T.astype(dtype)), offsets))
        out = node.output[0]
        node.output[0] = f"{node.name}/int4_out"
        nodes += [helper.make_node("MatMul", [sums[x], offsets], [f"{node.name}/offset_out"],
                                   name=f"{node.name}/offset_matmul"),
                  helper.make_node("Add", [node.output[0], f"{node.name}/offset_out"], [out],
                                   name=f"{node.name}/offset_add")]
    if kept:
        del graph.node[:]
        graph.node.extend(nodes)
        # onnx appends external data to an existing file: write into a fresh folder, then
        # move both files over the builder's.
        fresh = onnx_dir / ".gguf-blocks"
        fresh.mkdir(exist_ok=True)
        onnx.save(model, str(fresh / "model.onnx"), save_as_external_data=True,
                  all_tensors_to_one_file=True, location="model.onnx.data")
        os.replace(fresh / "model.onnx.data", onnx_dir / "model.onnx.data")
        os.replace(fresh / "model.onnx", onnx_dir / "model.onnx")
        fresh.rmdir()
    return kept, total


#: Architectures openvino-genai's own GGUF reader builds (its 2026.4 release).
OV_GGUF_ARCHS = frozenset({"llama", "qwen2", "qwen3"})


def ov_reader_fits(gguf_path: Path) -> bool:
    """Whether openvino-genai's GGUF reader can take this file as int4: a supported
    architecture whose block weights are all Q4_0/Q4_1."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))
    field = reader.fields.get("general.architecture")
    if field is None or bytes(field.parts[-1]).decode() not in OV_GGUF_ARCHS:
        return False
    kinds = {t.tensor_type.name for t in reader.tensors
             if t.name.startswith("blk.") and t.name.endswith(".weight") and len(t.shape) > 1}
    return bool(kinds) and kinds <= {"Q4_0", "Q4_1"}


def _unpack_u4(const: Any) -> Any:
    import numpy as np

    raw = np.asarray(const.get_data()).view(np.uint8).reshape(-1)
    shape = [int(n) for n in const.get_output_shape(0)]
    count = int(np.prod(shape))
    out = np.empty(raw.size * 2, np.uint8)
    out[0::2], out[1::2] = raw & 0x0F, raw >> 4
    return out[:count].reshape(shape)


def keep_gguf_blocks_ov(folder: Path, gguf_path: Path) -> tuple[int, int]:
    """The same for an OpenVINO IR made by openvino-genai's GGUF reader, which keeps the
    GGUF's 4-bit codes and scales but rounds Q4_1's minimum to a whole zero point: set the
    zero points to 8 and add ``c = m + 8d`` per block after each MatMul. A weight is
    matched to its GGUF tensor by its codes (rows in the GGUF's order, or with llama.cpp's
    Q/K permutation undone) and its scales; anything else is left as the reader made it.
    (kept, total)"""
    import hashlib

    import numpy as np
    import openvino as ov
    from gguf import GGUFReader
    from openvino import opset13 as ops

    reader = GGUFReader(str(gguf_path))
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    heads = {}
    for name, key in (("attn_q", "head_count"), ("attn_k", "head_count_kv")):
        field = reader.fields.get(f"{arch}.attention.{key}")
        if field is not None:
            heads[name] = int(field.parts[-1][0])
    by_codes: dict[str, tuple[Any, Any]] = {}
    for tensor in reader.tensors:
        blocks = _blocks(tensor)
        if blocks is None:
            continue
        variants = [blocks]
        for name, count in heads.items():
            if f".{name}." in tensor.name:
                variants.append(tuple(_unpermute(a, count) for a in blocks))
        for q, d, m in variants:
            by_codes[hashlib.sha1(np.ascontiguousarray(q).tobytes()).hexdigest()] = (d, m)

    core = ov.Core()
    model = core.read_model(str(folder / "openvino_model.xml"))
    kept = total = 0
    for sub in model.get_ordered_ops():
        if sub.get_type_name() != "Subtract":
            continue
        w_conv = sub.input(0).get_source_output().get_node()
        z_conv = sub.input(1).get_source_output().get_node()
        if w_conv.get_type_name() != "Convert" or z_conv.get_type_name() != "Convert":
            continue
        w_const = w_conv.input(0).get_source_output().get_node()
        z_const = z_conv.input(0).get_source_output().get_node()
        if (w_const.get_type_name() != "Constant" or z_const.get_type_name() != "Constant"
                or w_const.get_output_element_type(0) != ov.Type.u4):
            continue
        total += 1
        codes = _unpack_u4(w_const)
        found = by_codes.get(hashlib.sha1(codes.tobytes()).hexdigest())
        if found is None or codes.ndim != 3 or codes.shape[2] != BLOCK:
            continue
        d, m = found
        multiply = next(iter(sub.output(0).get_target_inputs())).get_node()
        if multiply.get_type_name() != "Multiply":
            continue
        scale = multiply.input(1).get_source_output().get_node()
        if scale.get_type_name() != "Constant" or not np.allclose(
                np.asarray(scale.get_data(), np.float32).reshape(d.shape), d, rtol=1e-3):
            continue
        node = multiply
        for _ in range(4):  # Reshape / Convert between the decompression and its MatMul
            node = next(iter(node.output(0).get_target_inputs())).get_node()
            if node.get_type_name() == "MatMul":
                break
        if node.get_type_name() != "MatMul":
            continue
        eights = ov.Tensor(ov.Type.u4, list(z_const.get_output_shape(0)))
        np.asarray(eights.data).view(np.uint8)[...] = 0x88
        z_conv.input(0).replace_source_output(ops.constant(eights).output(0))
        offset = (m + 8.0 * d).astype(np.float32)
        x = node.input(0).get_source_output()
        blocks = ops.reshape(x, ops.constant(np.array([0, 0, offset.shape[1], BLOCK], np.int64)),
                             special_zero=True)
        sums = ops.reduce_sum(blocks, ops.constant(np.array([-1], np.int64)), keep_dims=False)
        extra = ops.matmul(sums, ops.constant(np.ascontiguousarray(offset.T)), False, False)
        users = list(node.output(0).get_target_inputs())
        added = ops.add(node.output(0), extra)
        for user in users:
            user.replace_source_output(added.output(0))
        kept += 1
    if kept:
        fresh = folder / ".gguf-blocks"
        fresh.mkdir(exist_ok=True)
        ov.save_model(model, str(fresh / "openvino_model.xml"), compress_to_fp16=False)
        del model
        for name in ("openvino_model.xml", "openvino_model.bin"):
            os.replace(fresh / name, folder / name)
        fresh.rmdir()
    return kept, total
