"""The redis adapter against a real Redis 7, as a bot user that has only the privileges the docs name."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from pydantic import ValidationError
from redis.backoff import NoBackoff
from redis.retry import Retry

from bot.adapters import registry
from bot.adapters.base import AdapterError, GrantContext, Receipt
from bot.adapters.redis_acl import RedisAdapter, RedisParams, retryable
from bot.devtools.ports import free_port
from bot.policy import PolicyError
from bot.testing.contract import (
    AWKWARD,
    AdapterContract,
    ListsContract,
    OneLiveGrantContract,
    SessionsContract,
    StandingAccessContract,
    VerifyContract,
    grant_context,
)
from tests.adapters.conftest import in_ci

RUN = uuid.uuid4().hex[:8]
PREFIX = f"bgt{RUN}-"  # every user the adapter makes here; the teardown deletes them all
BOT_USER = f"bgtbot{RUN}"  # outside PREFIX, as the docs ask
BOT_PASSWORD = secrets.token_urlsafe(24)
WRONG_PASSWORD = "wrong-" + secrets.token_urlsafe(16)
# The documented minimum: getuser to verify a revoke, list for reconciliation.
BOT_RULES = ["+acl|setuser", "+acl|deluser", "+acl|whoami", "+acl|dryrun", "+acl|getuser", "+acl|list"]
ORDER_KEY, ORDER_VALUE = f"orders:{RUN}", "order-42"
PAYMENT_KEY = f"payments:{RUN}"
RULES = ["~orders:*", "+get"]


def user_client(host: str, port: int, username: str, password: str) -> redis.Redis:
    return redis.Redis(
        host=host,
        port=port,
        username=username,
        password=password,
        socket_connect_timeout=2,
        socket_timeout=2,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        single_connection_client=True,
    )


@pytest.fixture(scope="module")
def server(redis_server_url: str) -> tuple[str, int]:
    parts = urlsplit(redis_server_url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


@pytest.fixture(scope="module")
def admin(redis_server_url: str) -> Iterator[redis.Redis]:
    """The test's own connection as the server's admin: sets up the bot user and keys, cleans up after."""
    client = redis.Redis.from_url(redis_server_url, decode_responses=True)
    client.set(ORDER_KEY, ORDER_VALUE)
    client.set(PAYMENT_KEY, "card-1")
    yield client
    ours = (PREFIX, BOT_USER, f"bgtweak{RUN}")
    leftovers = [user for user in client.execute_command("ACL", "USERS") if user.startswith(ours)]
    if leftovers:
        client.execute_command("ACL", "DELUSER", *leftovers)
    client.delete(ORDER_KEY, PAYMENT_KEY)
    client.close()


def make_bot_user(admin: redis.Redis, name: str, password: str, rules: list[str]) -> None:
    admin.execute_command("ACL", "SETUSER", name, "reset", "on", f">{password}", *rules)


@pytest.fixture(scope="module")
def bot_user(admin: redis.Redis) -> Iterator[str]:
    make_bot_user(admin, BOT_USER, BOT_PASSWORD, BOT_RULES)
    yield BOT_USER
    admin.execute_command("ACL", "DELUSER", BOT_USER)


def params(server: tuple[str, int], **changes: Any) -> RedisParams:
    host, port = server
    values = {"host": host, "port": port, "username": BOT_USER, "password": BOT_PASSWORD, "rules": RULES}
    return RedisParams(**{**values, "user_prefix": PREFIX, "connect_timeout": 2, "timeout": 2, **changes})


@pytest.fixture
def adapter(server: tuple[str, int], bot_user: str) -> RedisAdapter:
    return RedisAdapter(params(server))


@pytest.fixture
def wrong_credentials(server: tuple[str, int], bot_user: str) -> RedisAdapter:
    return RedisAdapter(params(server, password=WRONG_PASSWORD))


class Session:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def works(self) -> bool:
        # One connection and no retries: once the server has closed it, a GET fails instead of reconnecting.
        try:
            return self.client.get(ORDER_KEY) == ORDER_VALUE
        except (redis.ConnectionError, redis.exceptions.NoPermissionError):
            return False

    def close(self) -> None:
        self.client.close()


class RedisProbe:
    def __init__(self, adapter: RedisAdapter, server: tuple[str, int], admin: redis.Redis) -> None:
        self.adapter = adapter
        self.server = server
        self.admin = admin
        self.standing: dict[str, str] = {}  # principal -> password of a user an operator made by hand

    def principal(self, hint: str = "") -> str:
        return f"p{uuid.uuid4().hex[:10]}{hint}"  # Redis makes the user at grant time; nothing to prepare

    def give_standing(self, principal: str) -> None:
        """As an operator would: a user named after the person, outside the bot's prefix, with the same rules."""
        self.standing[principal] = secrets.token_urlsafe(16)
        make_bot_user(self.admin, principal, self.standing[principal], RULES)

    def connect(self, ctx: GrantContext, receipt: Receipt) -> redis.Redis:
        if not receipt.credentials and ctx.principal in self.standing:
            return user_client(*self.server, ctx.principal, self.standing[ctx.principal])
        password = receipt.credentials or "no-password-" + secrets.token_urlsafe(8)
        return user_client(*self.server, self.adapter.user_name(ctx.principal), password)

    def clean_up(self) -> None:
        if self.standing:
            self.admin.execute_command("ACL", "DELUSER", *self.standing)

    def can_use(self, ctx: GrantContext, receipt: Receipt) -> bool:
        try:
            client = self.connect(ctx, receipt)  # logs in at once: a single connection is made eagerly
        except redis.AuthenticationError:
            return False
        try:
            return client.get(ORDER_KEY) == ORDER_VALUE
        except redis.exceptions.NoPermissionError:
            return False
        finally:
            client.close()

    def open_session(self, ctx: GrantContext, receipt: Receipt) -> Session:
        session = Session(self.connect(ctx, receipt))
        assert session.works(), "could not open a session with the granted access"
        return session

    def secrets(self) -> list[str]:
        return [BOT_PASSWORD, WRONG_PASSWORD]


