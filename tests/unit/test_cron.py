"""Cron schedules: exact fire times (UTC instants worked out by hand), DST, validation, catch-up.

Europe/Paris in 2026: summer time starts Sunday 2026-03-29 at 01:00 UTC (local 02:00 CET jumps
to 03:00 CEST) and ends Sunday 2026-10-25 at 01:00 UTC (local 03:00 CEST falls back to 02:00
CET). CET is UTC+1, CEST is UTC+2.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from thotto.engine.cron import CatchUp, CronSchedule, Occurrence, plan_occurrence
from thotto.engine.errors import ValidationError

UTC = timezone.utc
FIELDS_HINT = "use five fields: minute hour day-of-month month day-of-week"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def fires(schedule: CronSchedule, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times after ``after``, each checked to be in UTC."""
    result = []
    moment = after
    for _ in range(count):
        moment = schedule.next_after(moment)
        assert moment.tzinfo is UTC
        result.append(moment)
    return result


# --- fire times ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        pytest.param(
            "* * * * *",
            datetime(2026, 5, 5, 10, 20, 30, 500_000, tzinfo=UTC),
            [utc(2026, 5, 5, 10, 21), utc(2026, 5, 5, 10, 22), utc(2026, 5, 5, 10, 23)],
            id="every-minute",
        ),
        pytest.param(
            "* * * * *",
            utc(2026, 12, 31, 23, 59),
            [utc(2027, 1, 1, 0, 0), utc(2027, 1, 1, 0, 1)],
            id="every-minute-strictly-after-and-across-new-year",
        ),
        pytest.param(
            "15 * * * *",
            utc(2026, 5, 5, 10, 14, 59),
            [utc(2026, 5, 5, 10, 15), utc(2026, 5, 5, 11, 15), utc(2026, 5, 5, 12, 15)],
            id="hourly-at-15",
        ),
        pytest.param(
            "15 * * * *",
            utc(2026, 5, 5, 23, 15),
            [utc(2026, 5, 6, 0, 15)],
            id="hourly-at-15-exactly-on-a-fire-time",
        ),
        pytest.param(
            "*/15 * * * *",
            utc(2026, 5, 5, 10, 0),
            [utc(2026, 5, 5, 10, 15), utc(2026, 5, 5, 10, 30), utc(2026, 5, 5, 10, 45), utc(2026, 5, 5, 11, 0)],
            id="every-15-minutes",
        ),
        pytest.param(
            "10-50/20 * * * *",
            utc(2026, 5, 5, 10, 0),
            [utc(2026, 5, 5, 10, 10), utc(2026, 5, 5, 10, 30), utc(2026, 5, 5, 10, 50), utc(2026, 5, 5, 11, 10)],
            id="stepped-range",
        ),
        pytest.param(
            "0 9-11,14 * * *",
            utc(2026, 5, 5, 8, 0),
            [
                utc(2026, 5, 5, 9, 0),
                utc(2026, 5, 5, 10, 0),
                utc(2026, 5, 5, 11, 0),
                utc(2026, 5, 5, 14, 0),
                utc(2026, 5, 6, 9, 0),
            ],
            id="list-and-range",
        ),
        pytest.param(
            "0 2 * * 1",
            utc(2026, 1, 1, 0, 0),  # a Thursday
            [utc(2026, 1, 5, 2, 0), utc(2026, 1, 12, 2, 0), utc(2026, 1, 19, 2, 0)],
            id="weekly-monday-0200",
        ),
        pytest.param(
            "0 2 * * 1",
            utc(2026, 1, 5, 2, 0),
            [utc(2026, 1, 12, 2, 0)],
            id="weekly-monday-0200-exactly-on-a-fire-time",
        ),
        pytest.param(
            "0 12 * JAN,JUL MON-FRI",
            utc(2026, 2, 1, 0, 0),  # 2026-07-01 is a Wednesday
            [utc(2026, 7, 1, 12), utc(2026, 7, 2, 12), utc(2026, 7, 3, 12), utc(2026, 7, 6, 12)],
            id="month-and-day-names",
        ),
        pytest.param(
            "0 12 * jan mon",
            utc(2026, 2, 1, 0, 0),  # 2027-01-01 is a Friday
            [utc(2027, 1, 4, 12), utc(2027, 1, 11, 12)],
            id="lower-case-names",
        ),
        pytest.param(
            "0 0 * * 7",
            utc(2026, 1, 1, 0, 0),
            [utc(2026, 1, 4, 0, 0), utc(2026, 1, 11, 0, 0)],
            id="day-of-week-7-is-sunday",
        ),
        pytest.param(
            "0 0 13 * FRI",
            utc(2026, 1, 1, 0, 0),  # Fridays 2, 9, 16 January; the 13th is a Tuesday
            [utc(2026, 1, 2), utc(2026, 1, 9), utc(2026, 1, 13), utc(2026, 1, 16)],
            id="day-of-month-or-day-of-week",
        ),
        pytest.param(
            "0 0 13 * *",
            utc(2026, 1, 1, 0, 0),
            [utc(2026, 1, 13), utc(2026, 2, 13)],
            id="day-of-month-alone",
        ),
        pytest.param(
            "0 0 31 * *",
            utc(2026, 1, 31, 0, 0),
            [utc(2026, 3, 31), utc(2026, 5, 31), utc(2026, 7, 31), utc(2026, 8, 31)],
            id="31st-skips-short-months",
        ),
        pytest.param(
            "0 0 L * *",
            utc(2026, 1, 31, 0, 0),
            [utc(2026, 2, 28), utc(2026, 3, 31), utc(2026, 4, 30)],
            id="last-day-of-month",
        ),
        pytest.param(
            "0 0 29 2 *",
            utc(2026, 1, 1, 0, 0),
            [utc(2028, 2, 29), utc(2032, 2, 29)],
            id="feb-29-waits-for-leap-years",
        ),
        pytest.param(
            "59 23 31 12 *",
            utc(2026, 12, 31, 23, 59),
            [utc(2027, 12, 31, 23, 59)],
            id="yearly-at-the-last-minute",
        ),
        pytest.param("@hourly", utc(2026, 5, 5, 10, 30), [utc(2026, 5, 5, 11, 0)], id="@hourly"),
        pytest.param("@daily", utc(2026, 5, 5, 10, 30), [utc(2026, 5, 6, 0, 0)], id="@daily"),
        pytest.param(
            "@weekly", utc(2026, 5, 5, 10, 30), [utc(2026, 5, 10, 0, 0)], id="@weekly-is-sunday"
        ),
        pytest.param("@monthly", utc(2026, 5, 5, 10, 30), [utc(2026, 6, 1, 0, 0)], id="@monthly"),
        pytest.param("@yearly", utc(2026, 5, 5, 10, 30), [utc(2027, 1, 1, 0, 0)], id="@yearly"),
        pytest.param("  @Daily  ", utc(2026, 5, 5, 10, 30), [utc(2026, 5, 6, 0, 0)], id="alias-any-case"),
    ],
)
def test_fire_times_in_utc(expression: str, after: datetime, expected: list[datetime]) -> None:
    assert fires(CronSchedule(expression), after, len(expected)) == expected


