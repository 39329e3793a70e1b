"""The conversion steps, run in a child process (``python -m llmtui.models.convert.steps``).

A child process keeps torch, transformers and the converters out of the CLI and the
daemon, and lets Ctrl-C end a conversion at once: the parent kills the child and removes
its work folder, so nothing half-made reaches the store. Progress goes to stdout as JSON
lines (``{"status": ...}``), a failure as one ``{"error": ..., "kind": ...}`` line; the
tools' own chatter goes to stderr, which the parent keeps in a log.

Each step uses the field's own tool: transformers' GGUF loading to dequantize a GGUF into a
Hugging Face folder, onnxruntime-genai's model builder for ONNX, optimum-intel's exporter
with NNCF weight compression (and openvino-tokenizers) for OpenVINO IR, the gguf package
(llama.cpp's converter logic, in hf_gguf.py) and llama.cpp's quantizer for GGUF.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


class StepError(Exception):
    def __init__(self, message: str, kind: str = "BadModelFile") -> None:
        super().__init__(message)
        self.kind = kind


def say(**fields: Any) -> None:
    sys.__stdout__.write(json.dumps(fields) + "\n")  # type: ignore[union-attr]
    sys.__stdout__.flush()  # type: ignore[union-attr]


def _quiet_tools() -> None:
    """No telemetry, no hub lookups, no tokenizers fork warnings, in this process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from llmtui.backends.openvino import telemetry_off

    telemetry_off()


# -- GGUF -> Hugging Face folder ----------------------------------------------------------------


def _fixed_tokenizer(gguf_path: Path) -> Any:
    """A fast tokenizer from the GGUF's own vocabulary.

    transformers picks a tokenizer converter by architecture, so a llama-architecture GGUF
    with a byte-level BPE (``tokenizer.ggml.model == "gpt2"``, e.g. SmolLM2) gets a
    SentencePiece-style decoder that garbles text; this builds it with transformers' GPT-2
    converter instead and marks the control tokens special, matching llama.cpp's ids.
    """
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast
    from transformers.integrations.ggml import GGUFGPTConverter
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    parsed = load_gguf_checkpoint(str(gguf_path), return_tensors=False)
    tdict = parsed["tokenizer"]
    if tdict.get("tokenizer_type") != "gpt2":
        return None
    tokens = tdict["tokens"]
    backend = GGUFGPTConverter(tdict).converted()
    backend.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                                for i, kind in enumerate(tdict.get("token_type") or [])
                                if kind == 3])

    def tok(key: str) -> str | None:
        i = tdict.get(key)
        return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else None

    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=tok("bos_token_id"), eos_token=tok("eos_token_id"),
        unk_token=tok("unk_token_id"), pad_token=tok("pad_token_id"),
        chat_template=parsed["tokenizer_config"].get("chat_template"),
        clean_up_tokenization_spaces=False)


def gguf_to_hf(gguf_path: Path, out: Path, dtype: str = "float32") -> None:
    """Dequantize a GGUF into a Hugging Face folder (weights, config, tokenizer)."""
    from transformers import AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    try:
        arch = load_gguf_checkpoint(str(gguf_path), return_tensors=False)["config"]
    except (ValueError, KeyError, RuntimeError) as exc:
        raise StepError(f"transformers cannot read this GGUF: {_first_line(exc)}") from None
    model_type = arch.get("model_type")
    say(status=f"dequantizing the GGUF ({model_type}) with transformers")
    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype)
    except (ValueError, KeyError, NotImplementedError) as exc:
        raise StepError(f"transformers cannot load the '{model_type}' architecture from a "
                        f"GGUF: {_first_line(exc)}") from None
    tokenizer = _gguf_tokenizer(gguf_path)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _drop_nulls(out / "tokenizer_config.json")
    from gguf import GGUFReader

    field = GGUFReader(str(gguf_path)).fields.get("tokenizer.chat_template")
    template = field.contents() if field is not None else None
    if template and not getattr(tokenizer, "chat_template", None):
        # the GGUF's chat template, which transformers keeps only for some tokenizers
        (out / "chat_template.jinja").write_text(template, encoding="utf-8")
    spm = out / "tokenizer.model"
    if spm.is_file() and spm.open("rb").read(4) == b"GGUF":
        # transformers "saves" a GGUF-made SentencePiece tokenizer by copying the GGUF itself
        # under that name; write a real SentencePiece model from the GGUF's vocabulary.
        spm.unlink()
        _spm_from_gguf(gguf_path, spm)


