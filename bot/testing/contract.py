"""The contract every adapter passes, built-in or third-party, run against the real backend.

Subclass ``AdapterContract`` in a test module (name the subclass ``Test…``) and provide three fixtures:

- ``adapter``: the adapter under test, configured against a real backend with the bot's own credentials;
- ``wrong_credentials``: the same adapter configured with credentials the backend refuses;
- ``probe``: an ``AccessProbe`` that proves access by using it as the principal (log in and run a statement,
  call the API, bind to the directory), and prepares principals on the backend where the adapter needs them
  to exist already.

Add ``SessionsContract`` where the backend has sessions that outlive a check (database connections),
``BackendExpiryContract`` where the backend ends access by itself at expiry, and ``ExtendContract`` where the
adapter also moves that end when a grant is extended (``ExtendsExpiry``). Add ``ReconfiguredRevokeContract``
where the resource's params can change in a way that alters what a grant does (a mode, the roles or groups): it
needs a ``reconfigured`` fixture, an adapter for the same resource and backend built with the changed params, and
shows that a revoke follows the grant's receipt rather than the params now, so access granted under the old
params is gone after a revoke by the new ones. Every test here uses the backend for real; none can pass by the
adapter doing nothing.

Add ``OneLiveGrantContract`` to every adapter: it follows requests through the bot's own services (no Slack) to
show that no grant ends access another live grant still gives.

The expiry tests wait for the backend's own clock. A backend whose clock the test owns (a stand-in) overrides
the ``backend_time`` fixture with a ``ManualBackendTime``, and then time moves instead of passing.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest

from bot.adapters.base import (
    Adapter,
    AdapterError,
    ExtendsExpiry,
    GrantContext,
    Holding,
    Lists,
    Person,
    Receipt,
    Verifies,
)
from bot.clock import ManualClock
from bot.domain.rules import Refused
from bot.domain.states import Status
from bot.testing.services import CountingAdapter, Services, services


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


class StandingProbe(AccessProbe, Protocol):
    def give_standing(self, principal: str) -> None:
        """Give ``principal`` the resource's access by hand, the way an operator would outside the bot (a role
        granted directly, a group membership added in the console): standing access reconciliation must not touch."""
        ...


class SessionProbe(AccessProbe, Protocol):
    def open_session(self, ctx: GrantContext, receipt: Receipt) -> OpenSession:
        """A session opened as the principal while the grant is held."""
        ...


AWKWARD = 'o\'brien "x"; --'  # quotes, a space, a statement separator and a comment
# Backends told the end in whole seconds (rounded down, as the command and webhook protocols and the AWS policy
# carry it) may end access up to a second before expires_at, which is on the safe side.
EARLY_BY_AT_MOST = timedelta(seconds=1)


def grant_context(principal: str, expires_in: timedelta = timedelta(hours=1), **changes: Any) -> GrantContext:
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


class BackendTime:
    """The clock a backend decides expiry by. A real server keeps its own, so the tests wait for it."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def wait_until(self, moment: datetime) -> None:
        left = (moment - self.now()).total_seconds()
        if left > 0:
            time.sleep(left)

    def eventually(self, check: Callable[[], bool], within: float) -> bool:
        return _eventually(check, within)


class ManualBackendTime(BackendTime):
    """The clock of a backend the test owns (a stand-in that reads a ``ManualClock``): time moves, nothing sleeps."""

    def __init__(self, clock: ManualClock, step: timedelta = timedelta(seconds=0.25)) -> None:
        self.clock = clock
        self.step = step

    def now(self) -> datetime:
        return self.clock.now()

    def wait_until(self, moment: datetime) -> None:
        if moment > self.clock.now():
            self.clock.set(moment)

    def eventually(self, check: Callable[[], bool], within: float) -> bool:
        give_up = self.clock.now() + timedelta(seconds=within)
        while not check():
            if self.clock.now() >= give_up:
                return False
            self.clock.advance(self.step)
        return True


class _OnBackendTime:
    @pytest.fixture
    def backend_time(self) -> BackendTime:
        return BackendTime()


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


# A window the test's own work (grant, probe, extend) must fit in is tried again wider when that work overran it: on
# a busy machine the work takes longer, and a probe made after the end proves nothing either way.
WIDER = 3
WINDOWS = 3  # the configured window, then 3 and 9 times it, before a backend counts as too slow


def _scales() -> Iterator[int]:
    return (WIDER**n for n in range(WINDOWS))


class BackendExpiryContract(_OnBackendTime):
    """The backend itself ends access at ``expires_at``: no revoke is ever sent, as if the bot were down."""

    expiry_seconds: float = 2.0  # grant and probe must fit in it (tried wider if a busy machine overran it)
    expiry_tolerance: float = 30.0  # how long after expiry the backend may take (e.g. a scheduler's tick)

    @pytest.mark.slow
    def test_access_ends_at_expiry_with_the_bot_stopped(
        self, adapter: Adapter, probe: AccessProbe, backend_time: BackendTime
    ) -> None:
        if not any(self._ends_by_itself(adapter, probe, backend_time, self.expiry_seconds * n) for n in _scales()):
            pytest.fail(
                f"granting and probing took longer than expiry_seconds={self.expiry_seconds} times up to "
                f"{WIDER ** (WINDOWS - 1)}, so the test proves nothing; raise expiry_seconds for this backend"
            )

    def _ends_by_itself(self, adapter: Adapter, probe: AccessProbe, clock: BackendTime, window: float) -> bool:
        """Whether access ended at its expiry with no revoke; False if granting and probing overran ``window``."""
        ctx = grant_context(probe.principal(), expires_at=clock.now() + timedelta(seconds=window))
        receipt = adapter.grant(ctx)
        try:
            usable = probe.can_use(ctx, receipt)
            if not usable and clock.now() >= ctx.expires_at:
                return False
            assert usable, "the grant did not work before it expired"
            ended = clock.eventually(lambda: not probe.can_use(ctx, receipt), within=window + self.expiry_tolerance)
            assert ended, "the backend still honoured the grant after it expired"
            assert clock.now() >= ctx.expires_at - EARLY_BY_AT_MOST, "access ended before expiry"
            return True
        finally:
            adapter.revoke(ctx, receipt)


class ExtendContract(_OnBackendTime):
    """Extending a grant moves the end the backend enforces by itself (``ExtendsExpiry``): access outlives the old
    end and stops at the new one, with no revoke ever sent. Needs the ``wrong_credentials`` fixture too.

    ``extend`` gets the receipt as the bot stores it: ``data`` and ``instructions``, never ``credentials``. Mixed in
    with ``BackendExpiryContract``, the two share ``expiry_seconds`` and ``expiry_tolerance``.
    """

    expiry_seconds: float = 3.0  # the first window: grant, probe and two extends must fit in it
    extension_seconds: float = 3.0  # how much later the new end is: waiting out settle_seconds and a probe must fit
    settle_seconds: float = 0.5  # by when after an end this backend has acted on it (a scheduler's tick)
    expiry_tolerance: float = 30.0  # how long after the new end the backend may take to end access

    @pytest.mark.slow
    def test_an_extended_grant_outlives_its_first_end_and_stops_at_the_new_one(
        self, adapter: Adapter, probe: AccessProbe, backend_time: BackendTime
    ) -> None:
        if not any(self._outlives_first_end(adapter, probe, backend_time, scale) for scale in _scales()):
            pytest.fail(
                f"granting, probing and extending took longer than expiry_seconds={self.expiry_seconds}, or waiting "
                f"out the first end and probing longer than extension_seconds={self.extension_seconds}, even at "
                f"{WIDER ** (WINDOWS - 1)} times them, so the test proves nothing; raise them for this backend"
            )

    def _outlives_first_end(self, adapter: Adapter, probe: AccessProbe, clock: BackendTime, scale: int) -> bool:
        """Whether extended access outlived its first end and stopped at the new one; False if the test's own work
        overran the windows (``scale`` times the configured ones)."""
        first_end = clock.now() + timedelta(seconds=self.expiry_seconds * scale)
        ctx = grant_context(probe.principal(), expires_at=first_end)
        later = replace(ctx, expires_at=first_end + timedelta(seconds=self.extension_seconds * scale))
        receipt = adapter.grant(ctx)
        try:
            usable = probe.can_use(ctx, receipt)
            try:
                _extend(adapter, later, receipt)
                _extend(adapter, later, receipt)  # a retry after a timeout repeats the same extend
            except AdapterError:
                if clock.now() >= first_end:  # the backend may rightly refuse to extend what has ended
                    return False
                raise
            if clock.now() >= first_end:
                return False
            assert usable, "the grant did not work before its first end"

            clock.wait_until(first_end + timedelta(seconds=self.settle_seconds))
            outlived = probe.can_use(later, receipt)
            if not outlived and clock.now() >= later.expires_at:
                return False
            assert outlived, "access ended at the first end: extend did not move the end the backend enforces"

            left = (later.expires_at - clock.now()).total_seconds()
            ended = clock.eventually(lambda: not probe.can_use(later, receipt), within=left + self.expiry_tolerance)
            assert ended, "the backend still honoured the grant after its new end"
            assert clock.now() >= later.expires_at - EARLY_BY_AT_MOST, "access ended before the new end"
            return True
        finally:
            adapter.revoke(later, receipt)

    def test_extend_keeps_access_and_reveals_no_secret(
        self, adapter: Adapter, probe: AccessProbe, caplog: pytest.LogCaptureFixture
    ) -> None:
        assert isinstance(adapter, ExtendsExpiry), "the adapter has no extend(ctx, receipt)"
        ctx = grant_context(probe.principal())
        with caplog.at_level(logging.DEBUG):
            receipt = adapter.grant(ctx)
            later = replace(ctx, expires_at=ctx.expires_at + timedelta(hours=1))
            _extend(adapter, later, receipt)
            _extend(adapter, later, receipt)
        assert probe.can_use(later, receipt), "extend took the access away"
        _assert_no_secret(probe, caplog.text)
        if receipt.credentials:
            assert receipt.credentials not in caplog.text, "the one-time credentials leak into the log"
        adapter.revoke(later, receipt)
        assert not probe.can_use(later, receipt)

    def test_an_extend_with_wrong_credentials_fails_cleanly(
        self, adapter: Adapter, wrong_credentials: Adapter, probe: AccessProbe
    ) -> None:
        ctx = grant_context(probe.principal())
        receipt = adapter.grant(ctx)
        try:
            with pytest.raises(AdapterError) as failure:
                _extend(wrong_credentials, replace(ctx, expires_at=ctx.expires_at + timedelta(hours=1)), receipt)
            _assert_no_secret(probe, str(failure.value))
            assert probe.can_use(ctx, receipt), "a failed extend took the access away"
        finally:
            adapter.revoke(ctx, receipt)

    def test_extend_never_brings_revoked_access_back(self, adapter: Adapter, probe: AccessProbe) -> None:
        ctx = grant_context(probe.principal())
        receipt = adapter.grant(ctx)
        adapter.revoke(ctx, receipt)
        later = replace(ctx, expires_at=ctx.expires_at + timedelta(hours=1))
        try:
            with pytest.raises(AdapterError) as failure:  # saying so beats pretending: the end did not move
                _extend(adapter, later, receipt)
            assert not failure.value.retryable, "no retry can extend access that is gone"
            _assert_no_secret(probe, str(failure.value))
            assert not probe.can_use(later, receipt)
        finally:
            adapter.revoke(later, receipt)