def test_moment_in_another_offset_is_the_same_instant() -> None:
    schedule = CronSchedule("0 3 * * *")
    # 2026-05-05 04:30 at UTC+05:00 is 2026-05-04 23:30 UTC.
    moment = datetime(2026, 5, 5, 4, 30, tzinfo=timezone(timedelta(hours=5)))
    assert schedule.next_after(moment) == utc(2026, 5, 5, 3, 0)
    assert schedule.next_after(moment).tzinfo is UTC


# --- time zones and daylight-saving time ---------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "zone", "after", "expected"),
    [
        pytest.param(
            "0 3 * * *",
            "Europe/Paris",
            utc(2026, 3, 27, 12, 0),
            [
                utc(2026, 3, 28, 2, 0),  # 03:00 CET
                utc(2026, 3, 29, 1, 0),  # 03:00 CEST, the first instant of summer time
                utc(2026, 3, 30, 1, 0),  # 03:00 CEST
                utc(2026, 3, 31, 1, 0),
            ],
            id="daily-0300-paris-spring-forward",
        ),
        pytest.param(
            "0 3 * * *",
            "Europe/Paris",
            utc(2026, 10, 23, 12, 0),
            [
                utc(2026, 10, 24, 1, 0),  # 03:00 CEST
                utc(2026, 10, 25, 2, 0),  # 03:00 CET: 03:00 CEST became 02:00 CET, so 03:00 comes once
                utc(2026, 10, 26, 2, 0),
                utc(2026, 10, 27, 2, 0),
            ],
            id="daily-0300-paris-fall-back",
        ),
        pytest.param(
            # 02:30 does not exist in Paris on 2026-03-29; the job runs at 03:00 CEST instead of
            # being skipped, so a daily job still runs every day.
            "30 2 * * *",
            "Europe/Paris",
            utc(2026, 3, 28, 0, 0),
            [
                utc(2026, 3, 28, 1, 30),  # 02:30 CET
                utc(2026, 3, 29, 1, 0),  # 03:00 CEST
                utc(2026, 3, 30, 0, 30),  # 02:30 CEST
            ],
            id="nonexistent-time-runs-at-the-first-minute-after-the-gap",
        ),
        pytest.param(
            # 02:30 happens twice in Paris on 2026-10-25 (00:30 UTC in CEST, 01:30 UTC in CET).
            "30 2 * * *",
            "Europe/Paris",
            utc(2026, 10, 24, 0, 0),
            [
                utc(2026, 10, 24, 0, 30),  # 02:30 CEST
                utc(2026, 10, 25, 0, 30),  # 02:30 CEST; the second 02:30 (01:30 UTC) does not fire
                utc(2026, 10, 26, 1, 30),  # 02:30 CET
            ],
            id="ambiguous-time-runs-once-at-its-first-occurrence",
        ),
        pytest.param(
            # Every 30 minutes of real time, so local 02:00 and 02:30 each happen (and fire) twice.
            "*/30 * * * *",
            "Europe/Paris",
            utc(2026, 10, 24, 23, 50),
            [
                utc(2026, 10, 25, 0, 0),  # 02:00 CEST
                utc(2026, 10, 25, 0, 30),  # 02:30 CEST
                utc(2026, 10, 25, 1, 0),  # 02:00 CET
                utc(2026, 10, 25, 1, 30),  # 02:30 CET
                utc(2026, 10, 25, 2, 0),  # 03:00 CET
            ],
            id="wildcard-hour-follows-real-time-across-fall-back",
        ),
        pytest.param(
            "0 * * * *",
            "Europe/Paris",
            utc(2026, 3, 28, 23, 30),
            [
                utc(2026, 3, 29, 0, 0),  # 01:00 CET
                utc(2026, 3, 29, 1, 0),  # 03:00 CEST; local 02:00 does not exist
                utc(2026, 3, 29, 2, 0),  # 04:00 CEST
            ],
            id="wildcard-hour-follows-real-time-across-spring-forward",
        ),
        pytest.param(
            # Monday 2026-03-30 is the first Monday of summer time: 02:00 CEST is 00:00 UTC.
            "0 2 * * 1",
            "Europe/Paris",
            utc(2026, 3, 25, 0, 0),
            [utc(2026, 3, 30, 0, 0), utc(2026, 4, 6, 0, 0)],
            id="weekly-monday-0200-paris-summer",
        ),
        pytest.param(
            # America/New_York, 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
            "0 9 * * *",
            "America/New_York",
            utc(2026, 3, 6, 0, 0),
            [
                utc(2026, 3, 6, 14, 0),  # 09:00 EST
                utc(2026, 3, 7, 14, 0),
                utc(2026, 3, 8, 13, 0),  # 09:00 EDT
            ],
            id="new-york-spring-forward",
        ),
    ],
)
def test_fire_times_in_a_zone(expression: str, zone: str, after: datetime, expected: list[datetime]) -> None:
    assert fires(CronSchedule(expression, zone), after, len(expected)) == expected


