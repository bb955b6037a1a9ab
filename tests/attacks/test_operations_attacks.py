"""Attacks on issue 14's operations (drills, their schedule, policy reload), kept as regression tests.

Each test is a way an attacker or a careless operator could make a rule fail at the moment it takes effect: a reload
landing in the middle of a drill or of a request, a cron expression that is almost right, a Slack user probing drill
names. They run at the service seam on a SQLite file of their own and the in-process ``demo-db`` toy databases
(one per test, named at random), as tests/services/test_policy_reload.py does, so they start no server.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.devtools.demo_database import DemoDatabase
from bot.domain.commands import Ask
from bot.domain.rules import Forbidden, Refused
from bot.domain.states import Status
from bot.policy import PolicyError, parse_policy
from bot.services import access, backend, decisions, drills, extensions, requests
from bot.services.drills import Trigger, run_drill
from bot.services.sweep import Sweeper
from bot.store import queries
from bot.store.models import AuditEvent, Request
from bot.testing.services import APPROVALS, APPROVER, AUDIT, REQUESTER, FixedDirectory
from tests.services.test_policy_reload import Bot, policy_text, start

DRILLER = "drill_zoe"  # the drill principal: exists only for drills
OPS_GROUP = "S0OPSTEAM"  # a user group that approves, so the check of who may drill asks Slack
RESOURCES = "resources:\n"


def drilled(database: str, *, approvers: str | None = None, every: str = "7d", extra: str = "") -> str:
    """The reload tests' policy, with a drill of orders-db (and, optionally, other approvers)."""
    text = (
        policy_text(database, extra=extra)
        + f"drills:\n  - {{resource: orders-db, every: '{every}', principal: {DRILLER}}}\n"
    )
    if approvers is not None:
        text = text.replace(f"approvers: [{APPROVER.slack_id}]", f"approvers: [{approvers}]")
    return text


