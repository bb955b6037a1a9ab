"""Runs an executable of yours to grant and revoke: for every backend Breakglass has no adapter for.

Each call starts the configured program (no shell) with one JSON object on stdin::

    {"event": "grant", "grant_id": "...", "request_number": 42, "resource": "orders-db", "level": "read",
     "principal": "zoe", "user": {"slack_id": "U123", "email": "...", "name": "...", "handle": "..."},
     "expires_at": "2026-01-01T10:00:00Z", "reason": "...", "emergency": false, "receipt": {}}

``level`` is the resource's access level asked for (``null`` for a resource without levels). ``event`` is ``grant``,
``revoke``, ``extend``, ``verify`` or ``check``; on revoke, extend and verify, ``receipt`` is
the ``data`` the grant returned. ``extend`` runs the optional ``extend`` program when a grant is extended, with the new
``expires_at``: it must make access last until then, wherever your grant program set an end on the backend.
Without an ``extend`` program, extending a grant of the resource fails (the bot cannot know whether your program
gave the backend an end of its own); a program that sets none can say so with ``extend: [true]``.
``verify`` runs the optional ``verify`` program, after every revoke and during reconciliation: it must ask the
backend whether ``principal`` still has the access and print ``{"active": true}`` or ``{"active": false}``. Access
still there fails the revoke (retried, shown, alerted); so does any other outcome (a non-zero exit, no such answer),
as "cannot tell" must never read as "gone". Without a ``verify`` program revokes are believed unchecked.
The exit status decides: 0 is success, 75 (EX_TEMPFAIL) is a failure worth retrying, anything else is a
refusal. On grant the program may print one JSON object on stdout: ``{"data": {...}, "instructions": "...",
"credentials": "..."}`` (``data`` is stored and handed back to revoke, so no secrets in it).

Grant and revoke must be idempotent, as for every adapter; the program runs with a clean environment (PATH,
LANG and the ``env`` you configure, which is where secrets go), in a process group of its own that is killed
whole when ``timeout`` runs out.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from typing import Any, ClassVar

from pydantic import Field, SecretStr, field_validator

from bot.adapters.base import AdapterError, AdapterParams, GrantContext, Receipt
from bot.redaction import Redactor

TEMPORARY_FAILURE = 75  # EX_TEMPFAIL from sysexits.h
MAX_OUTPUT = 64 * 1024
SAFE_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "TZ")


class CommandParams(AdapterParams):
    grant: list[str] = Field(min_length=1)
    revoke: list[str] = Field(min_length=1)
    extend: list[str] | None = None  # run when a grant is extended, with event "extend" and the new expires_at
    check: list[str] | None = None  # run by `breakglass check`, with event "check"
    verify: list[str] | None = None  # asks the backend whether a principal still has the access (event "verify")
    timeout: float = Field(default=15.0, gt=0, le=600)  # under BREAKGLASS_BACKEND_TIMEOUT
    env: dict[str, SecretStr] = Field(default_factory=dict)
    workdir: str | None = None

    @field_validator("grant", "revoke", "extend", "check", "verify")
    @classmethod
    def _program(cls, argv: list[str] | None) -> list[str] | None:
        if argv is not None and not argv[0].strip():
            raise ValueError("the first item is the program to run and must not be empty")
        return argv


class CommandAdapter:
    name: ClassVar[str] = "command"
    Params: ClassVar[type[AdapterParams]] = CommandParams

    def __init__(self, params: AdapterParams) -> None:
        assert isinstance(params, CommandParams)
        self.params = params
        # Every env value counts as a secret, a PGHOST beside the DATABASE_URL that contains it too. Blanking them
        # one after the other would break the DSN apart at its host and leave its password readable, so they are
        # blanked together, as the bot's own redactor does (and by its rules, so the two agree).
        self._redactor = Redactor(params.env.values())
        if params.verify is not None:
            # Only with a program to ask does this adapter Verify; the bot then believes no revoke unchecked.
            self.verify = self._verify

    def grant(self, ctx: GrantContext) -> Receipt:
        output = self._run("grant", self.params.grant, _payload("grant", ctx, {}))
        return _receipt(output)

    def revoke(self, ctx: GrantContext, receipt: Receipt) -> None:
        self._run("revoke", self.params.revoke, _payload("revoke", ctx, receipt.data))

    def extend(self, ctx: GrantContext, receipt: Receipt) -> None:
        if self.params.extend is None:
            raise AdapterError(
                f"command extend: resource {ctx.resource!r} has no `extend` program, so an end its grant program "
                "may have set on the backend cannot be moved (set params.extend; `[true]` if it sets no end)",
                retryable=False,
            )
        self._run("extend", self.params.extend, _payload("extend", ctx, receipt.data))

    def _verify(self, ctx: GrantContext, receipt: Receipt) -> bool:
        assert self.params.verify is not None
        output = self._run("verify", self.params.verify, _payload("verify", ctx, receipt.data))
        try:
            active = json.loads(output.decode(errors="replace")).get("active")
        except (ValueError, AttributeError):
            active = None
        if not isinstance(active, bool):
            raise AdapterError(
                f'command verify: {self.params.verify[0]} did not print {{"active": true|false}}', retryable=True
            )
        return active

    def check(self) -> list[str]:
        problems = []
        p = self.params
        argvs = [p.grant, p.revoke] + [argv for argv in (p.extend, p.check, p.verify) if argv]
        for argv in argvs:
            if shutil.which(argv[0], path=self._environment()["PATH"]) is None:
                problems.append(f"command: {argv[0]} is not an executable file here")
        if self.params.workdir and not os.path.isdir(self.params.workdir):
            problems.append(f"command: workdir {self.params.workdir} is not a directory")
        if problems or not self.params.check:
            return problems
        try:
            self._run("check", self.params.check, {"event": "check"})
        except AdapterError as error:
            problems.append(str(error))
        return problems

    def _environment(self) -> dict[str, str]:
        inherited = {name: os.environ[name] for name in SAFE_ENVIRONMENT if name in os.environ}
        inherited.setdefault("PATH", os.defpath)
        return inherited | {name: value.get_secret_value() for name, value in self.params.env.items()}

    def _run(self, event: str, argv: list[str], payload: dict[str, Any]) -> bytes:
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.params.workdir,
                env=self._environment(),
                start_new_session=True,  # its own process group, so a timeout kills its children too
            )
        except OSError as error:
            raise AdapterError(f"command {event}: cannot start {argv[0]} ({error.strerror})", retryable=False) from None
        try:
            out, err = process.communicate(json.dumps(payload).encode(), timeout=self.params.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise AdapterError(
                f"command {event}: {argv[0]} did not finish within {self.params.timeout:g}s and was stopped",
                retryable=True,
            ) from None
        if process.returncode != 0:
            why = self._last_line(err) or "no message on stderr"
            raise AdapterError(
                f"command {event}: {argv[0]} exited with status {process.returncode}: {why}",
                retryable=process.returncode == TEMPORARY_FAILURE or process.returncode < 0,
            )
        return out[:MAX_OUTPUT]

    def _last_line(self, stderr: bytes) -> str:
        # A program that echoes its secret must not leak it through us. The whole last line is blanked before it is
        # cut short: a secret cut in two no longer matches, and the half left may hold all of its password.
        text = stderr.rstrip()
        line = text[max(text.rfind(b"\n"), text.rfind(b"\r")) + 1 :].decode(errors="replace").strip()
        return self._redactor.scrub(line)[:300]


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()


def _payload(event: str, ctx: GrantContext, receipt: dict[str, Any]) -> dict[str, Any]:
    user = ctx.user
    return {
        "event": event,
        "grant_id": ctx.grant_id,
        "request_number": ctx.request_number,
        "resource": ctx.resource,
        "level": ctx.level,
        "principal": ctx.principal,
        "user": {"slack_id": user.slack_id, "email": user.email, "name": user.name, "handle": user.handle},
        "expires_at": ctx.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "reason": ctx.reason,
        "emergency": ctx.emergency,
        "receipt": receipt,
    }


def _receipt(stdout: bytes) -> Receipt:
    text = stdout.decode(errors="replace").strip()
    if not text:
        return Receipt()
    try:
        answer = json.loads(text)
    except ValueError:
        raise _doubtful("stdout is not the JSON object expected (or nothing)") from None
    if not isinstance(answer, dict):
        raise _doubtful("stdout must be a JSON object")
    data, instructions, credentials = answer.get("data", {}), answer.get("instructions"), answer.get("credentials")
    if not isinstance(data, dict) or not all(isinstance(v, str | None) for v in (instructions, credentials)):
        raise _doubtful("expected data to be an object and instructions/credentials to be strings")
    return Receipt(data=data, instructions=instructions, credentials=credentials)


def _doubtful(why: str) -> AdapterError:
    # The program exited 0, so it may well have granted: a retryable failure makes the bot revoke to be sure.
    return AdapterError(f"command grant: {why}", retryable=True)
