"""The approval keys of the policy: steps, reminders and escalation, timeouts, on-call and emergency triggers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.policy import ApprovalStep, EmergencyTrigger, parse_policy
from tests.test_policy import error_of, minimal

STEPS = """adapter: log
approval_steps:
  - name: team lead
    approvers: [S0LEADS]
  - name: security
    approvers: [U0ERIN, U0FRANK]
    required: 2"""
ONCALL = "oncall:\n  provider: pagerduty\n  api_url: http://127.0.0.1:9\n"


def test_steps_derive_the_approvers_and_the_count() -> None:
    resource = parse_policy(minimal(STEPS)).resources["db"]
    assert [s.name for s in resource.steps] == ["team lead", "security"]
    assert resource.approvers == ["S0LEADS", "U0ERIN", "U0FRANK"]  # everyone in any step: lists, reviews
    assert resource.required_approvals == 3


def test_the_shorthand_is_one_step() -> None:
    resource = parse_policy(minimal("adapter: log\napprovers: [U0ALICE01, U0BOB]\napprovals_required: 2")).resources[
        "db"
    ]
    assert resource.steps == (ApprovalStep(approvers=["U0ALICE01", "U0BOB"], required=2),)


def test_a_level_may_set_its_own_steps_or_go_back_to_one() -> None:
    body = (
        "adapter: log\napprovers: [U0ALICE01]\nlevels:\n  read: {}\n  write:\n    approval_steps:\n"
        "      - {approvers: [U0ALICE01]}\n      - {name: security, approvers: [U0ERIN]}\n"
    )
    resource = parse_policy(minimal(body)).resources["db"]
    assert len(resource.at("read").steps) == 1
    write = resource.at("write")
    assert [s.approvers for s in write.steps] == [["U0ALICE01"], ["U0ERIN"]]
    assert write.approvers == ["U0ALICE01", "U0ERIN"]
    stepped = parse_policy(minimal(STEPS + "\nlevels:\n  read: {approvers: [U0CAROL]}\n  write: {}")).resources["db"]
    assert stepped.at("read").steps == (ApprovalStep(approvers=["U0CAROL"], required=1),)
    assert len(stepped.at("write").steps) == 2


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (STEPS + "\napprovers: [U0ALICE01]", "approval_steps replaces approvers and approvals_required"),
        (STEPS + "\napprovals_required: 2", "approval_steps replaces approvers and approvals_required"),
        (STEPS.replace("required: 2", "required: 3"), "approval_steps[1].required: 3 are required but only 2"),
        ("adapter: log\napproval_steps: []", "resources.db.approval_steps: must not be empty"),
        ("adapter: log\napproval_steps:\n  - {approvers: [U0A1], bogus: 1}", "approval_steps.0.bogus: unknown key"),
        (
            "adapter: log\napproval_steps:\n  - {approvers: [U0ALICE01]}\n  - {approvers: [U0ALICE01]}",
            "2 approvals in all are required but only 1 different people",
        ),
        ("adapter: log\napprovers: [U0A1]\nremind_approvers_every: 10s", "remind_approvers_every: at least 1m"),
        ("adapter: log\napprovers: [U0A1]\nescalate_after: 30m", "escalate_after: set escalate_to too"),
        ("adapter: log\napprovers: [U0A1]\nescalate_to: [U0B1]", "escalate_to: set escalate_after too"),
        ("adapter: log\napprovers: [U0A1]\nescalate_to: [bob]\nescalate_after: 1m", "'bob' is not a Slack user id"),
        (
            "adapter: log\napprovers: [U0A1]\nescalate_to: [U0B1]\nescalate_after: 2h\npending_timeout: 1h",
            "escalate_after: must be shorter than pending_timeout",
        ),
        ("adapter: log\napprovers: [U0A1]\npending_timeout: 0", "pending_timeout"),
        ("adapter: log\napprovers: [U0A1]\noncall: {schedule: P1}", "oncall: needs the top-level oncall section"),
        ("adapter: log\napprovers: [U0A1]\nemergency: {when: always}", "emergency"),
        ("adapter: log\napprovers: [U0A1]\nemergency: {when: incident}", "emergency: `when: incident` needs"),
    ],
)
def test_a_bad_approval_key_names_its_path(body: str, expected: str) -> None:
    assert expected in error_of(minimal(body))


def test_waiting_keys_come_from_the_defaults_and_may_be_set_per_resource() -> None:
    policy = parse_policy(
        minimal(
            "adapter: log\napprovers: [U0A1]\npending_timeout: 2h",
            top="defaults:\n  remind_approvers_every: 5m\n  escalate_after: 30m\n  escalate_to: [S0ONCALL]\n",
        )
    )
    resource = policy.resources["db"]
    assert resource.remind_approvers_every == timedelta(minutes=5)
    assert resource.escalate_after == timedelta(minutes=30) and resource.escalate_to == ["S0ONCALL"]
    assert resource.pending_timeout == timedelta(hours=2)
    plain = parse_policy(minimal()).resources["db"]
    assert plain.remind_approvers_every == timedelta(minutes=15) and plain.pending_timeout == timedelta(hours=24)
    assert plain.escalate_after is None


def test_oncall_and_triggers_parse() -> None:
    body = (
        "adapter: log\napprovers: [U0A1]\noncall: {schedule: PABC123, may_approve: true, auto_approve: true}\n"
        "emergency: {when: incident, services: [PSVC1], urgency: high}"
    )
    policy = parse_policy(minimal(body, top=ONCALL))
    resource = policy.resources["db"]
    assert resource.oncall is not None and resource.oncall.auto_approve and not resource.oncall.page_on_emergency
    assert resource.emergency_trigger == EmergencyTrigger(when="incident", services=["PSVC1"], urgency="high")
    assert resource.emergency  # breakable, on a condition
    assert policy.oncall is not None and policy.oncall.provider == "pagerduty"


@pytest.mark.parametrize(
    ("incidents", "channel", "name", "expected"),
    [
        ("[C0INC1, C0INC2]", "C0INC2", "anything", True),
        ("[C0INC1]", "C0OTHER", "inc-4211", False),
        ("'^inc-'", "C0OTHER", "inc-4211-checkout", True),
        ("'^inc-'", "C0OTHER", "general", False),
        ("'^inc-'", "C0OTHER", None, False),
    ],
)
def test_incident_channels_by_id_or_name_pattern(
    incidents: str, channel: str, name: str | None, expected: bool
) -> None:
    text = minimal().replace("  audit: C0SECURITY\n", f"  audit: C0SECURITY\n  incidents: {incidents}\n")
    assert parse_policy(text).is_incident_channel(channel, name) is expected


def test_bad_channel_keys_are_named() -> None:
    bad_id = minimal().replace("  audit: C0SECURITY\n", "  audit: C0SECURITY\n  incidents: [general]\n")
    assert "channels.incidents" in error_of(bad_id)
    bad_pattern = minimal().replace("  audit: C0SECURITY\n", "  audit: C0SECURITY\n  incidents: '('\n")
    assert "channels.incidents" in error_of(bad_pattern)
    bad_mention = minimal().replace("  audit: C0SECURITY\n", "  audit: C0SECURITY\n  audit_mention: security\n")
    assert "channels.audit_mention: 'security' is not a Slack user id" in error_of(bad_mention)


@pytest.mark.parametrize(
    ("rule", "urgency", "priority", "counts"),
    [
        ({"urgency": "high"}, "high", None, True),
        ({"urgency": "high"}, "low", None, False),
        ({"urgency": "low"}, "low", None, True),
        ({"priority": "P2"}, None, "P1", True),
        ({"priority": "P2"}, None, "P2", True),
        ({"priority": "P2"}, None, "P3", False),
        ({}, "low", "P5", True),
    ],
)
def test_how_serious_an_incident_must_be(
    rule: dict[str, str], urgency: str | None, priority: str | None, counts: bool
) -> None:
    assert EmergencyTrigger(when="incident", **rule).matches(urgency, priority) is counts  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("provider", "rule", "expected"),
    [
        ("pagerduty", "priority: P2", "emergency.priority: an Opsgenie key"),
        ("opsgenie", "urgency: high", "emergency.urgency: a PagerDuty key"),
    ],
)
def test_a_seriousness_key_of_the_other_provider_is_refused(provider: str, rule: str, expected: str) -> None:
    top = f"oncall:\n  provider: {provider}\n  api_url: http://127.0.0.1:9\n"
    assert expected in error_of(
        minimal(f"adapter: log\napprovers: [U0A1]\nemergency: {{when: incident, {rule}}}", top=top)
    )