@pytest.fixture
def names() -> tuple[str, str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"old-{tag}", f"new-{tag}", f"third-{tag}"


@pytest.fixture
def bot(tmp_path: Path, names: tuple[str, str, str]) -> Iterator[Bot]:
    running = start(tmp_path, drilled(names[0]))
    yield running
    running.deps.db.dispose()


def request_row(bot: Bot, request_id: int) -> Request:
    with bot.deps.db.transaction() as session:
        request = queries.get(session, request_id)
        assert request is not None
        session.expunge(request)
        return request


def actions(bot: Bot) -> list[str]:
    with bot.deps.db.transaction() as session:
        return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


# -- a drill and a reload ---------------------------------------------------------------------------------------------


def test_a_reload_in_the_middle_of_a_drill_does_not_send_its_revoke_to_the_new_backend(
    bot: Bot, names: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGHUP lands while a drill holds access (its verify step): the revoke must go where the grant went."""
    old, new, _ = names
    first = bot.deps.version
    real_call = backend.call_backend
    reloaded: list[str] = []

    def reload_during_verify(deps: Any, call: Callable[..., Any], *args: Any) -> Any:
        answer = real_call(deps, call, *args)
        if not reloaded:  # the first verify: access exists now on the old database
            bot.write(drilled(new))  # orders-db moved to another database
            reloaded.append(bot.reloader.reload().outcome)
        return answer

    monkeypatch.setattr("bot.services.drills.call_backend", reload_during_verify)

    result = run_drill(bot.deps, "orders-db", None, Trigger.CLI, "cli:ops")

    assert reloaded == ["reloaded"]
    assert DRILLER not in DemoDatabase.named(old).holders, "the drill left its access on the old database"
    assert DRILLER not in DemoDatabase.named(new).holders
    assert result.request_id is not None and request_row(bot, result.request_id).policy_version == first
    assert result.passed, result.steps


def test_a_drill_killed_after_its_grant_is_expired_where_it_was_granted_after_a_reload(
    bot: Bot, names: tuple[str, str, str]
) -> None:
    """The drill's process dies between grant and revoke; the policy moves the resource; the sweep's expiry must
    still reach the database the drill principal was granted on."""
    old, new, _ = names
    drill, resource = drills.find(bot.deps.policy, "orders-db")
    request_id = drills._store(bot.deps, resource, drill, Trigger.CLI, "cli:ops")
    granted = access.finish_grant(bot.deps, request_id)
    assert granted is not None and granted.status is Status.ACTIVE
    assert DemoDatabase.named(old).holders.get(DRILLER) == "write"
    # ... and here the process is killed. The bot reloads a policy that moved orders-db.
    bot.write(drilled(new))
    assert bot.reloader.reload().outcome == "reloaded"

    bot.clock.advance(drills.HOLD + timedelta(minutes=1))
    Sweeper(bot.deps)(wait=True)

    assert request_row(bot, request_id).status == Status.EXPIRED.value
    assert DRILLER not in DemoDatabase.named(old).holders, "the drill's access outlived it on the old database"


def test_a_drills_access_cannot_be_extended(bot: Bot, names: tuple[str, str, str]) -> None:
    """A drill's grant lasts minutes at most (HOLD) so that a drill that dies leaves nothing for long. Extending it
    (any approver may extend any active grant, and a Slack drill's holder is the approver who ran it) would keep
    the drill principal's access for up to max_duration, verified by nobody."""
    drill, resource = drills.find(bot.deps.policy, "orders-db")
    request_id = drills._store(bot.deps, resource, drill, Trigger.SLACK, APPROVER.slack_id)
    granted = access.finish_grant(bot.deps, request_id)
    assert granted is not None and granted.status is Status.ACTIVE and granted.expires_at is not None

    with pytest.raises(Refused, match="drill"):
        extensions.extend(bot.deps, APPROVER.slack_id, request_id, "3h")

    assert request_row(bot, request_id).expires_at == granted.expires_at


# -- who may run a drill from Slack ---------------------------------------------------------------------------------


class ReloadingDirectory(FixedDirectory):
    """Slack's answer about a user group, with a policy reload landing while Slack is being asked."""

    def __init__(self, groups: dict[str, list[str]], during: Callable[[], None]) -> None:
        super().__init__([REQUESTER, APPROVER], groups)
        self.during: Callable[[], None] | None = during

    def members(self, group_ids: list[str]) -> frozenset[str]:
        answer = super().members(group_ids)
        if self.during is not None:
            during, self.during = self.during, None
            during()
        return answer


def test_an_approver_removed_by_a_reload_while_slack_was_asked_cannot_run_the_drill(
    tmp_path: Path, names: tuple[str, str, str]
) -> None:
    """`/breakglass drill orders-db` by a member of the approving group; while Slack answers that they are, a reload
    takes the group off the resource's approvers. The drill must not run under the policy that no longer lets them."""
    old = names[0]
    bot = start(tmp_path, drilled(old, approvers=f"{APPROVER.slack_id}, {OPS_GROUP}"))
    try:

        def reload_without_the_group() -> None:
            bot.write(drilled(old))  # approvers: the approver alone
            assert bot.reloader.reload().outcome == "reloaded"

        bot.deps.directory = ReloadingDirectory({OPS_GROUP: ["U0OPSMEMB"]}, reload_without_the_group)

        with pytest.raises(Refused):
            drills.from_slack(bot.deps, "U0OPSMEMB", "orders-db", None)

        assert "emergency" not in actions(bot) and "drill_passed" not in actions(bot)
        assert DRILLER not in DemoDatabase.named(old).holders
    finally:
        bot.deps.db.dispose()


def test_a_non_approver_probing_drill_names_learns_nothing_and_is_counted(bot: Bot) -> None:
    """A typo lists only what the person may act on (as for requests); a stranger gets no list of drilled
    resources, and their attempt is written down like any other refused attempt on the drill command."""
    with pytest.raises(Forbidden) as refused:
        drills.from_slack(bot.deps, "U0STRANGE", "orders-dbx", None)

    assert "orders-db" not in str(refused.value).replace("orders-dbx", "")
    assert actions(bot).count("drill_refused") == 1
    # The resource's approver making the same typo is told which drills they may run, and is not counted.
    with pytest.raises(Refused, match="orders-db") as typo:
        drills.from_slack(bot.deps, APPROVER.slack_id, "orders-dbx", None)
    assert not isinstance(typo.value, Forbidden)
    assert actions(bot).count("drill_refused") == 1


# -- a reload racing a request ----------------------------------------------------------------------------------------


def test_a_request_made_while_a_reload_retires_its_policy_keeps_the_version_it_was_checked_under(
    tmp_path: Path, names: tuple[str, str, str]
) -> None:
    """A request reads the policy, asks Slack who the requester is (slow), and meanwhile a reload swaps the policy
    and the next poll retires the old version (no stored request needs it yet). The request must still record the
    version it was checked under; stored with none, it would follow every later reload, and a later move of the
    resource would send its revoke to a backend it was never granted on."""
    old, new, third = names
    bot = start(tmp_path, policy_text(old))
    checked_under = bot.deps.version
    try:

        class SlowSlack(FixedDirectory):
            reloaded = False

            def person(self, user_id: str) -> Any:
                if not SlowSlack.reloaded:
                    SlowSlack.reloaded = True
                    bot.write(policy_text(new))
                    assert bot.reloader.reload().outcome == "reloaded"
                    bot.settled_poll()  # the scheduler's poll: retires what no stored request needs
                return super().person(user_id)

        bot.deps.directory = SlowSlack([REQUESTER, APPROVER])
        asked = requests.submit(bot.deps, REQUESTER.slack_id, Ask("orders-db", "1h", "INC-9 race", False), None)

        assert request_row(bot, asked.id).policy_version == checked_under
        granted = decisions.decide(bot.deps, APPROVER.slack_id, asked.id, approve=True)
        assert granted.status is Status.ACTIVE, granted.failure
        bot.write(policy_text(third))  # a later reload moves orders-db again
        assert bot.reloader.reload().outcome == "reloaded"
        ended = requests.end_early(bot.deps, REQUESTER.slack_id, asked.id)
        assert ended.status is Status.REVOKED, ended.failure
        holding = [name for name in (old, new, third) if "zoe" in DemoDatabase.named(name).holders]
        assert holding == [], f"access left on {holding}"
    finally:
        bot.deps.db.dispose()


def payments(database: str) -> str:
    return (
        "  payments:\n    adapter: demo-db\n"
        f"    params: {{database: {database}}}\n"
        f"    users: {{{REQUESTER.slack_id}: zoe}}\n    approvers: [{APPROVER.slack_id}]\n"
    )


def test_a_policy_put_back_while_a_grant_under_it_lives_is_recorded_by_new_requests(
    tmp_path: Path, names: tuple[str, str, str]
) -> None:
    """Reload B, then put A back (the usual way out of a bad reload) while a grant made under A still lives: the
    book knew A already and kept its first policy object, so requests checked against the object now in force
    recorded no version at all, and followed every later reload; a later move of the resource sent their revoke
    to a backend they were never granted on."""
    old, new, third = names
    first = policy_text(old, extra=payments(f"pay-{old}"))
    bot = start(tmp_path, first)
    try:
        bot.granted()  # orders-db, under A: keeps A in the book
        bot.write(policy_text(old, extra=payments(f"pay-{new}")))
        assert bot.reloader.reload().outcome == "reloaded"
        bot.write(first)  # put back
        assert bot.reloader.reload().outcome == "reloaded"

        asked = requests.submit(bot.deps, REQUESTER.slack_id, Ask("payments", "1h", "INC-8 revert", False), None)

        assert request_row(bot, asked.id).policy_version == bot.deps.version
        assert decisions.decide(bot.deps, APPROVER.slack_id, asked.id, approve=True).status is Status.ACTIVE
        bot.write(policy_text(old, extra=payments(f"pay-{third}")))
        assert bot.reloader.reload().outcome == "reloaded"
        ended = requests.end_early(bot.deps, REQUESTER.slack_id, asked.id)
        assert ended.status is Status.REVOKED, ended.failure
        holding = [db for db in (old, new, third) if "zoe" in DemoDatabase.named(f"pay-{db}").holders]
        assert holding == [], f"payments access left on {holding}"
    finally:
        bot.deps.db.dispose()


# -- the schedule: cron expressions that are almost right ------------------------------------------------------------


def drill_policy(every: str, users: str = "") -> str:
    return (
        f"channels: {{approvals: {APPROVALS}, audit: {AUDIT}}}\n"
        "resources:\n  demo:\n    adapter: log\n    approvers: [U0ALICE01]\n"
        + (f"    users: {{{users}}}\n" if users else "")
        + f"drills:\n  - {{resource: demo, every: '{every}', principal: drill_bot}}\n"
    )


@pytest.mark.parametrize("every", ["* * * * *", "*/5 * * * *", "0,30 3 * * *", "15,45 */6 * * *"])
def test_a_cron_expression_more_often_than_the_minimum_is_refused_like_a_duration(every: str) -> None:
    """`every: 30m` is refused (a drill grants real access and posts to the audit channel); the same rate written
    as cron must be too."""
    with pytest.raises(PolicyError, match=r"drills\[0\]\.every"):
        parse_policy(drill_policy(every))


def test_a_cron_expression_that_never_fires_is_refused() -> None:
    """February 31st passes a field-by-field check, and then the schedule has no next moment at all."""
    with pytest.raises(PolicyError, match=r"drills\[0\]\.every"):
        parse_policy(drill_policy("0 3 31 2 *"))


THURSDAY = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("every", "weekday"),
    [("0 3 * * 1", "Monday"), ("0 3 * * 0", "Sunday"), ("0 3 * * 7", "Sunday"), ("0 3 * * 5", "Friday")],
)
def test_a_numbered_weekday_means_what_cron_means(every: str, weekday: str) -> None:
    """In crontab 0 and 7 are Sunday and 1 is Monday; APScheduler's own numbering starts at Monday = 0, so a drill
    written `0 3 * * 1` for Mondays ran on Tuesdays."""
    [drill] = parse_policy(drill_policy(every)).drills
    fire = drill.next_after()(THURSDAY)
    assert fire.strftime("%A") == weekday and (fire.hour, fire.minute) == (3, 0)


def test_weekday_ranges_and_steps_mean_what_cron_means() -> None:
    def days(every: str) -> list[str]:
        [drill] = parse_policy(drill_policy(every)).drills
        following, moment, seen = drill.next_after(), THURSDAY, []
        for _ in range(7):
            moment = following(moment)
            seen.append(moment.strftime("%a"))
        return sorted(set(seen))

    assert days("0 3 * * 1-5") == ["Fri", "Mon", "Thu", "Tue", "Wed"]
    assert days("0 3 * * 0,6") == ["Sat", "Sun"]
    assert days("0 3 * * */2") == ["Sat", "Sun", "Thu", "Tue"]  # crontab: 0,2,4,6
    assert days("0 3 * * MON-FRI") == ["Fri", "Mon", "Thu", "Tue", "Wed"]  # names were always right


def test_a_drill_principal_that_a_person_maps_to_is_refused() -> None:
    """The drill principal "exists only for drills". One a person is mapped to would share that person's live key:
    every drill would lock them out of breaking the glass until it ended, and one whose revoke failed, until the
    retry succeeded."""
    with pytest.raises(PolicyError, match=r"drills\[0\]\.principal"):
        parse_policy(drill_policy("7d", users="U0BOB0001: drill_bot"))


def test_an_hourly_cron_expression_is_allowed() -> None:
    """The minimum itself, written as cron: once an hour is allowed, as `every: 1h` is."""
    [drill] = parse_policy(drill_policy("0 * * * *")).drills
    assert drill.next_after()(THURSDAY) == THURSDAY + timedelta(hours=1)


# -- reloads that take something away ---------------------------------------------------------------------------------

CAROL = "U0CAROL01"


def test_an_approver_removed_by_a_reload_cannot_approve_a_request_made_before_it(
    tmp_path: Path, names: tuple[str, str, str]
) -> None:
    old = names[0]
    bot = start(tmp_path, policy_text(old).replace(f"approvers: [{APPROVER.slack_id}]", f"approvers: [{CAROL}]"))
    try:
        asked = requests.submit(bot.deps, REQUESTER.slack_id, Ask("orders-db", "1h", "INC-7 reload", False), None)
        bot.write(policy_text(old))  # Carol is no longer an approver
        assert bot.reloader.reload().outcome == "reloaded"

        with pytest.raises(Refused):
            decisions.decide(bot.deps, CAROL, asked.id, approve=True)

        assert request_row(bot, asked.id).status == Status.PENDING.value
        assert "zoe" not in DemoDatabase.named(old).holders
    finally:
        bot.deps.db.dispose()


def test_a_reload_naming_a_variable_the_environment_lacks_is_refused_and_the_old_policy_stays(
    bot: Bot, names: tuple[str, str, str]
) -> None:
    before = bot.deps.version
    bot.write(drilled(names[0]).replace(f"database: {names[0]}", "database: ${BREAKGLASS_TEST_UNSET_DB}"))

    outcome = bot.reloader.reload(asked=True)

    assert outcome.outcome == "refused" and outcome.problems
    assert bot.deps.version == before
    assert bot.deps.resource("orders-db") is not None


def test_both_day_fields_mean_either_as_in_crontab() -> None:
    """Crontab runs `0 3 1 * MON` on the 1st and on every Monday; APScheduler alone ran it only on a 1st that is a
    Monday (a few times a year), so a weekly drill silently became a rare one."""
    [drill] = parse_policy(drill_policy("0 3 1 * MON")).drills
    following, moment, fires = drill.next_after(), THURSDAY, []
    for _ in range(6):
        moment = following(moment)
        fires.append(moment.date().isoformat())
    assert fires == ["2026-12-07", "2026-12-14", "2026-12-21", "2026-12-28", "2027-01-01", "2027-01-04"]


def test_every_zero_is_named_as_a_duration_too_short() -> None:
    """`every: 0s` was told it is "neither a duration nor a cron expression", which sends its author looking for
    the wrong mistake."""
    with pytest.raises(PolicyError, match=r"drills\[0\]\.every: '0s' is zero; at least 1h"):
        parse_policy(drill_policy("0s"))
