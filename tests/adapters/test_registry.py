"""Finding and configuring adapters by name, including third-party ones installed under the entry point."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from bot.adapters.base import Adapter
from bot.adapters.log import LogAdapter
from bot.adapters.registry import GROUP, available, build, build_all, names
from bot.adapters.webhook import WebhookAdapter
from bot.policy import Policy, PolicyError, parse_policy

SECRET = "whsec-0123456789abcdef-secret"
WHERE = "resources.orders-db"


def test_the_built_in_adapters_are_installed_as_entry_points() -> None:
    points = {point.name: point for point in entry_points(group=GROUP)}
    assert {"log", "webhook"} <= set(points)
    assert points["log"].load() is LogAdapter
    assert points["webhook"].load() is WebhookAdapter


def test_available_includes_log_and_webhook() -> None:
    kinds = available()
    assert kinds["log"] is LogAdapter
    assert kinds["webhook"] is WebhookAdapter


def test_build_a_log_adapter() -> None:
    adapter = build("log", {}, WHERE, {})
    assert isinstance(adapter, LogAdapter)
    assert isinstance(adapter, Adapter)
    assert adapter.check() == []


def test_unknown_adapter_lists_the_available_ones() -> None:
    with pytest.raises(PolicyError) as caught:
        build("nosuch", {}, WHERE, {})
    message = str(caught.value)
    assert message.startswith(f"{WHERE}.adapter: unknown adapter 'nosuch'")
    assert "(available: " in message
    listed = message.split("(available: ")[1].rstrip(")").split(", ")
    assert {"log", "webhook"} <= set(listed)
    assert listed == sorted(listed)


@pytest.mark.parametrize(
    ("name", "params", "where"),
    [
        ("log", {"verbose": True}, f"{WHERE}.params.verbose"),
        ("webhook", {"secret": SECRET}, f"{WHERE}.params.url"),
        ("webhook", {"url": "https://h.example/x"}, f"{WHERE}.params.secret"),
        ("webhook", {"url": "not a url", "secret": SECRET}, f"{WHERE}.params.url"),
        ("webhook", {"url": "https://h.example/x", "secret": SECRET, "timeout": 0}, f"{WHERE}.params.timeout"),
        (
            "webhook",
            {"url": "https://h.example/x", "secret": SECRET, "headers": {"X-Breakglass-Signature": "x"}},
            f"{WHERE}.params.headers",
        ),
    ],
)
def test_bad_params_name_the_key_path(name: str, params: dict[str, object], where: str) -> None:
    with pytest.raises(PolicyError) as caught:
        build(name, params, WHERE, {})
    assert f"{where}: " in str(caught.value)


def test_interpolated_values_reach_the_adapter() -> None:
    params = {"url": "https://${HOOK_HOST}/hooks/breakglass", "secret": "${BREAKGLASS_WEBHOOK_SECRET}"}
    environ = {"HOOK_HOST": "access.internal.example", "BREAKGLASS_WEBHOOK_SECRET": SECRET}
    adapter = build("webhook", params, WHERE, environ)
    assert isinstance(adapter, WebhookAdapter)
    assert adapter.params.secret.get_secret_value() == SECRET  # type: ignore[attr-defined]
    assert str(adapter.params.url) == "https://access.internal.example/hooks/breakglass"  # type: ignore[attr-defined]
    assert SECRET not in repr(adapter)
    adapter.close()


def test_a_missing_variable_names_the_key_and_the_variable() -> None:
    params = {"url": "https://h.example/x", "secret": "${BREAKGLASS_WEBHOOK_SECRET}"}
    with pytest.raises(PolicyError) as caught:
        build("webhook", params, WHERE, {})
    assert str(caught.value) == f"{WHERE}.params.secret: environment variable BREAKGLASS_WEBHOOK_SECRET is not set"


def test_a_rejected_interpolated_secret_is_not_echoed() -> None:
    short = "tooshort-secret"  # under the 16 characters an HMAC key needs
    params = {"url": "https://h.example/x", "secret": "${BREAKGLASS_WEBHOOK_SECRET}"}
    with pytest.raises(PolicyError) as caught:
        build("webhook", params, WHERE, {"BREAKGLASS_WEBHOOK_SECRET": short})
    assert f"{WHERE}.params.secret: " in str(caught.value)
    assert short not in str(caught.value)


POLICY = """\
channels: {approvals: C0APPROVALS, audit: C0SECURITY}
resources:
  orders-db:
    adapter: log
    approvers: [S0SRELEADS]
  hooked:
    adapter: webhook
    approvers: [S0SRELEADS]
    params: {url: "https://h.example/x", secret: "${HOOK_SECRET}"}
  broken:
    adapter: nosuch
    approvers: [S0SRELEADS]
"""


def test_build_all_collects_every_problem() -> None:
    with pytest.raises(PolicyError) as caught:
        build_all(parse_policy(POLICY), {})
    message = str(caught.value)
    assert "resources.hooked.params.secret: environment variable HOOK_SECRET is not set" in message
    assert "resources.broken.adapter: unknown adapter 'nosuch'" in message


def test_build_all_builds_one_adapter_per_resource() -> None:
    policy = parse_policy(POLICY.split("  broken:")[0])
    adapters = build_all(policy, {"HOOK_SECRET": SECRET})
    assert set(adapters) == {"orders-db", "hooked"}
    assert isinstance(adapters["orders-db"], LogAdapter)
    assert isinstance(adapters["hooked"], WebhookAdapter)


PLUGIN = """
from typing import ClassVar

from bot.adapters.base import AdapterParams, Receipt


class ShellParams(AdapterParams):
    host: str


