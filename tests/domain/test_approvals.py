"""Counting approvals against ordered steps."""

from __future__ import annotations

from bot.domain.approvals import Cast, mention, standing, to_ask
from bot.policy import ApprovalStep

LEAD = ApprovalStep(name="team lead", approvers=["S0LEADS"])
SECURITY = ApprovalStep(name="security", approvers=["U0ERIN", "U0FRANK"], required=2)


def test_steps_are_satisfied_in_order() -> None:
    assert standing([LEAD, SECURITY], []).waiting == 0
    after_lead = standing([LEAD, SECURITY], [Cast("U0ALICE", True, 0)])
    assert after_lead.waiting == 1 and after_lead.approved == (("U0ALICE",), ())
    assert after_lead.still_needed(1) == 2
    done = standing([LEAD, SECURITY], [Cast("U0ALICE", True, 0), Cast("U0ERIN", True, 1), Cast("U0FRANK", True, 1)])
    assert done.complete and done.waiting is None


def test_one_denial_at_any_step_ends_the_round() -> None:
    denied = standing([LEAD, SECURITY], [Cast("U0ALICE", True, 0), Cast("U0ERIN", False, 1)])
    assert denied.denied_by == "U0ERIN" and not denied.complete and denied.waiting is None


def test_an_approval_that_no_longer_counts_makes_its_step_wait_again() -> None:
    casts = [Cast("U0ALICE", True, 0), Cast("U0ERIN", True, 1), Cast("U0FRANK", True, 1)]
    now = standing([LEAD, SECURITY], casts, lambda cast: cast.person != "U0ALICE")
    assert now.waiting == 0 and not now.complete


def test_names_and_mentions() -> None:
    now = standing([LEAD, ApprovalStep(approvers=["U0X1"])], [])
    assert now.step_name(0) == "step 1 of 2 (team lead)" and now.step_name(1) == "step 2 of 2"
    assert mention("S0LEADS") == "<!subteam^S0LEADS>" and mention("U0X1") == "<@U0X1>"
    assert to_ask(["S0LEADS", "U0BOB", "U0ERIN", "U0BOB"], "U0BOB", ["U0ERIN"]) == ["S0LEADS"]
