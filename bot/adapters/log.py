"""Records grants and revokes in the log only: for trying Breakglass out."""

from __future__ import annotations

import logging
from typing import ClassVar

from bot.adapters.base import AdapterParams, GrantContext, Receipt

log = logging.getLogger("breakglass.adapters.log")


class LogParams(AdapterParams):
    pass


class LogAdapter:
    name: ClassVar[str] = "log"
    Params: ClassVar[type[AdapterParams]] = LogParams

    def __init__(self, params: AdapterParams | None = None) -> None:
        self.params = params or LogParams()

    def grant(self, ctx: GrantContext) -> Receipt:
        log.info(
            "grant %s: %s on %s until %s",
            ctx.grant_id,
            ctx.user.slack_id,
            ctx.resource,
            ctx.expires_at.isoformat(),
        )
        return Receipt(data={"logged": True}, instructions="Access is simulated by the log adapter.")

    def revoke(self, ctx: GrantContext, receipt: Receipt) -> None:
        log.info("revoke %s: %s on %s", ctx.grant_id, ctx.user.slack_id, ctx.resource)

    def check(self) -> list[str]:
        return []
