"""Audio files: probe and decode anything the installed decoders read (PyAV's FFmpeg),
streamed in blocks so that a two-hour file never sits in memory whole; WAV writing,
including a WAV of unknown length for streams.

Whisper wants 16 kHz mono float32; every decoder output is resampled to that here, so a
file at another rate or with several channels is converted rather than refused.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from llmtui.errors import InvalidInput, require

#: The rate speech models take (Whisper, the microphone path, the VAD).
SAMPLE_RATE = 16000
#: The data size a streaming WAV header carries when the length is not known yet.
UNKNOWN_SIZE = 0xFFFFFFFF


@dataclass(frozen=True)
class AudioInfo:
    """What a probe learned about an audio file before any model is loaded."""

    duration: float | None
    sample_rate: int
    channels: int
    codec: str
    container: str
    #: A WAV whose data ends before the size its header declares (a cut-off download).
    truncated: bool = False
    declared_duration: float | None = None


def _av() -> Any:
    return require("av", "voice", "reading audio files")


def _not_audio(name: str, detail: str = "") -> InvalidInput:
    extra = f" ({detail})" if detail else ""
    return InvalidInput(f"{name} is not an audio file that the installed decoders read{extra}",
                        hint="WAV, FLAC, MP3, OGG/Opus, M4A and most other formats work")


def _open(av: Any, source: str | BinaryIO, name: str) -> Any:
    try:
        return av.open(source, mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise _not_audio(name, _first_line(exc)) from None
    except (OSError, ValueError) as exc:
        raise _not_audio(name, _first_line(exc)) from None


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).splitlines()[0][:160]


def probe(path: str | Path, name: str | None = None) -> AudioInfo:
    """Check that a file holds decodable audio and read its duration and format.

    Raises InvalidInput for a file that is not audio, has no audio stream, or holds no
    samples at all (an empty or header-only WAV).
    """
    av = _av()
    label = name or Path(path).name
    container = _open(av, str(path), label)
    with container:
        streams = [s for s in container.streams if s.type == "audio"]
        if not streams:
            raise InvalidInput(f"{label} has no audio stream")
        stream = streams[0]
        has_samples = False
        try:
            for frame in container.decode(stream):
                if frame.samples:
                    has_samples = True
                    break
        except av.error.FFmpegError as exc:
            raise _not_audio(label, _first_line(exc)) from None
        if not has_samples:
            raise InvalidInput(f"{label} is empty: it holds no audio samples")
        duration = None
        if container.duration is not None:
            duration = container.duration / 1_000_000
        elif stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        rate = int(stream.rate or stream.codec_context.sample_rate or 0)
        channels = int(getattr(stream.codec_context, "channels", 0) or
                       len(getattr(stream.layout, "channels", ()) or ()) or 1)
        codec = str(stream.codec_context.name)
        fmt = str(container.format.name)
    declared = wav_declared_duration(path)
    truncated = declared is not None and duration is not None and duration < declared * 0.999
    return AudioInfo(duration=duration, sample_rate=rate, channels=channels, codec=codec,
                     container=fmt, truncated=truncated, declared_duration=declared)


def wav_declared_duration(path: str | Path) -> float | None:
    """The duration a RIFF/WAVE header declares (None when it is not a WAV or does not
    say: streaming writers put 0 or 0xFFFFFFFF there)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            byte_rate = 0
            while True:
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = fh.read(min(size, 64))
                    if len(fmt) >= 12:
                        byte_rate = struct.unpack("<I", fmt[8:12])[0]
                    fh.seek(size - len(fmt) + (size & 1), os.SEEK_CUR)
                elif cid == b"data":
                    if size in (0, UNKNOWN_SIZE, 0x7FFFFFFF) or not byte_rate:
                        return None
                    return size / byte_rate
                else:
                    fh.seek(size + (size & 1), os.SEEK_CUR)
    except OSError:
        return None


