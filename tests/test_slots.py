"""Slots: work runs in the order it came, at most ``size`` pieces at once; a piece waiting in a blocking call gives
its place to the next, and one back from its call never waits for a place (bot/slots.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from bot.slots import Slots, blocking


def _until(condition: Callable[[], bool]) -> None:
    event = threading.Event()
    for _ in range(1000):
        if condition():
            return
        event.wait(0.01)
    raise AssertionError("never happened")


def test_work_runs_in_the_order_it_came_no_more_than_size_at_once() -> None:
    slots = Slots(2, most=8)
    release, started = threading.Event(), threading.Semaphore(0)
    order: list[int] = []
    for _ in range(2):
        slots.submit(lambda: (started.release(), release.wait(10)))
    assert started.acquire(timeout=10) and started.acquire(timeout=10)
    for n in range(20):
        slots.submit(lambda n=n: order.append(n))
    _until(lambda: slots.queued == 20)
    assert order == [] and slots.running == 2, "a piece started beside two holding both places"
    release.set()
    _until(lambda: len(order) == 20)
    assert order == list(range(20))
    _until(lambda: slots.running == 0)


def test_while_nothing_blocks_size_threads_do_all_the_work() -> None:
    slots = Slots(2, most=64)
    done = threading.Semaphore(0)
    for _ in range(200):
        slots.submit(done.release)
    for _ in range(200):
        assert done.acquire(timeout=10)
    assert slots._threads <= 2


def test_a_piece_waiting_in_a_blocking_call_lets_the_next_one_run() -> None:
    """A grant waiting on a backend that hangs: the next person's work goes ahead."""
    slots = Slots(1, most=4)
    answer, waiting, next_ran = threading.Event(), threading.Event(), threading.Event()

    def calls_a_hung_backend() -> None:
        with blocking():
            waiting.set()
            answer.wait(10)

    slots.submit(calls_a_hung_backend)
    assert waiting.wait(10)
    slots.submit(next_ran.set)
    assert next_ran.wait(10), "the next piece waited for a call that holds no place"
    answer.set()
    _until(lambda: slots.running == 0)


def test_a_piece_back_from_its_call_goes_on_at_once_and_nothing_new_starts_until_under_the_bound() -> None:
    """It may hold what the running piece wants: it never waits for a place."""
    slots = Slots(1, most=4)
    in_call, answer, back, finish = threading.Event(), threading.Event(), threading.Event(), threading.Event()

    def caller() -> None:
        with blocking():
            in_call.set()
            answer.wait(10)
        back.set()
        finish.wait(10)

    slots.submit(caller)
    assert in_call.wait(10)
    holding, release, third = threading.Event(), threading.Event(), threading.Event()
    slots.submit(lambda: (holding.set(), release.wait(10)))
    assert holding.wait(10)
    answer.set()
    assert back.wait(10), "the piece back from its call waited for the place the other holds"
    assert slots.running == 2
    slots.submit(third.set)
    release.set()
    assert not third.wait(0.2), "a new piece started while two ran over a bound of one"
    finish.set()
    assert third.wait(10)
    _until(lambda: slots.running == 0)


def test_nested_calls_give_the_place_up_once_and_failures_give_it_back() -> None:
    slots = Slots(1, most=2)
    seen: list[int] = []
    done = threading.Event()

    def work() -> None:
        seen.append(slots.running)
        with blocking():
            seen.append(slots.running)
            with blocking():
                seen.append(slots.running)
        seen.append(slots.running)
        with pytest.raises(ConnectionError), blocking():
            raise ConnectionError("the backend went away")
        seen.append(slots.running)
        done.set()

    slots.submit(work)
    assert done.wait(10)
    assert seen == [1, 0, 0, 1, 1]
    _until(lambda: slots.running == 0)


def test_blocking_elsewhere_does_nothing_and_dropped_work_never_starts() -> None:
    with blocking():  # the sweep's thread, a lane's, a test's: not a piece of this work
        pass
    slots = Slots(1, most=2)
    release, holding, ran = threading.Event(), threading.Event(), []
    slots.submit(lambda: (holding.set(), release.wait(10)))
    assert holding.wait(10)
    other_saw: list[int] = []
    thread = threading.Thread(target=lambda: (blocking().__enter__(), other_saw.append(slots.running)))
    thread.start()
    thread.join(10)
    assert other_saw == [1], "another thread's blocking call gave up a place it does not hold"
    slots.submit(lambda: ran.append("late"))
    assert slots.stop() == 1
    release.set()
    _until(lambda: slots.running == 0 and slots._threads == 0)  # no thread outlives a stopped pool
    slots.submit(lambda: ran.append("after stop"))
    assert ran == []


def test_at_least_one_slot_and_a_thread_for_each() -> None:
    with pytest.raises(ValueError):
        Slots(0, most=4)
    with pytest.raises(ValueError):
        Slots(4, most=2)
