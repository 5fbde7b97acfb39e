"""Cron schedules for recurring jobs: five-field expressions evaluated in an IANA time zone.

:class:`CronSchedule` parses and validates an expression and a zone once, then answers "when is
the next fire time after this instant?" (and the previous one before it). :func:`plan_occurrence`
decides what to do when a recurring occurrence comes due late, following a :class:`CatchUp`
policy.

Expressions have exactly five fields — minute, hour, day-of-month, month, day-of-week — with
``*``, ranges (``1-5``), lists (``1,15``), steps (``*/15``, ``10-50/20``), month and day names
(``JAN``-``DEC``, ``SUN``-``SAT``, any case; day-of-week 0 and 7 are both Sunday) and the aliases
``@hourly @daily @midnight @weekly @monthly @yearly @annually``. As in Vixie/Debian cron, when
both day-of-month and day-of-week are restricted (neither starts with ``*``) a day matches if
*either* does. The evaluator (cronsim) also understands ``L`` (last day), ``LW`` (last weekday)
and ``5L``/``MON#2`` (last/second Monday); those are accepted too.

Daylight-saving time follows Debian cron, as cronsim implements it:

- a job at a fixed local time (minute and hour fields not starting with ``*``) whose time does
  not exist on a spring-forward day runs at the first minute that exists after it — 02:30 in
  Europe/Paris on 2026-03-29 runs at 03:00 CEST (01:00 UTC) — so a daily job still runs daily;
- when the local time happens twice on a fall-back day, it runs once, at the first occurrence
  (the summer-time one);
- a job whose minute or hour field starts with ``*`` (``*/15 * * * *``, ``0 */2 * * *``) follows
  real elapsed time: a local hour that does not exist is skipped, and one that happens twice runs
  twice.

All instants going in must be time-zone aware; all instants coming out are aware, in UTC.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from thotto.engine.errors import ValidationError
from thotto.engine.jobs import UTC

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

# cronsim and zoneinfo (with the sysconfig and calendar modules they pull in) are imported where a
# schedule is built or walked, not here: an embedder that registers no cron job does not pay for
# them when it imports the engine (9 of the engine's own 30 modules, measured with
# scripts/import-cost).

__all__ = ["CatchUp", "CronSchedule", "Occurrence", "plan_occurrence"]

FIELDS_HINT = "use five fields: minute hour day-of-month month day-of-week"

# Written out as five-field expressions so that they go through exactly the same evaluator.
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# cronsim reports a bad field as "Bad <field name>"; these say what the field allows.
FIELD_RULES = {
    "minute": "minute must be 0-59",
    "hour": "hour must be 0-23",
    "day-of-month": "day-of-month must be 1-31 and exist in the chosen months",
    "month": "month must be 1-12 or JAN-DEC",
    "day-of-week": "day-of-week must be 0-7 (0 and 7 are Sunday) or SUN-SAT",
}
FIELD_ORDER = ["minute", "hour", "day-of-month", "month", "day-of-week"]

# Counting missed fire times is only for logs; past this many the exact number adds nothing and
# an every-minute schedule after a long outage would cost one step per minute of downtime.
MISSED_COUNT_CAP = 1000

# Any instant works to prove that an expression fires at all; a fixed one keeps it deterministic.
PROBE_INSTANT = datetime(2000, 1, 1, tzinfo=UTC)


def _require_aware(value: datetime, name: str) -> None:
    if not isinstance(value, datetime):
        raise ValidationError(f"{name} must be a datetime, got {type(value).__name__}", field=name)
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(
            f"{name} must be time-zone aware, got the naive datetime {value.isoformat()}; "
            "attach a zone, e.g. datetime(..., tzinfo=timezone.utc)",
            field=name,
        )


def _load_zone(name: str) -> ZoneInfo:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    unknown = ValidationError(
        f"Unknown time zone {name!r}; use an IANA name such as 'Europe/Paris'", field="timezone"
    )
    if not isinstance(name, str) or not name.strip():
        raise unknown
    try:
        return ZoneInfo(name)
    # ValueError covers keys that are not plain zone names (absolute paths, "..", NUL bytes);
    # OSError covers a path that exists but cannot be read as zone data (a directory, say).
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise unknown from None


def _bad_expression(expression: str, reason: str) -> ValidationError:
    return ValidationError(
        f"Invalid cron expression {expression!r}: {reason}; {FIELDS_HINT}", field="schedule"
    )


def _explain(cronsim_message: str, normalized: str) -> str:
    """Turn cronsim's terse "Bad minute" into what the field allows, quoting the bad text."""
    field = cronsim_message.removeprefix("Bad ").strip()
    if field in FIELD_RULES:
        text = normalized.split()[FIELD_ORDER.index(field)]
        return f"bad {field} field {text!r}: {FIELD_RULES[field]}"
    return cronsim_message