def _drop_nulls(path: Path) -> None:
    """transformers writes "chat_template": null and "unk_token": null for a model with
    neither (a byte-level BPE trained by `llm train`); onnxruntime-genai's tokenizer
    wants strings there or nothing."""
    if not path.is_file():
        return
    cfg = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(cfg, dict) and any(v is None for v in cfg.values()):
        path.write_text(json.dumps({k: v for k, v in cfg.items() if v is not None},
                                   indent=2), encoding="utf-8")


def _spm_from_gguf(gguf_path: Path, out: Path) -> None:
    """A SentencePiece model (pieces, scores, types) from a GGUF's ``llama`` vocabulary."""
    from gguf import GGUFReader

    try:
        from sentencepiece import sentencepiece_model_pb2 as pb
    except ImportError:  # no protobuf: the folder keeps its tokenizer.json only
        return
    fields = GGUFReader(str(gguf_path)).fields
    if fields["tokenizer.ggml.model"].contents() != "llama":
        return
    tokens = fields["tokenizer.ggml.tokens"].contents()
    scores = (fields["tokenizer.ggml.scores"].contents() if "tokenizer.ggml.scores" in fields
              else [0.0] * len(tokens))
    types = fields["tokenizer.ggml.token_type"].contents()
    space = fields.get("tokenizer.ggml.add_space_prefix")
    model = pb.ModelProto()  # type: ignore[attr-defined]
    model.trainer_spec.model_type = pb.TrainerSpec.BPE  # type: ignore[attr-defined]
    model.trainer_spec.vocab_size = len(tokens)
    model.trainer_spec.byte_fallback = 6 in types
    model.normalizer_spec.name = "identity"
    model.normalizer_spec.add_dummy_prefix = bool(space.contents()) if space else True
    model.normalizer_spec.remove_extra_whitespaces = False
    model.normalizer_spec.escape_whitespaces = True
    for text, score, kind in zip(tokens, scores, types, strict=True):
        piece = model.pieces.add()  # GGUF and SentencePiece number the token types alike
        piece.piece, piece.score = text, float(score)
        piece.type = int(kind) if 1 <= kind <= 6 else 1
    out.write_bytes(model.SerializeToString())


def _gguf_tokenizer(gguf_path: Path) -> Any:
    """The GGUF's tokenizer as transformers reads it (with our fixes where it misreads)."""
    from transformers import AutoTokenizer

    return _fixed_tokenizer(gguf_path) or AutoTokenizer.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def hf_model_type(folder: Path) -> str:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StepError(f"{folder} has no readable config.json: {exc}") from None
    return str(config.get("model_type") or "")


# -- Hugging Face folder -> ONNX / OpenVINO ------------------------------------------------------


def hf_to_onnx(src: Path, out: Path, precision: str, provider: str, cache: Path) -> None:
    """onnxruntime-genai's model builder: graph, weights, genai_config and tokenizer."""
    model_type = hf_model_type(src)
    from onnxruntime_genai.models.builder import create_model

    say(status=f"building the ONNX model ({precision}, {provider}) with onnxruntime-genai")
    try:
        # Never run code shipped inside a model folder, never ask the hub for a token.
        create_model("", str(src), str(out), precision, provider, str(cache),
                     hf_remote=False, hf_token="false")
    except NotImplementedError:
        raise StepError(f"onnxruntime-genai's model builder does not support the "
                        f"'{model_type}' architecture", kind="InvalidInput") from None
    except ValueError as exc:  # AutoConfig: an unknown model type
        raise StepError(f"onnxruntime-genai's model builder cannot read this model "
                        f"('{model_type}'): {_first_line(exc)}", kind="InvalidInput") from None
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "chat_template.jinja"):  # the builder copies them; keep the fixed ones
        if (src / name).is_file():
            (out / name).write_bytes((src / name).read_bytes())


#: Encoder model types exported for embeddings (plain onnxruntime, mean pooling).
ENCODERS = frozenset({"bert", "roberta", "xlm-roberta", "mpnet", "distilbert", "electra"})


