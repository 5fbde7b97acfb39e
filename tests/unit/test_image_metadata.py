"""Metadata removal (thotto/image_metadata.py) on images Pillow makes: what goes, what stays,
and that the pixels are untouched (the compressed data is copied, never re-encoded)."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from tests.support import images
from thotto.scheduler.image_metadata import CorruptImage, VP8X_EXIF, VP8X_XMP, strip
from thotto.scheduler.records import MediaKind

EVERY_KIND = [(MediaKind.JPEG, images.jpeg), (MediaKind.PNG, images.png),
              (MediaKind.WEBP, images.webp), (MediaKind.GIF, images.gif)]


def stripped(kind: MediaKind, data: bytes, *, keep: bool = False):
    target = io.BytesIO()
    walked = strip(kind, io.BytesIO(data), target, keep=keep)
    return target.getvalue(), walked


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def gps_and_camera(image: Image.Image) -> tuple[dict, set]:
    exif = image.getexif()
    return dict(exif.get_ifd(0x8825)), {tag for tag in exif if tag in (0x010F, 0x0110)}


def test_images_made_for_the_tests_carry_the_metadata():
    for data in (images.jpeg(), images.png(), images.webp()):
        gps, camera = gps_and_camera(opened(data))
        assert gps and camera


def test_jpeg_loses_gps_camera_xmp_and_comment_but_keeps_orientation_and_colour_profile():
    original = images.jpeg(orientation=6)
    result, walked = stripped(MediaKind.JPEG, original)
    assert walked.removed == ["EXIF (GPS, camera)", "XMP", "comment"]
    assert (walked.width, walked.height) == (64, 48)
    image = opened(result)
    assert dict(image.getexif()) == {0x0112: 6} and gps_and_camera(image) == ({}, set())
    assert image.info["icc_profile"] == images.icc_profile()
    assert b"Paris" not in result and b"taken at home" not in result and b"Pixelmaker" not in result


def test_jpeg_scan_data_is_copied_byte_for_byte():
    original = images.jpeg()
    result, _ = stripped(MediaKind.JPEG, original)
    scan = original[original.index(b"\xff\xda"):]  # from the first scan to the end
    assert result.endswith(scan) and images.pixels(result) == images.pixels(original)


def test_progressive_jpeg_keeps_all_its_scans():
    original = images.jpeg(progressive=True)
    result, walked = stripped(MediaKind.JPEG, original)
    assert images.pixels(result) == images.pixels(original) and "XMP" in walked.removed


def test_an_upright_jpeg_keeps_no_exif_at_all():
    result, walked = stripped(MediaKind.JPEG, images.jpeg(orientation=1))
    assert b"Exif" not in result and "EXIF (GPS, camera)" in walked.removed
    assert dict(opened(result).getexif()) == {}


def test_data_after_a_jpeg_is_dropped():
    original = images.jpeg(trailer=b"\x00\x00ftypmp42 a motion photo's video")
    result, walked = stripped(MediaKind.JPEG, original)
    assert result.endswith(b"\xff\xd9") and "data after the image" in walked.removed


def test_png_loses_text_xmp_exif_and_time_but_keeps_orientation_and_colour_profile():
    original = images.png(orientation=8)
    result, walked = stripped(MediaKind.PNG, original)
    assert sorted(walked.removed) == ["EXIF (GPS, camera)", "PNG text", "XMP", "modification time"]
    image = opened(result)
    assert dict(image.getexif()) == {0x0112: 8} and image.info["icc_profile"] == images.icc_profile()
    assert "Comment" not in image.info and b"Paris" not in result
    assert images.pixels(result) == images.pixels(original)


def test_animated_png_stays_animated():
    original = images.animated_png()
    result, walked = stripped(MediaKind.PNG, original)
    assert "EXIF (GPS, camera)" in walked.removed
    image = opened(result)
    assert image.n_frames == 2 and image.info["loop"] == 0


def test_webp_loses_exif_and_xmp_and_says_so_in_its_header():
    original = images.webp(orientation=3)
    result, walked = stripped(MediaKind.WEBP, original)
    assert walked.removed == ["EXIF (GPS, camera)", "XMP"]
    assert struct.unpack("<I", result[4:8])[0] == len(result) - 8  # the RIFF size fits
    flags = result[20]  # the VP8X chunk comes first
    assert flags & VP8X_EXIF and not flags & VP8X_XMP
    image = opened(result)
    assert dict(image.getexif()) == {0x0112: 3} and image.info["icc_profile"] == images.icc_profile()
    assert images.pixels(result) == images.pixels(original) and b"Paris" not in result


def test_animated_webp_stays_animated():
    result, walked = stripped(MediaKind.WEBP, images.animated_webp())
    assert walked.removed == ["EXIF (GPS, camera)", "XMP"]
    assert opened(result).n_frames == 2


def test_gif_loses_its_comment_and_xmp_but_keeps_its_animation():
    original = images.gif()
    result, walked = stripped(MediaKind.GIF, original)
    assert walked.removed == ["GIF comment", "XMP"]
    image = opened(result)
    assert image.n_frames == 2 and image.info["loop"] == 0 and "comment" not in image.info
    assert b"Paris" not in result and images.pixels(result) == images.pixels(original)


@pytest.mark.parametrize("kind, make", EVERY_KIND, ids=lambda value: getattr(value, "value", ""))
def test_keeping_metadata_copies_the_file_unchanged(kind, make):
    original = make()
    result, walked = stripped(kind, original, keep=True)
    assert result == original and walked.removed == []


@pytest.mark.parametrize("kind, make", EVERY_KIND, ids=lambda value: getattr(value, "value", ""))
def test_a_truncated_image_is_corrupt(kind, make):
    original = make()
    for cut in (len(original) // 2, len(original) - 1):
        with pytest.raises(CorruptImage, match="truncated|broken"):
            stripped(kind, original[:cut])


def test_a_png_chunk_that_fails_its_crc_is_corrupt():
    original = bytearray(images.png())
    idat = original.index(b"IDAT")
    original[idat + 10] ^= 0xFF
    with pytest.raises(CorruptImage, match="CRC"):
        stripped(MediaKind.PNG, bytes(original))


def test_the_declared_size_of_a_bomb_is_found_without_decoding():
    _, walked = stripped(MediaKind.PNG, images.png_bomb(100_000, 90_000))
    assert (walked.width, walked.height) == (100_000, 90_000)


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def test_jpeg_loses_iptc_embedded_images_and_other_application_data():
    original = images.jpeg(orientation=1)
    extra = (_segment(0xED, b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x0b\x1c\x02\x5a\x00\x05Paris")
             + _segment(0xE2, b"MPF\x00MM\x00*\x00\x00\x00\x08")
             + _segment(0xEC, b"Ducky\x00\x01"))
    result, walked = stripped(MediaKind.JPEG, original[:2] + extra + original[2:])
    assert walked.removed[:3] == ["IPTC", "embedded images (MPF)", "other metadata (APP12)"]
    assert b"Paris" not in result and b"Ducky" not in result
    assert images.pixels(result) == images.pixels(original)


PLAIN = [(MediaKind.JPEG, "JPEG", {}), (MediaKind.PNG, "PNG", {}), (MediaKind.GIF, "GIF", {}),
         (MediaKind.WEBP, "WEBP", {"quality": 80}), (MediaKind.WEBP, "WEBP", {"lossless": True})]


@pytest.mark.parametrize("kind, pillow_format, options", PLAIN,
                         ids=["jpeg", "png", "gif", "webp-lossy", "webp-lossless"])
def test_an_image_without_metadata_comes_out_byte_for_byte_the_same(kind, pillow_format, options):
    buffer = io.BytesIO()
    images.picture(mode="P" if kind is MediaKind.GIF else "RGB").save(buffer, pillow_format, **options)
    result, walked = stripped(kind, buffer.getvalue())
    assert result == buffer.getvalue() and walked.removed == []


def test_a_cmyk_jpeg_keeps_the_adobe_segment_its_colours_need():
    buffer = io.BytesIO()
    images.picture().convert("CMYK").save(buffer, "JPEG", exif=images.phone_exif())
    result, walked = stripped(MediaKind.JPEG, buffer.getvalue())
    assert b"Adobe" in result and walked.removed == ["EXIF (GPS, camera)"]
    assert images.pixels(result) == images.pixels(buffer.getvalue())


def test_a_file_with_endless_kinds_of_metadata_names_twenty_at_most():
    original = images.png(orientation=1)
    private = b"".join(images._png_chunk(b"pr%c\x01" % (ord("a") + n), b"x") for n in range(26))
    result, walked = stripped(MediaKind.PNG, original[:33] + private + original[33:])
    assert len(walked.removed) == 20 and walked.removed[-1] == "more metadata"
    assert "other metadata (pra?)" in walked.removed
    assert images.pixels(result) == images.pixels(original)


def test_a_jpeg_with_two_exif_segments_gets_one_minimal_exif():
    original = images.jpeg(orientation=6)
    exif = original.index(b"\xff\xe1")
    (length,) = struct.unpack(">H", original[exif + 2:exif + 4])
    segment = original[exif:exif + 2 + length]
    result, _ = stripped(MediaKind.JPEG, original[:exif] + segment + original[exif:])
    assert result.count(b"Exif\0\0") == 1 and dict(opened(result).getexif()) == {0x0112: 6}