def test_starting_inside_the_repeated_hour_never_goes_back_in_time() -> None:
    schedule = CronSchedule("30 2 * * *", "Europe/Paris")
    # 01:00 UTC is the second 02:00 local; the 02:30 of that day already fired at 00:30 UTC.
    assert schedule.next_after(utc(2026, 10, 25, 1, 0)) == utc(2026, 10, 26, 1, 30)
    assert schedule.next_after(utc(2026, 10, 25, 0, 29)) == utc(2026, 10, 25, 0, 30)


# --- previous_before ------------------------------------------------------------------------


def test_previous_before_is_strict() -> None:
    schedule = CronSchedule("0 3 * * *")
    assert schedule.previous_before(utc(2026, 5, 5, 3, 0)) == utc(2026, 5, 4, 3, 0)
    assert schedule.previous_before(datetime(2026, 5, 5, 3, 0, 0, 1, tzinfo=UTC)) == utc(2026, 5, 5, 3, 0)
    assert schedule.previous_before(utc(2026, 5, 5, 3, 0)).tzinfo is UTC


def test_previous_before_agrees_with_next_after_over_dst_gaps() -> None:
    schedule = CronSchedule("30 2 * * *", "Europe/Paris")
    # The shifted spring-forward run (03:00 CEST = 01:00 UTC) counts as that day's run.
    assert schedule.previous_before(utc(2026, 3, 29, 1, 30)) == utc(2026, 3, 29, 1, 0)
    assert schedule.previous_before(utc(2026, 3, 29, 1, 0)) == utc(2026, 3, 28, 1, 30)
    # Inside the repeated hour of fall-back day, that day's single run was at 00:30 UTC.
    assert schedule.previous_before(utc(2026, 10, 25, 1, 15)) == utc(2026, 10, 25, 0, 30)


