"""The contract every adapter passes, built-in or third-party, run against the real backend.

Subclass ``AdapterContract`` in a test module (name the subclass ``Test…``) and provide three fixtures:

- ``adapter``: the adapter under test, configured against a real backend with the bot's own credentials;
- ``wrong_credentials``: the same adapter configured with credentials the backend refuses;
- ``probe``: an ``AccessProbe`` that proves access by using it as the principal (log in and run a statement,
  call the API, bind to the directory), and prepares principals on the backend where the adapter needs them
  to exist already.

Add ``SessionsContract`` where the backend has sessions that outlive a check (database connections), and
``BackendExpiryContract`` where the backend ends access by itself at expiry. Every test here uses the backend
for real; none can pass by the adapter doing nothing.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

import pytest

from bot.adapters.base import Adapter, AdapterError, GrantContext, Person, Receipt


class OpenSession(Protocol):
    def works(self) -> bool:
        """Whether the session can still do what the grant allows (False once the backend cut it off)."""
        ...

    def close(self) -> None: ...


class AccessProbe(Protocol):
    def principal(self, hint: str = "") -> str:
        """A fresh principal, made ready on the backend where the adapter needs it to exist (a login role, an IAM
        user, a directory entry). ``hint`` asks for awkward characters in the name; return it unchanged when the
        adapter would accept it."""
        ...

    def can_use(self, ctx: GrantContext, receipt: Receipt) -> bool:
        """Use the access as ``ctx.principal`` right now: True if the backend allowed what the grant allows."""
        ...

    def secrets(self) -> list[str]:
        """Values that must never appear in a receipt, an error or a check message."""
        ...


class SessionProbe(AccessProbe, Protocol):
    def open_session(self, ctx: GrantContext, receipt: Receipt) -> OpenSession:
        """A session opened as the principal while the grant is held."""
        ...


AWKWARD = 'o\'brien "x"; --'  # quotes, a space, a statement separator and a comment


def grant_context(principal: str, expires_in: timedelta = timedelta(hours=1), **changes: object) -> GrantContext:
    ctx = GrantContext(
        grant_id=str(uuid.uuid4()),
        request_number=4211,
        resource="contract",
        user=Person("U0CONTRACT", "zoe@example.com", "Zoë Contract", "zoe"),
        principal=principal,
        expires_at=datetime.now(UTC) + expires_in,
        reason="INC-4211 contract test",
    )
    return replace(ctx, **changes) if changes else ctx


def _eventually(check: Callable[[], bool], within: float, every: float = 0.25) -> bool:
    """Poll a backend whose own clock decides (we cannot move its time); True as soon as ``check`` is."""
    give_up = time.monotonic() + within
    while True:
        if check():
            return True
        if time.monotonic() >= give_up:
            return False
        time.sleep(every)


class AdapterContract:
    @pytest.fixture
    def granted(self, adapter: Adapter, probe: AccessProbe) -> Iterator[tuple[GrantContext, Receipt]]:
        ctx = grant_context(probe.principal())
        receipt = adapter.grant(ctx)
        yield ctx, receipt
        adapter.revoke(ctx, receipt)

    def test_check_passes_with_the_bots_credentials(self, adapter: Adapter) -> None:
        assert adapter.check() == []

    def test_check_names_wrong_credentials_without_revealing_them(
        self, wrong_credentials: Adapter, probe: AccessProbe
    ) -> None:
        problems = wrong_credentials.check()
        assert problems, "check() accepted credentials the backend refuses"
        assert all(isinstance(problem, str) and problem.strip() for problem in problems)
        _assert_no_secret(probe, " ".join(problems))

    def test_a_grant_with_wrong_credentials_fails_cleanly(self, wrong_credentials: Adapter, probe: AccessProbe) -> None:
        ctx = grant_context(probe.principal())
        with pytest.raises(AdapterError) as failure:
            wrong_credentials.grant(ctx)
        _assert_no_secret(probe, str(failure.value))
        assert not probe.can_use(ctx, Receipt())

    def test_there_is_no_access_before_the_grant(self, probe: AccessProbe) -> None:
        assert not probe.can_use(grant_context(probe.principal()), Receipt())

    def test_grant_makes_access_real(self, granted: tuple[GrantContext, Receipt], probe: AccessProbe) -> None:
        ctx, receipt = granted
        assert probe.can_use(ctx, receipt)

    def test_revoke_makes_access_gone(self, adapter: Adapter, probe: AccessProbe) -> None:
        ctx = grant_context(probe.principal())
        receipt = adapter.grant(ctx)
        assert probe.can_use(ctx, receipt)
        adapter.revoke(ctx, receipt)
        assert not probe.can_use(ctx, receipt)

    def test_granting_twice_is_safe_and_one_revoke_ends_it(self, adapter: Adapter, probe: AccessProbe) -> None:
        ctx = grant_context(probe.principal())
        first = adapter.grant(ctx)
        second = adapter.grant(ctx)  # a retry after a timeout repeats the same grant
        assert probe.can_use(ctx, second)
        adapter.revoke(ctx, second)
        assert not probe.can_use(ctx, first)
        assert not probe.can_use(ctx, second)

    def test_revoking_twice_is_safe(self, adapter: Adapter, probe: AccessProbe) -> None:
        ctx = grant_context(probe.principal())
        receipt = adapter.grant(ctx)
        adapter.revoke(ctx, receipt)
        adapter.revoke(ctx, receipt)
        assert not probe.can_use(ctx, receipt)

    def test_revoking_what_was_never_granted_succeeds(self, adapter: Adapter, probe: AccessProbe) -> None:
        ctx = grant_context(probe.principal())
        adapter.revoke(ctx, Receipt())  # e.g. a grant that timed out before it reached the backend
        assert not probe.can_use(ctx, Receipt())

    def test_a_revoke_touches_only_its_own_principal(self, adapter: Adapter, probe: AccessProbe) -> None:
        mine, theirs = grant_context(probe.principal()), grant_context(probe.principal())
        my_receipt, their_receipt = adapter.grant(mine), adapter.grant(theirs)
        adapter.revoke(mine, my_receipt)
        assert not probe.can_use(mine, my_receipt)
        assert probe.can_use(theirs, their_receipt)
        adapter.revoke(theirs, their_receipt)

    def test_an_awkward_principal_is_refused_or_granted_as_itself(self, adapter: Adapter, probe: AccessProbe) -> None:
        check = getattr(adapter, "principal_problem", None)
        if callable(check) and check(AWKWARD):
            return  # refused before any backend call, which is the adapter's other allowed answer
        ctx = grant_context(probe.principal(AWKWARD))
        receipt = adapter.grant(ctx)
        assert probe.can_use(ctx, receipt)
        adapter.revoke(ctx, receipt)
        assert not probe.can_use(ctx, receipt)

    def test_the_receipt_is_plain_json_without_secrets(
        self, granted: tuple[GrantContext, Receipt], probe: AccessProbe
    ) -> None:
        _, receipt = granted
        stored = json.dumps(receipt.data) + (receipt.instructions or "") + repr(receipt)
        _assert_no_secret(probe, stored)
        if receipt.credentials:
            assert receipt.credentials not in stored, "the one-time credentials leak into what is stored"


class SessionsContract:
    def test_revoke_ends_sessions_opened_while_access_was_held(self, adapter: Adapter, probe: SessionProbe) -> None:
        ctx = grant_context(probe.principal())
        receipt = adapter.grant(ctx)
        session = probe.open_session(ctx, receipt)
        try:
            assert session.works()
            adapter.revoke(ctx, receipt)
            assert not session.works()
        finally:
            session.close()


class BackendExpiryContract:
    """The backend itself ends access at ``expires_at``: no revoke is ever sent, as if the bot were down."""

    expiry_seconds: float = 2.0
    expiry_tolerance: float = 30.0  # how long after expiry the backend may take (e.g. a scheduler's tick)

    @pytest.mark.slow
    def test_access_ends_at_expiry_with_the_bot_stopped(self, adapter: Adapter, probe: AccessProbe) -> None:
        ctx = grant_context(probe.principal(), expires_in=timedelta(seconds=self.expiry_seconds))
        receipt = adapter.grant(ctx)
        try:
            usable = probe.can_use(ctx, receipt)
            assert usable or datetime.now(UTC) < ctx.expires_at, (
                f"granting and probing took longer than expiry_seconds={self.expiry_seconds}, so the test proves "
                "nothing; raise expiry_seconds for this backend"
            )
            assert usable, "the grant did not work before it expired"
            ended = _eventually(
                lambda: not probe.can_use(ctx, receipt), within=self.expiry_seconds + self.expiry_tolerance
            )
            assert ended, "the backend still honoured the grant after it expired"
            assert datetime.now(UTC) >= ctx.expires_at - timedelta(seconds=0.5), "access ended before expiry"
        finally:
            adapter.revoke(ctx, receipt)


def _assert_no_secret(probe: AccessProbe, text: str) -> None:
    for secret in probe.secrets():
        assert secret not in text, "a secret leaked"
