"""The dependencies of a command that acts while Slack is down: the database, the policy, the adapters and a clock, as
`serve` builds them (bot/runtime.py), with Slack left out.

Nothing here calls Slack, not even to check the token: what a change owes Slack is recorded in the outbox in the
change's own transaction (bot/services/tell.py) and stays there, since the courier is the do-nothing one; the bot
sends it once it runs with Slack answering. The directory cannot say who is in a user group, and says so
(``MembershipUnknown``) rather than answering "nobody", so nothing that needs membership is decided on a guess.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from bot.adapters import registry
from bot.adapters.base import Adapter, Person
from bot.clock import Clock
from bot.policy import parse_policy
from bot.policy.loading import read_policy_text
from bot.redaction import collect
from bot.services.activity_notes import ActivityNote
from bot.services.deps import Deps, Tuning, instance_name
from bot.services.policy_book import Loaded, PolicyBook, close_adapters, version_of
from bot.services.ports import MembershipUnknown, MessageRef, Notice, NotSent
from bot.services.snapshots import RequestView
from bot.settings import Settings, SettingsError
from bot.store import policy_versions, schema
from bot.store.chain import AuditSeal, ChainError, check_head
from bot.store.db import Database

log = logging.getLogger("breakglass.cli")

OFFLINE = "not sent from the command line: the bot sends what is owed when it next runs with Slack answering"


class NoSlack:
    """Notifier and Directory for a process that never talks to Slack."""

    def post_request(self, channel: str, view: RequestView, mark: str, *, alert: bool = False) -> MessageRef:
        raise NotSent(OFFLINE)

    def update_request(self, ref: MessageRef, view: RequestView, *, alert: bool = False) -> None:
        raise NotSent(OFFLINE)

    def tell_requester(self, view: RequestView, notice: Notice, mark: str) -> MessageRef:
        raise NotSent(OFFLINE)

    def tell_channel(self, channel: str, view: RequestView, notice: Notice, mark: str) -> MessageRef:
        raise NotSent(OFFLINE)

    def warn_refusals(
        self, channel: str, actor: str, count: int, window: timedelta, latest: str, mark: str
    ) -> MessageRef:
        raise NotSent(OFFLINE)

    def tell_reconciled(
        self, channel: str, resource: str, principal: str, found: str, mark: str, *, taken: bool = True
    ) -> MessageRef:
        raise NotSent(OFFLINE)

    def tell_activity(
        self, channel: str, thread_ts: str | None, view: RequestView, note: ActivityNote, mark: str
    ) -> MessageRef:
        raise NotSent(OFFLINE)

    def tell_drill(self, channel: str, report: dict[str, Any], mark: str) -> MessageRef:
        raise NotSent(OFFLINE)

    def tell_policy(self, channel: str, report: dict[str, Any], mark: str) -> MessageRef:
        raise NotSent(OFFLINE)

    def tell_audit_sink(self, channel: str, report: dict[str, Any], mark: str) -> MessageRef:
        raise NotSent(OFFLINE)

    def reply_in_thread(
        self, channel: str, thread_ts: str, view: RequestView, notice: Notice, note: dict[str, Any], mark: str
    ) -> MessageRef:
        raise NotSent(OFFLINE)

    def permalink(self, ref: MessageRef) -> str | None:
        return None

    def find(self, channel: str, mark: str, thread_ts: str | None = None) -> MessageRef | None:
        return None

    def send_credentials(self, view: RequestView, credentials: str) -> None:
        # Only a grant has credentials, and these commands grant nothing; never kept, so it could not wait anyway.
        log.warning("request %s: one-time credentials could not be sent without Slack", view.id)

    def person(self, user_id: str) -> Person:
        return Person(user_id)

    def members(self, group_ids: list[str]) -> frozenset[str]:
        raise MembershipUnknown("user groups cannot be read without Slack")

    def by_email(self, email: str) -> str | None:
        return None


class SchemaBehind(SettingsError):
    """The database is not at the schema this code expects (it would misread or fail on rows)."""


@contextmanager
def offline_deps(settings: Settings, environ: Mapping[str, str], clock: Clock, *, acting: bool) -> Iterator[Deps]:
    """Deps for one command. ``acting``: it changes the database and calls backends, so the adapters are built and
    the audit key is required and checked against the chain; a command that only reads needs neither."""
    text = read_policy_text(settings.policy_path)
    policy = parse_policy(text, source=str(settings.policy_path))
    adapters: dict[str, Adapter] = registry.build_all(policy, environ) if acting else {}
    seal = AuditSeal(*settings.audit_keys()) if acting else AuditSeal(None)
    db = Database.from_url(settings.database_url, seal)
    # A grant is revoked through the policy version it was made under, as the bot does (services/policy_book.py):
    # the file may have changed since, and its resource moved to another backend or gone.
    book, version = PolicyBook(db, environ), version_of(text)
    try:
        _check_schema(db)
        if acting:
            try:
                check_head(db.engine, db.seal)
            except ChainError as error:
                raise SettingsError(f"BREAKGLASS_AUDIT_KEY: {error}") from None
            with db.transaction() as session:  # a drill's request records it: the bot must be able to load it later
                policy_versions.remember(session, version, text, clock.now())
        book.add(Loaded(version, policy, adapters))
        slack = NoSlack()
        yield Deps(
            db=db,
            policy=policy,
            adapters=adapters,
            notifier=slack,
            directory=slack,
            clock=clock,
            tuning=Tuning(
                instance=f"cli:{instance_name()}",  # claims and heartbeats name the CLI, its host and pid
                lease=settings.lease,
                call_timeout=settings.backend_timeout,
                expiry_warning=settings.expiry_warning,
                revoke_alert_after=settings.revoke_alert_after,
            ),
            redactor=collect(settings, adapters, policy, environ),
            version=version,
            book=book,
        )
    finally:
        book.close(keep=version)  # older versions' adapters, built to revoke what was granted under them
        close_adapters(adapters)
        db.dispose()


def _check_schema(db: Database) -> None:
    quiet = logging.getLogger("alembic.runtime.migration")  # its INFO lines are for migrations, not for a look
    quiet.setLevel(max(quiet.getEffectiveLevel(), logging.WARNING))
    current, head = schema.current(db.engine), schema.head()
    if current is None:
        raise SchemaBehind("DATABASE_URL: the database has no Breakglass schema; is it the bot's database?")
    if current != head:
        raise SchemaBehind(
            f"DATABASE_URL: the database is at schema revision {current}, this breakglass expects {head}; run the "
            "breakglass version the bot runs, or `breakglass db upgrade`"
        )
