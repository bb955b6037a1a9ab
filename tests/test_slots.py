"""Slots: at most ``size`` pieces of work start and run at once, a blocking call gives its place to the next while it
waits, and coming back from one never waits for a place (bot/slots.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from bot.slots import Slots, blocking


def _start(slots: Slots, body: Callable[[], object]) -> threading.Thread:
    def run() -> None:
        with slots.taken():
            body()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _until(condition: Callable[[], bool]) -> None:
    event = threading.Event()
    for _ in range(1000):
        if condition():
            return
        event.wait(0.01)
    raise AssertionError("never happened")


def test_no_more_than_size_run_at_once_and_the_next_starts_when_one_ends() -> None:
    slots = Slots(2)
    release, started = threading.Event(), threading.Semaphore(0)
    held = [_start(slots, lambda: (started.release(), release.wait(10))) for _ in range(2)]
    assert started.acquire(timeout=10) and started.acquire(timeout=10)
    third_ran = threading.Event()
    third = _start(slots, third_ran.set)
    assert not third_ran.wait(0.2), "a third piece ran beside two holding both places"
    release.set()
    assert third_ran.wait(10)
    for thread in [*held, third]:
        thread.join(10)
    assert slots.running == 0


def test_a_piece_waiting_in_a_blocking_call_lets_the_next_one_run() -> None:
    """A grant waiting on a backend that hangs: the next person's work goes ahead."""
    slots = Slots(1)
    answer, waiting = threading.Event(), threading.Event()

    def calls_a_hung_backend() -> None:
        with blocking():
            waiting.set()
            answer.wait(10)

    first = _start(slots, calls_a_hung_backend)
    assert waiting.wait(10)
    second_ran = threading.Event()
    _start(slots, second_ran.set).join(10)
    assert second_ran.is_set(), "the next piece waited for a call that holds no place"
    answer.set()
    first.join(10)
    assert slots.running == 0


def test_coming_back_from_a_call_never_waits_for_a_place() -> None:
    """The piece back from its call may hold what the running one wants: it goes on at once, over the bound."""
    slots = Slots(1)
    answer, in_call, back, done = threading.Event(), threading.Event(), threading.Event(), threading.Event()

    def caller() -> None:
        with blocking():
            in_call.set()
            answer.wait(10)
        back.set()
        done.wait(10)

    first = _start(slots, caller)
    assert in_call.wait(10)
    release, holding = threading.Event(), threading.Event()
    second = _start(slots, lambda: (holding.set(), release.wait(10)))
    assert holding.wait(10)
    answer.set()
    assert back.wait(10), "the piece back from its call waited for the place the other holds"
    assert slots.running == 2
    done.set()
    first.join(10)
    release.set()
    second.join(10)
    assert slots.running == 0


def test_nested_calls_give_the_place_up_once_and_failures_give_it_back() -> None:
    slots = Slots(1)
    with slots.taken():
        assert slots.running == 1
        with blocking():
            assert slots.running == 0
            with blocking():
                assert slots.running == 0
            assert slots.running == 0
        assert slots.running == 1
        with pytest.raises(ConnectionError), blocking():
            raise ConnectionError("the backend went away")
        assert slots.running == 1
    assert slots.running == 0
    with pytest.raises(RuntimeError), slots.taken():
        raise RuntimeError("the work failed")
    assert slots.running == 0


def test_blocking_outside_any_work_does_nothing_and_slots_are_per_thread() -> None:
    with blocking():  # the sweep's thread, a lane's, a test's: not post-ack work
        pass
    slots = Slots(1)
    other_saw: list[int] = []
    with slots.taken():
        thread = threading.Thread(target=lambda: (blocking().__enter__(), other_saw.append(slots.running)))
        thread.start()
        thread.join(10)
    assert other_saw == [1], "another thread's blocking call gave up a place it does not hold"
    assert slots.running == 0


def test_at_least_one_slot() -> None:
    with pytest.raises(ValueError):
        Slots(0)
