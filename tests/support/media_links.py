"""Link a post to media straight in the database: posts do not refer to media yet (the
``post_media`` table stays empty until they do), but deleting and purging media already obey
the links, so tests write the rows themselves, on either adapter."""

from __future__ import annotations

import sqlite3

import trio


def _insert(url: str, post_id: int, media_id: int) -> None:
    if url.startswith(("postgres://", "postgresql://")):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO post_media (post_id, media_id) VALUES (%s, %s)",
                         (post_id, media_id))
        return
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    conn = sqlite3.connect(path, timeout=10)
    try:
        with conn:
            conn.execute("INSERT INTO post_media (post_id, media_id) VALUES (?, ?)",
                         (post_id, media_id))
    finally:
        conn.close()


async def link_post_to_media(database_url: str, post_id: int, media_id: int) -> None:
    """Insert the row saying post ``post_id`` uses media ``media_id``."""
    await trio.to_thread.run_sync(_insert, database_url, post_id, media_id)
