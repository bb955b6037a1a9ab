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
    assert "┆ ⚑ 09:00:00 DROP TABLE orders_stuck_tmp" in out
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
    assert _after(out, "✅ Step 2 of 2 (security): approved by @erin", "has access to orders-db:write")
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
    assert "⚡ Approved at once without an approver: the requester is on call now (`auto_approve`)." in out
    assert f"Bob Oncall is on call now for schedule `{SCHEDULE}` (`auto_approve`). No approver was asked." in out
    assert "auto_approved      #5   by bob" in out


def test_the_demo_shows_the_request_form_the_home_tab_and_dm_buttons_being_used(out: str) -> None:
    # The form, opened from the Home tab: what bob may ask for, least level first; a choice redraws it.
    assert "bob clicks [ Request access ] on the Home tab" in out
    assert "│ [ orders-db ▾ ]" in out and "│   choices: orders-db · payments-admin" in out
    assert "│ [ read ▾ ]" in out and "│   choices: read · write" in out
    assert _after(out, "bob picks payments-admin in the form", "│ [ payments-admin ▾ ]")
    # dave, by `/breakglass` alone: only what he may ask for; a mistake answered on its field; then the request.
    assert "dave in #payments: /breakglass   (nothing after it)" in out
    assert "│   choices: payments-admin " in out
    assert "│ ⚠ 3h is outside what payments-admin allows: 5m to 1h." in out
    assert _after(out, "⚠ 3h is outside", "📨 Request #3 for `payments-admin` (30m) is with the approvers")
    # The Home tab, as a requester (what he holds, its buttons) and as an approver (what waits for her).
    assert _after(out, "bob opens Breakglass's Home tab", "│ [ Revoke now ]  [ Ask for more time ]")
    assert _after(out, "alice opens Breakglass's Home tab", "│ 👋 Waiting for your decision (1)")
    assert "bot refreshes bob's Home tab (it changed)" in out
    # DM buttons: Revoke now, and Write review opening its form.
    assert _after(out, "bob clicks [ Revoke now ] on the bot's DM about request #2", "Access for request #2 is revoked")
    assert "revoked            #2   by bob" in out
    assert _after(
        out, "bob clicks [ Write review ] on the bot's DM about request #4; a form opens:", "[ Submit review ]"
    )
    # Each screen's cost in Slack calls.
    assert "Request form opened: views.open 2 times" in out and "Home tab opened: views.publish 2 times" in out
    assert "Request form redrawn for a choice: views.update 1 time" in out


def test_the_transcript_renders_what_people_see_and_times_that_agree(out: str) -> None:
    # mrkdwn as formatting: no raw markers of the bot's own, no escape codes when not on a terminal.
    assert "*Requester*" not in out and "Requester: Bob Oncall (`U0BOB`)" in out
    assert "\033[" not in out and "&lt;" not in out and "&gt;" not in out
    assert "▎ write access to the demo database orders." in out  # a quote, without its >
    assert "┆ ⚑ 09:16:00 TRUNCATE orders_lock_queue" in out and "```" not in out
    # The warning, the end of access and the request's message agree on when access ended.
    assert "⏰ Your access to orders-db:write ends 2026-01-01 09:46 UTC" in out
    assert "⌛ Your access to orders-db:write ended 2026-01-01 09:46 UTC: it has expired and was revoked." in out
    assert "⌛ Expired at 2026-01-01 09:46 UTC · granted at once" in out
    assert "09:47" not in out


def test_colour_only_when_asked_for() -> None:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert run_demo(colour=True) == 0
    coloured = printed.getvalue()
    assert "\033[1m== 1. Bob asks" in coloured and "\033[7m orders-db:read \033[0m" in coloured


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
