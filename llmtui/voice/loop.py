"""The speak pipeline and the spoken conversation, as clients of the daemon.

``SpeechOut`` synthesizes sentences in order on its own thread (the next sentence is
synthesized while this one plays) and hands the audio to a sink: the speaker, or a WAV
file. ``VoiceChat`` runs the conversation: listen until the speaker pauses, transcribe,
stream the chat model's answer, speak it sentence by sentence from the first one, and
stop talking when the user speaks over it (barge-in). The CLI and the TUI drive it with
their own UI object.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from llmtui.voice.audio import SAMPLE_RATE, to_int16, wav_bytes
from llmtui.voice.sentences import SentenceSplitter, speakable
from llmtui.voice.vad import EnergyVAD, Recorder, Utterance, VadConfig


def clone(client: Any) -> Any:
    """Another client to the same daemon, for use on another thread."""
    from llmtui.daemon.client import Client

    if client.host:
        return Client(host=client.host, settings=client.settings)
    return Client(socket=client._socket_path(), settings=client.settings)


class Sink(Protocol):
    def play(self, pcm16: bytes, sample_rate: int) -> None: ...


class WavSink:
    """Audio into a WAV file (or a pipe), the header written when the rate is known."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.writer: Any = None

    def play(self, pcm16: bytes, sample_rate: int) -> None:
        from llmtui.voice.audio import WavWriter

        if self.writer is None:
            self.writer = WavWriter(self.out, sample_rate)
        self.writer.write(pcm16)

    @property
    def seconds(self) -> float:
        return self.writer.seconds if self.writer is not None else 0.0

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class SpeechOut:
    """Sentences in, audio out: synthesized in order through the daemon on one thread."""

    def __init__(self, client: Any, voice: str | None, sink: Sink, rate: float = 1.0) -> None:
        self.client = client
        self.voice = voice
        self.rate = rate
        self.sink = sink
        self.sentences: queue.Queue[str | None] = queue.Queue()
        self.cancelled = threading.Event()
        self.error: BaseException | None = None
        self.first_audio: float | None = None  # monotonic: the first synthesized audio
        self.first_sent: float | None = None  # monotonic: the first sentence handed over
        self.audio_seconds = 0.0
        self.synth_seconds = 0.0
        self.thread = threading.Thread(target=self._run, name="llmtui-tts", daemon=True)
        self.thread.start()

    def say(self, text: str) -> None:
        words = speakable(text)
        if words and not self.cancelled.is_set():
            if self.first_sent is None:
                self.first_sent = time.monotonic()
            self.sentences.put(words)

    def _run(self) -> None:
        import base64

        while (text := self.sentences.get()) is not None:
            if self.cancelled.is_set():
                continue
            stream = self.client.speak(text, voice=self.voice, rate=self.rate)
            try:
                for event in stream:
                    if self.cancelled.is_set():
                        break
                    if event.get("audio"):
                        if self.first_audio is None:
                            self.first_audio = time.monotonic()
                        pcm = base64.b64decode(event["audio"])
                        rate = int(event.get("sample_rate") or 22050)
                        self.audio_seconds += len(pcm) / 2 / rate
                        self.sink.play(pcm, rate)
                    elif event.get("done"):
                        self.synth_seconds += float(event.get("seconds") or 0.0)
            except Exception as exc:
                self.error = exc
                self.cancelled.set()
            finally:
                with contextlib.suppress(Exception):
                    stream.close()

    def end(self) -> None:
        """No more sentences will come."""
        self.sentences.put(None)

    def cancel(self) -> None:
        """Drop what is not synthesized yet and stop the sentence in progress."""
        self.cancelled.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self.sentences.get_nowait()
        self.sentences.put(None)

    def close(self) -> None:
        """Wait until every sentence has been synthesized; re-raise a failure."""
        self.end()
        self.thread.join()
        if self.error is not None:
            raise self.error


def transcribe_pcm(client: Any, audio: Any, model: str | None, language: str | None = None,
                   beam_size: int = 1) -> str:
    """The text of a short recording (mono float32 at 16 kHz)."""
    data = wav_bytes(to_int16(audio), SAMPLE_RATE)
    parts: list[str] = []
    stream = client.transcribe(data=data, model=model, language=language,
                               beam_size=beam_size, timestamps=False,
                               filename="microphone.wav")
    try:
        for event in stream:
            if "segment" in event:
                parts.append(event["segment"]["text"])
    finally:
        stream.close()
    return "".join(parts).strip()


