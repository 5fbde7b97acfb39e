"""Checking a PNG's pixel data without decoding it whole (thotto.scheduler.media.check_png_pixels): every
kind of PNG Pillow writes passes, a damaged one does not, and memory stays a few buffers."""

from __future__ import annotations

import io
import os
import struct
import tracemalloc
import zlib

import pytest
from PIL import Image

from thotto.scheduler.image_metadata import CorruptImage
from thotto.scheduler.media import check_png_pixels


def saved(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"])
@pytest.mark.parametrize("interlace", [False, True])
def test_every_kind_of_png_passes(tmp_path, mode, interlace):
    image = Image.new(mode, (37, 23))
    path = tmp_path / "image.png"
    path.write_bytes(saved(image, optimize=False) if not interlace else _interlaced(image))
    check_png_pixels(path, 37, 23)


def _interlaced(image: Image.Image) -> bytes:
    """Pillow writes no interlaced PNG: the same header marked Adam7, with each pass's rows (all
    zero pixels, as the image is blank)."""
    plain = saved(image)
    header = plain[16:29]
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    bits = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour] * depth
    raw = b""
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)):
        columns, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if columns > 0 and rows > 0:
            raw += (b"\x00" + bytes(-(-(columns * bits) // 8))) * rows
    ihdr = header[:12] + b"\x01"
    return (plain[:8] + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_pixel_data_that_ends_early_is_refused_even_with_good_checksums(tmp_path):
    plain = saved(Image.new("RGB", (40, 40)))
    short = zlib.compress(bytes(100))  # a complete deflate stream, far too little data
    path = tmp_path / "short.png"
    path.write_bytes(plain[:33] + _chunk(b"IDAT", short) + _chunk(b"IEND", b""))
    with pytest.raises(CorruptImage, match="incomplete or damaged"):
        check_png_pixels(path, 40, 40)


def test_a_damaged_chunk_is_refused(tmp_path):
    data = bytearray(saved(Image.new("RGB", (40, 40), "red")))
    data[45] ^= 0xFF  # inside the first IDAT
    path = tmp_path / "damaged.png"
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptImage):
        check_png_pixels(path, 40, 40)


def test_a_large_png_is_checked_in_a_few_buffers(tmp_path):
    side = 1500  # 6.75 MB of pixels decoded
    path = tmp_path / "large.png"
    path.write_bytes(saved(Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)), compress_level=1))
    tracemalloc.start()
    try:
        check_png_pixels(path, side, side)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak
