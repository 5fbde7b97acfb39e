"""Removing location and camera metadata from images, losslessly.

Each format's walker reads the file piece by piece (segments, chunks, blocks), copies what is
needed to show the image right and drops the metadata, never decoding or re-encoding pixels: the
compressed image data is copied byte for byte, so nothing is lost and the whole file is never in
memory. Walking the structure also checks it: a truncated file or a broken chunk is
:class:`CorruptImage`, and it finds the dimensions the file declares (a decompression bomb is
refused on those, before anything decodes it).

Kept everywhere: the pixels, the ICC colour profile, animation (loop counts, frame timing), and
the EXIF orientation, written back as a minimal EXIF holding only that tag when it is not 1 (so
a phone photo does not come out sideways). Dropped: EXIF (GPS, camera, dates, thumbnails), XMP,
IPTC, comments and text chunks, and data after the image's end (phones append depth maps,
further images, videos). With ``keep=True`` a walker copies everything unchanged and still checks.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

from thotto.engine.errors import ValidationError
from thotto.scheduler.records import MediaKind

COPY_BYTES = 1 << 20  # copy in pieces of this size: the file is never held whole
ORIENTATION_TAG = 0x0112
GPS_IFD_TAG = 0x8825
CAMERA_TAGS = {0x010F, 0x0110, 0x8769}  # Make, Model, the Exif IFD (camera settings, dates)
MAX_METADATA_PARSED = 1 << 20  # EXIF larger than this is dropped without reading what is in it
#: A crafted file can hold any number of kinds of metadata: past this many, one label says so.
MAX_LABELS = 20
MORE_METADATA = "more metadata"


class CorruptImage(ValidationError):
    """The file is truncated or broken; the message says where."""

    def __init__(self, message: str):
        super().__init__(message, field="file")


@dataclass
class Walked:
    """What a walk found: the largest dimensions the file declares (its canvas, or a bigger
    frame) and the metadata it removed, in order, each named once."""

    width: int = 0
    height: int = 0
    removed: list[str] = field(default_factory=list)
    orientation_kept: bool = False  # a minimal EXIF was written: never a second one

    def declare(self, width: int, height: int) -> None:
        self.width, self.height = max(self.width, width), max(self.height, height)

    def drop(self, what: str) -> None:
        if what in self.removed or MORE_METADATA in self.removed:
            return
        self.removed.append(what if len(self.removed) < MAX_LABELS - 1 else MORE_METADATA)


class Source:
    """Reads the file being walked, refusing to run past its end."""

    def __init__(self, file: BinaryIO, kind: str):
        self.file = file
        self.kind = kind

    def read(self, size: int, what: str) -> bytes:
        data = self.file.read(size)
        if len(data) != size:
            raise CorruptImage(f"The {self.kind} file is truncated: it ends inside {what}")
        return data

    def read_up_to(self, size: int) -> bytes:
        return self.file.read(size)

    def copy(self, target: BinaryIO | None, size: int, what: str, crc: int | None = None) -> int | None:
        """Copy ``size`` bytes to ``target`` (None skips them), in pieces; with ``crc``, the
        running CRC-32 of what went through."""
        while size:
            piece = self.read(min(size, COPY_BYTES), what)
            if target is not None:
                target.write(piece)
            if crc is not None:
                crc = zlib.crc32(piece, crc)
            size -= len(piece)
        return crc

    def copy_rest(self, target: BinaryIO | None) -> bool:
        """Copy everything left (None skips it); whether there was anything."""
        found = False
        while piece := self.file.read(COPY_BYTES):
            found = True
            if target is not None:
                target.write(piece)
        return found

    def tell(self) -> int:
        return self.file.tell()

    def seek(self, position: int) -> None:
        self.file.seek(position)


def strip(kind: MediaKind, source: BinaryIO, target: BinaryIO, *, keep: bool = False) -> Walked:
    """Copy the image in ``source`` to ``target`` without its metadata (all of it with ``keep``);
    both are files opened in binary mode, ``target`` seekable. CorruptImage if it is broken."""
    walker = {MediaKind.JPEG: _strip_jpeg, MediaKind.PNG: _strip_png, MediaKind.GIF: _strip_gif,
              MediaKind.WEBP: _strip_webp}[kind]
    walked = Walked()
    walker(Source(source, kind.name), target, walked, keep)
    if not walked.width or not walked.height:
        raise CorruptImage(f"The {kind.name} file declares no image size")
    return walked


# --- EXIF --------------------------------------------------------------------------------------


@dataclass
class ExifFacts:
    orientation: int = 1
    gps: bool = False
    camera: bool = False

    def label(self) -> str:
        inside = [name for name, found in (("GPS", self.gps), ("camera", self.camera)) if found]
        return f"EXIF ({', '.join(inside)})" if inside else "EXIF"


def read_exif(tiff: bytes) -> ExifFacts:
    """What matters of a TIFF-structured EXIF block: its orientation and whether it holds a GPS
    position or camera details. A malformed block tells nothing (it is dropped anyway)."""
    facts = ExifFacts()
    if tiff.startswith(b"Exif\0\0"):
        tiff = tiff[6:]
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    try:
        if order is None or struct.unpack(order + "H", tiff[2:4])[0] != 42:
            return facts
        (ifd,) = struct.unpack(order + "I", tiff[4:8])
        (count,) = struct.unpack(order + "H", tiff[ifd:ifd + 2])
        for index in range(count):
            start = ifd + 2 + 12 * index
            tag, kind = struct.unpack(order + "HH", tiff[start:start + 4])
            if tag == ORIENTATION_TAG and kind == 3:
                facts.orientation = struct.unpack(order + "H", tiff[start + 8:start + 10])[0]
            facts.gps |= tag == GPS_IFD_TAG
            facts.camera |= tag in CAMERA_TAGS
    except struct.error:
        pass
    return facts


def minimal_exif(orientation: int) -> bytes:
    """A TIFF-structured EXIF block holding only the Orientation tag."""
    entry = struct.pack(">HHIHH", ORIENTATION_TAG, 3, 1, orientation, 0)
    return b"MM\0*" + struct.pack(">I", 8) + struct.pack(">H", 1) + entry + struct.pack(">I", 0)


def _kept_orientation(facts: ExifFacts) -> int | None:
    """The orientation to write back: any turn or flip (2-8); None for upright or nonsense."""
    return facts.orientation if 2 <= facts.orientation <= 8 else None


# --- JPEG --------------------------------------------------------------------------------------

SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and the restart markers: no length
SOS, EOI, COM, APP0, APP1, APP2, APP13, APP14 = 0xDA, 0xD9, 0xFE, 0xE0, 0xE1, 0xE2, 0xED, 0xEE
XMP_IDS = (b"http://ns.adobe.com/xap/1.0/\0", b"http://ns.adobe.com/xmp/extension/\0")


def _strip_jpeg(source: Source, target: BinaryIO, walked: Walked, keep: bool) -> None:
    if source.read(2, "its start") != b"\xff\xd8":
        raise CorruptImage("The JPEG file does not start with a JPEG start-of-image marker")
    target.write(b"\xff\xd8")
    scanned = False
    while True:
        marker = _next_marker(source)
        if marker == EOI:
            if not scanned:
                raise CorruptImage("The JPEG file ends before any image data")
            target.write(b"\xff\xd9")
            break
        if marker in STANDALONE:
            target.write(bytes((0xFF, marker)))
            continue
        (length,) = struct.unpack(">H", source.read(2, "a segment's length"))
        if length < 2:
            raise CorruptImage(f"The JPEG file has a segment of impossible length {length}")
        payload = source.read(length - 2, "a segment")
        if keep or _keep_jpeg_segment(marker, payload, target, walked):
            target.write(bytes((0xFF, marker)) + struct.pack(">H", length) + payload)
        if marker in SOF_MARKERS and len(payload) >= 5:
            height, width = struct.unpack(">HH", payload[1:5])
            walked.declare(width, height)
        if marker == SOS:
            _copy_entropy_data(source, target)
            scanned = True
    if source.copy_rest(target if keep else None):
        walked.drop("data after the image")


def _next_marker(source: Source) -> int:
    if source.read(1, "a marker") != b"\xff":
        raise CorruptImage("The JPEG file is broken: a segment does not start where the last ended")
    marker = 0xFF
    while marker == 0xFF:  # fill bytes may precede a marker
        marker = source.read(1, "a marker")[0]
    return marker


def _copy_entropy_data(source: Source, target: BinaryIO) -> None:
    """Copy compressed scan data up to the next marker (0xFF not followed by a stuffed 0x00, a
    restart marker or fill), leaving the source at that marker."""
    while True:
        start = source.tell()
        block = source.read_up_to(COPY_BYTES)
        if len(block) < 2:
            raise CorruptImage("The JPEG file is truncated: it ends inside the image data")
        found = _marker_in(block)
        if found is None:  # keep the last byte: it may be the 0xFF of a marker
            target.write(block[:-1])
            source.seek(start + len(block) - 1)
            continue
        target.write(block[:found])
        source.seek(start + found)
        return


def _marker_in(block: bytes) -> int | None:
    """Where the first real marker starts in ``block``, if it is there whole."""
    position = block.find(b"\xff")
    while position != -1 and position + 1 < len(block):
        following = block[position + 1]
        if following != 0x00 and not 0xD0 <= following <= 0xD7 and following != 0xFF:
            return position
        position = block.find(b"\xff", position + 1)
    return None


def _keep_jpeg_segment(marker: int, payload: bytes, target: BinaryIO, walked: Walked) -> bool:
    """Whether to keep a header segment; names what it drops, and writes the minimal EXIF in
    place of an EXIF segment whose orientation matters."""
    if marker == APP0:
        return _keep_or_drop(payload.startswith(b"JFIF\0"), walked, "thumbnail (JFIF extension)")
    if marker == APP1 and payload.startswith(b"Exif\0\0"):
        facts = read_exif(payload[6:])
        walked.drop(facts.label())
        orientation = _kept_orientation(facts)
        if orientation is not None and not walked.orientation_kept:
            exif = b"Exif\0\0" + minimal_exif(orientation)
            target.write(b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif)
            walked.orientation_kept = True
        return False
    if marker == APP1 and payload.startswith(XMP_IDS):
        return _keep_or_drop(False, walked, "XMP")
    if marker == APP2:
        if payload.startswith(b"ICC_PROFILE\0"):
            return True
        return _keep_or_drop(False, walked, "embedded images (MPF)" if payload.startswith(b"MPF\0")
                             else "other metadata (APP2)")
    if marker == APP13:
        return _keep_or_drop(False, walked, "IPTC")
    if marker == APP14:  # Adobe: says how to convert the colours back, needed to show it
        return True
    if marker == COM:
        return _keep_or_drop(False, walked, "comment")
    if 0xE0 <= marker <= 0xEF:
        return _keep_or_drop(False, walked, f"other metadata (APP{marker - 0xE0})")
    return True


def _printable(name: bytes) -> str:
    """A chunk's or application's name as a label shows it (a crafted one may hold anything)."""
    return "".join(char if char.isprintable() else "?" for char in name.decode("latin-1")).strip()


def _keep_or_drop(keep: bool, walked: Walked, what: str) -> bool:
    if not keep:
        walked.drop(what)
    return keep


# --- PNG -----------------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Chunks needed to show the image right (colour, transparency, animation); critical chunks
#: (upper-case first letter) are always kept, since a decoder cannot do without them.
PNG_DISPLAY_CHUNKS = {b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT", b"bKGD", b"pHYs",
                      b"hIST", b"sPLT", b"acTL", b"fcTL", b"fdAT", b"cICP", b"mDCV", b"cLLI"}
PNG_TEXT_CHUNKS = {b"tEXt", b"zTXt", b"iTXt"}


def _strip_png(source: Source, target: BinaryIO, walked: Walked, keep: bool) -> None:
    if source.read(8, "its signature") != PNG_SIGNATURE:
        raise CorruptImage("The PNG file does not start with the PNG signature")
    target.write(PNG_SIGNATURE)
    while True:
        header = source.read(8, "a chunk header")
        length, name = struct.unpack(">I4s", header)
        if length > 0x7FFFFFFF:
            raise CorruptImage(f"The PNG file has a chunk of impossible length {length}")
        if name == b"IHDR":
            if length != 13:
                raise CorruptImage(f"The PNG file is broken: its header chunk is {length} bytes, not 13")
            data = source.read(length, "its header")
            walked.declare(*struct.unpack(">II", data[:8]))
            _write_png_chunk(source, target, name, data)
        elif keep or name[0:1].isupper() or name in PNG_DISPLAY_CHUNKS:
            _copy_png_chunk(source, target, header, length)
        else:
            _drop_png_chunk(source, target, name, length, walked)
        if name == b"IEND":
            break
    if source.copy_rest(target if keep else None):
        walked.drop("data after the image")


def _write_png_chunk(source: Source, target: BinaryIO, name: bytes, data: bytes) -> None:
    """Write a chunk read whole, checking its CRC."""
    (crc,) = struct.unpack(">I", source.read(4, "a chunk's CRC"))
    if zlib.crc32(name + data) != crc:
        raise CorruptImage(f"The PNG file is corrupt: its {_printable(name)} chunk fails its CRC check")
    target.write(struct.pack(">I", len(data)) + name + data + struct.pack(">I", crc))


def _copy_png_chunk(source: Source, target: BinaryIO, header: bytes, length: int) -> None:
    """Copy a chunk piece by piece, checking its CRC."""
    target.write(header)
    name = header[4:]
    crc = source.copy(target, length, f"its {_printable(name)} chunk", crc=zlib.crc32(name))
    stored = source.read(4, "a chunk's CRC")
    if struct.unpack(">I", stored)[0] != crc:
        raise CorruptImage(f"The PNG file is corrupt: its {_printable(name)} chunk fails its CRC check")
    target.write(stored)


def _drop_png_chunk(source: Source, target: BinaryIO, name: bytes, length: int, walked: Walked) -> None:
    if name == b"eXIf" and length <= MAX_METADATA_PARSED:
        facts = read_exif(source.read(length, "its EXIF chunk"))
        walked.drop(facts.label())
        orientation = _kept_orientation(facts)
        if orientation is not None:
            exif = minimal_exif(orientation)
            target.write(struct.pack(">I", len(exif)) + b"eXIf" + exif
                         + struct.pack(">I", zlib.crc32(b"eXIf" + exif)))
    else:
        if name in PNG_TEXT_CHUNKS and length <= MAX_METADATA_PARSED:
            keyword = source.read(length, "a text chunk").split(b"\0", 1)[0]
            walked.drop("XMP" if keyword == b"XML:com.adobe.xmp" else "PNG text")
        else:
            source.copy(None, length, "a chunk")
            walked.drop({b"eXIf": "EXIF", b"tIME": "modification time"}.get(
                name, f"other metadata ({_printable(name)})"))
    source.read(4, "a chunk's CRC")


# --- GIF -----------------------------------------------------------------------------------------

#: Application extensions needed to show the image right: looping, and the ICC profile.
GIF_DISPLAY_APPS = (b"NETSCAPE2.0", b"ANIMEXTS1.0", b"ICCRGBG1012")


def _strip_gif(source: Source, target: BinaryIO, walked: Walked, keep: bool) -> None:
    header = source.read(13, "its header")
    if header[:6] not in (b"GIF87a", b"GIF89a"):
        raise CorruptImage("The GIF file does not start with a GIF signature")
    walked.declare(*struct.unpack("<HH", header[6:10]))
    target.write(header)
    _copy_color_table(source, target, header[10])
    while True:
        introducer = source.read(1, "a block")
        if introducer == b"\x3b":  # the trailer
            target.write(introducer)
            break
        if introducer == b"\x2c":
            _copy_gif_frame(source, target, walked)
        elif introducer == b"\x21":
            _gif_extension(source, target, walked, keep)
        else:
            raise CorruptImage(f"The GIF file is broken: unknown block type {introducer[0]:#04x}")
    if source.copy_rest(target if keep else None):
        walked.drop("data after the image")


def _copy_color_table(source: Source, target: BinaryIO, packed: int) -> None:
    if packed & 0x80:
        target.write(source.read(3 * 2 ** ((packed & 0x07) + 1), "a colour table"))


def _copy_gif_frame(source: Source, target: BinaryIO, walked: Walked) -> None:
    descriptor = source.read(9, "an image descriptor")
    left, top, width, height = struct.unpack("<HHHH", descriptor[:8])
    walked.declare(left + width, top + height)
    target.write(b"\x2c" + descriptor)
    _copy_color_table(source, target, descriptor[8])
    target.write(source.read(1, "an image's code size"))
    _sub_blocks(source, target)


def _gif_extension(source: Source, target: BinaryIO, walked: Walked, keep: bool) -> None:
    label = source.read(1, "an extension")
    if label == b"\xff":  # application extension: its first sub-block names the application
        size = source.read(1, "an application extension")
        application = source.read(size[0], "an application extension")
        name = application[:11]
        kept = keep or name in GIF_DISPLAY_APPS
        if not kept:
            walked.drop("XMP" if name == b"XMP DataXMP" else f"other metadata ({_printable(name)})")
        out = target if kept else None
        if out is not None:
            out.write(b"\x21\xff" + size + application)
        _sub_blocks(source, out)
    elif label == b"\xfe" and not keep:
        walked.drop("GIF comment")
        _sub_blocks(source, None)
    else:  # graphic control (frame timing, transparency) and plain text render the image
        target.write(b"\x21" + label)
        _sub_blocks(source, target)


def _sub_blocks(source: Source, target: BinaryIO | None) -> None:
    """Copy (None: skip) data sub-blocks up to and including their terminator."""
    while True:
        size = source.read(1, "a data block")
        if target is not None:
            target.write(size)
        if size == b"\0":
            return
        source.copy(target, size[0], "a data block")


# --- WebP ----------------------------------------------------------------------------------------

WEBP_DISPLAY_CHUNKS = {b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF", b"ICCP"}
VP8X_EXIF, VP8X_XMP = 0x08, 0x04


def _strip_webp(source: Source, target: BinaryIO, walked: Walked, keep: bool) -> None:
    riff = source.read(12, "its header")
    if riff[:4] != b"RIFF" or riff[8:12] != b"WEBP":
        raise CorruptImage("The WebP file does not start with a RIFF WEBP header")
    (declared,) = struct.unpack("<I", riff[4:8])
    end = declared + 8
    target.write(riff)
    vp8x, has_exif = None, False
    while source.tell() < end:
        name, size = struct.unpack("<4sI", source.read(8, "a chunk header"))
        padded = size + (size & 1)
        if source.tell() + padded > end:
            raise CorruptImage(f"The WebP file is broken: its {_printable(name)} chunk runs past the end")
        if keep or name in WEBP_DISPLAY_CHUNKS:
            head = source.read(min(padded, 30), "a chunk")
            _declare_webp(name, head, walked)
            if name == b"VP8X":
                vp8x = (target.tell(), head[0])
            target.write(struct.pack("<4sI", name, size) + head)
            source.copy(target, padded - len(head), "a chunk")
        else:
            has_exif |= _drop_webp_chunk(source, target, name, padded, walked)
    if source.copy_rest(target if keep else None):
        walked.drop("data after the image")
    if not keep:
        _fix_webp_header(target, vp8x, has_exif)


def _declare_webp(name: bytes, head: bytes, walked: Walked) -> None:
    """Dimensions from the chunk's first bytes: the canvas (VP8X), a frame (ANMF) or a still
    image's bitstream (VP8, VP8L)."""
    try:
        if name == b"VP8X":
            walked.declare(_u24(head[4:7]) + 1, _u24(head[7:10]) + 1)
        elif name == b"ANMF":
            walked.declare(_u24(head[0:3]) * 2 + _u24(head[6:9]) + 1,
                           _u24(head[3:6]) * 2 + _u24(head[9:12]) + 1)
        elif name == b"VP8 " and head[3:6] == b"\x9d\x01\x2a":
            width, height = struct.unpack("<HH", head[6:10])
            walked.declare(width & 0x3FFF, height & 0x3FFF)
        elif name == b"VP8L" and head[:1] == b"\x2f":
            (bits,) = struct.unpack("<I", head[1:5])
            walked.declare((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    except (struct.error, IndexError):
        raise CorruptImage(f"The WebP file is broken: its {_printable(name)} chunk is too short") from None


def _u24(data: bytes) -> int:
    if len(data) != 3:
        raise IndexError("short")
    return int.from_bytes(data, "little")


def _drop_webp_chunk(source: Source, target: BinaryIO, name: bytes, padded: int, walked: Walked) -> bool:
    """Drop a metadata chunk; True when a minimal EXIF with the orientation replaced it."""
    if name == b"EXIF" and padded <= MAX_METADATA_PARSED:
        facts = read_exif(source.read(padded, "its EXIF chunk"))
        walked.drop(facts.label())
        orientation = _kept_orientation(facts)
        if orientation is None:
            return False
        exif = minimal_exif(orientation)  # even length: no padding byte
        target.write(struct.pack("<4sI", b"EXIF", len(exif)) + exif)
        return True
    source.copy(None, padded, "a chunk")
    walked.drop({b"EXIF": "EXIF", b"XMP ": "XMP"}.get(name, f"other metadata ({_printable(name)})"))
    return False


def _fix_webp_header(target: BinaryIO, vp8x: tuple[int, int] | None, has_exif: bool) -> None:
    """Write the RIFF size of what was written, and VP8X flags saying which metadata is left
    (``vp8x``: where the VP8X chunk was written, and its flags)."""
    end = target.tell()
    target.seek(4)
    target.write(struct.pack("<I", end - 8))
    if vp8x is not None:
        position, flags = vp8x
        flags &= ~(VP8X_EXIF | VP8X_XMP) & 0xFF
        target.seek(position + 8)
        target.write(bytes((flags | (VP8X_EXIF if has_exif else 0),)))
    target.seek(end)
