"""Where an approval stands: which step waits, who counted in which, and whether it is done. Pure: no I/O.

A request (round 0) and each of its extensions (round N) are approved by the same ordered steps. A step is asked only
once the one before it has its ``required`` approvals; one denial at any step ends the round; a person decides once
per round, so they count in one step only; the requester never counts. Whether someone may decide a step (listed in
it, on call, escalated to) is for the caller to say, asked at the moment the decision takes effect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from bot.policy import ApprovalStep


class Via:
    """How a person came to decide a step: listed in it, on call for the resource's schedule, or escalated to."""

    LISTED = "listed"
    ONCALL = "oncall"
    ESCALATION = "escalation"


@dataclass(frozen=True)
class Cast:
    """One recorded decision, as far as counting goes."""

    person: str
    approve: bool
    step: int
    via: str | None = None


@dataclass(frozen=True)
class Standing:
    """Where one round of approval stands."""

    steps: tuple[ApprovalStep, ...]
    approved: tuple[tuple[str, ...], ...]  # per step, who approved it and still counts
    denied_by: str | None
    waiting: int | None  # the step waiting for approvals; None once every step has them (or after a denial)

    @property
    def complete(self) -> bool:
        return self.denied_by is None and self.waiting is None

    @property
    def multi(self) -> bool:
        return len(self.steps) > 1

    def step_name(self, index: int) -> str:
        """How people call a step: its name, or "step 2 of 3"."""
        name = self.steps[index].name
        numbered = f"step {index + 1} of {len(self.steps)}"
        return f"{numbered} ({name})" if name else numbered

    def still_needed(self, index: int) -> int:
        return max(self.steps[index].required - len(self.approved[index]), 0)


def standing(
    steps: Sequence[ApprovalStep], casts: Iterable[Cast], counts: Callable[[Cast], bool] = lambda cast: True
) -> Standing:
    """Count ``casts`` against ``steps``; an approval for which ``counts`` is false (its approver was removed
    meanwhile) is left out, and a step it leaves short waits again."""
    casts = list(casts)
    denied_by = next((cast.person for cast in casts if not cast.approve), None)
    approved = tuple(
        tuple(c.person for c in casts if c.approve and c.step == index and counts(c)) for index in range(len(steps))
    )
    waiting = None
    if denied_by is None:
        waiting = next((i for i, step in enumerate(steps) if len(approved[i]) < step.required), None)
    return Standing(tuple(steps), approved, denied_by, waiting)


def mention(slack_id: str) -> str:
    """A Slack mention that notifies: a user group as <!subteam^S…>, a user as <@U…>."""
    return f"<!subteam^{slack_id}>" if slack_id.startswith("S") else f"<@{slack_id}>"


def to_ask(listed: Iterable[str], requester: str, decided: Iterable[str]) -> list[str]:
    """Who to call on, in order and once each: the ids listed, without the requester and those who decided."""
    left_out = {requester, *decided}
    return [slack_id for slack_id in dict.fromkeys(listed) if slack_id not in left_out]
