"""The scheduler's own promises: the heartbeat is never kept from its thread by alarms, an alarm asked for again is
set once, and alarms only wake the sweep while the periodic sweep also sets alarms ahead.

The scheduler runs on the real clock (APScheduler's), so these wait for real events, never for a length of time.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from bot.scheduler import Scheduler


def test_the_heartbeat_beats_while_alarms_hold_every_sweep_thread() -> None:
    """A wave of expiries fires an alarm per grant; when each alarm's sweep was slow, they held every thread the
    heartbeat shared with them, the replica fenced itself and handed its claims back in the middle of the wave."""
    held = threading.Event()
    sweeping = threading.Semaphore(0)
    beats = threading.Semaphore(0)

    def slow_sweep() -> None:
        sweeping.release()
        held.wait(30)

    scheduler = Scheduler(slow_sweep, interval=3600, beat=beats.release, beat_every=0.05, tick=lambda: None)
    scheduler.start()
    try:
        now = datetime.now(UTC)
        for n in range(40):  # far more alarms due at once than the scheduler has threads for sweeps
            scheduler.wake_at(now - timedelta(milliseconds=20 * n))  # each in a tick of its own
        for _ in range(10):  # every sweep thread is held
            assert sweeping.acquire(timeout=10)
        for _ in range(3):
            assert beats.acquire(timeout=10), "the heartbeat waited behind the alarms"
    finally:
        held.set()
        scheduler.shutdown(wait=True)


def test_an_alarm_asked_for_again_is_set_once_and_runs_once() -> None:
    runs = threading.Semaphore(0)
    scheduler = Scheduler(runs.release, interval=3600, tick=lambda: None)
    scheduler.start()
    try:
        moment = datetime.now(UTC) + timedelta(milliseconds=300)
        for _ in range(500):
            scheduler.wake_at(moment)
        assert len([job for job in scheduler._scheduler.get_jobs() if job.id.startswith("wake:")]) == 1
        assert runs.acquire(timeout=10)
        scheduler.wake_at(moment)  # already run: a past moment asked again wakes the sweep again
        assert runs.acquire(timeout=10)
    finally:
        scheduler.shutdown(wait=True)


def test_alarms_wake_the_sweep_and_only_the_periodic_sweep_ticks() -> None:
    woken, ticked = threading.Semaphore(0), threading.Semaphore(0)
    scheduler = Scheduler(woken.release, interval=3600, tick=ticked.release)
    scheduler.start()  # the periodic sweep runs once at start
    try:
        assert ticked.acquire(timeout=10)
        scheduler.wake_at(datetime.now(UTC))
        assert woken.acquire(timeout=10)
        assert not ticked.acquire(timeout=0), "an alarm does not set alarms ahead"
    finally:
        scheduler.shutdown(wait=True)
