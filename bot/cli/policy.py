"""`breakglass policy`: check a policy file offline (`lint`), and say what it allows (`explain`).

Neither needs a Slack token, a database or a network: `lint` is for CI, before a policy reaches the bot.
Exit codes: 0 fine, 1 the policy has problems (lint), 2 the command could not run (a file that cannot be read,
a resource the policy does not have).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from bot.cli.app import cli, fail
from bot.domain.durations import format_duration
from bot.policy import Policy, PolicyError, Resource, parse_policy
from bot.policy.loading import read_policy_text

policy_cli = typer.Typer(no_args_is_help=True, help="Check a policy file, and see what it allows.")
cli.add_typer(policy_cli, name="policy")


def _read(path: Path) -> str:
    try:
        return read_policy_text(path)
    except PolicyError as error:
        fail(str(error))


@policy_cli.command()
def lint(file: Annotated[Path, typer.Argument(metavar="FILE", help="The policy file, e.g. breakglass.yml.")]) -> None:
    """Check a policy file offline and list every problem, one per line as FILE: key.path: what was expected.

    Needs no Slack token, database or network (for CI). A ${VAR} the environment lacks is a warning, not a problem:
    CI has no secrets; `breakglass check`, where the bot runs, insists on them. Exit 1 if there is any problem.

    Example: breakglass policy lint breakglass.yml
    """
    from bot.services.policy_check import check

    text = _read(file)
    checked = check(text, os.environ)
    for warning in checked.warnings:
        typer.echo(f"{file}: warning: {warning}", err=True)
    if checked.problems:
        for problem in checked.problems:
            typer.echo(f"{file}: {problem}")
        raise typer.Exit(1)
    assert checked.policy is not None
    levels = len(checked.policy.grantables())
    warned = f", {len(checked.warnings)} warning(s)" if checked.warnings else ""
    typer.echo(f"OK: {file} has {len(checked.policy.resources)} resource(s), {levels} grantable level(s){warned}.")


def _default_policy() -> Path:
    return Path(os.environ.get("BREAKGLASS_POLICY") or "breakglass.yml")


@policy_cli.command()
def explain(
    resource: Annotated[str, typer.Argument(metavar="RESOURCE", help="A resource the policy names, e.g. orders-db.")],
    policy_file: Annotated[
        Path | None,
        typer.Option("--policy", metavar="FILE", help="The policy file; default $BREAKGLASS_POLICY or breakglass.yml."),
    ] = None,
) -> None:
    """Say who may request and approve each level of RESOURCE, its limits, its approval steps and on-call rules.

    Example: breakglass policy explain orders-db --policy breakglass.yml
    """
    path = policy_file or _default_policy()
    try:
        policy = parse_policy(_read(path), source=str(path))
    except PolicyError as error:
        fail(f"{error} (`breakglass policy lint {path}` lists every problem)")
    found = policy.resources.get(resource)
    if found is None:
        fail(f"{path} has no resource '{resource}'; it has: {', '.join(sorted(policy.resources))}")
    Console(highlight=False).print(explained(policy, found))


def explained(policy: Policy, resource: Resource) -> Tree:
    """The resource as a tree: one branch per level (one for a resource without levels), as the bot applies it."""
    title = f"[bold]{escape(resource.name)}[/bold] (adapter {escape(resource.adapter)})"
    if resource.description:
        title += f": {escape(resource.description)}"
    tree = Tree(title)
    names: list[str | None] = [*resource.level_names] or [None]
    for index, level in enumerate(names):
        viewed = resource.at(level)
        label = "the resource" if level is None else f"level [bold]{escape(level)}[/bold]"
        if level is not None and index == 0:
            label += " (the default)"
        own = resource.levels[level].description if resource.levels and level is not None else ""
        if own:
            label += f": {escape(own)}"
        branch = tree.add(label)
        for line in _level_lines(policy, viewed):
            if isinstance(line, list):  # a heading and its items, each on a line of its own
                sub = branch.add(line[0])
                for item in line[1:]:
                    sub.add(item)
            else:
                branch.add(line)
    return tree


def _ids(ids: list[str]) -> str:
    return ", ".join(escape(entry) for entry in ids)


def _level_lines(policy: Policy, r: Resource) -> list[str | list[str]]:
    low, default, high = r.limits
    lines: list[str | list[str]] = [
        f"requesters: {_ids(r.requesters) if r.requesters is not None else 'anyone in the workspace'}",
        _approval(r),
        f"duration: min {format_duration(low)}, default {format_duration(default)}, max {format_duration(high)}",
        f"reason must match: {escape(r.reason_pattern)}" if r.reason_pattern else "reason: any text",
        f"emergency: {_emergency(r)}",
        f"on-call: {_oncall(r)}",
        "waiting: " + _waiting(r),
        f"review: {_review(policy)}",
    ]
    return lines


def _approval(r: Resource) -> str | list[str]:
    if r.approval_steps is None:
        return f"approvers: {r.required_approvals} of {_ids(r.approvers)}"
    steps = [
        f"step {i + 1}{f' ({escape(s.name)})' if s.name else ''}: {s.required} of {_ids(s.approvers)}"
        for i, s in enumerate(r.approval_steps)
    ]
    return ["approval steps, in order (a person counts in one step only):", *steps]


def _emergency(r: Resource) -> str:
    trigger = r.emergency_trigger
    if trigger is not None:
        said = "only during an incident (an open incident of the on-call service, or typed in an incident channel)"
        if trigger.services:
            said += f"; services {_ids(trigger.services)}"
        if trigger.urgency:
            said += f"; urgency at least {trigger.urgency}"
        if trigger.priority:
            said += f"; priority at least {trigger.priority}"
        return said
    return "may break the glass (granted at once, reviewed after)" if r.emergency else "no"


def _oncall(r: Resource) -> str:
    rule = r.oncall
    if rule is None:
        return "none"
    powers = [
        said
        for on, said in (
            (rule.may_approve, "may approve"),
            (rule.auto_approve, "is approved at once when requesting"),
            (rule.page_on_emergency, "is paged when the glass is broken"),
        )
        if on
    ]
    return f"schedule {escape(rule.schedule)}: whoever is on call " + (", ".join(powers) or "has no extra power")


def _waiting(r: Resource) -> str:
    def d(value: timedelta | None) -> str:
        return format_duration(value) if value is not None else "never"

    said = f"approvers reminded every {d(r.remind_approvers_every)}"
    if r.escalate_after is not None:
        said += f", escalated after {d(r.escalate_after)} to {_ids(r.escalate_to or [])}"
    return said + f", lapses undecided after {d(r.pending_timeout)}"


def _review(policy: Policy) -> str:
    rule = policy.review
    when = {"emergency": "after every emergency grant", "all": "after every grant", "none": "never"}[rule.required]
    said = f"owed {when}"
    if rule.required != "none":
        said += f", reminded every {format_duration(rule.remind_every)}"
        if rule.block_after is not None:
            said += f"; new requests blocked once overdue by {format_duration(rule.block_after)}"
    return said
