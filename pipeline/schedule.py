"""When is a source due? Crontab expressions evaluated with APScheduler 3's ``CronTrigger``.

A source is due when its cron schedule has fired at least once since its last successful run.
However many fire times were missed, that is one catch-up run: collection is cursor-driven, so
one run fetches everything that is missing.

Two differences between APScheduler 3's ``CronTrigger.from_crontab`` and crontab(5) would
surprise anyone who writes a crontab line, so :class:`CrontabTrigger` reads expressions the
crontab way:

- day-of-week numbers: crontab's 0 (or 7) is Sunday and 1 Monday; APScheduler 3 counts 0 as
  Monday, so ``0 4 * * 1`` would run on Tuesdays. Numbers are translated to day names.
- when both day-of-month and day-of-week are restricted, crontab fires when *either* matches;
  APScheduler requires both. Such expressions become two triggers whose earliest fire wins.

It also fires once per wall-clock time: when clocks go back, the repeated hour does not fire a
second time (APScheduler would run a ``30 2 * * *`` job twice that night). Times skipped when
clocks go forward fire once, right after the jump, as APScheduler and cron do.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

if TYPE_CHECKING:
    from pipeline.config import Settings
    from pipeline.sources import Source

SCHEDULE_TIMEZONE = "UTC"
CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering, 0 = Sunday


def _day_number(text: str) -> int:
    lowered = text.lower()
    if lowered in CRON_DAYS:
        return CRON_DAYS.index(lowered)
    if not lowered.isdigit() or int(lowered) > 7:
        raise ValueError(f"bad day of week {text!r} (0-7 or sun-sat)")
    return int(lowered) % 7  # 7 is Sunday too


def crontab_days(field: str) -> str:
    """A crontab day-of-week field as APScheduler day names (``1-5`` → ``mon,tue,wed,thu,fri``)."""
    if field == "*":
        return field
    days: set[int] = set()
    for item in field.split(","):
        body, _, step_text = item.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise ValueError(f"bad step in day of week {item!r}")
        if body == "*":
            first, last = 0, 6
        elif "-" in body:
            low, high = body.split("-", 1)
            first, last = _day_number(low), _day_number(high)
            if high.strip() == "7":
                last = 7  # "5-7" is Friday to Sunday
                if low.strip() == "7":
                    first = 7  # "7-7" is Sunday only
            if last < first:
                raise ValueError(f"bad range in day of week {item!r}")
        else:
            first = last = _day_number(body)
            if step:
                last = 6  # "1/2": from Monday every other day, as cron reads it
        days.update(day % 7 for day in range(first, last + 1, step or 1))
    return ",".join(CRON_DAYS[day] for day in sorted(days))


class CrontabTrigger(BaseTrigger):
    """A crontab(5) expression in a time zone, as an APScheduler 3 trigger (see module doc)."""

    def __init__(self, expression: str, timezone: str | tzinfo = SCHEDULE_TIMEZONE):
        fields = expression.split()
        if len(fields) != 5:
            raise ValueError(
                f"expected 5 fields (minute hour day month weekday), got {expression!r}"
            )
        minute, hour, day, month, weekday = fields
        self.expression = expression
        self.timezone = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
        common = {"minute": minute, "hour": hour, "month": month, "timezone": self.timezone}
        days = crontab_days(weekday)
        # crontab: when neither field starts with "*", either one matching is enough.
        if not day.startswith("*") and not weekday.startswith("*"):
            self._triggers = [
                CronTrigger(day=day, day_of_week="*", **common),
                CronTrigger(day="*", day_of_week=days, **common),
            ]
        else:
            self._triggers = [CronTrigger(day=day, day_of_week=days, **common)]

    def _earliest(self, previous: datetime | None, now: datetime) -> datetime | None:
        fires = [t.get_next_fire_time(previous, now) for t in self._triggers]
        return min((fire for fire in fires if fire is not None), default=None)

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        fire = self._earliest(previous_fire_time, now)
        while fire is not None and _repeated_wall_time(fire):
            fire = self._earliest(fire, fire)
        return fire

    def __str__(self) -> str:
        return f"cron[{self.expression}] {self.timezone}"

    def __repr__(self) -> str:
        return f"<CrontabTrigger {self.expression!r} timezone={str(self.timezone)!r}>"


def _repeated_wall_time(moment: datetime) -> bool:
    """The second occurrence of a local time that happens twice when clocks go back."""
    return moment.fold == 1 and moment.replace(fold=0).utcoffset() != moment.utcoffset()


def trigger(expression: str, timezone: str = SCHEDULE_TIMEZONE) -> CrontabTrigger:
    return CrontabTrigger(expression, timezone)


def first_fire_after(
    expression: str, after: datetime, timezone: str = SCHEDULE_TIMEZONE
) -> datetime:
    """The first time (in UTC) the schedule fires strictly after ``after`` (an aware datetime).

    UTC because local times in a DST gap or fold never compare equal to other zones' times.
    """
    # Fire times are whole seconds, so one microsecond later excludes ``after`` itself.
    fire = trigger(expression, timezone).get_next_fire_time(None, after + timedelta(microseconds=1))
    assert fire is not None  # crontab expressions have no end date
    return fire.astimezone(UTC)


def next_due(settings: Settings, source: Source, last_ok: datetime | None) -> datetime | None:
    """When the source becomes due: its first fire after the last success (None: due now)."""
    if last_ok is None:
        return None
    return first_fire_after(source.schedule(settings), last_ok, settings.scheduler.timezone)


def is_due(settings: Settings, source: Source, last_ok: datetime | None, now: datetime) -> bool:
    due_at = next_due(settings, source, last_ok)
    return due_at is None or due_at <= now
