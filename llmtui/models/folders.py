"""Models that are folders (ONNX Runtime GenAI, OpenVINO IR, ONNX encoders) in the store.

A folder model is stored like a GGUF: each file becomes a content-addressed blob (hashed
while it is copied), and the manifest, written last and atomically, is what makes the
model exist. Until then nothing is visible; on any failure the blobs that no manifest uses
are removed again. The engine loads such a model from ``Store.model_dir``, a folder of
links to the blobs under the files' own names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from llmtui.errors import BadModelFile, InvalidInput, LlmtuiError
from llmtui.models.names import ModelName
from llmtui.models.store import Layer, Manifest, Store, now_iso

OnEvent = Callable[[dict[str, Any]], None]

#: A folder's files that identify its format, checked in this order.
ONNX_GENAI = "genai_config.json"
OV_MODEL = "openvino_model.xml"


def _quiet(_: dict[str, Any]) -> None:
    return None


def detect_format(folder: Path) -> str:
    """'onnx' or 'openvino' for a runnable folder; a clear error for anything else."""
    if not folder.is_dir():
        raise InvalidInput(f"no such folder: {folder}")
    names = {p.name for p in folder.iterdir()}
    if ONNX_GENAI in names:
        return "onnx"
    if OV_MODEL in names:
        return "openvino"
    if any(n.endswith(".onnx") for n in names) and "tokenizer.json" in names:
        return "onnx"  # an encoder (embeddings) for plain onnxruntime
    if "config.json" in names and any(n.endswith((".safetensors", ".bin")) for n in names):
        raise InvalidInput(
            f"{folder} is a Hugging Face model folder, which needs converting first",
            hint=f"llm convert {folder} --to onnx|openvino|gguf")
    raise BadModelFile(
        f"{folder} is not a model folder: it has no {ONNX_GENAI}, {OV_MODEL} or "
        "model.onnx with a tokenizer.json, and is not a faster-whisper model or Piper voice")


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise BadModelFile(f"{path.name} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadModelFile(f"{path.name} is not a JSON object")
    return data


def chat_template_of(folder: Path) -> str | None:
    """The chat template a Hugging Face style folder carries, if any."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = _json(folder / "tokenizer_config.json").get("chat_template")
    if isinstance(template, list):  # named templates: take the default one
        template = next((t.get("template") for t in template
                         if isinstance(t, dict) and t.get("name") == "default"), None)
    return template if isinstance(template, str) and template else None


def check_onnx_graph(path: Path) -> None:
    """Refuse a corrupt ONNX graph before it reaches the store (parsed by `onnx` when it
    is installed, else by onnxruntime itself)."""
    import importlib

    try:
        onnx: Any = importlib.import_module("onnx")
    except ImportError:
        onnx = None
    try:
        if path.stat().st_size == 0:
            raise ValueError("the file is empty")
        if onnx is not None:
            proto = onnx.load(str(path), load_external_data=False)
            if not proto.graph.node:
                raise ValueError("it holds no graph")
        else:  # the runtime-only install: at least refuse an empty file here; the
            with path.open("rb") as fh:  # worker's load reports anything deeper
                if not fh.read(1):
                    raise ValueError("empty file")
    except Exception as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise BadModelFile(f"{path.name} is not a valid ONNX model: {reason}") from None


def _quant_of_onnx(graph: Path) -> str | None:
    try:
        data = graph.read_bytes() if graph.stat().st_size < 64 << 20 else b""
    except OSError:
        return None
    if b"MatMulNBits" in data:
        return "int4"
    if b"DynamicQuantizeLinear" in data or b"MatMulInteger" in data:
        return "int8"
    return None


def describe(folder: Path, fmt: str) -> dict[str, Any]:
    """Manifest fields read from the folder's own files (genai_config, HF config, IR)."""
    template = chat_template_of(folder)
    hf = _json(folder / "config.json")
    out: dict[str, Any] = {"chat_template": template is not None}
    if fmt == "onnx":
        genai = _json(folder / ONNX_GENAI)
        graphs = sorted(folder.glob("*.onnx"))
        if not graphs:
            raise BadModelFile(f"{folder} holds no .onnx graph")
        for graph in graphs:
            check_onnx_graph(graph)
        if genai:
            model = genai.get("model") or {}
            decoder = model.get("decoder") or {}
            if not (folder / str(decoder.get("filename", "model.onnx"))).is_file():
                raise BadModelFile(f"{ONNX_GENAI} names {decoder.get('filename')!r}, "
                                   "which the folder does not have")
            out.update(architecture=model.get("type"),
                       context_length=model.get("context_length"),
                       quantization=_quant_of_onnx(folder / str(decoder.get("filename",
                                                                            "model.onnx"))),
                       capabilities=("chat", "completion") if template else ("completion",))
        else:
            out.update(architecture=hf.get("model_type"),
                       context_length=hf.get("max_position_embeddings"),
                       capabilities=("embedding",))
    else:
        for needed in (OV_MODEL, "openvino_model.bin", "openvino_tokenizer.xml",
                       "openvino_detokenizer.xml"):
            if not (folder / needed).is_file():
                raise BadModelFile(f"the OpenVINO folder has no {needed}")
        _check_ir(folder / OV_MODEL)
        out.update(architecture=hf.get("model_type"),
                   context_length=hf.get("max_position_embeddings"),
                   quantization=_quant_of_ir(folder / OV_MODEL),
                   capabilities=("chat", "completion") if template else ("completion",))
    return out


