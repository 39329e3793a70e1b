"""Voice benchmark: transcription and speech through the daemon against the libraries
called directly, and the delay of a spoken answer in `llm voice`.

Prints figures, never asserts. Run: `python bench/voice.py` (after `make models`).

  1. transcription real-time factor (processing time ÷ audio time) of a ~60 s espeak-ng
     recording through the daemon (`/api/x/transcribe`, Whisper tiny.en in its worker)
     ÷ faster-whisper called directly in this process, same model, compute type,
     threads and settings; alternating pairs                         target <= 1.05
  2. `llm voice` on the file-fed ALSA microphone: from the end of a spoken question to
     the first audible byte of the answer, with its parts (VAD silence tail,
     transcription, first token, first sentence synthesized)          target < 1.5 s
  3. speech real-time factor (synthesis time ÷ audio time) of Piper through the daemon,
     and of piper-tts called directly
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import fetch_models  # noqa: E402
from tests.voice.test_transcribe import SENTENCES  # noqa: E402

LLM = [sys.executable, "-m", "llmtui"]
WHISPER = "whisper:tiny.en"
VOICE = "piper:en_us-joe"
QUESTIONS = ["What is the capital of France?", "How many days are there in a week?",
             "What color is the sky?", "Name a large animal.", "What is two plus two?"]
STORY = ("Our town sits by a wide river. Every spring the water rises and the old bridge "
         "is closed for a week. Children watch the boats from the bank, and the baker sells "
         "warm bread to the people waiting on the other side. When the water goes down, "
         "everyone helps to clean the streets, and in the evening there is music in the "
         "square.")


def run(cmd: list[str], env: dict[str, str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=False,
                          cwd=ROOT, **kw)  # type: ignore[call-overload, no-any-return]


def setup(tmp: Path) -> dict[str, str]:
    cache = fetch_models.cache_dir()
    fetch_models.fetch("smollm2-135m.gguf", fetch_models.MODELS["smollm2-135m.gguf"], cache)
    whisper = fetch_models.fetch_folder("whisper-tiny.en",
                                        fetch_models.FOLDERS["whisper-tiny.en"], cache)
    voice = fetch_models.fetch_folder("piper-joe", fetch_models.FOLDERS["piper-joe"], cache)
    env = {**os.environ, "LLMTUI_HOME": str(tmp / "home"), "LLMTUI_IDLE_TIMEOUT": "900",
           "LLMTUI_KEEP_ALIVE": "-1", "NO_COLOR": "1"}
    for path, name in ((cache / "smollm2-135m.gguf", "smollm2:135m"), (whisper, WHISPER),
                       (voice / "en_US-joe-medium.onnx", VOICE)):
        res = run([*LLM, "import", str(path), "--name", name, "--link"], env)
        if res.returncode:
            raise SystemExit(res.stderr)
    return env


def espeak(text: str, out: Path, rate: int = 16000) -> Path:
    raw = out.with_suffix(".e.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(raw), text], check=True)
    subprocess.run(["sox", "-D", str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(out)],
                   check=True)
    raw.unlink()
    return out


def long_recording(tmp: Path) -> Path:
    parts = [espeak(s, tmp / f"s{i}.wav") for i, s in enumerate(SENTENCES)]
    out = tmp / "talk.wav"
    subprocess.run(["sox", "-D", *map(str, parts * 4), str(out)], check=True)  # ~60 s
    return out


# -- 1. transcription ---------------------------------------------------------------------------


def bench_transcription(env: dict[str, str], audio: Path, pairs: int) -> None:
    from faster_whisper import WhisperModel

    from llmtui.backends.whisper import cpu_threads
    from llmtui.config import Settings
    from llmtui.daemon.client import Client
    from llmtui.voice.audio import probe

    seconds = float(probe(audio).duration or 0.0)
    folder = fetch_models.cache_dir() / "whisper-tiny.en"
    threads = cpu_threads(0)
    direct_model = WhisperModel(str(folder), device="cpu", compute_type="int8",
                                cpu_threads=threads, num_workers=1)
    client = Client(settings=Settings.load({"LLMTUI_HOME": env["LLMTUI_HOME"]}))

    def daemon() -> float:
        start = time.perf_counter()
        for _ in client.transcribe(str(audio), model=WHISPER, beam_size=5):
            pass
        return time.perf_counter() - start

    def direct() -> float:
        start = time.perf_counter()
        segments, _ = direct_model.transcribe(str(audio), beam_size=5)
        for _ in segments:
            pass
        return time.perf_counter() - start

    daemon()  # load the worker
    direct()
    d_times, r_times = [], []
    for i in range(pairs):
        order = (daemon, direct) if i % 2 == 0 else (direct, daemon)
        for fn in order:
            (d_times if fn is daemon else r_times).append(fn())
    d, r = statistics.median(d_times), statistics.median(r_times)
    print(f"1. transcription of {seconds:.1f} s ({threads} threads, int8, beam 5, {pairs} pairs)")
    print(f"   daemon  RTF {d / seconds:.3f}  ({d:.2f} s; min {min(d_times):.2f})")
    print(f"   direct  RTF {r / seconds:.3f}  ({r:.2f} s; min {min(r_times):.2f})")
    print(f"   daemon ÷ direct = {d / r:.3f}   (target <= 1.05)")
    client.close()


# -- 2. voice latency ---------------------------------------------------------------------------

ASOUNDRC = """
pcm.!default {{ type asym  playback.pcm "speaker"  capture.pcm "microphone" }}
pcm.microphone {{ type file  slave.pcm "null"  file "/dev/null"  infile "{infile}"
  format "raw" }}
