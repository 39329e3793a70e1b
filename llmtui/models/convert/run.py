"""`llm convert` and `llm quantize`: find the source, run the steps in a child process,
install the result in the store; on any failure or Ctrl-C, nothing reaches the store.

Sources: a GGUF model in the store, a Hugging Face folder on disk (safetensors + config +
tokenizer), or ``hf://ORG/REPO`` (downloaded first). Targets: ``onnx`` (onnxruntime-genai),
``openvino`` (OpenVINO IR), and ``gguf`` from a Hugging Face folder (the gguf package,
following llama.cpp's converter; quantized types through llama.cpp's quantizer). A GGUF
to GGUF is quantization (``llm quantize``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmtui import errors
from llmtui.errors import BadModelFile, InvalidInput, LlmtuiError, MissingExtra
from llmtui.models.names import ModelName
from llmtui.models.store import Manifest, Store

OnEvent = Callable[[dict[str, Any]], None]

TARGETS = ("onnx", "openvino", "gguf")
PRECISIONS = ("int4", "int8", "fp16", "fp32")
#: What each target needs installed (module, what it is for); all behind llmtui[convert].
NEEDS: dict[str, tuple[tuple[str, str], ...]] = {
    "gguf-source": (("torch", "Dequantizing a GGUF"), ("transformers", "Dequantizing a GGUF"),
                    ("accelerate", "Dequantizing a GGUF")),
    "onnx": (("onnxruntime_genai", "Converting to ONNX"),
             ("transformers", "Converting to ONNX"), ("torch", "Converting to ONNX"),
             ("onnx_ir", "Converting to ONNX")),
    "openvino": (("optimum.intel", "Converting to OpenVINO"), ("nncf", "Converting to OpenVINO"),
                 ("openvino_tokenizers", "Converting to OpenVINO"),
                 ("torch", "Converting to OpenVINO")),
    "onnx-encoder": (("optimum.exporters.onnx", "Converting an encoder to ONNX"),
                     ("torch", "Converting an encoder to ONNX")),
    "quantize": (("llama_cpp", "Quantizing a GGUF"),),
    "gguf": (("gguf", "Converting to GGUF"), ("numpy", "Converting to GGUF"),
             ("tokenizers", "Converting to GGUF")),
    "gguf-spm": (("sentencepiece", "Converting a SentencePiece tokenizer to GGUF"),),
}
#: --precision for --to gguf: the ONNX/OpenVINO names map to their nearest GGUF type;
#: any llama.cpp quantization type (Q4_K_M, Q8_0, ...) is accepted as well.
GGUF_PRECISIONS = {"fp32": "F32", "f32": "F32", "fp16": "F16", "f16": "F16",
                   "int8": "Q8_0", "int4": "Q4_K_M"}
HF_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "chat_template.jinja", "tokenizer.model")


def _quiet(_: dict[str, Any]) -> None:
    return None


def require_tools(*groups: str) -> None:
    """A missing conversion dependency is one clear error naming the `convert` extra."""
    for group in groups:
        for module, what in NEEDS[group]:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                extra = "llama" if module == "llama_cpp" else "convert"
                raise MissingExtra(module.split(".")[0], extra, what)


def _default_name(base: str, to: str, precision: str | None = None) -> str:
    name = ModelName.parse(base)
    tag = name.tag if name.tag != "latest" else ""
    suffix = to if precision is None else precision.lower()
    tag = f"{tag}-{suffix}" if tag else suffix
    return str(ModelName.parse(f"{name.name}:{tag}"))


class Source:
    """Where a conversion starts: a GGUF file or a Hugging Face folder."""

    def __init__(self, kind: str, path: Path, label: str, manifest: Manifest | None,
                 default_name: str, scratch: Path | None = None) -> None:
        self.kind = kind
        self.path = path
        self.label = label
        self.manifest = manifest
        self.default_name = default_name
        self.scratch = scratch  # a download folder to remove afterwards


def _is_encoder(folder: Path) -> bool:
    from llmtui.models.convert.steps import ENCODERS

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return str(config.get("model_type")) in ENCODERS


def _is_hf_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def resolve_source(store: Store, spec: str, on_event: OnEvent) -> Source:
    if spec.startswith("hf://"):
        return _download_hf(store, spec, on_event)
    local = Path(spec).expanduser()
    if local.exists():
        if local.is_file() and zipfile.is_zipfile(local):
            return _unzip(store, local)
        if local.is_file():
            from llmtui.models.gguf_info import check_header

            check_header(local)
            return Source("gguf", local, str(local), None,
                          _folder_name(local.stem))
        if _is_hf_folder(local):
            return Source("hf", local, str(local), None, _folder_name(local.name))
        from llmtui.models.folders import detect_format

        fmt = detect_format(local)  # a clear error for a folder that is not a model
        raise InvalidInput(f"{local} is already an {fmt} model",
                           hint=f"import it with: llm import {local} --name NAME")
    manifest, path = store.resolve_file(spec)
    if manifest.format != "gguf":
        raise InvalidInput(f"'{manifest.name}' is a {manifest.format} model; conversion starts "
                           "from a GGUF or a Hugging Face folder")
    if "embedding" in manifest.capabilities:
        raise InvalidInput(f"'{manifest.name}' is an embedding model; only text-generation "
                           "models convert to ONNX Runtime GenAI and OpenVINO GenAI")
    return Source("gguf", path, manifest.name, manifest, manifest.name)


def _unzip(store: Store, archive: Path) -> Source:
    """A zip of a Hugging Face / sentence-transformers folder, unpacked to a scratch folder."""
    from llmtui.models.convert.bert import _open_folder

    store.ensure()
    scratch = Path(tempfile.mkdtemp(dir=store.partial, prefix="hf-"))
    try:
        folder = _open_folder(archive, scratch)
        if not _is_hf_folder(folder):
            raise BadModelFile(f"{archive.name} holds no Hugging Face model (config.json and "
                               "safetensors)")
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    stem = archive.name.removesuffix(".zip")
    return Source("hf", folder, str(archive), None, _folder_name(stem), scratch)


def _folder_name(text: str) -> str:
    import re

    stem = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._") or "model"
    return f"{stem[:60]}:latest"


def _download_hf(store: Store, spec: str, on_event: OnEvent) -> Source:
    """Fetch a Hugging Face repository's config, tokenizer and safetensors into a folder."""
    import httpx

    from llmtui.models.pull import _client, _hf_headers, hf_url

    rest = spec[5:].strip("/")
    repo, _, revision = rest.partition("@")
    if repo.count("/") != 1 or any(p in {"", ".", ".."} for p in repo.split("/")):
        raise InvalidInput(f"invalid hf:// source '{spec}'", hint="expected hf://ORG/REPO")
    from llmtui.net import require_online

    require_online(f"converting {spec}")  # before any lookup, like pulls
    store.ensure()
    scratch = Path(tempfile.mkdtemp(dir=store.partial, prefix="hf-"))
    folder = scratch / "model"
    folder.mkdir()
    headers = _hf_headers()
    try:
        with _client() as client:
            def get(name: str, required: bool) -> bool:
                url = hf_url(repo, name, revision or "main")
                try:
                    with client.stream("GET", url, headers=headers) as resp:
                        if resp.status_code == 404 and not required:
                            return False
                        if resp.status_code >= 400:
                            raise errors.DownloadError(
                                f"the hub answered HTTP {resp.status_code} for {repo}/{name}")
                        total = int(resp.headers.get("content-length") or 0) or None
                        done = 0
                        with (folder / name).open("wb") as out:
                            for chunk in resp.iter_bytes(1 << 20):
                                out.write(chunk)
                                done += len(chunk)
                                on_event({"status": f"pulling {name}", "digest": name,
                                          "total": total, "completed": done})
                except httpx.HTTPError as exc:
                    raise errors.DownloadError(f"cannot download {repo}/{name}: {exc}") from None
                return True

            get("config.json", True)
            for name in HF_FILES[1:]:
                get(name, False)
            if get("model.safetensors.index.json", False):
                index = json.loads((folder / "model.safetensors.index.json").read_text())
                for shard in sorted(set(index.get("weight_map", {}).values())):
                    if "/" in shard or shard.startswith("."):
                        raise BadModelFile(f"unsafe shard name in the index: {shard}")
                    get(shard, True)
            else:
                get("model.safetensors", True)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return Source("hf", folder, spec, None, _folder_name(repo.split("/")[1]), scratch)


