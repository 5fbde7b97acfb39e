"""Ranking the hours of the week from engagement readings (thotto.scheduler.analytics.rank_slots)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from thotto.scheduler.analytics import COMMUNITY_HOURLY, COMMUNITY_WEEKDAY, TOP_SLOTS, rank_slots
from thotto.scheduler.records import PostEngagement

UTC = timezone.utc
MONDAY = datetime(2026, 3, 2, tzinfo=UTC)
NOW = datetime(2026, 4, 1, tzinfo=UTC)


def post(weekday: int, hour: int, score: int, comments: int = 0, n: int = 0) -> PostEngagement:
    at = MONDAY + timedelta(days=weekday + 7 * n, hours=hour, minutes=1)
    return PostEngagement(post_id=1, account_id=1, subreddit="pics", scheduled_for=at,
                          published_at=at, score=score, comments=comments, read_at=NOW)


def slots(result) -> list[tuple[int, int, float, int]]:
    return [(s.weekday, s.hour, s.score, s.posts) for s in result.slots]


def test_enough_posts_rank_slots_by_shrunk_mean_engagement_best_100():
    posts = [post(0, 14, 100), post(0, 14, 80, n=1),  # Monday 14:00: strong, two posts
             post(2, 9, 10, comments=5),               # Wednesday 09:00: 10 + 2*5 = 20
             post(4, 20, 0), post(4, 20, -3, n=1)]      # Friday 20:00: nothing (negative is 0)
    result = rank_slots("pics", posts, NOW)
    assert (result.source, result.subreddit, result.computed_at) == ("engagement", "pics", NOW)
    overall = (100 + 80 + 20 + 0 + 0) / 5  # 40
    monday, wednesday, friday = (180 + overall) / 3, (20 + overall) / 2, (0 + overall) / 3
    assert slots(result) == [(0, 14, 100.0, 2), (2, 9, round(100 * wednesday / monday, 1), 1),
                             (4, 20, round(100 * friday / monday, 1), 2)]


def test_a_slot_of_one_post_is_pulled_halfway_to_the_mean():
    posts = [post(1, 15, 60, n=n) for n in range(4)] + [post(3, 15, 100)]
    overall = (240 + 100) / 5  # 68
    lucky, steady = (100 + overall) / 2, (240 + overall) / 5  # 84 and 61.6, not 100 and 60
    assert slots(rank_slots("pics", posts, NOW)) == [
        (3, 15, 100.0, 1), (1, 15, round(100 * steady / lucky, 1), 4)]


def test_few_posts_fall_back_to_the_community_prior_nudged_by_ours():
    result = rank_slots("pics", [], NOW)
    assert result.source == "community" and len(result.slots) == TOP_SLOTS
    best = max(range(24), key=lambda h: COMMUNITY_HOURLY[h])
    assert (result.slots[0].weekday, result.slots[0].hour, result.slots[0].score) == (0, best, 100.0)
    assert all(a.score >= b.score for a, b in zip(result.slots, result.slots[1:]))
    assert all(s.posts == 0 for s in result.slots)
    # A Saturday slot is low in the prior; two good posts there lift it into the list.
    saturday = (5, 16)
    assert saturday not in [(s.weekday, s.hour) for s in result.slots]
    nudged = rank_slots("pics", [post(5, 16, 500), post(5, 16, 400, n=1)], NOW)
    assert nudged.source == "community"
    assert (5, 16, 2) in [(s.weekday, s.hour, s.posts) for s in nudged.slots]
    assert COMMUNITY_WEEKDAY[5] < COMMUNITY_WEEKDAY[0]
