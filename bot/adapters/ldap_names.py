"""Distinguished names for the ldap adapter: checking them, comparing them, and reading a principal back from one.

RFC 4514 lets one DN be spelt many ways (``\\2C`` or ``\\,``, ``UID`` or ``uid``), and servers hand values back in their
own spelling, so what the adapter wrote is recognised by meaning, not by string. No LDAP calls here.
"""

from __future__ import annotations

import re
import string
import uuid

from ldap3.core.exceptions import LDAPInvalidDnError
from ldap3.utils.dn import parse_dn


def dn_problem(dn: str) -> str | None:
    try:
        parse_dn(dn)
    except LDAPInvalidDnError as error:
        return f"not a valid DN ({error}; RFC 4514: no spaces around commas)"
    return None


def user_dn_problem(template: str) -> str | None:
    """What is wrong with a ``user_dn`` template, or None: ``{principal}`` must be one whole RDN value."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as error:
        return f"not a valid template ({error})"
    fields = [(name, spec, conversion) for _, name, spec, conversion in parts if name is not None]
    if [name for name, _, _ in fields] != ["principal"]:
        return "must contain {principal} exactly once, and no other field"
    if fields[0][1] or fields[0][2]:
        return "{principal} takes no format spec or conversion"
    marker = f"P{uuid.uuid4().hex}"
    dn = template.format(principal=marker)
    problem = dn_problem(dn)
    if problem:
        return problem
    if not any(value == marker for _, value, _ in parse_dn(dn)):
        return "{principal} must be a whole attribute value, as in uid={principal},ou=people,dc=example,dc=org"
    return None


def unescape_dn_value(value: str) -> str:
    """An attribute value as written in a DN (RFC 4514 escapes, ``\\XX`` hex pairs included) back to its text."""
    raw, index = bytearray(), 0
    while index < len(value):
        if value[index] != "\\" or index + 1 == len(value):
            raw += value[index].encode()
            index += 1
        elif re.fullmatch(r"[0-9A-Fa-f]{2}", value[index + 1 : index + 3]):
            raw.append(int(value[index + 1 : index + 3], 16))
            index += 3
        else:
            raw += value[index + 1].encode()
            index += 2
    return raw.decode(errors="replace")


def _one_value(text: str) -> bool:
    """Whether ``text`` is one escaped attribute value: no unescaped ``,``, ``+`` or ``;`` starts another part."""
    index = 0
    while index < len(text):
        if text[index] == "\\":
            index += 2
        elif text[index] in ",+;":
            return False
        else:
            index += 1
    return True


def same_dn(one: str, other: str) -> bool:
    try:
        return [(t.casefold(), unescape_dn_value(v).casefold()) for t, v, _ in parse_dn(one)] == [
            (t.casefold(), unescape_dn_value(v).casefold()) for t, v, _ in parse_dn(other)
        ]
    except LDAPInvalidDnError:
        return one.casefold() == other.casefold()


class UserDn:
    """A valid ``user_dn`` template, read backwards: which principal a member's DN stands for."""

    def __init__(self, template: str) -> None:
        self.template = template
        self._marker = f"P{uuid.uuid4().hex}"
        self._before, _, self._after = template.format(principal=self._marker).partition(self._marker)

    def principal_in(self, dn: str) -> str | None:
        """The principal whose DN this is, or None when the template does not describe it."""
        # Most DNs come back spelt as the bot wrote them: a string match spares parsing a thousand DNs per listing.
        before, after = self._before, self._after
        if len(dn) > len(before) + len(after) and dn.startswith(before) and dn.endswith(after):
            middle = dn[len(before) : len(dn) - len(after)]
            if _one_value(middle):
                return unescape_dn_value(middle)
        try:
            template, actual = parse_dn(self.template.format(principal=self._marker)), parse_dn(dn)
        except LDAPInvalidDnError:
            return None
        if len(template) != len(actual):
            return None
        principal = None
        for (t_type, t_value, _), (a_type, a_value, _) in zip(template, actual, strict=True):
            if t_type.casefold() != a_type.casefold():
                return None
            if t_value == self._marker:
                principal = unescape_dn_value(a_value)
            elif unescape_dn_value(t_value).casefold() != unescape_dn_value(a_value).casefold():
                return None
        return principal
