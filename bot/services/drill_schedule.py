"""Drills on the policy's schedule: one named job per drill, run by one replica per period.

Every replica asks each sweep interval; ``schedules.take_turn`` lets exactly one of them run each drill when it falls
due (``every: 7d`` keeps its beat, a cron expression its next moment). A drill first falls due one period after it
first appears in the policy, never the moment a replica starts: a new deployment does not drill everything at once.
"""

from __future__ import annotations

import hashlib
import logging

from bot.domain.rules import Refused
from bot.policy.drills import Drill
from bot.services.deps import Deps
from bot.services.drills import DrillResult, Trigger, run_drill
from bot.store import schedules

log = logging.getLogger("breakglass.drills")

SCHEDULED_BY = "schedule"  # the requester of a scheduled drill's request, and the actor of its events


def schedule_name(drill: Drill) -> str:
    """The drill's row in ``schedules``: ``drill:<resource>[:<level>]``, or a digest when that is too long."""
    name = f"drill:{drill.resource}" + (f":{drill.level}" if drill.level else "")
    return name if len(name) <= 64 else "drill:" + hashlib.sha256(name.encode()).hexdigest()[:32]


class DrillScheduler:
    """The scheduler's job: every replica calls ``tick`` often, and each drill runs once per period."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def tick(self) -> list[DrillResult]:
        deps = self.deps
        ran = []
        for drill in deps.policy.drills:
            now = deps.now()
            name, following = schedule_name(drill), drill.next_after()
            schedules.plan(deps.db, name, following(now))
            every = drill.interval() or following
            if not schedules.take_turn(deps.db, name, now, every, deps.tuning.instance):
                continue
            try:
                ran.append(run_drill(deps, drill.resource, drill.level, Trigger.SCHEDULE, SCHEDULED_BY))
            except Refused as refusal:  # this period's drill is not run; said once, and the next period tries again
                log.warning("scheduled drill of %s not run: %s", drill.resource, refusal)
            except Exception:  # one drill's trouble never keeps the others from running
                log.exception("scheduled drill of %s failed to run", drill.resource)
        return ran
