"""The policy file (breakglass.yml): who may ask for what, for how long, and who decides.

Read once at start and passed down. Errors name the key path and what was expected.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.adapters.principal import template_problem
from bot.domain.durations import format_duration
from bot.oncall.settings import OnCallService
from bot.policy.approval import (
    FLOW_KEYS,
    PENDING_TIMEOUT,
    REMIND_EVERY,
    ApprovalStep,
    EmergencyTrigger,
    Escalation,
    OnCallRule,
    flow_problem,
)
from bot.policy.drills import Drill, drill_problems
from bot.policy.sinks import AuditSinks
from bot.policy.types import CHANNEL_ID, SLACK_ID, Duration, Regex, SlackIds, Strict, check_patterns, check_slack_ids

RESERVED_NAMES = frozenset({"help", "list", "mine", "revoke", "review", "extend", "drill"})
_RESOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_LEVEL_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
LEVEL_SEPARATOR = ":"  # `orders-db:write` names a level; never part of a resource or level name


def label(resource: str, level: str | None) -> str:
    """How people name what is asked for: `orders-db`, or `orders-db:write` for a level."""
    return resource if level is None else f"{resource}{LEVEL_SEPARATOR}{level}"


class PolicyError(ValueError):
    """The policy file is wrong; the message says where and what was expected."""


class Channels(Strict):
    approvals: str
    audit: str
    # Incident channels: a list of channel ids, or a pattern their names match (`^inc-`). A request typed in one has
    # its notices posted there, and may break glass that is tied to an incident.
    incidents: list[str] | Regex | None = None
    # Who an emergency alert in the audit channel mentions (a user or group id); review.reviewers when unset.
    audit_mention: str | None = None

    @field_validator("approvals", "audit")
    @classmethod
    def _channel_id(cls, value: str) -> str:
        if not CHANNEL_ID.fullmatch(value):
            raise ValueError(f"'{value}' is not a Slack channel id (C…, G…)")
        return value

    @field_validator("incidents")
    @classmethod
    def _incident_channels(cls, value: list[str] | str | None) -> list[str] | str | None:
        if isinstance(value, list):
            for entry in value:
                if not CHANNEL_ID.fullmatch(entry):
                    raise ValueError(f"'{entry}' is not a Slack channel id (C…, G…); or give one name pattern")
        return value

    @field_validator("audit_mention")
    @classmethod
    def _mention(cls, value: str | None) -> str | None:
        return None if value is None else check_slack_ids([value])[0]

    def is_incident(self, channel_id: str | None, channel_name: str | None) -> bool:
        """Whether a command typed in this channel was typed in an incident channel."""
        if self.incidents is None or channel_id is None:
            return False
        if isinstance(self.incidents, list):
            return channel_id in self.incidents
        return channel_name is not None and re.search(self.incidents, channel_name) is not None


MIN_ACTIVITY_EVERY = timedelta(seconds=5)


class Defaults(Strict):
    min_duration: Duration = timedelta(minutes=5)
    default_duration: Duration = timedelta(hours=1)
    max_duration: Duration = timedelta(hours=4)
    approvals_required: int = Field(default=1, ge=1, le=10)
    activity_every: Duration = timedelta(seconds=60)
    remind_approvers_every: Duration = REMIND_EVERY
    escalate_after: Duration | None = None
    escalate_to: list[str] | None = None
    pending_timeout: Duration = PENDING_TIMEOUT

    @field_validator("escalate_to")
    @classmethod
    def _backups(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_slack_ids(value)


class ReviewPolicy(Strict):
    required: Literal["emergency", "all", "none"] = "emergency"
    remind_every: Duration = timedelta(hours=24)
    # Who may sign a review off besides the resource's approvers (user or group ids); never the holder.
    reviewers: list[str] = Field(default_factory=list)
    # A person whose part of a review is overdue by longer than this may make no new non-emergency request.
    block_after: Duration | None = None

    @field_validator("reviewers")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        return check_slack_ids(value)


class Level(Escalation):
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
    emergency: bool | EmergencyTrigger | None = None
    approval_steps: list[ApprovalStep] | None = Field(default=None, min_length=1, max_length=5)
    oncall: OnCallRule | None = None

    @field_validator("approvers", "requesters")
    @classmethod
    def _ids(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_slack_ids(value)

    @model_validator(mode="after")
    def _one_way_to_approve(self) -> Level:
        if self.approval_steps is not None and (self.approvers is not None or self.approvals_required is not None):
            raise ValueError(_BOTH_WAYS)
        return self


_BOTH_WAYS = "approval_steps replaces approvers and approvals_required: give one or the other"
_LEVEL_LIMITS = (
    "requesters",
    "min_duration",
    "default_duration",
    "max_duration",
    "reason_pattern",
    "emergency",
    "oncall",
    *FLOW_KEYS,
)


class Resource(Escalation):
    name: str = ""
    description: str = ""
    adapter: str
    params: dict[str, Any] = Field(default_factory=dict)
    # How a Slack user becomes a backend identity: a template over the profile, an explicit map, or both.
    principal: str | None = None
    users: dict[str, str] | None = None
    # Who decides: ``approvers`` and ``approvals_required`` (one step), or ordered ``approval_steps``. With steps,
    # ``approvers`` is everyone in any step and ``approvals_required`` their sum (what lists and reviews use).
    approvers: SlackIds
    approval_steps: list[ApprovalStep] | None = Field(default=None, min_length=1, max_length=5)
    requesters: list[str] | None = None
    approvals_required: int | None = Field(default=None, ge=1, le=10)
    min_duration: Duration | None = None
    default_duration: Duration | None = None
    max_duration: Duration | None = None
    reason_pattern: Regex | None = None
    # Whether the glass may be broken: never (false), always (true), or only during an incident ({when: incident}).
    emergency: bool | EmergencyTrigger = False
    oncall: OnCallRule | None = None
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
        return check_patterns(value)

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

    @property
    def each_level(self) -> list[str | None]:
        """What ``at`` takes, one by one: every level, or ``None`` alone for a resource without levels."""
        return [*self.level_names] or [None]

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
        if chosen.approval_steps is not None:  # the level's own steps replace the resource's way of approving
            changes.update(_from_steps(chosen.approval_steps), approval_steps=chosen.approval_steps)
        elif chosen.approvers is not None or chosen.approvals_required is not None:  # the one-step shorthand
            changes["approval_steps"] = None
            changes["approvers"] = chosen.approvers or self.approvers
            changes["approvals_required"] = chosen.approvals_required or (
                1 if self.approval_steps is not None else self.approvals_required
            )
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

    @property
    def steps(self) -> tuple[ApprovalStep, ...]:
        """The approval steps in order: ``approval_steps``, or the one step ``approvers``/``approvals_required``
        make."""
        if self.approval_steps is not None:
            return tuple(self.approval_steps)
        return (ApprovalStep(approvers=list(self.approvers), required=self.required_approvals),)

    @property
    def emergency_trigger(self) -> EmergencyTrigger | None:
        """What must be true for the glass to be broken, when more than being allowed to."""
        return self.emergency if isinstance(self.emergency, EmergencyTrigger) else None

    @model_validator(mode="before")
    @classmethod
    def _approvers_from_steps(cls, data: Any) -> Any:
        """With ``approval_steps``, ``approvers`` and ``approvals_required`` are derived from them, never given."""
        if not isinstance(data, dict) or data.get("approval_steps") is None:
            return data
        if data.get("approvers") is not None or data.get("approvals_required") is not None:
            raise ValueError(_BOTH_WAYS)
        steps = data["approval_steps"]
        if not isinstance(steps, list) or not all(isinstance(step, dict) for step in steps):
            return data  # the field reports the shape it expected
        try:
            return {**data, **_from_steps([ApprovalStep.model_validate(step) for step in steps])}
        except ValidationError:
            # The mistake is reported once, under approval_steps.N, by the field itself; a stand-in list keeps
            # `approvers` from being reported missing too. The policy is refused either way.
            return {**data, "approvers": ["U0UNSET"]}

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
        return None if value is None else check_slack_ids(value)

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
            if not SLACK_ID.fullmatch(slack_id) or slack_id.startswith("S"):
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


def _approval_problem(viewed: Resource, provider: str | None, has_incident_channels: bool) -> str | None:
    """What makes a resource's (or level's) way of deciding impossible, as "key: why", or None."""
    if viewed.approval_steps is None:
        people = set(viewed.approvers)
        if not any(entry.startswith("S") for entry in people) and len(people) < viewed.required_approvals:
            return (
                f"approvals_required: {viewed.required_approvals} are required but only {len(people)} approver(s) "
                "are listed, so no request could ever be approved"
            )
    else:
        for index, step in enumerate(viewed.approval_steps):
            people = set(step.approvers)
            if not any(entry.startswith("S") for entry in people) and len(people) < step.required:
                return (
                    f"approval_steps[{index}].required: {step.required} are required but only {len(people)} "
                    "approver(s) are listed, so no request could ever be approved"
                )
        listed = {person for step in viewed.approval_steps for person in step.approvers}
        total = sum(step.required for step in viewed.approval_steps)
        if not any(entry.startswith("S") for entry in listed) and len(listed) < total:
            return (
                f"approval_steps: {total} approvals in all are required but only {len(listed)} different people are "
                "listed, and a person counts in one step only"
            )
    flow = flow_problem(
        viewed.remind_approvers_every, viewed.escalate_after, viewed.escalate_to, viewed.pending_timeout
    )
    if flow:
        return flow
    has_oncall = provider is not None
    if viewed.oncall is not None and not has_oncall:
        return "oncall: needs the top-level oncall section (provider, api_url, token_env)"
    trigger = viewed.emergency_trigger
    if trigger is not None and provider == "pagerduty" and trigger.priority is not None:
        return "emergency.priority: an Opsgenie key; PagerDuty incidents have an urgency (urgency: high)"
    if trigger is not None and provider == "opsgenie" and trigger.urgency is not None:
        return "emergency.urgency: a PagerDuty key; Opsgenie incidents have a priority (priority: P1 … P5)"
    if trigger is not None and not has_oncall and trigger.services:
        return "emergency.services: needs the top-level oncall section to look for open incidents"
    if trigger is not None and not has_oncall and not has_incident_channels:
        return (
            "emergency: `when: incident` needs the top-level oncall section (open incidents) or channels.incidents "
            "(incident channels), or the glass could never be broken"
        )
    return None


def _from_steps(steps: list[ApprovalStep]) -> dict[str, Any]:
    everyone = list(dict.fromkeys(person for step in steps for person in step.approvers))
    return {"approvers": everyone, "approvals_required": min(sum(step.required for step in steps), 10)}


class Policy(Strict):
    channels: Channels
    defaults: Defaults = Defaults()
    review: ReviewPolicy = ReviewPolicy()
    oncall: OnCallService | None = None
    resources: dict[str, Resource] = Field(min_length=1)
    drills: list[Drill] = Field(default_factory=list)  # bot/policy/drills.py
    audit_sinks: AuditSinks = Field(default_factory=list)  # bot/policy/sinks.py

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
                keys = ["min_duration", "default_duration", "max_duration", "activity_every", *FLOW_KEYS]
                if resource.get("approval_steps") is None:  # steps give their own counts
                    keys.append("approvals_required")
                for key in keys:
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
            for level in resource.each_level:
                where = f"resources.{name}" if level is None else f"resources.{name}.levels.{level}"
                viewed = resource.at(level)
                provider = self.oncall.provider if self.oncall is not None else None
                if problem := _approval_problem(viewed, provider, self.channels.incidents is not None):
                    raise ValueError(f"{where}.{problem}")
                low, default, high = viewed.limits
                if not low <= default <= high:
                    raise ValueError(
                        f"{where}: expected min_duration <= default_duration <= max_duration, got "
                        f"{format_duration(low)}, {format_duration(default)}, {format_duration(high)}"
                    )
            every = resource.activity_every
            if every is not None and every < MIN_ACTIVITY_EVERY:
                raise ValueError(f"resources.{name}.activity_every: at least {format_duration(MIN_ACTIVITY_EVERY)}")
        if problem := drill_problems(self.drills, self.resources):
            raise ValueError(problem)
        return self

    def is_incident_channel(self, channel_id: str | None, channel_name: str | None) -> bool:
        return self.channels.is_incident(channel_id, channel_name)

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
        return [r.at(level) for r in self.resources.values() for level in r.each_level]

    def needs_review(self, emergency: bool) -> bool:
        return self.review.required == "all" or (self.review.required == "emergency" and emergency)
