"""Voice activity detection for the microphone: when an utterance starts and when it ends.

An energy detector on 32 ms blocks: a block is speech when its level stands clearly above
the noise floor, which is tracked while nobody speaks (slow to rise, quick to fall). An
utterance starts after enough speech in a short window and ends after a stretch of
silence. It needs no model and decides in microseconds; files are filtered with
faster-whisper's Silero VAD instead (``llm transcribe --vad``).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmtui.voice.audio import SAMPLE_RATE, rms

#: Nothing quieter than this is speech, whatever the floor (about -46 dBFS).
MIN_LEVEL = 0.005
#: Speech stands this many times above the floor (about +10 dB).
OVER_FLOOR = 3.0


@dataclass
class VadConfig:
    start_seconds: float = 0.15  # speech within the window that starts an utterance
    window_seconds: float = 0.3
    silence_seconds: float = 0.7  # the tail of silence that ends it
    preroll_seconds: float = 0.3  # audio kept from before the start
    min_level: float = MIN_LEVEL
    over_floor: float = OVER_FLOOR


class EnergyVAD:
    """Feed blocks; get "start" and "end" events."""

    def __init__(self, config: VadConfig | None = None, rate: int = SAMPLE_RATE,
                 block: int = 512) -> None:
        self.cfg = config or VadConfig()
        self.block_seconds = block / rate
        self.floor = 0.0
        self.in_speech = False
        self.recent: deque[bool] = deque(maxlen=max(1, round(self.cfg.window_seconds /
                                                             self.block_seconds)))
        self.silent_for = 0.0
        self.level = 0.0

    def threshold(self) -> float:
        return max(self.cfg.min_level, self.floor * self.cfg.over_floor)

    def is_speech(self, block: Any) -> bool:
        self.level = rms(block)
        speech = self.level > self.threshold()
        if not speech and not self.in_speech:
            # Track the room's noise: fall at once, rise slowly.
            if self.floor == 0.0 or self.level < self.floor:
                self.floor = self.level
            else:
                self.floor += (self.level - self.floor) * 0.05
        return speech

    def feed(self, block: Any) -> str | None:
        speech = self.is_speech(block)
        self.recent.append(speech)
        if not self.in_speech:
            need = round(self.cfg.start_seconds / self.block_seconds)
            if sum(self.recent) >= max(1, need):
                self.in_speech = True
                self.silent_for = 0.0
                return "start"
            return None
        self.silent_for = 0.0 if speech else self.silent_for + self.block_seconds
        if self.silent_for >= self.cfg.silence_seconds:
            self.in_speech = False
            self.recent.clear()
            return "end"
        return None


@dataclass
class Utterance:
    """One recorded utterance and when its parts happened (monotonic seconds)."""

    audio: Any
    started: float
    speech_end: float  # when the last speech block was captured
    detected_end: float  # when the VAD's silence tail closed it
    stopped_by: str = "silence"  # silence | key | max | barge-in
    #: The audio is exactly what ``on_pause`` was given (a transcription may be under way).
    speculated: bool = False

    @property
    def seconds(self) -> float:
        return float(self.audio.size) / SAMPLE_RATE

    @property
    def vad_tail(self) -> float:
        return self.detected_end - self.speech_end


@dataclass
class Recorder:
    """Records one utterance from a microphone: waits for speech, keeps a little audio
    from before it, stops on silence, on a key (``stop``) or at ``max_seconds``."""

    mic: Any
    config: VadConfig = field(default_factory=VadConfig)
    max_seconds: float = 30.0
    wait_seconds: float = 0.0  # 0: wait for speech forever
    on_level: Callable[[float, bool], None] | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    #: Called with the audio so far once the speaker has been quiet for ``early_seconds``:
    #: its transcription can start while the VAD still waits for the end of the pause.
    on_pause: Callable[[Any], None] | None = None
    early_seconds: float = 0.25

    def record(self, seed: list[Any] | None = None,
               immediate: bool = False) -> Utterance | None:
        """The next utterance, or None when nobody spoke within ``wait_seconds``.
        ``seed``: blocks already heard (a barge-in) that begin this utterance;
        ``immediate``: record from now on, speech or not (push-to-talk)."""
        import numpy as np

        vad = EnergyVAD(self.config, block=getattr(self.mic, "block", 512))
        pre: deque[Any] = deque(maxlen=max(1, round(self.config.preroll_seconds /
                                                     vad.block_seconds)))
        kept: list[Any] = []
        started = time.monotonic()
        speech_end = started
        in_speech = False
        if seed or immediate:
            kept = list(seed or [])
            in_speech = vad.in_speech = True
            speech_end = time.monotonic()
        limit = self.max_seconds
        stopped_by = "silence"
        quiet = 0  # blocks of silence since the last speech
        spec: int | None = None  # how many blocks the pending speculation was given
        while True:
            block = self.mic.read()
            event = vad.feed(block)
            if self.on_level is not None:
                self.on_level(vad.level, in_speech)
            now = time.monotonic()
            if not in_speech:
                pre.append(block)
                if event == "start":
                    in_speech = True
                    kept = list(pre)
                    started = now
                    speech_end = now
                elif self.stop.is_set() or (self.wait_seconds and
                                            now - started > self.wait_seconds):
                    return None
                continue
            kept.append(block)
            if vad.level > vad.threshold():
                speech_end = now
                quiet, spec = 0, None
            else:
                quiet += 1
                if self.on_pause is not None and spec is None and \
                        quiet * vad.block_seconds >= self.early_seconds:
                    spec = len(kept)
                    self.on_pause(np.concatenate(kept))
            if event == "end":
                break
            if self.stop.is_set():
                stopped_by = "key"
                break
            if sum(b.size for b in kept) / SAMPLE_RATE >= limit:
                stopped_by = "max"
                break
        speculated = stopped_by == "silence" and spec is not None
        if speculated:
            kept = kept[:spec]
        audio = np.concatenate(kept) if kept else np.zeros(0, dtype=np.float32)
        if stopped_by == "silence" and not speculated:  # drop most of the silent tail
            keep_tail = int(0.25 * SAMPLE_RATE)
            cut = audio.size - int(self.config.silence_seconds * SAMPLE_RATE) + keep_tail
            audio = audio[:max(cut, 0) or audio.size]
        return Utterance(audio=audio, started=started, speech_end=speech_end,
                         detected_end=time.monotonic(), stopped_by=stopped_by,
                         speculated=speculated)
