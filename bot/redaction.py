"""Keeps the secrets the process knows out of everything it writes: logs, stored failure texts, Slack messages.

The secrets are the Slack tokens and signing secret, the audit keys, the database password, every ``SecretStr``
in every configured adapter's parameters (nested models, lists and dicts included), and the value of any
``${VAR}`` a resource's parameters name whose name says it is a secret (``*TOKEN*``, ``*SECRET*``, ``*PASSW*``,
``*KEY*``, ...), for secrets passed through plain fields such as a webhook's ``headers``.

Each secret is looked for as written and as it appears JSON-escaped or URL-encoded, and replaced by
``[redacted]``. How much of a secret must match depends on its length, so a short password cannot blank out
ordinary words all over the log:

- 8 characters or more: replaced wherever it appears, also inside longer words;
- 4 to 7 characters: replaced where it stands as a token of its own (not touching letters, digits or ``_``),
  as in ``password=hunter2`` or ``'hunter2'``, but not inside ``hunter22x``;
- under 4 characters: not redacted at all (it would match everywhere and protects nothing); `collect` logs a
  warning naming the setting, never the value.

Secrets that overlap (a host name inside a DSN, one secret's end that is another's start) are blanked together:
every character of every occurrence of every secret is covered, so no piece of a longer one is left behind.

Limits: a secret is only caught as a whole; a fragment of one, or one transformed otherwise (base64 in a Basic
auth header, hashed, split across records) is not recognised. Output that bypasses ``logging`` (a library
printing to stderr) is not filtered, and a handler added after `install` is not covered.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

from pydantic import BaseModel, SecretBytes, SecretStr
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from bot.policy import Policy
    from bot.settings import Settings

log = logging.getLogger("breakglass.redaction")

REDACTED = "[redacted]"
MIN_ANYWHERE = 8  # characters from which a secret is replaced even inside a longer word
MIN_TOKEN = 4  # characters from which a secret is replaced at all (as a token of its own)
_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSW|PASSPHRASE|KEY|CREDENTIAL|AUTH|PRIVATE", re.IGNORECASE)
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MAX_DEPTH = 12


class Redactor:
    """Replaces known secrets in text. Never shows them: its repr only counts them."""

    def __init__(self, secrets: Iterable[str | SecretStr | None] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*secrets)

    def add(self, *secrets: str | SecretStr | None) -> Redactor:
        for secret in secrets:
            value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
            if value and len(value) >= MIN_TOKEN:
                self._secrets.add(value)
        self._pattern = _compile(self._secrets)
        return self

    @property
    def secrets(self) -> frozenset[str]:
        """The values looked for (for tests that scan for leaks)."""
        return frozenset(self._secrets)

    def scrub(self, text: str) -> str:
        """``text`` with every known secret replaced by ``[redacted]``."""
        if self._pattern is None or not text:
            return text
        # A plain substitution resumes after each match, so a secret that began inside an earlier match (or
        # overlaps it) would keep its remainder: blank the union of all occurrences instead. The pattern is a
        # lookahead, tried at every position, and finds there the longest secret starting at it.
        pieces: list[str] = []
        done = start = end = 0
        for match in self._pattern.finditer(text):
            first, last = match.span(1)
            if first < end:  # overlaps the run being blanked: extend it
                end = max(end, last)
                continue
            if end:
                pieces += (text[done:start], REDACTED)
                done = end
            start, end = first, last
        if not end:
            return text
        pieces += (text[done:start], REDACTED, text[end:])
        return "".join(pieces)

    def scrub_data(self, value: Any) -> Any:
        """Strings anywhere in a JSON-like value scrubbed (keys included); other values as they are."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, Mapping):
            return {self.scrub_data(key): self.scrub_data(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub_data(item) for item in value]
        return value

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def __repr__(self) -> str:
        return f"Redactor({len(self._secrets)} secrets)"


def _variants(secret: str) -> set[str]:
    """How a secret looks written raw, inside JSON, or in a URL."""
    return {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
    }


def _compile(secrets: set[str]) -> re.Pattern[str] | None:
    alternatives: list[tuple[int, str]] = []
    for secret in secrets:
        for variant in _variants(secret):
            escaped = re.escape(variant)
            if len(secret) < MIN_ANYWHERE:
                escaped = rf"(?<![0-9A-Za-z_]){escaped}(?![0-9A-Za-z_])"
            alternatives.append((len(variant), escaped))
    if not alternatives:
        return None
    # Longest first, so at each position the whole of a secret that contains another is found.
    alternatives.sort(key=lambda item: -item[0])
    return re.compile("(?=(" + "|".join(dict.fromkeys(pattern for _, pattern in alternatives)) + "))")


# -- finding the secrets -----------------------------------------------------------------------------------------


def secret_values(value: Any, where: str = "", depth: int = 0) -> Iterator[tuple[str, str]]:
    """(where, secret) for every SecretStr or SecretBytes in ``value``, through models, mappings and sequences."""
    if depth > _MAX_DEPTH:
        return
    if isinstance(value, SecretStr):
        yield where, value.get_secret_value()
    elif isinstance(value, SecretBytes):
        yield where, value.get_secret_value().decode(errors="replace")
    elif isinstance(value, BaseModel):
        names = list(type(value).model_fields) + list(value.model_extra or {})
        for name in names:
            yield from secret_values(getattr(value, name, None), f"{where}.{name}".lstrip("."), depth + 1)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from secret_values(item, f"{where}.{key}".lstrip("."), depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            yield from secret_values(item, f"{where}[{index}]", depth + 1)


def settings_secrets(settings: Settings) -> Iterator[tuple[str, str]]:
    yield from secret_values(settings)
    previous = settings.audit_previous_keys.get_secret_value() if settings.audit_previous_keys else ""
    for index, key in enumerate(part.strip() for part in previous.split(",")):
        yield f"BREAKGLASS_AUDIT_PREVIOUS_KEYS[{index}]", key
    try:
        password = make_url(settings.database_url).password
    except Exception:  # a malformed URL fails elsewhere, with a message of its own
        password = None
    if password:
        yield "DATABASE_URL password", str(password)


def adapter_secrets(adapters: Mapping[str, object]) -> Iterator[tuple[str, str]]:
    """Every SecretStr an adapter holds in its attributes (its ``params`` above all)."""
    for resource, adapter in adapters.items():
        attributes = getattr(adapter, "__dict__", {})
        yield from secret_values(dict(attributes), f"resources.{resource}")


def referenced_secrets(policy: Policy, environ: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """The values of secret-sounding ``${VAR}`` references in resources' parameters, whatever field they fill."""
    for resource in policy.grantables():  # each level's params too: a level may name a secret of its own
        for text in _strings(resource.params):
            for name in _ENV_REFERENCE.findall(text):
                if _SECRET_NAME.search(name) and environ.get(name):
                    yield f"resources.{resource.label}.params ${{{name}}}", environ[name]
    if policy.oncall is not None:  # the on-call service's keys, by the variables the policy names
        for name in (policy.oncall.effective_token_env, policy.oncall.effective_routing_key_env):
            if name and environ.get(name):
                yield f"oncall ${name}", environ[name]
    from bot.policy.sinks import sink_secrets  # the audit webhooks' HMAC keys

    yield from sink_secrets(policy.audit_sinks, environ)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def collect(
    settings: Settings | None = None,
    adapters: Mapping[str, object] | None = None,
    policy: Policy | None = None,
    environ: Mapping[str, str] | None = None,
) -> Redactor:
    """A redactor for every secret the process knows; warns (by name) about the ones too short to redact."""
    found: list[tuple[str, str]] = []
    if settings is not None:
        found += settings_secrets(settings)
    if adapters:
        found += adapter_secrets(adapters)
    if policy is not None and environ is not None:
        found += referenced_secrets(policy, environ)
    for where in sorted({where for where, value in found if 0 < len(value) < MIN_TOKEN}):
        log.warning(
            "%s is shorter than %s characters: too short to redact from logs; use a longer one", where, MIN_TOKEN
        )
    return Redactor(value for _, value in found)


# -- logging -----------------------------------------------------------------------------------------------------


class RedactingFilter(logging.Filter):
    """Scrubs a record's final message, its arguments and its exception and stack text. Never drops a record."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        scrub = self.redactor.scrub
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: the handler reports it, quoting message and arguments
            record.msg, record.args = scrub(str(record.msg)), _scrub_args(record.args, scrub)
        else:
            clean = scrub(message)
            if clean != message:
                record.msg, record.args = clean, None
            elif record.args:
                record.args = _scrub_args(record.args, scrub)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            clean = scrub(record.exc_text)
            if clean != record.exc_text:
                # The exception object itself still quotes the secret: keep only its scrubbed text.
                record.exc_text, record.exc_info = clean, None
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def _scrub_args(args: Any, scrub: Callable[[str], str]) -> Any:
    if isinstance(args, Mapping):
        return {key: scrub(value) if isinstance(value, str) else value for key, value in args.items()}
    if isinstance(args, tuple):
        return tuple(scrub(value) if isinstance(value, str) else value for value in args)
    return args


def install(redactor: Redactor, logger: logging.Logger | None = None) -> Callable[[], None]:
    """Put a RedactingFilter on every handler of ``logger`` (the root logger by default); returns its undoing."""
    target = logger or logging.getLogger()
    redacting = RedactingFilter(redactor)
    handlers = list(target.handlers)
    for handler in handlers:
        handler.addFilter(redacting)

    def uninstall() -> None:
        for handler in handlers:
            handler.removeFilter(redacting)

    return uninstall


def log_uncaught() -> None:
    """Send uncaught exceptions (main thread and others) through logging, so their tracebacks are filtered too
    instead of going straight to stderr. For the `breakglass` command, not for code embedding the bot."""
    crash = logging.getLogger("breakglass")

    def main_thread(kind: type[BaseException], error: BaseException, trace: Any) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, error, trace)
            return
        crash.critical("uncaught %s", kind.__name__, exc_info=(kind, error, trace))

    def other_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread else "?"
        # Python allows a hook call without an exception value; then there is no traceback to show.
        exc_info = (args.exc_type, args.exc_value, args.exc_traceback) if args.exc_value is not None else None
        crash.error("uncaught %s in thread %s", args.exc_type.__name__, name, exc_info=exc_info)

    sys.excepthook = main_thread
    threading.excepthook = other_thread


# A password typed into a statement (`ALTER ROLE … PASSWORD '…'`, `IDENTIFIED BY '…'`, `SET PASSWORD = PASSWORD('…')`):
# captured activity is posted in Slack and kept, and a new password is its owner's alone, though no process knows it.
_GAP = r"(?:\s|/\*.*?\*/|--[^\n]*\n)*"  # whitespace and comments, which SQL allows between the keyword and the value
_PASSWORD_LITERAL = re.compile(
    rf"(\b(?:password|identified{_GAP}(?:with{_GAP}\S+{_GAP})?(?:by|as))\b(?:{_GAP}for{_GAP}\S+)?{_GAP}=?{_GAP}"
    rf"(?:(?:password{_GAP})?\({_GAP})?)"
    r"((?:[EeNn]|[Uu]&)?'(?:[^'\\]|''|\\.)*'|\"(?:[^\"\\]|\"\"|\\.)*\"|\$(\w*)\$.*?\$\3\$)",
    re.IGNORECASE | re.DOTALL,
)


def blank_password_literals(text: str) -> str:
    """``text`` with every quoted literal that follows a password keyword blanked (the keyword is kept)."""
    return _PASSWORD_LITERAL.sub(lambda match: f"{match.group(1)}'{REDACTED}'", text)
