"""llmtui.media: every format in, every bad input refused with a message that names it."""

from __future__ import annotations

import base64
import hashlib
import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from llmtui import media
from llmtui.errors import InvalidInput


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge image: a decompression bomb's signature."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_formats_decode_to_rgb(fmt: str) -> None:
    data = encode(Image.new("RGB", (40, 30), (200, 20, 20)), fmt)
    assert media.detect(data) == fmt.lower()
    out = media.decode(data)
    assert (out.width, out.height) == (40, 30)
    assert len(out.rgb) == 40 * 30 * 3
    assert out.sha256 == hashlib.sha256(out.rgb).hexdigest()
    r, g, b = out.rgb[:3]
    assert r > 150 and g < 80 and b < 80


def test_gif_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    out = media.decode(buf.getvalue())
    assert out.rgb[0] > 200 and out.rgb[2] < 50  # red: the first frame, not the blue one


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (40, 20), (0, 255, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    out = media.decode(encode(img, "JPEG", exif=exif.tobytes()))
    assert (out.width, out.height) == (20, 40)


def test_transparency_goes_over_white_and_big_images_shrink() -> None:
    clear = media.decode(encode(Image.new("RGBA", (8, 8), (0, 0, 0, 0)), "PNG"))
    assert clear.rgb[:3] == b"\xff\xff\xff"
    big = media.decode(encode(Image.new("RGB", (3000, 1000)), "PNG"))
    assert (big.width, big.height) == (media.MAX_SIDE, round(media.MAX_SIDE / 3))


def test_wire_form_round_trips() -> None:
    out = media.decode(encode(Image.new("RGB", (5, 4), (1, 2, 3)), "PNG"))
    wire = out.to_wire()
    assert set(wire) == {"width", "height", "rgb", "sha256"}
    assert base64.b64decode(wire["rgb"]) == out.rgb == b"\x01\x02\x03" * 20
    assert media.DecodedImage.from_wire(wire) == out
    assert media.decode(out.to_png()).rgb == out.rgb


def test_not_an_image() -> None:
    with pytest.raises(InvalidInput, match="image 1 is not a PNG, JPEG, WebP or GIF image"):
        media.decode(b"%PDF-1.4 not an image", label="image 1")


def test_truncated_images() -> None:
    data = encode(Image.effect_noise((64, 64), 50).convert("RGB"), "PNG")
    with pytest.raises(InvalidInput, match="truncated or corrupt"):
        media.decode(data[: len(data) // 2])
    jpeg = encode(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")
    with pytest.raises(InvalidInput, match="corrupt"):
        media.decode(jpeg[:200])


def test_decompression_bombs_are_refused_from_the_header() -> None:
    with pytest.raises(InvalidInput, match="too large: its header declares 3600 megapixels"):
        media.decode(png_declaring(60000, 60000))
    with pytest.raises(InvalidInput, match=r"too large: 9000x9000 pixels \(the limit is 50 "):
        media.decode(png_declaring(9000, 9000))
    small = media.ImageLimits(max_pixels=100)
    with pytest.raises(InvalidInput, match="11x10 pixels"):
        media.decode(encode(Image.new("RGB", (11, 10)), "PNG"), limits=small)


def test_byte_limit() -> None:
    data = encode(Image.new("RGB", (32, 32)), "PNG")
    with pytest.raises(InvalidInput, match="is too large"):
        media.decode(data, limits=media.ImageLimits(max_bytes=len(data) - 1))


def test_data_uris_and_base64() -> None:
    data = encode(Image.new("RGB", (4, 4)), "PNG")
    b64 = base64.b64encode(data).decode()
    assert media.split_data_uri(f"data:image/png;base64,{b64}", "x") == data
    assert media.decode_base64(b64, label="x").width == 4
    assert media.decode_base64(f"data:image/png;base64,{b64}", label="x").width == 4
    with pytest.raises(InvalidInput, match="image 1 is not valid base64"):
        media.decode_base64("not base64 at all!", label="image 1")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "http://127.0.0.1/x.png",
                                 "https://example.org/cat.jpg", "ftp://host/x.gif",
                                 "/etc/passwd", "cat.png"])
def test_other_url_schemes_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput, match="not accepted; send the image inline as a data: "
                                           "URI") as info:
        media.split_data_uri(url, "image 1 of message 0")
    assert "does not read files or fetch URLs" in str(info.value)


def test_request_totals() -> None:
    one = media.DecodedImage(2000, 2000, b"", "")
    with pytest.raises(InvalidInput, match="too large together"):
        media.check_total([one] * 11)
    tiny = media.DecodedImage(1, 1, b"", "")
    with pytest.raises(InvalidInput, match="too many images"):
        media.check_total([tiny] * (media.MAX_IMAGES + 1))


def test_client_side_helpers(tmp_path: Path) -> None:
    png = tmp_path / "a.png"
    png.write_bytes(encode(Image.new("RGB", (4, 4)), "PNG"))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert media.read_image_file(png) == png.read_bytes()
    with pytest.raises(InvalidInput, match=r"notes\.txt is not a PNG"):
        media.read_image_file(text)
    with pytest.raises(InvalidInput, match="no such image file"):
        media.read_image_file(tmp_path / "missing.png")
    expected = base64.b64encode(png.read_bytes()).decode()
    assert media.to_base64(png) == media.to_base64(str(png)) == expected
    assert media.to_base64(png.read_bytes()) == expected
    pil = media.to_base64(Image.new("RGB", (3, 3), (9, 9, 9)))
    assert media.decode_base64(pil, label="x").rgb == b"\x09" * 27
    assert media.to_base64(expected) == expected  # already base64
    with pytest.raises(InvalidInput, match="path, bytes or a PIL image"):
        media.to_base64(3.5)
