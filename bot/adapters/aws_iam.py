"""Grants AWS access to an IAM user, in one of two modes.

``policy``: grant puts an inline policy ``<policy_name_prefix><grant id>`` on the user (PutUserPolicy, which
overwrites, so a repeated grant is harmless); revoke deletes it. Every statement of that policy carries
``"DateLessThan": {"aws:CurrentTime": "<expires_at>"}``, merged into the statement's own conditions, so AWS
itself stops honouring the policy at expiry even if the bot is down; the revoke then only tidies up.

``group``: grant adds the user to an IAM group (AddUserToGroup); revoke removes them. IAM cannot expire a group
membership, so here access ends only when the bot revokes it; and since a membership has no owner, the first
revoke ends it for every grant of that group to that user.

Extending a grant (``ExtendsExpiry``) puts the stored policy again with the new expiry in every statement; that
takes ``iam:GetUserPolicy`` besides the grant's actions. A group membership has nothing to move.

Verify (``Verifies``) asks IAM whether what the grant made is still there: the inline policy by its name
(``iam:GetUserPolicy``), or the user among the group's members (``iam:GetGroup``). It answers for this grant's
path only: the same privilege held another way (a standing membership, another grant's policy) is not this
grant's to end, and counting it would turn a revoke that worked into one retried for ever.

Reconciliation (``Lists``) reads every IAM user with its inline policies, groups and tags in one paginated call
(``iam:GetAccountAuthorizationDetails``). Policy mode lists the inline policies whose statements, the expiry
condition aside, are this resource's ``statements`` (another resource's policies share the prefix, not the
statements): those named with ``policy_name_prefix`` are the bot's, any other (a copy put by hand) is standing
and listed only with ``everything``. Group mode lists the group's members; a membership is the
bot's when the user carries the tag ``breakglass-group:<group>``, which a grant puts on the user (``iam:TagUser``)
and a revoke takes off (``iam:UntagUser``). Memberships from before that tag existed, or granted by a bot whose
IAM policy lacks ``iam:TagUser`` (the grant still succeeds, with a warning), look standing: reconciliation
leaves them unless the resource opts into ``reconcile: all``.

The principal is an IAM user name. The bot calls IAM with its own credentials: explicit keys, or boto3's
default chain (environment, shared config, instance or task role) when none are given, optionally assuming
``role_arn`` first. Its minimum IAM policy is in docs/adapters/aws-iam.md. What it writes into IAM (policy names and
documents, statement checks, the group tag) is in ``aws_iam_documents``.
"""

from __future__ import annotations

import logging
import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from bot.adapters.aws_iam_documents import (
    MAX_POLICY_SIZE,
    NAME_CHARS,
    canonical,
    expiry_stamp,
    group_tag,
    policy_document,
    policy_name,
    statement_problem,
    statements_of,
)
from bot.adapters.base import AdapterError, AdapterParams, GrantContext, Holding, Receipt, redact
from bot.clock import as_utc

log = logging.getLogger("breakglass.adapters.aws_iam")

MAX_USER_NAME = 64
_RETRYABLE_CODES = {
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "ServiceUnavailable",
    "ServiceFailure",
    "InternalFailure",
    "InternalError",
    "RequestTimeout",
    "RequestTimeoutException",
}
_HINTS = {
    "InvalidClientTokenId": "the bot's access key is unknown to AWS",
    "SignatureDoesNotMatch": "the bot's secret access key is wrong",
    "ExpiredToken": "the bot's session token has expired",
    "InvalidToken": "the bot's session token is not valid",
    "UnrecognizedClientException": "the bot's access key is unknown to AWS",
    "AccessDenied": "the bot's IAM policy does not allow this (see the minimum policy in the docs)",
    "LimitExceeded": f"an IAM user's inline policies together may hold at most {MAX_POLICY_SIZE} characters",
    "MalformedPolicyDocument": "the statements in the resource's params are not a valid IAM policy",
}
_ROLE_REFRESH = timedelta(minutes=5)  # assume the role again this long before its credentials expire


