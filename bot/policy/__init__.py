"""The policy file (breakglass.yml): who may ask for what, for how long, and who decides, and how.

``model`` holds the resources, levels and limits; ``approval`` how a request is decided (steps, reminders,
escalation, on-call, what may break the glass); ``loading`` reads the file and names every mistake by its key path.
"""

from bot.policy.approval import ApprovalStep, EmergencyTrigger, OnCallRule
from bot.policy.loading import interpolate, load_policy, parse_policy
from bot.policy.model import RESERVED_NAMES, Policy, PolicyError, Resource, label
from bot.policy.types import Duration

__all__ = [
    "RESERVED_NAMES",
    "ApprovalStep",
    "Duration",
    "EmergencyTrigger",
    "OnCallRule",
    "Policy",
    "PolicyError",
    "Resource",
    "interpolate",
    "label",
    "load_policy",
    "parse_policy",
]
