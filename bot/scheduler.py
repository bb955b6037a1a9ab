"""Alarms: one date job per upcoming moment, and a periodic sweep. The database is the truth; a job only wakes the
sweep, so a lost or late job delays work and never loses it."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from bot.store.reachability import database_outage

log = logging.getLogger("breakglass.scheduler")


ALARM_TICK = 0.01  # seconds: alarms are rounded up to it
KEEPALIVE = "keepalive"  # the executor of the heartbeat and lease renewal


class Scheduler:
    def __init__(
        self,
        sweep: Callable[[], object],
        interval: float,
        renew: Callable[[], object] | None = None,
        renew_every: float = 10.0,
        beat: Callable[[], object] | None = None,
        beat_every: float = 2.0,
        tick: Callable[[], object] | None = None,
    ) -> None:
        self._sweep = sweep  # what an alarm runs
        self._tick = tick or sweep  # what the periodic sweep runs
        self._interval = interval
        self.renew = renew
        self._renew_every = renew_every
        self.beat = beat
        self._beat_every = beat_every
        self._sweeping = True
        self._sweeps = threading.Condition()  # guards the two below
        self._sweeps_running = 0
        self._set = threading.Lock()  # guards the one below
        self._moments: set[str] = set()  # alarms set and not yet run, by job id
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            # The heartbeat and the claims' leases have threads of their own: a thousand alarms falling due at once
            # must not delay the beat until this replica fences itself and hands its claims back.
            executors={"default": ThreadPoolExecutor(10), KEEPALIVE: ThreadPoolExecutor(2)},
            # APScheduler's default grace of 1 s silently drops a job that falls due while the process is busy.
            # A late revoke must still run, so no grace limit; coalesce piled-up runs into one.
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
        )

    def start(self, upcoming: Iterable[datetime] = ()) -> None:
        self._scheduler.add_job(
            self._run, "interval", (self._tick,), seconds=self._interval, id="sweep", next_run_time=datetime.now(UTC)
        )
        if self.renew is not None:
            self._scheduler.add_job(
                self._keep_claims, "interval", seconds=self._renew_every, id="renew", executor=KEEPALIVE
            )
        if self.beat is not None:
            self._scheduler.add_job(
                self._keep_beating, "interval", seconds=self._beat_every, id="heartbeat", executor=KEEPALIVE
            )
        self._scheduler.start()
        for moment in upcoming:
            self.wake_at(moment)

    def every(self, job_id: str, seconds: float, job: Callable[[], object]) -> None:
        """Run a named job every ``seconds`` while the scheduler runs (reconciliation, drills). A job that must run
        once per period across replicas decides that itself (store/schedules.py): this is only its alarm."""

        def run() -> None:
            try:
                job()
            except Exception as error:  # a traceback, unless the database is away: then one line per outage
                database_outage.failed(log, job_id, error)

        self._scheduler.add_job(run, "interval", seconds=seconds, id=job_id, replace_existing=True)

    def wake_at(self, when: datetime) -> None:
        if not self._scheduler.running or not self._sweeping:
            return
        # Up to the next tick: a thousand grants ending within a second are a hundred alarms, not a thousand, and the
        # sweep each wakes claims everything due by then anyway.
        tick = math.ceil(when.timestamp() / ALARM_TICK) * ALARM_TICK
        job_id = f"wake:{tick:.3f}"
        with self._set:  # asked again for a moment already set (every grant of a wave): nothing to do
            if job_id in self._moments:
                return
            self._moments.add(job_id)
        run_date = datetime.fromtimestamp(tick, UTC)
        self._scheduler.add_job(self._alarm, "date", (job_id,), run_date=run_date, id=job_id, replace_existing=True)

    def _alarm(self, job_id: str) -> None:
        with self._set:
            self._moments.discard(job_id)
        self._run(self._sweep)

    def _run(self, sweep: Callable[[], object]) -> None:
        with self._sweeps:
            if not self._sweeping:
                return
            self._sweeps_running += 1
        try:
            sweep()
        except Exception as error:
            database_outage.failed(log, "the sweep", error)  # the next one tries again
        else:
            database_outage.reachable()
        finally:
            with self._sweeps:
                self._sweeps_running -= 1
                self._sweeps.notify_all()

    def _keep_claims(self) -> None:
        assert self.renew is not None
        try:
            self.renew()
        except Exception as error:
            database_outage.failed(log, "renewing claims", error)  # again in renew_every seconds

    def _keep_beating(self) -> None:
        assert self.beat is not None
        try:
            self.beat()
        except Exception as error:  # one line, not a traceback every beat while the database is away
            database_outage.failed(log, "writing the heartbeat", error)

    def stop_sweeping(self, timeout: float = 10.0) -> None:
        """Start no more sweeps, and wait for one in progress; heartbeat and lease renewal go on, for the work still
        finishing as we stop."""
        with self._sweeps:
            self._sweeping = False
            self._sweeps.wait_for(lambda: self._sweeps_running == 0, timeout=timeout)

    def shutdown(self, wait: bool = True) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)
