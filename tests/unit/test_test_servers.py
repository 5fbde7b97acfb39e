"""The private test servers themselves: they start, answer, and survive a restart."""

import psycopg
import redis


def test_private_postgres_answers_and_restarts(postgres_server, postgres_dsn):
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    postgres_server.kill()
    postgres_server.start()
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("select 2").fetchone() == (2,)


def test_private_redis_answers(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.set("k", "v")
    assert client.get("k") == b"v"
