"""A person's Home tab as data: what is theirs to see and act on, read in one transaction.

Only what is theirs: their own access, requests and reviews owed, and other people's requests only where they may
decide them now (listed in a step, on call where the schedule may approve, a backup once escalated) or sign off
their review (an approver at the level, or a listed reviewer). Each list is a count and its most urgent ``SHOWN``,
so the page stays the same size however much there is. Pages are re-published for the people a change concerns,
and only for those who have opened theirs in the last ``KEEP_FOR`` (bot/slack/home_refresh.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError

from bot.services import approvers
from bot.services.common import view
from bot.services.deps import Deps
from bot.services.ports import MembershipUnknown
from bot.services.snapshots import RequestView
from bot.store import home as stored
from bot.store import queries
from bot.store.models import Request

log = logging.getLogger("breakglass.home")

SHOWN = 10  # items of each list on the page: with five lists, well within Slack's 100 blocks
KEEP_FOR = timedelta(days=30)  # a visit older than this is forgotten: nobody is looking at that page any more


@dataclass(frozen=True)
class Section:
    """The most urgent items of one list, and how many there are in all."""

    shown: tuple[RequestView, ...] = ()
    total: int = 0


@dataclass(frozen=True)
class Page:
    user_id: str
    now: datetime  # the clock's time when read: what "time left" counts from
    grants: Section  # their access, from approval to its confirmed end; soonest expiry first
    pending: Section  # their requests waiting for approvers; oldest first
    to_decide: Section  # other people's requests waiting for their decision; oldest first
    reviews_owed: Section  # accounts they owe; longest overdue first
    to_sign_off: Section  # written reviews waiting for their sign-off; longest waiting first
    first_visit: bool = False

    @property
    def empty(self) -> bool:
        return not any(
            s.total for s in (self.grants, self.pending, self.to_decide, self.reviews_owed, self.to_sign_off)
        )


Place = tuple[str, str | None]


def _places(deps: Deps, user_id: str) -> tuple[list[Place], list[Place], list[Place] | None]:
    """Where ``user_id`` may decide now, where only once a request was escalated, and where they may sign off a
    review (None: anywhere, as a listed reviewer). Asked of the policy of the moment, as a click would be."""
    deciding: list[Place] = []
    escalated: list[Place] = []
    signing: list[Place] = []
    for name, base in deps.policy.resources.items():
        levels = base.each_level
        for level in levels:
            resource = base.at(level)
            # A request stored without a level is on the first one (as `at(None)` reads it).
            places = [(name, level), (name, None)] if level is not None and level == levels[0] else [(name, level)]
            if approvers.ways(deps, user_id, resource, escalated=False):
                deciding += places
            elif resource.escalate_to and deps.is_listed(user_id, resource.escalate_to):
                escalated += places
            if deps.is_listed(user_id, resource.approvers):
                signing += places
    reviewer = deps.is_listed(user_id, deps.policy.review.reviewers)
    return deciding, escalated, None if reviewer else signing


def page(deps: Deps, user_id: str, *, first_visit: bool = False, shown: int = SHOWN) -> Page:
    """The person's page as it stands now: each list counted and its most urgent ``shown`` read, in one transaction
    (every query on an index: bot/store/home.py)."""
    deciding, escalated, signing = _places(deps, user_id)  # lookups (groups, on call) before the transaction
    with deps.db.transaction() as session:

        def section(listed: stored.Listed) -> Section:
            rows, total = listed
            return Section(tuple(view(deps, session, r) for r in rows), total)

        return Page(
            user_id=user_id,
            now=deps.now(),
            grants=section(stored.grants(session, user_id, shown)),
            pending=section(stored.pending(session, user_id, shown)),
            to_decide=section(stored.to_decide(session, user_id, deciding, escalated, shown)),
            reviews_owed=section(stored.reviews_owed(session, user_id, shown)),
            to_sign_off=section(stored.to_sign_off(session, user_id, signing, shown)),
            first_visit=first_visit,
        )


def visit(deps: Deps, user_id: str) -> bool:
    """Record that ``user_id`` opened their Home tab (so changes re-publish it), forgetting visits older than
    ``KEEP_FOR``; True for their first visit."""
    now = deps.now()
    for attempt in range(2):
        try:
            with deps.db.transaction() as session:
                first = stored.opened(session, user_id, now)
                stored.forget(session, now - KEEP_FOR)
                return first
        except IntegrityError:  # another replica recorded the same first visit at this moment
            if attempt:
                raise
    return False


def concerned(deps: Deps, request_ids: Iterable[int]) -> set[str]:
    """Whose pages show these requests, or did until they changed: each requester, the people who may decide it
    (listed in a step, members of listed groups, on call when it was asked, the backups), those who decided it, and
    those who may sign off its review; of them, only the people who have opened their Home tab lately."""
    listed: set[str] = set()
    with deps.db.transaction() as session:
        looking = stored.watching(session, deps.now() - KEEP_FOR)
        if not looking:  # nobody uses the Home tab: nothing to read, and no group to ask Slack about
            return set()
        for request_id in request_ids:
            request = queries.get(session, request_id)
            if request is not None:
                deciders = [d.approver_id for d in queries.decisions(session, request_id)]
                listed |= _involved(deps, request, deciders, queries.review(session, request_id) is not None)
    found = looking & listed
    groups = sorted(entry for entry in listed if entry.startswith("S"))
    if groups and looking - found:  # only a group can still name someone who looks: ask Slack who is in them
        try:
            found |= looking & deps.directory.members(groups)
        except MembershipUnknown:  # those members' pages stay as they were until their next visit
            log.warning("could not list user groups %s; their members' Home tabs are not refreshed", groups)
    return found


def _involved(deps: Deps, request: Request, deciders: Sequence[str], reviewed: bool) -> set[str]:
    """User and group ids a request's page entries concern (groups are expanded by the caller)."""
    found = {request.requester_id, *deciders, *(request.oncall_ids or [])}
    resource = deps.resource(request.resource, request.level)
    if resource is not None:
        found |= set(resource.approvers) | set(resource.escalate_to or [])
    if reviewed:  # a review they may sign off was written, or signed off by someone else
        found |= set(deps.policy.review.reviewers)
    return found
