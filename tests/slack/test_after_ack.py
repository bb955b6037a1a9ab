"""The pool that runs what follows an acknowledgement: work keeps its log context, a failure is logged and contained,
and a stopping bot starts nothing new but lets running work finish. (Acks under a busy pool: tests/e2e.)"""

from __future__ import annotations

import logging
import threading

import pytest

from bot.logs import current_context, log_context
from bot.slack.after_ack import AfterAck


def test_work_runs_in_the_callers_log_context_and_a_failure_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = AfterAck(workers=2)
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
    pool = AfterAck(workers=1)
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
