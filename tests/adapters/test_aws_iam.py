"""The aws-iam adapter against moto's AWS server, with IAM authentication on.

The bot runs as an IAM user holding only the policy docs/adapters/aws-iam.md documents; each principal is an
IAM user with its own access key and no permissions of its own, and access is proved by calling S3 with that
key. moto does not evaluate policy conditions (only ``StringEquals``, see moto/iam/access_control.py), so the
expiry AWS enforces in policy mode is checked in the stored policy document, not by waiting for it: no
BackendExpiryContract or ExtendContract here; an extend is checked the same way, in the document it puts back.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.config import Config
from botocore.exceptions import ClientError
from pydantic import ValidationError

from bot.adapters import registry
from bot.adapters.aws_iam import AwsIamAdapter, AwsIamParams
from bot.adapters.aws_iam_documents import MAX_POLICY_NAME, policy_name
from bot.adapters.base import AdapterError, Receipt
from bot.testing.contract import (
    AWKWARD,
    AdapterContract,
    ListsContract,
    OneLiveGrantContract,
    StandingAccessContract,
    VerifyContract,
    grant_context,
)
from tests.adapters.moto_server import MotoServer, free_port, offline_aws_env

BUCKET = "breakglass-contract"
GROUP = "breakglass-contract-ops"
STATEMENTS = [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET}"}]
MADE_UP_KEY, MADE_UP_SECRET = "AKIAMADEUPKEY0000000", "made-up-secret-access-key-0123456789abcdef"
DOCS = Path(__file__).parents[2] / "docs" / "adapters" / "aws-iam.md"
ALLOW_ALL = {"Effect": "Allow", "Action": "*", "Resource": "*"}


@dataclass(frozen=True)
class Keys:
    access_key_id: str
    secret_access_key: str


@dataclass
class Aws:
    server: MotoServer
    admin: Keys
    bot: Keys
    weak_bot: Keys  # holds the policy-mode statement only
    role_arn: str  # a role with the documented policy, which `role_user` may assume
    role_user: Keys
    _clients: dict[tuple[str, Keys], Any] = field(default_factory=dict)

    def client(self, service: str, keys: Keys) -> Any:
        if (service, keys) not in self._clients:  # a boto3 client is slow to make
            self._clients[service, keys] = client(self.server.url, service, keys)
        return self._clients[service, keys]

    @property
    def iam(self) -> Any:
        return self.client("iam", self.admin)


def client(url: str, service: str, keys: Keys) -> Any:
    config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
    return boto3.session.Session(
        aws_access_key_id=keys.access_key_id, aws_secret_access_key=keys.secret_access_key, region_name="us-east-1"
    ).client(service, endpoint_url=url, config=config)


def documented_bot_policy() -> list[dict[str, Any]]:
    """The statements of the bot's minimum policy from the docs, with resource '*' (moto matches IAM calls
    against '*' only, so it can test the actions but not the resource scoping)."""
    block = re.search(r"```json\n(.*?)```", DOCS.read_text(), re.S)
    assert block, "the docs lost the bot's policy"
    return [{**statement, "Resource": "*"} for statement in json.loads(block.group(1))["Statement"]]


def document(statements: list[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def make_user(iam: Any, name: str, statements: list[dict[str, Any]] | None = None) -> Keys:
    iam.create_user(UserName=name)
    if statements:
        iam.put_user_policy(UserName=name, PolicyName="own", PolicyDocument=document(statements))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Keys(key["AccessKeyId"], key["SecretAccessKey"])


@pytest.fixture(scope="module", autouse=True)
def _offline() -> Iterator[None]:
    with offline_aws_env():
        yield


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aws]:
    with MotoServer(tmp_path_factory.mktemp("moto")) as server:
        iam = client(server.url, "iam", Keys(MADE_UP_KEY, MADE_UP_SECRET))  # authentication is off: any key works
        bot_policy = documented_bot_policy()
        role = "arn:aws:iam::123456789012:role/breakglass-bot-role"  # moto's default account
        assume = {"Effect": "Allow", "Action": "sts:AssumeRole"}
        role_user = make_user(iam, "breakglass-bot-base", [{**assume, "Resource": role}])
        trust = {**assume, "Principal": {"AWS": "arn:aws:iam::123456789012:user/breakglass-bot-base"}}
        iam.create_role(RoleName="breakglass-bot-role", AssumeRolePolicyDocument=document([trust]))
        iam.put_role_policy(RoleName="breakglass-bot-role", PolicyName="own", PolicyDocument=document(bot_policy))
        ready = Aws(
            server,
            admin=make_user(iam, "breakglass-test-admin", [ALLOW_ALL]),
            bot=make_user(iam, "breakglass-bot", bot_policy),
            weak_bot=make_user(iam, "breakglass-bot-weak", bot_policy[:1]),
            role_arn=role,
            role_user=role_user,
        )
        iam.create_group(GroupName=GROUP)
        iam.put_group_policy(GroupName=GROUP, PolicyName="ops", PolicyDocument=document(STATEMENTS))
        ready.client("s3", ready.admin).create_bucket(Bucket=BUCKET)
        server.enable_auth()
        yield ready


class IamProbe:
    def __init__(self, aws: Aws) -> None:
        self.aws = aws
        self.users: dict[str, Keys] = {}

    def principal(self, hint: str = "") -> str:
        name = f"bg{hint}-{uuid.uuid4().hex[:12]}"
        self.users[name] = make_user(self.aws.iam, name)
        return name

    def can_use(self, ctx: Any, receipt: Receipt) -> bool:
        s3 = self.aws.client("s3", self.users[ctx.principal])
        try:
            s3.list_objects_v2(Bucket=BUCKET)
        except ClientError as error:
            if error.response["Error"]["Code"] == "AccessDenied":
                return False
            raise
        return True

    def secrets(self) -> list[str]:
        everyone = [self.aws.admin, self.aws.bot, self.aws.weak_bot, self.aws.role_user, *self.users.values()]
        return [
            MADE_UP_KEY,
            MADE_UP_SECRET,
            *(part for keys in everyone for part in (keys.access_key_id, keys.secret_access_key)),
        ]

    def cleanup(self) -> None:
        iam = self.aws.iam
        for name in self.users:
            for policy in iam.list_user_policies(UserName=name)["PolicyNames"]:
                iam.delete_user_policy(UserName=name, PolicyName=policy)
            for group in iam.list_groups_for_user(UserName=name)["Groups"]:
                iam.remove_user_from_group(UserName=name, GroupName=group["GroupName"])
            for key in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
                iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
            iam.delete_user(UserName=name)


class PolicyProbe(IamProbe):
    def give_standing(self, principal: str) -> None:
        """An operator's own copy of the resource's statements, under a name of their choosing."""
        self.aws.iam.put_user_policy(UserName=principal, PolicyName="ops-standing", PolicyDocument=document(STATEMENTS))


class GroupProbe(IamProbe):
    def give_standing(self, principal: str) -> None:
        self.aws.iam.add_user_to_group(UserName=principal, GroupName=GROUP)


@pytest.fixture
def probe(aws: Aws) -> Iterator[IamProbe]:
    probe = IamProbe(aws)
    yield probe
    probe.cleanup()


def adapter_for(aws: Aws, keys: Keys | None = None, **params: Any) -> AwsIamAdapter:
    keys = keys or aws.bot
    credentials = {"access_key_id": keys.access_key_id, "secret_access_key": keys.secret_access_key}
    return AwsIamAdapter(AwsIamParams(endpoint_url=aws.server.url, **credentials, **params))


POLICY = {"mode": "policy", "statements": STATEMENTS}
GROUP_MODE = {"mode": "group", "group": GROUP}


class TestAwsIamPolicyContract(
    AdapterContract, VerifyContract, ListsContract, StandingAccessContract, OneLiveGrantContract
):
    @pytest.fixture
    def probe(self, aws: Aws) -> Iterator[IamProbe]:
        probe = PolicyProbe(aws)
        yield probe
        probe.cleanup()

    @pytest.fixture
    def adapter(self, aws: Aws) -> AwsIamAdapter:
        return adapter_for(aws, **POLICY)

    @pytest.fixture
    def wrong_credentials(self, aws: Aws) -> AwsIamAdapter:
        return adapter_for(aws, Keys(MADE_UP_KEY, MADE_UP_SECRET), **POLICY)


class TestAwsIamGroupContract(
    AdapterContract, VerifyContract, ListsContract, StandingAccessContract, OneLiveGrantContract
):
    @pytest.fixture
    def probe(self, aws: Aws) -> Iterator[IamProbe]:
        probe = GroupProbe(aws)
        yield probe
        probe.cleanup()

    @pytest.fixture
    def adapter(self, aws: Aws) -> AwsIamAdapter:
        return adapter_for(aws, **GROUP_MODE)

    @pytest.fixture
    def wrong_credentials(self, aws: Aws) -> AwsIamAdapter:
        return adapter_for(aws, Keys(MADE_UP_KEY, MADE_UP_SECRET), **GROUP_MODE)


def test_the_stored_policy_ends_at_expiry_on_every_statement(aws: Aws, probe: IamProbe) -> None:
    own = {"Bool": {"aws:SecureTransport": "true"}, "DateLessThan": {"aws:EpochTime": "2000000000"}}
    statements = [*STATEMENTS, {"Effect": "Deny", "Action": "s3:DeleteBucket", "Resource": "*", "Condition": own}]
    adapter = adapter_for(aws, mode="policy", statements=statements)
    ctx = grant_context(probe.principal(), expires_at=datetime(2031, 5, 6, 7, 8, 9, 999999, tzinfo=UTC))
    receipt = adapter.grant(ctx)

    name = policy_name("breakglass-", ctx.grant_id)
    stored = aws.iam.get_user_policy(UserName=ctx.principal, PolicyName=name)["PolicyDocument"]
    stored = json.loads(stored) if isinstance(stored, str) else stored
    allow, deny = stored["Statement"]
    assert allow == {**STATEMENTS[0], "Condition": {"DateLessThan": {"aws:CurrentTime": "2031-05-06T07:08:09Z"}}}
    assert deny["Condition"] == {
        "Bool": {"aws:SecureTransport": "true"},
        "DateLessThan": {"aws:EpochTime": "2000000000", "aws:CurrentTime": "2031-05-06T07:08:09Z"},
    }
    assert statements[1]["Condition"] == own, "the configured statements were changed"
    assert receipt.data == {
        "mode": "policy",
        "user": ctx.principal,
        "policy": name,
        "expires_at": "2031-05-06T07:08:09Z",
    }
    assert "2031-05-06 07:08 UTC" in (receipt.instructions or "") and ctx.principal in (receipt.instructions or "")


def test_moto_ignores_the_expiry_condition_so_aws_must_be_trusted_with_it(aws: Aws, probe: IamProbe) -> None:
    # Tripwire: should moto start evaluating DateLessThan, this fails; add BackendExpiryContract then.
    ctx = grant_context(probe.principal(), expires_in=timedelta(hours=-1))
    receipt = adapter_for(aws, **POLICY).grant(ctx)
    assert probe.can_use(ctx, receipt)


def test_revoke_uses_what_the_receipt_recorded(aws: Aws, probe: IamProbe) -> None:
    ctx = grant_context(probe.principal())
    receipt = adapter_for(aws, policy_name_prefix="old-", **POLICY).grant(ctx)
    adapter_for(aws, policy_name_prefix="new-", **POLICY).revoke(ctx, receipt)
    assert not probe.can_use(ctx, receipt)


@pytest.mark.parametrize("params", [POLICY, GROUP_MODE], ids=["policy", "group"])
def test_a_missing_iam_user_is_named_and_not_retried(aws: Aws, params: dict[str, Any]) -> None:
    with pytest.raises(AdapterError) as failure:
        adapter_for(aws, **params).grant(grant_context("nobody-here"))
    assert not failure.value.retryable
    assert "nobody-here" in str(failure.value)


def test_a_missing_group_is_reported_by_check(aws: Aws) -> None:
    problems = adapter_for(aws, mode="group", group="no-such-group").check()
    assert len(problems) == 1 and "IAM group 'no-such-group' does not exist" in problems[0]


def test_a_bot_without_the_needed_actions_is_refused_plainly(aws: Aws, probe: IamProbe) -> None:
    adapter = adapter_for(aws, aws.weak_bot, **GROUP_MODE)
    [problem] = adapter.check()
    assert "iam:GetGroup" in problem and "AccessDenied" in problem
    with pytest.raises(AdapterError) as failure:
        adapter.grant(grant_context(probe.principal()))
    assert not failure.value.retryable
    assert "AccessDenied" in str(failure.value) and "minimum policy" in str(failure.value)
    assert all(secret not in problem + str(failure.value) for secret in probe.secrets())


def test_a_wrong_secret_for_a_real_key_is_named_without_either(aws: Aws, probe: IamProbe) -> None:
    wrong = Keys(aws.bot.access_key_id, MADE_UP_SECRET)
    [problem] = adapter_for(aws, wrong, **POLICY).check()
    assert "SignatureDoesNotMatch" in problem and "secret access key is wrong" in problem
    assert aws.bot.access_key_id not in problem and MADE_UP_SECRET not in problem


def test_the_bot_can_work_through_an_assumed_role(aws: Aws, probe: IamProbe) -> None:
    adapter = adapter_for(aws, aws.role_user, role_arn=aws.role_arn, **POLICY)
    assert adapter.check() == []
    ctx = grant_context(probe.principal())
    receipt = adapter.grant(ctx)
    assert probe.can_use(ctx, receipt)
    adapter.revoke(ctx, receipt)
    assert not probe.can_use(ctx, receipt)


def test_no_credentials_at_all_is_a_plain_problem(aws: Aws) -> None:
    # The environment holds no AWS keys and instance metadata is off, so boto3's default chain finds nothing.
    [problem] = AwsIamAdapter(AwsIamParams(endpoint_url=aws.server.url, **POLICY)).check()
    assert "found no usable AWS credentials" in problem


def test_an_unreachable_endpoint_is_retryable() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    adapter = AwsIamAdapter(
        AwsIamParams(endpoint_url=closed, access_key_id=MADE_UP_KEY, secret_access_key=MADE_UP_SECRET, **POLICY)
    )
    with pytest.raises(AdapterError) as failure:
        adapter.grant(grant_context("zoe"))
    assert failure.value.retryable and "cannot reach" in str(failure.value)
    [problem] = adapter.check()
    assert f"AWS endpoint {closed.removeprefix('http://')}" in problem and MADE_UP_SECRET not in problem


def test_a_hung_endpoint_times_out_and_is_retryable() -> None:
    with socket.create_server(("127.0.0.1", 0)) as hung:  # accepts connections, never answers
        url = f"http://127.0.0.1:{hung.getsockname()[1]}"
        params = AwsIamParams(
            endpoint_url=url, access_key_id=MADE_UP_KEY, secret_access_key=MADE_UP_SECRET, read_timeout=0.3, **POLICY
        )
        with pytest.raises(AdapterError) as failure:
            AwsIamAdapter(params).grant(grant_context("zoe"))
    assert failure.value.retryable and "ReadTimeoutError" in str(failure.value)


class _Answer(BaseHTTPRequestHandler):
    status, code = 503, "ServiceUnavailable"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = f"<ErrorResponse><Error><Code>{self.code}</Code><Message>busy</Message></Error></ErrorResponse>"
        self.send_response(self.status)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (503, "ServiceUnavailable", True),
        (400, "Throttling", True),
        (403, "AccessDenied", False),
        (409, "LimitExceeded", False),
    ],
)
def test_busy_answers_are_retryable_and_refusals_are_not(status: int, code: str, retryable: bool) -> None:
    handler = type("Answer", (_Answer,), {"status": status, "code": code})
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}"
            adapter = AwsIamAdapter(
                AwsIamParams(endpoint_url=url, access_key_id=MADE_UP_KEY, secret_access_key=MADE_UP_SECRET, **POLICY)
            )
            with pytest.raises(AdapterError) as failure:
                adapter.grant(grant_context("zoe"))
        finally:
            server.shutdown()
    assert failure.value.retryable is retryable
    assert code in str(failure.value) and MADE_UP_SECRET not in str(failure.value)


@pytest.mark.parametrize(
    ("statement", "key"),
    [
        ({"Effect": "allow", "Action": "s3:*", "Resource": "*"}, "Effect"),
        ({"Effect": "Allow", "Resource": "*"}, "Action"),
        ({"Effect": "Allow", "Action": [], "Resource": "*"}, "Action"),
        ({"Effect": "Allow", "Action": "s3:*", "NotAction": "s3:Get*", "Resource": "*"}, "Action"),
        ({"Effect": "Allow", "Action": "s3:*"}, "Resource"),
        ({"Effect": "Allow", "Action": "s3:*", "Resource": 5}, "Resource"),
        ({"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Principal": "*"}, "Principal"),
        ({"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"Bool": "x"}}, "Condition"),
        (
            {
                "Effect": "Allow",
                "Action": "*",
                "Resource": "*",
                "Condition": {"DateLessThan": {"AWS:CurrentTime": "x"}},
            },
            "Condition",
        ),
    ],
)
def test_statements_are_checked_and_the_key_at_fault_named(statement: dict[str, Any], key: str) -> None:
    with pytest.raises(ValidationError) as failure:
        AwsIamParams(mode="policy", statements=[STATEMENTS[0], statement])
    assert f"statements[1].{key}:" in str(failure.value)


@pytest.mark.parametrize(
    "params",
    [
        {"mode": "group"},
        {"mode": "group", "group": GROUP, "statements": STATEMENTS},
        {"mode": "policy"},
        {"mode": "policy", "statements": []},
        {"mode": "policy", "statements": [{**ALLOW_ALL, "Action": ["s3:x" * 200] * 3}]},
        {"mode": "group", "group": "ops team"},
        {**POLICY, "access_key_id": MADE_UP_KEY},
        {**POLICY, "policy_name_prefix": "bad/prefix"},
        {**POLICY, "endpoint_url": "http://user:pass@127.0.0.1:1"},
        {**POLICY, "role_arn": "breakglass-bot"},
    ],
)
def test_inconsistent_params_are_refused(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as failure:
        AwsIamParams(**params)
    assert MADE_UP_KEY not in str(failure.value) and "pass" not in str(failure.value)


def test_policy_names_stay_within_iams_limits() -> None:
    grant_id = str(uuid.uuid4())
    assert policy_name("breakglass-", grant_id) == f"breakglass-{grant_id}"
    odd, long = "grant/with spaces:and*stars", "g" * 200
    names = {policy_name("p" * 64, odd), policy_name("p" * 64, long), policy_name("breakglass-", odd)}
    assert len(names) == 3 and policy_name("p" * 64, odd) == policy_name("p" * 64, odd)
    assert all(re.fullmatch(r"[\w+=,.@-]{1,128}", name) and len(name) <= MAX_POLICY_NAME for name in names)


def test_iam_user_names_are_the_only_principals() -> None:
    adapter = AwsIamAdapter(AwsIamParams(**POLICY))
    assert adapter.principal_problem("zoe.ada+ops@example.com") is None
    assert adapter.principal_problem(AWKWARD)
    assert adapter.principal_problem("z" * 65)
    assert adapter.principal_problem("zoë")


def test_the_docs_example_is_a_valid_policy() -> None:
    block = re.search(r"```yaml\n(.*?)```", DOCS.read_text(), re.S)
    assert block
    environ = {"BREAKGLASS_AWS_KEY_ID": MADE_UP_KEY, "BREAKGLASS_AWS_SECRET": MADE_UP_SECRET}
    for name, resource in yaml.safe_load(block.group(1))["resources"].items():
        adapter = registry.build(resource["adapter"], resource["params"], f"resources.{name}", environ)
        assert isinstance(adapter, AwsIamAdapter)
        assert MADE_UP_SECRET not in repr(adapter)


def test_a_revoke_of_a_group_grant_keeps_other_groups(aws: Aws, probe: IamProbe) -> None:
    ctx = grant_context(probe.principal())
    aws.iam.create_group(GroupName="standing-" + ctx.principal)
    try:
        aws.iam.add_user_to_group(UserName=ctx.principal, GroupName="standing-" + ctx.principal)
        adapter = adapter_for(aws, **GROUP_MODE)
        adapter.revoke(ctx, adapter.grant(ctx))
        groups = [g["GroupName"] for g in aws.iam.list_groups_for_user(UserName=ctx.principal)["Groups"]]
        assert groups == ["standing-" + ctx.principal]
    finally:
        aws.iam.remove_user_from_group(UserName=ctx.principal, GroupName="standing-" + ctx.principal)
        aws.iam.delete_group(GroupName="standing-" + ctx.principal)


def stored_policy(aws: Aws, user: str, name: str) -> dict[str, Any]:
    stored = aws.iam.get_user_policy(UserName=user, PolicyName=name)["PolicyDocument"]
    return json.loads(stored) if isinstance(stored, str) else stored


def test_extend_puts_the_granted_policy_back_with_the_new_expiry(aws: Aws, probe: IamProbe) -> None:
    own = {"Bool": {"aws:SecureTransport": "true"}}
    statements = [*STATEMENTS, {"Effect": "Deny", "Action": "s3:DeleteBucket", "Resource": "*", "Condition": own}]
    ctx = grant_context(probe.principal(), expires_at=datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC))
    receipt = adapter_for(aws, mode="policy", statements=statements).grant(ctx)
    later = replace(ctx, expires_at=datetime(2031, 5, 6, 9, 30, 0, 999999, tzinfo=UTC))
    since_edited = adapter_for(aws, mode="policy", statements=[ALLOW_ALL])  # the policy file changed meanwhile

    since_edited.extend(later, Receipt(data=receipt.data))
    since_edited.extend(later, Receipt(data=receipt.data))  # a retry: the same document again

    allow, deny = stored_policy(aws, ctx.principal, receipt.data["policy"])["Statement"]
    assert allow == {**STATEMENTS[0], "Condition": {"DateLessThan": {"aws:CurrentTime": "2031-05-06T09:30:00Z"}}}
    assert deny["Condition"] == {**own, "DateLessThan": {"aws:CurrentTime": "2031-05-06T09:30:00Z"}}
    assert deny["Action"] == "s3:DeleteBucket", "extend changed what was granted"
    assert probe.can_use(later, receipt)
    since_edited.revoke(later, receipt)
    assert not probe.can_use(later, receipt)


def test_extend_after_a_revoke_is_refused_and_grants_nothing(aws: Aws, probe: IamProbe) -> None:
    adapter = adapter_for(aws, **POLICY)
    ctx = grant_context(probe.principal())
    receipt = adapter.grant(ctx)
    adapter.revoke(ctx, receipt)
    with pytest.raises(AdapterError) as failure:
        adapter.extend(replace(ctx, expires_at=ctx.expires_at + timedelta(hours=1)), Receipt(data=receipt.data))
    assert not failure.value.retryable and "revoked" in str(failure.value)
    assert aws.iam.list_user_policies(UserName=ctx.principal)["PolicyNames"] == []
    assert not probe.can_use(ctx, receipt)


def test_extend_with_wrong_credentials_fails_without_revealing_them(aws: Aws, probe: IamProbe) -> None:
    ctx = grant_context(probe.principal())
    receipt = adapter_for(aws, **POLICY).grant(ctx)
    wrong = adapter_for(aws, Keys(aws.bot.access_key_id, MADE_UP_SECRET), **POLICY)
    with pytest.raises(AdapterError) as failure:
        wrong.extend(replace(ctx, expires_at=ctx.expires_at + timedelta(hours=1)), Receipt(data=receipt.data))
    assert all(secret not in str(failure.value) for secret in probe.secrets())
    assert stored_policy(aws, ctx.principal, receipt.data["policy"])["Statement"][0]["Condition"] == {
        "DateLessThan": {"aws:CurrentTime": receipt.data["expires_at"]}
    }


def test_a_group_membership_has_no_end_in_aws_to_move(aws: Aws, probe: IamProbe) -> None:
    adapter = adapter_for(aws, **GROUP_MODE)
    ctx = grant_context(probe.principal())
    receipt = adapter.grant(ctx)
    unreachable = AwsIamAdapter(
        AwsIamParams(
            endpoint_url=f"http://127.0.0.1:{free_port()}",
            access_key_id=MADE_UP_KEY,
            secret_access_key=MADE_UP_SECRET,
            **GROUP_MODE,
        )
    )
    unreachable.extend(replace(ctx, expires_at=ctx.expires_at + timedelta(hours=1)), Receipt(data=receipt.data))
    assert probe.can_use(ctx, receipt)  # nothing was asked of AWS, and nothing changed
    adapter.revoke(ctx, receipt)


def test_reconciliation_leaves_another_resources_policies_alone(aws: Aws, probe: IamProbe) -> None:
    # Both resources name their policies breakglass-<grant id>: only the statements tell them apart.
    other = adapter_for(aws, mode="policy", statements=[{**STATEMENTS[0], "Action": "s3:GetObject"}])
    ctx = grant_context(probe.principal())
    receipt = other.grant(ctx)
    try:
        assert other.holdings(everything=False) != []
        mine = adapter_for(aws, **POLICY)
        assert [h for h in mine.holdings(everything=True) if h.principal == ctx.principal] == []
    finally:
        other.revoke(ctx, receipt)


def test_verify_asks_about_the_grants_own_policy_not_a_standing_copy(aws: Aws, probe: IamProbe) -> None:
    adapter = adapter_for(aws, **POLICY)
    ctx = grant_context(probe.principal())
    receipt = adapter.grant(ctx)
    aws.iam.put_user_policy(UserName=ctx.principal, PolicyName="ops-standing", PolicyDocument=document(STATEMENTS))
    adapter.revoke(ctx, receipt)
    assert probe.can_use(ctx, receipt), "the standing copy should still work, or the test proves nothing"
    assert adapter.verify(ctx, Receipt(data=receipt.data)) is False  # the grant's own access is gone


def test_a_group_grant_tags_the_user_and_its_revoke_untags(aws: Aws, probe: IamProbe) -> None:
    adapter = adapter_for(aws, **GROUP_MODE)
    ctx = grant_context(probe.principal(), expires_at=datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC))
    receipt = adapter.grant(ctx)
    tags = aws.iam.list_user_tags(UserName=ctx.principal)["Tags"]
    assert tags == [{"Key": f"breakglass-group:{GROUP}", "Value": "2031-05-06T07:08:09Z"}]
    adapter.revoke(ctx, receipt)
    assert aws.iam.list_user_tags(UserName=ctx.principal)["Tags"] == []


def test_a_bot_that_may_not_tag_still_grants_and_its_membership_looks_standing(
    aws: Aws, probe: IamProbe, caplog: pytest.LogCaptureFixture
) -> None:
    # The bot's IAM policy from before reconciliation: no iam:TagUser, iam:UntagUser.
    older = [s for s in documented_bot_policy() if s.get("Sid") != "GroupModeMarks"]
    keys = make_user(aws.iam, f"breakglass-bot-older-{uuid.uuid4().hex[:6]}", older)
    adapter = adapter_for(aws, keys, **GROUP_MODE)
    ctx = grant_context(probe.principal())
    receipt = adapter.grant(ctx)
    assert probe.can_use(ctx, receipt)
    assert "reconciliation will take the membership as standing" in caplog.text
    assert [h for h in adapter.holdings(everything=False) if h.principal == ctx.principal] == []
    assert adapter.verify(ctx, Receipt(data=receipt.data)) is True
    adapter.revoke(ctx, Receipt(data=receipt.data))
    assert not probe.can_use(ctx, receipt)
    assert adapter.verify(ctx, Receipt(data=receipt.data)) is False
