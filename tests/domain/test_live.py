"""The wording of the one-live-grant rule: every refusal names the live request and says what to do instead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.live import LIVE, LiveRequest, live_key, refusal, supersedes
from bot.domain.states import FINAL, Status

NOW = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)


def live(
    status: Status, *, emergency: bool = False, by: str = "U0BOB", expires_in: timedelta | None = None
) -> LiveRequest:
    expires_at = NOW + expires_in if expires_in is not None else None
    return LiveRequest(12, "orders-db", by, status, emergency, expires_at)


def test_live_and_final_statuses_split_the_whole_life_of_a_request() -> None:
    assert set(Status) == LIVE | FINAL and not LIVE & FINAL


def test_a_request_from_before_principals_were_stored_takes_no_key() -> None:
    assert live_key("orders-db", None) is None
    assert live_key("orders-db", "zoe") == "orders-db\nzoe"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (Status.PENDING, "You already asked for `orders-db` (#12); it is waiting for approval."),
        (Status.APPROVED, "You hold access to `orders-db` until 09:30 UTC (#12); ask an approver for more time"),
        (Status.ACTIVE, "ask an approver for more time with `/breakglass extend 12 …`"),
        (Status.REVOKING, "Your earlier access to `orders-db` (#12) is still being removed; ask again once it is"),
        (Status.REVOKE_FAILED, "is still being removed"),
    ],
)
def test_each_live_status_is_refused_with_what_to_do(status: Status, expected: str) -> None:
    assert expected in str(refusal(live(status, expires_in=timedelta(minutes=30)), "U0BOB", NOW))


def test_the_holder_of_an_emergency_grant_extends_it_themselves() -> None:
    text = str(refusal(live(Status.ACTIVE, emergency=True, expires_in=timedelta(hours=25)), "U0BOB", NOW))
    assert "until 2026-03-05 10:00 UTC (#12); extend it yourself with `/breakglass extend 12 …`" in text


def test_another_slack_user_with_the_same_identity_is_named() -> None:
    text = str(refusal(live(Status.ACTIVE, by="U0DAVE", expires_in=timedelta(minutes=5)), "U0BOB", NOW))
    assert "through <@U0DAVE>'s request #12" in text and "An approver can give more time" in text


def test_only_an_emergency_supersedes_and_only_a_normal_request_still_waiting() -> None:
    assert supersedes(live(Status.PENDING), emergency=True)
    assert not supersedes(live(Status.PENDING), emergency=False)
    assert not supersedes(live(Status.PENDING, emergency=True), emergency=True)
    assert not any(supersedes(live(s), emergency=True) for s in LIVE - {Status.PENDING})
