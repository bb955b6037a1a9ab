"""What the aws-iam adapter writes into IAM, and how it reads it back: names, policy documents, statement checks, tags.

Pure functions, no AWS calls: the params model checks statements with them when the policy file is read, and the
adapter uses them to name and stamp what it puts, and to recognise it again when it verifies and reconciles.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from bot.clock import as_utc

NAME_CHARS = re.compile(r"[A-Za-z0-9_+=,.@-]+")  # IAM's [\w+=,.@-], ASCII only
MAX_POLICY_NAME = 128
MAX_POLICY_SIZE = 2048  # IAM's limit for a user's inline policies, all of them together
VERSION = "2012-10-17"
EXPIRY_OPERATOR, EXPIRY_KEY = "DateLessThan", "aws:CurrentTime"
_STATEMENT_KEYS = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"}
GROUP_TAG_PREFIX = "breakglass-group:"
MAX_TAG_KEY = 128
_TAG_CHARS = re.compile(r"[\w.:/=+@-]+")  # what IAM takes in a tag key (spaces aside): no comma


def statement_problem(statement: Any) -> str | None:
    """What is wrong with one identity-policy statement, starting with the key at fault; None when fine."""
    if not isinstance(statement, dict):
        return "must be a mapping with Effect, Action and Resource"
    unknown = sorted(str(key) for key in statement if key not in _STATEMENT_KEYS)
    if unknown:
        return f"{unknown[0]}: not a key of an IAM user policy statement ({', '.join(sorted(_STATEMENT_KEYS))})"
    if statement.get("Effect") not in ("Allow", "Deny"):
        return 'Effect: must be "Allow" or "Deny"'
    for key, negated in (("Action", "NotAction"), ("Resource", "NotResource")):
        if (key in statement) == (negated in statement):
            return f"{key}: give exactly one of {key} or {negated}"
        name = key if key in statement else negated
        if not _strings(statement[name]):
            return f"{name}: must be a non-empty string or a list of them"
    return _condition_problem(statement.get("Condition", {}))


def _strings(value: Any) -> bool:
    items = value if isinstance(value, list) else [value]
    return bool(items) and all(isinstance(item, str) and item.strip() for item in items)


def _condition_problem(condition: Any) -> str | None:
    if not isinstance(condition, dict) or not all(isinstance(keys, dict) for keys in condition.values()):
        return "Condition: must map operators to {key: value} mappings"
    if any(key.lower() == EXPIRY_KEY.lower() for key in condition.get(EXPIRY_OPERATOR, {})):
        return f"Condition: {EXPIRY_OPERATOR} {EXPIRY_KEY} is set by the adapter to the grant's expiry"
    return None


def policy_name(prefix: str, grant_id: str) -> str:
    """``<prefix><grant_id>``, or a digest of the grant id where that would not be a valid policy name."""
    name = prefix + grant_id
    if NAME_CHARS.fullmatch(name) and len(name) <= MAX_POLICY_NAME:
        return name
    digest = hashlib.sha256(grant_id.encode()).hexdigest()
    return f"{prefix}h{digest[: MAX_POLICY_NAME - len(prefix) - 1]}"


def expiry_stamp(expires_at: datetime) -> str:
    # Whole seconds, rounded down: AWS stops honouring the policy at or just before expires_at, never after.
    return as_utc(expires_at).strftime("%Y-%m-%dT%H:%M:%SZ")


def group_tag(group: str) -> str:
    """The user tag that marks a membership of ``group`` as the bot's: tag keys take no comma and 128 characters."""
    key = GROUP_TAG_PREFIX + group
    if _TAG_CHARS.fullmatch(key) and len(key) <= MAX_TAG_KEY:
        return key
    return f"{GROUP_TAG_PREFIX}h{hashlib.sha256(group.encode()).hexdigest()[:64]}"


def without_expiry(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The statements as configured: the expiry condition the adapter merged in taken out again."""
    plain = []
    for statement in statements:
        statement = copy.deepcopy(statement)
        conditions = statement.get("Condition")
        if isinstance(conditions, dict):
            dates = conditions.get(EXPIRY_OPERATOR)
            if isinstance(dates, dict):
                dates.pop(EXPIRY_KEY, None)
                if not dates:
                    del conditions[EXPIRY_OPERATOR]
            if not conditions:
                del statement["Condition"]
        plain.append(statement)
    return plain


def canonical(statements: list[dict[str, Any]]) -> str:
    return json.dumps(without_expiry(statements), sort_keys=True)


def policy_document(statements: list[dict[str, Any]], expires_at: datetime) -> str:
    """The inline policy: the statements, each also conditional on the current time being before expiry."""
    stamped = []
    for statement in statements:
        conditions = copy.deepcopy(statement.get("Condition", {}))
        conditions.setdefault(EXPIRY_OPERATOR, {})[EXPIRY_KEY] = expiry_stamp(expires_at)
        stamped.append({**copy.deepcopy(statement), "Condition": conditions})
    return json.dumps({"Version": VERSION, "Statement": stamped}, separators=(",", ":"))


def statements_of(document: Any) -> list[dict[str, Any]] | None:
    """The statements of a stored policy document (boto3 hands it back parsed; JSON text is read too)."""
    if isinstance(document, str):
        try:
            document = json.loads(unquote(document))
        except ValueError:
            return None
    statements = document.get("Statement") if isinstance(document, dict) else None
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements or not all(isinstance(s, dict) for s in statements):
        return None
    return statements