@pytest.fixture
def probe(adapter: RedisAdapter, server: tuple[str, int], admin: redis.Redis) -> Iterator[RedisProbe]:
    probe = RedisProbe(adapter, server, admin)
    yield probe
    probe.clean_up()


class TestRedisContract(
    AdapterContract, SessionsContract, VerifyContract, ListsContract, StandingAccessContract, OneLiveGrantContract
):
    pass


def user_exists(admin: redis.Redis, name: str) -> bool:
    return name in admin.execute_command("ACL", "USERS")


# Params and principals


@pytest.mark.parametrize(
    "rule",
    [
        ">secret-pw",
        "<secret-pw",
        "#" + "a" * 64,
        "!" + "a" * 64,
        "nopass",
        "on",
        "off",
        "reset",
        "resetpass",
        "allkeys x",
    ],
)
def test_rules_the_adapter_owns_are_refused_with_the_key_path(rule: str) -> None:
    raw = {"host": "127.0.0.1", "rules": ["~orders:*", rule]}
    with pytest.raises(PolicyError) as refused:
        registry.build("redis", raw, "resources.cache", {})
    assert str(refused.value).startswith("resources.cache.params.rules: rule 2 ")
    assert "secret-pw" not in str(refused.value)


@pytest.mark.parametrize(
    "rule", ["~orders:*", "%R~reports:*", "&news", "+get", "-@dangerous", "+client|list", "allkeys"]
)
def test_permission_rules_are_accepted(rule: str) -> None:
    assert RedisParams(host="127.0.0.1", rules=[rule]).rules == [rule]