def gguf_precision(precision: str | None) -> str:
    """The GGUF file type ``--to gguf --precision`` asks for (default F16)."""
    from llmtui.models.convert.quantize import NEEDS_IMATRIX, quant_type

    if precision is None or precision.lower() in GGUF_PRECISIONS:
        return GGUF_PRECISIONS[(precision or "f16").lower()]
    try:
        qtype = quant_type(precision)
    except InvalidInput:
        raise InvalidInput(f"unknown precision '{precision}' for GGUF",
                           hint="use f16 (default), f32, q8_0 or another llama.cpp type "
                                "such as Q4_K_M") from None
    if qtype in NEEDS_IMATRIX:
        raise InvalidInput(f"{qtype} needs an importance matrix",
                           hint="convert to f16, then: llm quantize MODEL --type "
                                f"{qtype} --imatrix FILE")
    return qtype


def _estimate_bytes(source: Source, to: str, precision: str) -> int:
    """Disk the conversion needs at its peak: the dequantized folder plus the output."""
    if source.kind == "gguf":
        from llmtui.models.gguf_info import read_info

        params = read_info(source.path).parameters or source.path.stat().st_size * 2
        hf = params * (2 if precision == "fp16" else 4)
    else:
        params = sum(p.stat().st_size for p in source.path.glob("*.safetensors")) // 2
        hf = 0
    per = {"int4": 0.75, "int8": 1.2, "fp16": 2.2, "fp32": 4.2}[precision]
    return int(hf + params * per) + (64 << 20)