class ReconfiguredRevokeContract:
    """The policy may change between grant and revoke: the revoke must take back what the receipt says was granted,
    not what the params say now. ``reconfigured`` is an adapter for the same resource and backend whose params differ
    where it matters (another mode, other roles); ``probe`` proves the access as ``adapter`` granted it.

    The revoke gets the receipt as the bot stores it: ``data`` and ``instructions``, never ``credentials``.
    """

    def test_a_revoke_after_the_params_changed_ends_what_was_granted(
        self, adapter: Adapter, reconfigured: Adapter, probe: AccessProbe
    ) -> None:
        ctx = grant_context(probe.principal())
        receipt = adapter.grant(ctx)
        try:
            assert probe.can_use(ctx, receipt), "the grant did not work, so the test proves nothing"
            _revoke(reconfigured, ctx, receipt)
            assert not probe.can_use(ctx, receipt), "the revoke followed the new params and left the access behind"
            _revoke(reconfigured, ctx, receipt)  # a retry after a timeout repeats the same revoke
            assert not probe.can_use(ctx, receipt)
        finally:
            adapter.revoke(ctx, receipt)


class VerifyContract:
    """``verify`` asks the backend, not the bot's memory: it agrees with what the principal can really do, before the
    grant, while it is held and after the revoke, and it never answers for another principal."""

    def test_verify_agrees_with_the_backend_before_during_and_after(self, adapter: Adapter, probe: AccessProbe) -> None:
        assert isinstance(adapter, Verifies), "the adapter has no verify(ctx, receipt)"
        ctx = grant_context(probe.principal())
        assert adapter.verify(ctx, Receipt()) is False
        receipt = adapter.grant(ctx)
        try:
            assert probe.can_use(ctx, receipt), "the grant did not work, so the test proves nothing"
            assert adapter.verify(ctx, _stored(receipt)) is True
        finally:
            adapter.revoke(ctx, _stored(receipt))
        assert not probe.can_use(ctx, receipt)
        assert adapter.verify(ctx, _stored(receipt)) is False

    def test_verify_answers_for_its_own_principal_only(self, adapter: Adapter, probe: AccessProbe) -> None:
        assert isinstance(adapter, Verifies)
        mine, theirs = grant_context(probe.principal()), grant_context(probe.principal())
        receipt = adapter.grant(mine)
        try:
            assert adapter.verify(theirs, Receipt()) is False
            assert adapter.verify(mine, _stored(receipt)) is True
        finally:
            adapter.revoke(mine, _stored(receipt))

    def test_verify_with_wrong_credentials_fails_cleanly(self, wrong_credentials: Adapter, probe: AccessProbe) -> None:
        assert isinstance(wrong_credentials, Verifies)
        with pytest.raises(AdapterError) as failure:  # "cannot tell" must never read as "access is gone"
            wrong_credentials.verify(grant_context(probe.principal()), Receipt())
        _assert_no_secret(probe, str(failure.value))


class ListsContract:
    """``holdings`` finds what the bot made on the backend, without the bot's records: a reconciliation revokes a
    holding with a new grant id and only the holding's ``data``, so that must be enough to end it."""

    def test_a_grant_is_listed_until_it_is_revoked(self, adapter: Adapter, probe: AccessProbe) -> None:
        assert isinstance(adapter, Lists), "the adapter has no holdings(everything)"
        ctx = grant_context(probe.principal())
        receipt = adapter.grant(ctx)
        try:
            found = _held_by(adapter, ctx.principal, everything=False)
            assert found is not None, "a grant the bot made is not listed"
            assert found.made_by_bot
            assert json.loads(json.dumps(found.data)) == found.data, "a holding's data must be plain JSON"
            _assert_no_secret(probe, json.dumps(found.data))
        finally:
            adapter.revoke(ctx, _stored(receipt))
        assert _held_by(adapter, ctx.principal, everything=False) is None
        assert _held_by(adapter, ctx.principal, everything=True) is None

    def test_a_holding_is_revoked_by_its_own_data(self, adapter: Adapter, probe: AccessProbe) -> None:
        assert isinstance(adapter, Lists)
        ctx = grant_context(probe.principal())
        receipt = adapter.grant(ctx)
        try:
            found = _held_by(adapter, ctx.principal, everything=False)
            assert found is not None
            stranger = grant_context(found.principal)  # reconciliation knows no grant id, only what it found
            adapter.revoke(stranger, Receipt(data=found.data))
            assert not probe.can_use(ctx, receipt)
            assert _held_by(adapter, ctx.principal, everything=False) is None
        finally:
            adapter.revoke(ctx, _stored(receipt))

    def test_a_holding_is_verified_by_its_own_data(self, adapter: Adapter, probe: AccessProbe) -> None:
        """Reconciliation confirms each revoke of a holding as the bot confirms every revoke: by asking, with only
        what the listing gave. An adapter that lists but cannot verify has its reconciliation revokes believed."""
        assert isinstance(adapter, Lists)
        if not isinstance(adapter, Verifies):
            pytest.skip("the adapter does not verify, so its revokes are believed unchecked")
        ctx = grant_context(probe.principal())
        receipt = adapter.grant(ctx)
        try:
            found = _held_by(adapter, ctx.principal, everything=False)
            assert found is not None
            stranger, held = grant_context(found.principal), Receipt(data=found.data)
            assert adapter.verify(stranger, held) is True
            adapter.revoke(stranger, held)
            assert adapter.verify(stranger, held) is False
        finally:
            adapter.revoke(ctx, _stored(receipt))

    def test_listing_with_wrong_credentials_fails_cleanly(self, wrong_credentials: Adapter, probe: AccessProbe) -> None:
        assert isinstance(wrong_credentials, Lists)
        with pytest.raises(AdapterError) as failure:  # an empty list would read as "nothing to take back"
            wrong_credentials.holdings(everything=False)
        _assert_no_secret(probe, str(failure.value))


class StandingAccessContract:
    """Access given by hand is standing access: listed only when the resource opts into ``reconcile: all``."""

    def test_standing_access_is_listed_only_when_everything_is_asked(
        self, adapter: Adapter, probe: StandingProbe
    ) -> None:
        assert isinstance(adapter, Lists)
        ctx = grant_context(probe.principal())
        probe.give_standing(ctx.principal)
        try:
            assert probe.can_use(ctx, Receipt()), "the standing access did not work, so the test proves nothing"
            assert _held_by(adapter, ctx.principal, everything=False) is None, "standing access looks bot-made"
            found = _held_by(adapter, ctx.principal, everything=True)
            assert found is not None and not found.made_by_bot
            adapter.revoke(grant_context(found.principal), Receipt(data=found.data))  # what `reconcile: all` does
            assert not probe.can_use(ctx, Receipt())
        finally:
            adapter.revoke(ctx, Receipt())


