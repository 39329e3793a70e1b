"""Reading GGUF headers and metadata (with the ``gguf`` package), and refusing bad files."""

from __future__ import annotations

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
        return self.metadata.get("general.type") == "mmproj" or self.architecture == "clip"


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


def _value(cur: _Cursor, vtype: int, depth: int = 0) -> Any:
    if vtype in _SCALARS:
        return cur.unpack(_SCALARS[vtype])
    if vtype == _STRING:
        return cur.string()
    if vtype == _ARRAY and depth < 2:
        item_type, count = cur.unpack("I"), cur.unpack("Q")
        if item_type in _SCALARS:
            size = struct.calcsize("<" + _SCALARS[item_type])
            cur.skip(size * count)  # skipped: vocabularies are large and not shown
        elif item_type == _STRING:
            for _ in range(count):
                cur.skip(cur.unpack("Q"))
        else:
            for _ in range(count):
                _value(cur, item_type, depth + 1)
        return f"[array of {count}]"
    raise BadModelFile(f"{cur.name} is malformed: unknown metadata type {vtype}")


def read_info(path: Path) -> GGUFInfo:
    """Parse a GGUF file's metadata and tensor table; truncation is an error, not a crash.

    A direct reader over mmap (using the ``gguf`` package's quantization tables) instead of
    ``gguf.GGUFReader``, which materialises every vocabulary entry and takes seconds.
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
                value = _value(cur, vtype)
                metadata[key] = value
                types[key] = vtype
                if key == "tokenizer.chat_template" and isinstance(value, str):
                    chat_template = value
            params, end = 0, 0
            tensor_types: list[str] = []
            infos = []
            shapes: dict[str, tuple[int, ...]] = {}
            for _ in range(n_tensors):
                tname = cur.string()
                n_dims = cur.unpack("I")
                if n_dims > 8:
                    raise BadModelFile(f"{path.name} is malformed: tensor with {n_dims} dims")
                dims = [cur.unpack("Q") for _ in range(n_dims)]
                ttype, offset = cur.unpack("I"), cur.unpack("Q")
                infos.append((dims, ttype, offset))
                shapes[tname] = tuple(dims)
            alignment = int(metadata.get("general.alignment", 32) or 32)
            data_start = (cur.pos + alignment - 1) // alignment * alignment
            for dims, ttype, offset in infos:
                count = 1
                for d in dims:
                    count *= d
                params += count
                try:
                    qtype = GGMLQuantizationType(ttype)
                    block, nbytes = GGML_QUANT_SIZES[qtype]
                    tensor_types.append(qtype.name)
                    end = max(end, data_start + offset + count // block * nbytes)
                except (ValueError, KeyError):
                    tensor_types.append(str(ttype))
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