class Cancelled(LlmtuiError):
    """The conversion was stopped (Ctrl-C, or a client that went away)."""

    exit_code = errors.ExitCode.INTERRUPTED
    http_status = 499


def run_steps(spec: dict[str, Any], work: Path, on_event: OnEvent,
              cancel: threading.Event | None = None) -> None:
    """Run ``llmtui.models.convert.steps`` in a child process, relaying its progress."""
    log = (work / "convert.log").open("wb")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "llmtui.models.convert.steps",
                             json.dumps(spec)], stdout=subprocess.PIPE, stderr=log,
                            env=env, start_new_session=True)
    watcher: threading.Thread | None = None
    if cancel is not None:
        def watch() -> None:
            while proc.poll() is None:
                if cancel.wait(0.2):
                    _kill(proc)
                    return
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
    error: dict[str, Any] | None = None
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            if "error" in msg:
                error = msg
            elif msg.get("status"):
                on_event({"status": msg["status"]})
        code = proc.wait()
    except BaseException:
        _kill(proc)
        raise
    finally:
        log.close()
    if cancel is not None and cancel.is_set():
        raise Cancelled("the conversion was stopped; nothing was installed")
    if error is not None:
        cls = getattr(errors, str(error.get("kind")), None)
        if not (isinstance(cls, type) and issubclass(cls, LlmtuiError)) or cls is MissingExtra:
            cls = errors.GenerationError
        raise cls(str(error["error"]))
    if code != 0:
        tail = _log_tail(work / "convert.log")
        if code < 0:
            raise errors.GenerationError(f"the converter was killed by signal {-code}"
                                         + (" (out of memory?)" if code == -9 else ""))
        raise errors.GenerationError(f"the converter failed: {tail}")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)


def _log_tail(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()
                 if ln.strip() and not ln.startswith(" ")]
    except OSError:
        return "no log"
    errs = [ln for ln in lines if "Error" in ln or "error" in ln]
    return (errs or lines or ["no log"])[-1][:300]


