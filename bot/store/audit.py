"""Appending to the audit trail. Written in the same transaction as the change it records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bot.store.models import AuditEvent, Request

SYSTEM = "breakglass"


def record(
    session: Session,
    action: str,
    *,
    at: datetime,
    actor: str = SYSTEM,
    request: Request | None = None,
    request_id: int | None = None,
    resource: str | None = None,
    reason: str | None = None,
    **detail: Any,
) -> None:
    session.add(
        AuditEvent(
            at=at,
            actor=actor,
            action=action,
            request_id=request.id if request else request_id,
            resource=request.resource if request else resource,
            reason=reason if reason is not None else (request.reason if request else None),
            detail={key: value for key, value in detail.items() if value is not None},
        )
    )
