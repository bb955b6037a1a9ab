"""The ldap adapter against a private OpenLDAP slapd on loopback (see slapd_server.py).

Access is proven the way applications that authorise by LDAP group use it: bind as the person with their own
password, then search the group for their membership value.
"""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, ClassVar

import pytest
from ldap3 import BASE, MODIFY_ADD, MODIFY_DELETE, Connection, Server
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn, parse_dn
from pydantic import ValidationError

from bot.adapters import registry
from bot.adapters.base import AdapterError, GrantContext, Person, Receipt
from bot.adapters.ldap import LdapAdapter, LdapParams
from bot.adapters.principal import Unmappable, for_resource
from bot.testing.contract import (
    AWKWARD,
    AdapterContract,
    ListsContract,
    OneLiveGrantContract,
    StandingAccessContract,
    VerifyContract,
    grant_context,
)
from tests.adapters import slapd_server
from tests.adapters.conftest import in_ci
from tests.adapters.slapd_server import BOT_DN, BOT_PASSWORD, ROOT_DN, ROOT_PASSWORD, SUFFIX, Slapd

PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
USER_DN = f"uid={{principal}},{PEOPLE}"
ONCALL = f"cn=oncall-prod,{GROUPS}"  # groupOfNames
UNIQUE = f"cn=dba-prod,{GROUPS}"  # groupOfUniqueNames
POSIX = f"cn=ops-prod,{GROUPS}"  # posixGroup
LOCKED = f"cn=auditors,ou=services,{SUFFIX}"  # the bot may read it but not write it
KEEPER = f"uid=keeper,{PEOPLE}"  # a standing member, so the groups are never empty
WRONG_PASSWORD = "not-the-bot-password-71d0"


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    if not slapd_server.available():
        reason = "needs OpenLDAP's slapd and openssl (apt install slapd ldap-utils openssl)"
        if in_ci():
            pytest.fail(f"ldap adapter tests {reason}; they never skip in CI", pytrace=False)
        pytest.skip(f"the ldap adapter tests {reason}")
    server = slapd_server.start(tmp_path_factory.mktemp("slapd"))
    try:
        with root_connection(server) as admin:
            seed(admin)
        yield server
    finally:
        server.stop()


@contextmanager
def root_connection(server: Slapd) -> Iterator[Connection]:
    connection = Connection(Server(server.url, connect_timeout=5), ROOT_DN, ROOT_PASSWORD, receive_timeout=5)
    assert connection.bind(), connection.result
    try:
        yield connection
    finally:
        connection.unbind()


def seed(admin: Connection) -> None:
    add(admin, SUFFIX, ["dcObject", "organization"], o="Example")
    for unit in ("people", "groups", "services"):
        add(admin, f"ou={unit},{SUFFIX}", ["organizationalUnit"])
    add(admin, BOT_DN, ["applicationProcess", "simpleSecurityObject"], userPassword=BOT_PASSWORD)
    add(admin, KEEPER, ["inetOrgPerson"], cn="keeper", sn="keeper", uid="keeper")
    add(admin, ONCALL, ["groupOfNames"], member=KEEPER)
    add(admin, UNIQUE, ["groupOfUniqueNames"], uniqueMember=KEEPER)
    add(admin, POSIX, ["posixGroup"], gidNumber="5001")
    add(admin, LOCKED, ["groupOfNames"], member=KEEPER)


def add(admin: Connection, dn: str, classes: list[str], **attributes: Any) -> None:
    assert admin.add(dn, classes, attributes), admin.result


@pytest.fixture(scope="session")
def admin(slapd: Slapd) -> Iterator[Connection]:
    with root_connection(slapd) as connection:
        yield connection


def values(admin: Connection, group: str, attribute: str) -> list[str]:
    assert admin.search(group, "(objectClass=*)", search_scope=BASE, attributes=[attribute]), admin.result
    return [value.decode() for value in admin.response[0]["raw_attributes"].get(attribute, [])]


def unescape(value: str) -> str:
    """An RDN value as written in a DN (RFC 4514 escapes, \\XX hex pairs included) back to its text."""
    raw, index = bytearray(), 0
    while index < len(value):
        if value[index] != "\\":
            raw += value[index].encode()
            index += 1
        elif re.fullmatch(r"[0-9A-Fa-f]{2}", value[index + 1 : index + 3]):
            raw.append(int(value[index + 1 : index + 3], 16))
            index += 3
        else:
            raw += value[index + 1].encode()
            index += 2
    return raw.decode()


def params(slapd: Slapd, **changes: Any) -> LdapParams:
    settings: dict[str, Any] = {
        "url": slapd.url,
        "bind_dn": BOT_DN,
        "password": BOT_PASSWORD,
        "group_dn": ONCALL,
        "user_dn": USER_DN,
        "timeout": 2,
        **changes,
    }
    return LdapParams(**settings)


class DirectoryProbe:
    """Makes people in ou=people and checks their membership from their own bind."""

    def __init__(self, slapd: Slapd, admin: Connection, group: str, attribute: str) -> None:
        self.slapd, self.admin, self.group, self.attribute = slapd, admin, group, attribute
        self.passwords: dict[str, str] = {}

    def principal(self, hint: str = "") -> str:
        name = f"{hint} {uuid.uuid4().hex[:8]}" if hint else f"p-{uuid.uuid4().hex[:8]}"
        self.person(name)
        return name

    def person(self, name: str) -> str:
        dn = USER_DN.format(principal=escape_rdn(name))
        password = uuid.uuid4().hex
        add(self.admin, dn, ["inetOrgPerson"], uid=name, cn=name, sn="probe", userPassword=password)
        self.passwords[name] = password
        return dn

    def value(self, principal: str) -> str:
        return principal if self.attribute == "memberUid" else USER_DN.format(principal=escape_rdn(principal))

    def can_use(self, ctx: GrantContext, receipt: Receipt) -> bool:
        dn = USER_DN.format(principal=escape_rdn(ctx.principal))
        server = Server(self.slapd.url, connect_timeout=5)
        with Connection(server, dn, self.passwords[ctx.principal], receive_timeout=5) as own:
            assert own.bound, f"the probe's person {dn} cannot bind: {own.result}"
            query = f"({self.attribute}={escape_filter_chars(self.value(ctx.principal))})"
            own.search(self.group, query, search_scope=BASE, attributes=["1.1"])
            assert own.result["result"] == 0, own.result
            return len(own.response) == 1

    def secrets(self) -> list[str]:
        return [BOT_PASSWORD, WRONG_PASSWORD, ROOT_PASSWORD, *self.passwords.values()]

    def give_standing(self, principal: str) -> None:
        """A membership an administrator added: the value, and no mark."""
        added = self.admin.modify(self.group, {self.attribute: [(MODIFY_ADD, [self.value(principal)])]})
        assert added, self.admin.result

    def clean(self) -> None:
        for name in self.passwords:
            self.admin.modify(self.group, {self.attribute: [(MODIFY_DELETE, [self.value(name)])]})
            self.admin.delete(USER_DN.format(principal=escape_rdn(name)))


class DirectoryContract(AdapterContract, OneLiveGrantContract, VerifyContract, ListsContract, StandingAccessContract):
    group: ClassVar[str]
    attribute: ClassVar[str]
    tls: ClassVar[str]  # how the bot connects: "start_tls" or "ldaps"

    @pytest.fixture
    def adapter_params(self, slapd: Slapd) -> dict[str, Any]:
        url = slapd.ldaps_url if self.tls == "ldaps" else slapd.url
        return {
            "url": url,
            "start_tls": self.tls == "start_tls",
            "ca_file": slapd.ca_file,
            "bind_dn": BOT_DN,
            "password": "${LDAP_BOT_PASSWORD}",
            "group_dn": self.group,
            "member_attribute": self.attribute,
            "user_dn": USER_DN,
        }

    @pytest.fixture
    def adapter(self, adapter_params: dict[str, Any]) -> LdapAdapter:
        built = registry.build("ldap", adapter_params, "resources.oncall", {"LDAP_BOT_PASSWORD": BOT_PASSWORD})
        assert isinstance(built, LdapAdapter)
        return built

    @pytest.fixture
    def wrong_credentials(self, adapter_params: dict[str, Any]) -> LdapAdapter:
        return LdapAdapter(LdapParams(**{**adapter_params, "password": WRONG_PASSWORD}))

    @pytest.fixture
    def probe(self, slapd: Slapd, admin: Connection) -> Iterator[DirectoryProbe]:
        probe = DirectoryProbe(slapd, admin, self.group, self.attribute)
        yield probe
        probe.clean()


class TestLdapContract(DirectoryContract):
    group, attribute, tls = ONCALL, "member", "start_tls"


class TestLdapUniqueMemberContract(DirectoryContract):
    group, attribute, tls = UNIQUE, "uniqueMember", "ldaps"


class TestLdapMemberUidContract(DirectoryContract):
    group, attribute, tls = POSIX, "memberUid", "ldaps"


@pytest.fixture
def probe(slapd: Slapd, admin: Connection) -> Iterator[DirectoryProbe]:
    probe = DirectoryProbe(slapd, admin, ONCALL, "member")
    yield probe
    probe.clean()


@pytest.mark.parametrize("name", ["evil,ou=groups", "*)(uid=*", "a+cn=keeper", '#x\\y<z>;"q"', "Zoë = admin"])
def test_a_principal_is_one_escaped_rdn_value_and_no_filter(
    slapd: Slapd, admin: Connection, probe: DirectoryProbe, name: str
) -> None:
    adapter = LdapAdapter(params(slapd))
    probe.person(name)
    bystander = grant_context(probe.principal())
    ctx = grant_context(name)
    before = values(admin, ONCALL, "member")

    receipt = adapter.grant(ctx)

    [added] = set(values(admin, ONCALL, "member")) - set(before)
    assert receipt.data["value"] == f"uid={escape_rdn(name)},{PEOPLE}"
    first, *rest = parse_dn(added)  # the server's own spelling of the DN it stored
    assert first[0] == "uid" and unescape(first[1]) == name and first[2] == ","  # one single-valued RDN…
    assert [component[:2] for component in rest] == [component[:2] for component in parse_dn(PEOPLE)]  # …in people
    assert probe.can_use(ctx, receipt)
    assert not probe.can_use(bystander, Receipt())
    adapter.revoke(ctx, receipt)
    assert values(admin, ONCALL, "member") == before


def test_a_grant_for_someone_without_an_entry_is_refused_and_changes_nothing(slapd: Slapd, admin: Connection) -> None:
    before = values(admin, ONCALL, "member")
    with pytest.raises(AdapterError) as failure:
        LdapAdapter(params(slapd)).grant(grant_context("nobody-here"))
    assert not failure.value.retryable
    assert f"uid=nobody-here,{PEOPLE}" in str(failure.value)
    assert values(admin, ONCALL, "member") == before


def test_verify_user_off_adds_the_dn_without_reading_the_entry(slapd: Slapd, admin: Connection) -> None:
    adapter = LdapAdapter(params(slapd, verify_user=False))
    ctx = grant_context("not-yet-provisioned")
    receipt = adapter.grant(ctx)
    assert f"uid=not-yet-provisioned,{PEOPLE}" in values(admin, ONCALL, "member")
    adapter.revoke(ctx, receipt)
    assert f"uid=not-yet-provisioned,{PEOPLE}" not in values(admin, ONCALL, "member")


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        (f"cn=zoe,{PEOPLE}", "exactly once"),
        ("uid={principal}+cn={principal},dc=org", "exactly once"),
        ("uid={principal},ou={email},dc=org", "exactly once"),
        ("uid={principal!r},dc=org", "format spec or conversion"),
        ("uid=x-{principal},dc=org", "whole attribute value"),
        ("{principal}=x,dc=org", "whole attribute value"),
        ("uid={principal}, ou=people", "not a valid DN"),
        ("uid={principal", "not a valid template"),
    ],
)
def test_user_dn_templates_are_checked(slapd: Slapd, template: str, problem: str) -> None:
    with pytest.raises(ValidationError) as failure:
        params(slapd, user_dn=template)
    assert "user_dn" in str(failure.value) and problem in str(failure.value)


@pytest.mark.parametrize("template", [USER_DN, "cn={principal}+o=x,dc=org", f"cn=ops,uid={{principal}},{PEOPLE}"])
def test_user_dn_templates_that_name_one_rdn_value_are_accepted(slapd: Slapd, template: str) -> None:
    assert params(slapd, user_dn=template).user_dn == template


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"user_dn": None}, "user_dn is required"),
        ({"url": "http://127.0.0.1"}, "ldap:// or ldaps://"),
        ({"url": "ldap://127.0.0.1/dc=example,dc=org"}, "only ldap[s]://host[:port]"),
        ({"url": "ldaps://127.0.0.1", "start_tls": True}, "start_tls is for ldap://"),
        ({"group_dn": "oncall-prod"}, "not a valid DN"),
        ({"member_attribute": "memberOf"}, "member_attribute"),
        ({"password": ""}, "password"),
        ({"ca_file": "/nonexistent/ca.pem"}, "ca_file"),
        ({"ca_file": "slapd.conf"}, "not a PEM file of CA certificates"),
    ],
)
def test_params_are_checked(slapd: Slapd, changes: dict[str, Any], problem: str) -> None:
    if changes.get("ca_file") == "slapd.conf":
        changes["ca_file"] = str(slapd.directory / "slapd.conf")
    with pytest.raises(ValidationError) as failure:
        params(slapd, **changes)
    assert problem in str(failure.value)
    assert BOT_PASSWORD not in str(failure.value)


def test_memberuid_mode_needs_no_user_dn_and_refuses_non_posix_names(slapd: Slapd, admin: Connection) -> None:
    adapter = LdapAdapter(params(slapd, group_dn=POSIX, member_attribute="memberUid", user_dn=None))
    assert adapter.check() == []
    assert adapter.principal_problem(AWKWARD)
    assert adapter.principal_problem("-rf")
    assert adapter.principal_problem("zoë")  # memberUid is IA5: the server would refuse it anyway
    assert adapter.principal_problem("zoe.smith@example.com") is None
    ctx = grant_context("svc_deploy")  # no entry needed without user_dn
    receipt = adapter.grant(ctx)
    assert "svc_deploy" in values(admin, POSIX, "memberUid")
    adapter.revoke(ctx, receipt)
    assert "svc_deploy" not in values(admin, POSIX, "memberUid")


def test_dn_modes_refuse_only_names_the_directory_would_trim(slapd: Slapd) -> None:
    adapter = LdapAdapter(params(slapd))
    assert adapter.principal_problem(" zoe")
    assert adapter.principal_problem("zoe ")
    assert adapter.principal_problem(AWKWARD) is None


def test_revoking_the_last_member_leaves_the_group_itself_as_placeholder(
    slapd: Slapd, admin: Connection, probe: DirectoryProbe
) -> None:
    group = f"cn=solo-{uuid.uuid4().hex[:6]},{GROUPS}"
    name = f"p-{uuid.uuid4().hex[:8]}"
    dn = probe.person(name)
    add(admin, group, ["groupOfNames"], member=dn)  # as if granted earlier, the group's only member
    probe.group = group
    adapter = LdapAdapter(params(slapd, group_dn=group))
    ctx = grant_context(name)
    try:
        assert probe.can_use(ctx, Receipt())
        adapter.revoke(ctx, Receipt())
        assert values(admin, group, "member") == [group]
        assert not probe.can_use(ctx, Receipt())
        assert adapter.check() == []
        receipt = adapter.grant(ctx)
        assert probe.can_use(ctx, receipt)
        adapter.revoke(ctx, receipt)
        adapter.revoke(ctx, receipt)
        assert values(admin, group, "member") == [group]
    finally:
        admin.delete(group)


def test_revoke_follows_the_receipt_when_the_policy_moved_the_group(
    slapd: Slapd, admin: Connection, probe: DirectoryProbe
) -> None:
    ctx = grant_context(probe.principal())
    receipt = LdapAdapter(params(slapd)).grant(ctx)
    LdapAdapter(params(slapd, group_dn=UNIQUE, member_attribute="uniqueMember")).revoke(ctx, receipt)
    assert not probe.can_use(ctx, receipt)


def test_check_says_the_group_does_not_exist(slapd: Slapd) -> None:
    missing = f"cn=oncall-typo,{GROUPS}"
    adapter = LdapAdapter(params(slapd, group_dn=missing))
    [problem] = adapter.check()
    assert missing in problem and "does not exist" in problem
    with pytest.raises(AdapterError) as failure:
        adapter.revoke(grant_context("keeper"), Receipt())
    assert not failure.value.retryable


def test_check_and_grant_name_a_group_the_bot_may_not_write(
    slapd: Slapd, admin: Connection, probe: DirectoryProbe
) -> None:
    adapter = LdapAdapter(params(slapd, group_dn=LOCKED))
    [problem] = adapter.check()
    assert "insufficient access rights" in problem and LOCKED in problem and "member" in problem
    with pytest.raises(AdapterError) as failure:
        adapter.grant(grant_context(probe.principal()))
    assert not failure.value.retryable and "insufficient access rights" in str(failure.value)
    assert values(admin, LOCKED, "member") == [KEEPER]


def test_check_notices_a_membership_attribute_the_group_cannot_hold(slapd: Slapd) -> None:
    [problem] = LdapAdapter(params(slapd, member_attribute="memberUid")).check()
    assert "groupofnames" in problem and "memberUid" in problem


def test_check_notices_a_user_dn_under_a_missing_branch(slapd: Slapd) -> None:
    [problem] = LdapAdapter(params(slapd, user_dn=f"uid={{principal}},ou=staff,{SUFFIX}")).check()
    assert f"ou=staff,{SUFFIX}" in problem


def test_wrong_credentials_are_named_plainly(slapd: Slapd) -> None:
    [problem] = LdapAdapter(params(slapd, password=WRONG_PASSWORD)).check()
    assert problem == (
        f"the LDAP server 127.0.0.1:{slapd.port} refused the bot's bind as {BOT_DN} (invalid credentials)"
    )


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"start_tls": True}, "could not be verified"),  # the system CAs do not know the test CA
        ({"tls": "ldaps"}, "could not be verified"),
        ({"start_tls": True, "host": "localhost"}, "is not for localhost"),  # the certificate names 127.0.0.1
    ],
)
def test_tls_certificates_are_verified(slapd: Slapd, changes: dict[str, Any], problem: str) -> None:
    host = changes.pop("host", "127.0.0.1")
    if changes.pop("tls", None) == "ldaps":
        changes["url"] = f"ldaps://{host}:{slapd.tls_port}"
    else:
        changes["url"] = f"ldap://{host}:{slapd.port}"
    if host == "localhost":
        changes["ca_file"] = slapd.ca_file
    adapter = LdapAdapter(params(slapd, **changes))
    [message] = adapter.check()
    assert problem in message
    with pytest.raises(AdapterError) as failure:
        adapter.grant(grant_context("keeper"))
    assert not failure.value.retryable


def test_a_closed_port_is_a_retryable_failure(slapd: Slapd) -> None:
    port = slapd_server.free_port()
    adapter = LdapAdapter(params(slapd, url=f"ldap://127.0.0.1:{port}"))
    [problem] = adapter.check()
    assert f"127.0.0.1:{port}" in problem and "refused" in problem.lower()
    with pytest.raises(AdapterError) as failure:
        adapter.grant(grant_context("keeper"))
    assert failure.value.retryable


def test_a_server_that_never_answers_times_out_as_retryable(slapd: Slapd) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"ldap://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(AdapterError) as failure:
            LdapAdapter(params(slapd, url=url, timeout=0.5)).grant(grant_context("keeper"))
    assert failure.value.retryable and "timed out" in str(failure.value)


@pytest.mark.parametrize(
    ("code", "retryable"),
    [(51, True), (52, True), (3, True), (50, False), (32, False), (10, False), (13, False), (53, False)],
)
def test_result_codes_map_to_retryable_or_not(slapd: Slapd, code: int, retryable: bool) -> None:
    error = LdapAdapter(params(slapd))._failed("adding x", {"result": code, "description": "d", "message": "m"})
    assert error.retryable is retryable


def test_the_grant_receipt_names_what_was_added(slapd: Slapd, probe: DirectoryProbe) -> None:
    ctx = replace(grant_context(probe.principal()), resource="oncall-prod")
    adapter = LdapAdapter(params(slapd))
    receipt = adapter.grant(ctx)
    adapter.revoke(ctx, receipt)
    dn = USER_DN.format(principal=ctx.principal)
    assert receipt.data == {"group_dn": ONCALL, "attribute": "member", "value": dn}
    until = ctx.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    assert receipt.instructions == (
        f"You are a member of the LDAP group {ONCALL} as {dn} until {until}. Applications that read group "
        "membership when you log in see it from your next login."
    )
    assert receipt.credentials is None


def test_people_map_to_their_mailbox_name_unless_memberuid_cannot_hold_it(slapd: Slapd) -> None:
    adapter = LdapAdapter(params(slapd))
    posix = LdapAdapter(params(slapd, group_dn=POSIX, member_attribute="memberUid"))
    zoe, zoe_accented = Person("U1", "Zoe.Ada@Example.com"), Person("U2", "zoë@example.com")
    assert for_resource(zoe, "oncall-prod", None, None, adapter) == "zoe.ada"
    assert for_resource(zoe_accented, "oncall-prod", None, None, adapter) == "zoë"
    assert for_resource(zoe, "prod-sudo", None, None, posix) == "zoe.ada"
    with pytest.raises(Unmappable, match="POSIX user name"):
        for_resource(zoe_accented, "prod-sudo", None, None, posix)


def descriptions(admin: Connection, group: str) -> list[str]:
    return values(admin, group, "description")