def hf_to_onnx_encoder(src: Path, out: Path) -> None:
    """A sentence-transformers / BERT-style encoder through optimum's ONNX exporter."""
    from optimum.exporters.onnx import main_export

    say(status="exporting the encoder to ONNX with optimum")
    main_export(str(src), output=str(out), task="feature-extraction", do_validation=False,
                trust_remote_code=False)
    for name in ("tokenizer.json", "config.json"):
        if not (out / name).is_file() and (src / name).is_file():
            (out / name).write_bytes((src / name).read_bytes())


def hf_to_openvino(src: Path, out: Path, precision: str) -> None:
    """optimum-intel's exporter, weights compressed by NNCF, tokenizers by openvino-tokenizers."""
    import openvino as ov
    from optimum.exporters.tasks import TasksManager
    from optimum.intel import OVModelForCausalLM, OVWeightQuantizationConfig
    from transformers import AutoTokenizer

    model_type = hf_model_type(src)
    supported = TasksManager.get_supported_model_type_for_task("text-generation-with-past",
                                                               exporter="openvino")
    if model_type.replace("_", "-") not in supported and model_type not in supported:
        raise StepError(f"optimum-intel cannot export the '{model_type}' architecture to "
                        "OpenVINO", kind="InvalidInput")
    quant: Any = None
    if precision in ("int4", "int8"):
        # Asymmetric int4 in groups of 64: NNCF's data-free default for small LLMs.
        quant = (OVWeightQuantizationConfig(bits=4, sym=False, group_size=64, ratio=1.0)
                 if precision == "int4" else OVWeightQuantizationConfig(bits=8))
    say(status=f"exporting to OpenVINO IR ({precision}) with optimum-intel and NNCF")
    model = OVModelForCausalLM.from_pretrained(
        str(src), export=True, compile=False, quantization_config=quant,
        load_in_8bit=False if quant is None else None,
        ov_config={"INFERENCE_PRECISION_HINT": "f32"} if precision == "fp32" else None)
    if precision == "fp16" and quant is None:
        model.half()
    model.save_pretrained(out)
    say(status="converting the tokenizer with openvino-tokenizers")
    from openvino_tokenizers import convert_tokenizer

    hf_tok = AutoTokenizer.from_pretrained(str(src))
    tok, detok = convert_tokenizer(hf_tok, with_detokenizer=True)
    ov.save_model(tok, str(out / "openvino_tokenizer.xml"))
    ov.save_model(detok, str(out / "openvino_detokenizer.xml"))
    hf_tok.save_pretrained(out)  # tokenizer_config.json carries the chat template


def hf_to_gguf_file(src: Path, out: Path, qtype: str, filename: str) -> None:
    """A Hugging Face folder to one GGUF: written F16 (or F32) with the gguf package, then
    quantized by llama.cpp's own quantizer when ``qtype`` is a quantized type."""
    from llmtui.errors import LlmtuiError
    from llmtui.models.convert.quantize import quantize_gguf

    out.mkdir(parents=True, exist_ok=True)
    final = out / filename
    written = final if qtype in ("F16", "F32") else out / "unquantized.f16.gguf"
    try:
        if hf_model_type(src) == "bert":
            from llmtui.models.convert.bert import sentence_transformer_to_gguf

            say(status="writing the BERT encoder as GGUF with the gguf package")
            sentence_transformer_to_gguf(src, written, ftype="f32" if qtype == "F32" else "f16")
        else:
            from llmtui.models.convert.hf_gguf import hf_to_gguf

            say(status=f"writing the GGUF ({'F32' if qtype == 'F32' else 'F16'}) with the "
                       "gguf package")
            hf_to_gguf(src, written, ftype="f32" if qtype == "F32" else "f16")
        if written != final:
            say(status=f"quantizing to {qtype} with llama.cpp")
            quantize_gguf(written, final, qtype)
            written.unlink()
    except LlmtuiError as exc:
        raise StepError(str(exc), kind=type(exc).__name__) from None
