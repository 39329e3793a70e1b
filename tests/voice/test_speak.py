"""llm speak with the real Piper voice: files, pipes, the ALSA file-backed speaker, the
round trip through Whisper, and errors."""

from __future__ import annotations

import os
import subprocess
import wave
from pathlib import Path

from llmtui.errors import ExitCode
from tests.conftest import LLM, ROOT, one_line_error
from tests.voice.conftest import AlsaHome, wait_for, wer

SENTENCE = "The weather is lovely today, so we are going for a walk in the park."


def _wav_info(path: Path) -> tuple[int, float]:
    with wave.open(str(path)) as w:
        return w.getframerate(), w.getnframes() / w.getframerate()


def test_speak_to_file_and_round_trip_through_whisper(vllm, tmp_path: Path) -> None:
    out = tmp_path / "walk.wav"
    res = vllm("speak", SENTENCE, "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert res.stdout == "" and "wrote" in res.stderr
    rate, seconds = _wav_info(out)
    assert rate == 22050 and 2.0 < seconds < 10.0
    heard = vllm("transcribe", str(out))
    assert heard.returncode == 0, heard.stderr
    edits, total = wer(SENTENCE, heard.stdout)
    assert edits / total < 0.25, heard.stdout


def test_echo_hello_to_a_wav(vllm, tmp_path: Path) -> None:
    """The issue's own example: `echo hello | llm speak -o hi.wav`, with no device."""
    res = vllm("speak", "-o", str(tmp_path / "hi.wav"), input="hello\n")
    assert res.returncode == 0, res.stderr
    _, seconds = _wav_info(tmp_path / "hi.wav")
    assert 0.3 < seconds < 3.0
    assert "hello" in vllm("transcribe", str(tmp_path / "hi.wav")).stdout.lower()


def test_rate_changes_the_length(vllm, tmp_path: Path) -> None:
    lengths = {}
    for rate in ("0.5", "2"):
        out = tmp_path / f"r{rate}.wav"
        assert vllm("speak", SENTENCE, "--rate", rate, "-o", str(out)).returncode == 0
        lengths[rate] = _wav_info(out)[1]
    assert lengths["0.5"] > 2.5 * lengths["2"]


def test_wav_to_stdout(vllm) -> None:
    res = subprocess.run([*LLM, "speak", "Short and sweet.", "-o", "-"], capture_output=True,
                         env={**os.environ, **vllm.env}, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout[:4] == b"RIFF" and res.stdout[8:12] == b"WAVE"
    assert len(res.stdout) > 22050  # half a second of audio at least


def test_speech_starts_before_the_text_ends(vllm, tmp_path: Path) -> None:
    """`llm run ... | llm speak`: the first sentence is spoken while stdin is still open."""
    out = tmp_path / "stream.wav"
    proc = subprocess.Popen([*LLM, "speak", "-o", str(out)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                            env={**os.environ, **vllm.env})
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"This first sentence arrives on its own. ")
        proc.stdin.flush()
        grew = wait_for(lambda: out.exists() and out.stat().st_size > 22050, timeout=60)
        assert grew, "nothing was synthesized while stdin was open"
        before = out.stat().st_size
        proc.stdin.write(b"The second one comes later and ends the text.\n")
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    assert out.stat().st_size > before * 1.5
    heard = vllm("transcribe", str(out)).stdout.lower()
    assert "first" in heard and "second" in heard


def test_playback_through_the_alsa_file_device(vllm, tmp_path: Path) -> None:
    alsa = AlsaHome(tmp_path)
    res = vllm("speak", SENTENCE, env=alsa.env)
    assert res.returncode == 0, res.stderr
    # What reached the "speaker": 16-bit mono at the voice's 22.05 kHz, of about the
    # length the same text has as a file, and not silence.
    played = alsa.played_seconds(22050)
    assert 2.0 < played < 10.0, played
    assert alsa.played_rms() > 0.01
    ref = tmp_path / "ref.wav"
    assert vllm("speak", SENTENCE, "-o", str(ref)).returncode == 0
    assert abs(played - _wav_info(ref)[1]) < 1.0


def test_errors(vllm, llm, no_audio_home, tmp_path: Path) -> None:
    res = vllm("speak", "Hello there.", env=no_audio_home)
    assert res.returncode == ExitCode.NO_AUDIO_DEVICE
    line = one_line_error(res.stderr)
    assert "no speaker (audio output) device" in line and "-o out.wav" in line
    res = vllm("speak", "Hello.", "--device", "no-such-card", "-o", str(tmp_path / "x.wav"))
    assert res.returncode == 0  # a file needs no device
    res = vllm("speak", "-o", str(tmp_path / "e.wav"), input="   \n")
    assert res.returncode == ExitCode.INVALID_INPUT
    assert "nothing to say" in one_line_error(res.stderr)
    assert not (tmp_path / "e.wav").exists()
    res = vllm("speak", "Hi.", "--rate", "9", "-o", str(tmp_path / "r.wav"))
    assert "--rate" in one_line_error(res.stderr)
    res = vllm("speak", "Hi.", "--voice", "piper:en_us-amy", "-o", str(tmp_path / "v.wav"))
    assert res.returncode == ExitCode.MODEL_NOT_FOUND
    assert "llm pull piper:en_us-amy" in one_line_error(res.stderr)
    res = vllm("speak", "Hi.", "--voice", "whisper:tiny.en", "-o", str(tmp_path / "w.wav"))
    assert "not a text-to-speech" in one_line_error(res.stderr)
    res = vllm("speak", "Hi.", "-o", str(tmp_path))
    assert "is a folder" in one_line_error(res.stderr)
    res = llm("speak", "Hi.", "-o", str(tmp_path / "m.wav"))  # an empty home: no voice
    assert res.returncode == ExitCode.MODEL_NOT_FOUND
    assert "llm pull piper:en_us-joe" in one_line_error(res.stderr)
