"""Checks every Slack request passes before any listener sees it: it comes from our workspace, and its sender is
not flooding us.

The signature was already checked (bot/web.py in HTTP mode; in Socket Mode the connection is the proof). What a
verified payload says about where it comes from is then held against the workspace (and Enterprise Grid org) this
bot was installed in: a request relayed from another workspace's install of a look-alike app is refused.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt.request import BoltRequest
from slack_bolt.response import BoltResponse

from bot.domain.actions import AuditAction
from bot.services import guard
from bot.services.deps import Deps
from bot.slack.replies import WORKSPACE_UNKNOWN, ephemeral, form_errors, tell_privately
from bot.store.reachability import database_outage

log = logging.getLogger("breakglass.slack.gate")


@dataclass(frozen=True)
class Home:
    """The workspace (and, on Enterprise Grid, the org) this bot serves."""

    team_id: str | None
    enterprise_id: str | None = None
    org_wide: bool = False  # installed org-wide: any workspace of the org is home

    def admits(self, team_id: str | None, enterprise_id: str | None) -> bool:
        if self.enterprise_id and enterprise_id != self.enterprise_id:
            return False
        if self.org_wide and self.enterprise_id:
            return True
        return self.team_id is not None and team_id == self.team_id


def origin(body: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(team id, enterprise id, user id) a verified payload says it comes from, whatever its kind."""
    team = body.get("team")
    enterprise = body.get("enterprise")
    user = body.get("user")
    team_id = body.get("team_id") or (team.get("id") if isinstance(team, dict) else None)
    if team_id is None and isinstance(user, dict):
        team_id = user.get("team_id")
    enterprise_id = body.get("enterprise_id") or (enterprise.get("id") if isinstance(enterprise, dict) else None)
    user_id = body.get("user_id") or (user.get("id") if isinstance(user, dict) else None)
    as_text = [value if isinstance(value, str) else None for value in (team_id, enterprise_id, user_id)]
    return as_text[0], as_text[1], as_text[2]


def workspace_gate(home_now: Callable[[], Home | None], deps: Deps) -> Callable[..., BoltResponse | None]:
    """``home_now`` is the workspace as known at the moment; None (Slack not reached yet, no SLACK_TEAM_ID) refuses
    every request: admitting any workspace until we know ours would let a look-alike app in through the gap."""

    def gate(req: BoltRequest, resp: BoltResponse, next: Callable[[], None]) -> BoltResponse | None:
        body = req.body if isinstance(req.body, dict) else {}
        team_id, enterprise_id, user_id = origin(body)
        home = home_now()
        if body.get("type") == "url_verification":  # Slack proving the endpoint: it carries no workspace
            next()
            return None
        if home is None:
            log.warning("refused a Slack request: the workspace this bot serves is not known until Slack answers")
            return _answer(body, WORKSPACE_UNKNOWN, click_too=True)
        if home.admits(team_id, enterprise_id):
            next()
            return None
        where = f"team {team_id or '?'}" + (f", org {enterprise_id}" if enterprise_id else "")
        log.warning("refused a request from another workspace (%s)", where)
        try:
            guard.refused(
                deps,
                f"{team_id or '?'}:{user_id or '?'}",
                AuditAction.WORKSPACE_REFUSED,
                f"a request from another workspace ({where})",
                team=team_id,
                enterprise=enterprise_id,
            )
        except Exception as error:  # the refusal stands even if it cannot be written down
            database_outage.failed(log, "recording a refused workspace", error)
        return _answer(body, "This Breakglass serves another Slack workspace; nothing was done.")

    return gate


def _answer(body: dict[str, Any], text: str, click_too: bool = False) -> BoltResponse:
    """A command hears ``text`` in the ack; a click through its response_url and a form in itself only when
    ``click_too``: another workspace's clicks and forms get nothing back from us."""
    if body.get("command"):  # a slash command shows the ack's body to the person who typed it
        return BoltResponse(
            status=200,
            body=json.dumps(ephemeral(text)),
            headers={"content-type": ["application/json;charset=utf-8"]},
        )
    if click_too and body.get("type") == "view_submission":  # a form has no response_url; it stays open, saying why
        return BoltResponse(
            status=200, body=json.dumps(form_errors(text)), headers={"content-type": ["application/json;charset=utf-8"]}
        )
    response_url = body.get("response_url")
    if click_too and isinstance(response_url, str) and response_url.startswith(("https://", "http://")):
        tell_privately(response_url, text)
    return BoltResponse(status=200, body="")
