"""The review packet keeps every text nobody at Breakglass wrote inert, and fits one Slack message however much
there is to show."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from hypothesis import given, settings

from bot.domain.states import Status
from bot.services.reviews import PACKET_ACTIVITY, Action, Moment, Packet
from bot.services.snapshots import RequestView, ReviewView, from_data, to_data
from bot.slack.review_packet import BUDGET, packet_text
from bot.slack.text import units
from tests.slack.test_rendering_properties import AT, BOB, CAROL, assert_safe, base_view, hostile_fields, views

ACTIONS = ("requested", "approved", "granted", "extended", "review_reminded", "expired", "review_written")


def packet_of(view: RequestView, status: str, actions: int = 4) -> Packet:
    """A packet whose account, sign-off notes and captured actions carry the view's user text."""
    review = ReviewView(status, CAROL, view.instructions, AT, 2, BOB, AT, view.failure)
    moments = tuple(Moment(AT + timedelta(minutes=n), ACTIONS[n % len(ACTIONS)], BOB) for n in range(60))
    shown = tuple(
        Action(AT + timedelta(seconds=n), view.principal or "", view.reason, "DROP" if n < 2 else None)
        for n in range(actions)
    )
    return Packet(replace(view, review=review), moments, shown, flagged=2, kept=900, not_kept=4000)


@settings(max_examples=15, deadline=None, database=None)  # each example renders three packets
@given(views, hostile_fields)
def test_the_packet_keeps_user_text_inert(view: RequestView, values: dict[str, str]) -> None:
    for status in ("due", "written", "done"):
        assert_safe(lambda v, status=status: (packet_text(packet_of(v, status)), None), view, values)


@settings(max_examples=15, deadline=None, database=None)
@given(views, hostile_fields)
def test_the_packet_fits_its_budget_and_says_what_it_left_out(view: RequestView, values: dict[str, str]) -> None:
    text = packet_text(packet_of(replace(view, **values), "done", actions=PACKET_ACTIVITY))
    assert units(text) <= BUDGET
    after = text.split("*Activity captured*", 1)[1].splitlines()[1:]
    listed = [line for line in after if line.startswith("• ") and "more kept actions" not in line]
    assert 1 <= len(listed) <= PACKET_ACTIVITY
    assert after[-1] == f"• …and {900 - len(listed)} more kept actions not shown here"


def test_a_long_timeline_keeps_its_start_and_end_and_says_what_is_left_out() -> None:
    text = packet_text(packet_of(base_view(Status.EXPIRED, True, "expired", "written"), "written"))
    assert "…20 events in between" in text
    assert "900 actions kept, 2 flagged, 4000 more seen but not kept" in text


def test_a_snapshot_owed_before_the_two_steps_still_loads_and_new_ones_round_trip() -> None:
    view = base_view(Status.EXPIRED, True, "expired", "done")
    old = to_data(view)
    for key in ("author_id", "written_at", "account", "signers"):
        del old["review"][key]  # as the outbox holds snapshots written before this change
    loaded = from_data(old)
    assert loaded.review == ReviewView("done", CAROL, "notes", AT, 1)

    two_steps = replace(view, review=ReviewView("written", None, None, None, 1, BOB, AT, "what happened", ("S0SEC",)))
    assert from_data(to_data(two_steps)) == two_steps
