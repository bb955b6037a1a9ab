"""Forms (modal submissions) at the edges: a signed submission Bolt could not route is refused before Bolt sees it,
and a submission that cannot be served keeps its form open with the reason instead of closing it in silence."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlencode

import pytest

from bot.devtools.slack_requests import view_submission
from bot.slack import payloads
from bot.slack.ids import WORDS_BLOCK, WORDS_INPUT, CallbackId
from bot.slack.replies import DATABASE_UNREACHABLE, refusal_for

FORM = "application/x-www-form-urlencoded"


def submission(**changes: object) -> bytes:
    body = view_submission("U0CAROL", CallbackId.DENY, '{"request": 1}', {WORDS_BLOCK: {WORDS_INPUT: "no"}})
    payload = json.loads(parse_qs(body)["payload"][0])
    for key, value in changes.items():
        if key.startswith("view."):
            payload["view"][key.removeprefix("view.")] = value
        else:
            payload[key] = value
    return urlencode({"payload": json.dumps(payload)}).encode()


def test_a_submission_as_slack_sends_it_passes() -> None:
    assert payloads.problem(submission(), FORM) is None


@pytest.mark.parametrize(
    "changes",
    [
        {"view": "deny-reason"},
        {"view": None},
        {"view.callback_id": None},
        {"view.callback_id": ""},
        {"view.type": "workflow_step"},
        {"user": None},
    ],
)
def test_a_submission_bolt_could_not_route_is_refused(changes: dict[str, object]) -> None:
    assert payloads.problem(submission(**changes), FORM) is not None


def test_a_submission_that_cannot_be_served_keeps_the_form_open_saying_why() -> None:
    status, answer = refusal_for(submission(), FORM, DATABASE_UNREACHABLE)

    assert status == 200
    assert answer == {"response_action": "errors", "errors": {WORDS_BLOCK: DATABASE_UNREACHABLE}}
