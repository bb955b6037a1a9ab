"""Every action the audit trail records, by name: what a reader of `breakglass audit export`, a SIEM rule or a
test matches on. A StrEnum, so a stored action is the plain string it always was and compares equal to it; new code
names an action here instead of spelling it (STYLE: named values)."""

from enum import StrEnum


class AuditAction(StrEnum):
    # A request and its decisions
    REQUESTED = "requested"
    REQUEST_REFUSED = "request_refused"
    APPROVED = "approved"
    AUTO_APPROVED = "auto_approved"
    DENIED = "denied"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    EMERGENCY = "emergency"
    SUPERSEDED = "superseded"
    APPROVAL_BLOCKED = "approval_blocked"
    APPROVERS_REMINDED = "approvers_reminded"
    ESCALATED = "escalated"
    PAGED = "paged"
    PAGE_FAILED = "page_failed"
    ALERT_FAILED = "alert_failed"

    # Access on the backend
    GRANTED = "granted"
    GRANT_FAILED = "grant_failed"
    GRANT_UNDONE = "grant_undone"
    REVOKE_REQUESTED = "revoke_requested"
    EXPIRING = "expiring"
    REVOKED = "revoked"
    EXPIRED = "expired"
    REVOKE_FAILED = "revoke_failed"
    CLAIM_TAKEN_OVER = "claim_taken_over"
    EXTENDED = "extended"
    EXTENSION_APPROVED = "extension_approved"
    EXTENSION_ASKED = "extension_asked"  # the holder asked for more time; approvers decide it
    EXTENSION_DENIED = "extension_denied"
    EXTENSION_DROPPED = "extension_dropped"  # access ended while it waited
    EXTEND_FAILED = "extend_failed"
    LATE_EXTEND_REVOKED = "late_extend_revoked"

    # Reviews
    REVIEW_DUE = "review_due"
    REVIEW_WRITTEN = "review_written"
    REVIEW_SIGNED_OFF = "review_signed_off"
    REVIEW_REMINDED = "review_reminded"

    # Watched sessions
    CAPTURE_STARTED = "capture_started"
    CAPTURE_FAILED = "capture_failed"
    CAPTURE_ENDED = "capture_ended"
    ACTIVITY_CAPTURED = "activity_captured"
    ACTIVITY_FLAGGED = "activity_flagged"
    ACTIVITY_READ_FAILED = "activity_read_failed"
    ACTIVITY_READ_RECOVERED = "activity_read_recovered"

    # Reconciliation
    RECONCILE_FOUND = "reconcile_found"
    RECONCILE_REVOKED = "reconcile_revoked"
    RECONCILE_REGRANTED = "reconcile_regranted"
    RECONCILE_FAILED = "reconcile_failed"

    # Refusals: someone tried what they may not do (counted per person, services/guard.py)
    DECISION_REFUSED = "decision_refused"
    REVOKE_REFUSED = "revoke_refused"
    EXTEND_REFUSED = "extend_refused"
    REVIEW_REFUSED = "review_refused"
    DRILL_REFUSED = "drill_refused"
    RATE_LIMITED = "rate_limited"
    WORKSPACE_REFUSED = "workspace_refused"
    SIGNATURE_REFUSED = "signature_refused"
    REPLAY_REFUSED = "replay_refused"

    # Operations
    DRILL_PASSED = "drill_passed"
    DRILL_FAILED = "drill_failed"
    POLICY_RELOADED = "policy_reloaded"
    POLICY_REFUSED = "policy_refused"
    AUDIT_SINK_FAILING = "audit_sink_failing"
    AUDIT_SINK_RECOVERED = "audit_sink_recovered"
    AUDIT_SINK_INTERRUPTED = "audit_sink_interrupted"
    AUDIT_HEAD_ALTERED = "audit_head_altered"
