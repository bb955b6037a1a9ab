"""Finds adapters by name: the built-in ones and any installed under the ``breakglass.adapters`` entry points."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from pydantic import ValidationError

from bot.adapters.base import Adapter
from bot.policy import Policy, PolicyError, interpolate

GROUP = "breakglass.adapters"


def _builtin() -> dict[str, type]:
    from bot.adapters.log import LogAdapter
    from bot.adapters.webhook import WebhookAdapter

    return {LogAdapter.name: LogAdapter, WebhookAdapter.name: WebhookAdapter}


def available() -> dict[str, type]:
    found = _builtin()
    for point in entry_points(group=GROUP):
        if point.name not in found:
            try:
                found[point.name] = point.load()
            except Exception as error:  # a broken plugin must not stop the others
                found.setdefault(point.name, _Broken(point.name, error))  # type: ignore[arg-type]
    return found


class _Broken:
    def __init__(self, name: str, error: Exception) -> None:
        self.name = name
        self.error = error


def build(name: str, params: Mapping[str, Any], where: str, environ: Mapping[str, str]) -> Adapter:
    """One configured adapter; PolicyError names the key and what was expected."""
    kinds = available()
    kind = kinds.get(name)
    if kind is None:
        raise PolicyError(f"{where}.adapter: unknown adapter '{name}' (available: {', '.join(sorted(kinds))})")
    if isinstance(kind, _Broken):
        raise PolicyError(f"{where}.adapter: adapter '{name}' failed to load ({type(kind.error).__name__})")
    resolved = interpolate(params, environ, f"{where}.params")
    try:
        parsed = kind.Params.model_validate(resolved)
    except ValidationError as error:
        problems = "; ".join(
            f"{where}.params.{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in error.errors()
        )
        raise PolicyError(problems) from None
    return kind(parsed)


def build_all(policy: Policy, environ: Mapping[str, str]) -> dict[str, Adapter]:
    """An adapter per resource. Every problem is collected, so `breakglass check` can list them all."""
    adapters: dict[str, Adapter] = {}
    problems: list[str] = []
    for resource in policy.resources.values():
        try:
            adapters[resource.name] = build(resource.adapter, resource.params, f"resources.{resource.name}", environ)
        except PolicyError as error:
            problems.append(str(error))
    if problems:
        raise PolicyError("; ".join(problems))
    return adapters
