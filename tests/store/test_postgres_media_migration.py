"""Postgres legacy (single-track) migrations are applied in order of their numbers, which may
have gaps (each branch took its number as it started): a database made just before the media
library migrates to it, and to the per-component versions after, and the library works."""

from __future__ import annotations

import pytest

from tests.store.test_contract_titles import UNDO_AFTER_5, undo_after_5
from tests.store.test_postgres_specific import sql
from thotto.scheduler.records import MediaKind, NewMedia, NewUser
from thotto.store.postgres import LEGACY, open_postgres_store

pytestmark = pytest.mark.postgres


async def one_chunk():
    yield b"image bytes"


MEDIA = next(number for number, text in LEGACY.migrations.items() if "CREATE TABLE media" in text)


async def test_a_database_made_before_the_media_library_is_migrated_to_it(postgres_dsn):
    async with open_postgres_store(postgres_dsn) as store:
        user = await store.create_user(NewUser(name="alice"))
    # As a database made before the media library: its tables (and those of every later
    # migration) gone, its version the one before.
    for statement in undo_after_5("postgres")[:UNDO_AFTER_5.index("DROP TABLE IF EXISTS media") + 1]:
        await sql(postgres_dsn, statement)
    before = max(number for number in LEGACY.migrations if number < MEDIA)
    await sql(postgres_dsn, f"UPDATE thotto_schema SET version = {before}")
    async with open_postgres_store(postgres_dsn) as store:
        media = await store.create_media(
            NewMedia(user_id=user.id, kind=MediaKind.GIF, width=1, height=1), one_chunk())
        assert (await store.list_media(user.id)).media == [media]
