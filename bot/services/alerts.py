"""The security alert of an emergency: owed from the moment the glass breaks, sent until Slack has it.

The emergency's own transaction marks the alert due (``requests.alert_due_at``). Whoever sends it first pushes the
due time on by ``Tuning.alert_retry`` in a compare-and-set, posts, and clears it once Slack has the message, so a
Slack outage of any length, or a crash between the grant and the post, only delays the alert; the sweep sends it
when it falls due again. A post whose answer was lost (a timeout) may be repeated: for this one message a duplicate
is the lesser harm than security never hearing of the emergency.
"""

from __future__ import annotations

import logging

from bot.services.common import view
from bot.services.deps import Deps
from bot.store import audit, queries

log = logging.getLogger("breakglass.alerts")


def send(deps: Deps, request_id: int) -> bool:
    """Post a due alert to the audit channel; True once Slack has it. Never raises for Slack's sake."""
    now = deps.now()
    retry_at = now + deps.tuning.alert_retry
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        if request is None or request.alert_due_at is None or request.alert_due_at > now:
            return False
        first_attempt = request.alert_due_at == request.created_at
        if not queries.claim_alert(session, request_id, request.alert_due_at, retry_at):
            return False  # another replica is sending it
        current = view(deps, session, request)
    posted = deps.notifier.post_request(deps.policy.channels.audit, current)
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        assert request is not None
        if posted is None:
            if first_attempt:  # once, not at every retry of a long outage
                audit.record(session, "alert_failed", at=now, request=request, retry_at=retry_at.isoformat())
        else:
            queries.set_fields(session, request_id, alert_channel=posted.channel, alert_ts=posted.ts, alert_due_at=None)
            request = queries.get(session, request_id)
            assert request is not None
        latest = view(deps, session, request)
    if posted is None:
        log.error("the emergency alert for request %s did not reach Slack; retrying from %s", request_id, retry_at)
        deps.alarms.wake_at(retry_at)
        return False
    if latest.status is not current.status:  # it moved on while the alert waited: show where it is now
        deps.notifier.refresh(latest)
    return True