def iter_pcm(source: str | Path | BinaryIO, *, rate: int = SAMPLE_RATE,
             block_seconds: float = 30.0, name: str | None = None) -> Iterator[Any]:
    """Decode, downmix and resample to mono float32 at ``rate``, yielding blocks of about
    ``block_seconds`` as they are decoded (memory stays bounded by one block)."""
    import numpy as np

    av = _av()
    label = name or (Path(source).name if isinstance(source, str | Path) else "the audio")
    container = _open(av, str(source) if isinstance(source, Path) else source, label)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    want = max(1, int(block_seconds * rate))
    parts: list[Any] = []
    held = 0
    try:
        if not any(s.type == "audio" for s in container.streams):
            raise InvalidInput(f"{label} has no audio stream")
        frames = container.decode(audio=0)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.error.InvalidDataError:
                continue  # a damaged frame in the middle: skip it, as players do
            except av.error.FFmpegError as exc:
                raise _not_audio(label, _first_line(exc)) from None
            for out in resampler.resample(frame):
                arr = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                parts.append(arr)
                held += arr.size
            while held >= want:
                joined = np.concatenate(parts)
                yield joined[:want]
                rest = joined[want:]
                parts, held = ([rest] if rest.size else []), rest.size
        for out in resampler.resample(None):
            arr = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
            parts.append(arr)
            held += arr.size
        if held:
            yield np.concatenate(parts)
    finally:
        container.close()


def read_pcm(source: str | Path | BinaryIO, *, rate: int = SAMPLE_RATE) -> Any:
    """A whole (short) file as one mono float32 array at ``rate``."""
    import numpy as np

    blocks = list(iter_pcm(source, rate=rate, block_seconds=600))
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


# -- PCM and WAV ----------------------------------------------------------------------------


def to_int16(samples: Any) -> bytes:
    """float32 in [-1, 1] to little-endian 16-bit PCM bytes."""
    import numpy as np

    clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    return (clipped * 32767.0).astype("<i2").tobytes()


def from_int16(data: bytes) -> Any:
    """Little-endian 16-bit PCM bytes to float32 in [-1, 1]."""
    import numpy as np

    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def wav_header(sample_rate: int, channels: int = 1, data_size: int | None = None) -> bytes:
    """A 44-byte PCM 16-bit WAV header; ``data_size=None`` marks a stream of unknown length
    (players read to the end, as with OpenAI's streamed WAV)."""
    size = UNKNOWN_SIZE if data_size is None else data_size
    riff = UNKNOWN_SIZE if data_size is None else 36 + data_size
    block = channels * 2
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVE" + b"fmt " +
            struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block, block,
                        16) + b"data" + struct.pack("<I", size))


def wav_bytes(pcm16: bytes, sample_rate: int, channels: int = 1) -> bytes:
    return wav_header(sample_rate, channels, len(pcm16)) + pcm16


class WavWriter:
    """Writes 16-bit PCM as it arrives; the sizes in the header are fixed on close when the
    output can seek (a file), and left 'unknown' when it cannot (a pipe)."""

    def __init__(self, out: BinaryIO, sample_rate: int, channels: int = 1) -> None:
        self.out = out
        self.sample_rate = sample_rate
        self.channels = channels
        self.frames_bytes = 0
        self.out.write(wav_header(sample_rate, channels, None))

    @property
    def seconds(self) -> float:
        return self.frames_bytes / (2 * self.channels * self.sample_rate)

    def write(self, pcm16: bytes) -> None:
        self.out.write(pcm16)
        self.frames_bytes += len(pcm16)

    def close(self) -> None:
        try:
            seekable = self.out.seekable()
        except (OSError, ValueError):
            seekable = False
        if seekable:
            self.out.seek(0)
            self.out.write(wav_header(self.sample_rate, self.channels, self.frames_bytes))
            self.out.seek(0, io.SEEK_END)
        self.out.flush()


def resample(samples: Any, src_rate: int, dst_rate: int) -> Any:
    """Linear-interpolation resampling of a mono float32 block (for device rates)."""
    import numpy as np

    if src_rate == dst_rate or samples.size == 0:
        return samples
    n = max(1, round(samples.size * dst_rate / src_rate))
    x_old = np.linspace(0.0, 1.0, samples.size, endpoint=False)
    x_new = np.linspace(0.0, 1.0, n, endpoint=False)
    return np.interp(x_new, x_old, samples).astype(np.float32)


def rms(samples: Any) -> float:
    """Root-mean-square level of a float32 block (0 for an empty block)."""
    import numpy as np

    if samples.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