@pytest.mark.parametrize("name", ["evil,ou=groups", '#x\\y<z>;"q"', "Zoë = admin", "plain"])
def test_a_grant_is_marked_listed_under_its_principal_and_unmarked_by_its_revoke(
    slapd: Slapd, admin: Connection, probe: DirectoryProbe, name: str
) -> None:
    adapter = LdapAdapter(params(slapd))
    probe.person(name)
    ctx = grant_context(name)
    receipt = adapter.grant(ctx)
    try:
        assert f"breakglass-grant {name}" in descriptions(admin, ONCALL)
        [found] = [h for h in adapter.holdings(everything=False) if h.data["value"] != KEEPER]
        assert found.principal == name and found.made_by_bot  # read back from the server's spelling of the DN
        assert adapter.verify(ctx, Receipt(data=receipt.data)) is True
    finally:
        adapter.revoke(ctx, Receipt(data=receipt.data))
    assert f"breakglass-grant {name}" not in descriptions(admin, ONCALL)
    assert adapter.verify(ctx, Receipt(data=receipt.data)) is False


def test_everything_lists_standing_members_but_never_the_placeholder(
    slapd: Slapd, admin: Connection, probe: DirectoryProbe
) -> None:
    group = f"cn=solo-{uuid.uuid4().hex[:6]},{GROUPS}"
    name = probe.principal()
    add(admin, group, ["groupOfNames"], member=USER_DN.format(principal=name))
    adapter = LdapAdapter(params(slapd, group_dn=group))
    try:
        [standing] = adapter.holdings(everything=True)
        assert (standing.principal, standing.made_by_bot) == (name, False)
        assert adapter.holdings(everything=False) == []
        adapter.revoke(grant_context(name), Receipt(data=standing.data))  # leaves the group's own DN
        assert values(admin, group, "member") == [group]
        assert adapter.holdings(everything=True) == []
    finally:
        admin.delete(group)


def test_a_bot_that_may_not_mark_still_grants_and_its_membership_looks_standing(
    slapd: Slapd, admin: Connection, probe: DirectoryProbe, caplog: pytest.LogCaptureFixture
) -> None:
    group = f"cn=legacy-{uuid.uuid4().hex[:6]},{GROUPS}"  # slapd_server's ACLs: the bot may not write its description
    add(admin, group, ["groupOfNames"], member=KEEPER)
    probe.group = group
    adapter = LdapAdapter(params(slapd, group_dn=group))
    ctx = grant_context(probe.principal())
    try:
        receipt = adapter.grant(ctx)
        assert probe.can_use(ctx, receipt)
        assert "insufficient access rights" in caplog.text
        assert "reconciliation takes the membership as standing" in caplog.text
        assert BOT_PASSWORD not in caplog.text
        assert descriptions(admin, group) == []
        assert [h.principal for h in adapter.holdings(everything=False)] == []
        assert {h.principal: h.made_by_bot for h in adapter.holdings(everything=True)} == {
            "keeper": False,
            ctx.principal: False,
        }
        assert adapter.verify(ctx, Receipt(data=receipt.data)) is True
        adapter.revoke(ctx, Receipt(data=receipt.data))
        assert not probe.can_use(ctx, receipt)
        assert adapter.verify(ctx, Receipt(data=receipt.data)) is False
    finally:
        admin.delete(group)


def test_verify_and_listing_of_a_missing_group_cannot_tell(slapd: Slapd) -> None:
    adapter = LdapAdapter(params(slapd, group_dn=f"cn=oncall-typo,{GROUPS}"))
    with pytest.raises(AdapterError):
        adapter.verify(grant_context("keeper"), Receipt())
    with pytest.raises(AdapterError):
        adapter.holdings(everything=True)


def test_members_are_named_through_user_dn_however_the_dn_is_spelt(
    slapd: Slapd, admin: Connection, probe: DirectoryProbe
) -> None:
    group = f"cn=spelling-{uuid.uuid4().hex[:6]},{GROUPS}"
    name = probe.principal()
    service = f"cn=svc-{uuid.uuid4().hex[:6]},ou=services,{SUFFIX}"  # a member user_dn does not describe
    shouted = f"UID={name},OU=People,DC=example,DC=org"  # slapd keeps the value's case: "People", not "people"
    add(admin, group, ["groupOfNames"], member=[shouted, service])
    try:
        found = {h.principal: h for h in LdapAdapter(params(slapd, group_dn=group)).holdings(everything=True)}
        assert set(found) == {name, service}
        assert found[name].data["value"].casefold() == shouted.casefold() and not found[name].made_by_bot
    finally:
        admin.delete(group)