def convert(store: Store, spec: str, to: str, *, precision: str | None = None,
            name: str | None = None, provider: str = "cpu", on_event: OnEvent = _quiet,
            cancel: threading.Event | None = None) -> Manifest:
    """Convert a model to ``to`` and install it; returns the new manifest."""
    to = to.lower()
    if to not in TARGETS:
        raise InvalidInput(f"unknown target format '{to}'", hint="use onnx, openvino or gguf")
    if to == "gguf":
        return _convert_to_gguf(store, spec, gguf_precision(precision), name, on_event,
                                cancel)
    precision = (precision or "int4").lower()
    if precision not in PRECISIONS:
        raise InvalidInput(f"unknown precision '{precision}'", hint="use " + ", ".join(PRECISIONS))
    if to == "onnx" and precision == "int8":
        raise InvalidInput("onnxruntime-genai's builder makes int4, fp16 or fp32 models")
    source = resolve_source(store, spec, on_event)
    try:
        encoder = source.kind == "hf" and _is_encoder(source.path)
        if encoder and to != "onnx":
            raise InvalidInput("encoders (embedding models) convert to ONNX only")
        require_tools("onnx-encoder" if encoder else to,
                      *(("gguf-source",) if source.kind == "gguf" else ()))
        target = ModelName.parse(name or _default_name(source.default_name, to))
        if store.exists(target):
            raise InvalidInput(f"'{target}' already exists", hint="remove it first, or pass "
                               "--name for another name")
        store.ensure()
        store.check_space(_estimate_bytes(source, to, precision))
        work = Path(tempfile.mkdtemp(dir=store.partial, prefix="convert-"))
        try:
            on_event({"status": f"converting {source.label} to {to} ({precision})"})
            run_steps({"source": str(source.path), "source_kind": source.kind, "to": to,
                       "precision": precision, "provider": provider, "work": str(work)},
                      work, on_event, cancel)
            from llmtui.models.folders import add_folder

            on_event({"status": "adding the converted model to the store"})
            return add_folder(store, work / "out", str(target), fmt=to, base=source.manifest,
                              source=f"convert:{source.label} ({to} {precision})",
                              extra={"quantization": "fp32" if encoder else precision},
                              on_event=on_event)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    finally:
        if source.scratch is not None:
            shutil.rmtree(source.scratch, ignore_errors=True)


def _convert_to_gguf(store: Store, spec: str, qtype: str, name: str | None,
                     on_event: OnEvent, cancel: threading.Event | None) -> Manifest:
    """A Hugging Face folder (or hf://, or a zip of one) to one GGUF in the store."""
    source = resolve_source(store, spec, on_event)
    try:
        if source.kind == "gguf":
            raise InvalidInput(
                "to make a GGUF from a GGUF, quantize it: llm quantize MODEL --type Q4_K_M")
        from llmtui.models.convert.hf_gguf import hf_architecture

        if not _is_encoder(source.path):
            hf_architecture(source.path)  # an unsupported architecture fails before any work
        require_tools("gguf", *(("quantize",) if qtype not in ("F16", "F32") else ()),
                      *(("gguf-spm",) if (source.path / "tokenizer.model").is_file() else ()))
        target = ModelName.parse(name or _default_name(source.default_name, "gguf", qtype))
        if store.exists(target):
            raise InvalidInput(f"'{target}' already exists", hint="remove it first, or pass "
                               "--name for another name")
        store.ensure()
        weights = sum(p.stat().st_size for p in source.path.glob("*.safetensors"))
        per = {"F32": 2.0, "F16": 1.0}.get(qtype, 1.6)  # quantized: the F16 file + the output
        store.check_space(int(weights * per) + (64 << 20))
        work = Path(tempfile.mkdtemp(dir=store.partial, prefix="convert-"))
        try:
            filename = f"{_folder_name(source.path.name).split(':')[0]}.{qtype}.gguf"
            on_event({"status": f"converting {source.label} to gguf ({qtype})"})
            run_steps({"source": str(source.path), "source_kind": source.kind, "to": "gguf",
                       "type": qtype, "filename": filename, "work": str(work)},
                      work, on_event, cancel)
            on_event({"status": "adding the converted model to the store"})
            return _install_gguf(store, work / "out" / filename, target,
                                 f"convert:{source.label} (gguf {qtype})", None)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    finally:
        if source.scratch is not None:
            shutil.rmtree(source.scratch, ignore_errors=True)