@pytest.mark.parametrize(
    "changes",
    [
        {"rules": []},
        {"rules": ["(~x +get)"]},  # selectors are not supported
        {"user_prefix": ""},
        {"user_prefix": "bg "},
        {"username": "breakglass"},  # without a password Redis would log the bot in as "default"
        {"port": 0},
        {"timeout": 0},
    ],
)
def test_invalid_params_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RedisParams(**{"host": "127.0.0.1", "rules": RULES, **changes})


def test_principal_problems() -> None:
    adapter = RedisAdapter(RedisParams(host="h", username="bot", password="pw", rules=RULES, user_prefix="de"))
    assert adapter.principal_problem("zoe") is None
    assert adapter.principal_problem("o'brien;--") is None  # one argument of its own: nothing to escape
    assert "spaces" in (adapter.principal_problem(AWKWARD) or "")
    assert "spaces" in (adapter.principal_problem("zoe\tx") or "")
    assert "printable" in (adapter.principal_problem("zoe\u200bx") or "")
    assert "longer" in (adapter.principal_problem("z" * 127) or "")
    assert "does not manage" in (adapter.principal_problem("fault") or "")  # "de" + "fault"


BUSY = "BUSY Redis is busy running a {}. You can only call {} KILL or SHUTDOWN NOSAVE."
STALE = "Link with MASTER is down and replica-serve-stale-data is set to 'no'."


