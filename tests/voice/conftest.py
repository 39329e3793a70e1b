"""Voice fixtures: the real Whisper tiny.en and Piper joe voice (from the package index),
speech made with espeak-ng, and ALSA devices fed from and written to files.

No audio device is mocked: PortAudio opens real ALSA PCMs that an ``.asoundrc`` in a
temporary HOME defines (the ``file`` plugin reading an ``infile`` for capture, writing a
``file`` for playback, over the ``null`` plugin)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import fetch_models
from tests.conftest import LLM, Runner, stop_daemon_of

WHISPER = "whisper:tiny.en"
VOICE = "piper:en_us-joe"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:  # `make sysdeps` installs it; without it these tests cannot make speech
        pytest.fail(f"{tool} is not installed (run: make sysdeps)")
    return path


@pytest.fixture(scope="session")
def whisper_dir(models_cache: Path) -> Path:
    spec = fetch_models.FOLDERS["whisper-tiny.en"]
    return fetch_models.fetch_folder("whisper-tiny.en", spec, models_cache)


@pytest.fixture(scope="session")
def piper_onnx(models_cache: Path) -> Path:
    spec = fetch_models.FOLDERS["piper-joe"]
    return fetch_models.fetch_folder("piper-joe", spec, models_cache) / "en_US-joe-medium.onnx"


def install(home: Path, *pairs: tuple[Path, str]) -> None:
    """Install models by linking them where they lie (the real `llm import --link`)."""
    env = {**os.environ, "LLMTUI_HOME": str(home)}
    for path, name in pairs:
        res = subprocess.run([*LLM, "import", str(path), "--name", name, "--link"], env=env,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr


@pytest.fixture(scope="module")
def voice_home(tmp_path_factory: pytest.TempPathFactory, smollm: Path, whisper_dir: Path,
               piper_onnx: Path) -> Iterator[Path]:
    """One home with the chat model, Whisper and the voice; its daemon stays warm."""
    home = tmp_path_factory.mktemp("voice") / "home"
    install(home, (smollm, "smollm2:135m"), (whisper_dir, WHISPER), (piper_onnx, VOICE))
    yield home
    stop_daemon_of(home)


@pytest.fixture()
def vllm(voice_home: Path) -> Runner:
    return Runner({"LLMTUI_HOME": str(voice_home), "NO_COLOR": "1",
                   "LLMTUI_IDLE_TIMEOUT": "300"})


# -- speech ---------------------------------------------------------------------------------


def say(text: str, path: Path, rate: int = 16000, wpm: int = 140) -> Path:
    """Speak text with espeak-ng into a mono 16-bit WAV at ``rate``."""
    raw = path.with_suffix(".espeak.wav")
    subprocess.run([need("espeak-ng"), "-v", "en-us", "-s", str(wpm), "-w", str(raw), text],
                   check=True, capture_output=True, timeout=60)
    # -D: no dither. sox's dither is random noise, so without it a clip differed from run to
    # run, and Whisper tiny heard "brown fox" as "round-fark" in about one run in seven.
    subprocess.run([need("sox"), "-D", str(raw), "-r", str(rate), "-c", "1", "-b", "16",
                    str(path)], check=True, capture_output=True, timeout=60)
    raw.unlink()
    return path


def raw_pcm(wav: Path, out: Path, silence_after: float = 0.0, silence_before: float = 0.0,
            rate: int = 16000) -> Path:
    """Headerless 16-bit mono PCM at ``rate`` (what the ALSA file plugin plays back),
    with silence around it."""
    tmp = out.with_suffix(".body.raw")
    subprocess.run([need("sox"), "-D", str(wav), "-r", str(rate), "-c", "1", "-b", "16", "-e",
                    "signed-integer", "-t", "raw", str(tmp)], check=True, capture_output=True)
    pad = b"\x00\x00"
    with out.open("wb") as fh:
        fh.write(pad * int(silence_before * rate))
        fh.write(tmp.read_bytes())
        fh.write(pad * int(silence_after * rate))
    tmp.unlink()
    return out


class AlsaHome:
    """A HOME whose ~/.asoundrc gives PortAudio a default capture device that plays
    ``infile`` and a default playback device that writes ``outfile``."""

    def __init__(self, root: Path, infile: Path | None = None) -> None:
        self.home = root / "alsa-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.infile = infile or (root / "silence.raw")
        if infile is None:
            self.infile.write_bytes(b"\x00\x00" * 16000 * 60)
        self.outfile = root / "played.raw"
        (self.home / ".asoundrc").write_text(f"""
pcm.!default {{
  type asym
  playback.pcm "speaker"
  capture.pcm "microphone"
}}
pcm.microphone {{
  type file
  slave.pcm "null"
  file "/dev/null"
  infile "{self.infile}"
  format "raw"
}}
pcm.speaker {{
  type file
  slave.pcm "null"
  file "{self.outfile}"
  format "raw"
}}
""")

    @property
    def env(self) -> dict[str, str]:
        return {"HOME": str(self.home)}

    def played_seconds(self, rate: int = 22050) -> float:
        return self.outfile.stat().st_size / 2 / rate if self.outfile.exists() else 0.0

    def played_rms(self) -> float:
        import numpy as np

        data = np.frombuffer(self.outfile.read_bytes(), dtype="<i2").astype(np.float32)
        return float(np.sqrt(np.mean(np.square(data / 32768.0)))) if data.size else 0.0


@pytest.fixture()
def no_audio_home(tmp_path: Path) -> dict[str, str]:
    """A HOME with no ALSA configuration: on a machine without a sound card (CI, a
    server, these development boxes) PortAudio then has no device at all."""
    import sys

    home = tmp_path / "no-audio"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    probe = subprocess.run([sys.executable, "-c", "import sounddevice as sd; "
                            "print(len(sd.query_devices()))"], env=env, capture_output=True,
                           text=True, timeout=60)
    if probe.returncode == 0 and probe.stdout.strip() not in ("", "0"):
        pytest.skip("this machine has a sound card: the no-device case cannot be made here")
    return {"HOME": str(home)}


# -- scoring -----------------------------------------------------------------------------


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower().replace("’", "'"))


def wer(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edits, reference words): Levenshtein distance over words."""
    ref, hyp = words(reference), words(hypothesis)
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1], len(ref)


def wait_for(predicate, timeout: float = 30.0, step: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False
