"""The content-addressed model store: ``blobs/sha256-<hex>`` plus one JSON manifest per name."""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from llmtui.compat import lock_fd
from llmtui.errors import (
    BadModelFile,
    IntegrityError,
    InvalidInput,
    LlmtuiError,
    ModelNotFound,
    NoSpaceError,
)
from llmtui.models.names import ModelName, check_sha256_hex

MANIFEST_SCHEMA = 1
CHUNK = 1 << 20

#: Formats whose model is a folder of files (graph + weights + configs + tokenizer): the
#: engine loads them from ``Store.model_dir``, a folder of links to the verified blobs.
FOLDER_FORMATS = frozenset({"onnx", "openvino", "ctranslate2"})


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Layer:
    """One file of a model: its sha256, size, name inside the model, and a link if not copied."""

    digest: str  # 64 hex
    size: int
    filename: str
    link: str | None = None  # absolute path when the file is used where it lies
    kind: str = "model"  # "projector": a vision model's mmproj GGUF beside its text GGUF;
    # "adapter": a LoRA GGUF applied over the model at load (Ollama's ADAPTER)


@dataclass(frozen=True)
class Manifest:
    """What the store knows about one ``name:tag``."""

    name: str
    format: str
    layers: tuple[Layer, ...]
    source: str
    created: str
    family: str | None = None
    architecture: str | None = None
    parameters: int | None = None
    parameter_size: str | None = None
    quantization: str | None = None
    context_length: int | None = None
    chat_template: bool = False
    license: str | None = None
    capabilities: tuple[str, ...] = ()
    # Ollama's Modelfile equivalents, set by `create`/`cp` later; kept for round-trips.
    system: str | None = None
    template: str | None = None
    parameters_override: dict[str, Any] = field(default_factory=dict)
    #: `llm finetune`: what the model was tuned from, on what data, how, and the result
    tuned: dict[str, Any] | None = None
    schema: int = MANIFEST_SCHEMA

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def digest(self) -> str:
        """The primary layer's digest (the model file for single-file formats)."""
        return self.layers[0].digest

    @property
    def linked(self) -> bool:
        return any(layer.link for layer in self.layers)

    @property
    def projector(self) -> Layer | None:
        """The multimodal projector layer of a vision model, if it has one."""
        return next((layer for layer in self.layers if layer.kind == "projector"), None)

    @property
    def adapters(self) -> list[Layer]:
        """LoRA adapter layers, applied over the model when it loads."""
        return [layer for layer in self.layers if layer.kind == "adapter"]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["layers"] = [asdict(layer) for layer in self.layers]
        data["capabilities"] = list(self.capabilities)
        data["size"] = self.size
        data["digest"] = f"sha256:{self.digest}"
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        layers = tuple(
            Layer(
                digest=check_sha256_hex(str(item["digest"])),
                size=int(item["size"]),
                filename=_safe_filename(str(item["filename"])),
                link=item.get("link"),
                kind=str(item.get("kind") or "model"),
            )
            for item in data["layers"]
        )
        if not layers:
            raise ValueError("manifest has no layers")
        known = {f for f in cls.__dataclass_fields__ if f != "layers"}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["capabilities"] = tuple(kwargs.get("capabilities") or ())
        kwargs["name"] = str(ModelName.parse(str(data["name"])))
        return cls(layers=layers, **kwargs)