class OneLiveGrantContract(_OnBackendTime):
    """No grant ends access that another live grant still gives. Backends key a grant by principal and resource, so
    two live grants of the same access are one on the backend and the first revoke would end both; the bot keeps one
    live request per principal and resource (bot/domain/live.py). Checked through the bot's own services, with this
    adapter as the resource's backend and no Slack: a second request while one is live is refused and never reaches
    the backend, the first one's end really ends the access, the next request is granted for real, and whatever the
    bot shows as active the probe can use. Needs the ``adapter`` and ``probe`` fixtures of ``AdapterContract``.
    """

    @pytest.fixture
    def counted_adapter(self, adapter: Adapter) -> CountingAdapter:
        return CountingAdapter(adapter)

    @pytest.fixture
    def bot_services(
        self, counted_adapter: CountingAdapter, probe: AccessProbe, backend_time: BackendTime, tmp_path: Path
    ) -> Iterator[Services]:
        # The bot's clock starts at the backend's now, so expiries the backend enforces by itself are real ones.
        clock = ManualClock(backend_time.now())
        running = services(tmp_path, "contract", counted_adapter, probe.principal(), clock)  # type: ignore[arg-type]
        yield running
        for request_id in running.shown_active():  # whatever a failed assertion left behind
            running.revoke(request_id)
        running.close()

    def test_a_second_live_grant_is_refused_and_the_next_one_is_real(
        self, bot_services: Services, counted_adapter: CountingAdapter, probe: AccessProbe
    ) -> None:
        first = bot_services.approve(bot_services.ask("30m").id)
        assert first.status is Status.ACTIVE, f"the first grant did not happen: {first.failure}"
        ctx, receipt = bot_services.access_of(first.id)
        assert probe.can_use(ctx, receipt), "the grant did not work, so the test proves nothing"

        calls = list(counted_adapter.calls)
        for emergency in (False, True):
            with pytest.raises(Refused) as refused:
                bot_services.ask("2h", emergency=emergency)
            assert f"#{first.id}" in str(refused.value) and "/breakglass extend" in str(refused.value)
        assert counted_adapter.calls == calls, "a refused request reached the backend"
        assert bot_services.request_count() == 1
        assert probe.can_use(ctx, receipt)

        ended = bot_services.revoke(first.id)
        assert ended.status is Status.REVOKED
        assert not probe.can_use(ctx, receipt), "the revoke left the access behind"

        again = bot_services.approve(bot_services.ask("30m").id)
        assert again.status is Status.ACTIVE, f"the next grant did not happen: {again.failure}"
        assert bot_services.shown_active() == [again.id]
        for shown in bot_services.shown_active():  # what the bot shows as active is access the person really has
            assert probe.can_use(*bot_services.access_of(shown)), f"request #{shown} is shown active without access"

    def test_a_pending_request_does_not_reach_the_backend_twice(
        self, bot_services: Services, counted_adapter: CountingAdapter, probe: AccessProbe
    ) -> None:
        waiting = bot_services.ask("30m")
        with pytest.raises(Refused) as refused:
            bot_services.ask("1h")
        assert f"#{waiting.id}" in str(refused.value) and "waiting for approval" in str(refused.value)
        # An emergency replaces the waiting request instead of adding a second grant.
        emergency = bot_services.ask("30m", emergency=True)
        assert bot_services.status(waiting.id) is Status.CANCELLED
        assert emergency.status is Status.ACTIVE, f"the emergency grant did not happen: {emergency.failure}"
        assert counted_adapter.calls == ["grant"]
        assert bot_services.shown_active() == [emergency.id]
        assert probe.can_use(*bot_services.access_of(emergency.id))


def _held_by(adapter: Lists, principal: str, *, everything: bool) -> Holding | None:
    return next((h for h in adapter.holdings(everything=everything) if h.principal == principal), None)


def _stored(receipt: Receipt) -> Receipt:
    """The receipt as the bot stores it and hands it back: JSON ``data`` and ``instructions``, no credentials."""
    return Receipt(data=json.loads(json.dumps(receipt.data)), instructions=receipt.instructions)


def _revoke(adapter: Adapter, ctx: GrantContext, receipt: Receipt) -> None:
    adapter.revoke(ctx, _stored(receipt))


def _extend(adapter: Adapter, ctx: GrantContext, receipt: Receipt) -> None:
    """Call ``extend`` as the bot does: with the receipt as stored (JSON ``data``, no credentials)."""
    assert isinstance(adapter, ExtendsExpiry), "the adapter has no extend(ctx, receipt)"
    adapter.extend(ctx, _stored(receipt))


def _assert_no_secret(probe: AccessProbe, text: str) -> None:
    for secret in probe.secrets():
        assert secret not in text, "a secret leaked"