class AwsIamParams(AdapterParams):
    model_config = ConfigDict(hide_input_in_errors=True)  # a rejected value may be a key

    mode: Literal["group", "policy"]
    group: str | None = None
    statements: list[dict[str, Any]] | None = None
    policy_name_prefix: str = Field(default="breakglass-", max_length=64)
    region: str = "us-east-1"
    endpoint_url: str | None = None
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    role_arn: str | None = None
    connect_timeout: float = Field(default=5, gt=0, le=60)
    read_timeout: float = Field(default=10, gt=0, le=120)

    @field_validator("group")
    @classmethod
    def _group_name(cls, value: str | None) -> str | None:
        if value is not None and not (NAME_CHARS.fullmatch(value) and len(value) <= 128):
            raise ValueError("an IAM group name is 1 to 128 of the characters A-Z a-z 0-9 _ + = , . @ -")
        return value

    @field_validator("policy_name_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not NAME_CHARS.fullmatch(value):
            raise ValueError("may only hold the characters A-Z a-z 0-9 _ + = , . @ -")
        return value

    @field_validator("statements")
    @classmethod
    def _statements(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("needs at least one statement")
        for index, statement in enumerate(value):
            problem = statement_problem(statement)
            if problem:
                raise ValueError(f"statements[{index}].{problem}")
        size = len(policy_document(value, datetime(2000, 1, 1, tzinfo=UTC)))
        if size > MAX_POLICY_SIZE:
            raise ValueError(f"the policy would be {size} characters with its expiry; IAM allows {MAX_POLICY_SIZE}")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
                raise ValueError("must be an http(s) URL with a host and no credentials in it")
        return value

    @field_validator("role_arn")
    @classmethod
    def _role(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"arn:aws[\w-]*:iam::\d{12}:role/[\w+=,.@/-]+", value):
            raise ValueError("must be an IAM role ARN, arn:aws:iam::<account>:role/<name>")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AwsIamParams:
        if self.mode == "group" and (self.group is None or self.statements is not None):
            raise ValueError("mode 'group' takes `group` (the IAM group name) and no `statements`")
        if self.mode == "policy" and (self.statements is None or self.group is not None):
            raise ValueError("mode 'policy' takes `statements` (IAM policy statements) and no `group`")
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("give access_key_id and secret_access_key together, or neither (default credentials)")
        if self.session_token is not None and self.access_key_id is None:
            raise ValueError("session_token goes with access_key_id and secret_access_key")
        return self


class AwsIamAdapter:
    name: ClassVar[str] = "aws-iam"
    Params: ClassVar[type[AdapterParams]] = AwsIamParams
    default_principal: ClassVar[str] = "{email_local}"

    def __init__(self, params: AwsIamParams) -> None:
        self.params = params
        self._config = Config(
            connect_timeout=params.connect_timeout,
            read_timeout=params.read_timeout,
            retries={"mode": "standard", "max_attempts": 2},  # the bot retries on its own
        )
        self._base = boto3.session.Session(
            aws_access_key_id=_reveal(params.access_key_id),
            aws_secret_access_key=_reveal(params.secret_access_key),
            aws_session_token=_reveal(params.session_token),
            region_name=params.region,
        )
        self._session = self._base
        self._role_until: datetime | None = None
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._canonical_statements = canonical(params.statements or [])  # what reconciliation looks for in policies

    def __repr__(self) -> str:
        return f"AwsIamAdapter(mode={self.params.mode!r}, region={self.params.region!r})"

    def principal_problem(self, principal: str) -> str | None:
        if len(principal) > MAX_USER_NAME or not NAME_CHARS.fullmatch(principal):
            return f"an IAM user name is 1 to {MAX_USER_NAME} of the characters A-Z a-z 0-9 _ + = , . @ -"
        return None

    def grant(self, ctx: GrantContext) -> Receipt:
        user, until = ctx.principal, as_utc(ctx.expires_at).strftime("%Y-%m-%d %H:%M UTC")
        if self.params.mode == "group":
            group = self.params.group
            self._call(
                f"adding IAM user '{user}' to group '{group}'",
                "iam",
                "add_user_to_group",
                UserName=user,
                GroupName=group,
            )
            log.info("grant %s: IAM user %s added to group %s", ctx.grant_id, user, group)
            self._mark(ctx, user, group or "")
            return Receipt(
                data={"mode": "group", "user": user, "group": group},
                instructions=f"Your IAM user {user} is in the IAM group {group} until {until}. "
                "Use your usual AWS credentials; IAM may take a few seconds to apply the change.",
            )
        name = policy_name(self.params.policy_name_prefix, ctx.grant_id)
        document = policy_document(self.params.statements or [], ctx.expires_at)
        self._call(
            f"putting policy {name} on IAM user '{user}'",
            "iam",
            "put_user_policy",
            missing=f"IAM user '{user}' does not exist in this AWS account",
            UserName=user,
            PolicyName=name,
            PolicyDocument=document,
        )
        log.info("grant %s: inline policy %s put on IAM user %s", ctx.grant_id, name, user)
        return Receipt(
            data={"mode": "policy", "user": user, "policy": name, "expires_at": expiry_stamp(ctx.expires_at)},
            instructions=f"Your IAM user {user} has the inline policy {name} until {until}, when AWS itself stops "
            "honouring it. Use your usual AWS credentials; IAM may take a few seconds to apply the change.",
        )

    def revoke(self, ctx: GrantContext, receipt: Receipt) -> None:
        # The receipt says what was granted, should the policy have changed since; else it is worked out again.
        data = receipt.data
        user = data.get("user") or ctx.principal
        if data.get("mode", self.params.mode) == "group":
            group = data.get("group") or self.params.group
            self._call(
                f"removing IAM user '{user}' from group '{group}'",
                "iam",
                "remove_user_from_group",
                gone_is_fine=True,
                UserName=user,
                GroupName=group,
            )
            log.info("revoke %s: IAM user %s removed from group %s", ctx.grant_id, user, group)
            self._unmark(ctx, user, group or "")
            return
        name = data.get("policy") or policy_name(self.params.policy_name_prefix, ctx.grant_id)
        self._call(
            f"deleting policy {name} of IAM user '{user}'",
            "iam",
            "delete_user_policy",
            gone_is_fine=True,
            UserName=user,
            PolicyName=name,
        )
        log.info("revoke %s: inline policy %s deleted from IAM user %s", ctx.grant_id, name, user)

    def _mark(self, ctx: GrantContext, user: str, group: str) -> None:
        """Tag the user so reconciliation can tell this membership from a standing one. A bot whose IAM policy
        predates the tag may not set it: the grant stands, and the membership merely looks standing."""
        try:
            self._call(
                f"tagging IAM user '{user}'",
                "iam",
                "tag_user",
                UserName=user,
                Tags=[{"Key": group_tag(group), "Value": expiry_stamp(ctx.expires_at)}],
            )
        except AdapterError as error:
            if error.retryable:
                raise
            log.warning("grant %s: %s; reconciliation will take the membership as standing", ctx.grant_id, error)

    def _unmark(self, ctx: GrantContext, user: str, group: str) -> None:
        try:
            self._call(
                f"untagging IAM user '{user}'",
                "iam",
                "untag_user",
                gone_is_fine=True,
                UserName=user,
                TagKeys=[group_tag(group)],
            )
        except AdapterError as error:
            if error.retryable:
                raise
            log.warning("revoke %s: %s; the membership itself is gone", ctx.grant_id, error)

    def verify(self, ctx: GrantContext, receipt: Receipt) -> bool:
        """Whether the policy or the group membership this grant made is still in IAM (see the module docstring)."""
        data = receipt.data
        user = data.get("user") or ctx.principal
        if data.get("mode", self.params.mode) == "group":
            group = data.get("group") or self.params.group
            return user in self._members(str(group))
        name = data.get("policy") or policy_name(self.params.policy_name_prefix, ctx.grant_id)
        found = self._call(
            f"reading policy {name} of IAM user '{user}'",
            "iam",
            "get_user_policy",
            gone_is_fine=True,  # no such user or policy: nothing to hold
            UserName=user,
            PolicyName=name,
        )
        return bool(found)

    def holdings(self, everything: bool) -> list[Holding]:
        """Who holds this resource's policy or group in IAM now (see the module docstring)."""
        users = self._users()
        if self.params.mode == "group":
            return self._group_holdings(users, everything)
        found = []
        for user in users:
            name = str(user.get("UserName") or "")
            for policy in user.get("UserPolicyList") or []:
                statements = statements_of(policy.get("PolicyDocument"))
                if statements is None or canonical(statements) != self._canonical_statements:
                    continue  # not this resource's statements: another resource's policy, or the person's own
                made = str(policy["PolicyName"]).startswith(self.params.policy_name_prefix)
                if made or everything:
                    data = {"mode": "policy", "user": name, "policy": str(policy["PolicyName"])}
                    found.append(Holding(name, data, made_by_bot=made))
        return found

    def _group_holdings(self, users: list[dict[str, Any]], everything: bool) -> list[Holding]:
        group = self.params.group or ""
        found = []
        for user in users:
            name = str(user.get("UserName") or "")
            if group not in (user.get("GroupList") or []):
                continue
            made = any(tag.get("Key") == group_tag(group) for tag in user.get("Tags") or [])
            if made or everything:
                found.append(Holding(name, {"mode": "group", "user": name, "group": group}, made_by_bot=made))
        return found

    def _members(self, group: str) -> set[str]:
        members: set[str] = set()
        marker: str | None = None
        while True:
            paging: dict[str, Any] = {"Marker": marker} if marker else {}
            page = self._call(
                f"reading the members of IAM group '{group}' (iam:GetGroup)",
                "iam",
                "get_group",
                missing=f"IAM group '{group}' does not exist",
                GroupName=group,
                MaxItems=1000,  # IAM's most per page; its default is 100
                **paging,
            )
            members |= {str(user.get("UserName")) for user in page.get("Users") or []}
            marker = page.get("Marker") if page.get("IsTruncated") else None
            if not marker:
                return members

    def _users(self) -> list[dict[str, Any]]:
        users: list[dict[str, Any]] = []
        marker: str | None = None
        while True:
            paging: dict[str, Any] = {"Marker": marker} if marker else {}
            page = self._call(
                "listing IAM users with their policies, groups and tags (iam:GetAccountAuthorizationDetails)",
                "iam",
                "get_account_authorization_details",
                Filter=["User"],
                MaxItems=1000,
                **paging,
            )
            users += page.get("UserDetailList") or []
            marker = page.get("Marker") if page.get("IsTruncated") else None
            if not marker:
                return users

    def extend(self, ctx: GrantContext, receipt: Receipt) -> None:
        """Policy mode: the inline policy is put again, as it is stored (what was granted, whatever the policy file
        says now), with every statement's ``aws:CurrentTime`` moved to the new expiry. A policy that is gone was
        revoked: a final error, never a new grant. Group mode: IAM ends nothing by itself, so nothing moves."""
        data = receipt.data
        user = data.get("user") or ctx.principal
        if data.get("mode", self.params.mode) == "group":
            log.info("extend %s: IAM group membership has no end in AWS; nothing to move", ctx.grant_id)
            return
        name = data.get("policy") or policy_name(self.params.policy_name_prefix, ctx.grant_id)
        stored = self._call(
            f"reading policy {name} of IAM user '{user}'",
            "iam",
            "get_user_policy",
            missing=f"IAM user '{user}' has no policy {name} any more: the access was revoked and cannot be extended",
            UserName=user,
            PolicyName=name,
        ).get("PolicyDocument")
        statements = statements_of(stored)
        if statements is None:
            raise AdapterError(
                f"policy {name} of IAM user '{user}' is not one Breakglass wrote; left as it is", retryable=False
            )
        self._call(
            f"putting policy {name} on IAM user '{user}'",
            "iam",
            "put_user_policy",
            missing=f"IAM user '{user}' does not exist in this AWS account",
            UserName=user,
            PolicyName=name,
            PolicyDocument=policy_document(statements, ctx.expires_at),
        )
        log.info(
            "extend %s: inline policy %s of IAM user %s now ends %s",
            ctx.grant_id,
            name,
            user,
            expiry_stamp(ctx.expires_at),
        )

    def check(self) -> list[str]:
        try:
            self._call("checking the bot's credentials (sts:GetCallerIdentity)", "sts", "get_caller_identity")
            if self.params.mode == "group":
                group = self.params.group
                self._call(
                    f"reading IAM group '{group}' (iam:GetGroup)",
                    "iam",
                    "get_group",
                    missing=f"IAM group '{group}' does not exist",
                    GroupName=group,
                    MaxItems=1,
                )
        except AdapterError as error:
            return [str(error)]
        return []

    def _call(
        self,
        doing: str,
        service: str,
        operation: str,
        *,
        missing: str | None = None,
        gone_is_fine: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        try:
            client = self._client(service)
            return getattr(client, operation)(**kwargs)
        except ClientError as error:
            if gone_is_fine and _code(error) == "NoSuchEntity":
                return {}
            raise self._failure(error, doing, missing) from None
        except BotoCoreError as error:
            raise self._failure(error, doing, missing) from None

    def _client(self, service: str) -> Any:
        with self._lock:
            if self.params.role_arn and self._role_expiring():
                self._assume_role()
            if service not in self._clients:
                self._clients[service] = self._session.client(
                    service, endpoint_url=self.params.endpoint_url, config=self._config
                )
            return self._clients[service]

    def _role_expiring(self) -> bool:
        return self._role_until is None or self._role_until - datetime.now(UTC) < _ROLE_REFRESH

    def _assume_role(self) -> None:
        sts = self._base.client("sts", endpoint_url=self.params.endpoint_url, config=self._config)
        try:
            answer = sts.assume_role(RoleArn=self.params.role_arn, RoleSessionName="breakglass")
        except (ClientError, BotoCoreError) as error:
            raise self._failure(error, f"assuming role {self.params.role_arn}", None) from None
        credentials = answer["Credentials"]
        self._session = boto3.session.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name=self.params.region,
        )
        self._role_until = as_utc(credentials["Expiration"])
        self._clients.clear()

    def _failure(self, error: Exception, doing: str, missing: str | None) -> AdapterError:
        where = self._where()
        if isinstance(error, ClientError):
            code = _code(error)
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            if code == "NoSuchEntity" and missing:
                return AdapterError(f"{missing} ({doing} failed)", retryable=False)
            said = self._redact(str(error.response.get("Error", {}).get("Message") or "").strip())
            message = f"{doing} failed: {where} answered {code}" + (f" ({said})" if said else "")
            hint = _HINTS.get(code)
            return AdapterError(
                message + (f"; {hint}" if hint else ""), retryable=code in _RETRYABLE_CODES or status >= 500
            )
        if isinstance(error, HTTPClientError | BotoConnectionError):  # cannot connect, timed out, dropped
            return AdapterError(f"{doing} failed: cannot reach {where} ({type(error).__name__})", retryable=True)
        if isinstance(error, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
            return AdapterError(
                f"{doing} failed: found no usable AWS credentials for the bot ({type(error).__name__}); give "
                "access_key_id and secret_access_key, or set up boto3's default credentials",
                retryable=False,
            )
        return AdapterError(f"{doing} failed: {type(error).__name__}", retryable=False)

    def _where(self) -> str:
        if not self.params.endpoint_url:
            return f"AWS ({self.params.region})"
        parts = urlsplit(self.params.endpoint_url)
        return f"AWS endpoint {parts.hostname}" + (f":{parts.port}" if parts.port else "")

    def _redact(self, text: str) -> str:
        return redact(text, self.params.access_key_id, self.params.secret_access_key, self.params.session_token)


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code") or "UnknownError")


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None
