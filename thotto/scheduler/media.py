"""The media library's use cases: uploading an image, and deleting media no post uses.

:func:`upload_media` is the one upload: ``POST /api/media`` calls it with the request body and
``thotto media upload`` with a file's contents. Step by step, so that memory never grows with
the size of the upload:

1. The bytes are streamed to a temporary file in the data directory (mode 0600), counted on the
   way: past ``media_max_bytes`` the upload stops (PayloadTooLarge). The type comes from the first
   bytes, never a file name or Content-Type: PNG, JPEG, GIF or WebP, else UnsupportedMedia.
2. The file is walked segment by segment (:mod:`thotto.scheduler.image_metadata`) into a second temporary
   file without its location and camera metadata (unless the user keeps it): that also checks its
   structure (truncated or broken: CorruptImage) and finds the size it declares, refused past
   ``media_max_pixels`` before anything decodes it.
3. Pillow opens the result, reads its dimensions and decodes it once (a JPEG at an eighth of its
   size: the same compressed data, a 64th of the memory), so an image that cannot be shown is
   refused.
4. The store stores it chunk by chunk, read from the second file.

The temporary files are removed whatever happens; files left by a crash are removed by the next
upload once a day old.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import zlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import trio

from thotto.config import Settings
from thotto.engine.errors import ValidationError
from thotto.errors import PayloadTooLarge, UnsupportedMedia
from thotto.scheduler.image_metadata import CorruptImage, strip
from thotto.scheduler.records import Media, MediaKind, NewMedia
from thotto.store.base import MEDIA_CHUNK_BYTES, Store

ACCEPTED = "PNG, JPEG, GIF or WebP"
UPLOAD_DIR_NAME = "media-uploads"
SNIFF_BYTES = 12
STALE_UPLOAD_SECONDS = 86400.0
#: An upload still unfinished in the store after this long was cut short (a crash).
UNFINISHED_UPLOAD_AGE = timedelta(days=1)
#: Images decoded at once in a process: each may hold up to ~4 bytes per pixel for a moment, so
#: concurrent uploads must not multiply that without bound.
CONCURRENT_DECODES = 2
_decodes: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("thotto_media_decodes")
PILLOW_FORMATS = {MediaKind.PNG: "PNG", MediaKind.JPEG: "JPEG", MediaKind.GIF: "GIF",
                  MediaKind.WEBP: "WEBP"}


@dataclass(frozen=True)
class CheckedImage:
    """An image that passed every check, with what was removed from it."""

    kind: MediaKind
    width: int
    height: int
    removed: list[str] = field(default_factory=list)


def sniff(head: bytes) -> MediaKind | None:
    """The image kind its first bytes announce, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return MediaKind.PNG
    if head.startswith(b"\xff\xd8\xff"):
        return MediaKind.JPEG
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return MediaKind.GIF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return MediaKind.WEBP
    return None


def _require_kind(head: bytes) -> MediaKind:
    if not head:
        raise ValidationError("The upload is empty: send the image's bytes", field="file")
    kind = sniff(head)
    if kind is None:
        raise UnsupportedMedia(f"The file is not an image Reddit takes: send a {ACCEPTED} image "
                               "(the type is read from the file's bytes, not its name)", field="file")
    return kind


async def upload_media(store: Store, settings: Settings, user_id: int, body: AsyncIterable[bytes],
                       *, keep_metadata: bool = False) -> Media:
    """Check ``body`` (the image's bytes, in pieces of any size) and store it for ``user_id``
    without its metadata (all of it with ``keep_metadata``). Raises PayloadTooLarge,
    UnsupportedMedia, or ValidationError (CorruptImage, a decompression bomb, an empty upload);
    nothing is stored then, and no temporary file stays behind."""
    directory = upload_dir(settings.data_dir)
    temporary: list[Path] = []
    try:
        received = _temp_path(directory, temporary)
        stripped = _temp_path(directory, temporary)
        kind = await receive(body, received, settings.media_max_bytes)
        checked = await trio.to_thread.run_sync(
            check_image, kind, received, stripped, keep_metadata, settings.media_max_pixels,
            limiter=_decode_limiter())
        new = NewMedia(user_id=user_id, kind=kind, width=checked.width, height=checked.height,
                       removed=checked.removed)
        return await store.create_media(new, file_chunks(stripped))
    finally:
        for path in temporary:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _decode_limiter() -> trio.CapacityLimiter:
    try:
        return _decodes.get()
    except LookupError:
        _decodes.set(trio.CapacityLimiter(CONCURRENT_DECODES))
        return _decodes.get()


def upload_dir(data_dir: str) -> Path:
    """The directory of uploads in progress (0700), cleared of files a crash left a day ago."""
    directory = Path(data_dir) / UPLOAD_DIR_NAME
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    stale = time.time() - STALE_UPLOAD_SECONDS
    for leftover in directory.glob("upload-*"):
        with contextlib.suppress(FileNotFoundError):
            if leftover.stat().st_mtime < stale:
                leftover.unlink()
    return directory


def _temp_path(directory: Path, made: list[Path]) -> Path:
    """A new empty file only this OS user may read (mkstemp makes it 0600), added to ``made``."""
    handle, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=directory)
    os.close(handle)
    made.append(Path(name))
    return made[-1]


async def receive(body: AsyncIterable[bytes], path: Path, limit: int) -> MediaKind:
    """Stream ``body`` into ``path``, at most ``limit`` bytes; the kind its first bytes say. A
    body that is not an image is refused as soon as its first bytes are in."""
    size, head, kind = 0, b"", None
    async with await trio.open_file(path, "wb") as file:
        async for piece in body:
            size += len(piece)
            if size > limit:
                raise PayloadTooLarge(f"The image is over {limit:,} bytes; at most {limit:,} are "
                                      "accepted (the media_max_bytes setting)")
            if kind is None:
                head += piece[:SNIFF_BYTES]
                if len(head) >= SNIFF_BYTES:
                    kind = _require_kind(head)
            await file.write(piece)
    return kind or _require_kind(head)


