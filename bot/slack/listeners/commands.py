"""/breakglass: parse, acknowledge within Slack's 3 seconds, then do the work and answer privately."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.domain.actions import AuditAction
from bot.domain.commands import (
    Ask,
    CommandError,
    Drill,
    Extend,
    Help,
    ListResources,
    Mine,
    RecordReview,
    Revoke,
    ShowReview,
    clean,
    parse,
)
from bot.domain.durations import format_duration
from bot.domain.rules import Forbidden, Refused, check_ask, find_resource, plainly_requester
from bot.domain.states import Status
from bot.logs import log_context
from bot.services import drills, extension_asks, guard, requests, reviews
from bot.services.deps import Deps
from bot.services.guard import RateLimiter
from bot.slack import blocks, drill_notices, more_time, review_form, review_packet
from bot.slack.after_ack import Later
from bot.slack.ids import COMMAND
from bot.slack.listeners.request_form import open_request_form
from bot.slack.replies import answer, record_slow_down
from bot.store.reachability import database_outage

log = logging.getLogger("breakglass.slack.commands")

# An acknowledgement that starts with this is not the answer: a private answer follows once the work is done.
WORKING = "⏳"


def register(app: App, deps: Deps, limiter: RateLimiter, later: Later) -> None:
    @app.command(COMMAND)
    def on_command(ack: Ack, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        actor = command["user_id"]
        verdict = limiter.take(actor)
        if not verdict.allowed:
            ack(text=verdict.message(limiter.per_minute))
            later(lambda: record_slow_down(deps, actor, verdict))
            return
        if not clean(command.get("text") or "").split():  # nothing typed: the form asks for it instead
            ack()
            where, trigger = (
                (command.get("channel_id") or actor, command.get("channel_name")),
                command.get("trigger_id"),
            )
            with log_context(actor=actor):
                later(lambda: answer(respond, lambda: open_request_form(deps, client, actor, trigger, *where)))
            return
        try:
            parsed = parse(command.get("text") or "")
        except CommandError as error:
            ack(text=f"{error}\n{blocks.help_text()}")
            return
        if isinstance(parsed, Help):
            ack(text=blocks.help_text())
            return
        if isinstance(parsed, Ask):
            if not _acked_ask(deps, actor, parsed, ack, later):
                return
        elif isinstance(parsed, Drill):  # who may run it needs a lookup: after the ack, like the drill itself
            ack(text=f"{WORKING} Running the drill of `{parsed.resource}{':' + parsed.level if parsed.level else ''}`…")
        else:
            ack()
        channel, name = command.get("channel_id"), command.get("channel_name")
        request_id, resource = getattr(parsed, "request_id", None), getattr(parsed, "resource", None)
        with log_context(request_id=request_id, resource=resource, actor=actor):
            later(lambda: answer(respond, lambda: run(deps, actor, parsed, channel, name)))


def _acked_ask(deps: Deps, actor: str, ask: Ask, ack: Ack, later: Later) -> bool:
    """Check an ask before the ack where that needs no I/O; True when the work goes on after it.

    Whether the person may request the resource comes first. Where that, or the list of what they may request,
    depends on a user group (a lookup), every check waits until after the ack, so nobody outside the requesters
    learns a resource's limits or reason pattern, and a typo's answer lists exactly what they may request.
    """
    known = {r.label: plainly_requester(actor, r) for r in deps.policy.grantables()}  # each level of each resource
    verb = "Breaking the glass on" if ask.emergency else "Asking for"
    asked = [plain for label, plain in known.items() if label.partition(":")[0] == ask.resource]
    if not (asked and all(asked)) and None in known.values():
        ack(text=f"{WORKING} {verb} `{ask.resource}{':' + ask.level if ask.level else ''}`…")
        return True
    try:
        may_request = lambda r: bool(known[r.label])  # noqa: E731
        resource = find_resource(deps.policy, ask.resource, may_request, level=ask.level, emergency=ask.emergency)
        duration = check_ask(resource, ask)  # no I/O, so it fits before the ack
    except Refused as refusal:
        ack(text=f"❌ {refusal}")
        if isinstance(refusal, Forbidden):  # after the ack: this writes to the database
            why = str(refusal)  # the name is unbound once the except block ends, before the work runs
            later(lambda: _record_refusal(deps, actor, why, ask.resource))
        return False
    ack(text=f"{WORKING} {verb} `{resource.label}` for {format_duration(duration)}…")
    return True


def _record_refusal(deps: Deps, actor: str, why: str, resource: str) -> None:
    try:
        guard.refused(deps, actor, AuditAction.REQUEST_REFUSED, why, resource=resource)
    except Exception as error:  # the person has their answer; a failed write is logged, not shown to them
        database_outage.failed(log, "recording a refused request", error)


def run(deps: Deps, actor: str, parsed: object, channel: str | None, channel_name: str | None = None) -> str:
    match parsed:
        case Ask():
            return blocks.asked_text(requests.submit(deps, actor, parsed, channel, channel_name))
        case ListResources():
            return blocks.offers_text(requests.offers(deps, actor))
        case Mine():
            mine = requests.mine(deps, actor)
            return blocks.mine_text(mine.open, mine.reviews_owed, mine.to_decide, mine.waiting, mine.to_sign_off)
        case Extend(request_id=request_id, duration=duration):
            # The holder asks (as "Ask for more time" does), an approver approves: one rule for both ways in.
            return more_time.said_to(actor, extension_asks.more_time(deps, actor, request_id, duration))
        case Revoke(request_id=request_id):
            ended = requests.end_early(deps, actor, request_id)
            if ended.status is Status.CANCELLED:
                return f"↩️ Request #{request_id} withdrawn."
            if ended.status is Status.REVOKE_FAILED:
                return f"⚠️ Revoking #{request_id} failed for now; Breakglass keeps retrying and has told security."
            return f"🛑 Access for request #{request_id} revoked."
        case RecordReview(request_id=request_id, notes=notes):
            return review_form.recorded(reviews.record(deps, actor, request_id, notes))
        case ShowReview(request_id=request_id):
            return review_packet.packet_text(reviews.packet(deps, actor, request_id))
        case Drill(resource=resource, level=level):
            return drill_notices.report(drills.from_slack(deps, actor, resource, level).to_data())
    raise AssertionError(f"unhandled command {parsed!r}")
