"""Alarms: one date job per upcoming moment, and a periodic sweep. The database is the truth; a job only wakes the
sweep, so a lost or late job delays work and never loses it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger("breakglass.scheduler")


class Scheduler:
    def __init__(
        self,
        sweep: Callable[[], object],
        interval: float,
        renew: Callable[[], object] | None = None,
        renew_every: float = 10.0,
    ) -> None:
        self._sweep = sweep
        self._interval = interval
        self.renew = renew
        self._renew_every = renew_every
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            # APScheduler's default grace of 1 s silently drops a job that falls due while the process is busy.
            # A late revoke must still run, so no grace limit; coalesce piled-up runs into one.
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
        )

    def start(self, upcoming: Iterable[datetime] = ()) -> None:
        self._scheduler.add_job(
            self._run, "interval", seconds=self._interval, id="sweep", next_run_time=datetime.now(UTC)
        )
        if self.renew is not None:
            self._scheduler.add_job(self._keep_claims, "interval", seconds=self._renew_every, id="renew")
        self._scheduler.start()
        for moment in upcoming:
            self.wake_at(moment)

    def wake_at(self, when: datetime) -> None:
        if not self._scheduler.running:
            return
        self._scheduler.add_job(
            self._run, "date", run_date=when, id=f"wake:{when.timestamp():.3f}", replace_existing=True
        )

    def _run(self) -> None:
        try:
            self._sweep()
        except Exception:
            log.exception("sweep failed; the next one will try again")

    def _keep_claims(self) -> None:
        assert self.renew is not None
        try:
            self.renew()
        except Exception:
            log.exception("renewing claims failed; trying again in %ss", self._renew_every)

    def shutdown(self, wait: bool = True) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)
