"""Images in: recognising, decoding, checking and normalising them (Pillow).

One module for every surface: the daemon decodes each image of a request here before it
reaches a worker (PNG, JPEG, WebP, GIF's first frame; EXIF orientation applied; a byte
limit, and a pixel bound read from the header before any pixel is decoded, against
decompression bombs), and the CLI, the TUI and the SDK use the same helpers to read
files and recognise images by their magic bytes.

A worker receives an image as ``{"width", "height", "rgb": base64 of width*height*3 RGB8
bytes, "sha256": hex of those bytes}`` (:meth:`DecodedImage.to_wire`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmtui.errors import InvalidInput, require

#: What the decoder accepts, as users name them.
FORMATS = "PNG, JPEG, WebP or GIF"
NOT_AN_IMAGE = "is not a PNG, JPEG, WebP or GIF image"
#: Defaults for the config keys max_image_size and max_image_pixels.
DEFAULT_MAX_BYTES = 20 * 1000 * 1000
DEFAULT_MAX_PIXELS = 50_000_000
#: Longer sides are scaled down: projectors work at a few hundred to about two thousand
#: pixels, and a smaller image keeps the frame to the worker small.
MAX_SIDE = 2048
#: Images in one request, and their decoded pixels together (bounds the worker's frame).
MAX_IMAGES = 16
MAX_TOTAL_PIXELS = 40_000_000


def detect(data: bytes) -> str | None:
    """The image format named by the first bytes, or None: no Pillow needed."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    return None