pcm.speaker {{ type file  slave.pcm "null"  file "{outfile}"  format "raw" }}
"""


def bench_voice(env: dict[str, str], tmp: Path, runs: int, silence: float | None) -> None:
    parts: dict[str, list[float]] = {}
    for i in range(runs):
        question = QUESTIONS[i % len(QUESTIONS)]
        clip = espeak(question, tmp / f"q{i}.wav")
        raw = tmp / f"q{i}.raw"
        subprocess.run(["sox", "-D", str(clip), "-t", "raw", "-e", "signed-integer", "-b", "16",
                        str(raw)], check=True)
        feed = tmp / f"in{i}.raw"
        feed.write_bytes(b"\0\0" * 8000 + raw.read_bytes() + b"\0\0" * 16000 * 40)
        home = tmp / f"alsa{i}"
        home.mkdir()
        (home / ".asoundrc").write_text(ASOUNDRC.format(infile=feed,
                                                        outfile=tmp / f"out{i}.raw"))
        tail = ["--silence", str(silence)] if silence else []
        res = run([*LLM, "voice", "smollm2:135m", "--turns", "1", "-v", "-n", "40",
                   "--temperature", "0", *tail], {**env, "HOME": str(home)}, timeout=300)
        line = next((ln for ln in res.stderr.splitlines() if ln.startswith("timings:")), "")
        for name, ms in re.findall(r"([a-z ]+?) (\d+) ms", line.removeprefix("timings:")):
            parts.setdefault(name.strip(" ·"), []).append(float(ms))
        if i == 0 and not line:
            print(res.stdout, res.stderr)
    if not parts:
        print("2. llm voice: no timings (see the output above)")
        return
    print(f"2. llm voice, end of question -> first audible byte ({runs} runs, silence tail "
          f"{silence or 'default'}, medians; models loaded before the first run)")
    for name in ("vad tail", "transcribe", "first token", "first sentence synthesized",
                 "first audible"):
        values = parts.get(name, [])
        if values:
            print(f"   {name:<28} {statistics.median(values):7.0f} ms   "
                  f"(min {min(values):.0f}, max {max(values):.0f})")
    print("   target: first audible < 1500 ms")


# -- 3. speech ---------------------------------------------------------------------------------


def bench_tts(env: dict[str, str], reps: int) -> None:
    from piper import PiperVoice

    from llmtui.config import Settings
    from llmtui.daemon.client import Client

    client = Client(settings=Settings.load({"LLMTUI_HOME": env["LLMTUI_HOME"]}))

    def daemon() -> tuple[float, float]:
        start = time.perf_counter()
        done: dict[str, float] = {}
        for event in client.speak(STORY, voice=VOICE):
            if event.get("done"):
                done = event
        return time.perf_counter() - start, float(done["audio_seconds"])

    onnx = fetch_models.cache_dir() / "piper-joe" / "en_US-joe-medium.onnx"
    voice = PiperVoice.load(str(onnx))

    def direct() -> tuple[float, float]:
        start = time.perf_counter()
        samples = sum(len(c.audio_int16_bytes) // 2 for c in voice.synthesize(STORY))
        return time.perf_counter() - start, samples / voice.config.sample_rate

    daemon()
    direct()
    d = [daemon() for _ in range(reps)]
    r = [direct() for _ in range(reps)]
    audio = d[0][1]
    dm, rm = statistics.median(t for t, _ in d), statistics.median(t for t, _ in r)
    print(f"3. speech: {len(STORY)} characters -> {audio:.1f} s of audio ({reps} runs, medians)")
    print(f"   daemon  RTF {dm / audio:.3f}  ({dm:.2f} s)")
    print(f"   direct  RTF {rm / audio:.3f}  ({rm:.2f} s)   daemon ÷ direct = {dm / rm:.3f}")
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default="1,2,3", help="which parts to run, e.g. 2 or 1,3")
    parser.add_argument("--silence", type=float, default=None,
                        help="the VAD's silence tail for llm voice (default: its own)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="llmtui-voice-bench-") as name:
        tmp = Path(name)
        env = setup(tmp)
        parts = set(args.only.split(","))
        load = subprocess.run(["cat", "/proc/loadavg"], capture_output=True, text=True)
        print(f"load average before: {load.stdout.split()[0] if load.stdout else '?'} "
              f"on {os.cpu_count()} CPUs")
        try:
            if "1" in parts:
                bench_transcription(env, long_recording(tmp), args.pairs)
            if "2" in parts:
                run([*LLM, "load", "smollm2:135m"], env)
                bench_voice(env, tmp, args.runs, args.silence)
            if "3" in parts:
                bench_tts(env, max(3, args.pairs))
        finally:
            run([*LLM, "daemon", "stop"], env)


if __name__ == "__main__":
    main()
