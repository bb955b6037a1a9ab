"""Every problem of a policy file at once, offline: what `breakglass policy lint` prints and a refused reload says.

Loading a policy stops at its first broken section; this goes on. It reads the YAML, lists every key that is not a
string, every field pydantic refuses (each with its key path), each resource's cross-checks (approvers enough for
the approvals asked, durations in order, on-call rules that need the top-level section), and each adapter's own
parameter checks. Nothing here connects anywhere: adapters are built (which opens no connection) and closed, never
asked to ``check``. That is `breakglass check`'s job, on a host that has the secrets.

A ``${VAR}`` the environment lacks is a warning, not a problem: CI lints without the secrets. Its parameter is
validated with a stand-in value, and a complaint about exactly that parameter is left out (the real value decides).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from bot.adapters import registry
from bot.adapters.base import Adapter
from bot.policy import Policy, PolicyError, Resource, interpolate
from bot.policy.loading import describe_each, non_string_keys
from bot.services.policy_book import close_adapters

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PLAIN = {"missing": "required key is missing", "extra_forbidden": "unknown key"}
STAND_IN = "lint-stand-in"  # the value a missing ${VAR} takes while its parameter is validated


@dataclass
class Checked:
    """What a policy file is: its problems (the policy is refused if there is any) and warnings (it is not)."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    policy: Policy | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def check(text: str, environ: Mapping[str, str]) -> Checked:
    """Every problem and warning of the policy ``text``, with the key path of each."""
    checked = Checked()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        checked.problems.append(f"{where}not valid YAML ({getattr(error, 'problem', error)})")
        return checked
    if not isinstance(data, dict):
        checked.problems.append("expected a mapping with channels and resources at the top")
        return checked
    checked.problems += non_string_keys(data)
    if checked.problems:
        return checked  # pydantic would only repeat them as type errors
    try:
        checked.policy = Policy.model_validate(data)
    except ValidationError as error:
        checked.problems += _every_validation_problem(data, error)
        return checked
    adapters = _adapters(checked.policy, environ, checked)
    try:
        for resource in checked.policy.resources.values():
            if _built_all(resource, adapters) and (problem := registry._unwatched(resource, adapters)):
                checked.problems.append(problem)
    finally:
        close_adapters(adapters)
    return checked


def _every_validation_problem(data: dict[str, Any], error: ValidationError) -> list[str]:
    """The field errors, and each resource's cross-checks: the policy's own check stops at the first resource that
    fails one, and runs only once every field is valid, so each resource whose fields are valid is checked again on
    its own, beside stand-ins for the top-level sections that are broken."""
    found = describe_each(error)
    resources = data.get("resources")
    patched = _stand_ins(data, [problem["loc"] for problem in error.errors()])
    if patched is None or not isinstance(resources, dict):
        return found
    broken = {str(p["loc"][1]) for p in error.errors() if len(p["loc"]) > 1 and p["loc"][0] == "resources"}
    for name, resource in resources.items():
        if str(name) in broken:
            continue  # its field errors are listed; its cross-checks come once they are fixed
        try:
            Policy.model_validate({**patched, "resources": {name: resource}})
        except ValidationError as alone:
            found += [p for p in describe_each(alone) if not p.startswith(_TOP_LEVEL)]
    return list(dict.fromkeys(found))


_TOP_LEVEL = ("channels", "defaults", "review", "oncall")
_STAND_IN_CHANNEL = "C0LINTSTANDIN"


def _stand_ins(data: dict[str, Any], locs: list[tuple[Any, ...]]) -> dict[str, Any] | None:
    """``data`` with each broken top-level section replaced by what the policy itself would fall back to (no
    defaults, no review rule) or a valid channel id; None when a broken section would change a resource's checks
    (the on-call section, the incident channels)."""
    patched = dict(data)
    for loc in locs:
        if not loc or loc[0] == "resources":
            continue
        if loc[0] in ("defaults", "review"):
            patched.pop(str(loc[0]), None)
        elif loc[0] == "channels" and len(loc) > 1 and loc[1] in ("approvals", "audit", "audit_mention"):
            channels = dict(patched["channels"])
            channels[str(loc[1])] = _STAND_IN_CHANNEL if loc[1] != "audit_mention" else None
            patched["channels"] = channels
        else:
            return None
    return patched


def _adapters(policy: Policy, environ: Mapping[str, str], checked: Checked) -> dict[str, Adapter]:
    built: dict[str, Adapter] = {}
    for resource in policy.grantables():
        where = (
            f"resources.{resource.name}"
            if resource.level is None
            else (f"resources.{resource.name}.levels.{resource.level}")
        )
        named = {name for text in _strings(resource.params) for name in _ENV_REFERENCE.findall(text)}
        missing = sorted(named - set(environ))
        for name in missing:
            warning = f"{where}.params: environment variable {name} is not set here (the bot needs it where it runs)"
            if warning not in checked.warnings:
                checked.warnings.append(warning)
        adapter = _build(resource, where, {**environ, **dict.fromkeys(missing, STAND_IN)}, set(missing), checked)
        if adapter is not None:
            built[resource.label] = adapter
    return built


def _build(
    resource: Resource, where: str, environ: Mapping[str, str], missing: set[str], checked: Checked
) -> Adapter | None:
    try:
        kind = registry.load(resource.adapter)
    except PolicyError as error:
        checked.problems.append(f"{where}.adapter: {error}")
        return None
    if kind is None:
        known = ", ".join(registry.names())
        checked.problems.append(f"{where}.adapter: unknown adapter '{resource.adapter}' (available: {known})")
        return None
    resolved = interpolate(resource.params, environ, f"{where}.params")
    try:
        parsed = kind.Params.model_validate(resolved)
    except ValidationError as error:
        for problem in error.errors():
            if _filled_by_stand_in(resource.params, problem["loc"], missing):
                continue
            path = ".".join([f"{where}.params", *(str(part) for part in problem["loc"])])
            said = _PLAIN.get(problem["type"], problem["msg"].removeprefix("Value error, "))
            checked.problems.append(f"{path}: {said}")
        return None
    try:
        adapter: Adapter = kind(parsed)
    except Exception as error:  # a plugin that checks more in its constructor: said, not raised
        checked.problems.append(f"{where}.params: the adapter refused them ({type(error).__name__}: {error})")
        return None
    return adapter


def _filled_by_stand_in(params: Mapping[str, Any], loc: tuple[Any, ...], missing: set[str]) -> bool:
    """Whether the parameter at ``loc`` (or one above it) is written with a ``${VAR}`` the environment lacks."""
    node: Any = params
    for part in loc:
        if isinstance(node, str):
            break
        found = (isinstance(node, Mapping) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        )
        if not found:
            return False
        node = node[part]
    return any(name in missing for text in _strings(node) for name in _ENV_REFERENCE.findall(text))


def _built_all(resource: Resource, adapters: Mapping[str, Adapter]) -> bool:
    levels: list[str | None] = [*resource.level_names] or [None]
    return all(resource.at(level).label in adapters for level in levels)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []
