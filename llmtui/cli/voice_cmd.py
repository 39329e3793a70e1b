"""Voice commands: transcribe, speak, listen, voice.

Files and recordings are transcribed by the daemon's Whisper worker; speech is
synthesized by its Piper worker; the microphone and the speaker belong to this process.
stdout carries the data (the transcript, or WAV bytes with ``-o -``); the level meter,
status and timings go to stderr.
"""

from __future__ import annotations

import codecs
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from llmtui.cli.output import info
from llmtui.errors import InvalidInput, LlmtuiError

DEFAULT_VOICE_SYSTEM = (
    "You are a helpful voice assistant. Your answers are spoken aloud: reply in one to "
    "three short sentences of plain speech, with no lists, code or Markdown.")
#: A spoken answer is short unless asked otherwise (--max-tokens).
VOICE_MAX_TOKENS = 200


# -- models --------------------------------------------------------------------------------


def _settings() -> Any:
    from llmtui.config import Settings

    return Settings.load()


def installed(name: str | None, setting: str, formats: tuple[str, ...], what: str) -> str:
    """The model to use (the setting's when none is named), checked to be installed and of
    the right kind, before any device or daemon is touched."""
    from llmtui.errors import ModelNotFound
    from llmtui.models.catalog import load_catalog
    from llmtui.models.names import ModelName

    settings = _settings()
    model = str(ModelName.parse(name or str(settings.config.get(setting))))
    try:
        manifest = settings.store().get(model)
    except ModelNotFound:
        if model not in load_catalog():
            raise
        raise ModelNotFound(f"the {what} model '{model}' is not installed",
                            hint=f"pull it with: llm pull {model}") from None
    if manifest.format not in formats:
        raise InvalidInput(f"'{model}' is not a {what} model",
                           hint=f"choose one with --{'voice' if setting == 'voice' else 'model'}"
                           f" or: llm config set {setting} NAME")
    return model


def speech_model(name: str | None) -> str:
    return installed(name, "speech_model", ("ctranslate2", "whisper"), "speech-to-text")


def voice_model(name: str | None) -> str:
    return installed(name, "voice", ("piper",), "text-to-speech (voice)")


# -- transcribe ----------------------------------------------------------------------------

FORMATS = ("text", "srt", "vtt", "json")


def _stdin_chunks() -> Iterator[bytes]:
    fd = sys.stdin.fileno()
    while chunk := os.read(fd, 1 << 16):
        yield chunk


