"""Reading GGUF headers and metadata (with the ``gguf`` package), and refusing bad files."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmtui.errors import BadModelFile

GGUF_MAGIC = b"GGUF"
_HEADER = struct.Struct("<4sIQQ")  # magic, version, tensor count, metadata kv count


@dataclass(frozen=True)
class GGUFInfo:
    """What `llm show` and the manifest record about a GGUF file."""

    architecture: str
    name: str | None
    parameters: int
    size_label: str | None
    quantization: str
    file_type: int | None
    context_length: int | None
    embedding_length: int | None
    block_count: int | None
    chat_template: str | None
    license: str | None
    tensor_count: int
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    #: GGUF value type of each metadata key (4 = uint32, 6 = float32, 7 = bool, 8 = string)
    types: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    #: tensor name -> dims in GGUF order (ggml's ne: the fastest-varying first)
    tensors: dict[str, tuple[int, ...]] = field(default_factory=dict, compare=False,
                                                repr=False)

    @property
    def is_projector(self) -> bool:
        """A multimodal projector (mmproj), as converters mark it, not a language model."""
        return (self.metadata.get("general.type") == "mmproj"
                or self.architecture in PROJECTORS or "clip.has_vision_encoder" in self.metadata
                or "clip.projector_type" in self.metadata)


def check_header(path: Path) -> int:
    """Fail fast on files that are not GGUF: empty, too short, wrong magic or version."""
    try:
        with path.open("rb") as fh:
            head = fh.read(_HEADER.size)
    except OSError as exc:
        raise BadModelFile(f"cannot read {path.name}: {exc.strerror}") from None
    if not head:
        raise BadModelFile(f"{path.name} is empty, not a GGUF model")
    if head[:4] != GGUF_MAGIC:
        raise BadModelFile(f"{path.name} is not a GGUF model (no GGUF magic at the start)")
    if len(head) < _HEADER.size:
        raise BadModelFile(f"{path.name} is truncated: the GGUF header is incomplete")
    _, version, _, _ = _HEADER.unpack(head)
    if version not in (2, 3):
        raise BadModelFile(f"{path.name}: unsupported GGUF version {version}")
    return int(version)


def _format_quant(file_type: int | None, tensor_types: list[str]) -> str:
    if file_type is not None:
        try:
            from gguf.constants import LlamaFileType

            name = LlamaFileType(file_type).name
            return name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    if tensor_types:  # most common tensor type is a fair label when file_type is absent
        return max(set(tensor_types), key=tensor_types.count)
    return "unknown"


class _Cursor:
    """A bounds-checked reader over the mapped file: running off the end is truncation."""

    def __init__(self, buf: Any, name: str) -> None:
        self.buf = buf
        self.pos = 0
        self.name = name

    def skip(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.buf):
            raise BadModelFile(f"{self.name} is truncated: metadata runs past the end of the file")
        self.pos += n

    def take(self, n: int) -> bytes:
        start = self.pos
        self.skip(n)
        return self.buf[start:self.pos]  # a bytes copy: no view of the map outlives it

    def unpack(self, fmt: str) -> Any:
        st = struct.Struct("<" + fmt)
        return st.unpack(self.take(st.size))[0]

    def string(self) -> str:
        n = self.unpack("Q")
        return self.take(n).decode("utf-8", errors="replace")


_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q",
            11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


class SkippedArray(str):
    """Stands for an array that was not read (vocabularies are large): "[array of N]"."""

    length: int

    def __new__(cls, length: int) -> SkippedArray:
        obj = super().__new__(cls, f"[array of {length}]")
        obj.length = length
        return obj


def _value(cur: _Cursor, vtype: int, depth: int = 0, arrays: int = 0) -> Any:
    if vtype in _SCALARS:
        return cur.unpack(_SCALARS[vtype])
    if vtype == _STRING:
        return cur.string()
    if vtype == _ARRAY and depth < 2:
        item_type, count = cur.unpack("I"), cur.unpack("Q")
        if arrays < 0 or count <= arrays:
            if item_type in _SCALARS:
                fmt = _SCALARS[item_type]
                if count * struct.calcsize("<" + fmt) > len(cur.buf) - cur.pos:
                    raise BadModelFile(f"{cur.name} is truncated: metadata runs past the "
                                       "end of the file")
                return list(struct.unpack(f"<{count}{fmt}",
                                          cur.take(count * struct.calcsize("<" + fmt))))
            return [_value(cur, item_type, depth + 1, arrays) for _ in range(count)]
        if item_type in _SCALARS:
            size = struct.calcsize("<" + _SCALARS[item_type])
            cur.skip(size * count)  # skipped: vocabularies are large and not shown
        elif item_type == _STRING:
            for _ in range(count):
                cur.skip(cur.unpack("Q"))
        else:
            for _ in range(count):
                _value(cur, item_type, depth + 1)
        return SkippedArray(count)
    raise BadModelFile(f"{cur.name} is malformed: unknown metadata type {vtype}")


_UINT32 = 4


def _alignment(name: str, metadata: dict[str, Any], types: dict[str, int]) -> int:
    """general.alignment as llama.cpp reads it: a uint32 power of two (32 when absent)."""
    if "general.alignment" not in metadata:
        return 32
    value = metadata["general.alignment"]
    if types["general.alignment"] != _UINT32:
        raise BadModelFile(f"{name} is malformed: general.alignment must be a uint32, got "
                           f"{str(value)[:40]!r}")
    if value <= 0 or value & (value - 1):
        raise BadModelFile(f"{name} is malformed: general.alignment must be a power of two, "
                           f"got {value}")
    return int(value)


#: Architectures whose files are parts of a model, never a model to run on their own.
PROJECTORS = {"clip", "mmproj"}


def check_runnable(name: str, info: GGUFInfo) -> None:
    """Refuse a GGUF that is not a model on its own (a vision projector, for example)."""
    if info.is_projector:
        raise BadModelFile(f"{name} is a vision projector, not a model",
                           hint="it goes beside its text model: llm import MODEL.gguf "
                                "--mmproj " + name)


def read_info(path: Path, arrays: int = 0) -> GGUFInfo:
    """Parse a GGUF file's metadata and tensor table; truncation is an error, not a crash.

    A direct reader over mmap (using the ``gguf`` package's quantization tables) instead of
    ``gguf.GGUFReader``, which materialises every vocabulary entry and takes seconds.
    Arrays of up to ``arrays`` items are read (all of them when negative); longer ones
    are :class:`SkippedArray` placeholders.
    """
    import mmap

    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    check_header(path)
    size = path.stat().st_size
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        cur = _Cursor(mm, path.name)
        try:
            _, _version, n_tensors, n_kv = _HEADER.unpack(cur.take(_HEADER.size))
            if n_tensors > 1_000_000 or n_kv > 1_000_000:
                raise BadModelFile(f"{path.name} is malformed: implausible header counts")
            metadata: dict[str, Any] = {}
            types: dict[str, int] = {}
            chat_template = None
            for _ in range(n_kv):
                key = cur.string()
                vtype = cur.unpack("I")
                value = _value(cur, vtype, arrays=arrays)
                if key in metadata:  # llama.cpp refuses these; so do we, at import
                    raise BadModelFile(f"{path.name} is malformed: duplicate metadata key "
                                       f"{key!r}")
                metadata[key] = value
                types[key] = vtype
                if key == "tokenizer.chat_template" and isinstance(value, str):
                    chat_template = value
            alignment = _alignment(path.name, metadata, types)
            params, end = 0, 0
            tensor_types: list[str] = []
            infos = []
            shapes: dict[str, tuple[int, ...]] = {}
            names: set[str] = set()
            for _ in range(n_tensors):
                tname = cur.string()
                if tname in names:
                    raise BadModelFile(f"{path.name} is malformed: duplicate tensor {tname!r}")
                names.add(tname)
                n_dims = cur.unpack("I")
                if n_dims > 8:
                    raise BadModelFile(f"{path.name} is malformed: tensor with {n_dims} dims")
                dims = [cur.unpack("Q") for _ in range(n_dims)]
                if any(d >= 2**63 for d in dims) or math.prod(dims) >= 2**63:
                    raise BadModelFile(f"{path.name} is malformed: tensor {tname[:60]!r} has "
                                       f"impossible dimensions {dims}")
                ttype, offset = cur.unpack("I"), cur.unpack("Q")
                if offset % alignment:
                    raise BadModelFile(f"{path.name} is malformed: tensor {tname[:60]!r} "
                                       f"starts at offset {offset}, not a multiple of the "
                                       f"alignment {alignment}")
                infos.append((tname, dims, ttype, offset))
                shapes[tname] = tuple(dims)
            data_start = (cur.pos + alignment - 1) // alignment * alignment
            for tname, dims, ttype, offset in infos:
                count = 1
                for d in dims:
                    count *= d
                params += count
                try:
                    qtype = GGMLQuantizationType(ttype)
                    block, nbytes = GGML_QUANT_SIZES[qtype]
                except (ValueError, KeyError):
                    raise BadModelFile(f"{path.name} is malformed: tensor {tname[:60]!r} has "
                                       f"unknown type {ttype}") from None
                tensor_types.append(qtype.name)
                if dims and dims[0] % block:
                    raise BadModelFile(f"{path.name} is malformed: tensor {tname[:60]!r} rows "
                                       f"of {dims[0]} do not fit {qtype.name} blocks of "
                                       f"{block}")
                end = max(end, data_start + offset + count // block * nbytes)
        finally:
            cur.buf = b""
    if end > size:
        raise BadModelFile(
            f"{path.name} is truncated: tensor data needs {end} bytes, the file has {size}"
        )
    arch = str(metadata.get("general.architecture", "unknown"))

    def arch_int(suffix: str) -> int | None:
        value = metadata.get(f"{arch}.{suffix}")
        return int(value) if isinstance(value, int) else None

    file_type = metadata.get("general.file_type")
    file_type = file_type if isinstance(file_type, int) else None
    license_ = metadata.get("general.license") or metadata.get("general.license.name")
    return GGUFInfo(
        architecture=arch,
        name=metadata.get("general.name"),
        parameters=params,
        size_label=metadata.get("general.size_label"),
        quantization=_format_quant(file_type, tensor_types),
        file_type=file_type,
        context_length=arch_int("context_length"),
        embedding_length=arch_int("embedding_length"),
        block_count=arch_int("block_count"),
        chat_template=chat_template or None,
        license=str(license_) if license_ else None,
        tensor_count=len(infos),
        metadata=metadata,
        types=types,
        tensors=shapes,
    )


def format_params(count: int) -> str:
    """135M, 1.2B: the way model cards write parameter counts."""
    if count >= 10**9:
        return f"{count / 10**9:.1f}B".replace(".0B", "B")
    if count >= 10**6:
        return f"{count / 10**6:.0f}M"
    if count >= 10**3:
        return f"{count / 10**3:.0f}K"
    return str(count)
