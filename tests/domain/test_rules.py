"""Whether an ask, a decision, a revoke or a review is allowed, and what the person is told when not."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.domain.commands import Ask
from bot.domain.rules import (
    MAX_REASON,
    Forbidden,
    Refused,
    check_account,
    check_ask,
    check_decision,
    check_review_party,
    check_reviewable,
    check_reviews_settled,
    check_revoke,
    check_sign_off,
    find_resource,
    plainly_requester,
)
from bot.domain.states import ReviewStatus, Status
from bot.policy import Policy, Resource, parse_policy

POLICY_YAML = """
channels:
  approvals: C0APPROVALS
  audit: C0SECURITY
defaults:
  min_duration: 5m
  default_duration: 1h
  max_duration: 4h
resources:
  orders-db:
    adapter: log
    approvers: [S0SRELEADS, U0ALICE01]
    max_duration: 2h
    reason_pattern: '(INC|CHG)-[0-9]+'
    emergency: true
  payments-admin:
    adapter: log
    approvers: [S0SRELEADS]
    min_duration: 10m
    default_duration: 30m
    max_duration: 1h
"""


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(POLICY_YAML)


def ask(
    resource: str = "orders-db", duration: str | None = "1h", reason: str = "INC-42 down", emergency: bool = False
) -> Ask:
    return Ask(resource=resource, duration=duration, reason=reason, emergency=emergency)


def resolve(policy: Policy, request: Ask) -> tuple[Resource, timedelta]:
    resource = find_resource(policy, request.resource, lambda _: True)
    return resource, check_ask(resource, request)


def refusal(policy: Policy, request: Ask) -> str:
    with pytest.raises(Refused) as caught:
        resolve(policy, request)
    return str(caught.value)


def test_an_acceptable_ask_resolves_to_its_resource_and_duration(policy: Policy) -> None:
    resource, duration = resolve(policy, ask(duration="1h30m"))
    assert resource.name == "orders-db"
    assert duration == timedelta(hours=1, minutes=30)


def test_default_duration_is_used_when_omitted(policy: Policy) -> None:
    assert resolve(policy, ask(duration=None))[1] == timedelta(hours=1)
    assert resolve(policy, ask("payments-admin", None, "fix a refund"))[1] == timedelta(minutes=30)


@pytest.mark.parametrize("duration", ["5m", "2h"])
def test_the_limits_themselves_are_allowed(policy: Policy, duration: str) -> None:
    resolve(policy, ask(duration=duration))


def test_unknown_resource_names_the_available_ones(policy: Policy) -> None:
    message = refusal(policy, ask("billing-db"))
    assert "'billing-db'" in message
    assert "orders-db, payments-admin" in message


def test_a_typo_names_only_the_resources_this_person_may_request(policy: Policy) -> None:
    with pytest.raises(Refused) as caught:
        find_resource(policy, "billing-db", lambda r: r.name == "payments-admin")
    assert "payments-admin" in str(caught.value) and "orders-db" not in str(caught.value)
    with pytest.raises(Refused) as caught:
        find_resource(policy, "billing-db", lambda _: False)
    assert "orders-db" not in str(caught.value) and "payments-admin" not in str(caught.value)


def test_whether_someone_may_request_is_known_without_a_lookup_only_when_no_group_decides() -> None:
    policy = parse_policy(
        POLICY_YAML.replace("    emergency: true\n", "    emergency: true\n    requesters: [S0ONCALL, U0DIRECT]\n")
    )
    gated, open_to_all = policy.resources["orders-db"], policy.resources["payments-admin"]
    assert plainly_requester("U0ANYONE", open_to_all) is True
    assert plainly_requester("U0DIRECT", gated) is True
    assert plainly_requester("U0ANYONE", gated) is None  # a group decides: looked up after the ack
    only_people = gated.model_copy(update={"requesters": ["U0DIRECT"]})
    assert plainly_requester("U0ANYONE", only_people) is False


@pytest.mark.parametrize(("duration", "shown"), [("3h", "3h"), ("4m", "4m"), ("1d", "1d"), ("121m", "2h1m")])
def test_duration_outside_the_limits_says_the_allowed_range(policy: Policy, duration: str, shown: str) -> None:
    message = refusal(policy, ask(duration=duration))
    assert shown in message
    assert "5m to 2h" in message


def test_duration_outside_a_resources_own_limits(policy: Policy) -> None:
    message = refusal(policy, ask("payments-admin", "5m", "refund"))
    assert "10m to 1h" in message


@pytest.mark.parametrize("duration", ["1x", "0m", "1h30", "400d"])
def test_unreadable_duration_says_the_allowed_range(policy: Policy, duration: str) -> None:
    message = refusal(policy, ask(duration=duration))
    assert f"'{duration}'" in message
    assert "5m to 2h" in message


def test_missing_reason_is_refused_and_hints_the_pattern(policy: Policy) -> None:
    message = refusal(policy, ask(reason=""))
    assert "reason is missing" in message
    assert "(INC|CHG)-[0-9]+" in message


def test_missing_reason_without_pattern(policy: Policy) -> None:
    message = refusal(policy, ask("payments-admin", None, ""))
    assert "reason is missing" in message
    assert "matching" not in message


def test_reason_not_matching_the_pattern_names_the_pattern(policy: Policy) -> None:
    message = refusal(policy, ask(reason="checkout is failing"))
    assert "`(INC|CHG)-[0-9]+`" in message
    assert "orders-db" in message


def test_reason_pattern_matches_anywhere_in_the_reason(policy: Policy) -> None:
    resolve(policy, ask(reason="checkout failing, see CHG-7 rollout"))


def test_over_long_reason_is_refused(policy: Policy) -> None:
    resolve(policy, ask(reason="INC-1 " + "x" * (MAX_REASON - 6)))
    message = refusal(policy, ask(reason="INC-1 " + "x" * (MAX_REASON - 5)))
    assert f"at most {MAX_REASON}" in message


def test_emergency_is_allowed_where_the_policy_says_so(policy: Policy) -> None:
    resource, _ = resolve(policy, ask(emergency=True))
    assert resource.emergency is True


def test_emergency_is_refused_on_a_resource_without_it(policy: Policy) -> None:
    message = refusal(policy, ask("payments-admin", "30m", "refund", emergency=True))
    assert "payments-admin does not allow emergency access" in message
    assert "--emergency" in message
    with pytest.raises(Forbidden):  # an attempt on something forbidden, not a typo: audited and counted
        resolve(policy, ask("payments-admin", "30m", "refund", emergency=True))


def test_a_resource_one_may_not_request_is_answered_as_if_it_did_not_exist(policy: Policy) -> None:
    only_payments = lambda r: r.name == "payments-admin"  # noqa: E731
    with pytest.raises(Forbidden) as forbidden:
        find_resource(policy, "orders-db", only_payments)
    with pytest.raises(Refused) as missing:
        find_resource(policy, "orders-dc", only_payments)

    assert not isinstance(missing.value, Forbidden)  # a typo is not an attempt on something forbidden
    assert str(forbidden.value).replace("orders-db", "X") == str(missing.value).replace("orders-dc", "X")
    assert find_resource(policy, "payments-admin", only_payments).name == "payments-admin"


def decide(status: Status = Status.PENDING, actor: str = "U0BOB", is_approver: bool = True) -> None:
    check_decision(
        actor=actor, requester="U0ZOE", status=status, request_id=7, is_approver=is_approver, resource="orders-db"
    )


def test_an_approver_may_decide_someone_elses_pending_request() -> None:
    decide()


@pytest.mark.parametrize("status", sorted(set(Status) - {Status.PENDING}))
def test_only_pending_requests_can_be_decided(status: Status) -> None:
    with pytest.raises(Refused) as caught:
        decide(status)
    assert "#7" in str(caught.value)
    assert status.value.replace("_", " ") in str(caught.value)


def test_nobody_approves_their_own_request() -> None:
    with pytest.raises(Refused, match="your own request"):
        decide(actor="U0ZOE")


def test_only_approvers_decide() -> None:
    with pytest.raises(Refused, match="not an approver for orders-db"):
        decide(is_approver=False)


@pytest.mark.parametrize("status", [Status.ACTIVE, Status.PENDING])
@pytest.mark.parametrize(("actor", "is_approver"), [("U0ZOE", False), ("U0BOB", True), ("U0ZOE", True)])
def test_holder_or_approver_may_revoke(status: Status, actor: str, is_approver: bool) -> None:
    check_revoke(actor=actor, holder="U0ZOE", is_approver=is_approver, status=status, request_id=7)


def test_a_stranger_may_not_revoke() -> None:
    with pytest.raises(Refused, match="Only the holder or an approver"):
        check_revoke(actor="U0EVE", holder="U0ZOE", is_approver=False, status=Status.ACTIVE, request_id=7)


@pytest.mark.parametrize("status", [Status.REVOKING, Status.REVOKE_FAILED])
def test_revoke_in_progress_is_not_started_again(status: Status) -> None:
    with pytest.raises(Refused, match="already being revoked"):
        check_revoke(actor="U0ZOE", holder="U0ZOE", is_approver=False, status=status, request_id=7)


@pytest.mark.parametrize("status", [Status.APPROVED, Status.GRANTING])
def test_access_being_granted_is_revoked_once_active(status: Status) -> None:
    with pytest.raises(Refused, match="being granted right now"):
        check_revoke(actor="U0ZOE", holder="U0ZOE", is_approver=False, status=status, request_id=7)


@pytest.mark.parametrize(
    "status",
    [Status.EXPIRED, Status.REVOKED, Status.DENIED, Status.CANCELLED, Status.TIMED_OUT, Status.GRANT_FAILED],
)
def test_nothing_to_revoke_once_access_is_gone_or_never_came(status: Status) -> None:
    with pytest.raises(Refused, match="no access to revoke") as caught:
        check_revoke(actor="U0ZOE", holder="U0ZOE", is_approver=False, status=status, request_id=7)
    assert status.value.replace("_", " ") in str(caught.value)


@pytest.mark.parametrize(
    "status", [Status.ACTIVE, Status.REVOKING, Status.REVOKE_FAILED, Status.EXPIRED, Status.REVOKED]
)
@pytest.mark.parametrize(("actor", "may_sign_off"), [("U0ZOE", False), ("U0BOB", True)])
def test_holder_or_a_signer_may_review_what_granted_access(status: Status, actor: str, may_sign_off: bool) -> None:
    check_review_party(actor=actor, holder="U0ZOE", may_sign_off=may_sign_off, request_id=7)
    check_reviewable(status=status, granted=True, request_id=7)


def test_a_stranger_may_not_review() -> None:
    with pytest.raises(Refused, match="Only the holder of request #7 writes its review"):
        check_review_party(actor="U0EVE", holder="U0ZOE", may_sign_off=False, request_id=7)


@pytest.mark.parametrize("status", [Status.PENDING, Status.APPROVED, Status.DENIED, Status.CANCELLED, Status.TIMED_OUT])
def test_nothing_to_review_when_access_was_never_granted(status: Status) -> None:
    with pytest.raises(Refused, match="never granted access"):
        check_reviewable(status=status, granted=False, request_id=7)


@pytest.mark.parametrize("status", [Status.REVOKING, Status.REVOKE_FAILED, Status.EXPIRED])
def test_a_grant_being_undone_or_taken_over_too_late_never_gave_access_to_review(status: Status) -> None:
    with pytest.raises(Refused, match="never granted access"):
        check_reviewable(status=status, granted=False, request_id=7)


@pytest.mark.parametrize("review", [None, ReviewStatus.DUE])
def test_the_holder_writes_the_account_once(review: ReviewStatus | None) -> None:
    check_account(review=review, request_id=7)
    for written in (ReviewStatus.WRITTEN, ReviewStatus.DONE):
        with pytest.raises(Refused, match="cannot sign off your own review"):
            check_account(review=written, request_id=7)


def test_a_sign_off_needs_the_account_then_ended_access_and_happens_once() -> None:
    for awaited in (None, ReviewStatus.DUE):
        with pytest.raises(Refused, match="account of request #7 is awaited"):
            check_sign_off(review=awaited, holds_access=False, reviewer=None, request_id=7)
    with pytest.raises(Refused, match="still holds access"):
        check_sign_off(review=ReviewStatus.WRITTEN, holds_access=True, reviewer=None, request_id=7)
    with pytest.raises(Refused, match="already signed off by <@U0ANN>"):
        check_sign_off(review=ReviewStatus.DONE, holds_access=False, reviewer="U0ANN", request_id=7)
    check_sign_off(review=ReviewStatus.WRITTEN, holds_access=False, reviewer=None, request_id=7)


def test_an_overdue_account_blocks_new_requests_and_approvals_naming_the_review() -> None:
    check_reviews_settled(overdue=None, resource=None, block_after=timedelta(days=7))
    check_reviews_settled(overdue=3, resource="orders-db", block_after=None)
    with pytest.raises(Refused, match=r"Your review of request #3 \(orders-db:write\) is overdue by more than 7d"):
        check_reviews_settled(overdue=3, resource="orders-db:write", block_after=timedelta(days=7))
    with pytest.raises(Refused, match=r"#9 cannot be approved until they do"):
        check_reviews_settled(overdue=3, resource="orders-db", block_after=timedelta(days=7), approving=9)
