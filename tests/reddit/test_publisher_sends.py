"""What the publisher remembers of its own submissions: each for the settle time after it was
sent, then forgotten, so that a minute of thousands of posts neither grows its memory for good nor
makes each submission sweep all the earlier ones."""

from __future__ import annotations

from datetime import datetime, timezone

import trio

from thotto.reddit.client import SubmitResult
from thotto.scheduler.publishing import Publisher
from thotto.scheduler.records import Post, PostContent, PostStatus

NOW = datetime(2026, 12, 2, tzinfo=timezone.utc)


class Reddit:
    """An account whose every submission is accepted at once."""

    async def submit(self, subreddit: str, title: str, **_) -> SubmitResult:
        return SubmitResult(id="abc", name="t3_abc", url="https://reddit.test/abc")


def post(post_id: int) -> Post:
    return Post(post_id, 1, 1, PostContent(subreddit="test", title=f"post {post_id}"), NOW,
                PostStatus.PUBLISHING, post_id, None, None, None, None, NOW, NOW, NOW)


async def test_sends_are_remembered_for_the_settle_time_then_forgotten(mock_clock):
    publisher = Publisher(store=None, client=None, vault=None, breakers=None, now=lambda: NOW)
    publisher.reconcile_settle_seconds, publisher.media_settle_seconds = 60.0, 600.0
    for post_id in range(1, 2001):  # thousands within the settle time, as in a popular minute
        await publisher._submit(Reddit(), post(post_id))
    mock_clock.jump(500)
    await publisher._submit(Reddit(), post(2001))
    await publisher._submit(Reddit(), post(1))  # sent again: remembered from now
    assert len(publisher._sent_at) == 2001
    mock_clock.jump(200)  # the first 2,000 sends settled 600 s ago
    await publisher._submit(Reddit(), post(2002))
    assert list(publisher._sent_at) == [2001, 1, 2002]
    assert publisher._sent_at[1] == trio.current_time() - 200