def _install_gguf(store: Store, out: Path, target: ModelName, source_label: str,
                  base: Manifest | None) -> Manifest:
    """Add one finished GGUF as ``target``; its blob goes again if the manifest fails.
    With ``base``, keep its system prompt, template and parameters (quantization)."""
    from dataclasses import replace

    from llmtui.models.pull import build_manifest
    from llmtui.models.store import Layer

    digest, size = store.add_blob_from_file(out)
    layer = Layer(digest=digest, size=size, filename=out.name)
    try:
        made = build_manifest(store, target, [layer], "gguf", source_label, None)
        if base is not None:
            made = replace(made, family=base.family or made.family,
                           license=made.license or base.license, system=base.system,
                           template=base.template,
                           parameters_override=dict(base.parameters_override))
        store.write_manifest(made)
    except BaseException:
        from llmtui.models.folders import drop_unreferenced

        drop_unreferenced(store, [layer])
        raise
    return made


def quantize(store: Store, model: str, qtype: str, *, name: str | None = None,
             imatrix: Path | None = None, on_event: OnEvent = _quiet,
             cancel: threading.Event | None = None) -> Manifest:
    """Quantize a GGUF in the store with llama.cpp's quantizer and install the result."""
    from llmtui.models.convert.quantize import NEEDS_IMATRIX, quant_type

    qtype = quant_type(qtype)
    if imatrix is not None and not imatrix.is_file():
        raise InvalidInput(f"no such importance matrix file: {imatrix}")
    if qtype in NEEDS_IMATRIX and imatrix is None:
        raise InvalidInput(f"{qtype} needs an importance matrix",
                           hint="pass --imatrix FILE (made by llama.cpp's llama-imatrix)")
    manifest, path = store.resolve_file(model)
    target = ModelName.parse(name or _default_name(manifest.name, "gguf", qtype))
    if store.exists(target):
        raise InvalidInput(f"'{target}' already exists", hint="pass --name for another name")
    return quantize_model(store, manifest, path, qtype, target, imatrix=imatrix,
                          on_event=on_event, cancel=cancel)


def quantize_model(store: Store, manifest: Manifest, path: Path, qtype: str,
                   target: ModelName, *, imatrix: Path | None = None,
                   on_event: OnEvent = _quiet,
                   cancel: threading.Event | None = None) -> Manifest:
    """Quantize one GGUF (a store model, or an uploaded blob for /api/create) and install
    it as ``target``, keeping the source's system prompt, template and parameters."""
    if manifest.format != "gguf":
        raise InvalidInput(f"'{manifest.name}' is a {manifest.format} model; quantize "
                           "works on GGUF models",
                           hint="for ONNX or OpenVINO, pick --precision in llm convert")
    require_tools("quantize")
    from llmtui.models.gguf_info import read_info

    params = read_info(path).parameters or path.stat().st_size * 2
    bits = {"F32": 32, "F16": 16, "BF16": 16, "Q8_0": 8.5}.get(qtype, 6.0)
    store.ensure()
    store.check_space(int(params * bits / 8) + (64 << 20))
    work = Path(tempfile.mkdtemp(dir=store.partial, prefix="quantize-"))
    try:
        filename = Path(manifest.layers[0].filename).stem.split(".")[0] + f".{qtype}.gguf"
        on_event({"status": f"quantizing {manifest.name} to {qtype}"})
        run_steps({"op": "quantize", "source": str(path), "type": qtype, "filename": filename,
                   "imatrix": str(imatrix) if imatrix else None, "work": str(work)},
                  work, on_event, cancel)
        on_event({"status": "adding the quantized model to the store"})
        return _install_gguf(store, work / "out" / filename, target,
                             f"quantize:{manifest.name} ({qtype})", manifest)
    finally:
        shutil.rmtree(work, ignore_errors=True)


__all__ = ["Cancelled", "convert", "quantize", "require_tools"]