def check_image(kind: MediaKind, received: Path, stripped: Path, keep_metadata: bool,
                max_pixels: int) -> CheckedImage:
    """Walk ``received`` into ``stripped`` (blocking: run it in a thread), refuse a bomb on the
    size it declares, then decode the result with Pillow."""
    with open(received, "rb") as source, open(stripped, "w+b") as target:
        walked = strip(kind, source, target, keep=keep_metadata)
    check_pixels(walked.width, walked.height, max_pixels)
    width, height = decode_with_pillow(kind, stripped, max_pixels)
    return CheckedImage(kind, width, height, walked.removed)


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ValidationError(
            f"The image declares {width:,} × {height:,} pixels ({width * height:,}); at most "
            f"{max_pixels:,} are accepted (the media_max_pixels setting): a file this small "
            "cannot hold a real image that large (a decompression bomb)", field="file")


def decode_with_pillow(kind: MediaKind, path: Path, max_pixels: int) -> tuple[int, int]:
    """The image's dimensions, once Pillow has decoded it (its first frame); CorruptImage if it
    cannot."""
    from PIL import Image

    try:
        with Image.open(path, formats=[PILLOW_FORMATS[kind]]) as image:
            width, height = image.size
            check_pixels(width, height, max_pixels)
            if kind is MediaKind.PNG:  # check every byte of its pixel data without holding it
                check_png_pixels(path, width, height)
                return width, height
            if kind is MediaKind.JPEG:  # decode the same data at 1/8 scale: 1/64 of the memory
                image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
            image.load()
    except ValidationError:
        raise
    except Image.DecompressionBombError as error:
        raise ValidationError(f"The image is too large to decode: {error}", field="file") from None
    except Exception as error:  # Pillow reports a broken file with many exception types
        raise CorruptImage(f"The {kind.name} image cannot be decoded ({error}); it may be "
                           "truncated or damaged: export it again") from None
    return width, height


# PNG: channels per colour type, and the Adam7 passes (x0, y0, dx, dy).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_READ = 64 * 1024


def check_png_pixels(path: Path, width: int, height: int) -> None:
    """Check a PNG's chunks (every CRC) and inflate its image data to the end, counting what comes
    out instead of keeping it: the image decodes to exactly the bytes its header says, in a few
    64 KB buffers (Pillow would hold the whole decoded image, width × height × 4 bytes).
    CorruptImage otherwise."""
    inflate, produced, header = zlib.decompressobj(), 0, None
    with open(path, "rb") as file:
        file.read(8)  # the signature, already checked by the stripper
        while True:
            head = file.read(8)
            if len(head) < 8:
                raise CorruptImage("The PNG image ends before its IEND chunk: it is truncated; export it again")
            length, chunk_type = int.from_bytes(head[:4], "big"), head[4:]
            crc, left = zlib.crc32(chunk_type), length
            first = b""
            while left:
                data = file.read(min(left, _READ))
                if not data:
                    raise CorruptImage("The PNG image is truncated inside a chunk; export it again")
                left -= len(data)
                crc = zlib.crc32(data, crc)
                first = first or data[:13]
                if chunk_type == b"IDAT":
                    produced += _inflated(inflate, data)
            if int.from_bytes(file.read(4), "big") != crc:
                raise CorruptImage(f"The PNG image's {chunk_type.decode('latin-1')} chunk is damaged "
                                   "(its checksum does not match); export it again")
            if chunk_type == b"IHDR":
                header = first
            if chunk_type == b"IEND":
                break
    if header is None or not inflate.eof or produced != _png_raw_size(header, width, height):
        raise CorruptImage("The PNG image's pixel data is incomplete or damaged; export it again")


def _inflated(inflate, data: bytes) -> int:
    """Feed ``data`` to ``inflate``; how many bytes came out (kept 64 KB at a time, then dropped)."""
    count = 0
    try:
        while data:
            count += len(inflate.decompress(data, _READ))
            data = inflate.unconsumed_tail
            if inflate.eof:
                break
    except zlib.error:
        raise CorruptImage("The PNG image's pixel data is damaged; export it again") from None
    return count


def _png_raw_size(header: bytes, width: int, height: int) -> int:
    """The bytes a PNG's image data inflates to: a filter byte and the packed pixels per row, per
    Adam7 pass when interlaced."""
    bit_depth, colour, interlaced = header[8], header[9], header[12]
    bits = _PNG_CHANNELS.get(colour, 0) * bit_depth
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    total = 0
    for x0, y0, dx, dy in passes:
        columns, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if columns > 0 and rows > 0:
            total += rows * (1 + -(-(columns * bits) // 8))
    return total


async def file_chunks(path: Path, size: int = MEDIA_CHUNK_BYTES) -> AsyncIterator[bytes]:
    """A file's contents in pieces of ``size`` bytes."""
    async with await trio.open_file(path, "rb") as file:
        while piece := await file.read(size):
            yield piece


async def purge_unused_media(store: Store, settings: Settings, now: datetime) -> int:
    """The daily media retention: delete media no post uses once ``media_retention_days`` old,
    and uploads a crash left unfinished once a day old."""
    unused_before = now - timedelta(days=settings.media_retention_days)
    unfinished_before = max(unused_before, now - UNFINISHED_UPLOAD_AGE)
    return await store.purge_media(unused_before, unfinished_before=unfinished_before)
