"""next_occurrence: local wall-clock time across DST, month ends, until, count, skipping."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from thotto.engine.errors import ValidationError
from thotto.scheduler.records import Recurrence
from thotto.scheduler.recurrence import check_recurrence, next_occurrence

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")


def local(*args, zone=BERLIN) -> datetime:
    return datetime(*args, tzinfo=zone)


def series(recurrence: Recurrence, first: datetime, n: int) -> list[datetime]:
    """The first ``n`` occurrences (fewer if the series ends), each from the previous one."""
    out, when, current = [first], first, recurrence
    while len(out) < n:
        planned = next_occurrence(current, when, anchor=first)
        if planned is None:
            break
        when, current = planned
        out.append(when)
    return out


def test_daily_keeps_the_local_time_across_the_spring_change():
    daily = Recurrence(frequency="daily", timezone="Europe/Berlin")
    first = local(2026, 3, 28, 9, 0)  # DST starts on Sunday 29 March 2026
    times = series(daily, first, 3)
    assert [t.astimezone(BERLIN).hour for t in times] == [9, 9, 9]
    assert [t.astimezone(UTC).hour for t in times] == [8, 7, 7]  # in UTC the hour moves
    assert all(t.tzinfo is UTC for t in times[1:])


def test_weekly_keeps_the_local_time_across_the_autumn_change():
    weekly = Recurrence(frequency="weekly", interval=1, timezone="America/New_York")
    ny = ZoneInfo("America/New_York")
    first = local(2026, 10, 27, 18, 30, zone=ny)
    times = series(weekly, first, 3)
    assert [t.astimezone(ny).strftime("%m-%d %H:%M") for t in times] == [
        "10-27 18:30", "11-03 18:30", "11-10 18:30"]


def test_a_skipped_hour_publishes_after_the_jump_and_a_repeated_one_at_its_first():
    daily = Recurrence(frequency="daily", timezone="Europe/Berlin")
    (when, _) = next_occurrence(daily, local(2026, 3, 28, 2, 30))
    assert when == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST: 02:30 does not exist
    (when, _) = next_occurrence(daily, local(2026, 10, 24, 2, 30))
    assert when == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # the first 02:30 (CEST)


def test_monthly_clamps_to_the_month_end_and_keeps_its_day():
    monthly = Recurrence(frequency="monthly", timezone="UTC")
    times = series(monthly, datetime(2027, 12, 31, 12, 0, tzinfo=UTC), 7)
    assert [t.date().isoformat() for t in times] == [
        "2027-12-31", "2028-01-31", "2028-02-29", "2028-03-31", "2028-04-30", "2028-05-31",
        "2028-06-30"]


def test_monthly_with_an_interval_crosses_years():
    quarterly = Recurrence(frequency="monthly", interval=3, timezone="Europe/Berlin")
    times = series(quarterly, local(2026, 11, 30, 9, 0), 3)
    assert [t.astimezone(BERLIN).strftime("%Y-%m-%d %H:%M") for t in times] == [
        "2026-11-30 09:00", "2027-02-28 09:00", "2027-05-30 09:00"]


def test_daily_with_an_interval():
    every_other_day = Recurrence(frequency="daily", interval=2)
    first = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert series(every_other_day, first, 3)[1:] == [first + timedelta(days=2), first + timedelta(days=4)]


def test_until_is_inclusive():
    first = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    until = first + timedelta(days=2)
    times = series(Recurrence(frequency="daily", until=until), first, 10)
    assert times == [first, first + timedelta(days=1), until]


def test_count_is_occurrences_in_all_and_counts_down():
    first = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    daily = Recurrence(frequency="daily", count=3)
    (second, rest) = next_occurrence(daily, first)
    assert (second, rest.count) == (first + timedelta(days=1), 2)
    (third, last) = next_occurrence(rest, second, anchor=first)
    assert last.count == 1
    assert next_occurrence(last, third, anchor=first) is None
    assert len(series(daily, first, 10)) == 3
    assert next_occurrence(Recurrence(frequency="daily", count=1), first) is None


def test_occurrences_already_past_are_skipped_and_counted():
    first = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    late = first + timedelta(days=2, hours=1)  # published two days late (an outage)
    (when, rest) = next_occurrence(Recurrence(frequency="daily", count=10), first, not_before=late)
    assert (when, rest.count) == (first + timedelta(days=3), 7)
    assert next_occurrence(Recurrence(frequency="daily", count=3), first, not_before=late) is None


def test_an_occurrence_moved_off_its_time_returns_to_the_series():
    first = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    moved = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)  # the user moved the 5th to 15:00
    (when, _) = next_occurrence(Recurrence(frequency="daily"), moved, anchor=first)
    assert when == datetime(2026, 1, 6, 9, 0, tzinfo=UTC)


def test_far_from_the_anchor_it_walks_only_a_few_steps():
    first = datetime(2020, 1, 31, 9, 0, tzinfo=UTC)
    current = datetime(2026, 2, 28, 9, 0, tzinfo=UTC)
    (when, _) = next_occurrence(Recurrence(frequency="monthly"), current, anchor=first)
    assert when == datetime(2026, 3, 31, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("name", ["Mars/Olympus", "Europe/../etc", "", "not a zone"])
def test_an_unknown_time_zone_is_refused_with_its_field(name):
    with pytest.raises(ValidationError) as refused:
        check_recurrence(Recurrence(frequency="daily", timezone=name))
    assert refused.value.field == "recurrence.timezone"
    check_recurrence(Recurrence(frequency="daily", timezone="Europe/Berlin"))
    check_recurrence(None)
