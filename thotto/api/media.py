"""``/api/media``: upload images, list, read and delete them.

An upload is the image as the request body (any Content-Type: the file's own bytes decide what
it is) or the one file field of a ``multipart/form-data`` form, streamed through
:func:`thotto.scheduler.media.upload_media` (the same function ``thotto media upload`` calls), so the
server never holds the whole file in memory. Location and camera metadata are removed unless
``?keepMetadata=true``; the answer says what was removed. Another user's media is 404 everywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from typing import Annotated

import msgspec
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from thotto.api.endpoints import EndpointGroup, json_response, path_id, read_query
from thotto.api.auth import require_user
from thotto.engine.errors import ValidationError
from thotto.errors import PayloadTooLarge
from thotto.scheduler.media import upload_media
from thotto.scheduler.records import ApiBody, Media, MediaKind, MediaList, MediaView

ENDPOINTS = EndpointGroup()
TAGS = ("media",)
#: Room for a multipart form's boundaries and part headers beyond the file itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024

_BINARY = {"schema": {"type": "string", "format": "binary"}}
UPLOAD_CONTENT = {
    **{kind.content_type: _BINARY for kind in MediaKind},
    "application/octet-stream": _BINARY,
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary",
                                "description": "the image (one file field)"}}}},
}
IMAGE_CONTENT = {kind.content_type: _BINARY for kind in MediaKind}


class UploadQuery(ApiBody):
    """Options of ``POST /api/media``."""

    keep_metadata: bool = False
    """Keep the image's metadata (EXIF with GPS and camera, XMP, IPTC, comments) as uploaded."""


class MediaQuery(ApiBody):
    """Pages of ``GET /api/media``."""

    cursor: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 50


def media_view(media: Media) -> MediaView:
    return MediaView(id=media.id, kind=media.kind, width=media.width, height=media.height,
                     bytes=media.bytes, sha256=media.sha256, removed=media.removed,
                     created_at=media.created_at)


# --- uploading -----------------------------------------------------------------------------------


@ENDPOINTS.add("POST", "/api/media",
               "Upload a PNG, JPEG, GIF or WebP image, as the body or a form's file field",
               query=UploadQuery, response=MediaView, status=201, body_content=UPLOAD_CONTENT,
               errors=(401, 413, 415, 422, 429), tags=TAGS)
async def upload(request: Request) -> Response:
    user = await require_user(request)
    query = read_query(request, UploadQuery)
    context = request.app.state.api
    media = await upload_media(context.store, context.settings, user.id, image_bytes(request),
                               keep_metadata=query.keep_metadata)
    return json_response(media_view(media), 201)


def image_bytes(request: Request) -> AsyncIterable[bytes]:
    """The uploaded image's bytes as they arrive: the body, or a form's file field. A body whose
    declared length is over the limit is refused before any of it is read."""
    limit = request.app.state.api.settings.media_max_bytes
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    multipart = kind == b"multipart/form-data"
    declared = request.headers.get("content-length", "")
    allowed = limit + (MULTIPART_OVERHEAD_BYTES if multipart else 0)
    if declared.isdigit() and int(declared) > allowed:
        raise PayloadTooLarge(f"The upload is {int(declared):,} bytes; an image may be at most "
                              f"{limit:,} (the media_max_bytes setting)")
    if not multipart:
        return request.stream()
    boundary = options.get(b"boundary")
    if not boundary:
        raise ValidationError("A multipart/form-data body needs a boundary in its Content-Type",
                              field="file")
    return form_file(request.stream(), boundary, allowed)


