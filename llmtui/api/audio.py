"""Speech endpoints: transcription (faster-whisper) and speech (Piper), in OpenAI's shapes
and in the daemon's own NDJSON shape.

    POST /v1/audio/transcriptions   multipart (file, model, language, prompt,
                                    response_format, temperature, timestamp_granularities[],
                                    stream) -> json | text | srt | vtt | verbose_json | SSE
    POST /v1/audio/translations     the same, into English
    POST /v1/audio/speech           JSON (model, input, voice, response_format, speed,
                                    stream_format) -> audio bytes streamed sentence by
                                    sentence (wav, pcm, mp3, flac, opus, aac) or SSE
    POST /api/x/transcribe          JSON {"path"} (local socket only) or {"audio": base64},
                                    or the raw audio as the body (options in the query
                                    string) -> NDJSON: info, one line per segment, done
    POST /api/x/speak               JSON {"input", "voice", "rate"} -> NDJSON lines of
                                    base64 16-bit PCM, then done

Uploads are streamed to a private spool folder on disk (bounded by ``max_audio_upload``),
probed before a model is loaded, and handed to the worker by path; they are deleted when
the response ends. OpenAI's model and voice names (whisper-1, tts-1, alloy, ...) map to
the configured ``speech_model`` and ``voice``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from llmtui.api.common import BodyTooLarge, RequestTimeout, error_body, first_event, now_rfc3339
from llmtui.api.ollama import NDJSON, OllamaAPI
from llmtui.api.openai import OpenAIAPI, openai_error_body
from llmtui.api.security import over_tcp
from llmtui.config import parse_size
from llmtui.errors import InvalidInput, LlmtuiError
from llmtui.models.names import ModelName
from llmtui.voice import formats

#: OpenAI's names that mean "the configured model" here.
OPENAI_STT = {"whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe",
              "gpt-4o-transcribe-diarize"}
OPENAI_TTS = {"tts-1", "tts-1-hd", "gpt-4o-mini-tts"}
OPENAI_VOICES = {"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage",
                 "shimmer", "verse", "marin", "cedar"}
STT_FORMATS = ("ctranslate2", "whisper")
TTS_FORMATS = ("piper",)
MAX_FIELD = 64 * 1024
SPOOL_MAX_AGE = 24 * 3600


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    if value is None:
        return False
    raise InvalidInput(f"'{name}' must be true or false")


def _number(value: Any, name: str, lo: float, hi: float) -> float:
    try:
        num = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"'{name}' must be a number") from None
    if not lo <= num <= hi:  # also refuses NaN
        raise InvalidInput(f"'{name}' must be from {lo:g} to {hi:g}")
    return num


def transcribe_options(raw: dict[str, Any]) -> dict[str, Any]:
    """Checked options for the worker's transcribe operation."""
    out: dict[str, Any] = {}
    lang = raw.get("language")
    if lang not in (None, ""):
        if not isinstance(lang, str) or not 2 <= len(lang.strip()) <= 8 or \
                not lang.strip().replace("-", "").isalpha():
            raise InvalidInput("'language' must be a language code such as en or de")
        out["language"] = lang.strip().lower()
    for key in ("translate", "word_timestamps", "vad", "timestamps"):
        if raw.get(key) is not None:
            out[key] = _bool(raw[key], key)
    if raw.get("beam_size") not in (None, ""):
        out["beam_size"] = int(_number(raw["beam_size"], "beam_size", 1, 10))
    if raw.get("temperature") not in (None, ""):
        out["temperature"] = _number(raw["temperature"], "temperature", 0, 1)
    prompt = raw.get("prompt")
    if prompt not in (None, ""):
        if not isinstance(prompt, str) or len(prompt) > 2000:
            raise InvalidInput("'prompt' must be text of at most 2000 characters")
        out["prompt"] = prompt
    return out


@dataclass
class Upload:
    path: Path
    filename: str
    size: int