@dataclass(frozen=True)
class ImageLimits:
    """Bounds on one image: encoded bytes, declared pixels, and the side it is scaled to."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_side: int = MAX_SIDE


@dataclass(frozen=True)
class DecodedImage:
    """An image as the model gets it: RGB8 pixels, row by row, and their sha256."""

    width: int
    height: int
    rgb: bytes
    sha256: str

    def to_wire(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height,
                "rgb": base64.b64encode(self.rgb).decode("ascii"), "sha256": self.sha256}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> DecodedImage:
        """Rebuild (and check) an image a worker received."""
        width, height = int(data["width"]), int(data["height"])
        rgb = base64.b64decode(data["rgb"])
        if width <= 0 or height <= 0 or len(rgb) != width * height * 3:
            raise InvalidInput("malformed image in the request")
        return cls(width, height, rgb, str(data.get("sha256") or hashlib.sha256(rgb).hexdigest()))

    def to_png(self) -> bytes:
        image = _pil().frombytes("RGB", (self.width, self.height), self.rgb)
        buf = io.BytesIO()
        image.save(buf, "PNG")
        return buf.getvalue()


def _pil() -> Any:
    module = require("PIL.Image", "server", "Reading images")
    return module


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:g} megapixels"


def decode(data: bytes, *, label: str = "the image",
           limits: ImageLimits | None = None) -> DecodedImage:
    """Check, decode and normalise one image: a clear InvalidInput for anything wrong.

    ``label`` names the image in messages ("image 2 of message 1", "photo.jpg").
    """
    limits = limits or ImageLimits()
    if len(data) > limits.max_bytes:
        raise InvalidInput(f"{label} is too large ({len(data):,} bytes; the limit is "
                           f"{limits.max_bytes:,})", hint="raise max_image_size to allow it")
    kind = detect(data)
    if kind is None:
        raise InvalidInput(f"{label} {NOT_AN_IMAGE}")
    image_mod = _pil()
    import warnings

    from PIL import ImageOps, UnidentifiedImageError

    with warnings.catch_warnings():
        # Pillow's own bomb check warns past 89 megapixels and fails past twice that; the
        # bound that counts is ours, checked on the header's size before any decoding.
        warnings.simplefilter("ignore", image_mod.DecompressionBombWarning)
        try:
            img = image_mod.open(io.BytesIO(data))
        except image_mod.DecompressionBombError as exc:
            found = re.search(r"\((\d+) pixels\)", str(exc))
            declared = f"{_megapixels(int(found.group(1)))}" if found else "too many pixels"
            raise InvalidInput(f"{label} is too large: its header declares {declared}",
                               hint="scale it down") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            raise InvalidInput(f"{label} is corrupt: its {kind.upper()} header cannot be "
                               "read") from None
        with img:
            width, height = img.size
            if width <= 0 or height <= 0:
                raise InvalidInput(f"{label} is corrupt: it declares {width}x{height} pixels")
            if width * height > limits.max_pixels:
                raise InvalidInput(
                    f"{label} is too large: {width}x{height} pixels (the limit is "
                    f"{_megapixels(limits.max_pixels)})",
                    hint="scale it down, or raise max_image_pixels")
            try:
                if kind == "jpeg":  # decode at 1/2, 1/4 or 1/8 scale when that is enough
                    img.draft("RGB", (limits.max_side, limits.max_side))
                img.seek(0)  # GIF, animated WebP: the first frame
                img.load()
                out = _normalise(img, image_mod, ImageOps, limits.max_side)
            except image_mod.DecompressionBombError:
                raise InvalidInput(f"{label} is too large: it expands past "
                                   f"{_megapixels(limits.max_pixels)}") from None
            except (OSError, ValueError, SyntaxError, EOFError, MemoryError):
                raise InvalidInput(f"{label} is truncated or corrupt: its pixel data cannot "
                                   "be decoded") from None
    rgb = out.tobytes()
    return DecodedImage(out.width, out.height, rgb, hashlib.sha256(rgb).hexdigest())


def _normalise(img: Any, image_mod: Any, image_ops: Any, max_side: int) -> Any:
    """EXIF orientation applied, transparency over white, RGB, longest side bounded."""
    img = image_ops.exif_transpose(img) or img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = image_mod.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        img = background
    elif img.mode != "RGB":
        img = img.convert("RGB")
    if max(img.size) > max_side:
        img = img.copy() if img.mode == "RGB" else img
        img.thumbnail((max_side, max_side), image_mod.Resampling.BICUBIC)
    return img


_DATA_URI = re.compile(r"data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[^;,]*)*)(;base64)?,", re.I)


def split_data_uri(url: str, label: str) -> bytes:
    """The bytes of a ``data:`` URI; every other scheme is refused.

    The daemon never reads a file or fetches a URL on a client's behalf: a request could
    otherwise read the daemon user's files or reach hosts the client cannot.
    """
    text = url.strip()
    match = _DATA_URI.match(text)
    if match is None:
        scheme = text.split(":", 1)[0].lower() if ":" in text[:16] else ""
        what = f"'{scheme}:' URLs" if scheme else "URLs other than data: URIs"
        raise InvalidInput(f"{label}: {what} are not accepted; send the image inline as a "
                           "data: URI (data:image/png;base64,...)",
                           hint="the daemon does not read files or fetch URLs for a client")
    payload = text[match.end():]
    if not match.group(3):
        from urllib.parse import unquote_to_bytes

        return unquote_to_bytes(payload)
    return b64decode(payload, label)


def b64decode(text: str, label: str) -> bytes:
    """Strict base64 (whitespace allowed), with a message that names the image."""
    cleaned = re.sub(r"\s+", "", text)
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        hint = "send the image's bytes; URLs are not fetched" if "://" in text[:16] else None
        raise InvalidInput(f"{label} is not valid base64", hint=hint) from None


def decode_base64(text: Any, *, label: str, limits: ImageLimits | None = None) -> DecodedImage:
    """An image sent as base64 (Ollama's ``images``) or as a data: URI."""
    if not isinstance(text, str):
        raise InvalidInput(f"{label} must be a base64 string")
    data = split_data_uri(text, label) if text.lstrip()[:5].lower() == "data:" else \
        b64decode(text, label)
    return decode(data, label=label, limits=limits)


def check_total(images: list[DecodedImage]) -> None:
    """Bound a request's images together (count and decoded pixels)."""
    if len(images) > MAX_IMAGES:
        raise InvalidInput(f"too many images in one request ({len(images)}; the limit is "
                           f"{MAX_IMAGES})")
    pixels = sum(i.width * i.height for i in images)
    if pixels > MAX_TOTAL_PIXELS:
        raise InvalidInput(f"the request's images are too large together ("
                           f"{_megapixels(pixels)}; the limit is "
                           f"{_megapixels(MAX_TOTAL_PIXELS)})")


# -- the client side: files, stdin, SDK values ---------------------------------------------------


def read_image_file(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """A file's bytes, checked to be an image by its magic bytes; ``-`` reads stdin."""
    name = str(path)
    if name == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise InvalidInput("--image - reads the image from stdin, but stdin is a terminal")
        data = sys.stdin.buffer.read(max_bytes + 1)
        name = "stdin"
    else:
        p = Path(name).expanduser()
        if not p.is_file():
            raise InvalidInput(f"no such image file: {name}")
        try:
            with p.open("rb") as fh:
                data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise InvalidInput(f"cannot read {name}: {exc.strerror}") from None
    if len(data) > max_bytes:
        raise InvalidInput(f"{name} is too large (over {max_bytes:,} bytes)")
    if not data:
        raise InvalidInput(f"{name} is empty, not an image")
    if detect(data) is None:
        raise InvalidInput(f"{name} {NOT_AN_IMAGE}")
    return data


def to_base64(image: Any) -> str:
    """What the API's ``images`` carries, from a path, raw bytes, or a PIL image.

    A ``str`` is a file path when such a file exists, else taken to be base64 already.
    """
    if isinstance(image, Path):
        return base64.b64encode(read_image_file(image)).decode("ascii")
    if isinstance(image, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(image)).decode("ascii")
    if isinstance(image, str):
        if len(image) < 4096 and Path(image).expanduser().is_file():
            return base64.b64encode(read_image_file(image)).decode("ascii")
        return image
    save = getattr(image, "save", None)
    if callable(save):  # a PIL image: sent losslessly as PNG
        buf = io.BytesIO()
        save(buf, format="PNG")
        return base64.b64encode(buf.getvalue()).decode("ascii")
    raise InvalidInput(f"an image must be a path, bytes or a PIL image, not "
                       f"{type(image).__name__}")