class _FormFile:
    """python-multipart's callbacks, collecting the data of a form's one file field."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.files = 0
        self.ended = False
        self._in_file = False
        self._field = self._value = b""
        self._disposition = b""

    def callbacks(self) -> dict:
        return {"on_part_begin": self._part_begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
                "on_part_end": self._part_end, "on_end": self._end}

    def _part_begin(self) -> None:
        self._disposition = b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        if self._field.lower() == b"content-disposition":
            self._disposition = self._value
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        self._in_file = b"filename" in options
        if self._in_file:
            self.files += 1
            if self.files > 1:
                raise ValidationError("The form has more than one file: upload one image at a time",
                                      field="file")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.pieces.append(bytes(data[start:end]))

    def _part_end(self) -> None:
        self._in_file = False

    def _end(self) -> None:
        self.ended = True


async def form_file(stream: AsyncIterable[bytes], boundary: bytes, limit: int) -> AsyncIterator[bytes]:
    """The bytes of the form's one file field, as the body arrives (fields that are not files
    are ignored, but count towards the body's ``limit``)."""
    form = _FormFile()
    parser = MultipartParser(boundary, form.callbacks())
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The form is over {limit:,} bytes; an image may be at most "
                                  f"{limit - MULTIPART_OVERHEAD_BYTES:,} (the media_max_bytes setting)")
        try:
            parser.write(chunk)
        except MultipartParseError as error:
            raise ValidationError(f"The multipart/form-data body is malformed: {error}",
                                  field="file") from None
        pieces, form.pieces = form.pieces, []
        for piece in pieces:
            yield piece
    if not form.ended:
        raise ValidationError("The multipart/form-data body ends before its closing boundary",
                              field="file")
    if not form.files:
        raise ValidationError("The form has no file: send the image as a file field "
                              "(curl -F file=@photo.jpg)", field="file")


# --- reading -------------------------------------------------------------------------------------


@ENDPOINTS.add("GET", "/api/media", "Your media, newest first (cursor pagination)",
               query=MediaQuery, response=MediaList, errors=(401, 422, 429), tags=TAGS)
async def list_media(request: Request) -> Response:
    user = await require_user(request)
    query = read_query(request, MediaQuery)
    page = await request.app.state.api.store.list_media(user.id, cursor=query.cursor,
                                                        limit=query.limit)
    return json_response(MediaList(media=[media_view(media) for media in page.media],
                                   next_cursor=page.next_cursor))


@ENDPOINTS.add("GET", "/api/media/{id}", "One of your images: its kind, size and what was removed",
               response=MediaView, errors=(401, 404, 429), tags=TAGS)
async def get_media(request: Request) -> Response:
    user = await require_user(request)
    media = await request.app.state.api.store.get_media(path_id(request), user.id)
    return json_response(media_view(media))


@ENDPOINTS.add("GET", "/api/media/{id}/content", "The image's bytes, as stored",
               response_content=IMAGE_CONTENT, errors=(401, 404, 429), tags=TAGS)
async def media_content(request: Request) -> Response:
    user = await require_user(request)
    store = request.app.state.api.store
    media = await store.get_media(path_id(request), user.id)
    headers = {"content-length": str(media.bytes), "etag": f'"{media.sha256}"',
               # An id never names other bytes (ids are not reused), so the image may be kept.
               "cache-control": "private, max-age=86400", "x-content-type-options": "nosniff"}
    return StreamingResponse(_stored_bytes(store, media.id, user.id), headers=headers,
                             media_type=media.kind.content_type)


async def _stored_bytes(store, media_id: int, user_id: int) -> AsyncIterator[bytes]:
    async with contextlib.aclosing(store.read_media(media_id, user_id)) as chunks:
        async for chunk in chunks:
            yield chunk


# --- deleting ------------------------------------------------------------------------------------


@ENDPOINTS.add("DELETE", "/api/media/{id}",
               "Delete one of your images (refused while a post not yet finished uses it)",
               response=MediaView, errors=(401, 404, 409, 429), tags=TAGS)
async def delete_media(request: Request) -> Response:
    user = await require_user(request)
    media = await request.app.state.api.store.delete_media(path_id(request), user.id)
    return json_response(media_view(media))
