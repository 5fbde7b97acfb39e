"""The media retention cron job: once a day it deletes the media no post uses that are older
than media_retention_days, and uploads a crash left unfinished (on virtual time)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import trio

from tests.support.media_links import link_post_to_media
from thotto.scheduler.records import MediaKind, NewAccount, NewMedia, NewPost, NewUser, PostContent

UTC = timezone.utc
START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


async def one_chunk():
    yield b"image bytes"


async def test_media_no_post_uses_go_after_the_retention_days(open_test_app, mock_clock, settings):
    async with open_test_app(epoch=START, media_retention_days=3) as (app, clock):
        store = app.store
        user = await store.create_user(NewUser(name="alice"))
        account = await store.create_account(NewAccount(user_id=user.id, reddit_username="alice_r",
                                                        refresh_token_encrypted=b"sealed"))
        image = NewMedia(user_id=user.id, kind=MediaKind.PNG, width=1, height=1)
        unused = await store.create_media(image, one_chunk())
        used = await store.create_media(image, one_chunk())
        (post,) = await store.create_posts([NewPost(
            user_id=user.id, account_id=account.id, scheduled_for=START + timedelta(days=20),
            content=PostContent(subreddit="test", title="later", text="x"))])
        await link_post_to_media(settings.resolved_database_url(), post.id, used.id)
        await trio.sleep(2 * 86400)  # two nightly runs: nothing is three days old yet
        assert {m.id for m in (await store.list_media(user.id)).media} == {unused.id, used.id}
        await trio.sleep(2 * 86400)
        left = {m.id for m in (await store.list_media(user.id)).media}
        status = await app.engine.cron_status("media-retention")
    assert left == {used.id}
    assert status.runs == 4 and status.last_error is None
    assert status.last_run_at == datetime(2026, 3, 6, 3, 30, tzinfo=UTC)
