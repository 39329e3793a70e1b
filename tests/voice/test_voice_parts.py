"""The voice package's parts on real data, without a daemon: sentence cutting, transcript
formats, audio decoding in blocks, Whisper's windows, WAV headers, speech encoders, the
VAD on recorded speech; and that the voice code stays out of the light paths."""

from __future__ import annotations

import io
import itertools
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from llmtui.errors import InvalidInput
from llmtui.voice import formats
from llmtui.voice.audio import (
    SAMPLE_RATE,
    WavWriter,
    iter_pcm,
    probe,
    read_pcm,
    wav_bytes,
    wav_declared_duration,
)
from llmtui.voice.sentences import SentenceSplitter, speakable
from llmtui.voice.vad import EnergyVAD
from tests.conftest import ROOT
from tests.voice.conftest import say


def test_sentences_come_out_as_they_complete() -> None:
    splitter = SentenceSplitter()
    text = ("Dr. Smith arrived at 3.15 today. It was late! Was it? Yes… "
            "The list:\n\n- first item\n- second item\n")
    out: list[str] = []
    pieces = [text[i:i + 3] for i in range(0, len(text), 3)]
    for piece in pieces:
        out += splitter.feed(piece)
    out += splitter.flush()
    assert out == ["Dr. Smith arrived at 3.15 today.", "It was late!", "Was it?", "Yes…",
                   "The list:", "- first item", "- second item"]
    # Eager: while the first sentence is still being written, its first clause goes out.
    eager = SentenceSplitter(eager_first=True)
    text = "The capital of France, as you know, is Paris. Yes, it is. "
    got = [s for word in text.split() for s in eager.feed(word + " ")]
    assert got == ["The capital of France,", "as you know, is Paris.", "Yes, it is."]
    long = SentenceSplitter(max_chars=50).feed("word " * 40)
    assert long and all(len(s) <= 50 for s in long)


def test_speakable_drops_markdown() -> None:
    text = "**Paris** is the [capital](https://x.org). See https://a.b/c.\n```py\nx=1\n```"
    assert speakable(text) == "Paris is the capital. See a link (code)"


