"""Policy versions in memory: the policy of the moment, and the ones live grants were made under.

A request records the version of the policy it was made under (the sha256 of the file's raw text, kept in
``policy_versions``). Whatever happens to it later on the backend (grant, revoke, expiry, extension, the review it
owes, capture) goes through that version's resource and adapter, so a reload that moved a database to another host or
removed a resource cannot send a revoke to the wrong place. An old version is rebuilt from its stored text when first
needed (after a restart), with the environment of the moment for its ``${VAR}``s, and its adapters are closed once no
request still needs them.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import yaml

from bot.adapters import registry
from bot.adapters.base import Adapter
from bot.policy import Policy, PolicyError, parse_policy
from bot.store import policy_versions
from bot.store.db import Database

log = logging.getLogger("breakglass.policy")


def version_of(text: str) -> str:
    """A policy's version: the sha256 of its raw text, before ``${VAR}`` interpolation (so it names no secret)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Loaded:
    """One policy version with the adapters built from it: always swapped, kept and retired together."""

    version: str
    policy: Policy
    adapters: Mapping[str, Adapter]


def close_adapters(adapters: Mapping[str, Adapter]) -> None:
    for adapter in adapters.values():
        close = getattr(adapter, "close", None)
        if callable(close):
            try:
                close()
            except Exception as error:  # one adapter's close must not keep the others open
                log.warning("closing an adapter failed (%s)", type(error).__name__)


class PolicyBook:
    """The versions this process knows, by version. Thread-safe: a sweep thread may ask for an old version while a
    reload adds a new one."""

    def __init__(
        self,
        db: Database,
        environ: Mapping[str, str],
        build: Callable[[Policy, Mapping[str, str]], dict[str, Adapter]] = registry.build_all,
    ) -> None:
        self._db = db
        self._environ = environ
        self._build = build
        self._lock = threading.Lock()
        self._known: dict[str, Loaded] = {}
        # The version of every policy object still in use somewhere, retired or not: a use case that read the policy
        # before a reload retired it must still record the version it checked (services/requests.py). Weak, so an
        # old policy goes once the last use case holding it is done; keyed by id, since a policy is not hashable.
        self._made: dict[int, tuple[weakref.ref[Policy], str]] = {}

    def add(self, loaded: Loaded) -> None:
        with self._lock:
            self._known.setdefault(loaded.version, loaded)
            # Noted even when the version is known already (a policy put back while a grant under it lives): this
            # object is the one the use cases will now read, and the one whose version they must record.
            self._note(loaded)

    def _note(self, loaded: Loaded) -> None:
        key = id(loaded.policy)

        def forget(ref: weakref.ref[Policy], key: int = key) -> None:
            # Called as the policy is freed, maybe inside our own lock: no lock here, and a single dict operation.
            if self._made.get(key, (None, ""))[0] is ref:
                self._made.pop(key, None)

        self._made[key] = (weakref.ref(loaded.policy, forget), loaded.version)

    def get(self, version: str) -> Loaded | None:
        """The version's policy and adapters; rebuilt from the stored text when this process has not loaded it. None
        when it cannot be: never stored, or its adapters no longer build (a ``${VAR}`` gone from the environment)."""
        with self._lock:
            found = self._known.get(version)
        if found is not None:
            return found
        with self._db.transaction() as session:
            text = policy_versions.text_of(session, version)
        if text is None:
            log.error("policy version %s is not stored; its requests cannot reach their backend", version[:12])
            return None
        try:
            policy = _reparse(text, version)
            adapters = self._build(policy, self._environ)
        except PolicyError as error:
            log.error("policy version %s no longer loads: %s", version[:12], error)
            return None
        rebuilt = Loaded(version, policy, adapters)
        with self._lock:
            kept = self._known.setdefault(version, rebuilt)
            self._note(kept)
        if kept is not rebuilt:  # another thread rebuilt it meanwhile: one set of connections is enough
            close_adapters(adapters)
        return kept

    def version_of(self, policy: Policy) -> str | None:
        """The version of a policy object this book loaded (by identity: the object a use case read and checked), even
        one retired since the use case read it."""
        with self._lock:
            found = self._made.get(id(policy))
            return found[1] if found is not None and found[0]() is policy else None

    def retire(self, keep: set[str]) -> list[str]:
        """Forget the versions not in ``keep`` and close their adapters; returns the versions retired."""
        with self._lock:
            gone = [self._known.pop(v) for v in list(self._known) if v not in keep]
        for loaded in gone:
            close_adapters(loaded.adapters)
        return [loaded.version for loaded in gone]

    def close(self, keep: str | None = None) -> None:
        """At shutdown: close every version's adapters but ``keep``'s (the current one, closed by its owner)."""
        self.retire({keep} if keep else set())

    def versions(self) -> list[str]:
        with self._lock:
            return list(self._known)


# What a grant made under an old version never needs from it: its own run is over for those (a drill, a stream).
_NOT_FOR_GRANTS = ("drills", "audit_sinks")


def _reparse(text: str, version: str) -> Policy:
    """An old version, parsed again. This code's checks may have grown stricter than those the text passed when it was
    loaded (a drill schedule refused now, say); the revokes of its grants must not fail for that, so a text refused
    whole is tried again without the sections a grant never uses."""
    source = f"policy version {version[:12]}"
    try:
        return parse_policy(text, source=source)
    except PolicyError as strict:
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError:
            raise strict from None
        if not isinstance(document, dict) or not any(key in document for key in _NOT_FOR_GRANTS):
            raise
        for key in _NOT_FOR_GRANTS:
            document.pop(key, None)
        log.warning(
            "policy version %s: loaded without %s, as they no longer pass: %s", version[:12], _NOT_FOR_GRANTS, strict
        )
        return parse_policy(yaml.safe_dump(document, sort_keys=False), source=source)
