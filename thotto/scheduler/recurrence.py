"""Recurring posts: when the next occurrence is, and scheduling it exactly once.

A recurring post (``Post.recurrence``) repeats every ``interval`` days, weeks or months at the
same *local wall-clock time* in its IANA time zone: 09:00 Europe/Berlin stays 09:00 in Berlin
across daylight-saving changes (so the UTC time moves by an hour). When an occurrence publishes,
the Publisher calls :func:`schedule_next_occurrence`, which stores the next one as the
*follow-up* of the published post (``Store.create_follow_up``): a post has at most one follow-up,
enforced by a unique index, so a crash right after publishing, a job that runs again, or two
processes racing never create a second one.

Occurrences are computed from the series' *anchor*, the scheduled time of its first occurrence
(``Store.series_start``), not from the previous occurrence, so a monthly series keeps its day of
the month: Jan 31 → Feb 28 (29 in a leap year) → Mar 31 → Apr 30 → May 31. Occurrence ``k`` is
the anchor's local date and time moved by ``k × interval`` units, with the day clamped to the
month's last day for monthly series.

Wall-clock times that do not exist on a day (the hour skipped when clocks go forward) publish
at the instant the wall clock would have shown them without the jump (02:30 → 03:30 local);
times that occur twice (clocks going back) publish at the first of the two.
"""

from __future__ import annotations

import calendar
import logging
import zoneinfo
from datetime import datetime, timedelta

import msgspec

from thotto.engine.errors import ValidationError
from thotto.engine.jobs import UTC, as_utc
from thotto.scheduler.records import NewPost, Post, Recurrence
from thotto.store.base import Store

log = logging.getLogger("thotto.recurrence")

FIELD_TIMEZONE = "recurrence.timezone"
FIELD_UNTIL = "recurrence.until"


def zone_of(recurrence: Recurrence) -> zoneinfo.ZoneInfo:
    """The recurrence's IANA time zone; ValidationError (field ``recurrence.timezone``) for a
    name the system's time-zone database does not know."""
    name = recurrence.timezone
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"unknown time zone {name!r}: use an IANA name such as "
                              "Europe/Berlin or America/New_York", field=FIELD_TIMEZONE) from exc


def check_recurrence(recurrence: Recurrence | None, scheduled_for: datetime | None = None,
                     now: datetime | None = None) -> None:
    """Refuse a recurrence that could never run: an unknown time zone (field
    ``recurrence.timezone``), or an ``until`` already past at ``now`` or before the first
    occurrence ``scheduled_for`` (field ``recurrence.until``). Call at scheduling time."""
    if recurrence is None:
        return
    zone_of(recurrence)
    if recurrence.until is None:
        return
    until = as_utc(recurrence.until)
    if now is not None and until <= now:
        raise ValidationError(f"recurrence.until {recurrence.until.isoformat()} is in the past; "
                              "give a later end, or leave it out", field=FIELD_UNTIL)
    if scheduled_for is not None and until < as_utc(scheduled_for):
        raise ValidationError(f"recurrence.until {recurrence.until.isoformat()} is before the first "
                              f"occurrence ({as_utc(scheduled_for).isoformat()}); give a later end",
                              field=FIELD_UNTIL)


