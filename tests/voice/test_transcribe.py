"""llm transcribe with the real Whisper tiny.en in a daemon worker, on speech made by
espeak-ng: accuracy, formats, streaming, and every kind of bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import wave
from pathlib import Path

import pytest

from llmtui.errors import ExitCode
from tests.conftest import LLM, ROOT, one_line_error
from tests.voice.conftest import WHISPER, say, wait_for, wer

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "It will rain tomorrow morning in the north of the country.",
    "My favorite color is green and I like to read books.",
    "The meeting starts early on Monday morning.",
]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("clips")
    return [say(text, root / f"s{i}.wav") for i, text in enumerate(SENTENCES)]


def test_word_error_rate_under_25_percent(vllm, clips) -> None:
    res = vllm("transcribe", "-f", "json", *map(str, clips), timeout=300)
    assert res.returncode == 0, res.stderr
    results = [json.loads(line) for line in res.stdout.splitlines()]
    assert [Path(r["file"]).name for r in results] == [c.name for c in clips]
    edits = total = 0
    for sentence, result in zip(SENTENCES, results, strict=True):
        e, n = wer(sentence, result["text"])
        edits, total = edits + e, total + n
        assert result["language"] == "en" and result["segments"]
    assert edits / total < 0.25, (edits, total, [r["text"] for r in results])


def test_text_srt_vtt_and_word_timestamps(vllm, clips) -> None:
    clip = str(clips[0])
    text = vllm("transcribe", clip)
    assert text.returncode == 0, text.stderr
    assert "fox" in text.stdout.lower() and text.stderr == ""
    srt = vllm("transcribe", clip, "--format", "srt").stdout
    assert srt.startswith("1\n00:00:00,000 --> 00:00:0") and "fox" in srt.lower()
    vtt = vllm("transcribe", clip, "-f", "vtt").stdout
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> ")
    data = json.loads(vllm("transcribe", clip, "-f", "json", "--word-timestamps").stdout)
    words = [w for s in data["segments"] for w in s["words"]]
    assert len(words) >= 6
    assert all(0 <= w["start"] <= w["end"] <= data["duration"] + 0.5 for w in words)
    assert [w["start"] for w in words] == sorted(w["start"] for w in words)


def test_stdin_flac_and_other_rates_are_converted(vllm, clips, tmp_path: Path) -> None:
    # 8 kHz (a rate Whisper does not take: resampled), FLAC, stereo MP3 from a pipe.
    low = say(SENTENCES[2], tmp_path / "low.wav", rate=8000)
    flac = tmp_path / "c.flac"
    subprocess.run(["sox", "-D", str(clips[3]), str(flac)], check=True)
    mp3 = tmp_path / "c.mp3"
    import av

    with av.open(str(clips[0])) as src, av.open(str(mp3), "w") as dst:
        stream = dst.add_stream("libmp3lame", rate=44100)
        stream.layout = "stereo"
        resampler = av.AudioResampler(format=stream.codec_context.format.name,
                                      layout="stereo", rate=44100)
        for frame in src.decode(audio=0):
            for f in resampler.resample(frame):
                dst.mux(stream.encode(f))
        dst.mux(stream.encode(None))
    res = vllm("transcribe", str(low), str(flac))
    assert res.returncode == 0, res.stderr
    assert "rain" in res.stdout.lower() and "green" in res.stdout.lower()
    assert f"==> {low} <==" in res.stdout
    piped = subprocess.run([*LLM, "transcribe", "-"], stdin=mp3.open("rb"), capture_output=True,
                           env={**os.environ, **vllm.env}, timeout=120, cwd=ROOT)
    assert piped.returncode == 0, piped.stderr
    assert "fox" in piped.stdout.decode().lower()


def test_vad_filter_and_verbose_timings(vllm, clips, tmp_path: Path) -> None:
    padded = tmp_path / "padded.wav"
    subprocess.run(["sox", "-D", str(clips[1]), str(padded), "pad", "4", "4"], check=True)
    res = vllm("transcribe", str(padded), "--vad", "-f", "json", "-v")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert "stella" in data["text"].lower() or "bring" in data["text"].lower()
    assert data["segments"][0]["start"] >= 3.0  # times stay those of the original file
    assert "real-time factor" in res.stderr


def _wav(path: Path, frames: bytes, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


def test_bad_inputs_are_one_line_errors(vllm, clips, tmp_path: Path) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio at all\n" * 40)
    empty_file = tmp_path / "empty.wav"
    empty_file.write_bytes(b"")
    header_only = _wav(tmp_path / "header.wav", b"")
    cut_header = tmp_path / "cut.wav"
    cut_header.write_bytes(clips[0].read_bytes()[:30])
    cases = {
        str(text): "is not an audio file",
        str(empty_file): "is empty",
        str(header_only): "is empty",
        str(cut_header): "is not an audio file",
        str(tmp_path / "missing.wav"): "no such file",
        str(tmp_path): "not a file",
    }
    for path, message in cases.items():
        res = vllm("transcribe", path)
        assert res.returncode == ExitCode.INVALID_INPUT, (path, res.stderr)
        assert message in one_line_error(res.stderr), (path, res.stderr)
    res = vllm("transcribe", str(clips[0]), "-f", "docx")
    assert res.returncode == ExitCode.INVALID_INPUT
    res = vllm("transcribe", str(clips[0]), "--translate")
    assert "English-only" in one_line_error(res.stderr)
    res = vllm("transcribe", str(clips[0]), "--language", "de")
    assert "English-only" in one_line_error(res.stderr)
    res = vllm("transcribe", str(clips[0]), "--language", "not a language")
    assert res.returncode == ExitCode.INVALID_INPUT
    res = vllm("transcribe", str(clips[0]), "-m", "whisper:base.en")
    assert res.returncode == ExitCode.MODEL_NOT_FOUND
    assert "llm pull whisper:base.en" in one_line_error(res.stderr)
    res = vllm("transcribe", str(clips[0]), "-m", "smollm2:135m")
    assert "not a speech-to-text model" in one_line_error(res.stderr)
    res = vllm("transcribe", "-", input="")
    assert res.returncode == ExitCode.INVALID_INPUT
    assert "is empty" in one_line_error(res.stderr)


def test_truncated_wav_is_transcribed_with_a_note(vllm, clips, tmp_path: Path) -> None:
    data = clips[1].read_bytes()
    cut = tmp_path / "cut-short.wav"
    cut.write_bytes(data[: len(data) * 2 // 3])  # the header still promises all of it
    res = vllm("transcribe", str(cut))
    assert res.returncode == 0, res.stderr
    assert "cut short" in res.stderr and "Traceback" not in res.stderr
    assert "stella" in res.stdout.lower() or "call" in res.stdout.lower()


def test_missing_speech_model(llm, clips) -> None:
    res = llm("transcribe", str(clips[0]))
    assert res.returncode == ExitCode.MODEL_NOT_FOUND
    assert "llm pull whisper:tiny.en" in one_line_error(res.stderr)


def _vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def test_two_hour_file_streams_with_bounded_memory(vllm, voice_home, clips,
                                                   tmp_path: Path) -> None:
    """Two hours at 8 kHz: the first segments arrive at once, the worker's peak memory
    stays far below what the decoded file alone would take, and stopping the client
    stops the work."""
    long = tmp_path / "two-hours.wav"
    with wave.open(str(say(SENTENCES[0], tmp_path / "s.wav", rate=8000))) as speech:
        frames = speech.readframes(speech.getnframes())
    with wave.open(str(long), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(frames)
        silence = b"\x00\x00" * 8000 * 60
        for _ in range(120):
            w.writeframes(silence)
    assert long.stat().st_size > 115_000_000
    vllm("stop", WHISPER)  # a fresh worker: its peak memory is this file's alone
    proc = subprocess.Popen([*LLM, "transcribe", str(long), "-f", "srt"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **vllm.env})
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().decode()
        assert first.strip() == "1", proc.stderr.read().decode() if proc.stderr else ""
        assert b"-->" in proc.stdout.readline()
        text = proc.stdout.readline().decode().lower()
        assert any(w in text for w in ("quick", "fox", "jump", "lazy")), text
        ps = json.loads(vllm("ps", "--json").stdout)
        worker = next(m for m in ps if m["name"] == WHISPER)
        assert _busy(voice_home)
        time.sleep(3)  # let it work through more of the file
        peak = _vm_hwm(worker["pid"])
        # The model and libraries take ~250 MB; decoding the whole file at once (as
        # faster-whisper's decode_audio does) peaks at 1.2 GB by itself.
        assert peak < 550_000_000, f"peak {peak / 1e6:.0f} MB"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)

    assert wait_for(lambda: not _busy(voice_home), timeout=60), \
        "the worker kept transcribing after the client left"


def _busy(home: Path) -> bool:
    from llmtui.config import Settings
    from llmtui.daemon.client import Client

    with Client(settings=Settings.load({"LLMTUI_HOME": str(home)}), autostart=False) as c:
        return bool(c.status()["busy"])
