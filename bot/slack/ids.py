"""Action, callback and block ids of every button and form, in one place: find a button's code by searching for its
id."""

from enum import StrEnum


class ActionId(StrEnum):
    APPROVE = "approve-request"
    APPROVE_WITH_COMMENT = "approve-with-comment"  # opens the comment form; its submission approves
    DENY = "deny-request"  # opens the reason form; its submission denies
    REVOKE = "revoke-access"


class CallbackId(StrEnum):
    """Modal forms, by what their submission does."""

    DENY = "deny-reason"
    APPROVE = "approve-comment"


# The one text input of the decision forms: its block and action ids, for reading the submitted value.
WORDS_BLOCK = "words"
WORDS_INPUT = "text"

COMMAND = "/breakglass"
