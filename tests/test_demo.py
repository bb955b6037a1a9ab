"""`breakglass demo` tells the whole story end to end: run it as a newcomer would and check what it shows."""

from __future__ import annotations

import contextlib
import io
from importlib.resources import files

import pytest

from bot.demo import SCHEDULE, TOKEN_ENV, demo_policy, run_demo
from bot.policy import parse_policy


@pytest.fixture(scope="module")
def out() -> str:
    """What the demo printed: run once for every test here, as it takes seconds."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert run_demo() == 0
    return printed.getvalue()


def _after(out: str, first: str, then: str) -> bool:
    """Whether ``then`` is shown after ``first`` (both shown)."""
    return first in out and then in out[out.index(first) :]


def test_the_demo_shows_levels_a_watched_session_and_a_two_person_review(out: str) -> None:
    # A read request (the default level) and a write request approved in two steps, shown the lesser level.
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
    assert "review_written     #4   by bob" in out and "review_signed_off  #4   by alice" in out
    assert "signed off by @alice" in out
    assert "OK: " in out and "intact" in out


def test_the_demo_shows_two_steps_a_reminder_a_denial_with_its_reason_and_an_on_call_auto_approval(out: str) -> None:
    # Two steps in order: security cannot go first; the team lead's approval calls on security in the thread.
    assert "Request #2 waits for step 1 of 2 (team lead) first" in out
    assert "✅ Step 1 of 2 (team lead): approved by @carol" in out
    assert "⏳ Step 2 of 2 (security): waiting for 1 approval" in out
    assert "now asking for step 2 of 2 (security): @security" in out
    assert _after(out, "now asking for step 2 of 2 (security)", "✅ Step 2 of 2 (security): approved by @erin")
    assert "💬 @erin approved: “OK for the stuck orders only" in out
    assert _after(out, "✅ Step 2 of 2 (security): approved by @erin", "has access to *orders-db:write*")
    # A reminder once `remind_approvers_every` has passed, in the thread, calling on those who have not decided.
    moved = "nobody decides: the clock moves on 0:15:00"
    reminder = "⏰ Reminder: request #3 (payments-admin) has waited 15m. @alice @carol, please decide above."
    assert _after(out, moved, reminder) and "⏰ Reminder" not in out[: out.index(moved)]
    assert "approvers_reminded #3   by breakglass" in out
    # A denial with the reason the form asked for: on the message and in the requester's DM.
    assert "⛔ Denied by @alice: “refunds go through the support console" in out
    assert "was denied by @alice: “refunds go through the support console" in out
    # On call: carol carried the pager, so bob's first request waited; once bob does, his request is approved at once.
    assert "📨 Request #1 for `orders-db:read` (30m) is with the approvers" in out
    assert _after(out, "PagerDuty: bob (bob@example.com) is on call", "⚡ Approved at once: you are on call now")
    assert "⚡ *Approved at once without an approver*: the requester is on call now (`auto_approve`)." in out
    assert f"Bob Oncall is on call now for schedule `{SCHEDULE}` (`auto_approve`). No approver was asked." in out
    assert "auto_approved      #5   by bob" in out


def test_the_packaged_policy_needs_no_on_call_service_and_the_demo_adds_one() -> None:
    packaged = parse_policy(files("bot").joinpath("defaults/breakglass.yml").read_text())
    assert packaged.oncall is None  # `breakglass serve` with the packaged file needs no PagerDuty key
    assert [step.name for step in packaged.resources["orders-db"].at("write").steps] == ["team lead", "security"]
    policy = demo_policy("http://127.0.0.1:9")
    assert policy.oncall is not None and policy.oncall.effective_api_url == "http://127.0.0.1:9"
    assert policy.oncall.effective_token_env == TOKEN_ENV
    read = policy.resources["orders-db"].at("read")
    assert read.oncall is not None and read.oncall.schedule == SCHEDULE and read.oncall.auto_approve
    assert policy.resources["orders-db"].at("write").oncall is None
