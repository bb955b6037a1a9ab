"""The policy file: what is accepted as written, and errors that name the key and what was expected."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from importlib import resources as package_files
from pathlib import Path

import pytest

from bot.policy import RESERVED_NAMES, Policy, PolicyError, interpolate, load_policy, parse_policy

EXAMPLE = """\
channels:
  approvals: C0APPROVALS          # approval requests are posted here
  audit: C0SECURITY               # emergency grants, failures and overdue reviews are announced here
defaults:                         # every resource inherits these unless it overrides them
  min_duration: 5m
  default_duration: 1h
  max_duration: 4h
  approvals_required: 1
review:
  required: emergency             # emergency | all | none
  remind_every: 24h
resources:
  orders-db:
    description: Orders database, read/write
    adapter: webhook
    params:
      url: https://access.internal.example/hooks/breakglass
      secret: ${BREAKGLASS_WEBHOOK_SECRET}
    approvers: [S0SRELEADS, U0ALICE01]
    approvals_required: 1
    max_duration: 2h
    reason_pattern: '(INC|CHG)-[0-9]+'
    emergency: true               # allowed to break the glass on this resource
    requesters: [S0ONCALL]        # optional; everyone may request when absent
"""


def minimal(resource: str = "adapter: log\napprovers: [U0ALICE01]", name: str = "db", top: str = "") -> str:
    """A small valid policy with one resource, whose body (and extra top-level keys) a test can change."""
    body = textwrap.indent(resource, "    ")
    return f"channels:\n  approvals: C0APPROVALS\n  audit: C0SECURITY\n{top}resources:\n  {name}:\n{body}\n"


def error_of(text: str) -> str:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text)
    return str(caught.value)


def test_the_example_is_accepted_as_written() -> None:
    policy = parse_policy(EXAMPLE)
    assert policy.channels.approvals == "C0APPROVALS"
    assert policy.channels.audit == "C0SECURITY"
    assert policy.review.required == "emergency"
    assert policy.review.remind_every == timedelta(hours=24)
    resource = policy.resource("orders-db")
    assert resource is not None
    assert resource.name == "orders-db"
    assert resource.description == "Orders database, read/write"
    assert resource.adapter == "webhook"
    assert resource.params == {
        "url": "https://access.internal.example/hooks/breakglass",
        "secret": "${BREAKGLASS_WEBHOOK_SECRET}",
    }
    assert resource.approvers == ["S0SRELEADS", "U0ALICE01"]
    assert resource.requesters == ["S0ONCALL"]
    assert resource.limits == (timedelta(minutes=5), timedelta(hours=1), timedelta(hours=2))
    assert resource.required_approvals == 1
    assert resource.emergency is True
    assert resource.reason_pattern == "(INC|CHG)-[0-9]+"
    assert resource.allowed_range() == "5m to 2h"
    assert resource.reason_matches("see INC-42")
    assert not resource.reason_matches("no ticket")
    assert policy.needs_review(emergency=True)
    assert not policy.needs_review(emergency=False)
    assert policy.resource("nope") is None


def test_the_packaged_demo_policy_is_valid() -> None:
    text = package_files.files("bot").joinpath("defaults/breakglass.yml").read_text(encoding="utf-8")
    policy = parse_policy(text)
    assert set(policy.resources) == {"orders-db", "payments-admin"}
    assert policy.resources["payments-admin"].required_approvals == 2
    # Adapters that need no server: the demo runs on a fresh machine.
    assert {resource.adapter for resource in policy.resources.values()} == {"demo-db", "log"}
    orders = policy.resources["orders-db"]
    assert orders.level_names == ["read", "write"] and orders.at("write").params["capture"] is True
    assert orders.at("write").emergency and not orders.at("read").emergency


def test_resources_inherit_defaults_and_omitted_sections_have_theirs() -> None:
    policy = parse_policy(minimal())
    resource = policy.resources["db"]
    assert resource.limits == (timedelta(minutes=5), timedelta(hours=1), timedelta(hours=4))
    assert resource.required_approvals == 1
    assert resource.emergency is False
    assert resource.requesters is None
    assert resource.reason_matches("anything at all")
    assert policy.review.required == "emergency"


def test_resource_overrides_beat_defaults() -> None:
    top = "defaults:\n  approvals_required: 2\n  max_duration: 8h\n"
    policy = parse_policy(minimal("adapter: log\napprovers: [S0SRELEADS]\napprovals_required: 3", top=top))
    assert policy.resources["db"].required_approvals == 3
    assert policy.resources["db"].limits[2] == timedelta(hours=8)


@pytest.mark.parametrize(("required", "emergency", "expected"), [("all", False, True), ("none", True, False)])
def test_review_requirement(required: str, emergency: bool, expected: bool) -> None:
    policy = parse_policy(minimal(top=f"review:\n  required: {required}\n"))
    assert policy.needs_review(emergency) is expected


def test_whole_seconds_are_a_duration() -> None:
    policy = parse_policy(minimal("adapter: log\napprovers: [U0ALICE01]\nmax_duration: 7200"))
    assert policy.resources["db"].limits[2] == timedelta(hours=2)


@pytest.mark.parametrize(
    ("body", "top", "where", "expected"),
    [
        ("adapter: log\napprovers: [U0ALICE01]\nmax_duration: 4x", "", "resources.db.max_duration", "'4x'"),
        ("adapter: log\napprovers: [U0ALICE01]\nmax_duration: 1.5", "", "resources.db.max_duration", "90s, 45m"),
        ("adapter: log\napprovers: [U0ALICE01]\nmin_duration: 0m", "", "resources.db.min_duration", "zero"),
        (
            "adapter: log\napprovers: [U0ALICE01]",
            "defaults:\n  max_duration: soon\n",
            "defaults.max_duration",
            "'soon'",
        ),
        ("adapter: log\napprovers: [U0ALICE01]", "review:\n  remind_every: daily\n", "review.remind_every", "90s"),
    ],
)
def test_bad_duration_names_the_key_and_the_format(body: str, top: str, where: str, expected: str) -> None:
    message = error_of(minimal(body, top=top))
    assert f"{where}: " in message
    assert expected in message


@pytest.mark.parametrize(
    ("body", "top", "where"),
    [
        ("adapter: log\napprovers: [U0ALICE01]\napprovers_group: [S0X]", "", "resources.db.approvers_group"),
        ("adapter: log\napprovers: [U0ALICE01]", "defaults:\n  max_durations: 4h\n", "defaults.max_durations"),
        ("adapter: log\napprovers: [U0ALICE01]", "extras: 1\n", "extras"),
        ("adapter: log\napprovers: [U0ALICE01]", "review:\n  remind: 1h\n", "review.remind"),
    ],
)
def test_unknown_key_is_named(body: str, top: str, where: str) -> None:
    assert f"{where}: unknown key" in error_of(minimal(body, top=top))


def test_missing_channels() -> None:
    text = "resources:\n  db:\n    adapter: log\n    approvers: [U0ALICE01]\n"
    assert "channels: required key is missing" in error_of(text)


def test_missing_resources() -> None:
    assert "resources: required key is missing" in error_of("channels: {approvals: C0A1, audit: C0B1}\n")


def test_empty_resources() -> None:
    assert "resources: must not be empty" in error_of("channels: {approvals: C0A1, audit: C0B1}\nresources: {}\n")


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ("approvers: [U0ALICE01]", "resources.db.adapter"),
        ("adapter: log", "resources.db.approvers"),
    ],
)
def test_missing_resource_key(body: str, where: str) -> None:
    assert f"{where}: required key is missing" in error_of(minimal(body))


def test_empty_approvers() -> None:
    assert "resources.db.approvers: must not be empty" in error_of(minimal("adapter: log\napprovers: []"))


@pytest.mark.parametrize(
    ("body", "where", "bad"),
    [
        ("adapter: log\napprovers: [alice]", "resources.db.approvers", "'alice'"),
        ("adapter: log\napprovers: [U0ALICE01, C0CHANNEL]", "resources.db.approvers", "'C0CHANNEL'"),
        ("adapter: log\napprovers: [U0ALICE01]\nrequesters: ['@oncall']", "resources.db.requesters", "'@oncall'"),
    ],
)
def test_bad_slack_user_ids(body: str, where: str, bad: str) -> None:
    message = error_of(minimal(body))
    assert f"{where}: {bad} is not a Slack user id" in message
    assert "(S…)" in message


def test_bad_channel_id() -> None:
    text = minimal().replace("approvals: C0APPROVALS", "approvals: '#approvals'")
    assert "channels.approvals: '#approvals' is not a Slack channel id (C…, G…)" in error_of(text)


def test_bad_regex_names_the_key() -> None:
    message = error_of(minimal("adapter: log\napprovers: [U0ALICE01]\nreason_pattern: '(INC-[0-9]+'"))
    assert "resources.db.reason_pattern: not a valid regular expression" in message


@pytest.mark.parametrize("name", sorted(RESERVED_NAMES))
def test_reserved_resource_names_are_refused(name: str) -> None:
    message = error_of(minimal(name=name))
    assert f"resources.{name}: '{name}' is a /breakglass command" in message


@pytest.mark.parametrize("name", ["Orders", "orders db", "-db", "db/1"])
def test_resource_names_are_lower_case_words(name: str) -> None:
    message = error_of(minimal(name=f"'{name}'"))
    assert f"resources.{name}: a resource name is lower-case" in message


def test_min_above_max_is_refused_with_the_values() -> None:
    message = error_of(minimal("adapter: log\napprovers: [U0ALICE01]\nmin_duration: 3h\nmax_duration: 2h"))
    assert "resources.db: expected min_duration <= default_duration <= max_duration" in message
    assert "3h, 1h, 2h" in message


def test_default_outside_the_limits_is_refused() -> None:
    message = error_of(minimal("adapter: log\napprovers: [U0ALICE01]\ndefault_duration: 5h"))
    assert "resources.db: expected min_duration <= default_duration <= max_duration" in message


@pytest.mark.parametrize("count", [0, 11])
def test_approvals_required_range(count: int) -> None:
    message = error_of(minimal(f"adapter: log\napprovers: [U0ALICE01]\napprovals_required: {count}"))
    assert "resources.db.approvals_required: " in message


@pytest.mark.parametrize(("written", "meant"), [(None, "bot"), ("bot", "bot"), ("all", "all"), ("off", "off")])
def test_reconcile_is_bot_all_or_off_and_a_bare_off_is_not_lost_to_yaml(written: str | None, meant: str) -> None:
    line = f"\nreconcile: {written}" if written else ""
    assert parse_policy(minimal(f"adapter: log\napprovers: [U0ALICE01]{line}")).resources["db"].reconcile == meant


@pytest.mark.parametrize("written", ["everything", "on", "yes", "true"])
def test_a_reconcile_value_that_is_not_one_of_three_names_its_key(written: str) -> None:
    message = error_of(minimal(f"adapter: log\napprovers: [U0ALICE01]\nreconcile: {written}"))
    assert "resources.db.reconcile: " in message


def test_review_required_is_one_of_three() -> None:
    message = error_of(minimal(top="review:\n  required: sometimes\n"))
    assert "review.required: " in message
    assert "'emergency'" in message


def test_invalid_yaml_gives_the_line() -> None:
    text = "channels:\n  approvals: C0A1\n  audit: [C0B1\nresources: {}\n"
    message = error_of(text)
    assert message.startswith("breakglass.yml line ")
    assert "not valid YAML" in message
    line = int(message.removeprefix("breakglass.yml line ").split(":")[0])
    assert 3 <= line <= 4


def test_invalid_yaml_tab_indentation_line() -> None:
    text = "channels:\n  approvals: C0A1\n\taudit: C0B1\n"
    assert error_of(text).startswith("breakglass.yml line 3: not valid YAML")


@pytest.mark.parametrize("text", ["- channels\n- resources\n", "just a string\n", "", "42\n"])
def test_the_top_must_be_a_mapping(text: str) -> None:
    assert error_of(text) == "breakglass.yml: expected a mapping with channels and resources at the top"


@pytest.mark.parametrize("defaults", ["defaults: [1]\n", "defaults: 5\n", "defaults: four hours\n"])
def test_defaults_that_are_not_a_mapping_are_a_policy_error(defaults: str) -> None:
    assert "defaults: " in error_of(minimal(top=defaults))


def test_resource_that_is_not_a_mapping() -> None:
    assert "resources.db: " in error_of("channels: {approvals: C0A1, audit: C0B1}\nresources:\n  db: 5\n")


def test_every_problem_is_listed_at_once() -> None:
    text = minimal("approvers: [alice]\nfrobnicate: yes").replace("C0SECURITY", "security")
    message = error_of(text)
    for where in ("channels.audit", "resources.db.adapter", "resources.db.approvers", "resources.db.frobnicate"):
        assert f"{where}: " in message


def test_errors_name_the_source() -> None:
    with pytest.raises(PolicyError, match=r"^/etc/bg\.yml: resources\.db\.adapter"):
        parse_policy(minimal("approvers: [U0ALICE01]"), source="/etc/bg.yml")


def test_load_policy_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "breakglass.yml"
    path.write_text(EXAMPLE, encoding="utf-8")
    assert isinstance(load_policy(path), Policy)


def test_load_policy_names_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yml"
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value).startswith(f"{path}: cannot read the policy file")


def test_load_policy_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "breakglass.yml"
    path.write_text(minimal("adapter: log"), encoding="utf-8")
    with pytest.raises(PolicyError, match=rf"^{path}: resources\.db\.approvers: required key is missing"):
        load_policy(path)


def test_interpolate_replaces_variables_everywhere() -> None:
    params = {
        "url": "https://${HOST}/hooks/${PATH_PART}",
        "secret": "${SECRET}",
        "headers": {"Authorization": "Bearer ${TOKEN}"},
        "list": ["${HOST}", 3],
        "timeout": 5,
        "plain": "$HOST and $ {HOST}",
    }
    environ = {"HOST": "h.example", "PATH_PART": "bg", "SECRET": "s3", "TOKEN": "t0k"}
    assert interpolate(params, environ, "resources.db.params") == {
        "url": "https://h.example/hooks/bg",
        "secret": "s3",
        "headers": {"Authorization": "Bearer t0k"},
        "list": ["h.example", 3],
        "timeout": 5,
        "plain": "$HOST and $ {HOST}",
    }


def test_interpolate_does_not_expand_twice() -> None:
    assert interpolate({"a": "${A}"}, {"A": "${B}", "B": "no"}, "p") == {"a": "${B}"}


def test_interpolate_leaves_the_input_alone() -> None:
    params = {"secret": "${S}", "nested": {"x": "${S}"}}
    interpolate(params, {"S": "v"}, "p")
    assert params == {"secret": "${S}", "nested": {"x": "${S}"}}


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"secret": "${MISSING_VAR}"}, "resources.db.params.secret"),
        ({"headers": {"X-Key": "${MISSING_VAR}"}}, "resources.db.params.headers.X-Key"),
        ({"hosts": ["ok", "${MISSING_VAR}"]}, "resources.db.params.hosts[1]"),
    ],
)
def test_interpolate_names_the_key_path_and_the_variable(params: dict[str, object], where: str) -> None:
    with pytest.raises(PolicyError) as caught:
        interpolate(params, {}, "resources.db.params")
    assert str(caught.value) == f"{where}: environment variable MISSING_VAR is not set"


def test_interpolate_never_puts_a_value_into_the_error() -> None:
    environ = {"SECRET_PART": "hunter2-very-secret"}
    with pytest.raises(PolicyError) as caught:
        interpolate({"secret": "${SECRET_PART}${MISSING_VAR}"}, environ, "resources.db.params")
    assert "MISSING_VAR" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_a_yaml_boolean_key_is_named_instead_of_silently_lost() -> None:
    text = (
        "channels: {approvals: C0APPROVALS, audit: C0AUDIT}\n"
        "resources:\n  orders-db:\n    adapter: log\n    approvers: [U0ALICE01]\n    params:\n      on: orders.*\n"
    )
    with pytest.raises(PolicyError) as refused:
        parse_policy(text)
    assert str(refused.value) == (
        "breakglass.yml: resources.orders-db.params: the key True is not a string "
        "(YAML reads on/off/yes/no as booleans); put it in quotes"
    )


# -- levels (issue 12) ----------------------------------------------------------------------------------------------

LEVELS = """adapter: log
params: {note: base, keep: yes-please}
approvers: [U0ALICE01]
levels:
  read: {params: {note: read}, max_duration: 4h}
  write:
    params: {note: write}
    approvals_required: 2
    max_duration: 30m
    emergency: true
    approvers: [U0CAROL, U0DAVE]"""


def test_a_level_merges_its_params_over_the_resources_and_overrides_only_what_it_sets() -> None:
    resource = parse_policy(minimal(LEVELS)).resources["db"]
    assert resource.level_names == ["read", "write"]
    read, write = resource.at(None), resource.at("write")
    assert read.level == "read" and read.label == "db:read", "no level named is the first level"
    assert read.params == {"note": "read", "keep": "yes-please"}
    assert write.params == {"note": "write", "keep": "yes-please"}
    assert (read.required_approvals, write.required_approvals) == (1, 2)
    assert (read.approvers, write.approvers) == (["U0ALICE01"], ["U0CAROL", "U0DAVE"])
    assert (read.emergency, write.emergency) == (False, True)
    assert write.limits == (timedelta(minutes=5), timedelta(minutes=30), timedelta(minutes=30))
    assert write.lesser() == ["read"] and read.lesser() == []
    with pytest.raises(KeyError):
        resource.at("admin")


def test_a_resource_without_levels_is_one_unnamed_level() -> None:
    policy = parse_policy(minimal())
    resource = policy.resources["db"]
    assert resource.at(None) is resource and resource.level is None and resource.label == "db"
    assert policy.resource("db", "read") is None
    assert [r.label for r in policy.grantables()] == ["db"]


@pytest.mark.parametrize(
    ("levels", "expected"),
    [
        ("levels: {}", "resources.db.levels: must not be empty"),
        ("levels: {Write: {}}", "resources.db.levels: 'Write' is not a level name"),
        ("levels: {w: {max_duration: 1m}}", "resources.db.levels.w: expected min_duration <= default_duration"),
        ("levels: {w: {bogus: 1}}", "resources.db.levels.w.bogus: unknown key"),
        ("levels: {w: {reason_pattern: '('}}", "resources.db.levels.w.reason_pattern: not a valid regular expression"),
        ("levels: {w: {approvers: []}}", "resources.db.levels.w.approvers: must not be empty"),
        ("alert_on: ['(?i)drop', '(']", "resources.db.alert_on: [1] '(' is not a valid regular expression"),
        ("activity_every: 1s", "resources.db.activity_every: at least 5s"),
    ],
)
def test_a_bad_level_or_capture_key_names_its_path(levels: str, expected: str) -> None:
    assert expected in error_of(minimal(f"adapter: log\napprovers: [U0ALICE01]\n{levels}"))


def test_activity_every_comes_from_the_defaults() -> None:
    policy = parse_policy(minimal(top="defaults: {activity_every: 30s}\n"))
    assert policy.resources["db"].activity_every == timedelta(seconds=30)
    assert parse_policy(minimal()).resources["db"].activity_every == timedelta(seconds=60)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (
            "adapter: log\napprovers: [U0ALICE01]\napprovals_required: 2",
            "resources.db.approvals_required: 2 are required",
        ),
        (LEVELS.replace("U0CAROL, U0DAVE", "U0CAROL"), "resources.db.levels.write.approvals_required: 2 are"),
    ],
)
def test_more_approvals_than_listed_approvers_is_refused(body: str, where: str) -> None:
    assert where in error_of(minimal(body))
    # A group may hold any number of people, so it is not counted.
    assert parse_policy(minimal(body.replace("[U0ALICE01]", "[S0SRELEADS]").replace("[U0CAROL]", "[S0SRELEADS]")))