class VoiceUI(Protocol):
    """What the conversation reports; the CLI draws it on the terminal, the TUI in a widget."""

    def status(self, text: str) -> None: ...

    def level(self, level: float, speaking: bool) -> None: ...

    def heard(self, text: str) -> None: ...

    def answer_piece(self, text: str) -> None: ...

    def answer_end(self, interrupted: bool) -> None: ...

    def timings(self, timings: dict[str, float]) -> None: ...


class Speculation:
    """A transcription started at the first pause, before the VAD has decided that the
    utterance is over; used when nothing was said after that pause."""

    def __init__(self, client: Any, audio: Any, model: str | None,
                 language: str | None) -> None:
        self.size = int(audio.size)
        self.text: str | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(client, audio, model, language),
                                       name="llmtui-stt", daemon=True)
        self.thread.start()

    def _run(self, client: Any, audio: Any, model: str | None, language: str | None) -> None:
        try:
            self.text = transcribe_pcm(client, audio, model, language)
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def result(self) -> str | None:
        self.done.wait()
        return self.text if self.error is None else None


@dataclass
class Turn:
    heard: str
    answer: str = ""
    interrupted: bool = False
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class VoiceSettings:
    model: str
    speech_model: str | None = None
    voice: str | None = None
    system: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    language: str | None = None
    rate: float = 1.0
    barge_in: bool = True
    push_to_talk: bool = False
    max_seconds: float = 30.0
    vad: VadConfig = field(default_factory=VadConfig)


