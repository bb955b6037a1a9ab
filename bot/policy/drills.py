"""The policy's ``drills:`` section: which resources are drilled, how often, and as whom.

Plain data, checked against the resources in ``Policy`` itself (``drill_problems``), so every mistake is named by its
key path (``drills[0].resource``) as other policy errors are. ``every`` is a duration (``7d``) or a five-field cron
expression (``0 3 * * MON``, UTC); ``next_after`` says when a drill falls due after a moment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from bot.domain.durations import DurationError, parse_duration
from bot.policy.types import Strict

MIN_EVERY = timedelta(hours=1)  # a drill grants real access and posts to the audit channel: never a busy loop


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
        trigger = CronTrigger.from_crontab(self.every, timezone=UTC)

        def following(moment: datetime) -> datetime:
            fire = trigger.get_next_fire_time(None, moment)
            assert fire is not None, "a crontab trigger always fires again"
            # A fire time equal to ``moment`` would run the same drill twice in one period.
            return fire if fire > moment else following(moment + timedelta(seconds=1))

        return following


def every_problem(every: str) -> str | None:
    try:
        interval = parse_duration(every)
    except DurationError:
        interval = None
    if interval is not None:
        return f"at least {int(MIN_EVERY.total_seconds() // 3600)}h" if interval < MIN_EVERY else None
    if len(every.split()) != 5:
        return f"'{every}' is neither a duration (7d, 12h) nor a five-field cron expression (0 3 * * MON)"
    try:
        CronTrigger.from_crontab(every, timezone=UTC)
    except ValueError as error:
        return f"'{every}' is not a cron expression this bot can read ({error})"
    return None


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
    labels = [(d.resource, d.level or (resources[d.resource].level_names or [None])[0]) for d in drills]
    for index, key in enumerate(labels):
        if key in labels[:index]:
            return f"drills[{index}]: {drills[index].resource} is drilled twice at the same level"
    return None