@pytest.mark.parametrize(
    ("error", "again"),
    [
        (redis.ResponseError(BUSY.format("script", "SCRIPT")), True),
        (redis.ResponseError(BUSY.format("function", "FUNCTION")), True),
        (redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"), True),
        (redis.exceptions.TryAgainError("Multiple keys request during rehashing of slot"), True),
        (redis.exceptions.MasterDownError(STALE), True),
        (redis.exceptions.ClusterDownError("The cluster is down"), True),
        (redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."), True),
        (redis.ConnectionError("max number of clients reached"), True),
        (redis.TimeoutError("Timeout reading from socket"), True),
        (redis.AuthenticationError("invalid username-password pair or user is disabled."), False),
        (redis.exceptions.NoPermissionError("this user has no permissions to run the 'acl|setuser' command"), False),
        (redis.ResponseError("ERR Error in ACL SETUSER modifier '+no-such-command': Unknown command"), False),
        (redis.exceptions.ReadOnlyError("You can't write against a read only replica."), False),
        (redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), False),
        (redis.ResponseError("ERR unknown subcommand 'BUSY'"), False),
    ],
)
def test_a_busy_or_unreachable_server_is_worth_retrying_and_a_refusal_is_not(
    error: redis.RedisError, again: bool
) -> None:
    assert retryable(error) is again


# Against the server


def test_the_rules_limit_the_user_to_their_keys(adapter: RedisAdapter, probe: RedisProbe, admin: redis.Redis) -> None:
    ctx = grant_context(probe.principal())
    receipt = adapter.grant(ctx)
    client = probe.connect(ctx, receipt)
    try:
        assert client.get(ORDER_KEY) == ORDER_VALUE
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.get(PAYMENT_KEY)
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set(ORDER_KEY, "changed")
    finally:
        client.close()
        adapter.revoke(ctx, receipt)
    assert not user_exists(admin, adapter.user_name(ctx.principal))


def test_a_second_grant_replaces_the_password(adapter: RedisAdapter, probe: RedisProbe) -> None:
    ctx = grant_context(probe.principal())
    first, second = adapter.grant(ctx), adapter.grant(ctx)
    try:
        assert first.credentials and second.credentials and first.credentials != second.credentials
        assert not probe.can_use(ctx, first)
        assert probe.can_use(ctx, second)
    finally:
        adapter.revoke(ctx, second)


def test_the_receipt_names_the_user_and_says_how_to_connect(adapter: RedisAdapter, server: tuple[str, int]) -> None:
    ctx = grant_context("zoe" + RUN)
    receipt = adapter.grant(ctx)
    try:
        name = PREFIX + ctx.principal
        assert receipt.data == {"user": name}
        assert f"redis-cli --user {name} -h {server[0]} -p {server[1]} --askpass" in (receipt.instructions or "")
        assert "sent to you privately" in (receipt.instructions or "")
        assert receipt.credentials and len(receipt.credentials) >= 32
        assert receipt.credentials not in (receipt.instructions or "") + repr(receipt)
    finally:
        adapter.revoke(ctx, receipt)


def test_revoke_uses_the_user_name_from_the_receipt(
    server: tuple[str, int], bot_user: str, probe: RedisProbe, admin: redis.Redis
) -> None:
    ctx = grant_context(probe.principal())
    receipt = RedisAdapter(params(server)).grant(ctx)
    RedisAdapter(params(server, user_prefix=PREFIX + "new-")).revoke(ctx, receipt)  # the policy changed since
    assert not user_exists(admin, PREFIX + ctx.principal)


def test_check_names_a_wrong_password_without_it(wrong_credentials: RedisAdapter, server: tuple[str, int]) -> None:
    [problem] = wrong_credentials.check()
    assert problem.startswith(f"redis at {server[0]}:{server[1]} refused the bot's login")
    assert WRONG_PASSWORD not in problem and BOT_PASSWORD not in problem
    with pytest.raises(AdapterError) as failed:
        wrong_credentials.revoke(grant_context("zoe"), Receipt())
    assert not failed.value.retryable


def test_check_and_grant_name_missing_privileges(
    server: tuple[str, int], admin: redis.Redis, probe: RedisProbe
) -> None:
    weak_user, weak_password = f"bgtweak{RUN}", secrets.token_urlsafe(16)
    make_bot_user(admin, weak_user, weak_password, ["+acl|whoami", "+acl|dryrun"])
    try:
        weak = RedisAdapter(params(server, username=weak_user, password=weak_password, acl_save=True))
        problems = weak.check()
        assert [problem.split(":")[0] for problem in problems] == [
            f"the bot's Redis user {weak_user} may not run ACL SETUSER",
            f"the bot's Redis user {weak_user} may not run ACL DELUSER",
            f"the bot's Redis user {weak_user} may not run ACL GETUSER",
            f"the bot's Redis user {weak_user} may not run ACL LIST",
            f"the bot's Redis user {weak_user} may not run ACL SAVE",
        ]
        ctx = grant_context(probe.principal())
        with pytest.raises(AdapterError) as refused:
            weak.grant(ctx)
        assert not refused.value.retryable and "did not let the bot create ACL user" in str(refused.value)
        assert not user_exists(admin, weak.user_name(ctx.principal))

        make_bot_user(admin, weak_user, weak_password, ["+acl|whoami"])
        assert weak.check() == [f"the bot's Redis user {weak_user} may not run ACL DRYRUN (grant it +acl|dryrun)"]
    finally:
        admin.execute_command("ACL", "DELUSER", weak_user)


def test_an_unreachable_server_is_retryable(bot_user: str) -> None:
    adapter = RedisAdapter(params(("127.0.0.1", free_port())))
    for call in (lambda: adapter.grant(grant_context("zoe")), lambda: adapter.revoke(grant_context("zoe"), Receipt())):
        with pytest.raises(AdapterError) as failed:
            call()
        assert failed.value.retryable and str(failed.value).startswith("cannot reach redis at 127.0.0.1:")
        assert BOT_PASSWORD not in str(failed.value)
    [problem] = adapter.check()
    assert problem.startswith("cannot reach redis at 127.0.0.1:")


def test_a_refused_rule_fails_the_grant_without_leaking(adapter: RedisAdapter, admin: redis.Redis) -> None:
    broken = RedisAdapter(adapter.params.model_copy(update={"rules": ["~orders:*", "+no-such-command"]}))
    ctx = grant_context("zoe" + RUN)
    with pytest.raises(AdapterError) as failed:
        broken.grant(ctx)
    assert not failed.value.retryable and "+no-such-command" in str(failed.value)
    assert BOT_PASSWORD not in str(failed.value)
    assert not user_exists(admin, broken.user_name(ctx.principal))


def test_acl_save_without_an_aclfile_fails_and_takes_the_user_back(
    server: tuple[str, int], admin: redis.Redis, probe: RedisProbe
) -> None:
    make_bot_user(admin, BOT_USER, BOT_PASSWORD, [*BOT_RULES, "+acl|save"])
    try:
        saving = RedisAdapter(params(server, acl_save=True))
        ctx = grant_context(probe.principal())
        with pytest.raises(AdapterError) as failed:
            saving.grant(ctx)
        assert not failed.value.retryable and "ACL file" in str(failed.value)
        assert not user_exists(admin, saving.user_name(ctx.principal))
    finally:
        make_bot_user(admin, BOT_USER, BOT_PASSWORD, BOT_RULES)


@contextmanager
def own_redis(tmp_path: Path, *options: str) -> Iterator[int]:
    """A redis-server of our own on a free loopback port, for what the shared one must not be changed for."""
    if shutil.which("redis-server") is None:
        if in_ci():
            pytest.fail("redis-server must be installed in CI", pytrace=False)
        pytest.skip("redis-server is not installed")
    port = free_port()
    listen = ["--tls-port", str(port), "--port", "0"] if "--tls-cert-file" in options else ["--port", str(port)]
    command = ["redis-server", *listen, "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", ""]
    command += ["--appendonly", "no", "--logfile", str(tmp_path / "redis.log"), *options]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        give_up = time.monotonic() + 30  # ends as soon as it listens: only a server that never starts waits long
        while True:  # the server is starting: wait until it accepts connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > give_up or process.poll() is not None:
                    raise
                time.sleep(0.02)
        yield port
    finally:
        process.terminate()
        process.wait(5)


def test_a_server_busy_with_a_script_fails_the_grant_for_now_and_it_then_succeeds(tmp_path: Path) -> None:
    """A Lua script that runs past lua-time-limit makes Redis answer BUSY to everything else: that is "not now",
    and the same grant goes through once the script is gone."""
    with own_redis(tmp_path, "--lua-time-limit", "10") as port:  # busy-reply-threshold in Redis 7
        adapter = RedisAdapter(RedisParams(host="127.0.0.1", port=port, rules=RULES, connect_timeout=2, timeout=2))
        quick: dict[str, Any] = {"socket_connect_timeout": 2, "retry": Retry(NoBackoff(), 0), "decode_responses": True}
        admin = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, **quick)
        looping = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10, **quick)  # bounded if the kill fails

        def loop() -> None:
            with suppress(redis.RedisError):  # SCRIPT KILL ends it with an error
                looping.eval("while true do end", 0)

        script = threading.Thread(target=loop, daemon=True)
        script.start()
        give_up = time.monotonic() + 30  # ends as soon as the script runs
        try:
            while not _busy(admin):
                assert time.monotonic() < give_up, "the script never made the server busy"
                time.sleep(0.01)
            ctx = grant_context("zoe")
            with pytest.raises(AdapterError) as busy:
                adapter.grant(ctx)
            assert busy.value.retryable and "BUSY" in str(busy.value)
        finally:
            while script.is_alive() and time.monotonic() < give_up + 10:
                with suppress(redis.RedisError):  # NOTBUSY once it has ended
                    admin.script_kill()
                script.join(0.1)
            looping.close()
        try:
            receipt = adapter.grant(ctx)
            assert user_exists(admin, adapter.user_name(ctx.principal))
            adapter.revoke(ctx, receipt)
        finally:
            admin.close()