class ShellAdapter:
    name: ClassVar[str] = "shell"
    Params: ClassVar[type[AdapterParams]] = ShellParams

    def __init__(self, params):
        self.params = params

    def grant(self, ctx):
        return Receipt()

    def revoke(self, ctx, receipt):
        return None

    def check(self):
        return []
"""


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A third-party distribution on sys.path: one working adapter and one whose module is missing."""
    (tmp_path / "breakglass_test_plugin.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    info = tmp_path / "breakglass_test_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: breakglass-test-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{GROUP}]\nshell = breakglass_test_plugin:ShellAdapter\n"
        "gone = breakglass_test_plugin_missing:GoneAdapter\n"
        "log = breakglass_test_plugin:ShellAdapter\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("breakglass_test_plugin", None)


@pytest.mark.usefixtures("plugins")
def test_a_third_party_adapter_is_found_by_its_entry_point() -> None:
    kinds = available()
    assert kinds["shell"].__name__ == "ShellAdapter"
    adapter = build("shell", {"host": "${SHELL_HOST}"}, "resources.box", {"SHELL_HOST": "bastion.example"})
    assert adapter.params.host == "bastion.example"  # type: ignore[attr-defined]
    with pytest.raises(PolicyError, match=r"^resources\.box\.params\.host: "):
        build("shell", {}, "resources.box", {})


@pytest.mark.usefixtures("plugins")
def test_a_plugin_cannot_replace_a_built_in_adapter() -> None:
    assert available()["log"] is LogAdapter


@pytest.mark.usefixtures("plugins")
def test_a_broken_plugin_is_named_and_does_not_stop_the_others() -> None:
    assert {"log", "webhook", "shell", "gone"} <= set(names())
    assert {"log", "webhook", "shell"} <= set(available())
    assert isinstance(build("log", {}, WHERE, {}), LogAdapter)
    with pytest.raises(PolicyError) as caught:
        build("gone", {}, "resources.box", {})
    assert str(caught.value).startswith("resources.box.adapter: adapter 'gone' failed to load (ModuleNotFoundError")


# -- levels: every built-in adapter takes its params per level, checked under the level's key path (issue 12) -------

# For each built-in adapter: the resource's shared params, a valid read level and a write level, and a key of the
# write level with a wrong value. Building needs no server (adapters connect on use), only the driver installed.
LEVELLED: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any], str, Any]] = {
    "log": ({}, {}, {}, "verbose", True),
    "webhook": (
        {"url": "https://h.example/x", "secret": SECRET},
        {"headers": {"X-Access": "read"}},
        {"headers": {"X-Access": "write"}},
        "timeout",
        0,
    ),
    "command": ({"grant": ["/bin/true"], "revoke": ["/bin/true"]}, {}, {"timeout": 5}, "timeout", -1),
    "postgres": (
        {"host": "db.example", "database": "orders", "user": "bg"},
        {"roles": ["orders_ro"]},
        {"roles": ["orders_rw"]},
        "roles",
        ["Not A Role"],
    ),
    "mysql": (
        {"host": "db.example", "user": "bg", "target": "orders.*"},
        {"privileges": ["SELECT"]},
        {"privileges": ["SELECT", "INSERT", "UPDATE", "DELETE"]},
        "privileges",
        ["NOT A PRIVILEGE"],
    ),
    "redis": (
        {"host": "cache.example"},
        {"rules": ["~orders:*", "+@read"]},
        {"rules": ["~orders:*", "+@all"]},
        "rules",
        ["reset"],
    ),
    "aws-iam": (
        {"region": "eu-west-1", "mode": "group"},
        {"group": "orders-readers"},
        {"group": "orders-writers"},
        "mode",
        "everything",
    ),
    "ldap": (
        {
            "url": "ldap://ldap.example",
            "bind_dn": "cn=bot,dc=example",
            "password": "x" * 16,
            "user_dn": "uid={principal},ou=people,dc=example",
        },
        {"group_dn": "cn=readers,dc=example"},
        {"group_dn": "cn=writers,dc=example"},
        "group_dn",
        "",
    ),
    "kubernetes": (
        {"server": "https://k8s.example", "token": "t" * 20, "namespace": "orders", "kind": "ClusterRole"},
        {"role": "view"},
        {"role": "edit"},
        "namespace",
        "Not_A_Namespace",
    ),
}


def levelled_policy(name: str, bad: bool) -> Policy:
    shared, read, write, key, wrong = LEVELLED[name]
    levels = {"read": {"params": read}, "write": {"params": {**write, **({key: wrong} if bad else {})}}}
    document = {
        "channels": {"approvals": "C0APPROVALS", "audit": "C0SECURITY"},
        "resources": {"orders": {"adapter": name, "params": shared, "approvers": ["U0ALICE01"], "levels": levels}},
    }
    return parse_policy(json.dumps(document))


@pytest.mark.parametrize("name", sorted(LEVELLED))
def test_every_built_in_adapter_is_built_once_per_level_with_the_levels_params(name: str) -> None:
    if name not in available():
        pytest.skip(f"the {name} adapter's driver is not installed")
    adapters = build_all(levelled_policy(name, bad=False), {})
    assert set(adapters) == {"orders:read", "orders:write"}
    assert adapters["orders:read"] is not adapters["orders:write"]


@pytest.mark.parametrize("name", sorted(LEVELLED))
def test_a_levels_bad_param_is_named_by_its_level_key_path(name: str) -> None:
    if name not in available():
        pytest.skip(f"the {name} adapter's driver is not installed")
    key = LEVELLED[name][3]
    with pytest.raises(PolicyError) as caught:
        build_all(levelled_policy(name, bad=True), {})
    message = str(caught.value)
    assert f"resources.orders.levels.write.params.{key}" in message
    assert "levels.read" not in message, "the good level was blamed too"
