"""Action, callback and block ids of every button, form and page, in one place: find a button's code by searching for
its id."""

from enum import StrEnum


class ActionId(StrEnum):
    APPROVE = "approve-request"
    APPROVE_WITH_COMMENT = "approve-with-comment"  # opens the comment form; its submission approves
    DENY = "deny-request"  # opens the reason form; its submission denies
    REVOKE = "revoke-access"  # "Revoke now": on the request's message, in the holder's DM and on the Home tab
    WITHDRAW = "withdraw-request"  # the requester takes back a request that waits for approvers
    OPEN_REQUEST_FORM = "open-request-form"  # the Home tab's "Request access"
    PICK_RESOURCE = "pick-resource"  # the request form's resource select: the form is redrawn for it
    PICK_LEVEL = "pick-level"  # the request form's level select: durations and break-glass follow the level
    ASK_MORE_TIME = "ask-more-time"  # opens the more-time form; its submission asks for an extension
    APPROVE_EXTENSION = "approve-extension"  # in the request's thread: approves the extension that waits
    DENY_EXTENSION = "deny-extension"
    WRITE_REVIEW = "write-review"  # opens the review form: the holder's account, or an approver's sign-off


class CallbackId(StrEnum):
    """Modal forms, by what their submission does; and the global shortcut."""

    DENY = "deny-reason"
    APPROVE = "approve-comment"
    REQUEST = "request-access"  # the request form: its submission is the request a typed command makes
    MORE_TIME = "more-time"  # the more-time form: its submission asks for an extension
    DENY_EXTENSION = "deny-extension-reason"  # why an extension is denied: its submission denies it
    REVIEW = "review-notes"  # the review form: an account, or a sign-off's notes
    REQUEST_SHORTCUT = "request_access"  # the global shortcut "Request access" (manifest.yml)


# The one text input of the decision forms: its block and action ids, for reading the submitted value.
WORDS_BLOCK = "words"
WORDS_INPUT = "text"


class FormField(StrEnum):
    """The request form's inputs. Each is its block's id, followed by "." and the resource or level it was drawn for
    where a choice redraws the block (so Slack carries no stale choice over), and the action id of its element (but
    the selects', which are ActionId.PICK_RESOURCE and ActionId.PICK_LEVEL)."""

    RESOURCE = "resource"
    LEVEL = "level"
    DURATION = "duration"  # a select of durations within the level's limits
    TYPED_DURATION = "typed-duration"  # free entry, which replaces the select's choice
    REASON = "reason"
    EMERGENCY = "emergency"  # the "Break the glass" checkbox, only where the person may


# The more-time form: how much more, chosen or typed (block id, then the input's action id); its "why" is WORDS_BLOCK.
MORE_PICK_BLOCK, MORE_PICK = "more-pick", "pick"
MORE_TYPED_BLOCK, MORE_TYPED = "more-typed", "typed"

COMMAND = "/breakglass"
