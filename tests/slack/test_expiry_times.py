"""Times a person reads about one grant agree: the warning's end, the expiry notice and the request's message.

The sweep enforces an expiry when it next runs, so the revoke lands after ``expires_at``; what the holder was told
("ends 09:30") is when access ended, and the message adds when the revoke landed only when that reads differently.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.domain.states import Status
from bot.services.ports import Notice
from bot.services.snapshots import RequestView
from bot.slack import blocks, notices

ENDS = datetime(2026, 1, 1, 9, 30, tzinfo=UTC)


def _expired(revoked_after: timedelta) -> RequestView:
    return RequestView(
        id=7,
        uid="uid-7",
        resource="orders-db",
        requester_id="U0BOB",
        reason="INC-1 checkout",
        duration=timedelta(minutes=30),
        emergency=False,
        status=Status.EXPIRED,
        created_at=ENDS - timedelta(minutes=31),
        approvals_required=1,
        granted_at=ENDS - timedelta(minutes=30),
        expires_at=ENDS,
        ended_at=ENDS + revoked_after,
        end_reason="expired",
    )


def test_a_revoke_a_sweep_late_still_says_access_ended_when_the_warning_said() -> None:
    late = _expired(timedelta(minutes=1, seconds=5))
    warning = notices.to_requester(late, Notice.EXPIRING)
    expired = notices.to_requester(late, Notice.EXPIRED)
    assert "ends <!date^" in warning and "|2026-01-01 09:30 UTC>" in warning
    assert "ended <!date^" in expired and "|2026-01-01 09:30 UTC>: it has expired" in expired
    assert "09:31" not in expired
    assert "ended <!date^" in notices.to_channel(late, Notice.EXPIRED) and "09:31" not in notices.to_channel(
        late, Notice.EXPIRED
    )
    line = blocks.state_line(late)
    assert line.startswith("⌛ Expired at <!date^") and "|2026-01-01 09:30 UTC>, revoked <!date^" in line
    assert "|2026-01-01 09:31 UTC>" in line  # the audit's fact, said as such, not as the end of access


def test_a_revoke_within_the_minute_reads_as_one_time() -> None:
    prompt = _expired(timedelta(seconds=20))
    line = blocks.state_line(prompt)
    assert "|2026-01-01 09:30 UTC>" in line and "revoked" not in line
    assert prompt.access_ended_at == ENDS


def test_a_revoke_before_expiry_ends_access_when_it_happened() -> None:
    early = _expired(timedelta(minutes=-10))
    assert early.access_ended_at == ENDS - timedelta(minutes=10)
    assert "revoked" not in blocks.state_line(early)