def _busy(client: redis.Redis) -> bool:
    try:
        client.ping()
    except redis.ResponseError as error:
        if str(error).startswith("BUSY"):
            return True
        raise
    return False


@pytest.fixture
def aclfile_server(tmp_path: Path) -> Iterator[tuple[tuple[str, int], Path]]:
    """Keeps its users in an aclfile, as a restart would read them back."""
    aclfile = tmp_path / "users.acl"
    aclfile.write_text("")
    with own_redis(tmp_path, "--aclfile", str(aclfile)) as port:
        yield ("127.0.0.1", port), aclfile


def test_acl_save_keeps_the_aclfile_in_step(aclfile_server: tuple[tuple[str, int], Path]) -> None:
    (host, port), aclfile = aclfile_server
    adapter = RedisAdapter(RedisParams(host=host, port=port, rules=RULES, acl_save=True))  # as "default"
    assert adapter.check() == []
    ctx = grant_context("zoe")
    receipt = adapter.grant(ctx)
    assert "user bg-zoe on " in aclfile.read_text()
    admin = redis.Redis(host=host, port=port, decode_responses=True)
    try:
        adapter.revoke(ctx, receipt)
        admin.execute_command("ACL", "LOAD")  # what a restart does
        assert "bg-zoe" not in admin.execute_command("ACL", "USERS")
    finally:
        admin.close()


