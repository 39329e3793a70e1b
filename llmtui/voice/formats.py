"""Output formats of speech: transcripts (text, SRT, WebVTT, JSON) built segment by segment
so they can stream, and audio encoders (WAV, raw PCM, MP3, FLAC, Opus, AAC) fed sentence
by sentence. Shared by the CLI and the API."""

from __future__ import annotations

import base64
from typing import Any

from llmtui.errors import InvalidInput

TRANSCRIPT_FORMATS = ("text", "srt", "vtt", "json", "verbose_json")
#: OpenAI's speech formats; "pcm" is raw 16-bit mono at 24 kHz, as OpenAI sends it.
SPEECH_FORMATS = ("wav", "pcm", "mp3", "flac", "opus", "aac")
PCM_RATE = 24000
MEDIA_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm", "mp3": "audio/mpeg",
               "flac": "audio/flac", "opus": "audio/ogg", "aac": "audio/aac"}


def timestamp(seconds: float, sep: str = ",") -> str:
    """HH:MM:SS,mmm (SRT) or HH:MM:SS.mmm (WebVTT)."""
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def srt_cue(number: int, seg: dict[str, Any]) -> str:
    return (f"{number}\n{timestamp(seg['start'])} --> {timestamp(seg['end'])}\n"
            f"{seg['text'].strip()}\n\n")


VTT_HEADER = "WEBVTT\n\n"


def vtt_cue(seg: dict[str, Any]) -> str:
    return (f"{timestamp(seg['start'], '.')} --> {timestamp(seg['end'], '.')}\n"
            f"{seg['text'].strip()}\n\n")


def join_text(segments: list[dict[str, Any]]) -> str:
    return "".join(s["text"] for s in segments).strip()


def render_transcript(fmt: str, segments: list[dict[str, Any]]) -> str:
    """A whole transcript in a text format (text, srt, vtt)."""
    if fmt == "text":
        return join_text(segments) + "\n"
    if fmt == "srt":
        return "".join(srt_cue(i + 1, s) for i, s in enumerate(segments))
    if fmt == "vtt":
        return VTT_HEADER + "".join(vtt_cue(s) for s in segments)
    raise InvalidInput(f"unknown transcript format '{fmt}'")


# -- audio encoding -------------------------------------------------------------------------


class _Sink:
    """A write-only, non-seekable target for PyAV: the bytes are taken out as they come."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


#: format -> (container, codec, rate the codec needs or None for the voice's own)
_ENCODERS: dict[str, tuple[str, str, int | None]] = {
    "mp3": ("mp3", "libmp3lame", None), "flac": ("flac", "flac", None),
    "opus": ("ogg", "libopus", 48000), "aac": ("adts", "aac", None)}


class SpeechEncoder:
    """Turns 16-bit mono PCM pieces into a stream of one of SPEECH_FORMATS' bytes."""

    def __init__(self, fmt: str, sample_rate: int) -> None:
        if fmt not in SPEECH_FORMATS:
            raise InvalidInput(f"response_format must be one of {', '.join(SPEECH_FORMATS)}")
        self.fmt = fmt
        self.rate = sample_rate
        self.started = False
        self._resampler: Any = None
        self._container: Any = None
        self._stream: Any = None
        self._sink = _Sink()
        if fmt == "pcm" and sample_rate != PCM_RATE:
            self._resampler = self._make_resampler("s16", PCM_RATE)
        elif fmt in _ENCODERS:
            from llmtui.errors import require

            av: Any = require("av", "voice", "encoding audio")
            container, codec, rate = _ENCODERS[fmt]
            self._container = av.open(self._sink, mode="w", format=container)
            self._stream = self._container.add_stream(codec, rate=rate or sample_rate)
            self._stream.layout = "mono"
            fmt_name = self._stream.codec_context.format.name
            self._resampler = self._make_resampler(fmt_name, rate or sample_rate)

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.fmt]

    def _make_resampler(self, fmt: str, rate: int) -> Any:
        import av

        return av.AudioResampler(format=fmt, layout="mono", rate=rate)

    def _frame(self, pcm16: bytes) -> Any:
        import av
        import numpy as np

        arr = np.frombuffer(pcm16, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(arr, format="s16", layout="mono")
        frame.sample_rate = self.rate
        return frame

    def feed(self, pcm16: bytes) -> bytes:
        """Bytes of the output for this piece (may be empty while an encoder buffers)."""
        out = b""
        if not self.started:
            self.started = True
            if self.fmt == "wav":
                from llmtui.voice.audio import wav_header

                out = wav_header(self.rate)
        if not pcm16:
            return out
        if self.fmt == "wav" or (self.fmt == "pcm" and self._resampler is None):
            return out + pcm16
        frames = self._resampler.resample(self._frame(pcm16))
        if self.fmt == "pcm":
            return out + b"".join(bytes(f.planes[0])[: f.samples * 2] for f in frames)
        for frame in frames:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        return out + self._sink.drain()

    def finish(self) -> bytes:
        out = self.feed(b"") if not self.started else b""
        if self._container is not None:
            for frame in self._resampler.resample(None):
                for packet in self._stream.encode(frame):
                    self._container.mux(packet)
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            return out + self._sink.drain()
        if self.fmt == "pcm" and self._resampler is not None:
            frames = self._resampler.resample(None)
            return out + b"".join(bytes(f.planes[0])[: f.samples * 2] for f in frames)
        return out


def audio_of(event: dict[str, Any]) -> bytes:
    """The PCM bytes of a speak chunk (base64 on the wire)."""
    return base64.b64decode(event.get("audio") or "")
