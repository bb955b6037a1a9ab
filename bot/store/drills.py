"""Drill runs: kept one row per run, read back as the last success per resource (the metrics gauge) and lately."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.clock import as_utc
from bot.store.models import DrillRun


def record(
    session: Session,
    *,
    resource: str,
    level: str | None,
    label: str,
    started_at: datetime,
    finished_at: datetime,
    passed: bool,
    steps: list[dict[str, Any]],
    trigger: str,
    actor: str,
    request_id: int | None,
) -> DrillRun:
    run = DrillRun(
        resource=resource,
        level=level,
        label=label,
        started_at=started_at,
        finished_at=finished_at,
        passed=passed,
        steps=steps,
        trigger=trigger,
        actor=actor,
        request_id=request_id,
    )
    session.add(run)
    session.flush()
    return run


def last_successes(session: Session) -> dict[str, datetime]:
    """When each resource (by label: ``orders-db``, ``orders-db:read``) last passed a drill; a label that never passed
    is absent."""
    rows = session.execute(
        select(DrillRun.label, func.max(DrillRun.finished_at)).where(DrillRun.passed.is_(True)).group_by(DrillRun.label)
    ).all()
    return {label: as_utc(at) for label, at in rows if at is not None}  # max() keeps the column's type: aware


def recent(session: Session, limit: int = 20) -> Sequence[DrillRun]:
    return session.scalars(select(DrillRun).order_by(DrillRun.id.desc()).limit(limit)).all()


def get(session: Session, run_id: int) -> DrillRun | None:
    return session.get(DrillRun, run_id)
