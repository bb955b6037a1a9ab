"""Which buttons a notice carries, and that a notice with buttons still shows its whole text, within Slack's limits."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from hypothesis import given, settings

from bot.domain.states import Status
from bot.services.ports import Notice
from bot.services.snapshots import RequestView
from bot.slack import dm_buttons, notices
from bot.slack.fields import sections
from bot.slack.ids import ActionId
from tests.slack.test_rendering_properties import base_view, hostile_fields, slack_problems, views, with_text

LIVE = [ActionId.ASK_MORE_TIME, ActionId.REVOKE]


def ids(buttons: list[dict[str, object]]) -> list[str]:
    return [str(b["action_id"]) for b in buttons]


def live(status: Status = Status.ACTIVE) -> RequestView:
    return base_view(status, False, None, None)


@pytest.mark.parametrize("notice", [Notice.ACTIVE, Notice.EMERGENCY, Notice.EXTENDED, Notice.EXPIRING])
def test_a_live_grant_offers_more_time_and_revoke(notice: Notice) -> None:
    buttons = dm_buttons.for_requester(live(), notice)
    assert ids(buttons) == LIVE and all(b["value"] == "42" for b in buttons)


@pytest.mark.parametrize("status", [Status.REVOKING, Status.EXPIRED, Status.REVOKED, Status.GRANT_FAILED])
def test_a_grant_that_was_no_longer_live_when_the_notice_was_owed_offers_nothing(status: Status) -> None:
    assert dm_buttons.for_requester(live(status), Notice.EXPIRING) == []


@pytest.mark.parametrize("notice", [Notice.APPROVED, Notice.DENIED, Notice.EXPIRED, Notice.REVOKED, Notice.REVIEW_DONE])
def test_notices_that_call_for_nothing_carry_no_buttons(notice: Notice) -> None:
    view = live(Status.DENIED if notice is Notice.DENIED else Status.ACTIVE)
    assert dm_buttons.for_requester(view, notice) == []
    assert dm_buttons.with_buttons("text", []) is None  # text only, as before


def test_a_drill_is_held_by_nobody_so_its_notices_carry_no_buttons() -> None:
    drill = replace(live(), drill=True)
    for notice in Notice:
        assert dm_buttons.for_requester(drill, notice) == [] and dm_buttons.for_channel(drill, notice) == []


def test_write_review_while_the_account_is_owed_and_sign_off_once_it_is_written() -> None:
    due, written = (
        base_view(Status.EXPIRED, True, "expired", "due"),
        base_view(Status.EXPIRED, True, "expired", "written"),
    )
    for notice in (Notice.REVIEW_DUE, Notice.REVIEW_REMINDER):
        assert ids(dm_buttons.for_requester(due, notice)) == [ActionId.WRITE_REVIEW]
        assert dm_buttons.for_requester(written, notice) == []
    for notice in (Notice.REVIEW_WRITTEN, Notice.REVIEW_SIGN_OFF):
        [sign_off] = dm_buttons.for_channel(written, notice)
        assert sign_off["action_id"] == ActionId.WRITE_REVIEW and sign_off["text"]["text"] == "Sign off"  # type: ignore[index]
        assert dm_buttons.for_channel(due, notice) == []
    assert dm_buttons.for_channel(written, Notice.REVIEW_DUE) == []


@settings(max_examples=40, deadline=None, database=None)  # each example renders every notice
@given(views, hostile_fields)
def test_a_notice_with_buttons_shows_its_whole_text_within_slacks_limits(
    view: RequestView, values: dict[str, str]
) -> None:
    shown = replace(with_text(view, values), status=Status.ACTIVE)
    for notice in Notice:
        try:
            text = notices.linked(notices.to_requester(shown, notice), shown)
        except KeyError:
            continue  # a notice only channels hear
        content = dm_buttons.with_buttons(text, dm_buttons.for_requester(shown, notice))
        if content is None:
            continue
        assert slack_problems(text, content) == []
        parts = "".join(b["text"]["text"] for b in content[:-1])
        assert re.sub(r"\s", "", parts) == re.sub(r"\s", "", text)  # all of it, cut only where lines break


def test_a_long_text_is_cut_between_lines_into_sections_slack_takes() -> None:
    text = "\n".join(f"line {n} " + "x" * 900 for n in range(10))
    parts = [b["text"]["text"] for b in sections(text)]
    assert len(parts) == 4 and all(len(p) <= 3000 for p in parts)
    assert "\n".join(parts) == text
    one_line = "y" * 7000
    assert "".join(b["text"]["text"] for b in sections(one_line)) == one_line


def test_a_request_that_waits_may_be_withdrawn_from_the_dm() -> None:
    assert ids(dm_buttons.for_requester(live(Status.PENDING), Notice.RECEIVED)) == [ActionId.WITHDRAW]
    assert dm_buttons.for_requester(live(Status.CANCELLED), Notice.RECEIVED) == []
