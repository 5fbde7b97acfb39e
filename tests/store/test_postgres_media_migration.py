"""Postgres migrations with gaps in their numbers (each branch takes its number as it starts):
a database at version 4 goes to the media migration, 7, and the media library works."""

from __future__ import annotations

import pytest

from tests.store.test_postgres_specific import sql
from thotto.messages import MediaKind, NewMedia, NewUser
from thotto.store.postgres import MIGRATIONS, SCHEMA_VERSION, open_postgres_store

pytestmark = pytest.mark.postgres


async def one_chunk():
    yield b"image bytes"


async def test_a_version_4_database_is_migrated_past_the_gap_to_media(postgres_dsn):
    async with open_postgres_store(postgres_dsn) as store:
        user = await store.create_user(NewUser(name="alice"))
    # As a database made before the media library: its tables gone, its version 4.
    await sql(postgres_dsn, "DROP TABLE post_media, media_chunks, media")
    await sql(postgres_dsn, "UPDATE thotto_schema SET version = 4")
    assert 7 in MIGRATIONS and 5 not in MIGRATIONS and SCHEMA_VERSION == max(MIGRATIONS)
    async with open_postgres_store(postgres_dsn) as store:
        media = await store.create_media(
            NewMedia(user_id=user.id, kind=MediaKind.GIF, width=1, height=1), one_chunk())
        assert (await store.list_media(user.id)).media == [media]
