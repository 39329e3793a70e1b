"""Microphone and speaker through sounddevice (PortAudio).

Both run paced to the clock: a real device blocks until its audio has been captured or
played, so pacing costs nothing there; a device that does not block (ALSA's ``file`` and
``null`` plugins, which the tests use) then behaves like a real one, so that silence
lasts as long as it would in a room and barge-in has time to happen.

A machine without audio devices gets :class:`NoAudioDevice` with a one-line reason, never
a hang: opening a stream is the first thing the commands do.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from llmtui.errors import NoAudioDevice, require
from llmtui.voice.audio import SAMPLE_RATE, from_int16, resample, rms

#: Microphone block: 32 ms at 16 kHz (what the VAD decides on).
BLOCK = 512
#: How far playback may run ahead of the clock (the device's own buffer, roughly).
AHEAD = 0.15
#: A block quieter than this is not "audible" (for the first-audible-byte timing).
AUDIBLE_RMS = 0.003


def sd_module() -> Any:
    """sounddevice, or a one-line error when PortAudio itself is missing."""
    try:
        return require("sounddevice", "voice", "audio input and output")
    except OSError as exc:  # sounddevice raises OSError when libportaudio is missing
        raise NoAudioDevice(f"PortAudio is not available: {exc}",
                            hint="install libportaudio2 (Debian/Ubuntu) or portaudio") from None


def _pick(sd: Any, device: str | int | None, kind: str) -> Any:
    """A device index (or None for the default) from a number or part of a name."""
    if device is None or device == "":
        return None
    if isinstance(device, int) or str(device).isdigit():
        return int(device)
    wanted = str(device).lower()
    channels = "max_input_channels" if kind == "input" else "max_output_channels"
    for index, info in enumerate(sd.query_devices()):
        if wanted in str(info["name"]).lower() and info[channels] > 0:
            return index
    raise NoAudioDevice(f"no {kind} device matches '{device}'",
                        hint="list them with: llm voice --devices")


def _no_device(kind: str, exc: BaseException) -> NoAudioDevice:
    what = "microphone (audio input)" if kind == "input" else "speaker (audio output)"
    reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
    hint = ("on a machine without sound, transcribe a file: llm transcribe FILE"
            if kind == "input" else "write a file instead: llm speak -o out.wav")
    return NoAudioDevice(f"no {what} device is available ({reason})", hint=hint)


def list_devices() -> list[dict[str, Any]]:
    sd = sd_module()
    try:
        devices = sd.query_devices()
        default_in, default_out = sd.default.device
    except Exception as exc:  # PortAudioError: no host API at all
        raise _no_device("input", exc) from None
    return [{"index": i, "name": d["name"], "inputs": d["max_input_channels"],
             "outputs": d["max_output_channels"],
             "default_samplerate": d["default_samplerate"],
             "default": "input" if i == default_in else "output" if i == default_out else ""}
            for i, d in enumerate(devices)]


class Pacer:
    """Sleeps so that audio moves no faster than the clock (a no-op on real devices)."""

    def __init__(self, rate: int, ahead: float = 0.0) -> None:
        self.rate = rate
        self.ahead = ahead
        self.start = time.monotonic()
        self.samples = 0

    def advance(self, samples: int, stop: threading.Event | None = None) -> None:
        self.samples += samples
        due = self.start + self.samples / self.rate - self.ahead
        wait = due - time.monotonic()
        if wait > 0:
            if stop is not None:
                stop.wait(wait)
            else:
                time.sleep(wait)
        elif wait < -1.0:  # fell behind (a stall): do not rush to catch up
            self.start = time.monotonic() - self.samples / self.rate


class Microphone:
    """Mono float32 blocks at 16 kHz from an input device, captured by a background
    thread into a queue so that nothing is lost while the caller transcribes or thinks."""

    def __init__(self, device: str | int | None = None, block: int = BLOCK) -> None:
        self.sd = sd_module()
        self.device = _pick(self.sd, device, "input")
        self.block = block
        self.rate = SAMPLE_RATE
        self.blocks: queue.Queue[Any] = queue.Queue(maxsize=2000)
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.stream = self._open()
        self.thread = threading.Thread(target=self._capture, name="llmtui-mic", daemon=True)
        self.thread.start()

    def _open(self) -> Any:
        sd = self.sd
        try:
            try:
                stream = sd.InputStream(device=self.device, channels=1, samplerate=SAMPLE_RATE,
                                        dtype="int16", blocksize=self.block)
            except sd.PortAudioError:
                # The device does not take 16 kHz: capture at its own rate, resample.
                info = sd.query_devices(self.device, "input")
                self.rate = int(info["default_samplerate"])
                stream = sd.InputStream(device=self.device, channels=1, samplerate=self.rate,
                                        dtype="int16",
                                        blocksize=self.block * self.rate // SAMPLE_RATE)
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise _no_device("input", exc) from None
        return stream

    def _capture(self) -> None:
        pacer = Pacer(self.rate)
        frames = self.block * self.rate // SAMPLE_RATE
        try:
            while not self.stop_event.is_set():
                data, _overflow = self.stream.read(frames)
                block = from_int16(bytes(data))
                if self.rate != SAMPLE_RATE:
                    block = resample(block, self.rate, SAMPLE_RATE)
                with contextlib.suppress(queue.Full):
                    self.blocks.put_nowait(block)
                pacer.advance(frames, self.stop_event)
        except Exception as exc:  # the device went away
            self.error = exc
        finally:
            self.blocks.put(None)

    def read(self, timeout: float = 5.0) -> Any:
        """The next block; raises NoAudioDevice when capture stopped or stalled."""
        try:
            block = self.blocks.get(timeout=timeout)
        except queue.Empty:
            raise NoAudioDevice("the microphone stopped delivering audio") from None
        if block is None:
            self.blocks.put(None)
            raise NoAudioDevice(f"the microphone stopped: {self.error or 'closed'}")
        return block

    def drain(self) -> None:
        """Drop what was captured so far (stale audio from before a new turn)."""
        with contextlib.suppress(queue.Empty):
            while True:
                block = self.blocks.get_nowait()
                if block is None:
                    self.blocks.put(None)
                    return

    def close(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=2)
        with contextlib.suppress(Exception):
            self.stream.stop()
            self.stream.close()

    def __enter__(self) -> Microphone:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Speaker:
    """Plays 16-bit mono PCM from a queue in its own thread. ``stop()`` cuts it off at
    once (barge-in); ``first_audible`` is when the first non-silent block went out."""

    def __init__(self, device: str | int | None = None) -> None:
        self.sd = sd_module()
        self.device = _pick(self.sd, device, "output")
        self.pieces: queue.Queue[bytes | None] = queue.Queue()
        self.stream: Any = None
        self.rate = 0
        self.device_rate = 0
        self.thread: threading.Thread | None = None
        self.stopped = threading.Event()
        self.idle = threading.Event()
        self.idle.set()
        self.first_audible: float | None = None
        self.played_seconds = 0.0
        self.on_block: Callable[[Any], None] | None = None
        self.check()

    def check(self) -> None:
        """Fail now, with one line, when there is no output device."""
        try:
            self.sd.check_output_settings(device=self.device, channels=1, dtype="int16")
        except (self.sd.PortAudioError, ValueError) as exc:
            raise _no_device("output", exc) from None

    def _open(self, rate: int) -> None:
        sd = self.sd
        try:
            try:
                stream = sd.OutputStream(device=self.device, channels=1, samplerate=rate,
                                         dtype="int16")
                self.device_rate = rate
            except sd.PortAudioError:
                info = sd.query_devices(self.device, "output")
                self.device_rate = int(info["default_samplerate"])
                stream = sd.OutputStream(device=self.device, channels=1,
                                         samplerate=self.device_rate, dtype="int16")
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise _no_device("output", exc) from None
        self.stream, self.rate = stream, rate

    def play(self, pcm16: bytes, sample_rate: int) -> None:
        """Queue audio; the first call opens the device at the voice's rate."""
        if self.stream is None or sample_rate != self.rate:
            if self.stream is not None:
                self.finish()
                self._close_stream()
            self._open(sample_rate)
            self.stopped.clear()
            self.thread = threading.Thread(target=self._run, name="llmtui-speaker",
                                           daemon=True)
            self.thread.start()
        if self.stopped.is_set():
            return
        self.idle.clear()
        self.pieces.put(pcm16)

    def _run(self) -> None:
        import numpy as np

        pacer = Pacer(self.device_rate, ahead=AHEAD)
        step = max(1, self.device_rate // 20)  # 50 ms blocks: a stop takes effect fast
        while True:
            try:
                piece = self.pieces.get(timeout=0.05)
            except queue.Empty:
                self.idle.set()
                pacer = Pacer(self.device_rate, ahead=AHEAD)  # a gap is not a debt
                continue
            if piece is None:
                self.idle.set()
                return
            samples = np.frombuffer(piece, dtype="<i2")
            if self.device_rate != self.rate:
                samples = (resample(samples.astype(np.float32) / 32768.0, self.rate,
                                    self.device_rate) * 32767).astype("<i2")
            for i in range(0, samples.size, step):
                if self.stopped.is_set():
                    break
                block = samples[i:i + step]
                try:
                    self.stream.write(block.reshape(-1, 1))
                except Exception:
                    self.stopped.set()
                    break
                level = rms(block.astype(np.float32) / 32768.0)
                if self.first_audible is None and level > AUDIBLE_RMS:
                    self.first_audible = time.monotonic()
                self.played_seconds += block.size / self.device_rate
                if self.on_block is not None:
                    self.on_block(level)
                pacer.advance(block.size, self.stopped)
            if self.pieces.empty():
                self.idle.set()

    @property
    def playing(self) -> bool:
        return not self.idle.is_set()

    def finish(self, timeout: float | None = None) -> None:
        """Wait until everything queued has been played (or stopped)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.playing and not self.stopped.is_set():
            if deadline is not None and time.monotonic() > deadline:
                return
            time.sleep(0.02)
        if not self.stopped.is_set():
            time.sleep(AHEAD)  # what is in the device's buffer still has to come out

    def stop(self) -> None:
        """Barge-in: drop what is queued and stop at the next 50 ms block."""
        self.stopped.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self.pieces.get_nowait()
        self.idle.set()

    def resume(self) -> None:
        """Accept audio again after a stop (the next answer)."""
        self.stopped.clear()
        self.first_audible = None

    def _close_stream(self) -> None:
        if self.thread is not None:
            self.pieces.put(None)
            self.thread.join(timeout=2)
            self.thread = None
        if self.stream is not None:
            with contextlib.suppress(Exception):
                self.stream.stop()
                self.stream.close()
            self.stream = None

    def close(self) -> None:
        self._close_stream()

    def __enter__(self) -> Speaker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
