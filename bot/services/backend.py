"""Calling a resource's backend: under a hard time limit, with failures made safe to store and show, and every revoke
checked with the backend before it is believed.

A revoke is confirmed only by the backend itself: where the adapter ``Verifies``, it is asked right after the revoke
returns whether the principal still has the access. "Still there" and "cannot tell" both leave the revoke
unconfirmed, so the request is retried and shown as failing, never settled as ended.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar

from bot.adapters import registry
from bot.adapters.base import Adapter, AdapterError, GrantContext, Receipt, Verifies
from bot.services.deadline import Overdue, call_within
from bot.services.deps import Deps
from bot.slots import blocking

log = logging.getLogger("breakglass.backend")
T = TypeVar("T")


def call_backend(deps: Deps, call: Callable[..., Any], *args: Any) -> Any:
    try:
        return within(deps, call, *args)
    except Overdue as overdue:
        raise AdapterError(f"the backend gave {overdue}", retryable=True) from None


def within(deps: Deps, call: Callable[..., T], *args: Any) -> T:
    """``call`` (an adapter's bound method) under the time limit, timed and counted: the one door every backend call
    goes through. Raises Overdue as ``call_within`` does, for callers that must know the call may still land."""
    started = time.perf_counter()
    outcome = "error"
    try:
        with blocking():  # post-ack work waiting on a backend gives its place to the next (bot/slots.py)
            result = call_within(deps.tuning.call_timeout, call, *args)
        outcome = "ok"
        return result
    except Overdue:
        outcome = "timeout"
        raise
    finally:
        step = getattr(call, "__name__", "call")
        deps.metrics.backend_call(adapter_kind(call), step, outcome, time.perf_counter() - started)


def adapter_kind(call: Callable[..., Any]) -> str:
    """The registry's name for the adapter behind a bound method (``postgres``, ``webhook``): a label with few values,
    unlike the resource, and the same for an adapter of a policy version since replaced."""
    owner = getattr(call, "__self__", None)
    if owner is None:
        return "unknown"
    return _registered_name(f"{type(owner).__module__}:{type(owner).__qualname__}")


@functools.cache
def _registered_name(path: str) -> str:
    for name, (target, _extra) in registry.BUILTIN.items():
        if target == path:
            return name
    for point in entry_points(group=registry.GROUP):
        if point.value == path:
            return point.name
    return "other"  # not installed under a name (a test's or a subclass): one value, not the class name


def revoke_confirmed(deps: Deps, adapter: Adapter, ctx: GrantContext, receipt: Receipt) -> None:
    """Revoke, then make sure: raises AdapterError unless the backend took the access away and, where it can be
    asked, says the principal no longer has it."""
    call_backend(deps, adapter.revoke, ctx, receipt)
    if not isinstance(adapter, Verifies):
        return
    try:
        still_there = call_backend(deps, adapter.verify, ctx, receipt)
    except AdapterError as error:
        raise AdapterError(
            f"the backend said revoked, but whether {ctx.principal} still has access could not be checked: {error}",
            retryable=True,
        ) from None
    if still_there is not False:  # anything but a plain "no" (an adapter bug answering None) is not a confirmation
        raise AdapterError(f"the backend said revoked but {ctx.principal} still has access", retryable=True)


def scrubbed(deps: Deps, error: AdapterError) -> AdapterError:
    """The error with every secret the process knows blanked out: its text is stored, audited and shown in Slack,
    and a backend's answer may quote a credential the adapter itself did not know to hide."""
    clean = deps.redactor.scrub(str(error))
    return error if clean == str(error) else AdapterError(clean, retryable=error.retryable)


def adapter_error(error: Exception) -> AdapterError:
    if isinstance(error, AdapterError):
        return error
    # An adapter bug: keep the type, not the text, which may carry connection strings or secrets.
    log.error("adapter raised %s", type(error).__name__, exc_info=error)
    return AdapterError(f"adapter failed unexpectedly ({type(error).__name__})", retryable=True)