@dataclass
class Form:
    fields: dict[str, list[str]] = field(default_factory=dict)
    upload: Upload | None = None

    def get(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else None

    def all(self, name: str) -> list[str]:
        return self.fields.get(name, []) + self.fields.get(name + "[]", [])


class AudioAPI:
    def __init__(self, ollama: OllamaAPI) -> None:
        self.o = ollama
        self.engine = ollama.engine
        cfg = self.engine.settings.config
        self.max_upload = parse_size(cfg.get("max_audio_upload"))
        self.spool_dir = self.engine.settings.paths.cache_dir / "audio-uploads"

    def routes(self) -> list[Route]:
        oe, e = OpenAIAPI.endpoint, self.o.endpoint
        return [
            Route("/v1/audio/transcriptions", oe(self.openai_transcriptions), methods=["POST"]),
            Route("/v1/audio/translations", oe(self.openai_translations), methods=["POST"]),
            Route("/v1/audio/speech", oe(self.openai_speech), methods=["POST"]),
            Route("/api/x/transcribe", e(self.transcribe), methods=["POST"]),
            Route("/api/x/speak", e(self.speak), methods=["POST"]),
        ]

    # -- models ------------------------------------------------------------------------------

    def _pick(self, candidates: list[Any], openai_names: set[str], setting: str,
              formats_ok: tuple[str, ...], what: str) -> str:
        """The installed model a request names, or the configured default for OpenAI's
        names and for none at all; a model of the wrong kind is refused."""
        store = self.engine.store
        chosen: str | None = None
        for cand in candidates:
            if not isinstance(cand, str) or not cand.strip():
                continue
            if cand.strip().lower() in openai_names:
                continue
            name = ModelName.parse(cand)
            if store.exists(name) or chosen is None:
                chosen = str(name)
            if store.exists(name):
                break
        if chosen is None:
            chosen = str(ModelName.parse(str(self.engine.settings.config.get(setting))))
        manifest = store.get(chosen)  # a missing model: 404 with the pull hint
        if manifest.format not in formats_ok:
            raise InvalidInput(f"'{chosen}' is not a {what} model",
                               hint=f"set one with: llm config set {setting} NAME")
        return chosen

    def speech_model(self, *names: Any) -> str:
        return self._pick(list(names), OPENAI_STT, "speech_model", STT_FORMATS,
                          "speech-to-text")

    def voice_model(self, *names: Any) -> str:
        return self._pick(list(names), OPENAI_TTS | OPENAI_VOICES, "voice", TTS_FORMATS,
                          "text-to-speech")

    # -- uploads -----------------------------------------------------------------------------

    def _spool_file(self) -> tuple[Any, Path]:
        self.spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        cutoff = time.time() - SPOOL_MAX_AGE
        for old in self.spool_dir.glob("upload-*"):
            with contextlib.suppress(OSError):
                if old.stat().st_mtime < cutoff:
                    old.unlink()
        fd, name = tempfile.mkstemp(dir=self.spool_dir, prefix="upload-")
        return os.fdopen(fd, "wb"), Path(name)

    async def _chunks(self, request: Request) -> AsyncIterator[bytes]:
        """The body as it arrives: cut off when it stops arriving or grows too large."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_upload:
            raise BodyTooLarge(f"the upload is too large ({declared} bytes; the limit is "
                               f"{self.max_upload}, see max_audio_upload)")
        stream = request.stream().__aiter__()
        size = 0
        while True:
            try:
                chunk = await asyncio.wait_for(anext(stream), self.o.limits.read_timeout)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise RequestTimeout("the upload stalled (nothing arrived for "
                                     f"{self.o.limits.read_timeout:g} s)") from None
            except ClientDisconnect:
                raise InvalidInput("the client went away during the upload") from None
            size += len(chunk)
            if size > self.max_upload:
                raise BodyTooLarge(f"the upload is larger than {self.max_upload} bytes "
                                   "(see max_audio_upload)")
            yield chunk

    async def spool_body(self, request: Request, filename: str = "audio") -> Upload:
        out, path = self._spool_file()
        size = 0
        try:
            with out:
                async for chunk in self._chunks(request):
                    await asyncio.to_thread(out.write, chunk)
                    size += len(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return Upload(path, filename, size)

    async def read_form(self, request: Request) -> Form:
        """A multipart form, its one file streamed to the spool, its fields kept."""
        from llmtui.errors import require

        require("python_multipart", "server", "audio uploads")
        from python_multipart.multipart import MultipartParser, parse_options_header

        ctype, params = parse_options_header(request.headers.get("content-type", ""))
        if ctype != b"multipart/form-data" or b"boundary" not in params:
            raise InvalidInput("send the audio as multipart/form-data with a 'file' field")
        form = Form()
        state: dict[str, Any] = {"name": "", "filename": None, "data": bytearray(),
                                 "hname": b"", "hvalue": b"", "disp": b""}
        pending: list[bytes] = []
        sink: dict[str, Any] = {"out": None}

        def part_begin() -> None:
            state.update(name="", filename=None, data=bytearray(), disp=b"")

        def header_field(data: bytes, start: int, end: int) -> None:
            state["hname"] += data[start:end]

        def header_value(data: bytes, start: int, end: int) -> None:
            state["hvalue"] += data[start:end]

        def header_end() -> None:
            if state["hname"].lower() == b"content-disposition":
                state["disp"] = state["hvalue"]
            state["hname"], state["hvalue"] = b"", b""

        def headers_finished() -> None:
            _, opts = parse_options_header(state["disp"])
            state["name"] = opts.get(b"name", b"").decode("utf-8", "replace")
            if b"filename" in opts:
                if form.upload is not None:
                    raise InvalidInput("send one audio file per request")
                out, path = self._spool_file()
                sink["out"] = out
                name = opts[b"filename"].decode("utf-8", "replace")
                form.upload = Upload(path, os.path.basename(name) or "audio", 0)
                state["filename"] = name

        def part_data(data: bytes, start: int, end: int) -> None:
            if state["filename"] is not None:
                pending.append(bytes(data[start:end]))
            else:
                state["data"] += data[start:end]
                if len(state["data"]) > MAX_FIELD:
                    raise InvalidInput(f"form field '{state['name']}' is too long")

        def part_end() -> None:
            if state["filename"] is None:
                form.fields.setdefault(state["name"], []).append(
                    state["data"].decode("utf-8", "replace"))

        parser = MultipartParser(params[b"boundary"], {
            "on_part_begin": part_begin, "on_part_data": part_data, "on_part_end": part_end,
            "on_header_field": header_field, "on_header_value": header_value,
            "on_header_end": header_end, "on_headers_finished": headers_finished,
        })
        try:
            async for chunk in self._chunks(request):
                try:
                    parser.write(chunk)
                except LlmtuiError:
                    raise
                except Exception:
                    raise InvalidInput("the multipart form is malformed") from None
                if pending:
                    data = b"".join(pending)
                    pending.clear()
                    await asyncio.to_thread(sink["out"].write, data)
                    assert form.upload is not None
                    form.upload.size += len(data)
            try:
                parser.finalize()
            except Exception:
                raise InvalidInput("the multipart form is malformed") from None
        except BaseException:
            if form.upload is not None:
                form.upload.path.unlink(missing_ok=True)
            raise
        finally:
            if sink["out"] is not None:
                sink["out"].close()
        return form

    # -- transcription -----------------------------------------------------------------------

    async def start_transcription(self, model: str, upload: Upload, options: dict[str, Any],
                                  keep_alive: Any = None
                                  ) -> tuple[Any, AsyncGenerator[dict[str, Any], None],
                                             dict[str, Any] | None]:
        """Probe the audio (a bad file fails before any model loads), then start the worker:
        (audio info, events, first event)."""
        from llmtui.voice.audio import probe

        info = await asyncio.to_thread(probe, upload.path, upload.filename)
        events = self.engine.run(model, "transcribe",
                                 {"path": str(upload.path), "options": options}, keep_alive)
        first = await first_event(events)
        return info, events, first

    @staticmethod
    async def _events(first: dict[str, Any] | None,
                      events: AsyncGenerator[dict[str, Any], None]
                      ) -> AsyncIterator[dict[str, Any]]:
        event = first
        while event is not None:
            yield event
            event = await anext(events, None)

    async def collect(self, first: dict[str, Any] | None,
                      events: AsyncGenerator[dict[str, Any], None]
                      ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        """(info, segments, done) of a whole transcription."""
        info: dict[str, Any] = {}
        segments: list[dict[str, Any]] = []
        done: dict[str, Any] = {}
        try:
            async for event in self._events(first, events):
                if "segment" in event:
                    segments.append(event["segment"])
                elif "info" in event:
                    info = event["info"]
                elif event.get("type") == "done":
                    done = event
        finally:
            await events.aclose()
        return info, segments, done

    def _cleanup(self, upload: Upload | None, keep: bool = False) -> None:
        if upload is not None and not keep:
            upload.path.unlink(missing_ok=True)

    async def transcribe(self, request: Request) -> Response:
        """Transcribe audio: a local path, base64 audio, or the raw body. NDJSON stream."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        upload: Upload | None = None
        own = True
        if ctype == "application/json":
            data = await self.o.json(request)
            if isinstance(data.get("path"), str):
                if over_tcp(request.scope):
                    return JSONResponse({"error": "'path' is read only over the local socket; "
                                         "send the audio itself from the network",
                                         "code": "forbidden"}, status_code=403)
                path = Path(data["path"])
                if not path.is_file():
                    raise InvalidInput(f"no such file: {data['path']}")
                upload, own = Upload(path, path.name, path.stat().st_size), False
            elif isinstance(data.get("audio"), str):
                try:
                    raw = base64.b64decode(data["audio"], validate=True)
                except (binascii.Error, ValueError):
                    raise InvalidInput("'audio' is not base64") from None
                out, spooled = self._spool_file()
                with out:
                    out.write(raw)
                upload = Upload(spooled, str(data.get("filename") or "audio"), len(raw))
            else:
                raise InvalidInput("send 'path' or 'audio' (base64), or the audio as the body")
            params: dict[str, Any] = {k: v for k, v in data.items() if k not in ("audio",)}
            params.update(data.get("options") or {})
        else:
            params = dict(request.query_params)
            upload = await self.spool_body(request, params.get("filename") or "stdin")
        try:
            model = self.speech_model(params.get("model"))
            if upload.size == 0:
                raise InvalidInput(f"{upload.filename} is empty")
            options = transcribe_options(params)
            stream = params.get("stream", True) not in (False, "false", "0")
            info, events, first = await self.start_transcription(model, upload, options,
                                                                 params.get("keep_alive"))
        except BaseException:
            self._cleanup(upload, not own)
            raise
        base = {"model": model}
        summary = {"duration": info.duration, "truncated": info.truncated,
                   "sample_rate": info.sample_rate, "channels": info.channels,
                   "codec": info.codec}
        if not stream:
            try:
                meta, segments, done = await self.collect(first, events)
            finally:
                self._cleanup(upload, not own)
            return JSONResponse({**base, "created_at": now_rfc3339(),
                                 "text": formats.join_text(segments), "segments": segments,
                                 **summary, **self._done_fields(meta, done)})

        async def body() -> AsyncIterator[bytes]:
            meta: dict[str, Any] = {}
            count = 0
            try:
                async for event in self._events(first, events):
                    if "info" in event:
                        meta = event["info"]
                        yield _line({**base, "created_at": now_rfc3339(),
                                     "info": {**meta, **summary}})
                    elif "segment" in event:
                        count += 1
                        yield _line({**base, "segment": event["segment"]})
                    elif event.get("type") == "done":
                        yield _line({**base, "created_at": now_rfc3339(), "done": True,
                                     **summary, **self._done_fields(meta, event)})
            except LlmtuiError as exc:
                yield _line(error_body(exc))
            finally:
                await events.aclose()
                self._cleanup(upload, not own)
        return StreamingResponse(body(), media_type=NDJSON)

    @staticmethod
    def _done_fields(info: dict[str, Any], done: dict[str, Any]) -> dict[str, Any]:
        return {"language": done.get("language") or info.get("language"),
                "language_probability": done.get("language_probability"),
                "task": done.get("task"), "audio_seconds": done.get("audio_seconds"),
                "seconds": done.get("seconds"), "done_reason": done.get("done_reason")}

    async def openai_transcriptions(self, request: Request) -> Response:
        """OpenAI's transcription endpoint (multipart upload)."""
        return await self._openai_stt(request, translate=False)

    async def openai_translations(self, request: Request) -> Response:
        """OpenAI's translation endpoint: speech in any language to English text."""
        return await self._openai_stt(request, translate=True)

    async def _openai_stt(self, request: Request, translate: bool) -> Response:
        form = await self.read_form(request)
        upload = form.upload
        try:
            if upload is None:
                raise InvalidInput("the form has no 'file'")
            model = self.speech_model(form.get("model"))
            if upload.size == 0:
                raise InvalidInput(f"{upload.filename} is empty")
            fmt = (form.get("response_format") or "json").strip().lower()
            if fmt not in formats.TRANSCRIPT_FORMATS:
                raise InvalidInput("response_format must be one of "
                                   + ", ".join(formats.TRANSCRIPT_FORMATS))
            grains = set(form.all("timestamp_granularities"))
            if grains - {"word", "segment"}:
                raise InvalidInput("timestamp_granularities may hold 'word' and 'segment'")
            raw = {"language": None if translate else form.get("language"),
                   "prompt": form.get("prompt"), "temperature": form.get("temperature"),
                   "translate": translate, "word_timestamps": "word" in grains}
            options = transcribe_options(raw)
            stream = _bool(form.get("stream"), "stream")
            info, events, first = await self.start_transcription(model, upload, options)
        except BaseException:
            self._cleanup(upload)
            raise
        if stream:
            return self._openai_stt_stream(first, events, upload, info)
        try:
            meta, segments, done = await self.collect(first, events)
        finally:
            self._cleanup(upload)
        text = formats.join_text(segments)
        duration = float(info.duration or done.get("audio_seconds") or 0.0)
        usage = {"type": "duration", "seconds": int(-(-duration // 1))}
        if fmt == "json":
            return JSONResponse({"text": text, "usage": usage})
        if fmt == "verbose_json":
            body: dict[str, Any] = {
                "task": "translate" if translate else "transcribe",
                "language": done.get("language") or meta.get("language") or "",
                "duration": duration, "text": text,
                "segments": [{k: v for k, v in s.items() if k != "words"} for s in segments],
                "usage": usage,
            }
            if "word" in set(form.all("timestamp_granularities")):
                body["words"] = [w for s in segments for w in s.get("words", [])]
            return JSONResponse(body)
        media = "text/vtt" if fmt == "vtt" else "text/plain"
        return PlainTextResponse(formats.render_transcript(fmt, segments), media_type=media)

    def _openai_stt_stream(self, first: dict[str, Any] | None,
                           events: AsyncGenerator[dict[str, Any], None], upload: Upload,
                           info: Any) -> Response:
        """SSE: transcript.text.delta per segment, then transcript.text.done."""
        async def body() -> AsyncIterator[bytes]:
            parts: list[str] = []
            try:
                async for event in self._events(first, events):
                    if "segment" in event:
                        text = event["segment"]["text"]
                        parts.append(text)
                        yield _sse({"type": "transcript.text.delta", "delta": text})
                duration = float(info.duration or 0.0)
                yield _sse({"type": "transcript.text.done", "text": "".join(parts).strip(),
                            "usage": {"type": "duration",
                                      "seconds": int(-(-duration // 1))}})
            except LlmtuiError as exc:
                yield _sse(openai_error_body(exc))
            finally:
                await events.aclose()
                self._cleanup(upload)
        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    # -- speech ------------------------------------------------------------------------------

    async def start_speech(self, model: str, text: str, rate: float, speaker: Any,
                           keep_alive: Any = None
                           ) -> tuple[AsyncGenerator[dict[str, Any], None],
                                      dict[str, Any] | None]:
        payload: dict[str, Any] = {"text": text, "rate": rate}
        if speaker is not None:
            payload["speaker"] = int(_number(speaker, "speaker", 0, 10_000))
        events = self.engine.run(model, "speak", payload, keep_alive)
        return events, await first_event(events)

    def _speech_text(self, value: Any) -> str:
        text = self.o.text(value, "input")
        if not text.strip():
            raise InvalidInput("'input' is empty: nothing to say")
        return text

    async def speak(self, request: Request) -> Response:
        """Synthesize speech: NDJSON lines of base64 16-bit mono PCM, then done."""
        data = await self.o.json(request)
        text = self._speech_text(data.get("input", data.get("text")))
        model = self.voice_model(data.get("voice"), data.get("model"))
        rate = _number(data.get("rate", 1.0), "rate", 0.25, 4.0)
        events, first = await self.start_speech(model, text, rate, data.get("speaker"),
                                                data.get("keep_alive"))
        base = {"model": model}

        async def body() -> AsyncIterator[bytes]:
            try:
                async for event in self._events(first, events):
                    if "audio" in event:
                        yield _line({**base, "audio": event["audio"],
                                     "sample_rate": event.get("sample_rate"),
                                     "sentence": event.get("sentence")})
                    elif event.get("type") == "done":
                        yield _line({**base, "created_at": now_rfc3339(), "done": True,
                                     **{k: v for k, v in event.items()
                                        if k not in ("type", "id")}})
            except LlmtuiError as exc:
                yield _line(error_body(exc))
            finally:
                await events.aclose()
        return StreamingResponse(body(), media_type=NDJSON)

    async def openai_speech(self, request: Request) -> Response:
        """OpenAI's speech endpoint: audio streamed as each sentence is synthesized."""
        data = await self.o.json(request)
        text = self._speech_text(data.get("input"))
        fmt = str(data.get("response_format") or "mp3").lower()
        if fmt not in formats.SPEECH_FORMATS:
            raise InvalidInput("response_format must be one of "
                               + ", ".join(formats.SPEECH_FORMATS))
        sse = data.get("stream_format") == "sse"
        if data.get("stream_format") not in (None, "audio", "sse"):
            raise InvalidInput("stream_format must be 'audio' or 'sse'")
        model = self.voice_model(data.get("voice"), data.get("model"))
        speed = _number(data.get("speed", 1.0), "speed", 0.25, 4.0)
        events, first = await self.start_speech(model, text, speed, data.get("speaker"))
        rate = int((first or {}).get("sample_rate") or 22050)
        try:
            encoder = formats.SpeechEncoder(fmt, rate)
        except BaseException:
            await events.aclose()
            raise

        async def body() -> AsyncIterator[bytes]:
            try:
                async for event in self._events(first, events):
                    if "audio" in event:
                        out = await asyncio.to_thread(encoder.feed, formats.audio_of(event))
                        if out:
                            yield _speech_sse(out) if sse else out
                tail = await asyncio.to_thread(encoder.finish)
                if tail:
                    yield _speech_sse(tail) if sse else tail
                if sse:
                    yield _sse({"type": "speech.audio.done",
                                "usage": {"input_tokens": 0, "output_tokens": 0,
                                          "total_tokens": 0}})
            except LlmtuiError as exc:
                if sse:
                    yield _sse(openai_error_body(exc))
                # a raw audio stream cannot carry an error: it ends early (logged)
            finally:
                await events.aclose()
        headers = {"X-Sample-Rate": str(formats.PCM_RATE if fmt == "pcm" else rate)}
        media = "text/event-stream" if sse else encoder.media_type
        return StreamingResponse(body(), media_type=media, headers=headers)


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")


def _sse(obj: Any) -> bytes:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()


def _speech_sse(audio: bytes) -> bytes:
    return _sse({"type": "speech.audio.delta", "audio": base64.b64encode(audio).decode()})


__all__ = ["AudioAPI", "transcribe_options"]
