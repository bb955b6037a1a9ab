"""The buttons a notice carries where people read it: the requester's DMs, and the audit channel's call to sign off.

A pure function of the snapshot the notice was owed with, so a message shows the buttons that fitted when it was
sent: "Withdraw" while the request waits, "Revoke now" and "Ask for more time" while the grant is live, "Write
review" while the holder's account is owed, "Sign off" once it is written. A button whose moment has passed stays
on its message; nothing here has to take it back, because every handler checks everything again at the click and
says what happened instead. A notice that calls for nothing carries no blocks at all, only its text, as before.
"""

from __future__ import annotations

from bot.domain.states import ReviewStatus, Status
from bot.services.ports import Notice
from bot.services.snapshots import RequestView
from bot.slack.fields import Block, actions, button, sections
from bot.slack.ids import ActionId

# Notices sent while the grant is live (the snapshot says whether it still was when the notice was owed).
LIVE = frozenset({Notice.ACTIVE, Notice.EMERGENCY, Notice.EXTENDED, Notice.EXPIRING, Notice.AUTO_APPROVED})
ACCOUNT_OWED = frozenset({Notice.REVIEW_DUE, Notice.REVIEW_REMINDER})
SIGN_OFF_AWAITED = frozenset({Notice.REVIEW_WRITTEN, Notice.REVIEW_SIGN_OFF})
BLOCK_ID = "buttons"


def for_requester(view: RequestView, notice: Notice) -> list[Block]:
    """The buttons of a DM to the requester about ``view``: none for a drill, which no person holds."""
    if view.drill:
        return []
    if notice in LIVE and view.status is Status.ACTIVE:
        more = button(
            ActionId.ASK_MORE_TIME, "Ask for more time", view.id, "primary" if notice is Notice.EXPIRING else None
        )
        return [more, button(ActionId.REVOKE, "Revoke now", view.id, "danger")]
    if notice in ACCOUNT_OWED and (view.review is None or view.review.status == ReviewStatus.DUE):
        return [button(ActionId.WRITE_REVIEW, "Write review", view.id, "primary")]
    if notice is Notice.RECEIVED and view.status is Status.PENDING:
        return [button(ActionId.WITHDRAW, "Withdraw", view.id)]
    return []


def for_channel(view: RequestView, notice: Notice) -> list[Block]:
    """The buttons of a notice in a channel: a written review's call for a sign-off opens the sign-off form (for
    whoever may sign off; anyone else who clicks is told why not)."""
    if view.drill:
        return []
    if notice in SIGN_OFF_AWAITED and view.review is not None and view.review.status == ReviewStatus.WRITTEN:
        return [button(ActionId.WRITE_REVIEW, "Sign off", view.id, "primary")]
    return []


def with_buttons(text: str, buttons: list[Block]) -> list[Block] | None:
    """The message's blocks: its whole text, then its buttons; None (text only) when it has no buttons."""
    if not buttons:
        return None
    return [*sections(text), actions(*buttons, block_id=BLOCK_ID)]
