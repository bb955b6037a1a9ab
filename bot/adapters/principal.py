"""Who a Slack user is on the backend: the principal.

A resource maps people either through a template over their Slack profile (``{email_local}``) or through an
explicit ``users:`` map from Slack user id to backend identity; the map wins where both are given. The name is
worked out once, when the request is made, and stored with it, so the revoke always targets the identity that
was granted even if the profile or the policy changes in between.

A person who cannot be mapped is refused at request time with a message that says why. What each backend then
accepts (an IAM user name, a Redis ACL user) is the adapter's own rule, through ``principal_problem``.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Mapping

from bot.adapters.base import Person

# Each field, and what a profile lacks when it is empty.
FIELDS: dict[str, str] = {
    "email": "email address",  # lower-cased
    "email_local": "email address",  # the part before '@', lower-cased
    "slack_id": "user id",
    "slack_name": "username",  # unique in the workspace, unlike display names
}
MAX_LENGTH = 128


class Unmappable(ValueError):
    """This person has no identity on this backend; the message says why and what to do."""


def template_problem(template: str) -> str | None:
    """What is wrong with a principal template, or None. Used when the policy is read."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as error:
        return f"not a valid template ({error})"
    fields = [(name, spec, conversion) for _, name, spec, conversion in parts if name is not None]
    if not fields:
        return f"the template uses no field; expected one of {_allowed()}"
    for name, spec, conversion in fields:
        if name not in FIELDS:
            return f"unknown field '{{{name}}}'; expected one of {_allowed()}"
        if spec or conversion:
            return f"'{{{name}}}' takes no format spec or conversion"
    return None


def _allowed() -> str:
    return ", ".join(f"{{{name}}}" for name in FIELDS)


def _values(person: Person) -> dict[str, str | None]:
    email = person.email.strip().lower() if person.email else None
    local = email.partition("@")[0] if email and "@" in email else None
    return {"email": email, "email_local": local, "slack_id": person.slack_id, "slack_name": person.handle}


def resolve(
    person: Person,
    *,
    resource: str,
    template: str | None,
    users: Mapping[str, str] | None,
    adapter: object | None = None,
) -> str:
    """The backend identity for ``person`` on ``resource``; Unmappable says why there is none."""
    if users and person.slack_id in users:
        principal = users[person.slack_id]
    elif template is None:
        raise Unmappable(
            f"{resource} only admits the people listed under its `users:` in the policy, and you are not one of "
            "them. Ask whoever keeps the policy to add you."
        )
    else:
        values = _values(person)
        missing = [name for _, name, _, _ in string.Formatter().parse(template) if name and not values.get(name)]
        if missing:
            raise Unmappable(
                f"{resource} names people by {template}, but your Slack profile has no {FIELDS[missing[0]]}. "
                "Ask whoever keeps "
                "the policy to add you under the resource's `users:`."
            )
        principal = template.format(**values)
    problem = _generic_problem(principal) or _adapter_problem(adapter, principal)
    if problem:
        raise Unmappable(f"Your identity on {resource} would be {_shown(principal)}, which it cannot use: {problem}.")
    return principal


def problem(adapter: object | None, principal: str) -> str | None:
    """Why ``principal`` cannot be an identity on the adapter's backend (a name given as is, a drill's), or None."""
    return _generic_problem(principal) or _adapter_problem(adapter, principal)


def _generic_problem(principal: str) -> str | None:
    if not principal:
        return "it is empty"
    if len(principal) > MAX_LENGTH:
        return f"it is longer than {MAX_LENGTH} characters"
    if any(unicodedata.category(char)[0] in "CZ" and char != " " for char in principal):
        return "it contains control characters or unusual spaces"
    return None


def _adapter_problem(adapter: object | None, principal: str) -> str | None:
    check = getattr(adapter, "principal_problem", None)
    return check(principal) if callable(check) else None


def _shown(principal: str) -> str:
    printable = "".join(char if char.isprintable() else "?" for char in principal[:64])
    # Shown in Slack: & < > would form mentions or links even inside code, and a backtick would end the code span.
    inert = printable.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("`", "'")
    return f"`{inert}`"


def for_resource(
    person: Person, resource: str, template: str | None, users: Mapping[str, str] | None, adapter: object
) -> str:
    """Apply a resource's mapping: its template, else (when it has no ``users:`` map) the adapter's default."""
    if template is None and not users:
        template = getattr(adapter, "default_principal", None) or "{slack_id}"
    return resolve(person, resource=resource, template=template, users=users, adapter=adapter)
