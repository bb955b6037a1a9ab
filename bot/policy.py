"""The policy file (breakglass.yml): who may ask for what, for how long, and who decides.

Read once at start and passed down. Errors name the key path and what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.adapters.principal import template_problem
from bot.domain.durations import FORMAT_HINT, DurationError, format_duration, parse_duration

RESERVED_NAMES = frozenset({"help", "list", "mine", "revoke", "review", "extend"})
_RESOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_LEVEL_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
LEVEL_SEPARATOR = ":"  # `orders-db:write` names a level; never part of a resource or level name


def label(resource: str, level: str | None) -> str:
    """How people name what is asked for: `orders-db`, or `orders-db:write` for a level."""
    return resource if level is None else f"{resource}{LEVEL_SEPARATOR}{level}"


_SLACK_ID = re.compile(r"[UWS][A-Z0-9]{2,}")
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,}")
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class PolicyError(ValueError):
    """The policy file is wrong; the message says where and what was expected."""


def _to_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"expected {FORMAT_HINT}")
    if isinstance(value, int):
        value = f"{value}s"
    try:
        return parse_duration(value)
    except DurationError as error:
        raise ValueError(str(error)) from None


Duration = Annotated[timedelta, BeforeValidator(_to_duration)]


def _check_slack_ids(values: list[str]) -> list[str]:
    for value in values:
        if not _SLACK_ID.fullmatch(value):
            raise ValueError(f"'{value}' is not a Slack user id (U…/W…) or user-group id (S…)")
    return values


SlackIds = Annotated[list[str], Field(min_length=1)]


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as error:
        raise ValueError(f"not a valid regular expression ({error})") from None
    return value


Regex = Annotated[str, AfterValidator(_regex)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Channels(_Strict):
    approvals: str
    audit: str

    @field_validator("approvals", "audit")
    @classmethod
    def _channel_id(cls, value: str) -> str:
        if not _CHANNEL_ID.fullmatch(value):
            raise ValueError(f"'{value}' is not a Slack channel id (C…, G…)")
        return value


def _check_patterns(values: list[str]) -> list[str]:
    for index, value in enumerate(values):
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"[{index}] '{value}' is not a valid regular expression ({error})") from None
    return values


MIN_ACTIVITY_EVERY = timedelta(seconds=5)


class Defaults(_Strict):
    min_duration: Duration = timedelta(minutes=5)
    default_duration: Duration = timedelta(hours=1)
    max_duration: Duration = timedelta(hours=4)
    approvals_required: int = Field(default=1, ge=1, le=10)
    activity_every: Duration = timedelta(seconds=60)


class ReviewPolicy(_Strict):
    required: Literal["emergency", "all", "none"] = "emergency"
    remind_every: Duration = timedelta(hours=24)
    # Who may sign a review off besides the resource's approvers (user or group ids); never the holder.
    reviewers: list[str] = Field(default_factory=list)
    # A person whose part of a review is overdue by longer than this may make no new non-emergency request.
    block_after: Duration | None = None

    @field_validator("reviewers")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        return _check_slack_ids(value)


class Level(_Strict):
    """One access level of a resource: params merged over the resource's, and any limit it overrides. Unset keys
    (None) keep the resource's."""

    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    approvers: SlackIds | None = None
    requesters: list[str] | None = None
    approvals_required: int | None = Field(default=None, ge=1, le=10)
    min_duration: Duration | None = None
    default_duration: Duration | None = None
    max_duration: Duration | None = None
    reason_pattern: Regex | None = None
    emergency: bool | None = None

    @field_validator("approvers", "requesters")
    @classmethod
    def _ids(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_slack_ids(value)


_LEVEL_LIMITS = (
    "approvers",
    "requesters",
    "approvals_required",
    "min_duration",
    "default_duration",
    "max_duration",
    "reason_pattern",
    "emergency",
)


class Resource(_Strict):
    name: str = ""
    description: str = ""
    adapter: str
    params: dict[str, Any] = Field(default_factory=dict)
    # How a Slack user becomes a backend identity: a template over the profile, an explicit map, or both.
    principal: str | None = None
    users: dict[str, str] | None = None
    approvers: SlackIds
    requesters: list[str] | None = None
    approvals_required: int | None = Field(default=None, ge=1, le=10)
    min_duration: Duration | None = None
    default_duration: Duration | None = None
    max_duration: Duration | None = None
    reason_pattern: Regex | None = None
    emergency: bool = False
    # What reconciliation may take back: what the bot can tell it made (`bot`), every holder of the role or group
    # (`all`, for ones that exist only for break-glass), or nothing (`off`).
    reconcile: Literal["bot", "all", "off"] = "bot"
    # Access levels, least privileged first; the first is the default (see ``at``). None: one unnamed level.
    levels: dict[str, Level] | None = Field(default=None, min_length=1)
    # Captured activity (bot/services/activity.py): how often it is read and posted, and what is announced at once.
    activity_every: Duration | None = None
    alert_on: list[str] = Field(default_factory=list)
    # The level this is a view of (set by ``at``, never by the policy file), and the views ``at`` made, kept: the
    # rules ask for them on every command and click.
    _level: str | None = PrivateAttr(default=None)
    _views: dict[str | None, Resource] = PrivateAttr(default_factory=dict)

    @field_validator("alert_on")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        return _check_patterns(value)

    @field_validator("levels")
    @classmethod
    def _level_names(cls, value: dict[str, Level] | None) -> dict[str, Level] | None:
        for name in value or {}:
            if not _LEVEL_NAME.fullmatch(str(name)):
                raise ValueError(
                    f"'{name}' is not a level name (lower-case letters, digits, '_' or '-', starting with a letter, "
                    "at most 32)"
                )
        return value

    @property
    def level(self) -> str | None:
        """The level this resource is a view of; None for a resource without levels (or not yet viewed at one)."""
        return self._level

    @property
    def label(self) -> str:
        """How people name it: `orders-db`, or `orders-db:write` for a level."""
        return label(self.name, self._level)

    @property
    def level_names(self) -> list[str]:
        return list(self.levels or {})

    def at(self, level: str | None) -> Resource:
        """The resource as one of its levels grants it: the level's params merged over the resource's, and its limits
        where it sets them. ``None`` is the first (least privileged) level. KeyError for a level it does not have; a
        resource without levels has only ``None``. A level that lowers ``max_duration`` below the inherited default
        lowers the default with it, so `max_duration: 30m` alone is a complete level."""
        if self.levels is None:
            if level is not None:
                raise KeyError(level)
            return self
        if level in self._views:
            return self._views[level]
        name = level if level is not None else next(iter(self.levels))
        chosen = self.levels[name]
        changes: dict[str, Any] = {"params": {**self.params, **chosen.params}}
        for key in _LEVEL_LIMITS:
            value = getattr(chosen, key)
            if value is not None:
                changes[key] = value
        high, default = changes.get("max_duration", self.max_duration), changes.get("default_duration")
        if default is None and high is not None and self.default_duration is not None and self.default_duration > high:
            changes["default_duration"] = high
        if chosen.description:
            changes["description"] = chosen.description
        viewed = self.model_copy(update=changes)
        viewed._level = name
        viewed._views = {}  # a view's own views would merge one level's params over another's: never asked for
        self._views[level] = viewed
        return viewed

    def lesser(self) -> list[str]:
        """The levels before this one (less privileged), least first; empty for the first level or none."""
        names = self.level_names
        return names[: names.index(self._level)] if self._level in names else []

    @field_validator("reconcile", mode="before")
    @classmethod
    def _reconcile(cls, value: Any) -> Any:
        if value is False:  # YAML 1.1 reads a bare `off` as false
            return "off"
        if isinstance(value, bool):
            raise ValueError("expected bot, all or off")
        return value

    @field_validator("approvers", "requesters")
    @classmethod
    def _ids(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_slack_ids(value)

    @field_validator("principal")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None and (problem := template_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("users")
    @classmethod
    def _users(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for slack_id, principal in (value or {}).items():
            if not _SLACK_ID.fullmatch(slack_id) or slack_id.startswith("S"):
                raise ValueError(f"'{slack_id}' is not a Slack user id (U…/W…)")
            if not principal.strip():
                raise ValueError(f"{slack_id}: the backend identity is empty")
        return value

    # The fields below are always set once the policy has applied its defaults.
    @property
    def limits(self) -> tuple[timedelta, timedelta, timedelta]:
        assert self.min_duration and self.default_duration and self.max_duration
        return self.min_duration, self.default_duration, self.max_duration

    @property
    def required_approvals(self) -> int:
        assert self.approvals_required is not None
        return self.approvals_required

    def allowed_range(self) -> str:
        low, _, high = self.limits
        return f"{format_duration(low)} to {format_duration(high)}"

    def reason_matches(self, reason: str) -> bool:
        return self.reason_pattern is None or re.search(self.reason_pattern, reason) is not None


class Policy(_Strict):
    channels: Channels
    defaults: Defaults = Defaults()
    review: ReviewPolicy = ReviewPolicy()
    resources: dict[str, Resource] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _apply_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("resources"), dict):
            return data
        try:
            defaults = Defaults.model_validate(data.get("defaults") or {})
        except ValidationError:
            defaults = Defaults()  # the mistake is reported once, under defaults.*, by the field itself
        resources = {}
        for name, resource in data["resources"].items():
            if isinstance(resource, dict):
                resource = {"name": name, **resource}
                for key in ("min_duration", "default_duration", "max_duration", "approvals_required", "activity_every"):
                    if resource.get(key) is None:
                        resource[key] = getattr(defaults, key)
            resources[name] = resource
        return {**data, "resources": resources}

    @model_validator(mode="after")
    def _check_resources(self) -> Policy:
        for name, resource in self.resources.items():
            if not _RESOURCE_NAME.fullmatch(str(name)):
                raise ValueError(f"resources.{name}: a resource name is lower-case letters, digits, '.', '_' or '-'")
            if name in RESERVED_NAMES:
                raise ValueError(f"resources.{name}: '{name}' is a /breakglass command, pick another name")
            for level in resource.level_names or [None]:
                where = f"resources.{name}" if level is None else f"resources.{name}.levels.{level}"
                viewed = resource.at(level)
                people = set(viewed.approvers)
                if not any(entry.startswith("S") for entry in people) and len(people) < viewed.required_approvals:
                    raise ValueError(
                        f"{where}: approvals_required is {viewed.required_approvals} but only {len(people)} "
                        "approver(s) are listed, so no request could ever be approved"
                    )
                low, default, high = viewed.limits
                if not low <= default <= high:
                    raise ValueError(
                        f"{where}: expected min_duration <= default_duration <= max_duration, got "
                        f"{format_duration(low)}, {format_duration(default)}, {format_duration(high)}"
                    )
            every = resource.activity_every
            if every is not None and every < MIN_ACTIVITY_EVERY:
                raise ValueError(f"resources.{name}.activity_every: at least {format_duration(MIN_ACTIVITY_EVERY)}")
        return self

    def resource(self, name: str, level: str | None = None) -> Resource | None:
        """The resource called ``name`` as ``level`` grants it (None: its first level); None if either is unknown."""
        resource = self.resources.get(name)
        if resource is None:
            return None
        try:
            return resource.at(level)
        except KeyError:
            return None

    def grantables(self) -> list[Resource]:
        """Every resource at every level: each is one configured adapter, keyed by its ``label``."""
        return [r.at(level) for r in self.resources.values() for level in (r.level_names or [None])]

    def needs_review(self, emergency: bool) -> bool:
        return self.review.required == "all" or (self.review.required == "emergency" and emergency)


def _describe(error: ValidationError) -> str:
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
    return "; ".join(lines)


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
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                hint = " (YAML reads on/off/yes/no as booleans)" if isinstance(key, bool) else ""
                where = f"{path}: " if path else ""
                raise PolicyError(f"{where}the key {key!r} is not a string{hint}; put it in quotes")
            _refuse_non_string_keys(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            _refuse_non_string_keys(item, f"{path}[{index}]")


def load_policy(path: Path) -> Policy:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PolicyError(f"{path}: cannot read the policy file ({error.strerror})") from None
    return parse_policy(text, source=str(path))


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
