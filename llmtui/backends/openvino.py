"""OpenVINO IR models through openvino-genai's LLM pipeline (with openvino-tokenizers).
Runs inside a worker process, one request at a time.

The device comes from the ``openvino_device`` setting (CPU by default; GPU, NPU, AUTO or
HETERO strings as OpenVINO spells them) and shows in ``llm ps``. Telemetry that the
OpenVINO Python packages carry is switched off before any of them is imported.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmtui.backends.textgen import TextGenBackend
from llmtui.errors import BadModelFile, ContextOverflow, InvalidInput, require


def telemetry_off() -> None:
    """Switch OpenVINO telemetry off in this process, whatever a consent file says.

    openvino-telemetry sends usage data from tools such as NNCF and optimum-intel when no
    consent file exists (they skip the opt-in dialog), and some calls force a send past
    consent; so the consent check declines and every sending method does nothing.
    """
    try:
        import openvino_telemetry
        from openvino_telemetry.utils import opt_in_checker
    except ImportError:
        return
    declined = opt_in_checker.ConsentCheckResult.DECLINED

    def check(self: Any, *args: Any, **kwargs: Any) -> Any:
        return declined

    def nothing(self: Any, *args: Any, **kwargs: Any) -> None:
        return None

    opt_in_checker.OptInChecker.check = check
    telemetry = openvino_telemetry.Telemetry
    for name in ("send_event", "start_session", "end_session", "send_error",
                 "send_stack_trace", "send_opt_in_event"):
        if hasattr(telemetry, name):
            setattr(telemetry, name, nothing)


def configured_device() -> str:
    text = os.environ.get("LLMTUI_OPENVINO_DEVICE")
    if text is None:
        from llmtui.config import Settings

        text = str(Settings.load().config.get("openvino_device"))
    return text.strip() or "CPU"


class OpenVinoBackend(TextGenBackend):
    """One loaded OpenVINO IR model (openvino_model.xml + the tokenizer IRs)."""

    formats = ("openvino",)
    name = "openvino-genai"

    def __init__(self) -> None:
        super().__init__()
        self.pipe: Any = None
        self.tok: Any = None
        self.folder: Path | None = None
        self.device = "CPU"
        self._scorer: Any = None  # a compiled IR for perplexity, made on first use

    def load(self, path: str, options: dict[str, Any]) -> dict[str, Any]:
        telemetry_off()
        ov_genai = require("openvino_genai", "openvino", "Running OpenVINO models")
        folder = Path(path)
        self.folder = folder
        self.device = configured_device()
        config: dict[str, Any] = {}
        threads = int(options.get("num_thread") or 0)
        if threads and self.device.upper().startswith("CPU"):
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self.pipe = ov_genai.LLMPipeline(str(folder), self.device,  # type: ignore[attr-defined]
                                             **config)
        except Exception as exc:
            text = str(exc).strip().splitlines()
            reason = next((ln for ln in text if "rror" in ln or "not" in ln),
                          text[0] if text else type(exc).__name__)[:300]
            if "device" in reason.lower() or self.device.upper() not in ("CPU",):
                raise InvalidInput(f"OpenVINO cannot use device '{self.device}': {reason}",
                                   hint="llm config set openvino_device CPU") from None
            raise BadModelFile(f"openvino-genai cannot load this model: {reason}") from None
        self.tok = self.pipe.get_tokenizer()
        hf = {}
        if (folder / "config.json").is_file():
            hf = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        trained = int(hf.get("max_position_embeddings") or 4096)
        wanted = int(options.get("num_ctx") or 0)
        self.n_ctx = min(wanted, trained) if wanted > 0 else trained
        self._read_template(folder)
        if self.template is None:
            try:
                self.template = self.tok.get_original_chat_template() or None
            except Exception:
                self.template = None
        self.bos_text = self._safe(self.tok.get_bos_token)
        self.eos_text = self._safe(self.tok.get_eos_token)
        return {"n_ctx": self.n_ctx, "n_ctx_train": trained,
                "gpu_offload": not self.device.upper().startswith("CPU"), "gpu_layers": 0,
                "backend": "openvino-genai", "device": self.device,
                "chat_template": self.template is not None, "embedding": False}

    @staticmethod
    def _safe(fn: Any) -> str:
        try:
            return str(fn() or "")
        except Exception:
            return ""

    def encode(self, text: str) -> list[int]:
        enc = self.tok.encode(text, add_special_tokens=True)
        return [int(t) for t in enc.input_ids.data[0]]

    def _check_format(self, fmt: Any) -> None:
        if fmt and fmt != "json" and not isinstance(fmt, dict):
            raise InvalidInput("format must be \"json\" or a JSON schema object")

    def _stream(self, tokens: list[int], opts: dict[str, Any], fmt: Any, max_new: int,
                cancelled: threading.Event) -> Iterator[str]:
        """openvino-genai generates on its own thread of control and calls a streamer per
        token; the streamer hands pieces over a queue and stops the run when cancelled."""
        import numpy as np
        import openvino as ov
        import openvino_genai as ov_genai

        if max_new <= 0:
            raise ContextOverflow(f"the prompt fills the whole context ({self.n_ctx} tokens)")
        config = self.pipe.get_generation_config()
        config.max_new_tokens = max_new
        temperature = float(opts.get("temperature", 0.8))
        config.do_sample = temperature > 0
        if temperature > 0:
            config.temperature = temperature
            config.top_p = float(opts.get("top_p", 0.9))
            config.top_k = int(opts.get("top_k", 40)) or 0
            config.min_p = float(opts.get("min_p", 0.0))
        config.repetition_penalty = float(opts.get("repeat_penalty", 1.1))
        seed = opts.get("seed")
        if seed is not None and int(seed) >= 0:
            config.rng_seed = int(seed)
        if fmt:
            schema = fmt if isinstance(fmt, dict) else {"type": "object"}
            config.structured_output_config = ov_genai.StructuredOutputConfig(
                json_schema=json.dumps(schema))
        ids = ov.Tensor(np.asarray([tokens], dtype=np.int64))
        inputs = ov_genai.TokenizedInputs(ids, ov.Tensor(np.ones((1, len(tokens)),
                                                                 dtype=np.int64)))
        pieces: queue.Queue[str | BaseException | None] = queue.Queue()
        stop_now = threading.Event()

        def streamer(text: str) -> Any:
            pieces.put(text)
            if cancelled.is_set() or stop_now.is_set():
                return ov_genai.StreamingStatus.STOP
            return ov_genai.StreamingStatus.RUNNING

        def work() -> None:
            try:
                result = self.pipe.generate(inputs, config, streamer)
                self.generated = int(result.perf_metrics.get_num_generated_tokens())
            except BaseException as exc:  # surfaced on the caller's thread
                pieces.put(exc)
            finally:
                pieces.put(None)

        thread = threading.Thread(target=work, name="openvino-generate", daemon=True)
        thread.start()
        try:
            while (item := pieces.get()) is not None:
                if isinstance(item, BaseException):
                    text = str(item).strip().splitlines()
                    raise InvalidInput(f"{self.name}: {text[-1][:300] if text else item}")
                yield item
        finally:
            stop_now.set()
            thread.join()

    def _logits(self, tokens: list[int]) -> Any:
        """Logits of every position, from the IR itself (the pipeline keeps them inside)."""
        import numpy as np
        import openvino as ov

        if self._scorer is None:
            assert self.folder is not None
            core = ov.Core()
            self._scorer = core.compile_model(str(self.folder / "openvino_model.xml"),
                                              self.device).create_infer_request()
        request = self._scorer
        request.reset_state()
        n = len(tokens)
        feed: dict[str, Any] = {"input_ids": np.asarray([tokens], dtype=np.int64),
                                "attention_mask": np.ones((1, n), dtype=np.int64)}
        names = {name for port in request.model_inputs for name in port.get_names()}
        if "position_ids" in names:
            feed["position_ids"] = np.arange(n, dtype=np.int64)[None, :]
        if "beam_idx" in names:
            feed["beam_idx"] = np.zeros((1,), dtype=np.int32)
        request.infer(feed)
        return np.asarray(request.get_tensor("logits").data)[0]

    def close(self) -> None:
        self.pipe = None
        self.tok = None
        self._scorer = None
