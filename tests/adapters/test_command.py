"""The command adapter, run against a real program: a little access gate that keeps one key file per principal.

``gate.py`` is the backend. Grant writes the principal's key file with its expiry, extend rewrites the expiry of a
key that is there, revoke deletes it, and ``gate.py use <principal>`` is the door: it opens only for a key that
exists and has not expired. So the door also shows a backend that ends access by itself, from the ``expires_at``
the adapter hands it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.adapters.base import Adapter, AdapterError, Receipt, Verifies
from bot.adapters.command import CommandAdapter, CommandParams
from bot.adapters.registry import build
from bot.policy import PolicyError
from bot.testing.contract import (
    AdapterContract,
    BackendExpiryContract,
    ExtendContract,
    OneLiveGrantContract,
    VerifyContract,
    grant_context,
)

SECRET = "gate-token-5f1e9b7c2d"

GATE = textwrap.dedent(
    """\
    import hashlib, json, os, sys, time
    from datetime import datetime

    keys = os.environ["GATE_DIR"]
    if os.environ.get("GATE_TOKEN") != "gate-token-5f1e9b7c2d":
        sys.exit("gate: bad token")

    def key_file(principal):
        return os.path.join(keys, hashlib.sha256(principal.encode()).hexdigest())

    if sys.argv[1:2] == ["use"]:
        try:
            with open(key_file(sys.argv[2])) as key:
                until = float(key.read())
        except FileNotFoundError:
            sys.exit(1)
        sys.exit(0 if time.time() < until else 1)

    event = json.load(sys.stdin)
    mode = os.environ.get("GATE_MODE", "")
    if mode == "flaky":
        print("gate: busy, try again", file=sys.stderr)
        sys.exit(75)
    if mode == "hang":
        time.sleep(60)
    if mode == "echo-secret":
        sys.exit("gate: refused with token " + os.environ["GATE_TOKEN"])
    if mode == "garbage" and event["event"] == "grant":
        print("granted!")
        sys.exit(0)
    if mode == "dump-env":
        print(json.dumps({"data": {"env": sorted(os.environ)}}))
        sys.exit(0)
    if event["event"] == "check":
        sys.exit(0)
    path = key_file(event["principal"])
    if event["event"] == "grant":
        until = datetime.fromisoformat(event["expires_at"].replace("Z", "+00:00")).timestamp()
        with open(path, "w") as key:
            key.write(str(until))
        print(json.dumps({"data": {"key": os.path.basename(path)}, "instructions": "Knock twice.",
                          "credentials": "knock-" + event["grant_id"][:8]}))
    elif event["event"] == "extend":
        if not os.path.exists(path):
            sys.exit("gate: no key to extend")
        until = datetime.fromisoformat(event["expires_at"].replace("Z", "+00:00")).timestamp()
        with open(path, "w") as key:
            key.write(str(until))
    elif event["event"] == "revoke":
        if os.path.exists(path) and mode != "ignore-revokes":
            os.remove(path)
    elif event["event"] == "verify":
        try:
            with open(path) as key:
                until = float(key.read())
        except FileNotFoundError:
            until = 0
        print(json.dumps({"active": time.time() < until}))
    """
)


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    script = tmp_path / "gate.py"
    script.write_text(GATE)
    (tmp_path / "keys").mkdir()
    return script


def gate_adapter(gate: Path, token: str = SECRET, mode: str = "", timeout: float = 10.0) -> CommandAdapter:
    argv = [sys.executable, str(gate)]
    env = {"GATE_DIR": str(gate.parent / "keys"), "GATE_TOKEN": token, "GATE_MODE": mode}
    return CommandAdapter(
        CommandParams(grant=argv, revoke=argv, extend=argv, check=argv, verify=argv, env=env, timeout=timeout)
    )


class GateProbe:
    def __init__(self, gate: Path) -> None:
        self.gate = gate

    def principal(self, hint: str = "") -> str:
        return f"{hint}user-{uuid.uuid4().hex[:8]}"

    def can_use(self, ctx, receipt: Receipt) -> bool:  # type: ignore[no-untyped-def]
        env = {"GATE_DIR": str(self.gate.parent / "keys"), "GATE_TOKEN": SECRET, "PATH": os.defpath}
        door = subprocess.run([sys.executable, str(self.gate), "use", ctx.principal], env=env, check=False)
        return door.returncode == 0

    def secrets(self) -> list[str]:
        return [SECRET]


class TestCommandContract(AdapterContract, BackendExpiryContract, ExtendContract, VerifyContract, OneLiveGrantContract):
    expiry_seconds = 4.0  # up to four Python start-ups (grant, probe, two extends) must fit on a loaded CI machine
    extension_seconds = 2.5  # one start-up (the probe after the first end) must fit
    settle_seconds = 0.2  # the door compares the time at every use
    expiry_tolerance = 5.0

    @pytest.fixture
    def adapter(self, gate: Path) -> Adapter:
        return gate_adapter(gate)

    @pytest.fixture
    def wrong_credentials(self, gate: Path) -> Adapter:
        return gate_adapter(gate, token="not-the-token")

    @pytest.fixture
    def probe(self, gate: Path) -> GateProbe:
        return GateProbe(gate)


def test_the_program_gets_the_grant_as_json_on_stdin(tmp_path: Path) -> None:
    capture = tmp_path / "seen.json"
    script = tmp_path / "capture.py"
    script.write_text(f"import sys; open({str(capture)!r}, 'w').write(sys.stdin.read())")
    adapter = CommandAdapter(CommandParams(grant=[sys.executable, str(script)], revoke=[sys.executable, str(script)]))
    ctx = grant_context("zoe", expires_in=timedelta(minutes=30))

    assert adapter.grant(ctx) == Receipt()
    seen = json.loads(capture.read_text())

    assert seen["event"] == "grant"
    assert seen["principal"] == "zoe"
    assert seen["grant_id"] == ctx.grant_id
    assert seen["expires_at"] == ctx.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert seen["user"] == {
        "slack_id": "U0CONTRACT",
        "email": "zoe@example.com",
        "name": "Zoë Contract",
        "handle": "zoe",
    }
    adapter.revoke(ctx, Receipt(data={"key": "k-1"}))
    seen = json.loads(capture.read_text())
    assert seen["event"] == "revoke" and seen["receipt"] == {"key": "k-1"}


def test_extend_runs_its_own_program_with_the_new_expiry(tmp_path: Path) -> None:
    capture = tmp_path / "seen.json"
    script = tmp_path / "capture.py"
    script.write_text(f"import sys; open({str(capture)!r}, 'w').write(sys.stdin.read())")
    other = [sys.executable, "-c", "raise SystemExit('not this one')"]
    adapter = CommandAdapter(CommandParams(grant=other, revoke=other, extend=[sys.executable, str(script)]))
    ctx = grant_context("zoe", expires_at=datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC))

    adapter.extend(ctx, Receipt(data={"key": "k-1"}))
    seen = json.loads(capture.read_text())

    assert seen["event"] == "extend"
    assert seen["expires_at"] == "2031-05-06T07:08:09Z"
    assert seen["receipt"] == {"key": "k-1"}
    assert seen["grant_id"] == ctx.grant_id and seen["principal"] == "zoe"


def test_without_an_extend_program_extending_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    touch = [sys.executable, "-c", f"open({str(ran)!r}, 'w')"]
    adapter = CommandAdapter(CommandParams(grant=touch, revoke=touch))
    with pytest.raises(AdapterError) as refused:
        adapter.extend(grant_context("zoe", resource="legacy-app"), Receipt())
    assert not refused.value.retryable
    assert "'legacy-app' has no `extend` program" in str(refused.value) and "params.extend" in str(refused.value)
    assert not ran.exists()


def test_a_refused_extend_is_final_and_a_busy_one_is_retried(gate: Path) -> None:
    with pytest.raises(AdapterError) as missing:  # the gate has no key for this principal: access has ended
        gate_adapter(gate).extend(grant_context("zoe"), Receipt())
    assert not missing.value.retryable and "gate: no key to extend" in str(missing.value)
    with pytest.raises(AdapterError) as busy:
        gate_adapter(gate, mode="flaky").extend(grant_context("zoe"), Receipt())
    assert busy.value.retryable


def test_the_receipt_comes_from_stdout_and_the_credentials_are_kept_apart(gate: Path) -> None:
    receipt = gate_adapter(gate).grant(grant_context("zoe"))
    assert receipt.instructions == "Knock twice."
    assert receipt.credentials and receipt.credentials.startswith("knock-")
    assert receipt.credentials not in json.dumps(receipt.data)


def test_exit_75_is_a_failure_worth_retrying_and_other_statuses_are_not(gate: Path) -> None:
    with pytest.raises(AdapterError) as busy:
        gate_adapter(gate, mode="flaky").grant(grant_context("zoe"))
    assert busy.value.retryable
    assert "exited with status 75: gate: busy, try again" in str(busy.value)

    with pytest.raises(AdapterError) as refused:
        gate_adapter(gate, token="wrong").grant(grant_context("zoe"))
    assert not refused.value.retryable
    assert "status 1: gate: bad token" in str(refused.value)


def test_a_program_that_hangs_is_stopped_with_its_children_and_the_failure_is_retryable(gate: Path) -> None:
    started = time.monotonic()
    with pytest.raises(AdapterError) as hung:
        gate_adapter(gate, mode="hang", timeout=0.5).grant(grant_context("zoe"))
    assert hung.value.retryable
    assert "did not finish within 0.5s" in str(hung.value)
    assert time.monotonic() - started < 30  # bounded, not the program's 60 s


def test_a_secret_the_program_echoes_is_not_repeated_in_the_error(gate: Path) -> None:
    with pytest.raises(AdapterError) as refused:
        gate_adapter(gate, mode="echo-secret").revoke(grant_context("zoe"), Receipt())
    assert SECRET not in str(refused.value)
    assert "[redacted]" in str(refused.value)


DSN = "postgresql://app:PW@db.internal/app"
CONNECT = "psql: cannot connect to "
DSN_FAILS = textwrap.dedent(
    """\
    import os, sys
    before, after = int(sys.argv[1]), int(sys.argv[2])
    sys.stderr.write("psql: cannot connect to " + "x" * before + os.environ["DATABASE_URL"] + "z" * after + "\\n")
    sys.exit(1)
    """
)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (0, 0),
        (300 - len(CONNECT) - len("postgresql://app:PW"), 0),  # the 300 characters shown end right after PW
        (0, 4096 - len("PW@db.internal/app") - 1),  # the last 4 KiB of stderr begin at PW
    ],
    ids=["whole-line", "cut-after-the-password", "line-longer-than-4k"],
)
def test_a_secret_that_contains_another_is_blanked_whole(tmp_path: Path, before: int, after: int) -> None:
    """PGHOST is a secret too, and sits inside DATABASE_URL: blanking the host first, or cutting the line first,
    used to leave the password in the error, and so in the stored failure, the audit trail and Slack."""
    script = tmp_path / "psql.py"
    script.write_text(DSN_FAILS)
    argv = [sys.executable, str(script), str(before), str(after)]
    adapter = CommandAdapter(CommandParams(grant=argv, revoke=argv, env={"PGHOST": "db.internal", "DATABASE_URL": DSN}))
    with pytest.raises(AdapterError) as refused:
        adapter.grant(grant_context("zoe"))
    message = str(refused.value)
    assert "PW" not in message and "db.internal" not in message and "app:" not in message
    assert f"status 1: {CONNECT}" in message and "[redacted]" in message


def test_garbage_on_stdout_after_success_is_a_doubtful_grant_the_bot_will_undo(gate: Path) -> None:
    with pytest.raises(AdapterError) as doubtful:
        gate_adapter(gate, mode="garbage").grant(grant_context("zoe"))
    assert doubtful.value.retryable  # the bot then revokes, as the program may have granted


def test_the_program_does_not_inherit_the_bots_environment(gate: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-must-not-leak")
    receipt = gate_adapter(gate, mode="dump-env").grant(grant_context("zoe"))
    assert "SLACK_BOT_TOKEN" not in receipt.data["env"]
    assert {"GATE_DIR", "GATE_TOKEN", "PATH"} <= set(receipt.data["env"])


def test_check_names_a_program_that_is_not_there(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.sh")
    adapter = CommandAdapter(CommandParams(grant=[missing], revoke=["true"]))
    assert adapter.check() == [f"command: {missing} is not an executable file here"]
    no_extend = CommandAdapter(CommandParams(grant=["true"], revoke=["true"], extend=[missing + "-extend"]))
    assert no_extend.check() == [f"command: {missing}-extend is not an executable file here"]
    with pytest.raises(AdapterError, match="cannot start"):
        adapter.grant(grant_context("zoe"))


def test_params_are_checked_when_the_policy_is_read() -> None:
    with pytest.raises(PolicyError, match=r"resources\.gate\.params\.grant: "):
        build("command", {"grant": [], "revoke": ["/bin/true"]}, "resources.gate", {})
    with pytest.raises(PolicyError, match=r"resources\.gate\.params\.env\.TOKEN: environment variable GATE_T"):
        build("command", {"grant": ["x"], "revoke": ["x"], "env": {"TOKEN": "${GATE_T}"}}, "resources.gate", {})
    adapter = build(
        "command", {"grant": ["x"], "revoke": ["x"], "env": {"TOKEN": "${GATE_T}"}}, "r", {"GATE_T": SECRET}
    )
    assert SECRET not in repr(adapter.params)  # type: ignore[attr-defined]


def test_a_revoke_that_exits_0_and_does_nothing_is_caught_by_verify(gate: Path) -> None:
    lazy = gate_adapter(gate, mode="ignore-revokes")
    ctx = grant_context("zoe")
    receipt = lazy.grant(ctx)
    lazy.revoke(ctx, receipt)  # "done", says the program
    assert GateProbe(gate).can_use(ctx, receipt)
    assert lazy.verify(ctx, receipt) is True  # type: ignore[attr-defined]
    gate_adapter(gate).revoke(ctx, receipt)
    assert lazy.verify(ctx, receipt) is False  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "program",
    [
        "",  # exits 0 and says nothing, as a grant program that does not know the event would
        "print('yes')",
        "import json; print(json.dumps({'active': 'no'}))",
        "import sys; sys.exit(3)",
    ],
    ids=["silent", "not-json", "not-a-boolean", "fails"],
)
def test_a_verify_that_cannot_tell_is_an_error_never_gone(tmp_path: Path, program: str) -> None:
    script = tmp_path / "verify.py"
    script.write_text(program)
    argv = [sys.executable, str(script)]
    adapter = CommandAdapter(CommandParams(grant=argv, revoke=argv, verify=argv))
    with pytest.raises(AdapterError):
        adapter.verify(grant_context("zoe"), Receipt())  # type: ignore[attr-defined]


def test_only_a_resource_with_a_verify_program_claims_to_verify(tmp_path: Path) -> None:
    assert not isinstance(CommandAdapter(CommandParams(grant=["x"], revoke=["x"])), Verifies)
    assert isinstance(CommandAdapter(CommandParams(grant=["x"], revoke=["x"], verify=["x"])), Verifies)
