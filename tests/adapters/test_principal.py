"""Mapping a Slack user to a backend identity: templates, the users: map, and clear refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.adapters.base import Person
from bot.adapters.principal import Unmappable, for_resource, resolve, template_problem
from bot.policy import PolicyError, parse_policy

ZOE = Person("U0ZOE", "Zoe.Ada@Example.COM", "Zoë Ada", "zoe")


def mapped(person: Person = ZOE, template: str | None = "{email_local}", users: dict[str, str] | None = None) -> str:
    return resolve(person, resource="orders-db", template=template, users=users)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{email}", "zoe.ada@example.com"),
        ("{email_local}", "zoe.ada"),
        ("{slack_id}", "U0ZOE"),
        ("{slack_name}", "zoe"),
        ("bg_{email_local}", "bg_zoe.ada"),
        ("uid={slack_name},ou=people", "uid=zoe,ou=people"),
    ],
)
def test_a_template_fills_in_the_profile(template: str, expected: str) -> None:
    assert mapped(template=template) == expected


def test_the_users_map_wins_over_the_template() -> None:
    assert mapped(users={"U0ZOE": "zada"}) == "zada"
    assert mapped(users={"U0OTHER": "other"}) == "zoe.ada"


def test_with_only_a_users_map_everyone_else_is_refused() -> None:
    with pytest.raises(Unmappable, match=r"only admits the people listed under its `users:`"):
        mapped(template=None, users={"U0OTHER": "other"})


def test_a_missing_profile_field_is_refused_with_what_to_do() -> None:
    with pytest.raises(Unmappable) as refused:
        mapped(Person("U0NOMAIL"), template="{email_local}")
    assert str(refused.value) == (
        "orders-db names people by {email_local}, but your Slack profile has no email address. "
        "Ask whoever keeps the policy to add you under the resource's `users:`."
    )
    with pytest.raises(Unmappable, match="has no username"):
        mapped(Person("U0X", "x@example.com"), template="{slack_name}")


def test_control_characters_and_overlong_names_are_refused() -> None:
    with pytest.raises(Unmappable, match="control characters"):
        mapped(users={"U0ZOE": "zoe\nDROP"})
    with pytest.raises(Unmappable, match="unusual spaces"):
        mapped(users={"U0ZOE": "zoe\u00a0ada"})
    with pytest.raises(Unmappable, match="longer than 128"):
        mapped(users={"U0ZOE": "z" * 129})


def test_the_adapter_has_the_last_word_on_what_it_accepts() -> None:
    class Strict:
        default_principal = "{slack_name}"

        def principal_problem(self, principal: str) -> str | None:
            return None if principal.isalnum() else "only letters and digits"

    with pytest.raises(Unmappable, match=r"would be `zoe.ada`, which it cannot use: only letters and digits"):
        for_resource(ZOE, "orders-db", "{email_local}", None, Strict())
    assert for_resource(ZOE, "orders-db", None, None, Strict()) == "zoe"  # the adapter's default template
    assert for_resource(ZOE, "orders-db", None, None, object()) == "U0ZOE"  # the bot's default


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{mail}", "unknown field '{mail}'"),
        ("{email!r}", "takes no format spec"),
        ("{email:>10}", "takes no format spec"),
        ("fixed-name", "uses no field"),
        ("{email", "not a valid template"),
    ],
)
def test_bad_templates_are_named_when_the_policy_is_read(template: str, problem: str) -> None:
    assert problem in (template_problem(template) or "")


def policy_with(resource_extra: str) -> str:
    return (
        "channels: {approvals: C0APPROVALS, audit: C0AUDIT}\n"
        "resources:\n"
        "  orders-db:\n"
        "    adapter: log\n"
        "    approvers: [U0ALICE01]\n" + resource_extra
    )


def test_the_policy_names_the_key_of_a_bad_mapping() -> None:
    with pytest.raises(PolicyError, match=r"resources\.orders-db\.principal: unknown field '\{mail\}'"):
        parse_policy(policy_with("    principal: '{mail}'\n"))
    with pytest.raises(PolicyError, match=r"resources\.orders-db\.users: 'zoe' is not a Slack user id"):
        parse_policy(policy_with("    users: {zoe: zada}\n"))
    with pytest.raises(PolicyError, match=r"resources\.orders-db\.users: U0ZOE: the backend identity is empty"):
        parse_policy(policy_with("    users: {U0ZOE: ' '}\n"))
    policy = parse_policy(policy_with("    principal: 'bg_{email_local}'\n    users: {U0ZOE: zada}\n"))
    assert policy.resources["orders-db"].users == {"U0ZOE": "zada"}


@given(st.text(max_size=40), st.text(max_size=40))
def test_any_profile_either_maps_to_a_clean_name_or_is_refused(local: str, handle: str) -> None:
    person = Person("U0ANY", f"{local}@example.com", None, handle or None)
    for template in ("{email_local}", "{slack_name}", "{email}"):
        try:
            name = resolve(person, resource="r", template=template, users=None)
        except Unmappable as refused:
            assert str(refused)
        else:
            assert 0 < len(name) <= 128 and name.isprintable()
