"""Voice in the chat: push-to-talk into the message box, and replies read aloud.

Both are off until their model is installed (the message says which `llm pull` gets it).
The audio and the daemon calls run on threads (llmtui.voice, which knows nothing of
Textual); the app only posts what comes back as messages.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from llmtui.errors import LlmtuiError

STT_FORMATS = ("ctranslate2", "whisper")
TTS_FORMATS = ("piper",)


class ChatVoice:
    """The chat's microphone and speaker, created on first use."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.read_aloud = False
        self.stop_recording = threading.Event()
        self.recording = False
        self.speaker: Any = None
        self.out: Any = None
        self.splitter: Any = None

    def _model(self, setting: str, formats: tuple[str, ...], what: str) -> tuple[str, str | None]:
        """(model name, None) when installed, else (name, how to get it)."""
        name = str(self.settings.config.get(setting))
        try:
            manifest = self.settings.store().get(name)
        except LlmtuiError:
            return name, f"{what} needs the model {name}: run `llm pull {name}` " \
                         f"(or set another with `llm config set {setting} NAME`)"
        if manifest.format not in formats:
            return name, f"{name} is not a {what} model (llm config set {setting} NAME)"
        return name, None

    def speech_missing(self) -> str | None:
        return self._model("speech_model", STT_FORMATS, "push-to-talk")[1]

    def voice_missing(self) -> str | None:
        return self._model("voice", TTS_FORMATS, "reading aloud")[1]

    # -- push-to-talk ------------------------------------------------------------------------

    def record(self, on_level: Callable[[float, bool], None] | None = None) -> str:
        """Record until a pause (or ``stop_recording``) and transcribe. Blocking: run it on
        a thread. Raises LlmtuiError with one line for the user."""
        from llmtui.daemon.client import Client
        from llmtui.voice.devices import Microphone
        from llmtui.voice.loop import transcribe_pcm
        from llmtui.voice.vad import Recorder, VadConfig

        model = self._model("speech_model", STT_FORMATS, "push-to-talk")[0]
        self.stop_recording.clear()
        self.recording = True
        try:
            with Microphone() as mic:
                recorder = Recorder(mic, VadConfig(), max_seconds=60, wait_seconds=15,
                                    on_level=on_level, stop=self.stop_recording)
                utterance = recorder.record()
        finally:
            self.recording = False
        if utterance is None:
            raise LlmtuiError("no speech heard")
        with Client(settings=self.settings) as client:
            text = transcribe_pcm(client, utterance.audio, model, beam_size=5)
        if not text:
            raise LlmtuiError("nothing was understood")
        return text

    # -- reading aloud ----------------------------------------------------------------------

    def reply_started(self) -> None:
        """A reply begins: open the speaker (once) and a synthesis queue for it."""
        if not self.read_aloud:
            return
        from llmtui.daemon.client import Client
        from llmtui.voice.devices import Speaker
        from llmtui.voice.loop import SpeechOut
        from llmtui.voice.sentences import SentenceSplitter

        self.stop()
        if self.speaker is None:
            self.speaker = Speaker()  # NoAudioDevice: the caller reports it, reading stops
        self.speaker.resume()
        voice = self._model("voice", TTS_FORMATS, "reading aloud")[0]
        self.out = SpeechOut(Client(settings=self.settings), voice, self.speaker)
        self.splitter = SentenceSplitter(eager_first=True)

    def feed(self, text: str) -> None:
        if self.out is not None and self.splitter is not None:
            for sentence in self.splitter.feed(text):
                self.out.say(sentence)

    def reply_ended(self) -> None:
        """The reply is complete: say the rest; playback goes on in the background."""
        if self.out is not None and self.splitter is not None:
            for sentence in self.splitter.flush():
                self.out.say(sentence)
            self.out.end()
        self.splitter = None

    def stop(self) -> None:
        """Stop talking now (Esc, a new reply, reading turned off)."""
        if self.out is not None:
            self.out.cancel()
            self.out = None
        if self.speaker is not None:
            self.speaker.stop()
        self.splitter = None

    @property
    def speaking(self) -> bool:
        return self.speaker is not None and self.speaker.playing

    def close(self) -> None:
        self.stop()
        self.stop_recording.set()
        if self.speaker is not None:
            with contextlib.suppress(Exception):
                self.speaker.close()
            self.speaker = None
