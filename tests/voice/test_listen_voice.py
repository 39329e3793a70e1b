"""The microphone commands on a real PortAudio/ALSA capture device fed from a raw file of
espeak-ng speech, and playback into ALSA's file plugin: llm listen and llm voice end to
end, barge-in, and machines with no audio device."""

from __future__ import annotations

import wave
from pathlib import Path

from llmtui.errors import ExitCode
from tests.conftest import one_line_error
from tests.voice.conftest import AlsaHome, raw_pcm, say

QUESTION = "What is the capital of France?"


def test_listen_prints_the_transcript(vllm, tmp_path: Path) -> None:
    feed = raw_pcm(say(QUESTION, tmp_path / "q.wav"), tmp_path / "in.raw",
                   silence_before=0.5, silence_after=20)
    alsa = AlsaHome(tmp_path, feed)
    saved = tmp_path / "heard.wav"
    res = vllm("listen", "--save", str(saved), "-v", env=alsa.env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "capital" in res.stdout.lower() and "france" in res.stdout.lower()
    assert len(res.stdout.strip().splitlines()) == 1  # the transcript only: a pipe source
    assert "stopped by silence" in res.stderr
    with wave.open(str(saved)) as w:  # the recording: the question, little silence around
        seconds = w.getnframes() / w.getframerate()
    assert 1.2 < seconds < 3.5, seconds


def test_listen_gives_up_when_nobody_speaks(vllm, tmp_path: Path) -> None:
    alsa = AlsaHome(tmp_path)  # a microphone that hears only silence
    res = vllm("listen", "--wait", "2", env=alsa.env, timeout=60)
    assert res.returncode == ExitCode.ERROR
    assert "no speech heard in 2 s" in one_line_error(res.stderr)


def test_max_seconds_stops_a_long_recording(vllm, tmp_path: Path) -> None:
    long_talk = " ".join([QUESTION, "Tell me about rivers, mountains and lakes."] * 3)
    feed = raw_pcm(say(long_talk, tmp_path / "long.wav"), tmp_path / "in.raw",
                   silence_after=10)
    res = vllm("listen", "--max-seconds", "2", "-v", env=AlsaHome(tmp_path, feed).env,
               timeout=120)
    assert res.returncode == 0, res.stderr
    assert "stopped by max" in res.stderr and "capital" in res.stdout.lower()


def test_no_audio_device_is_one_line(vllm, no_audio_home) -> None:
    for args in (["listen"], ["voice", "smollm2:135m"], ["speak", "Hello."]):
        res = vllm(*args, env=no_audio_home, timeout=60)
        assert res.returncode == ExitCode.NO_AUDIO_DEVICE, (args, res.stderr)
        assert "device is available" in one_line_error(res.stderr)
    res = vllm("listen", "--device", "no-such-microphone", env=no_audio_home)
    assert res.returncode == ExitCode.NO_AUDIO_DEVICE


def test_devices_are_listed(vllm, tmp_path: Path) -> None:
    res = vllm("listen", "--devices", env=AlsaHome(tmp_path).env)
    assert res.returncode == 0, res.stderr
    assert "microphone" in res.stdout and "speaker" in res.stdout


def test_voice_conversation_end_to_end(vllm, tmp_path: Path) -> None:
    """A spoken question is heard, transcribed, answered by the chat model and spoken."""
    feed = raw_pcm(say(QUESTION, tmp_path / "q.wav"), tmp_path / "in.raw",
                   silence_before=0.5, silence_after=60)
    alsa = AlsaHome(tmp_path, feed)
    res = vllm("voice", "smollm2:135m", "--turns", "1", "-n", "40", "--temperature", "0",
               "-v", env=alsa.env, timeout=240)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("you: ") and "capital" in lines[0].lower(), res.stdout
    assert lines[1].startswith("smollm2: ") and len(lines[1]) > len("smollm2: ") + 3
    assert alsa.played_seconds(22050) > 0.5 and alsa.played_rms() > 0.005
    timings = next(ln for ln in res.stderr.splitlines() if ln.startswith("timings:"))
    for part in ("vad tail", "transcribe", "first token", "first audible"):
        assert part in timings, timings


def test_speaking_over_the_answer_stops_it(vllm, tmp_path: Path) -> None:
    """Barge-in: a second question arrives while a long first answer is being spoken; the
    answer stops and the second question is the next turn. (The answer is a story of
    some 120 tokens, half a minute of speech; the second question comes 20 s after the
    first, so it lands inside the answer even on a loaded machine.)"""
    first = say("Tell me a long story about a dragon.", tmp_path / "q1.wav")
    second = say(QUESTION, tmp_path / "q2.wav")
    one = raw_pcm(first, tmp_path / "one.raw", silence_before=0.5, silence_after=20.0)
    two = raw_pcm(second, tmp_path / "two.raw", silence_after=90)
    feed = tmp_path / "in.raw"
    feed.write_bytes(one.read_bytes() + two.read_bytes())
    alsa = AlsaHome(tmp_path, feed)
    res = vllm("voice", "smollm2:135m", "--turns", "2", "-n", "120", "--temperature", "0",
               "--system", "You are a storyteller. Tell long stories.",
               env=alsa.env, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    said = [ln for ln in lines if ln.startswith("you: ")]
    assert len(said) == 2, res.stdout
    assert "dragon" in said[0].lower() and "capital" in said[1].lower(), res.stdout
    answers = [ln for ln in lines if ln.startswith("smollm2: ")]
    assert answers and answers[0].endswith("[interrupted]"), res.stdout
    # what was played of the first answer is less than the whole of it
    assert alsa.played_seconds(22050) < 90