@pytest.mark.parametrize(
    ("expression", "zone"),
    [
        ("30 2 * * *", "Europe/Paris"),
        ("0 3 * * *", "Europe/Paris"),
        ("*/30 * * * *", "Europe/Paris"),
        ("0 */2 * * *", "Europe/Paris"),
        ("0 1,2 * * *", "America/New_York"),
    ],
)
def test_previous_before_walks_back_through_what_next_after_walks_forward(expression: str, zone: str) -> None:
    schedule = CronSchedule(expression, zone)
    for start in (utc(2026, 3, 27, 0, 0), utc(2026, 10, 23, 0, 0), utc(2026, 3, 7, 0, 0), utc(2026, 10, 31, 0, 0)):
        forward = fires(schedule, start, 20)
        for earlier, later in zip(forward, forward[1:]):
            assert schedule.previous_before(later) == earlier


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("61 * * * *", "bad minute field '61': minute must be 0-59"),
        ("* 24 * * *", "bad hour field '24': hour must be 0-23"),
        ("0 0 32 * *", "bad day-of-month field '32': day-of-month must be 1-31 and exist in the chosen months"),
        ("0 0 0 * *", "bad day-of-month field '0': day-of-month must be 1-31 and exist in the chosen months"),
        ("0 0 30 2 *", "bad day-of-month field '30': day-of-month must be 1-31 and exist in the chosen months"),
        ("0 0 * 13 *", "bad month field '13': month must be 1-12 or JAN-DEC"),
        ("0 0 * FOO *", "bad month field 'FOO': month must be 1-12 or JAN-DEC"),
        ("0 0 * * 8", "bad day-of-week field '8': day-of-week must be 0-7 (0 and 7 are Sunday) or SUN-SAT"),
        ("*/0 * * * *", "bad minute field '*/0': minute must be 0-59"),
        ("5-1 * * * *", "bad minute field '5-1': minute must be 0-59"),
        ("a b c d e", "bad minute field 'a': minute must be 0-59"),
        ("* * * *", "expected 5 fields, got 4"),
        ("0 * * * * *", "expected 5 fields, got 6"),
        ("0 0 * * * 2026", "expected 5 fields, got 6"),
        ("", "expected 5 fields, got 0"),
        ("every day at noon", "expected 5 fields, got 4"),
        (
            "@reboot",
            "'@reboot' is not supported (the aliases are @yearly @annually @monthly @weekly @daily @midnight @hourly)",
        ),
    ],
)
def test_invalid_expressions(expression: str, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CronSchedule(expression, "Europe/Paris")
    assert str(caught.value) == f"Invalid cron expression {expression!r}: {reason}; {FIELDS_HINT}"
    assert caught.value.field == "schedule"


@pytest.mark.parametrize("zone", ["Mars/Base", "", "Europe", "../etc/passwd", "/etc/localtime", "utc"])
def test_invalid_time_zones(zone: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CronSchedule("0 3 * * *", zone)
    assert str(caught.value) == f"Unknown time zone {zone!r}; use an IANA name such as 'Europe/Paris'"
    assert caught.value.field == "timezone"


def test_expression_is_checked_before_zone() -> None:
    with pytest.raises(ValidationError) as caught:
        CronSchedule("61 * * * *", "Mars/Base")
    assert caught.value.field == "schedule"


def test_naive_datetimes_are_refused() -> None:
    schedule = CronSchedule("0 3 * * *")
    naive = datetime(2026, 5, 5, 3, 0)
    for call in (schedule.next_after, schedule.previous_before):
        with pytest.raises(ValidationError) as caught:
            call(naive)
        assert caught.value.field == "moment"
        assert str(caught.value) == (
            "moment must be time-zone aware, got the naive datetime 2026-05-05T03:00:00; "
            "attach a zone, e.g. datetime(..., tzinfo=timezone.utc)"
        )
    with pytest.raises(ValidationError) as caught:
        plan_occurrence(schedule, CatchUp.RUN_ONCE, naive, utc(2026, 5, 5, 3, 0))
    assert caught.value.field == "scheduled_for"
    with pytest.raises(ValidationError) as caught:
        plan_occurrence(schedule, CatchUp.RUN_ONCE, utc(2026, 5, 5, 3, 0), naive)
    assert caught.value.field == "now"


def test_schedule_value_semantics() -> None:
    schedule = CronSchedule(" 0 3 * * * ", "Europe/Paris")
    assert schedule.expression == "0 3 * * *"
    assert schedule.timezone == "Europe/Paris"
    assert repr(schedule) == "CronSchedule('0 3 * * *', timezone='Europe/Paris')"
    assert schedule == CronSchedule("0  3 * * *", "Europe/Paris")
    assert hash(schedule) == hash(CronSchedule("0 3 * * *", "Europe/Paris"))
    assert CronSchedule("@daily") == CronSchedule("0 0 * * *")
    assert schedule != CronSchedule("0 3 * * *", "UTC")
    assert CronSchedule("0 3 * * *").timezone == "UTC"


# --- catch-up ---------------------------------------------------------------------------------


def test_catch_up_values() -> None:
    assert CatchUp("run_once") is CatchUp.RUN_ONCE
    assert CatchUp("skip") is CatchUp.SKIP


HOURLY = CronSchedule("0 * * * *")


@pytest.mark.parametrize("catch_up", list(CatchUp))
@pytest.mark.parametrize(
    "now",
    [
        pytest.param(utc(2026, 5, 5, 10, 0, 0), id="on-time"),
        pytest.param(utc(2026, 5, 5, 10, 0, 45), id="slightly-late"),
        pytest.param(utc(2026, 5, 5, 10, 1, 0), id="exactly-at-tolerance"),
        pytest.param(utc(2026, 5, 5, 9, 59, 58), id="clock-slightly-behind"),
    ],
)
def test_due_within_tolerance_runs_under_both_policies(catch_up: CatchUp, now: datetime) -> None:
    plan = plan_occurrence(HOURLY, catch_up, utc(2026, 5, 5, 10, 0), now)
    assert plan == Occurrence(run=True, next_at=utc(2026, 5, 5, 11, 0), missed=0)
    assert plan.next_at.tzinfo is UTC


@pytest.mark.parametrize(("catch_up", "run"), [(CatchUp.RUN_ONCE, True), (CatchUp.SKIP, False)])
def test_late_beyond_tolerance_but_nothing_else_missed(catch_up: CatchUp, run: bool) -> None:
    plan = plan_occurrence(HOURLY, catch_up, utc(2026, 5, 5, 10, 0), utc(2026, 5, 5, 10, 1, 1))
    assert plan == Occurrence(run=run, next_at=utc(2026, 5, 5, 11, 0), missed=0)


@pytest.mark.parametrize(("catch_up", "run"), [(CatchUp.RUN_ONCE, True), (CatchUp.SKIP, False)])
def test_three_day_downtime_daily_in_paris(catch_up: CatchUp, run: bool) -> None:
    schedule = CronSchedule("0 3 * * *", "Europe/Paris")
    # Due 2026-06-01 03:00 CEST (01:00 UTC); the process comes back 2026-06-04 03:30 CEST.
    plan = plan_occurrence(schedule, catch_up, utc(2026, 6, 1, 1, 0), utc(2026, 6, 4, 1, 30))
    # Passed over: 06-02, 06-03 and 06-04 at 01:00 UTC. Next: 06-05 03:00 CEST.
    assert plan == Occurrence(run=run, next_at=utc(2026, 6, 5, 1, 0), missed=3)


@pytest.mark.parametrize(("catch_up", "run"), [(CatchUp.RUN_ONCE, True), (CatchUp.SKIP, False)])
def test_three_day_downtime_hourly(catch_up: CatchUp, run: bool) -> None:
    plan = plan_occurrence(HOURLY, catch_up, utc(2026, 5, 5, 10, 0), utc(2026, 5, 8, 10, 30))
    # 11:00 on the 5th through 10:00 on the 8th: 3 days of 24 hours.
    assert plan == Occurrence(run=run, next_at=utc(2026, 5, 8, 11, 0), missed=72)


def test_three_day_downtime_every_minute_caps_the_count() -> None:
    schedule = CronSchedule("* * * * *")
    plan = plan_occurrence(schedule, CatchUp.SKIP, utc(2026, 5, 5, 10, 0), utc(2026, 5, 8, 10, 0, 30))
    assert plan == Occurrence(run=False, next_at=utc(2026, 5, 8, 10, 1), missed=1000)


def test_now_exactly_on_a_later_fire_time_counts_it_as_missed() -> None:
    plan = plan_occurrence(HOURLY, CatchUp.RUN_ONCE, utc(2026, 5, 5, 10, 0), utc(2026, 5, 5, 12, 0))
    assert plan == Occurrence(run=True, next_at=utc(2026, 5, 5, 13, 0), missed=2)


def test_zero_tolerance() -> None:
    just_late = datetime(2026, 5, 5, 10, 0, 0, 1, tzinfo=UTC)
    plan = plan_occurrence(HOURLY, CatchUp.SKIP, utc(2026, 5, 5, 10, 0), just_late, tolerance_seconds=0)
    assert plan == Occurrence(run=False, next_at=utc(2026, 5, 5, 11, 0), missed=0)
    on_time = plan_occurrence(HOURLY, CatchUp.SKIP, utc(2026, 5, 5, 10, 0), utc(2026, 5, 5, 10, 0), tolerance_seconds=0)
    assert on_time.run is True


@pytest.mark.parametrize("tolerance", [-1.0, float("nan")])
def test_bad_tolerance_is_refused(tolerance: float) -> None:
    with pytest.raises(ValidationError) as caught:
        plan_occurrence(HOURLY, CatchUp.SKIP, utc(2026, 5, 5, 10, 0), utc(2026, 5, 5, 10, 0), tolerance)
    assert caught.value.field == "tolerance_seconds"


def test_occurrence_is_frozen() -> None:
    plan = plan_occurrence(HOURLY, CatchUp.SKIP, utc(2026, 5, 5, 10, 0), utc(2026, 5, 5, 10, 0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.run = False  # type: ignore[misc]
