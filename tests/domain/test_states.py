"""The life of a request: which moves exist, and that every road out of access ends in a confirmed revoke."""

from __future__ import annotations

import itertools

import pytest

from bot.domain.states import FINAL, HOLDS_ACCESS, OPEN, TRANSITIONS, Status, can_move

ALL_MOVES = [(source, target) for source, targets in TRANSITIONS.items() for target in sorted(targets)]


def reachable(start: Status) -> set[Status]:
    seen: set[Status] = set()
    todo = [start]
    while todo:
        for target in TRANSITIONS.get(todo.pop(), frozenset()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


@pytest.mark.parametrize(("source", "target"), ALL_MOVES)
def test_every_listed_transition_is_allowed(source: Status, target: Status) -> None:
    assert can_move(source, target)


def test_nothing_else_is_allowed() -> None:
    allowed = set(ALL_MOVES)
    for source, target in itertools.product(Status, Status):
        assert can_move(source, target) == ((source, target) in allowed), (source, target)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (Status.PENDING, Status.APPROVED),
        (Status.PENDING, Status.DENIED),
        (Status.PENDING, Status.CANCELLED),
        (Status.PENDING, Status.TIMED_OUT),
        (Status.APPROVED, Status.GRANTING),
        (Status.GRANTING, Status.ACTIVE),
        (Status.GRANTING, Status.GRANT_FAILED),
        (Status.GRANTING, Status.REVOKING),
        (Status.REVOKING, Status.GRANT_FAILED),
        (Status.ACTIVE, Status.REVOKING),
        (Status.REVOKING, Status.EXPIRED),
        (Status.REVOKING, Status.REVOKED),
        (Status.REVOKING, Status.REVOKE_FAILED),
        (Status.REVOKE_FAILED, Status.REVOKING),
    ],
)
def test_the_documented_life_of_a_request(source: Status, target: Status) -> None:
    assert can_move(source, target)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (Status.ACTIVE, Status.REVOKED),  # never without claiming the revoke first
        (Status.ACTIVE, Status.EXPIRED),
        (Status.REVOKE_FAILED, Status.REVOKED),  # only after a confirmed retry
        (Status.PENDING, Status.PENDING),
        (Status.DENIED, Status.APPROVED),
        (Status.EXPIRED, Status.ACTIVE),
    ],
)
def test_shortcuts_are_not_allowed(source: Status, target: Status) -> None:
    assert not can_move(source, target)


@pytest.mark.parametrize("final", sorted(FINAL))
def test_final_states_have_no_way_out(final: Status) -> None:
    assert final not in TRANSITIONS or not TRANSITIONS[final]
    assert not any(can_move(final, target) for target in Status)


@pytest.mark.parametrize("status", sorted(set(Status) - FINAL))
def test_every_other_state_has_a_way_out(status: Status) -> None:
    assert TRANSITIONS.get(status)
    assert reachable(status) & FINAL


@pytest.mark.parametrize("status", sorted(HOLDS_ACCESS))
def test_states_holding_access_all_end_after_a_revoke(status: Status) -> None:
    ends = reachable(status) & FINAL
    assert ends <= {Status.EXPIRED, Status.REVOKED, Status.GRANT_FAILED}
    assert {Status.EXPIRED, Status.REVOKED} <= ends or status is Status.GRANTING


@pytest.mark.parametrize("status", sorted(HOLDS_ACCESS))
def test_states_holding_access_can_only_move_towards_revoking(status: Status) -> None:
    # No move out of a state with access may land somewhere that forgets the access. The one exception is a grant
    # the backend refused outright: there is nothing to forget.
    for target in TRANSITIONS[status]:
        if target in HOLDS_ACCESS:
            continue
        assert status is Status.REVOKING or (status, target) == (Status.GRANTING, Status.GRANT_FAILED)


def test_open_and_final_split_every_status() -> None:
    assert set(Status) == OPEN | FINAL
    assert not OPEN & FINAL
    assert HOLDS_ACCESS <= OPEN


def test_transitions_only_name_real_statuses() -> None:
    for source, targets in TRANSITIONS.items():
        assert isinstance(source, Status)
        assert all(isinstance(target, Status) for target in targets)
