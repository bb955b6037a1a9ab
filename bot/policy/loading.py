"""Reading the policy file: YAML in, a validated Policy out, and every mistake named by its key path."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bot.policy.model import Policy, PolicyError

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _describe(error: ValidationError) -> str:
    return "; ".join(describe_each(error))


def describe_each(error: ValidationError) -> list[str]:
    """Each of a validation's problems as ``key.path: what was expected`` (for `breakglass policy lint`)."""
    lines = []
    for problem in error.errors():
        path = ".".join(str(part) for part in problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown key"
        elif problem["type"] == "missing":
            message = "required key is missing"
        elif problem["type"] == "too_short":
            message = "must not be empty"
        got = problem.get("input")
        already_named = isinstance(got, str) and f"'{got}'" in message
        quiet = problem["type"] in ("missing", "extra_forbidden") or already_named or not _short(got)
        shown = "" if quiet else f" (got {got!r})"
        lines.append(f"{path}: {message}{shown}" if path else f"{message}{shown}")
    return lines


def _short(value: Any) -> bool:
    return isinstance(value, str | int | float) and len(str(value)) <= 80


def parse_policy(text: str, source: str = "breakglass.yml") -> Policy:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise PolicyError(f"{source}{where}: not valid YAML ({getattr(error, 'problem', error)})") from None
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: expected a mapping with channels and resources at the top")
    try:
        _refuse_non_string_keys(data, "")
    except PolicyError as error:
        raise PolicyError(f"{source}: {error}") from None
    try:
        return Policy.model_validate(data)
    except ValidationError as error:
        raise PolicyError(f"{source}: {_describe(error)}") from None


def _refuse_non_string_keys(node: Any, path: str) -> None:
    """YAML 1.1 reads a bare on, off, yes or no as a boolean, so `on: orders.*` would silently lose its key."""
    found = non_string_keys(node, path)
    if found:
        raise PolicyError(found[0])


def non_string_keys(node: Any, path: str = "") -> list[str]:
    """Every key that is not a string, as ``path: the key … is not a string``."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                hint = " (YAML reads on/off/yes/no as booleans)" if isinstance(key, bool) else ""
                where = f"{path}: " if path else ""
                found.append(f"{where}the key {key!r} is not a string{hint}; put it in quotes")
                continue
            found += non_string_keys(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found += non_string_keys(item, f"{path}[{index}]")
    return found


def load_policy(path: Path) -> Policy:
    return parse_policy(read_policy_text(path), source=str(path))


def read_policy_text(path: Path) -> str:
    """The policy file's raw text (what its version is the hash of); PolicyError if it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise PolicyError(f"{path}: cannot read the policy file ({error.strerror})") from None


def interpolate(params: Mapping[str, Any], environ: Mapping[str, str], where: str) -> dict[str, Any]:
    """Replace ${VAR} in adapter parameters with the environment's value, so secrets never sit in the file."""

    def resolve(value: Any, path: str) -> Any:
        if isinstance(value, str):

            def lookup(match: re.Match[str]) -> str:
                name = match.group(1)
                if name not in environ:
                    raise PolicyError(f"{path}: environment variable {name} is not set")
                return environ[name]

            return _ENV_REFERENCE.sub(lookup, value)
        if isinstance(value, dict):
            return {key: resolve(item, f"{path}.{key}") for key, item in value.items()}
        if isinstance(value, list):
            return [resolve(item, f"{path}[{index}]") for index, item in enumerate(value)]
        return value

    return resolve(dict(params), where)