def _safe_filename(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in {".", ".."} or "\x00" in name:
        raise InvalidInput(f"invalid file name in model: {name!r}")
    return name


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Store:
    """Blobs by sha256 and manifests by name; every write is atomic and locked."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.manifests = self.root / "manifests"
        self.partial = self.root / "partial"
        self.locks = self.root / "locks"

    # -- paths -------------------------------------------------------------------------

    def ensure(self) -> None:
        """The store's folders, private (0700): a folder others could write to is refused,
        since a swapped manifest or blob would run as this user's model."""
        from llmtui.paths import private_dir

        private_dir(self.root, tighten=False)  # it may be a folder the user chose
        for folder in (self.blobs, self.manifests, self.partial, self.locks):
            private_dir(folder)

    def blob_path(self, digest_hex: str) -> Path:
        return self.blobs / f"sha256-{check_sha256_hex(digest_hex)}"

    def manifest_path(self, name: ModelName) -> Path:
        return self.manifests / name.name / f"{name.tag}.json"

    def layer_path(self, layer: Layer) -> Path:
        """Where a layer's bytes are: the linked file, or the blob."""
        return Path(layer.link) if layer.link else self.blob_path(layer.digest)

    def model_dir(self, manifest: Manifest) -> Path:
        """A folder holding the model's files under their names (for multi-file formats)."""
        if manifest.format == "gguf" and (len(manifest.layers) == 1 or manifest.projector
                                          or manifest.adapters):
            return self.layer_path(manifest.layers[0]).parent
        target = self.root / "views" / view_key(manifest)
        if not target.exists():
            tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".view-"))
            for layer in manifest.layers:
                (tmp / layer.filename).symlink_to(self.layer_path(layer))
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                tmp.rename(target)
            except OSError:  # another process made it first
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """An exclusive inter-process lock (flock) named by a safe key."""
        self.ensure()
        safe = hashlib.sha256(key.encode()).hexdigest()[:32]
        fd = os.open(self.locks / f"{safe}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            lock_fd(fd)
            yield
        finally:
            os.close(fd)  # closing drops the lock

    # -- blobs -------------------------------------------------------------------------

    def has_blob(self, digest_hex: str) -> bool:
        return self.blob_path(digest_hex).is_file()

    def new_temp(self, prefix: str = "blob-") -> Path:
        """A temp file on the store's filesystem, so the final rename is atomic."""
        self.ensure()
        fd, name = tempfile.mkstemp(dir=self.partial, prefix=prefix, suffix=".tmp")
        os.close(fd)
        return Path(name)

    def commit_blob(self, tmp: Path, digest_hex: str, size: int,
                    expected_sha256: str | None = None, expected_size: int | None = None) -> Path:
        """Verify, fsync and rename a finished temp file into ``blobs/``."""
        if expected_size is not None and size != expected_size:
            tmp.unlink(missing_ok=True)
            raise IntegrityError(f"size mismatch: expected {expected_size} bytes, got {size}")
        if expected_sha256 is not None and digest_hex != expected_sha256:
            tmp.unlink(missing_ok=True)
            raise IntegrityError(
                f"sha256 mismatch: expected {expected_sha256[:12]}…, got {digest_hex[:12]}…",
                hint="the download is corrupt or the source changed; nothing was installed",
            )
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        final = self.blob_path(digest_hex)
        os.replace(tmp, final)
        _fsync_dir(self.blobs)
        return final

    def add_blob_from_stream(self, stream: BinaryIO | list[BinaryIO], *,
                             expected_sha256: str | None = None,
                             expected_size: int | None = None,
                             progress: Any = None) -> tuple[str, int]:
        """Copy one stream, or several joined in order, into the store, hashing as it goes.

        Returns (sha256, size); ``progress`` is called with each chunk's length.
        """
        tmp = self.new_temp()
        hasher = hashlib.sha256()
        size = 0
        try:
            with tmp.open("wb") as out:
                for part in stream if isinstance(stream, list) else [stream]:
                    while chunk := part.read(CHUNK):
                        write_all(out, chunk)
                        hasher.update(chunk)
                        size += len(chunk)
                        if progress is not None:
                            progress(len(chunk))
            digest = hasher.hexdigest()
            self.commit_blob(tmp, digest, size, expected_sha256, expected_size)
            return digest, size
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def add_blob_from_file(self, path: Path, **kwargs: Any) -> tuple[str, int]:
        with path.open("rb") as fh:
            return self.add_blob_from_stream(fh, **kwargs)

    # -- manifests ---------------------------------------------------------------------

    def write_manifest(self, manifest: Manifest) -> Path:
        """Write atomically; every layer must already be complete on disk."""
        for layer in manifest.layers:
            path = self.layer_path(layer)
            if not path.is_file() or path.stat().st_size != layer.size:
                raise IntegrityError(f"layer {layer.filename} is missing or incomplete")
        from llmtui.paths import open_private, private_dir

        name = ModelName.parse(manifest.name)
        target = self.manifest_path(name)
        self.ensure()
        private_dir(target.parent)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        with open_private(tmp) as fh:
            json.dump(manifest.to_json(), fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        return target

    def exists(self, name: ModelName) -> bool:
        return self.manifest_path(name).is_file()

    def get(self, name: ModelName | str) -> Manifest:
        model = ModelName.parse(name) if isinstance(name, str) else name
        path = self.manifest_path(model)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelNotFound(
                f"model '{model}' not found",
                hint=self._suggest(str(model)) or f"pull it with: llm pull {model}",
            ) from None
        except (OSError, ValueError) as exc:
            raise BadModelFile(f"manifest of '{model}' is unreadable: {exc}") from None
        try:
            return Manifest.from_json(data)
        except (KeyError, ValueError, TypeError, LlmtuiError) as exc:
            raise BadModelFile(f"manifest of '{model}' is invalid: {exc}") from None

    def _suggest(self, name: str) -> str | None:
        names = [str(m.name) for m in self.models()]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        if close:
            return "did you mean: " + ", ".join(close) + "?"
        return None

    def models(self) -> list[Manifest]:
        out: list[Manifest] = []
        if not self.manifests.is_dir():
            return out
        for path in sorted(self.manifests.rglob("*.json")):
            rel = path.relative_to(self.manifests)
            name = "/".join(rel.parts[:-1]) + ":" + path.stem
            try:
                out.append(self.get(name))
            except LlmtuiError:
                continue  # a stray or broken file must not break the listing
        return out

    def modified(self, manifest: Manifest) -> float:
        return self.manifest_path(ModelName.parse(manifest.name)).stat().st_mtime

    def projector_path(self, manifest: Manifest) -> Path | None:
        """A vision model's projector file, checked to exist; None for other models."""
        layer = manifest.projector
        if layer is None:
            return None
        path = self.layer_path(layer)
        if not path.is_file():
            raise ModelNotFound(
                f"the projector of '{manifest.name}' is missing: {path.name}",
                hint="it was linked and has moved; import it again" if layer.link
                else "pull the model again")
        return path

    def resolve_file(self, name: ModelName | str) -> tuple[Manifest, Path]:
        """The manifest and its primary file, checked to exist (linked files can move).

        For a folder format (ONNX, OpenVINO, ...) the path is the model's folder view.
        """
        manifest = self.get(name)
        if manifest.format in FOLDER_FORMATS:
            missing = [layer.filename for layer in manifest.layers
                       if not self.layer_path(layer).is_file()]
            if missing:
                raise ModelNotFound(f"files of '{manifest.name}' are missing: "
                                    + ", ".join(missing[:3]), hint="pull or convert it again")
            return manifest, self.model_dir(manifest)
        path = self.layer_path(manifest.layers[0])
        if not path.is_file():
            raise ModelNotFound(
                f"the file of '{manifest.name}' is missing: {path.name}",
                hint="it was linked and has moved; import it again" if manifest.linked
                else "pull the model again",
            )
        return manifest, path

    def remove(self, name: ModelName | str) -> list[str]:
        """Delete a manifest, then every blob no remaining manifest refers to."""
        model = ModelName.parse(name) if isinstance(name, str) else name
        with self.lock("gc"):
            manifest = self.get(model)
            self.manifest_path(model).unlink()
            with contextlib.suppress(OSError):
                self.manifest_path(model).parent.rmdir()  # only when empty
            in_use = {layer.digest for m in self.models() for layer in m.layers}
            freed: list[str] = []
            for layer in manifest.layers:
                if layer.link or layer.digest in in_use:
                    continue
                self.blob_path(layer.digest).unlink(missing_ok=True)
                freed.append(layer.digest)
            if not any(view_key(m) == view_key(manifest) for m in self.models()):
                shutil.rmtree(self.root / "views" / view_key(manifest), ignore_errors=True)
            return freed

    def copy(self, src: ModelName | str, dst: ModelName | str) -> Manifest:
        source = self.get(src)
        target = ModelName.parse(dst) if isinstance(dst, str) else dst
        copied = replace(source, name=str(target), created=now_iso())
        self.write_manifest(copied)
        return copied

    def free_bytes(self) -> int:
        self.ensure()
        return shutil.disk_usage(self.root).free

    def check_space(self, needed: int) -> None:
        """Refuse before downloading when free disk is short (with 1% + 64 MiB headroom)."""
        free = self.free_bytes()
        margin = 64 * 1024 * 1024 + needed // 100
        if needed + margin > free:
            # The figure shown includes the margin, so "need X, Y free" always has Y < X.
            raise NoSpaceError(
                f"not enough disk space in {self.root}: need {_gb(needed + margin)} "
                f"({_gb(needed)} plus a {_gb(margin)} safety margin), "
                f"{_gb(free, up=False)} free",
                hint="free some space or move the store with LLMTUI_MODELS",
            )

    def clean_stale_temps(self, older_than: float = 24 * 3600) -> None:
        """Remove temp files that a crashed process left behind (not resumable partials)."""
        if not self.partial.is_dir():
            return
        cutoff = time.time() - older_than
        for path in self.partial.glob("*.tmp"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()


def view_key(manifest: Manifest) -> str:
    """A folder view's name: one hash over every layer's name and digest, so two models
    that share a first file but differ in another never share a view."""
    if len(manifest.layers) == 1:
        return manifest.digest
    h = hashlib.sha256()
    for layer in sorted(manifest.layers, key=lambda item: item.filename):
        h.update(f"{layer.filename}\0{layer.digest}\0".encode())
    return h.hexdigest()


def folder_of(primary: str | Path) -> Path:
    """The folder of a multi-file model, from the path a worker receives: a folder view
    (folder formats) is itself; a linked file lies in its own folder; for a blob the store
    is found from the blob's place, and the view (names as the model expects them) made if
    missing."""
    path = Path(primary)
    if path.is_dir():
        return path
    if not path.name.startswith("sha256-"):
        return path.parent
    digest = path.name.removeprefix("sha256-")
    store = Store(path.parent.parent)
    for manifest in store.models():
        if manifest.layers and manifest.layers[0].digest == digest:
            return store.model_dir(manifest)
    raise ModelNotFound(f"no installed model has the file {path.name[:19]}…")


def _gb(n: int, up: bool = True) -> str:
    """Bytes as GB with two decimals, rounded up (what is needed) or down (what is free),
    so a shortage never reads as more free than needed."""
    hundredths = -(-n // 10**7) if up else n // 10**7
    return f"{hundredths / 100:.2f} GB"


def write_all(out: Any, chunk: bytes) -> None:
    """Write a chunk, turning a full disk into a clear error."""
    try:
        out.write(chunk)
    except OSError as exc:
        import errno

        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise NoSpaceError("the disk filled up while writing the model",
                               hint="nothing was installed; free space and try again") from None
        raise