def test_transcript_formats() -> None:
    segs = [{"start": 0.0, "end": 1.5, "text": " Hello there."},
            {"start": 3661.25, "end": 3662.0, "text": " Bye."}]
    assert formats.timestamp(3661.25) == "01:01:01,250"
    srt = formats.render_transcript("srt", segs)
    assert srt == ("1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n"
                   "2\n01:01:01,250 --> 01:01:02,000\nBye.\n\n")
    assert formats.render_transcript("vtt", segs).startswith(
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello there.\n\n")
    assert formats.render_transcript("text", segs) == "Hello there. Bye.\n"


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return say("Hello from the test. This is speech made by espeak.",
               tmp_path_factory.mktemp("speech") / "speech.wav", rate=22050)


def test_decoding_in_blocks_resamples_to_16k(speech: Path) -> None:
    info = probe(speech)
    assert info.sample_rate == 22050 and info.channels == 1 and not info.truncated
    blocks = list(iter_pcm(speech, block_seconds=0.5))
    assert all(b.dtype == np.float32 for b in blocks)
    assert all(b.size == SAMPLE_RATE // 2 for b in blocks[:-1])
    total = sum(b.size for b in blocks) / SAMPLE_RATE
    assert abs(total - info.duration) < 0.05  # type: ignore[operator]
    assert read_pcm(speech).size == sum(b.size for b in blocks)


def test_probe_refuses_what_is_not_audio(tmp_path: Path, speech: Path) -> None:
    (tmp_path / "t.wav").write_text("text, not audio " * 20)
    with pytest.raises(InvalidInput, match="not an audio file"):
        probe(tmp_path / "t.wav")
    silent = tmp_path / "h.wav"
    silent.write_bytes(wav_bytes(b"", 16000))
    with pytest.raises(InvalidInput, match="is empty"):
        probe(silent)
    data = speech.read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    cut = probe(tmp_path / "cut.wav")
    assert cut.truncated and cut.declared_duration and cut.duration
    assert cut.duration < cut.declared_duration * 0.6


def test_whisper_windows_cover_the_file_and_cut_in_quiet(tmp_path: Path) -> None:
    from llmtui.backends.whisper import windows

    # 70 s of tone with a 0.4 s silent gap every 3 s: each 4 s search holds a gap, and
    # every window must end inside one (no word is cut in two)
    rate = 16000
    t = np.arange(70 * rate) / rate
    audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    for start in np.arange(2.5, 70, 3.0):
        audio[int(start * rate):int((start + 0.4) * rate)] = 0
    path = tmp_path / "tone.wav"
    path.write_bytes(wav_bytes((audio * 32767).astype("<i2").tobytes(), rate))
    parts = list(windows(str(path), rate, window=20.0, search=4.0))
    assert len(parts) >= 3
    assert sum(p.size for _, p in parts) == audio.size
    assert parts[0][0] == 0.0
    for (off, part), (nxt, _) in itertools.pairwise(parts):
        assert abs(off + part.size / rate - nxt) < 1e-6
        assert 16.0 <= part.size / rate <= 20.0
        assert audio[round(nxt * rate)] == 0.0  # inside a gap


def test_wav_writer_fixes_the_header_on_close(tmp_path: Path) -> None:
    out = tmp_path / "w.wav"
    with out.open("wb") as fh:
        writer = WavWriter(fh, 22050)
        writer.write(b"\x01\x00" * 22050)
        writer.close()
    with wave.open(str(out)) as w:
        assert w.getframerate() == 22050 and w.getnframes() == 22050
    assert wav_declared_duration(out) == pytest.approx(1.0)
    pipe = io.BytesIO()
    pipe.seekable = lambda: False  # type: ignore[method-assign]
    w2 = WavWriter(pipe, 16000)
    w2.write(b"\x00\x00" * 10)
    w2.close()
    assert pipe.getvalue()[40:44] == b"\xff\xff\xff\xff"  # streamed: length unknown
    assert wav_declared_duration(out) is not None


def test_speech_encoders(speech: Path) -> None:
    import av

    with wave.open(str(speech)) as w:
        pcm = w.readframes(w.getnframes())
        seconds = w.getnframes() / w.getframerate()
    for fmt in formats.SPEECH_FORMATS:
        enc = formats.SpeechEncoder(fmt, 22050)
        half = len(pcm) // 2 // 2 * 2
        data = enc.feed(pcm[:half]) + enc.feed(pcm[half:]) + enc.finish()
        if fmt == "pcm":
            assert len(data) / 2 / formats.PCM_RATE == pytest.approx(seconds, abs=0.05)
            continue
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.audio[0]
            got = sum(f.samples for f in container.decode(audio=0)) / stream.rate
        assert got == pytest.approx(seconds, abs=0.15), fmt
    with pytest.raises(InvalidInput):
        formats.SpeechEncoder("wma", 22050)


def test_vad_finds_the_speech_in_a_recording(tmp_path: Path) -> None:
    clip = say("Testing the voice activity detector.", tmp_path / "v.wav")
    speech_audio = read_pcm(clip)
    audio = np.concatenate([np.zeros(SAMPLE_RATE, np.float32), speech_audio,
                            np.zeros(2 * SAMPLE_RATE, np.float32)])
    vad = EnergyVAD()
    events = []
    for i in range(0, audio.size - 511, 512):
        event = vad.feed(audio[i:i + 512])
        if event:
            events.append((event, i / SAMPLE_RATE))
    assert [e for e, _ in events] == ["start", "end"]
    start, end = events[0][1], events[1][1]
    assert 0.9 < start < 1.4
    speech_end = 1.0 + speech_audio.size / SAMPLE_RATE
    assert speech_end < end < speech_end + 1.2


def test_voice_stays_out_of_light_paths() -> None:
    code = (
        "import sys\n"
        "from llmtui.cli.app import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "import llmtui.voice.loop, llmtui.voice.console, llmtui.api.audio, llmtui.cli.voice_cmd\n"
        "heavy = [m for m in ('av', 'numpy', 'sounddevice', 'piper', 'faster_whisper',"
        " 'onnxruntime', 'ctranslate2', 'textual') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
