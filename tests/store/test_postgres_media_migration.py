"""Postgres migrations are applied in order of their numbers, which may have gaps (each branch
takes its number as it starts): a database made just before the media library migrates to it,
and the library works."""

from __future__ import annotations

import pytest

from tests.store.test_contract_titles import UNDO_AFTER_5
from tests.store.test_postgres_specific import sql
from thotto.messages import MediaKind, NewMedia, NewUser
from thotto.store.postgres import MIGRATIONS, SCHEMA_VERSION, open_postgres_store

pytestmark = pytest.mark.postgres


async def one_chunk():
    yield b"image bytes"


MEDIA = next(number for number, name in MIGRATIONS.items() if name.endswith("_media.sql"))


async def test_a_database_made_before_the_media_library_is_migrated_to_it(postgres_dsn):
    async with open_postgres_store(postgres_dsn) as store:
        user = await store.create_user(NewUser(name="alice"))
    # As a database made before the media library: its tables (and those of every later
    # migration) gone, its version the one before.
    for statement in UNDO_AFTER_5[:UNDO_AFTER_5.index("DROP TABLE IF EXISTS media") + 1]:
        await sql(postgres_dsn, statement)
    before = max(number for number in MIGRATIONS if number < MEDIA)
    await sql(postgres_dsn, f"UPDATE thotto_schema SET version = {before}")
    assert SCHEMA_VERSION == max(MIGRATIONS) >= MEDIA
    async with open_postgres_store(postgres_dsn) as store:
        media = await store.create_media(
            NewMedia(user_id=user.id, kind=MediaKind.GIF, width=1, height=1), one_chunk())
        assert (await store.list_media(user.id)).media == [media]