class BargeIn:
    """Listens while the answer is prepared and spoken; speech sets ``heard`` and the
    blocks since just before it start the next utterance. While audio plays, the bar is
    higher (the speaker's own sound reaching the microphone is not a barge-in)."""

    def __init__(self, mic: Any, speaker: Any, config: VadConfig) -> None:
        self.mic = mic
        self.speaker = speaker
        self.heard = threading.Event()
        self.done = threading.Event()
        self.blocks: list[Any] = []
        cfg = VadConfig(start_seconds=max(config.start_seconds, 0.2),
                        window_seconds=config.window_seconds,
                        silence_seconds=config.silence_seconds,
                        min_level=config.min_level, over_floor=config.over_floor)
        self.vad = EnergyVAD(cfg, block=getattr(mic, "block", 512))
        self.pre: deque[Any] = deque(maxlen=max(1, round(config.preroll_seconds /
                                                         self.vad.block_seconds)))
        self.thread = threading.Thread(target=self._run, name="llmtui-barge-in", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        base = self.vad.cfg.min_level
        while not self.done.is_set():
            try:
                block = self.mic.read(timeout=0.5)
            except Exception:
                return
            playing = self.speaker is not None and self.speaker.playing
            self.vad.cfg.min_level = base * 4 if playing else base
            if self.heard.is_set():
                self.blocks.append(block)
                continue
            self.pre.append(block)
            if self.vad.feed(block) == "start":
                self.blocks = list(self.pre)
                self.heard.set()

    def stop(self) -> list[Any] | None:
        self.done.set()
        self.thread.join(timeout=2)
        return self.blocks if self.heard.is_set() else None


class VoiceChat:
    """The spoken conversation: listen, transcribe, answer, speak, repeat."""

    def __init__(self, client: Any, settings: VoiceSettings, mic: Any, speaker: Any,
                 ui: VoiceUI, wait_key: Callable[[str], bool] | None = None) -> None:
        self.client = client
        self.s = settings
        self.mic = mic
        self.speaker = speaker
        self.ui = ui
        self.wait_key = wait_key
        self.messages: list[dict[str, Any]] = []
        if settings.system:
            self.messages.append({"role": "system", "content": settings.system})
        self.tts_client = clone(client)
        self.stt_client = clone(client)
        self.recorder = Recorder(mic, settings.vad, max_seconds=settings.max_seconds,
                                 on_level=ui.level, on_pause=self._speculate)
        self.seed: list[Any] | None = None
        self.speculation: Speculation | None = None

    def preload(self) -> threading.Thread:
        """Load the three models while the user starts talking (the first answer then
        does not wait for them)."""
        def work() -> None:
            client = clone(self.client)
            try:
                for model in (self.s.speech_model, self.s.model, self.s.voice):
                    if model:
                        with contextlib.suppress(Exception):
                            client.load(model)
            finally:
                client.close()

        thread = threading.Thread(target=work, name="llmtui-preload", daemon=True)
        thread.start()
        return thread

    def _speculate(self, audio: Any) -> None:
        """The speaker paused: transcribe what was said so far, in the background."""
        self.speculation = Speculation(self.stt_client, audio, self.s.speech_model,
                                       self.s.language)

    def transcribe(self, utterance: Utterance) -> str:
        spec, self.speculation = self.speculation, None
        if utterance.speculated and spec is not None and spec.size == utterance.audio.size:
            text = spec.result()
            if text is not None:
                return text
        return transcribe_pcm(self.client, utterance.audio, self.s.speech_model,
                              self.s.language)

    def listen(self) -> Utterance | None:
        """The next utterance: after a barge-in, the rest of it; with push-to-talk,
        between two presses of Enter; otherwise from the start of speech to a pause."""
        if self.seed is not None:
            seed, self.seed = self.seed, None
            self.ui.status("listening")
            return self.recorder.record(seed)
        if not self.s.push_to_talk:
            self.mic.drain()
            self.ui.status("listening")
            return self.recorder.record()
        if self.wait_key is None or not self.wait_key("press Enter to talk"):
            return None
        self.mic.drain()
        stop = threading.Event()
        ptt = Recorder(self.mic, VadConfig(**{**self.s.vad.__dict__,
                                              "silence_seconds": 24 * 3600.0}),
                       max_seconds=self.s.max_seconds, on_level=self.ui.level, stop=stop)
        key = self.wait_key

        def watch() -> None:
            key("recording: press Enter to stop")
            stop.set()

        threading.Thread(target=watch, name="llmtui-ptt", daemon=True).start()
        self.ui.status("listening")
        return ptt.record(immediate=True)

    def turn(self) -> Turn | None:
        utterance = self.listen()
        if utterance is None:
            return None
        self.ui.status("transcribing")
        text = self.transcribe(utterance)
        transcribed = time.monotonic()
        timings = {"vad_tail": utterance.vad_tail,
                   "transcribe": transcribed - utterance.detected_end}
        if not text:
            self.ui.status("nothing understood")
            return Turn(heard="", timings=timings)
        self.ui.heard(text)
        self.messages.append({"role": "user", "content": text})
        turn = self.answer(utterance, transcribed, timings)
        turn.heard = text
        return turn

    def answer(self, utterance: Utterance, transcribed: float,
               timings: dict[str, float]) -> Turn:
        self.ui.status("thinking")
        self.speaker.resume()
        out = SpeechOut(self.tts_client, self.s.voice, self.speaker, self.s.rate)
        barge = BargeIn(self.mic, self.speaker, self.s.vad) if self.s.barge_in else None
        splitter = SentenceSplitter(eager_first=True)
        parts: list[str] = []
        first_token: float | None = None
        interrupted = False
        try:
            stream = self.client.chat(self.s.model, self.messages, options=self.s.options)
            try:
                for part in stream:
                    if barge is not None and barge.heard.is_set():
                        interrupted = True
                        break
                    if part.get("done"):
                        break
                    piece = part.get("message", {}).get("content", "")
                    if not piece:
                        continue
                    if first_token is None:
                        first_token = time.monotonic()
                        self.ui.status("speaking")
                    parts.append(piece)
                    self.ui.answer_piece(piece)
                    for sentence in splitter.feed(piece):
                        out.say(sentence)
            finally:
                stream.close()  # ends the HTTP stream: the daemon stops generating
            if not interrupted:
                for sentence in splitter.flush():
                    out.say(sentence)
            out.end()
            # Wait for synthesis and playback to finish, unless the user speaks over them.
            while out.thread.is_alive() or self.speaker.playing:
                if barge is not None and barge.heard.is_set():
                    interrupted = True
                    break
                time.sleep(0.02)
            if interrupted:
                out.cancel()
                self.speaker.stop()
            out.thread.join(timeout=30)
        except BaseException:  # Ctrl-C or a failed request: silence and stop listening
            out.cancel()
            self.speaker.stop()
            if barge is not None:
                barge.stop()
            raise
        if barge is not None:
            heard = barge.stop()
            self.seed = heard if interrupted else None
        answer = "".join(parts).strip()
        self.ui.answer_end(interrupted)
        if answer:
            self.messages.append({"role": "assistant",
                                  "content": answer + (" …" if interrupted else "")})
        if first_token is not None:
            timings["first_token"] = first_token - transcribed
        if out.first_audio is not None and out.first_sent is not None:
            timings["first_sentence_synthesized"] = out.first_audio - out.first_sent
        if self.speaker.first_audible is not None:
            timings["first_audible"] = self.speaker.first_audible - utterance.speech_end
        self.ui.timings(timings)
        if out.error is not None and not interrupted:
            raise out.error
        return Turn(heard="", answer=answer, interrupted=interrupted, timings=timings)

    def run(self, turns: int | None = None) -> list[Turn]:
        done: list[Turn] = []
        while turns is None or len(done) < turns:
            turn = self.turn()
            if turn is None:
                break
            if turn.heard:
                done.append(turn)
        return done

    def close(self) -> None:
        for client in (self.tts_client, self.stt_client):
            with contextlib.suppress(Exception):
                client.close()
