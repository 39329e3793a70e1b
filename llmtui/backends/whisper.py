"""Speech to text with faster-whisper (CTranslate2 Whisper models), in a worker process.

One operation, ``transcribe``: the daemon hands over the path of an audio file (the user's
own file on the local socket, or an upload it spooled to disk); the file is decoded in
blocks and transcribed in windows of a few minutes cut at quiet points, so a two-hour
recording streams its segments as they are decoded with bounded memory. Each segment is
one ``chunk(segment=...)``; ``done`` carries the language and timings.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from llmtui.backends.base import NoTextOps
from llmtui.errors import InvalidInput, require

#: Audio handed to faster-whisper at once (its features for 2 minutes take ~50 MB; 5
#: minutes would take 150 MB); windows end at the quietest point of their
#: last seconds so that no word is cut in two.
WINDOW_SECONDS = 120.0
CUT_SEARCH_SECONDS = 10.0
#: Text carried from one window into the next as Whisper's prompt (its context).
PROMPT_CHARS = 200


def cpu_threads(requested: int) -> int:
    """Threads for CTranslate2: as asked, else the CPUs this process may use (max 8)."""
    if requested > 0:
        return requested
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count() or 1
    return max(1, min(8, available))


def quiet_cut(audio: Any, start: int, end: int, rate: int) -> int:
    """The sample index of the quietest 20 ms frame in [start, end)."""
    import numpy as np

    frame = max(1, rate // 50)
    span = audio[start:end]
    n = span.size // frame
    if n < 2:
        return end
    energy = np.square(span[: n * frame].reshape(n, frame), dtype=np.float64).mean(axis=1)
    return start + int(np.argmin(energy)) * frame + frame // 2


def windows(path: str, rate: int, window: float = WINDOW_SECONDS,
            search: float = CUT_SEARCH_SECONDS) -> Iterator[tuple[float, Any]]:
    """(offset seconds, mono float32 samples) windows of a file, decoded as needed."""
    import numpy as np

    from llmtui.voice.audio import iter_pcm

    size = int(window * rate)
    look = int(search * rate)
    buf = np.zeros(0, dtype=np.float32)
    offset = 0
    for block in iter_pcm(path, rate=rate, block_seconds=min(60.0, window)):
        buf = np.concatenate([buf, block]) if buf.size else block
        while buf.size >= size + look:
            cut = quiet_cut(buf, size - look, size, rate)
            yield offset / rate, buf[:cut]
            offset += cut
            buf = buf[cut:]
    if buf.size:
        yield offset / rate, buf


def segment_dict(seg: Any, index: int, offset: float, words: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": index, "seek": int(seg.seek), "start": round(seg.start + offset, 3),
        "end": round(seg.end + offset, 3), "text": seg.text, "tokens": list(seg.tokens),
        "temperature": seg.temperature, "avg_logprob": seg.avg_logprob,
        "compression_ratio": seg.compression_ratio, "no_speech_prob": seg.no_speech_prob,
    }
    if words and seg.words is not None:
        out["words"] = [{"word": w.word, "start": round(w.start + offset, 3),
                         "end": round(w.end + offset, 3), "probability": w.probability}
                        for w in seg.words]
    return out


class WhisperBackend(NoTextOps):
    """A faster-whisper model; one request at a time (CTranslate2 uses every thread)."""

    formats = ("ctranslate2", "whisper")
    not_text = ("this is a speech-to-text model: it transcribes audio",
                "use `llm transcribe FILE` or /v1/audio/transcriptions")

    def __init__(self) -> None:
        self.model: Any = None
        self.name = "this model"
        self.multilingual = False
        self.rate = 16000

    def load(self, path: str, options: dict[str, Any]) -> dict[str, Any]:
        fw: Any = require("faster_whisper", "voice", "speech to text")
        from llmtui.models.store import folder_of

        folder = folder_of(path)
        if not (folder / "model.bin").is_file():
            from llmtui.errors import BadModelFile

            raise BadModelFile("not a CTranslate2 Whisper model: model.bin is missing")
        device, compute = "cpu", "int8"
        if int(options.get("num_gpu", -1)) != 0:
            import ctranslate2

            if ctranslate2.get_cuda_device_count() > 0:
                device, compute = "cuda", "float16"
        threads = cpu_threads(int(options.get("num_thread") or 0))
        self.model = fw.WhisperModel(str(folder), device=device, compute_type=compute,
                                     cpu_threads=threads, num_workers=1)
        self.multilingual = bool(self.model.model.is_multilingual)
        self.rate = int(self.model.feature_extractor.sampling_rate)
        return {"slots": 1, "kind": "speech-to-text", "device": device,
                "compute_type": compute, "threads": threads,
                "multilingual": self.multilingual, "sample_rate": self.rate,
                "gpu_offload": device == "cuda"}

    # -- transcription -------------------------------------------------------------------------

    def check_language(self, language: Any, task: str) -> str | None:
        if task == "translate" and not self.multilingual:
            raise InvalidInput("this Whisper model is English-only: it cannot translate",
                               hint="use a multilingual model, e.g. llm pull whisper:small")
        if language in (None, "", "auto"):
            return None
        if not isinstance(language, str):
            raise InvalidInput("'language' must be a language code such as en or de")
        code = language.strip().lower()
        supported = list(self.model.supported_languages)
        if code not in supported:
            if not self.multilingual:
                raise InvalidInput(f"this Whisper model is English-only; language '{code}' "
                                   "needs a multilingual model", hint="e.g. whisper:small")
            raise InvalidInput(f"unknown language '{code}'",
                               hint="use a code such as en, de, fr, es, ja")
        return code

    def op_transcribe(self, msg: dict[str, Any], reply: Any,
                      cancelled: threading.Event) -> None:
        opts = dict(msg.get("options") or {})
        path = msg.get("path")
        if not isinstance(path, str) or not path:
            raise InvalidInput("transcribe needs the path of an audio file")
        task = "translate" if opts.get("translate") else "transcribe"
        language = self.check_language(opts.get("language"), task)
        words = bool(opts.get("word_timestamps"))
        beam = int(opts.get("beam_size") or 5)
        temperature = opts.get("temperature")
        kwargs: dict[str, Any] = {
            "task": task, "beam_size": beam, "word_timestamps": words,
            "vad_filter": bool(opts.get("vad", False)),
            "condition_on_previous_text": bool(opts.get("condition_on_previous_text", True)),
            # A short recording needs no timestamps: fewer tokens to decode.
            "without_timestamps": opts.get("timestamps") is False,
        }
        if temperature is not None:
            kwargs["temperature"] = float(temperature)
        prompt = opts.get("prompt") or None
        started = time.perf_counter()
        index = 0
        audio_seconds = 0.0
        info_sent = False
        probability = None
        for offset, audio in windows(path, self.rate):
            if cancelled.is_set():
                break
            audio_seconds = offset + audio.size / self.rate
            segments, info = self.model.transcribe(audio, language=language,
                                                   initial_prompt=prompt, **kwargs)
            if language is None:  # the first window decides; later ones keep it
                language, probability = info.language, info.language_probability
            if not info_sent:
                reply.chunk(info={"language": language, "language_probability": probability,
                                  "task": task})
                info_sent = True
            tail: list[str] = []
            for seg in segments:
                reply.chunk(segment=segment_dict(seg, index, offset, words))
                index += 1
                tail.append(seg.text)
                if cancelled.is_set():
                    break
            text = "".join(tail).strip()
            if text:
                prompt = text[-PROMPT_CHARS:]
        reply.done(language=language, language_probability=probability, task=task,
                   segments=index, audio_seconds=round(audio_seconds, 3),
                   seconds=time.perf_counter() - started,
                   done_reason="cancel" if cancelled.is_set() else "stop")

    def close(self) -> None:
        self.model = None