def next_occurrence(
    recurrence: Recurrence,
    scheduled_for: datetime,
    *,
    anchor: datetime | None = None,
    not_before: datetime | None = None,
) -> tuple[datetime, Recurrence] | None:
    """The occurrence after the one scheduled for ``scheduled_for``, and the recurrence the
    next post carries (``count`` reduced by the occurrences passed); None when the series ends.

    ``anchor`` is the series' first occurrence (default: ``scheduled_for``); occurrences are
    the anchor's local wall-clock time moved by whole intervals (see the module docstring).
    The next occurrence is the first one after ``scheduled_for`` and, with ``not_before``, after
    that too: occurrences already past when the previous one published are skipped, and count
    as occurrences (so ``count`` ends the series on the date it would have ended). ``until`` is
    inclusive: an occurrence exactly at ``until`` still happens. ``count`` counts occurrences in
    all, the current one included: with ``count=1`` there is no next. The result is in UTC.
    """
    zone = zone_of(recurrence)
    current = as_utc(scheduled_for)
    start = as_utc(anchor) if anchor is not None else current
    local_anchor = start.astimezone(zone).replace(tzinfo=None)
    k = _index_after(recurrence, local_anchor, zone, current)
    when = _occurrence(recurrence, local_anchor, zone, k)
    steps = 1
    while not_before is not None and when <= as_utc(not_before):
        k += 1
        steps += 1
        when = _occurrence(recurrence, local_anchor, zone, k)
    if recurrence.until is not None and when > as_utc(recurrence.until):
        return None
    count = None
    if recurrence.count is not None:
        count = recurrence.count - steps
        if count < 1:
            return None
    return when, msgspec.structs.replace(recurrence, count=count)


def _occurrence(recurrence: Recurrence, local_anchor: datetime, zone: zoneinfo.ZoneInfo,
                k: int) -> datetime:
    """Occurrence ``k`` (0 is the anchor), in UTC."""
    steps = k * recurrence.interval
    if recurrence.frequency == "daily":
        local = local_anchor + timedelta(days=steps)
    elif recurrence.frequency == "weekly":
        local = local_anchor + timedelta(weeks=steps)
    else:
        months = local_anchor.month - 1 + steps
        year, month = local_anchor.year + months // 12, months % 12 + 1
        day = min(local_anchor.day, calendar.monthrange(year, month)[1])
        local = local_anchor.replace(year=year, month=month, day=day)
    # Naive arithmetic kept the wall-clock time; the zone gives that day's offset (fold=0: the
    # first of a repeated hour, and for a skipped hour the offset from before the jump).
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _index_after(recurrence: Recurrence, local_anchor: datetime, zone: zoneinfo.ZoneInfo,
                 after: datetime) -> int:
    """The smallest ``k`` whose occurrence is after ``after``."""
    local_after = after.astimezone(zone).replace(tzinfo=None)
    if recurrence.frequency == "monthly":
        span = (local_after.year - local_anchor.year) * 12 + local_after.month - local_anchor.month
    else:
        span = (local_after - local_anchor).days // (7 if recurrence.frequency == "weekly" else 1)
    # Start a step early (offsets move by hours), then walk forward: at most a few steps.
    k = max(0, span // recurrence.interval - 1)
    while _occurrence(recurrence, local_anchor, zone, k) <= after:
        k += 1
    return k


async def schedule_next_occurrence(store: Store, post: Post, now: datetime) -> Post | None:
    """After ``post`` published, make sure its next occurrence is scheduled (same user,
    account and content; the recurrence with ``count`` reduced); return it, or None when the
    post does not recur or its series has ended.

    Idempotent and safe to race: the next occurrence is the post's follow-up in the store,
    created at most once; a repeated call (after a crash, by a job run again, by another
    process) returns the one that exists, even if a later ``now`` would have computed another
    time. Occurrences already past at ``now`` are skipped (a post held up by an outage does not
    set off a burst of catch-up posts).
    """
    if post.recurrence is None:
        return None
    anchor = await store.series_start(post.id)
    planned = next_occurrence(post.recurrence, post.scheduled_for, anchor=anchor, not_before=now)
    if planned is None:
        log.info("post %d: its recurrence has ended", post.id)
        return None
    when, recurrence = planned
    job = await store.get_job(post.job_id)
    following = NewPost(user_id=post.user_id, account_id=post.account_id, content=post.content,
                        scheduled_for=when, recurrence=recurrence)
    follow_up, created = await store.create_follow_up(post.id, following,
                                                      max_attempts=job.max_attempts)
    if created:
        log.info("post %d: next occurrence is post %d at %s", post.id, follow_up.id,
                 follow_up.scheduled_for.isoformat())
    return follow_up
