"""Reloading the policy file while the bot runs: on SIGHUP, and when the file changes.

A valid file takes effect for what is asked from then on: it is kept by version (the sha256 of its text), its
adapters are built, and the policy and adapters of the moment are swapped for them (``Deps.swap``). Live grants keep
the version they were made under (``Deps.adapter_for``), so a reload never sends a revoke to a backend the grant was
not made on. An invalid file is refused whole and the policy in force stays. The audit channel hears either way, and
the trail records ``policy_reloaded`` or ``policy_refused``. The same text again is no reload at all: a file touched
without a change, or one polled again after it was refused, says nothing.

Reloads run one at a time (a lock), never in a signal handler: SIGHUP only sets an event a thread of ours waits on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from bot.adapters import registry
from bot.domain.actions import AuditAction
from bot.oncall.settings import connect as connect_oncall
from bot.policy import Policy, PolicyError, parse_policy
from bot.redaction import adapter_secrets, referenced_secrets
from bot.services.deps import Deps
from bot.services.oncall import OnCallDesk
from bot.services.policy_book import Loaded, close_adapters, version_of
from bot.services.policy_check import check
from bot.sinks import build_all as build_sinks
from bot.store import audit, outbox, policy_versions

log = logging.getLogger("breakglass.policy")

_SECTIONS = ("channels", "defaults", "review", "oncall", "audit_sinks", "drills")
POLL_EVERY = 2.0  # seconds between looks at the file: a change takes effect within this, plus the reload itself


@dataclass(frozen=True)
class Outcome:
    outcome: Literal["reloaded", "refused", "unchanged", "settling"]
    source: str
    version: str | None = None
    previous: str | None = None
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    settings: list[str] = field(default_factory=list)  # top-level sections other than resources that changed
    problems: list[str] = field(default_factory=list)

    def to_data(self) -> dict[str, Any]:
        return asdict(self)


def differences(old: Policy, new: Policy) -> dict[str, list[str]]:
    """What a reload changes, by resource name (a resource changed if anything of it did, its levels included)."""
    before = {name: r.model_dump(mode="json") for name, r in old.resources.items()}
    after = {name: r.model_dump(mode="json") for name, r in new.resources.items()}
    return {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "changed": sorted(name for name in set(before) & set(after) if before[name] != after[name]),
        "settings": [s for s in _SECTIONS if _dump(getattr(old, s)) != _dump(getattr(new, s))],
    }


def _dump(section: Any) -> Any:
    if isinstance(section, list):
        return [_dump(item) for item in section]
    return section.model_dump(mode="json") if section is not None else None


class Reloader:
    """Reloads ``path`` into ``deps``. One per process; ``poll`` is a scheduler job, ``wanted`` the SIGHUP hand-off."""

    def __init__(self, deps: Deps, path: Path, environ: Mapping[str, str]) -> None:
        self.deps = deps
        self.path = path
        self.environ = environ
        self._lock = threading.Lock()
        self._refused: str | None = None  # the version last refused: polling it again tells nobody again
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen = self._stamp()  # the file as the last poll saw it: acted on once it holds still for a poll
        # Told (old, new) after a policy is taken, for what the process built from the old one (the audit sinks).
        self.followers: list[Callable[[Policy, Policy], None]] = []

    # -- triggers -------------------------------------------------------------------------------------------------

    def want(self) -> None:
        """Ask for a reload from a signal handler: sets an event and nothing else (no I/O, no lock of ours)."""
        self._wanted.set()

    def start(self) -> None:
        """The thread that reloads when ``want`` was called."""
        self._thread = threading.Thread(target=self._serve_wants, name="policy-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """No reload after this returns: one in flight is waited for, and later polls and SIGHUPs do nothing."""
        self._stopping.set()
        self._wanted.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._lock:
            pass

    def _serve_wants(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._stopping.is_set():
                return
            try:
                self.reload(asked=True)
            except Exception:  # a database outage, say: logged, and the next SIGHUP or change tries again
                log.exception("policy reload failed")

    def poll(self) -> Outcome:
        """The scheduler's job: reload if the file's text is not the policy in force (nor the one last refused).
        A file whose size or modification time moved since the last poll is left for the next one, so a file caught
        half-written by an editor is not refused (and announced) on its way to being valid. The text is hashed
        whatever the times say, so an edit that kept both is found too."""
        stamp = self._stamp()
        if stamp != self._seen:
            self._seen = stamp
            return Outcome("settling", str(self.path))
        outcome = self.reload(asked=False)
        self.retire()
        return outcome

    def _stamp(self) -> tuple[int, int] | None:
        try:
            status = self.path.stat()
        except OSError:
            return None
        return status.st_mtime_ns, status.st_size

    # -- the reload -----------------------------------------------------------------------------------------------

    def reload(self, *, asked: bool = True) -> Outcome:
        """Read the file and take it if it is valid. ``asked`` (SIGHUP): a file refused before is checked and
        reported again, since the operator asked; a poll stays quiet about it."""
        with self._lock:
            if self._stopping.is_set():
                return Outcome("unchanged", str(self.path), self.deps.version)
            return self._reload(asked)

    def _reload(self, asked: bool) -> Outcome:
        source = str(self.path)
        deps = self.deps
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as error:
            problem = f"{source}: cannot read the policy file ({error.strerror})"
            return self._refuse(source, None, [problem], quiet=not asked and self._refused == "unreadable")
        version = version_of(text)
        if version == deps.version:
            self._refused = None  # put back as it was: the next bad edit is news again
            return Outcome("unchanged", source, version)
        if version == self._refused and not asked:
            return Outcome("unchanged", source, version)
        try:
            policy = parse_policy(text, source=source)
            build_sinks(policy, self.environ)  # a webhook key not set refuses the file, as it stops start-up
            adapters = registry.build_all(policy, self.environ)
        except PolicyError as error:
            found = check(text, self.environ)
            problems = [f"{source}: {p}" for p in found.problems] or [str(error)]
            return self._refuse(source, version, problems)
        try:
            oncall = self._oncall(policy)
        except ValueError as error:
            close_adapters(adapters)
            return self._refuse(source, version, [f"{source}: {error}"])
        return self._take(source, version, text, policy, adapters, oncall)

    def _oncall(self, policy: Policy) -> OnCallDesk | Literal[False] | None:
        """The on-call desk for the new policy: False to keep the one there is (the section did not change)."""
        old = self.deps.policy.oncall
        if _dump(old) == _dump(policy.oncall):
            return False
        if policy.oncall is None:
            return None
        service = connect_oncall(policy.oncall, self.environ)  # ValueError names a variable that is missing
        return OnCallDesk(service, self.deps.directory, self.deps.clock)

    def _take(
        self,
        source: str,
        version: str,
        text: str,
        policy: Policy,
        adapters: dict[str, Any],
        oncall: OnCallDesk | Literal[False] | None,
    ) -> Outcome:
        deps = self.deps
        previous = deps.version
        changes = differences(deps.policy, policy)
        outcome = Outcome("reloaded", source, version, previous, problems=[], **changes)
        now = deps.now()
        # Secrets first: a failure text or log line about the new backends must already be scrubbed.
        deps.redactor.add(*(secret for _, secret in adapter_secrets(adapters)))
        deps.redactor.add(*(secret for _, secret in referenced_secrets(policy, self.environ)))
        with deps.db.transaction() as session:
            policy_versions.remember(session, version, text, now)
        old = deps.policy
        deps.swap(Loaded(version, policy, adapters))
        if oncall is not False:
            deps.oncall = oncall
        for follow in self.followers:
            try:
                follow(old, policy)
            except Exception:  # the policy is in force; what follows it is logged and set right by the next reload
                log.exception("after the policy reload, %s failed", getattr(follow, "__name__", "a follower"))
        with deps.db.transaction() as session:
            audit.record(
                session,
                AuditAction.POLICY_RELOADED,
                at=now,
                version=version,
                previous=previous,
                instance=deps.tuning.instance,
                added=changes["added"],
                removed=changes["removed"],
                changed=changes["changed"],
                settings=changes["settings"],
            )
            outbox.owe(session, now, outbox.Kind.POLICY, channel=policy.channels.audit, payload=outcome.to_data())
        deps.courier.deliver(None)
        self._refused = None
        log.info("policy reloaded from %s (version %s): %s", source, version[:12], changes)
        return outcome

    def _refuse(self, source: str, version: str | None, problems: list[str], quiet: bool = False) -> Outcome:
        deps = self.deps
        problems = [deps.redactor.scrub(problem) for problem in problems]
        outcome = Outcome("refused", source, version, deps.version, problems=problems)
        if quiet:
            return outcome
        self._refused = version or "unreadable"
        now = deps.now()
        with deps.db.transaction() as session:
            audit.record(
                session,
                AuditAction.POLICY_REFUSED,
                at=now,
                version=version,
                kept=deps.version,
                instance=deps.tuning.instance,
                problems=problems,
            )
            channel = deps.policy.channels.audit  # the policy in force says where the audit channel is
            outbox.owe(session, now, outbox.Kind.POLICY, channel=channel, payload=outcome.to_data())
        deps.courier.deliver(None)
        log.error("policy reload refused, the policy in force stays: %s", "; ".join(problems))
        return outcome

    def retire(self) -> list[str]:
        """Close the adapters of versions no request needs any more (the one in force is always kept)."""
        book = self.deps.book
        if book is None or len(book.versions()) <= 1:
            return []
        with self.deps.db.transaction() as session:
            needed = policy_versions.in_use(session)
        keep = needed | ({self.deps.version} if self.deps.version else set())
        retired = book.retire(keep)
        if retired:
            log.info("closed the adapters of policy versions %s", ", ".join(v[:12] for v in retired))
        return retired
