"""Images made by Pillow in the tests, with the metadata a phone or an editor would leave in them."""

from __future__ import annotations

import functools
import io
import struct
import zlib

from PIL import Image, ImageCms, PngImagePlugin

XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description photoshop:City="Paris"/></x:xmpmeta>'


@functools.cache
def icc_profile() -> bytes:
    """One sRGB profile for the whole run: LittleCMS stamps each profile it makes with the time,
    so two made a second apart differ and an image's profile could not be compared with it."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def phone_exif(orientation: int = 6) -> bytes:
    """EXIF as a phone writes it: camera make and model, a GPS position, the orientation."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "Pixelmaker"
    exif[0x0110] = "Phone 9 Pro"
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)})
    return exif.tobytes()


def picture(width: int = 64, height: int = 48, mode: str = "RGB") -> Image.Image:
    """A picture with some detail (a gradient), so that decoding it means something."""
    image = Image.new(mode, (width, height))
    image.putdata([((x * 4) % 256, (y * 5) % 256, (x + y) % 256)[: len(mode)] if mode != "P" else (x + y) % 256
                   for y in range(height) for x in range(width)])
    return image


def jpeg(orientation: int = 6, *, trailer: bytes = b"", **options) -> bytes:
    buffer = io.BytesIO()
    picture().save(buffer, "JPEG", exif=phone_exif(orientation), icc_profile=icc_profile(), xmp=XMP,
                   comment=b"taken at home", quality=90, **options)
    return buffer.getvalue() + trailer


def png(orientation: int = 6, **options) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "taken at home")
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    buffer = io.BytesIO()
    picture().save(buffer, "PNG", pnginfo=info, exif=phone_exif(orientation), icc_profile=icc_profile(),
                   **options)
    return _with_png_chunk(buffer.getvalue(), b"tIME", struct.pack(">HBBBBB", 2026, 12, 2, 9, 0, 0))


def animated_png() -> bytes:
    buffer = io.BytesIO()
    frames = [picture(), picture().rotate(180)]
    frames[0].save(buffer, "PNG", save_all=True, append_images=frames[1:], duration=100, loop=0,
                   exif=phone_exif())
    return buffer.getvalue()


def webp(orientation: int = 6, **options) -> bytes:
    buffer = io.BytesIO()
    picture().save(buffer, "WEBP", exif=phone_exif(orientation), icc_profile=icc_profile(), xmp=XMP,
                   lossless=True, **options)
    return buffer.getvalue()


def animated_webp() -> bytes:
    buffer = io.BytesIO()
    frames = [picture(), picture().rotate(180)]
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], duration=100, loop=0,
                   exif=phone_exif(), xmp=XMP, lossless=True)
    return buffer.getvalue()


def gif(*, with_metadata: bool = True) -> bytes:
    """An animated GIF that loops, with a comment and an XMP application extension."""
    buffer = io.BytesIO()
    frames = [picture(mode="P"), picture(mode="P").rotate(180)]
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0,
                   comment=b"taken at home" if with_metadata else b"")
    data = buffer.getvalue()
    if not with_metadata:
        return data
    return data[:-1] + gif_xmp_extension(XMP) + data[-1:]


def gif_xmp_extension(xmp: bytes) -> bytes:
    """XMP in a GIF as Adobe writes it: raw bytes and a 258-byte 'magic trailer' that makes any
    walk of sub-blocks end at the terminator."""
    return b"\x21\xff\x0bXMP DataXMP" + xmp + bytes([1] + list(range(255, -1, -1))) + b"\x00"


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG that declares an enormous image (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1000)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def _png_chunk(name: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + name + data + struct.pack(">I", zlib.crc32(name + data))


def _with_png_chunk(data: bytes, name: bytes, payload: bytes) -> bytes:
    """``data`` with one more chunk right after IHDR."""
    after_ihdr = 8 + 25
    return data[:after_ihdr] + _png_chunk(name, payload) + data[after_ihdr:]


def noise_png(width: int, height: int) -> bytes:
    """A PNG that does not compress: about 3 bytes per pixel."""
    import os

    image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB").tobytes()