def transcribe(
    files: list[str] = typer.Argument(..., help="Audio files (WAV, FLAC, MP3, OGG, ...), "
                                      "or - for stdin.", show_default=False),
    model: str | None = typer.Option(None, "--model", "-m",
                                     help="Speech model (default: the speech_model setting)."),
    language: str | None = typer.Option(None, "--language", "-l",
                                        help="Language code, e.g. en (default: detect)."),
    fmt: str = typer.Option("text", "--format", "-f", help="text, srt, vtt or json."),
    words: bool = typer.Option(False, "--word-timestamps",
                               help="Times for each word (in --format json)."),
    vad: bool = typer.Option(False, "--vad", help="Skip silence (Silero VAD) before decoding."),
    translate: bool = typer.Option(False, "--translate",
                                   help="Translate into English (multilingual models)."),
    beam_size: int | None = typer.Option(None, "--beam-size", min=1, max=10,
                                         help="Beam size (default 5; 1 is faster)."),
    prompt: str | None = typer.Option(None, "--prompt",
                                      help="Words or context to expect (names, terms)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Timings on stderr."),
) -> None:
    """Transcribe audio files; segments are printed as they are decoded."""
    if fmt not in FORMATS:
        raise InvalidInput(f"--format must be one of {', '.join(FORMATS)}, not '{fmt}'")
    if files.count("-") > 1:
        raise InvalidInput("stdin (-) can be given only once")
    for name in files:
        if name == "-":
            if sys.stdin is None or sys.stdin.isatty():
                raise InvalidInput("- reads audio from stdin, but stdin is a terminal")
            continue
        path = Path(name)
        if not path.exists():
            raise InvalidInput(f"no such file: {name}")
        if not path.is_file():
            raise InvalidInput(f"not a file: {name}")
    name = speech_model(model)
    options = {"language": language, "translate": translate or None,
               "word_timestamps": words or None, "vad": vad or None, "beam_size": beam_size,
               "prompt": prompt}
    from llmtui.cli.session import connect

    with connect() as client:
        for i, file in enumerate(files):
            if len(files) > 1 and fmt != "json":
                _out(("\n" if i else "") + f"==> {file} <==\n")
            _transcribe_one(client, name, file, fmt, options, verbose)


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _transcribe_one(client: Any, model: str, file: str, fmt: str, options: dict[str, Any],
                    verbose: bool) -> None:
    from llmtui.voice import formats

    if file == "-":
        events = client.transcribe(data=_stdin_chunks(), model=model, filename="stdin",
                                   **options)
    else:
        events = client.transcribe(file, model=model, **options)
    segments: list[dict[str, Any]] = []
    head: dict[str, Any] = {}
    done: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        if fmt == "vtt":
            _out(formats.VTT_HEADER)
        for event in events:
            if "info" in event:
                head = event["info"]
                if head.get("truncated"):
                    info(f"note: {file} is cut short: its header promises more audio than "
                         "it holds; transcribing what is there")
            elif "segment" in event:
                seg = event["segment"]
                segments.append(seg)
                if fmt == "text":
                    _out(seg["text"].strip() + "\n")
                elif fmt == "srt":
                    _out(formats.srt_cue(len(segments), seg))
                elif fmt == "vtt":
                    _out(formats.vtt_cue(seg))
            elif event.get("done"):
                done = event
    finally:
        events.close()
    if fmt == "json":
        _out(json.dumps({"file": file, "model": model, "language": done.get("language"),
                         "duration": done.get("duration"),
                         "text": formats.join_text(segments), "segments": segments},
                        ensure_ascii=False) + "\n")
    if verbose:
        audio = float(done.get("audio_seconds") or 0.0)
        took = float(done.get("seconds") or 0.0)
        rtf = took / audio if audio else 0.0
        info(f"{file}: {audio:.1f} s of audio in {took:.2f} s (real-time factor {rtf:.3f}, "
             f"total {time.perf_counter() - started:.2f} s) · language {done.get('language')}"
             f" · {len(segments)} segments")


# -- speak ---------------------------------------------------------------------------------


def _stdin_text() -> Iterator[str]:
    """stdin as text, piece by piece as it arrives (a model may still be writing)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    fd = sys.stdin.fileno()
    while chunk := os.read(fd, 4096):
        if b"\x00" in chunk:
            raise InvalidInput("stdin contains NUL bytes: binary input is not speech")
        yield decoder.decode(chunk)
    yield decoder.decode(b"", final=True)


def speak(
    text: list[str] = typer.Argument(None, help="What to say (default: stdin, as it arrives).",
                                     show_default=False),
    voice: str | None = typer.Option(None, "--voice",
                                     help="Voice model (default: the voice setting)."),
    rate: float = typer.Option(1.0, "--rate", "-r", help="Speaking rate: 0.5 is slower, "
                               "2 faster (0.25 to 4)."),
    output: str | None = typer.Option(None, "--output", "-o",
                                      help="Write a WAV file instead of playing (- for stdout)."),
    device: str | None = typer.Option(None, "--device",
                                      help="Output device (a number or part of its name)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Timings on stderr."),
) -> None:
    """Say text aloud (or write it to a WAV file), sentence by sentence as it arrives."""
    import math

    if not (0.25 <= rate <= 4.0) or math.isnan(rate):
        raise InvalidInput("--rate must be from 0.25 to 4")
    words = " ".join(text or []).strip()
    if words in ("", "-"):
        if sys.stdin is None or sys.stdin.isatty():
            raise InvalidInput("nothing to say: give the text as an argument or pipe it in")
        source: Iterator[str] = _stdin_text()
    else:
        source = iter([words])
    name = voice_model(voice)
    if output == "-" and sys.stdout.isatty():
        raise InvalidInput("-o - writes WAV bytes to stdout, which is a terminal")
    sink: Any
    speaker = None
    out_file = None
    if output is None:
        from llmtui.voice.devices import Speaker

        speaker = sink = Speaker(device)  # no device: one line, before any work
    else:
        from llmtui.voice.loop import WavSink

        if output != "-" and Path(output).is_dir():
            raise InvalidInput(f"{output} is a folder; give a file name such as out.wav")
        try:
            out_file = sys.stdout.buffer if output == "-" else open(output, "wb")  # noqa: SIM115
        except OSError as exc:
            raise InvalidInput(f"cannot write {output}: {exc.strerror}") from None
        sink = WavSink(out_file)
    try:
        said = _speak_all(source, name, rate, sink, verbose)
        if speaker is not None:
            speaker.finish()
    finally:
        if speaker is not None:
            speaker.close()
        if out_file is not None:
            sink.close()
            if out_file is not sys.stdout.buffer:
                out_file.close()
    if not said:
        if output not in (None, "-"):
            Path(output).unlink(missing_ok=True)
        raise InvalidInput("nothing to say: the text is empty")
    if output not in (None, "-"):
        info(f"wrote {output} ({sink.seconds:.1f} s of audio)")


def _speak_all(source: Iterator[str], voice: str, rate: float, sink: Any,
               verbose: bool) -> bool:
    """Feed the text through the sentence splitter into speech; True if any was said."""
    from llmtui.cli.session import connect
    from llmtui.voice.loop import SpeechOut
    from llmtui.voice.sentences import SentenceSplitter

    splitter = SentenceSplitter()
    said = False
    started = time.monotonic()
    with connect() as client:
        out = SpeechOut(client, voice, sink, rate)
        try:
            for piece in source:
                for sentence in splitter.feed(piece):
                    said = True
                    out.say(sentence)
            for sentence in splitter.flush():
                said = True
                out.say(sentence)
        except BaseException:
            out.cancel()
            raise
        finally:
            out.close()
    if verbose and out.first_audio is not None:
        took = time.monotonic() - started
        info(f"first audio after {(out.first_audio - started) * 1000:.0f} ms · "
             f"{out.audio_seconds:.1f} s of speech synthesized in {out.synth_seconds:.2f} s "
             f"(real-time factor {out.synth_seconds / max(out.audio_seconds, 1e-9):.3f}) · "
             f"total {took:.2f} s")
    return said


# -- listen --------------------------------------------------------------------------------


def _print_devices() -> None:
    from llmtui.cli.output import print_table
    from llmtui.voice.devices import list_devices

    rows = [[str(d["index"]), d["name"], str(d["inputs"]), str(d["outputs"]),
             f"{d['default_samplerate']:.0f}", d["default"]] for d in list_devices()]
    print_table("Audio devices", ["#", "NAME", "IN", "OUT", "RATE", "DEFAULT"], rows)


DeviceOpt = typer.Option(None, "--device", "-d",
                         help="Input device (a number or part of its name; see --devices).")
DevicesOpt = typer.Option(False, "--devices", help="List the audio devices and exit.")


def listen(
    model: str | None = typer.Option(None, "--model", "-m",
                                     help="Speech model (default: the speech_model setting)."),
    language: str | None = typer.Option(None, "--language", "-l",
                                        help="Language code (default: detect)."),
    device: str | None = DeviceOpt,
    max_seconds: float = typer.Option(30.0, "--max-seconds", min=1, max=3600,
                                      help="Stop recording after this long."),
    silence: float = typer.Option(0.7, "--silence", min=0.2, max=10,
                                  help="Seconds of silence that end the recording."),
    wait: float = typer.Option(15.0, "--wait", min=0, max=3600,
                               help="Give up when nobody speaks for this long (0: never)."),
    save: Path | None = typer.Option(None, "--save", help="Also save the recording as WAV."),
    devices: bool = DevicesOpt,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Timings on stderr."),
) -> None:
    """Record from the microphone until a pause (or a key) and print the transcript."""
    if devices:
        _print_devices()
        return
    name = speech_model(model)
    from llmtui.voice.console import ConsoleUI, KeyWatcher
    from llmtui.voice.devices import Microphone
    from llmtui.voice.loop import transcribe_pcm
    from llmtui.voice.vad import Recorder, VadConfig

    ui = ConsoleUI("", verbose=verbose)
    with Microphone(device) as mic, KeyWatcher() as keys:
        recorder = Recorder(mic, VadConfig(silence_seconds=silence), max_seconds=max_seconds,
                            wait_seconds=wait, on_level=ui.level, stop=keys.pressed)
        ui.status("listening" + (" · any key stops" if keys.enabled else ""))
        utterance = recorder.record()
    ui.close()
    if utterance is None:
        raise LlmtuiError(f"no speech heard in {wait:g} s" if wait else "no speech heard",
                          hint="check the input device (llm listen --devices) or speak up")
    if save is not None:
        from llmtui.voice.audio import SAMPLE_RATE, to_int16, wav_bytes

        save.write_bytes(wav_bytes(to_int16(utterance.audio), SAMPLE_RATE))
    from llmtui.cli.session import connect

    with connect() as client:
        started = time.monotonic()
        text = transcribe_pcm(client, utterance.audio, name, language, beam_size=5)
    if verbose:
        info(f"heard {utterance.seconds:.1f} s (stopped by {utterance.stopped_by}) · "
             f"transcribed in {(time.monotonic() - started) * 1000:.0f} ms")
    if not text:
        raise LlmtuiError("nothing was understood in the recording",
                          hint="speak closer to the microphone, or check --device")
    _out(text + "\n")


# -- voice ---------------------------------------------------------------------------------


def voice(
    model: str | None = typer.Argument(None, help="Chat model (default: the default_model "
                                       "setting).", show_default=False),
    speech: str | None = typer.Option(None, "--speech-model",
                                      help="Speech-to-text model (speech_model setting)."),
    voice_name: str | None = typer.Option(None, "--voice",
                                          help="Voice model (default: the voice setting)."),
    system: str | None = typer.Option(None, "--system", "-s", help="System prompt."),
    language: str | None = typer.Option(None, "--language", "-l",
                                        help="Language you speak (default: detect)."),
    rate: float = typer.Option(1.0, "--rate", "-r", help="Speaking rate (0.25 to 4)."),
    device: str | None = DeviceOpt,
    output_device: str | None = typer.Option(None, "--output-device",
                                             help="Output device (a number or part of "
                                             "its name)."),
    push_to_talk: bool = typer.Option(False, "--push-to-talk",
                                      help="Press Enter to talk and Enter to stop."),
    no_barge_in: bool = typer.Option(False, "--no-barge-in",
                                     help="Do not stop talking when you speak over it."),
    silence: float = typer.Option(0.6, "--silence", min=0.2, max=10,
                                  help="Seconds of silence that end what you say."),
    turns: int | None = typer.Option(None, "--turns", min=1,
                                     help="Stop after this many exchanges."),
    temperature: float | None = typer.Option(None, "--temperature", "-t"),
    max_tokens: int | None = typer.Option(None, "--max-tokens", "-n",
                                          help=f"Longest answer (default {VOICE_MAX_TOKENS})."),
    devices: bool = DevicesOpt,
    verbose: bool = typer.Option(False, "--verbose", "-v",
                                 help="Per-turn timings on stderr (the parts of the delay)."),
) -> None:
    """A spoken conversation: listen, transcribe, answer, speak the answer, repeat."""
    if devices:
        _print_devices()
        return
    import math

    if not (0.25 <= rate <= 4.0) or math.isnan(rate):
        raise InvalidInput("--rate must be from 0.25 to 4")
    from llmtui.cli.common import build_options

    opts = build_options(model, system, temperature, None,
                         max_tokens if max_tokens is not None else VOICE_MAX_TOKENS, None, None,
                         False, False, verbose)
    _settings().store().get(opts.model)  # the chat model, checked like the others
    stt = speech_model(speech)
    tts = voice_model(voice_name)
    from llmtui.cli.session import connect
    from llmtui.voice.console import ConsoleUI, line_key
    from llmtui.voice.devices import Microphone, Speaker
    from llmtui.voice.loop import VoiceChat, VoiceSettings
    from llmtui.voice.vad import VadConfig

    settings = VoiceSettings(model=opts.model, speech_model=stt, voice=tts,
                             system=opts.system or DEFAULT_VOICE_SYSTEM, options=opts.options,
                             language=language, rate=rate, barge_in=not no_barge_in,
                             push_to_talk=push_to_talk, vad=VadConfig(silence_seconds=silence))
    ui = ConsoleUI(opts.model, verbose=verbose)
    # The microphone first: on a machine without sound, its error is the one that matters.
    with Microphone(device) as mic, Speaker(output_device) as speaker, connect() as client:
        chat = VoiceChat(client, settings, mic, speaker, ui, wait_key=line_key)
        chat.preload()
        if not push_to_talk:
            info(f"talking with {opts.model} (Ctrl-C ends); speak when ready")
        try:
            chat.run(turns)
        finally:
            chat.close()
            ui.close()


def register(app: typer.Typer) -> None:
    app.command("transcribe")(transcribe)
    app.command("speak")(speak)
    app.command("listen")(listen)
    app.command("voice")(voice)


__all__ = ["register"]
