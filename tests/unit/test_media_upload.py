"""The upload use case (thotto/media.py) on a real SQLite store: its temporary files are private
while it runs and gone after it, whatever happens; the type comes from the bytes."""

from __future__ import annotations

import os
import stat
import time

import pytest

from tests.support import images
from thotto.config import Settings
from thotto.errors import UnsupportedMedia
from thotto.scheduler.media import UPLOAD_DIR_NAME, sniff, upload_dir, upload_media
from thotto.scheduler.records import MediaKind, NewUser
from thotto.store import open_store


@pytest.mark.parametrize("make, kind", [(images.png, MediaKind.PNG), (images.jpeg, MediaKind.JPEG),
                                        (images.gif, MediaKind.GIF), (images.webp, MediaKind.WEBP)])
def test_the_kind_comes_from_the_first_bytes(make, kind):
    assert sniff(make()[:12]) is kind


@pytest.mark.parametrize("head", [b"", b"hello world!", b"<svg xmlns=", b"RIFF\0\0\0\0WAVE", b"\x00\x00\x01\x00"])
def test_anything_else_is_no_kind(head):
    assert sniff(head) is None


async def test_temporary_files_are_private_while_an_upload_runs_and_gone_after(tmp_path):
    settings = Settings(data_dir=str(tmp_path))
    seen = []

    async def body():
        data = images.jpeg()
        yield data[:100]
        directory = tmp_path / UPLOAD_DIR_NAME
        seen.append(stat.S_IMODE(directory.stat().st_mode))
        seen.extend(stat.S_IMODE(path.stat().st_mode) for path in directory.iterdir())
        yield data[100:]

    async with open_store(str(tmp_path / "thotto.db")) as store:
        user = await store.create_user(NewUser(name="alice"))
        media = await upload_media(store, settings, user.id, body())
        assert media.kind is MediaKind.JPEG
        with pytest.raises(UnsupportedMedia):
            await upload_media(store, settings, user.id, aiter_of(b"GIF? no, a text file"))
    assert seen == [0o700, 0o600, 0o600]
    assert list((tmp_path / UPLOAD_DIR_NAME).iterdir()) == []


async def test_a_failing_body_leaves_no_temporary_file(tmp_path):
    settings = Settings(data_dir=str(tmp_path))

    async def body():
        yield images.png()[:50]
        raise ConnectionResetError("the client went away")

    async with open_store(str(tmp_path / "thotto.db")) as store:
        user = await store.create_user(NewUser(name="alice"))
        with pytest.raises(ConnectionResetError):
            await upload_media(store, settings, user.id, body())
        assert (await store.list_media(user.id)).media == []
    assert list((tmp_path / UPLOAD_DIR_NAME).iterdir()) == []


def test_files_a_crash_left_are_removed_once_a_day_old(tmp_path):
    directory = upload_dir(str(tmp_path))
    old, recent = directory / "upload-old.part", directory / "upload-new.part"
    old.write_bytes(b"x")
    recent.write_bytes(b"y")
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    upload_dir(str(tmp_path))
    assert sorted(path.name for path in directory.iterdir()) == ["upload-new.part"]


async def aiter_of(data: bytes):
    yield data
