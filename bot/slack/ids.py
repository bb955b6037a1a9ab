"""Action ids of every button, in one place: find a button's code by searching for its id."""

from enum import StrEnum


class ActionId(StrEnum):
    APPROVE = "approve-request"
    DENY = "deny-request"
    REVOKE = "revoke-access"


COMMAND = "/breakglass"