def gguf_to_openvino_native(gguf_path: Path, out: Path, work: Path) -> bool:
    """A 4-bit GGUF straight to OpenVINO IR with openvino-genai's own GGUF reader (no
    dequantized copy, no torch), then the GGUF's exact blocks (gguf_blocks). False when the
    reader does not take this file; the caller then goes through Hugging Face and NNCF."""
    from llmtui.models.convert.gguf_blocks import keep_gguf_blocks_ov, ov_reader_fits

    if not ov_reader_fits(gguf_path):
        return False
    import openvino_genai as ov_genai

    say(status="reading the GGUF with openvino-genai's GGUF reader")
    spot = work / "ov-gguf"
    spot.mkdir(parents=True, exist_ok=True)
    local = spot / "model.gguf"
    if not local.exists():
        local.symlink_to(gguf_path.resolve())  # the reader writes the IR beside the file
    try:
        pipe = ov_genai.LLMPipeline(str(local), "CPU", enable_save_ov_model=True)
        del pipe
    except RuntimeError as exc:
        say(status=f"openvino-genai's GGUF reader refused it ({_first_line(exc)}); "
                   "converting through Hugging Face instead")
        return False
    names = ("openvino_model.xml", "openvino_model.bin", "openvino_tokenizer.xml",
             "openvino_tokenizer.bin", "openvino_detokenizer.xml", "openvino_detokenizer.bin")
    if not all((spot / n).is_file() for n in names):
        return False
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        os.replace(spot / name, out / name)
    kept, total = keep_gguf_blocks_ov(out, gguf_path)
    say(status=f"kept the GGUF's own 4-bit blocks in {kept} of {total} int4 matrices")
    # The chat template and the model's facts, as the Hugging Face path leaves them.
    from transformers import AutoConfig

    _gguf_tokenizer(gguf_path).save_pretrained(out)
    AutoConfig.from_pretrained(str(gguf_path.parent),
                               gguf_file=gguf_path.name).save_pretrained(out)
    return True


def main(argv: list[str]) -> int:
    """steps.py JSON: {"source", "source_kind": gguf|hf, "to", "precision", "work", ...}."""
    spec = json.loads(argv[0])
    sys.stdout = sys.stderr  # stray prints from the tools must not mix with progress
    _quiet_tools()
    work = Path(spec["work"])
    out = work / "out"
    try:
        if spec.get("op") == "quantize":
            from llmtui.errors import LlmtuiError
            from llmtui.models.convert.quantize import quantize_gguf

            say(status=f"quantizing to {spec['type']} with llama.cpp")
            try:
                out.mkdir(parents=True, exist_ok=True)
                quantize_gguf(Path(spec["source"]), out / spec["filename"], spec["type"],
                              imatrix=Path(spec["imatrix"]) if spec.get("imatrix") else None)
            except LlmtuiError as exc:
                raise StepError(str(exc), kind=type(exc).__name__) from None
            say(status="quantized", done=True)
            return 0
        src = Path(spec["source"])
        if spec.get("op") == "to-hf":  # `llm finetune`: the base, dequantized for torch
            gguf_to_hf(src, out, "float32")
            say(status="dequantized", done=True)
            return 0
        if spec["to"] == "gguf":
            hf_to_gguf_file(src, out, spec["type"], spec["filename"])
            say(status="converted", done=True)
            return 0
        if (spec["source_kind"] == "gguf" and spec["to"] == "openvino"
                and spec["precision"] == "int4" and gguf_to_openvino_native(src, out, work)):
            say(status="converted", done=True)
            return 0
        if spec["source_kind"] == "gguf":
            hf = work / "hf"
            dtype = "float16" if spec["precision"] == "fp16" else "float32"
            gguf_to_hf(src, hf, dtype)
            src = hf
        if spec["to"] == "onnx" and hf_model_type(src) in ENCODERS:
            hf_to_onnx_encoder(src, out)
        elif spec["to"] == "onnx":
            hf_to_onnx(src, out, spec["precision"], spec.get("provider", "cpu"),
                       work / "cache")
            if spec["source_kind"] == "gguf" and spec["precision"] == "int4":
                from llmtui.models.convert.gguf_blocks import keep_gguf_blocks

                # A 4-bit GGUF's blocks as they are, not quantized a second time.
                kept, total = keep_gguf_blocks(out, Path(spec["source"]), src)
                say(status=f"kept the GGUF's own 4-bit blocks in {kept} of {total} "
                           "int4 matrices")
        elif spec["to"] == "openvino":
            hf_to_openvino(src, out, spec["precision"])
        else:
            raise StepError(f"unknown target {spec['to']!r}", kind="InvalidInput")
    except StepError as exc:
        say(error=str(exc), kind=exc.kind)
        return 1
    except MemoryError:
        say(error="the conversion ran out of memory", kind="GenerationError")
        return 1
    except OSError as exc:
        import errno

        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            say(error="the disk filled up during the conversion", kind="NoSpaceError")
            return 1
        raise
    say(status="converted", done=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
