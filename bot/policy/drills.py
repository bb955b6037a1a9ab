"""The policy's ``drills:`` section: which resources are drilled, how often, and as whom.

Plain data, checked against the resources in ``Policy`` itself (``drill_problems``), so every mistake is named by its
key path (``drills[0].resource``) as other policy errors are. ``every`` is a duration (``7d``) or a five-field cron
expression (``0 3 * * MON``, UTC); ``next_after`` says when a drill falls due after a moment.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

from bot.domain.durations import DurationError, parse_duration
from bot.policy.types import Strict

MIN_EVERY = timedelta(hours=1)  # a drill grants real access and posts to the audit channel: never a busy loop
# Where a cron expression's gaps are sampled, and how many: enough fires to meet each pattern's shortest gap (within a
# day, across midnight, across month ends), at a fixed moment so a policy's verdict never depends on when it is read.
_SAMPLED_FROM = datetime(2025, 1, 1, tzinfo=UTC)
_SAMPLED_FIRES = 400
_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")  # crontab: 0 and 7 are Sunday
_NUMBERED_DAYS = re.compile(r"(\*|\d+(?:-\d+)?)(?:/(\d+))?")


class Drill(Strict):
    resource: str
    level: str | None = None  # None: the resource's first level (or none, when it has no levels)
    every: str
    principal: str  # the backend identity that exists only for drills

    def interval(self) -> timedelta | None:
        """``every`` as a duration, or None when it is a cron expression."""
        try:
            return parse_duration(self.every)
        except DurationError:
            return None

    def next_after(self) -> Callable[[datetime], datetime]:
        """When the drill is next due after a given moment."""
        interval = self.interval()
        if interval is not None:
            return lambda moment: moment + interval
        trigger = cron_trigger(self.every)

        def following(moment: datetime) -> datetime:
            fire = trigger.get_next_fire_time(None, moment)
            assert fire is not None, "a crontab trigger always fires again"
            # A fire time equal to ``moment`` would run the same drill twice in one period.
            return fire if fire > moment else following(moment + timedelta(seconds=1))

        return following


def _weekdays(field: str) -> str:
    """Crontab's day-of-week field as APScheduler reads it. Crontab counts from Sunday (0 and 7), APScheduler from
    Monday (0), so `0 3 * * 1` ran on Tuesdays: numbers, ranges and steps are spelled out as day names, which both
    read alike. Names, and anything this does not recognise, are left for APScheduler to read or refuse."""
    spelled = []
    for item in field.split(","):
        match = _NUMBERED_DAYS.fullmatch(item)
        if match is None or item == "*":
            spelled.append(item)
            continue
        span, step = match.group(1), int(match.group(2) or 1)
        first, _, end = span.partition("-")
        low = 0 if first == "*" else int(first)
        high = 7 if first == "*" or (not end and match.group(2)) else int(end or first)
        if step < 1 or low > high or high > 7:
            spelled.append(item)  # APScheduler names the mistake
            continue
        spelled.extend(dict.fromkeys(_CRON_DAYS[day] for day in range(low, high + 1, step)))
    return ",".join(dict.fromkeys(spelled))


def cron_trigger(every: str) -> BaseTrigger:
    """A five-field crontab expression (UTC) as a trigger that fires when crontab would. ValueError if unreadable.

    Where both day fields are restricted, crontab fires on a day matching either (`0 3 1 * MON`: the 1st, and every
    Monday) and APScheduler only on one matching both (a 1st that is a Monday): such an expression is two triggers."""
    fields = every.split()
    if len(fields) != 5:
        return CronTrigger.from_crontab(every, timezone=UTC)  # APScheduler says what is wrong
    minute, hour, day, month, typed = fields
    weekday = _weekdays(typed)
    if day.startswith("*") or typed.startswith("*"):  # crontab's own test: a field that starts with * is unrestricted
        return CronTrigger.from_crontab(f"{minute} {hour} {day} {month} {weekday}", timezone=UTC)
    by_date = CronTrigger.from_crontab(f"{minute} {hour} {day} {month} *", timezone=UTC)
    by_weekday = CronTrigger.from_crontab(f"{minute} {hour} * {month} {weekday}", timezone=UTC)
    return OrTrigger([by_date, by_weekday])


def _cron_gap_problem(every: str, trigger: BaseTrigger) -> str | None:
    """Why a readable expression still cannot schedule drills: it never fires (February 31st), or two of its fires
    are closer than MIN_EVERY (`*/5 * * * *`), which `every: 5m` would not be allowed either."""
    previous = trigger.get_next_fire_time(None, _SAMPLED_FROM)
    if previous is None:
        return f"'{every}' never fires (no date matches it)"
    for _ in range(_SAMPLED_FIRES):
        fire = trigger.get_next_fire_time(None, previous + timedelta(seconds=1))
        if fire is None:
            return None
        if fire - previous < MIN_EVERY:
            return f"'{every}' fires more often than every {int(MIN_EVERY.total_seconds() // 3600)}h"
        previous = fire
    return None


def every_problem(every: str) -> str | None:
    try:
        interval = parse_duration(every)
    except DurationError as error:
        if "is zero" in str(error):  # `every: 0s` is a duration, just not one a drill may have
            return f"'{every}' is zero; at least {int(MIN_EVERY.total_seconds() // 3600)}h"
        interval = None
    if interval is not None:
        return f"at least {int(MIN_EVERY.total_seconds() // 3600)}h" if interval < MIN_EVERY else None
    if len(every.split()) != 5:
        return f"'{every}' is neither a duration (7d, 12h) nor a five-field cron expression (0 3 * * MON)"
    try:
        trigger = cron_trigger(every)
    except ValueError as error:
        return f"'{every}' is not a cron expression this bot can read ({error})"
    return _cron_gap_problem(every, trigger)


def drill_problems(drills: list[Drill], resources: Mapping[str, Any]) -> str | None:
    """The first mistake in ``drills``, by key path, or None. ``resources`` are the policy's, by name."""
    for index, drill in enumerate(drills):
        where = f"drills[{index}]"
        resource = resources.get(drill.resource)
        if resource is None:
            known = ", ".join(sorted(resources)) or "none"
            return f"{where}.resource: no resource '{drill.resource}' in the policy (there are: {known})"
        levels = resource.level_names
        if drill.level is not None and drill.level not in levels:
            has = f"its levels are {', '.join(levels)}" if levels else "it has no levels"
            return f"{where}.level: {drill.resource} has no level '{drill.level}'; {has}"
        if problem := every_problem(drill.every):
            return f"{where}.every: {problem}"
        if not drill.principal.strip():
            return f"{where}.principal: must not be empty"
        # A principal a person maps to shares their live key: each drill would lock them out of breaking the glass.
        person = next((who for who, name in (resource.users or {}).items() if name == drill.principal), None)
        if person is not None:
            return (
                f"{where}.principal: {drill.principal} is what {person} maps to on {drill.resource} "
                "(users); a drill principal must exist only for drills"
            )
    labels = [(d.resource, d.level or (resources[d.resource].level_names or [None])[0]) for d in drills]
    for index, key in enumerate(labels):
        if key in labels[:index]:
            return f"drills[{index}]: {drills[index].resource} is drilled twice at the same level"
    return None
