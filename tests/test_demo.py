"""`breakglass demo` tells the whole story end to end: run it as a newcomer would and check what it shows."""

from __future__ import annotations

import pytest

from bot.demo import run_demo


def test_the_demo_shows_levels_a_watched_session_and_a_two_person_review(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_demo() == 0
    out = capsys.readouterr().out
    # A read request (the default level) and a write request that needs two approvers, shown the lesser level.
    assert "Request #1 for `orders-db:read`" in out
    assert "Request #2 for `orders-db:write`" in out and "Waiting for approval (1 of 2)" in out
    assert "`orders-db:read` was available" in out
    assert "the database refuses: U0BOB may only read orders" in out
    # A watched session: the digest in the request's thread, the flagged statement in the audit channel.
    assert "replies in a message's thread in #approvals" in out
    assert "⚑ 09:00:00 DROP TABLE orders_stuck_tmp" in out
    assert "🚩 Flagged on grant #2" in out and "posts to #security" in out
    # A review written by the holder and signed off by someone else; the holder cannot sign off their own.
    assert "you cannot sign off your own review" in out
    assert "review_written   #3   by bob" in out and "review_signed_off #3   by alice" in out
    assert "signed off by @alice" in out
    assert "OK: " in out and "intact" in out