def _normalize(expression: str) -> str:
    """The five-field form of ``expression`` (aliases expanded), or raise ValidationError."""
    if not isinstance(expression, str):
        raise ValidationError(
            f"A cron expression must be a string, got {type(expression).__name__}", field="schedule"
        )
    text = expression.strip()
    if text.startswith("@"):
        try:
            return ALIASES[text.lower()]
        except KeyError:
            allowed = " ".join(ALIASES)
            raise _bad_expression(
                expression, f"{text!r} is not supported (the aliases are {allowed})"
            ) from None
    parts = text.split()
    if len(parts) != 5:
        # A sixth field (seconds or year, from other cron dialects) is refused, not guessed at.
        raise _bad_expression(expression, f"expected 5 fields, got {len(parts)}")
    return " ".join(parts)


class CronSchedule:
    """A validated five-field cron expression in an IANA time zone.

    Construction checks both and raises :class:`~thotto.errors.ValidationError` with
    ``field="schedule"`` or ``field="timezone"``. Instances are immutable and compare equal when
    expression and zone are equal. See the module docstring for the syntax and DST rules.
    """

    __slots__ = ("_expression", "_normalized", "_timezone", "_zone")

    def __init__(self, expression: str, timezone: str = "UTC"):
        from cronsim import CronSim, CronSimError

        normalized = _normalize(expression)
        # Parse before looking at the zone so that errors are reported in argument order.
        try:
            CronSim(normalized, PROBE_INSTANT)
        except CronSimError as exc:
            raise _bad_expression(expression, _explain(str(exc), normalized)) from exc
        zone = _load_zone(timezone)
        # Parsing succeeded; also make sure it ever fires (cronsim gives up after 50 years).
        try:
            next(CronSim(normalized, PROBE_INSTANT.astimezone(zone)))
        except StopIteration:
            raise _bad_expression(expression, "it never matches any date") from None
        self._expression = expression.strip()
        self._normalized = normalized
        self._timezone = timezone
        self._zone = zone

    @property
    def expression(self) -> str:
        """The expression as given (surrounding whitespace removed)."""
        return self._expression

    @property
    def timezone(self) -> str:
        """The IANA name of the zone the expression is read in."""
        return self._timezone

    def __repr__(self) -> str:
        return f"CronSchedule({self._expression!r}, timezone={self._timezone!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CronSchedule):
            return NotImplemented
        return (self._normalized, self._timezone) == (other._normalized, other._timezone)

    def __hash__(self) -> int:
        return hash((self._normalized, self._timezone))

    def _fires_after(self, moment: datetime) -> Iterator[datetime]:
        """Fire times strictly after ``moment``, ascending, as aware UTC datetimes."""
        from cronsim import CronSim

        iterator = CronSim(self._normalized, moment.astimezone(self._zone))
        while True:
            try:
                fire = next(iterator)
            except StopIteration:  # nothing within cronsim's 50-year horizon
                return
            fire = fire.astimezone(UTC)
            # cronsim walks fixed-time schedules in local wall time and resolves an ambiguous
            # time to its first occurrence, so starting inside the repeated hour of a fall-back
            # day can yield a time that is earlier in real time than ``moment``.
            if fire > moment:
                yield fire

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after ``moment`` (aware), as an aware UTC datetime.

        Raises :class:`~thotto.errors.ValidationError` if ``moment`` is naive, or if the
        schedule has no fire time in the 50 years after it.
        """
        _require_aware(moment, "moment")
        fire = next(self._fires_after(moment), None)
        if fire is None:
            raise ValidationError(
                f"Cron expression {self._expression!r} has no fire time within 50 years after "
                f"{moment.isoformat()}",
                field="schedule",
            )
        return fire

    def previous_before(self, moment: datetime) -> datetime | None:
        """The last fire time strictly before ``moment`` (aware), as an aware UTC datetime.

        Agrees with :meth:`next_after`: the result ``p`` satisfies ``next_after(p') == p`` for
        any ``p'`` just before it, and ``next_after(p)`` is ``moment`` or later. Returns None if
        there is no fire time in the 50 years before ``moment``.
        """
        from cronsim import CronSim

        _require_aware(moment, "moment")
        backwards = CronSim(self._normalized, moment.astimezone(self._zone), reverse=True)
        while True:
            try:
                candidate = next(backwards).astimezone(UTC)
            except StopIteration:
                return None
            # Walking backwards, cronsim skips a nonexistent local time instead of moving it to
            # the next minute as it does walking forwards, so confirm by walking forwards from
            # just before the candidate: that finds exactly the fire times next_after would.
            # Fire times fall on whole minutes, so one second earlier cannot skip one.
            previous = None
            for fire in self._fires_after(candidate - timedelta(seconds=1)):
                if fire >= moment:
                    break
                previous = fire
            if previous is not None:
                return previous


class CatchUp(enum.Enum):
    """What a recurring job does about fire times that passed while nothing was running."""

    RUN_ONCE = "run_once"
    """Run once for the missed fire times, however many there were, then resume the schedule."""

    SKIP = "skip"
    """Do not run for missed fire times; the next run is the next future fire time."""


@dataclass(frozen=True, slots=True)
class Occurrence:
    """What :func:`plan_occurrence` decided for an occurrence that came due.

    ``run``: whether to run it now. ``next_at``: when the following occurrence is due (aware,
    UTC). ``missed``: how many fire times after the scheduled one were passed over without a
    run of their own (capped at 1,000; for logs).
    """

    run: bool
    next_at: datetime
    missed: int


def plan_occurrence(
    schedule: CronSchedule,
    catch_up: CatchUp,
    scheduled_for: datetime,
    now: datetime,
    tolerance_seconds: float = 60.0,
) -> Occurrence:
    """Decide what to do with the occurrence scheduled for ``scheduled_for`` that is due ``now``.

    ``run`` is False only under :attr:`CatchUp.SKIP` when the occurrence is more than
    ``tolerance_seconds`` late: it was missed (downtime, a long backlog), not merely picked up a
    little late. ``next_at`` is the first fire time strictly after ``now``, so any number of
    missed fire times collapse into this one decision instead of a burst of runs. ``missed``
    counts the fire times in ``(scheduled_for, now]``.

    If ``now`` is before ``scheduled_for`` (a worker's clock slightly behind the one that
    scheduled it), the occurrence counts as on time and ``next_at`` is the fire time after
    ``scheduled_for``, never ``scheduled_for`` itself, so it is not scheduled twice.
    """
    _require_aware(scheduled_for, "scheduled_for")
    _require_aware(now, "now")
    if not tolerance_seconds >= 0:  # written this way so that NaN is refused too
        raise ValidationError(
            f"tolerance_seconds must be 0 or more, got {tolerance_seconds!r}",
            field="tolerance_seconds",
        )
    reference = max(now, scheduled_for)
    next_at = schedule.next_after(reference)
    missed = 0
    for fire in schedule._fires_after(scheduled_for):
        if fire > reference or missed >= MISSED_COUNT_CAP:
            break
        missed += 1
    late = (now - scheduled_for).total_seconds() > tolerance_seconds
    run = not (catch_up is CatchUp.SKIP and late)
    return Occurrence(run=run, next_at=next_at, missed=missed)
