"""The security alert of an emergency: owed from the moment the glass breaks, sent until Slack has it.

The emergency's own transaction marks the alert due (``requests.alert_due_at``). Whoever sends it first pushes the
due time past the slowest post in a compare-and-set, posts, and clears it once Slack has the message, or sets it
``Tuning.alert_retry`` after the failure; so a Slack outage of any length, or a crash between the grant and the
post, only delays the alert, and the sweep sends it when it falls due again. A post whose answer was lost (a
timeout) may be repeated: for this one message a duplicate is the lesser harm than security never hearing of it.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.services.common import view
from bot.services.deps import Deps
from bot.store import audit, queries

log = logging.getLogger("breakglass.alerts")
# Longer than the slowest post: Slack's 10 s timeout and its retries, 429 waits included. Only a process that died
# mid-post makes the alert wait this long.
SENDING = timedelta(minutes=5)


def send(deps: Deps, request_id: int) -> bool:
    """Post a due alert to the audit channel; True once Slack has it. Never raises for Slack's sake."""
    now = deps.now()
    lease = now + SENDING  # nobody else posts it meanwhile, however long Slack and its retries take
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        if request is None or request.alert_due_at is None or request.alert_due_at > now:
            return False
        first_attempt = request.alert_due_at == request.created_at
        if not queries.claim_alert(session, request_id, request.alert_due_at, lease):
            return False  # another replica is sending it
        current = view(deps, session, request)
    posted = deps.notifier.post_request(deps.policy.channels.audit, current)
    retry_at = deps.now() + deps.tuning.alert_retry  # from the failure, not from the start of a long attempt
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        assert request is not None
        if posted is None:
            queries.claim_alert(session, request_id, lease, retry_at)
            if first_attempt:  # once, not at every retry of a long outage
                audit.record(session, "alert_failed", at=now, request=request, retry_at=retry_at.isoformat())
        elif queries.claim_alert(session, request_id, lease, None):  # still ours: keep where the alert is
            queries.set_fields(session, request_id, alert_channel=posted.channel, alert_ts=posted.ts)
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
