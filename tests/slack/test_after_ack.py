"""The pool that runs what follows an acknowledgement: work keeps its log context, a failure is logged and contained,
and a stopping bot starts nothing new but lets running work finish. (Acks under a busy pool: tests/e2e.)"""

from __future__ import annotations

import logging
import threading

import pytest

from bot.logs import current_context, log_context
from bot.slack.after_ack import AcksFirst, AfterAck


def test_work_runs_in_the_callers_log_context_and_a_failure_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = AfterAck(slots=2)
    seen: list[dict[str, object]] = []
    with log_context(request_id=42, actor="U0BOB"):
        pool(lambda: seen.append(dict(current_context())))
    with caplog.at_level(logging.ERROR, logger="breakglass.slack.after_ack"):
        pool(lambda: 1 / 0)
        assert pool.wait_idle(10)
    assert seen and seen[0]["request_id"] == 42 and seen[0]["actor"] == "U0BOB"
    assert "work after an acknowledgement failed" in caplog.text
    pool(lambda: seen.append({"after": True}))  # the pool goes on after a failure
    assert pool.close(10) and seen[-1] == {"after": True}


def test_a_closed_pool_lets_running_work_finish_and_starts_nothing_new() -> None:
    pool = AfterAck(slots=1)
    release, started, ran = threading.Event(), threading.Event(), []
    pool(lambda: (started.set(), release.wait(10), ran.append("first")))
    assert started.wait(10)
    closing = threading.Thread(target=pool.close, args=(10,))
    closing.start()
    pool(lambda: ran.append("late"))  # may land before or after close begins: never after it has
    release.set()
    closing.join(10)
    pool(lambda: ran.append("after close"))
    assert ran[0] == "first" and "after close" not in ran


def test_post_ack_work_waits_at_its_next_step_while_an_ack_is_being_made() -> None:
    pool = AfterAck(slots=1)
    first = pool.acks_first
    steps: list[str] = []
    at_step, go_on = threading.Event(), threading.Event()

    def work() -> None:
        steps.append("began")
        at_step.set()
        go_on.wait(10)
        first.give_way()  # a transaction or a Slack call would call this
        steps.append("stepped")

    with first.acking():
        pool(work)
        assert at_step.wait(10)
        go_on.set()
        assert not pool.wait_idle(0.1), "the step went ahead of an ack being made"
        assert steps == ["began"]
    assert pool.wait_idle(10) and steps == ["began", "stepped"]


def test_only_post_ack_work_gives_way_and_never_for_longer_than_its_limit() -> None:
    first = AcksFirst(give_way=0.2)
    with first.acking():
        first.give_way()  # an ack's own thread (or the sweep's) never waits
        waited: list[bool] = []

        def post_ack() -> None:
            with first.deferring():
                first.give_way()
            waited.append(True)

        worker = threading.Thread(target=post_ack)
        worker.start()
        worker.join(5)  # acks without end (a steady stream) hold each step back at most 0.2 s
        assert waited == [True]


def test_an_ack_that_fails_still_lets_post_ack_work_go_on() -> None:
    first = AcksFirst(give_way=30)
    with pytest.raises(RuntimeError), first.acking():
        raise RuntimeError("a listener failed mid-ack")
    done = threading.Event()

    def post_ack() -> None:
        with first.deferring():
            first.give_way()
        done.set()

    threading.Thread(target=post_ack).start()
    assert done.wait(5), "a failed ack must not leave post-ack work waiting for it"


def test_work_still_waiting_for_its_place_when_the_grace_runs_out_never_starts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = AfterAck(slots=1)
    release, started, ran = threading.Event(), threading.Event(), []
    pool(lambda: (started.set(), release.wait(10), ran.append("first")))
    assert started.wait(10)
    pool(lambda: ran.append("waiting"))  # has a thread, waits for the place the first holds
    with caplog.at_level(logging.WARNING, logger="breakglass.slack.after_ack"):
        assert not pool.close(0.1)  # the first is still running when the grace ends
        release.set()
        assert pool.wait_idle(10)
    assert ran == ["first"], "work that had not started by the end of the grace ran after the bot stopped"
    assert "not started" in caplog.text
