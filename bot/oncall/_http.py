"""One HTTP call to an on-call vendor, turned into JSON or ``OnCallUnavailable``.

What this module keeps true: every failure (connection, timeout, redirect, non-2xx, a body that is not JSON) is
one ``OnCallUnavailable`` whose text names the vendor, the method, the path and the status or the error's class,
and nothing else: never a header (the key), a query string or a response body (which could echo either).
"""

from __future__ import annotations

from typing import Any

import requests

from bot.oncall.base import OnCallUnavailable
from bot.slots import blocking


def call(
    session: requests.Session,
    vendor: str,
    method: str,
    url: str,
    shown_path: str,
    *,
    timeout: float,
    expect: tuple[int, ...] = (200,),
    params: list[tuple[str, str]] | None = None,
    json_body: dict[str, Any] | None = None,
) -> Any:
    """The decoded JSON body of the answer. ``shown_path`` is what an error says: the path, never its query."""
    where = f"{vendor} {method} {shown_path}"
    try:
        # No redirects: following one to another host could hand it the key, and the vendors' APIs do not redirect.
        with blocking():  # post-ack work waiting on the pager gives its place to the next (bot/slots.py)
            answer = session.request(method, url, params=params, json=json_body, timeout=timeout, allow_redirects=False)
    except requests.RequestException as error:
        # The exception's text has the full URL; only its class is said. "from None": a logged traceback of the
        # cause would show that URL too.
        raise OnCallUnavailable(f"{where}: {type(error).__name__}") from None
    if answer.status_code not in expect:
        raise OnCallUnavailable(f"{where}: HTTP {answer.status_code}")
    try:
        return answer.json()
    except ValueError:
        raise OnCallUnavailable(f"{where}: the answer is not JSON") from None


def malformed(vendor: str, method: str, shown_path: str, what: str) -> OnCallUnavailable:
    """The error for an answer that is JSON but not shaped as the vendor documents."""
    return OnCallUnavailable(f"{vendor} {method} {shown_path}: unexpected answer ({what})")


def field(value: Any, kind: type, vendor: str, method: str, shown_path: str, what: str) -> Any:
    """``value`` if it is a ``kind``, else the malformed-answer error naming ``what`` was expected."""
    if not isinstance(value, kind):
        raise malformed(vendor, method, shown_path, f"{what} is not a {kind.__name__}")
    return value
