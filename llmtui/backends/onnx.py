"""ONNX models: text generation through onnxruntime-genai, embeddings through plain
onnxruntime. Runs inside a worker process, one request at a time.

The execution providers come from the ``onnx_providers`` setting (``cpu`` by default;
``cuda``, ``dml``, ``openvino``, ``webgpu``, ``NvTensorRtRtx``, ... when the installed
build has them) and show in ``llm ps``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmtui.backends.textgen import TextGenBackend
from llmtui.errors import BadModelFile, ContextOverflow, InvalidInput, require

#: onnxruntime-genai's provider names, by what a user may type.
_GENAI_PROVIDERS = {"cuda": "cuda", "dml": "dml", "directml": "dml", "openvino": "OpenVINO",
                    "webgpu": "WebGPU", "tensorrt": "NvTensorRtRtx", "trt": "NvTensorRtRtx",
                    "nvtensorrtrtx": "NvTensorRtRtx", "qnn": "QNN", "rocm": "rocm"}
#: Plain onnxruntime's provider names, for encoders.
_ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                  "tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider",
                  "dml": "DmlExecutionProvider", "directml": "DmlExecutionProvider",
                  "openvino": "OpenVINOExecutionProvider", "rocm": "ROCMExecutionProvider"}


def configured_providers() -> list[str]:
    """The ``onnx_providers`` setting as a list (``LLMTUI_ONNX_PROVIDERS`` overrides)."""
    import os

    text = os.environ.get("LLMTUI_ONNX_PROVIDERS")
    if text is None:
        from llmtui.config import Settings

        text = str(Settings.load().config.get("onnx_providers"))
    return [p.strip().lower() for p in text.split(",") if p.strip()] or ["cpu"]


class OnnxBackend(TextGenBackend):
    """One loaded ONNX model: a GenAI decoder (genai_config.json) or an encoder."""

    formats = ("onnx",)
    name = "onnxruntime-genai"

    def __init__(self) -> None:
        super().__init__()
        self.model: Any = None
        self.tokenizer: Any = None
        self.session: Any = None  # plain onnxruntime, for encoders
        self.providers: list[str] = []
        self.vocab = 0

    def load(self, path: str, options: dict[str, Any]) -> dict[str, Any]:
        folder = Path(path)
        if not (folder / "genai_config.json").is_file():
            return self._load_encoder(folder, options)
        og = require("onnxruntime_genai", "onnx", "Running ONNX models")
        wanted = configured_providers()
        config = og.Config(str(folder))  # type: ignore[attr-defined]
        config.clear_providers()
        used = []
        for name in wanted:
            if name == "cpu":
                continue
            provider = _GENAI_PROVIDERS.get(name)
            if provider is None:
                raise InvalidInput(f"unknown ONNX execution provider '{name}'",
                                   hint="known: cpu, " + ", ".join(sorted(_GENAI_PROVIDERS)))
            config.append_provider(provider)
            used.append(provider)
        try:
            self.model = og.Model(config)  # type: ignore[attr-defined]
            self.tokenizer = og.Tokenizer(self.model)  # type: ignore[attr-defined]
        except Exception as exc:
            text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            if used and ("provider" in text.lower() or "not" in text.lower()):
                raise InvalidInput(f"the ONNX execution provider {', '.join(used)} is not "
                                   f"available in this onnxruntime-genai build: {text}",
                                   hint="llm config set onnx_providers cpu") from None
            raise BadModelFile(f"onnxruntime-genai cannot load this model: {text}") from None
        self.providers = used or ["cpu"]
        genai = json.loads((folder / "genai_config.json").read_text(encoding="utf-8"))
        model_cfg = genai.get("model") or {}
        trained = int(model_cfg.get("context_length") or 4096)
        wanted_ctx = int(options.get("num_ctx") or 0)
        self.n_ctx = min(wanted_ctx, trained) if wanted_ctx > 0 else trained
        self.vocab = int(model_cfg.get("vocab_size") or 0)
        self._read_template(folder)
        self.bos_text = self._special(model_cfg.get("bos_token_id"))
        eos = model_cfg.get("eos_token_id")
        self.eos_text = self._special(eos[0] if isinstance(eos, list) and eos else eos)
        return {"n_ctx": self.n_ctx, "n_ctx_train": trained, "gpu_offload":
                any(p != "cpu" for p in self.providers), "gpu_layers": 0,
                "backend": "onnxruntime-genai", "execution_providers": self.providers,
                "device": ",".join(self.providers), "chat_template": self.template is not None,
                "embedding": False}

    def _special(self, token: Any) -> str:
        if not isinstance(token, int) or token < 0:
            return ""
        try:
            return str(self.tokenizer.decode([token]))
        except Exception:
            return ""

    # -- generation ----------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        if self.session is not None:
            return list(self._encoder_tokenizer.encode(text).ids)
        return [int(t) for t in self.tokenizer.encode(text)]

    def _check_format(self, fmt: Any) -> None:
        if fmt and fmt != "json" and not isinstance(fmt, dict):
            raise InvalidInput("format must be \"json\" or a JSON schema object")

    def _stream(self, tokens: list[int], opts: dict[str, Any], fmt: Any, max_new: int,
                cancelled: threading.Event) -> Iterator[str]:
        import onnxruntime_genai as og

        if max_new <= 0:
            raise ContextOverflow(f"the prompt fills the whole context ({self.n_ctx} tokens)")
        temperature = float(opts.get("temperature", 0.8))
        search: dict[str, Any] = {
            "max_length": len(tokens) + max_new,
            "do_sample": temperature > 0,
            "temperature": max(temperature, 1e-5),
            "top_p": float(opts.get("top_p", 0.9)),
            "top_k": int(opts.get("top_k", 40)) or self.vocab or 50,
            "repetition_penalty": float(opts.get("repeat_penalty", 1.1)),
        }
        seed = opts.get("seed")
        if seed is not None and int(seed) >= 0:
            search["random_seed"] = int(seed)
        params = og.GeneratorParams(self.model)
        params.set_search_options(**search)
        if fmt:
            schema = fmt if isinstance(fmt, dict) else {"type": "object"}
            try:
                params.set_guidance("json_schema", json.dumps(schema))
            except Exception as exc:
                raise InvalidInput(f"{self.name} cannot use this JSON schema: "
                                   f"{str(exc).splitlines()[0][:200]}") from None
        generator = og.Generator(self.model, params)
        try:
            generator.append_tokens(tokens)
            stream = self.tokenizer.create_stream()
            while not generator.is_done() and not cancelled.is_set():
                generator.generate_next_token()
                token = int(generator.get_next_tokens()[0])
                if generator.is_done() and token in self._eos_ids():
                    return
                yield stream.decode(token)
        finally:
            del generator

    def _eos_ids(self) -> set[int]:
        try:
            return {int(t) for t in self.tokenizer.eos_token_ids}
        except Exception:
            return set()

    def _logits(self, tokens: list[int]) -> Any:
        import onnxruntime_genai as og

        params = og.GeneratorParams(self.model)
        params.set_search_options(max_length=len(tokens) + 1)
        generator = og.Generator(self.model, params)
        generator.append_tokens(tokens)
        return generator.get_output("logits")[0]

    # -- encoders (embeddings) -----------------------------------------------------------------

    def _load_encoder(self, folder: Path, options: dict[str, Any]) -> dict[str, Any]:
        ort = require("onnxruntime", "onnx", "Running ONNX models")
        tokenizers = require("tokenizers", "onnx", "Running ONNX embedding models")
        graphs = sorted(folder.glob("*.onnx"))
        if not graphs:
            raise BadModelFile("the ONNX model folder holds no .onnx graph")
        names = [_ORT_PROVIDERS.get(p) for p in configured_providers()]
        available = set(ort.get_available_providers())  # type: ignore[attr-defined]
        providers = [n for n in names if n and n in available] or ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(  # type: ignore[attr-defined]
                str(graphs[0]), providers=providers)
        except Exception as exc:
            raise BadModelFile(f"onnxruntime cannot load {graphs[0].name}: "
                               f"{str(exc).splitlines()[0][:300]}") from None
        self._encoder_tokenizer = tokenizers.Tokenizer.from_file(  # type: ignore[attr-defined]
            str(folder / "tokenizer.json"))
        config = {}
        if (folder / "config.json").is_file():
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        self.n_ctx = int(config.get("max_position_embeddings") or 512)
        self._encoder_tokenizer.enable_truncation(self.n_ctx)
        self.providers = [p.removesuffix("ExecutionProvider").lower() for p in providers]
        return {"n_ctx": self.n_ctx, "gpu_offload": False, "gpu_layers": 0,
                "backend": "onnxruntime", "execution_providers": self.providers,
                "device": ",".join(self.providers), "embedding": True}

    def embed(self, texts: list[str], options: dict[str, Any]) -> list[list[float]]:
        import numpy as np

        if self.session is None:
            return super().embed(texts, options)
        inputs = {i.name for i in self.session.get_inputs()}
        out: list[list[float]] = []
        self.last_tokens = 0
        for text in texts:
            enc = self._encoder_tokenizer.encode(text)
            if len(enc.overflowing) and not options.get("truncate", True):
                raise ContextOverflow(f"an input is longer than the context ({self.n_ctx})")
            ids = np.asarray([enc.ids], dtype=np.int64)
            mask = np.asarray([enc.attention_mask], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = self.session.run(None, {k: v for k, v in feed.items() if k in inputs})[0]
            if hidden.ndim == 3:  # mean over real tokens, as sentence-transformers pools
                weights = mask[..., None].astype(np.float32)
                hidden = (hidden * weights).sum(axis=1) / weights.sum(axis=1)
            vec = hidden[0].astype(np.float64)
            norm = float(np.linalg.norm(vec))
            out.append([float(x) for x in (vec / norm if norm else vec)])
            self.last_tokens += len(enc.ids)
        return out

    def close(self) -> None:
        self.model = None
        self.tokenizer = None
        self.session = None
