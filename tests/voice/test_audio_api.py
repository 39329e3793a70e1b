"""The speech API on a real daemon over TCP, spoken to by the real `openai` package, and
the daemon's own /api/x/transcribe and /api/x/speak; the worker life cycle (ps,
keep-alive, unload, crash isolation) for speech models."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.api.conftest import TcpDaemon
from tests.voice.conftest import VOICE, WHISPER, install, say, wait_for, wer

QUESTION = "What is the capital of France?"
SENTENCE = "Bring your umbrella, because it will rain this afternoon."


@pytest.fixture(scope="module")
def tcp(tmp_path_factory: pytest.TempPathFactory, smollm: Path, whisper_dir: Path,
        piper_onnx: Path) -> Iterator[TcpDaemon]:
    home = tmp_path_factory.mktemp("audio-api") / "home"
    install(home, (smollm, "smollm2:135m"), (whisper_dir, WHISPER), (piper_onnx, VOICE))
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "config.toml").write_text('max_audio_upload = "2MB"\n')
    with TcpDaemon(home) as daemon:
        yield daemon


@pytest.fixture()
def ai(tcp: TcpDaemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=tcp.url + "/v1", api_key="unused", timeout=120,
                         max_retries=0)


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return say(QUESTION, tmp_path_factory.mktemp("q") / "question.wav")


def test_openai_transcriptions_every_format(ai: openai.OpenAI, question_wav: Path) -> None:
    with question_wav.open("rb") as fh:
        result = ai.audio.transcriptions.create(model="whisper-1", file=fh)
    assert "capital" in result.text.lower() and "france" in result.text.lower()
    with question_wav.open("rb") as fh:
        verbose = ai.audio.transcriptions.create(
            model=WHISPER, file=fh, response_format="verbose_json",
            timestamp_granularities=["word", "segment"], language="en")
    assert verbose.language == "en" and 1.0 < verbose.duration < 4.0
    assert verbose.segments and verbose.segments[0].end > verbose.segments[0].start
    assert verbose.words and any("capital" in w.word.lower() for w in verbose.words)
    for fmt, start in (("text", None), ("srt", "1\n00:00:00,000 --> "),
                       ("vtt", "WEBVTT\n\n00:00:00.000 --> ")):
        with question_wav.open("rb") as fh:
            text = ai.audio.transcriptions.create(model="whisper-1", file=fh,
                                                  response_format=fmt)  # type: ignore[call-overload]
        assert isinstance(text, str) and "france" in text.lower(), (fmt, text)
        if start:
            assert text.startswith(start), text


def test_openai_transcription_stream(ai: openai.OpenAI, question_wav: Path) -> None:
    with question_wav.open("rb") as fh:
        events = list(ai.audio.transcriptions.create(model="whisper-1", file=fh, stream=True))
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    done = [e for e in events if e.type == "transcript.text.done"]
    assert deltas and len(done) == 1
    assert "capital" in done[0].text.lower()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the package marks it so
def test_openai_translation_needs_a_multilingual_model(ai: openai.OpenAI,
                                                       question_wav: Path) -> None:
    with question_wav.open("rb") as fh, pytest.raises(openai.BadRequestError) as err:
        ai.audio.translations.create(model="whisper-1", file=fh)
    assert "English-only" in str(err.value)


def test_openai_speech_formats_round_trip(ai: openai.OpenAI, tmp_path: Path) -> None:
    import av

    wav = ai.audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE,
                                 response_format="wav").content
    assert wav[:4] == b"RIFF"
    out = tmp_path / "speech.wav"
    out.write_bytes(wav)
    with out.open("rb") as fh:
        heard = ai.audio.transcriptions.create(model="whisper-1", file=fh).text
    edits, total = wer(SENTENCE, heard)
    assert edits / total < 0.25, heard
    pcm = ai.audio.speech.create(model="tts-1", voice="alloy", input="Hello there.",
                                 response_format="pcm").content
    assert len(pcm) % 2 == 0 and len(pcm) > 24000  # 24 kHz 16-bit: over half a second
    for fmt in ("mp3", "flac", "opus", "aac"):
        data = ai.audio.speech.create(model="tts-1", voice="nova", input="Hello there.",
                                      response_format=fmt).content  # type: ignore[arg-type]
        with av.open(io.BytesIO(data)) as container:
            samples = sum(f.samples for f in container.decode(audio=0))
            rate = container.streams.audio[0].rate
        assert 0.5 < samples / rate < 3.0, fmt
    # the default (no response_format) is mp3, as OpenAI's
    default = ai.audio.speech.create(model="tts-1", voice="alloy", input="Hi.").content
    assert default[:3] == b"ID3" or default[0] == 0xFF


def test_openai_speech_streams_sentence_by_sentence(ai: openai.OpenAI, tcp: TcpDaemon) -> None:
    text = " ".join(["This is sentence number one."] + ["And here is another one."] * 6)
    with ai.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=text, response_format="pcm") as resp:
        assert resp.headers["x-sample-rate"] == "24000"
        chunks = list(resp.iter_bytes(4096))
    assert sum(map(len, chunks)) > 24000 * 2 * 5  # well over five seconds of speech
    # SSE framing (stream_format="sse"): base64 deltas, then done
    with httpx.stream("POST", tcp.url + "/v1/audio/speech", timeout=120, json={
            "model": "tts-1", "voice": "alloy", "input": "One. Two.", "response_format": "pcm",
            "stream_format": "sse"}) as resp:
        events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1]["type"] == "speech.audio.done"
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert len(audio) > 24000


def test_openai_errors(ai: openai.OpenAI, question_wav: Path, tmp_path: Path) -> None:
    with pytest.raises(openai.BadRequestError, match="not an audio file"):
        ai.audio.transcriptions.create(model="whisper-1", file=("notes.txt", b"hello " * 100))
    with pytest.raises(openai.BadRequestError, match="is empty"):
        ai.audio.transcriptions.create(model="whisper-1", file=("empty.wav", b""))
    with pytest.raises(openai.NotFoundError, match="whisper:small"):
        ai.audio.transcriptions.create(model="whisper:small", file=question_wav.open("rb"))
    with pytest.raises(openai.BadRequestError, match="not a speech-to-text model"):
        ai.audio.transcriptions.create(model="smollm2:135m", file=question_wav.open("rb"))
    with pytest.raises(openai.BadRequestError, match="response_format"):
        ai.audio.transcriptions.create(model="whisper-1", file=question_wav.open("rb"),
                                       response_format="docx")  # type: ignore[arg-type]
    big = b"RIFF" + b"\x00" * (3 * 1024 * 1024)
    with pytest.raises(openai.APIStatusError) as err:
        ai.audio.transcriptions.create(model="whisper-1", file=("big.wav", big))
    assert err.value.status_code == 413
    with pytest.raises(openai.NotFoundError, match="piper:en_gb-alan"):
        ai.audio.speech.create(model="tts-1", voice="piper:en_gb-alan", input="Hi.")
    with pytest.raises(openai.BadRequestError, match="empty"):
        ai.audio.speech.create(model="tts-1", voice="alloy", input="   ")
    with pytest.raises(openai.BadRequestError, match="speed"):
        ai.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", speed=9)
    with pytest.raises(openai.BadRequestError, match="response_format"):
        ai.audio.speech.create(model="tts-1", voice="alloy", input="Hi.",
                               response_format="wma")  # type: ignore[arg-type]


def test_native_transcribe_and_speak(tcp: TcpDaemon, question_wav: Path) -> None:
    url = tcp.url
    raw = httpx.post(url + "/api/x/transcribe", content=question_wav.read_bytes(),
                     params={"stream": "false", "language": "en"}, timeout=120)
    assert raw.status_code == 200, raw.text
    body = raw.json()
    assert "capital" in body["text"].lower() and body["language"] == "en"
    assert body["segments"] and body["duration"] > 1.0
    lines = [json.loads(ln) for ln in httpx.post(
        url + "/api/x/transcribe", timeout=120,
        json={"audio": base64.b64encode(question_wav.read_bytes()).decode()}).text.splitlines()]
    assert "info" in lines[0] and lines[-1]["done"] is True
    assert any("segment" in ln for ln in lines)
    # a path is read by the daemon only for the local socket (the same user)
    denied = httpx.post(url + "/api/x/transcribe", json={"path": str(question_wav)}, timeout=30)
    assert denied.status_code == 403
    spoken = [json.loads(ln) for ln in httpx.post(
        url + "/api/x/speak", json={"input": "Hello. Goodbye.", "rate": 1.2},
        timeout=120).text.splitlines()]
    audio = [ln for ln in spoken if "audio" in ln]
    assert len(audio) >= 2 and audio[0]["sample_rate"] == 22050
    assert spoken[-1]["done"] is True and spoken[-1]["sentences"] == 2
    bad = httpx.post(url + "/api/x/transcribe", content=b"not audio at all" * 10, timeout=30)
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_input"


def test_speech_workers_share_the_engine(tcp: TcpDaemon, ai: openai.OpenAI,
                                         question_wav: Path) -> None:
    """Speech models load into their own workers: ps lists them, unload frees them, and
    a worker that dies is replaced on the next request."""
    ai.audio.speech.create(model="tts-1", voice="alloy", input="Warm up.",
                           response_format="wav")
    with question_wav.open("rb") as fh:
        ai.audio.transcriptions.create(model="whisper-1", file=fh)
    ps = {m["name"]: m for m in httpx.get(tcp.url + "/api/ps", timeout=30).json()["models"]}
    assert WHISPER in ps and VOICE in ps
    assert ps[WHISPER]["details"]["format"] == "ctranslate2"
    os.kill(ps[WHISPER]["pid"], signal.SIGKILL)  # a crash: the daemon lives on

    def gone() -> bool:
        models = httpx.get(tcp.url + "/api/ps", timeout=30).json()["models"]
        return all(m["name"] != WHISPER or m["pid"] != ps[WHISPER]["pid"] for m in models)

    assert wait_for(gone, timeout=30)
    with question_wav.open("rb") as fh:
        again = ai.audio.transcriptions.create(model="whisper-1", file=fh)
    assert "france" in again.text.lower()
    assert httpx.post(tcp.url + "/api/x/unload", json={"model": VOICE},
                      timeout=30).json()["unloaded"] is True
    names = [m["name"] for m in httpx.get(tcp.url + "/api/ps", timeout=30).json()["models"]]
    assert VOICE not in names
    # chat on a speech model is a clear error, not a crash
    res = httpx.post(tcp.url + "/api/chat", timeout=60, json={
        "model": WHISPER, "messages": [{"role": "user", "content": "hi"}], "stream": False})
    assert res.status_code == 400 and "speech-to-text" in res.json()["error"]


@pytest.mark.parametrize("doc", ["docs/api.md", "docs/voice.md"])
def test_docs_voice_examples_run(tcp: TcpDaemon, doc: str, tmp_path: Path) -> None:
    """Every ```sh block marked `# voice-test` in the docs runs against the daemon."""
    import re
    import subprocess

    from tests.conftest import ROOT

    text = (ROOT / doc).read_text()
    blocks = [b for b in re.findall(r"```sh\n(.*?)```", text, re.S) if "# voice-test" in b]
    for block in blocks:
        script = block.replace("http://127.0.0.1:11434", tcp.url)
        res = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True,
                             text=True, timeout=120, cwd=tmp_path)
        assert res.returncode == 0, (block, res.stdout, res.stderr)
        assert "error" not in res.stdout.lower(), (block, res.stdout)
        if doc == "docs/api.md":
            assert "hello" in res.stdout.lower(), res.stdout  # the file, transcribed
    assert blocks, f"{doc} has no '# voice-test' example"
    if doc == "docs/api.md":
        assert (tmp_path / "hello.wav").read_bytes()[:4] == b"RIFF"
    else:
        assert (tmp_path / "morning.wav").read_bytes()[:4] == b"RIFF"
        assert "-->" in res.stdout and "morning" in res.stdout.lower(), res.stdout  # SRT
