"""Scenario 12: creators edit and cancel their posts while Reddit accepts posts but drops its
replies, and Thotto is killed again and again. Judged by the sandbox's record: no post on
Reddit twice, no post reported cancelled while it is live, and every post that is published
carries the title Reddit received."""

from __future__ import annotations

import collections
import random

import pytest
import trio

from tests.chaos import faults
from tests.chaos.harness import spread, titles
from thotto.engine.errors import InvalidTransition
from thotto.errors import OutcomePending
from thotto.scheduler.records import PostContent, PostStatus
from thotto.store import open_store

pytestmark = pytest.mark.chaos

EDITED = "edited "


async def test_12_edits_and_cancels_while_replies_are_lost_and_thotto_is_killed(make_chaos, postgres_dsn, sizes):
    count, kills, window = sizes.pick((60, 3, 9.0), (300, 8, 40.0))
    chaos = make_chaos(postgres_dsn)
    seeded = await chaos.seed(titles("creator", count), spread(2, window, count))
    # Reddit records a third of the submissions and drops its reply to each.
    await chaos.sandbox.faults(drop_after_accept=count // 3, latency=0.05)
    thotto = chaos.thotto()
    await thotto.start()
    creator = Creator(postgres_dsn, seeded)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(creator.act_until, trio.current_time() + window + 4)
        for _ in range(kills):
            await trio.sleep(window / kills)
            await faults.kill_9(thotto)
            await thotto.start()
    await chaos.sandbox.faults()  # Reddit behaves again; everything left settles
    async with open_store(postgres_dsn) as store:

        async def all_settled() -> bool:
            posts = [await store.get_post(post.id) for post in seeded]
            return all(post.status in (PostStatus.PUBLISHED, PostStatus.CANCELLED, PostStatus.FAILED)
                       for post in posts)

        await chaos.wait_for("every post published or cancelled", all_settled, timeout=120, poll=0.5)
        stored = {post.id: await store.get_post(post.id) for post in seeded}
    judge(chaos.sandbox.record(), seeded, stored, creator)


class Creator:
    """Edits titles and cancels posts at random, through the store (the same rule the API, the
    CLI and the pages meet), and remembers what was accepted and what was refused."""

    def __init__(self, database_url: str, posts):
        self.database_url = database_url
        self.posts = list(posts)
        self.cancelled: set[int] = set()
        self.edited: dict[int, str] = {}
        self.refused: collections.Counter[str] = collections.Counter()
        self.random = random.Random(12)

    async def act_until(self, deadline: float) -> None:
        async with open_store(self.database_url) as store:
            while trio.current_time() < deadline:
                await self.act(store, self.random.choice(self.posts))
                await trio.sleep(0.01)

    async def act(self, store, post) -> None:
        if post.id in self.cancelled:
            return
        try:
            if self.random.random() < 0.3:
                await store.cancel_post(post.id, post.user_id)
                self.cancelled.add(post.id)
            else:
                title = EDITED + post.content.title.removeprefix(EDITED)
                content = PostContent(subreddit="test", title=title, text="chaos")
                await store.update_post(post.id, post.user_id, content=content)
                self.edited[post.id] = title
        except OutcomePending:
            self.refused["in doubt"] += 1
        except InvalidTransition:
            self.refused["finished"] += 1


def judge(record: list[dict], seeded, stored, creator: Creator) -> None:
    by_post: dict[int, list[dict]] = collections.defaultdict(list)
    ids = {post.content.title: post.id for post in seeded}
    for accepted in record:
        by_post[ids[accepted["title"].removeprefix(EDITED)]].append(accepted)
    twice = {post_id: [r["title"] for r in records] for post_id, records in by_post.items() if len(records) > 1}
    assert not twice, f"posted more than once: {twice}"
    live_but_cancelled = [post_id for post_id in creator.cancelled if post_id in by_post]
    assert not live_but_cancelled, f"reported cancelled while on Reddit: {live_but_cancelled}"
    for post_id, post in stored.items():
        if post.status is PostStatus.CANCELLED:
            assert post_id not in by_post, f"post {post_id} is cancelled in the store and live on Reddit"
            continue
        assert post.status is PostStatus.PUBLISHED, f"post {post_id} is {post.status.value}: {post.error}"
        (accepted,) = by_post[post_id]
        assert post.reddit_id == accepted["id"]
        assert accepted["title"] == post.content.title, "Reddit got a title the store does not show"
    assert creator.refused["in doubt"] > 0, "no change ever met a post in doubt: the scenario tested nothing"
    assert creator.cancelled and creator.edited, "no change was ever accepted"