def test_without_acl_save_a_saved_user_comes_back_after_revoke(aclfile_server: tuple[tuple[str, int], Path]) -> None:
    (host, port), _ = aclfile_server
    adapter = RedisAdapter(RedisParams(host=host, port=port, rules=RULES))
    ctx = grant_context("zoe")
    receipt = adapter.grant(ctx)
    admin = redis.Redis(host=host, port=port, decode_responses=True)
    try:
        admin.execute_command("ACL", "SAVE")  # someone else saves while the grant is live
        adapter.revoke(ctx, receipt)
        admin.execute_command("ACL", "LOAD")
        assert "bg-zoe" in admin.execute_command("ACL", "USERS")  # why the docs say: set acl_save
    finally:
        admin.close()


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[tuple[str, int], Path]]:
    """Speaks TLS only, with a certificate for 127.0.0.1 from a CA of the test's own."""
    ca_key, ca, key, csr, cert = (tmp_path / name for name in ("ca.key", "ca.pem", "s.key", "s.csr", "s.pem"))
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *new_key, "-keyout", str(ca_key), "-out", str(ca), "-days", "1", "-subj", "/CN=test-ca")
    openssl("req", *new_key, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=redis")
    extensions = tmp_path / "san.cnf"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n")
    signing = ["-CA", str(ca), "-CAkey", str(ca_key), "-set_serial", "1", "-days", "1", "-extfile", str(extensions)]
    openssl("x509", "-req", "-in", str(csr), "-out", str(cert), *signing)
    tls = ["--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca)]
    with own_redis(tmp_path, *tls, "--tls-auth-clients", "no") as port:
        yield ("127.0.0.1", port), ca


def test_tls_checks_the_servers_certificate(tls_server: tuple[tuple[str, int], Path]) -> None:
    (host, port), ca = tls_server
    adapter = RedisAdapter(RedisParams(host=host, port=port, tls=True, tls_ca_file=str(ca), rules=RULES))
    assert adapter.check() == []
    ctx = grant_context("zoe")
    receipt = adapter.grant(ctx)
    assert "--tls --askpass" in (receipt.instructions or "")
    user = redis.Redis(
        host=host, port=port, username="bg-zoe", password=receipt.credentials, ssl=True, ssl_ca_certs=str(ca)
    )
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):  # logged in over TLS; the rules allow GET only
            user.set("orders:1", "x")
    finally:
        user.close()
    adapter.revoke(ctx, receipt)

    [untrusted] = RedisAdapter(RedisParams(host=host, port=port, tls=True, rules=RULES)).check()
    assert "certificate verify failed" in untrusted
    [plain] = RedisAdapter(RedisParams(host=host, port=port, rules=RULES)).check()
    assert plain.startswith(f"cannot reach redis at {host}:{port}")
