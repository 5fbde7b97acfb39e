-- The media library: images uploaded by users, stored in the database so that every process
-- (API or worker, on any machine with Postgres) reads the same bytes.

-- An upload is written chunk by chunk and becomes visible (ready = 1) only when complete; an
-- upload cut short by a crash stays ready = 0 until the media retention job removes it.
-- AUTOINCREMENT: posts will refer to media by id, so a deleted id is never handed out again.
CREATE TABLE media (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    kind       TEXT    NOT NULL,            -- png | jpeg | gif | webp, told from the bytes
    width      INTEGER NOT NULL,
    height     INTEGER NOT NULL,
    bytes      INTEGER NOT NULL DEFAULT 0,  -- counted by the store as the chunks arrive
    sha256     TEXT    NOT NULL DEFAULT '', -- of the stored bytes
    removed    TEXT    NOT NULL DEFAULT '[]', -- JSON list: the metadata removed before storing
    ready      INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX media_user ON media (user_id, id) WHERE ready = 1;
CREATE INDEX media_created ON media (created_at);

-- The bytes, in chunks of at most 1 MB (seq 0, 1, ...), so that neither storing nor reading a
-- file holds all of it in memory.
CREATE TABLE media_chunks (
    media_id INTEGER NOT NULL REFERENCES media (id),
    seq      INTEGER NOT NULL,
    data     BLOB    NOT NULL,
    PRIMARY KEY (media_id, seq)
);

-- Which posts use which media (empty until posts refer to media by id). A medium linked to a
-- post that is not finished cannot be deleted; one no post links is removed by retention.
CREATE TABLE post_media (
    post_id  INTEGER NOT NULL REFERENCES posts (id),
    media_id INTEGER NOT NULL REFERENCES media (id),
    position INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (post_id, media_id)
);
CREATE INDEX post_media_media ON post_media (media_id);
