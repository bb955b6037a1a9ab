"""What is said about a grant's captured activity, as plain data: a digest for the approval thread, an alert for a
flagged statement, and the capture's own troubles. Owed in the outbox as JSON and rendered into words only when sent
(bot/slack/notices.py), like every other notice; a note holds only text that was already scrubbed of secrets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class Note(StrEnum):
    DIGEST = "digest"  # what the principal did lately, in the approval thread
    FLAGGED = "flagged"  # one statement that matched an ``alert_on`` pattern, in the audit channel
    CAPTURE_FAILED = "capture_failed"  # the backend would not record the grant: said in the thread and to security
    READ_FAILING = "read_failing"  # the record has not been readable for a while (said once, in the thread)


@dataclass(frozen=True)
class Line:
    at: datetime
    action: str
    flagged: str | None = None  # the pattern it matched


@dataclass(frozen=True)
class ActivityNote:
    note: Note
    principal: str
    lines: tuple[Line, ...] = ()  # for a digest: flagged first, then in order; at most DIGEST_LINES
    total: int = 0  # actions the digest covers, shown or not
    first: datetime | None = None
    last: datetime | None = None
    error: str | None = None  # why capture failed (scrubbed)

    @property
    def more(self) -> int:
        """Actions the digest covers but does not show."""
        return max(self.total - len(self.lines), 0)

    def to_data(self) -> dict[str, Any]:
        return {
            "note": self.note.value,
            "principal": self.principal,
            "lines": [[line.at.isoformat(), line.action, line.flagged] for line in self.lines],
            "total": self.total,
            "first": self.first.isoformat() if self.first else None,
            "last": self.last.isoformat() if self.last else None,
            "error": self.error,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> ActivityNote:
        def moment(value: str | None) -> datetime | None:
            return datetime.fromisoformat(value) if value else None

        return cls(
            note=Note(data["note"]),
            principal=str(data.get("principal") or ""),
            lines=tuple(Line(datetime.fromisoformat(at), action, flagged) for at, action, flagged in data["lines"]),
            total=int(data.get("total") or 0),
            first=moment(data.get("first")),
            last=moment(data.get("last")),
            error=data.get("error"),
        )
