"""Text to speech with Piper voices (VITS exported to ONNX) on ONNX Runtime, in a worker.

The ``piper-tts`` package runs the voice: it phonemizes with its bundled espeak-ng (no
system espeak-ng and no network needed) and feeds the ONNX model through onnxruntime.
One operation, ``speak``: the text is split into sentences and each sentence's audio
leaves as soon as it is synthesized (``chunk(audio=<base64 16-bit PCM>)``), so playback
can start before the rest is done.
"""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path
from typing import Any

from llmtui.backends.base import NoTextOps
from llmtui.errors import BadModelFile, InvalidInput, require

#: Speaking rate limits (1.0 is the voice's own pace).
MIN_RATE, MAX_RATE = 0.25, 4.0
#: Audio frames stay small: a long sentence leaves in pieces of about this many seconds.
PIECE_SECONDS = 4.0


def voice_files(folder: Path, primary: Path) -> tuple[Path, Path]:
    """The .onnx model and its .onnx.json config in a voice's folder."""
    onnx = primary if primary.suffix == ".onnx" else None
    if onnx is None:
        found = sorted(folder.glob("*.onnx"))
        if not found:
            raise BadModelFile("not a Piper voice: no .onnx file")
        onnx = found[0]
    config = onnx.with_name(onnx.name + ".json")
    if not config.is_file():
        candidates = sorted(folder.glob("*.json"))
        if not candidates:
            raise BadModelFile(f"the Piper voice {onnx.name} has no .onnx.json config")
        config = candidates[0]
    return onnx, config


class PiperBackend(NoTextOps):
    """One Piper voice; one request at a time."""

    formats = ("piper",)
    not_text = ("this is a text-to-speech voice: it speaks text",
                "use `llm speak TEXT` or /v1/audio/speech")

    def __init__(self) -> None:
        self.voice: Any = None
        self.sample_rate = 22050

    def load(self, path: str, options: dict[str, Any]) -> dict[str, Any]:
        piper: Any = require("piper", "voice", "text to speech")
        from llmtui.models.store import folder_of

        primary = Path(path)
        onnx, config = voice_files(folder_of(primary), primary)
        use_cuda = False
        if int(options.get("num_gpu", -1)) != 0:
            import onnxruntime

            use_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        try:
            self.voice = piper.PiperVoice.load(str(onnx), config_path=str(config),
                                               use_cuda=use_cuda)
        except (ValueError, KeyError) as exc:
            raise BadModelFile(f"the Piper voice config is invalid: {exc}") from None
        cfg = self.voice.config
        self.sample_rate = int(cfg.sample_rate)
        return {"slots": 1, "kind": "text-to-speech", "sample_rate": self.sample_rate,
                "speakers": int(cfg.num_speakers), "language": cfg.espeak_voice,
                "gpu_offload": use_cuda}

    def op_speak(self, msg: dict[str, Any], reply: Any, cancelled: threading.Event) -> None:
        from piper import SynthesisConfig

        text = msg.get("text")
        if not isinstance(text, str):
            raise InvalidInput("speak needs 'text'")
        rate = float(msg.get("rate") or 1.0)
        if not MIN_RATE <= rate <= MAX_RATE:
            raise InvalidInput(f"the speaking rate must be from {MIN_RATE} to {MAX_RATE}")
        speaker = msg.get("speaker")
        cfg = self.voice.config
        if speaker is not None and not 0 <= int(speaker) < max(1, cfg.num_speakers):
            raise InvalidInput(f"this voice has {cfg.num_speakers} speaker(s)")
        syn = SynthesisConfig(length_scale=float(cfg.length_scale) / rate,
                              speaker_id=None if speaker is None else int(speaker))
        started = time.perf_counter()
        first: float | None = None
        samples = 0
        sentences = 0
        piece = int(PIECE_SECONDS * self.sample_rate) * 2
        for chunk in self.voice.synthesize(text, syn_config=syn):
            if cancelled.is_set():
                break
            pcm = chunk.audio_int16_bytes
            if first is None:
                first = time.perf_counter() - started
            for i in range(0, len(pcm), piece):
                part = pcm[i:i + piece]
                reply.chunk(audio=base64.b64encode(part).decode("ascii"),
                            sample_rate=self.sample_rate, sentence=sentences)
            samples += len(pcm) // 2
            sentences += 1
        reply.done(sample_rate=self.sample_rate, samples=samples, sentences=sentences,
                   audio_seconds=samples / self.sample_rate,
                   seconds=time.perf_counter() - started, first_audio_seconds=first,
                   done_reason="cancel" if cancelled.is_set() else "stop")

    def close(self) -> None:
        self.voice = None
