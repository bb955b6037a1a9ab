"""Finds adapters by name: the built-in ones and any installed under the ``breakglass.adapters`` entry points."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Protocol

from pydantic import ValidationError

from bot.adapters.base import Adapter, AdapterParams, CapturesActivity
from bot.policy import Policy, PolicyError, Resource, interpolate

GROUP = "breakglass.adapters"


class AdapterClass(Protocol):
    """What an adapter name loads: a class with the model its params are validated by, made from those params."""

    Params: type[AdapterParams]

    def __call__(self, params: Any) -> Adapter: ...


# The built-in adapters, loaded only when a policy uses them: their drivers are optional extras.
BUILTIN: dict[str, tuple[str, str | None]] = {
    "log": ("bot.adapters.log:LogAdapter", None),
    "webhook": ("bot.adapters.webhook:WebhookAdapter", None),
    "command": ("bot.adapters.command:CommandAdapter", None),
    "postgres": ("bot.adapters.postgres:PostgresAdapter", "postgres"),
    "mysql": ("bot.adapters.mysql:MysqlAdapter", "mysql"),
    "redis": ("bot.adapters.redis_acl:RedisAdapter", "redis"),
    "aws-iam": ("bot.adapters.aws_iam:AwsIamAdapter", "aws"),
    "ldap": ("bot.adapters.ldap:LdapAdapter", "ldap"),
    "kubernetes": ("bot.adapters.kubernetes:KubernetesAdapter", "kubernetes"),
    "demo-db": ("bot.devtools.demo_database:DemoDatabaseAdapter", None),  # a toy database, for the demo
}


def names() -> list[str]:
    """Every adapter name that can be configured, without loading any of them."""
    return sorted(set(BUILTIN) | {point.name for point in entry_points(group=GROUP)})


def load(name: str) -> AdapterClass | None:
    """The adapter class called ``name``; None if there is none. PolicyError if it is there but cannot load."""
    if name in BUILTIN:
        target, extra = BUILTIN[name]
        module, _, attribute = target.partition(":")
        try:
            return getattr(import_module(module), attribute)
        except ImportError as error:
            hint = f": pip install 'breakglass[{extra}]'" if extra else ""
            raise PolicyError(f"adapter '{name}' needs the {error.name} package{hint}") from None
    for point in entry_points(group=GROUP, name=name):
        try:
            return point.load()
        except Exception as error:  # a broken plugin must not stop the others
            raise PolicyError(f"adapter '{name}' failed to load ({type(error).__name__}: {error})") from None
    return None


def available() -> dict[str, AdapterClass]:
    """Every adapter that loads here, by name (imports them all: for tools and tests, not for start-up)."""
    found: dict[str, AdapterClass] = {}
    for name in names():
        try:
            kind = load(name)
        except PolicyError:
            continue
        if kind is not None:
            found[name] = kind
    return found


def build(name: str, params: Mapping[str, Any], where: str, environ: Mapping[str, str]) -> Adapter:
    """One configured adapter; PolicyError names the key and what was expected."""
    try:
        kind = load(name)
    except PolicyError as error:
        raise PolicyError(f"{where}.adapter: {error}") from None
    if kind is None:
        raise PolicyError(f"{where}.adapter: unknown adapter '{name}' (available: {', '.join(names())})")
    resolved = interpolate(params, environ, f"{where}.params")
    try:
        parsed = kind.Params.model_validate(resolved)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join([f'{where}.params', *(str(p) for p in e['loc'])])}: {e['msg'].removeprefix('Value error, ')}"
            for e in error.errors()
        )
        raise PolicyError(problems) from None
    return kind(parsed)


def build_all(policy: Policy, environ: Mapping[str, str]) -> dict[str, Adapter]:
    """An adapter per resource, or per level of a resource with levels (keyed by ``Resource.label``): a level's params
    are merged over the resource's, and validated as a whole under the level's own key path. Every problem is
    collected, so `breakglass check` can list them all."""
    adapters: dict[str, Adapter] = {}
    problems: list[str] = []
    for resource in policy.grantables():
        where = f"resources.{resource.name}"
        if resource.level is not None:
            where = f"{where}.levels.{resource.level}"
        try:
            adapters[resource.label] = build(resource.adapter, resource.params, where, environ)
        except PolicyError as error:
            problems.append(str(error))
    problems += [problem for resource in policy.resources.values() if (problem := _unwatched(resource, adapters))]
    if problems:
        raise PolicyError("; ".join(problems))
    return adapters


def _unwatched(resource: Resource, adapters: Mapping[str, Adapter]) -> str | None:
    """``alert_on`` on a resource none of whose levels captures activity would never match: an operator would believe
    sessions are watched that are not, so it is a mistake in the policy, said at start."""
    if not resource.alert_on:
        return None
    built = [adapters.get(resource.at(level).label) for level in resource.each_level]
    if any(isinstance(adapter, CapturesActivity) and adapter.watching() for adapter in built):
        return None
    capable = any(isinstance(adapter, CapturesActivity) for adapter in built)
    why = "has its capture param off" if capable else "cannot capture"
    return (
        f"resources.{resource.name}.alert_on: no level of {resource.name} captures activity (adapter "
        f"'{resource.adapter}' {why}), so nothing would ever be matched; turn capture on or remove alert_on"
    )