def native_metadata(folder: Path, fmt: str) -> dict[str, Any]:
    """What `llm show` prints for a folder model, read from the format's own files:
    genai_config.json for ONNX Runtime GenAI, openvino_config.json and the HF config for
    OpenVINO, flattened to dotted keys."""
    meta: dict[str, Any] = {}

    def flatten(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                flatten(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            meta[prefix] = value

    if fmt == "onnx":
        flatten("genai", _json(folder / ONNX_GENAI))
        runtime = "onnxruntime-genai" if (folder / ONNX_GENAI).is_file() else "onnxruntime"
    else:
        flatten("openvino", _json(folder / "openvino_config.json"))
        runtime = "openvino-genai"
    flatten("config", {k: v for k, v in _json(folder / "config.json").items()
                       if not isinstance(v, (list, dict)) or k == "architectures"})
    return {"runtime": runtime, "metadata": meta, "chat_template": chat_template_of(folder)}


def _quant_of_ir(xml: Path) -> str | None:
    """int4 / int8 / fp16 from the weight constants' element types in the IR."""
    try:
        text = xml.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for label, types in (("int4", ('"u4"', '"i4"')), ("int8", ('"u8"', '"i8"')),
                         ("fp16", ('"f16"',))):
        if any(f"element_type={t}" in text for t in types):
            return label
    return "fp32"


def _check_ir(xml: Path) -> None:
    head = xml.read_bytes()[:4096]
    if b"<net" not in head:
        raise BadModelFile(f"{xml.name} is not an OpenVINO IR file")


def _files(folder: Path) -> list[Path]:
    files = []
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            if any(path.iterdir()):
                raise BadModelFile(f"{folder.name}/{path.name}: model folders with sub-folders "
                                   "are not supported")
            continue
        if path.name.startswith("."):
            continue
        files.append(path)
    if not files:
        raise BadModelFile(f"{folder} is empty")
    return files


def add_folder(store: Store, folder: Path, name: str, *, fmt: str | None = None,
               source: str | None = None, base: Manifest | None = None,
               extra: dict[str, Any] | None = None, on_event: OnEvent = _quiet) -> Manifest:
    """Copy a model folder into the store as blobs and install its manifest (last).

    ``base`` is the model it was converted from: family and size carry over.
    """
    target = ModelName.parse(name)
    folder = folder.expanduser()
    fmt = fmt or detect_format(folder)
    facts = describe(folder, fmt)
    files = _files(folder)
    total = sum(p.stat().st_size for p in files)
    store.ensure()
    store.check_space(total)
    layers: list[Layer] = []
    done = 0
    try:
        with store.lock(f"pull:{target}"):
            for path in files:
                size = path.stat().st_size

                def progress(n: int, label: str = path.name) -> None:
                    nonlocal done
                    done += n
                    on_event({"status": f"copying {label}", "digest": "model files",
                              "total": total, "completed": done})

                digest, got = store.add_blob_from_file(path, progress=progress)
                if got != size:
                    raise BadModelFile(f"{path.name} changed while it was copied")
                layers.append(Layer(digest=digest, size=got, filename=path.name))
            manifest = Manifest(
                name=str(target), format=fmt, layers=tuple(layers),
                source=source or f"folder:{folder.resolve()}", created=now_iso(),
                family=(base.family if base else None) or facts.get("architecture"),
                architecture=facts.get("architecture") or (base.architecture if base else None),
                parameters=base.parameters if base else None,
                parameter_size=base.parameter_size if base else None,
                quantization=facts.get("quantization"),
                context_length=facts.get("context_length")
                or (base.context_length if base else None),
                chat_template=bool(facts.get("chat_template")),
                license=base.license if base else None,
                capabilities=tuple(facts.get("capabilities") or ()),
            )
            if extra:
                manifest = replace(manifest, **extra)
            on_event({"status": "writing manifest"})
            store.write_manifest(manifest)
            return manifest
    except BaseException:
        drop_unreferenced(store, layers)
        raise


def drop_unreferenced(store: Store, layers: list[Layer]) -> None:
    """Delete blobs of an abandoned install that no installed model uses."""
    try:
        in_use = {layer.digest for m in store.models() for layer in m.layers}
    except LlmtuiError:
        return
    for layer in layers:
        if layer.digest not in in_use and not layer.link:
            store.blob_path(layer.digest).unlink(missing_ok=True)


def safe_model_tag(text: str) -> str:
    """A tag-safe suffix from free text (int4, fp16, ...)."""
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._") or "x"
