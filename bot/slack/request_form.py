"""The request form: the modal through which a person asks for access without typing a command.

Pure: built from what this person may choose (``services.requests.choices``) and what they have chosen or typed so
far (a ``Draft``), and read back from a submission into the ``Ask`` a typed command makes. The form offers only what
the person may request, the chosen resource's levels least privileged first, durations within the chosen level's
limits, the reason's pattern as a hint, and "Break the glass" only where they may. It remembers in its
``private_metadata`` only where it was opened (to answer there), never anything that decides what may be done.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from bot.domain.commands import LEVEL_NAME, RESOURCE_NAME, Ask, clean
from bot.domain.durations import format_duration
from bot.domain.rules import MAX_REASON, Forbidden, Refused, check_ask, find_resource
from bot.policy import Policy, Resource
from bot.services.requests import Choice, LevelChoice
from bot.slack import fields
from bot.slack.ids import ActionId, CallbackId, FormField
from bot.slack.text import code, escape, placeholders

View = dict[str, Any]

TITLE = "Request access"
EMERGENCY_VALUE = "emergency"
MAX_TYPED_DURATION = 40  # characters: "1d 12h 30m 15s" is 14; anything longer is not a duration
# Durations offered in the select, where the level's limits allow them; its minimum, default and maximum always are.
_LADDER = tuple(
    timedelta(minutes=m) for m in (5, 10, 15, 30, 45, 60, 90, 120, 180, 240, 360, 480, 720, 1440, 2880, 4320, 10080)
)
_CHANNEL = re.compile(r"[CDGUW][A-Z0-9]{1,31}")  # as Slack's ids are shaped; a user id stands for their DM
_CHANNEL_NAME = re.compile(r"[a-z0-9._-]{1,80}")
NOTHING_TO_REQUEST = (
    "There is no resource you may request: you are not among the requesters of any. Ask your platform team, or an "
    "approver of the resource you need, to add you to its requesters."
)
TYPED = placeholders(
    "Prefer typing? `/breakglass <resource>[:level] [duration] <reason>` does the same; `/breakglass help` says more."
)


@dataclass(frozen=True)
class Draft:
    """What the person has chosen or typed in the form so far, kept when it is redrawn for a new choice."""

    resource: str | None = None
    level: str | None = None
    duration: str | None = None  # the select's choice
    typed_duration: str = ""
    reason: str = ""
    emergency: bool = False


def block_id(name: FormField, drawn_for: str | None = None) -> str:
    return name.value if drawn_for is None else f"{name.value}.{drawn_for}"


def metadata(channel: str, channel_name: str | None = None) -> str:
    """Where the form was opened: a channel (its answer is said there, privately) or the person's user id (their DM)."""
    data: dict[str, str] = {"channel": channel}
    if channel_name:
        data["name"] = channel_name
    return json.dumps(data, separators=(",", ":"))


def origin(view: object, actor: str) -> tuple[str, str | None]:
    """The channel (and its name) the form was opened from; the person's own id (their DM) when it says none we can
    use. Only where to answer: nothing about who may do what is read from it."""
    try:
        data = json.loads(view.get("private_metadata") or "") if isinstance(view, dict) else None
    except (TypeError, ValueError):
        data = None
    channel = data.get("channel") if isinstance(data, dict) else None
    name = data.get("name") if isinstance(data, dict) else None
    if not (isinstance(channel, str) and _CHANNEL.fullmatch(channel)):
        return actor, None
    return channel, name if isinstance(name, str) and _CHANNEL_NAME.fullmatch(name) else None


def offered_durations(resource: Resource) -> list[timedelta]:
    low, default, high = resource.limits
    return sorted({d for d in _LADDER if low <= d <= high} | {low, default, high})[: fields.MAX_OPTIONS]


def build(choices: Sequence[Choice], channel: str, channel_name: str | None = None, draft: Draft = Draft()) -> View:
    """The form for a person with these ``choices``, showing ``draft``'s resource and level (else the first of each
    they may request), with what they typed kept where it still applies."""
    form: View = {
        "type": "modal",
        "callback_id": CallbackId.REQUEST.value,
        "private_metadata": metadata(channel, channel_name),
        "title": fields.plain(TITLE, 24),
        "close": fields.plain("Cancel" if choices else "Close", 24),
        "clear_on_close": True,
        "notify_on_close": False,
    }
    if not choices:
        return form | {"blocks": [fields.section(NOTHING_TO_REQUEST)]}
    choice = next((c for c in choices if c.resource.name == draft.resource), choices[0])
    if len(choices) > fields.MAX_OPTIONS:  # a select holds no more: the chosen one stays among those shown
        choices = [*[c for c in choices if c is not choice][: fields.MAX_OPTIONS - 1], choice]
    chosen = next((lv for lv in choice.levels if lv.resource.level == draft.level), choice.levels[0])
    blocks = [_resource_input(choices, choice)]
    if choice.resource.levels is not None:
        blocks.append(_level_input(choice, chosen))
    blocks.append(fields.context(_about(chosen.resource)))
    blocks += _duration_inputs(chosen.resource, draft)
    blocks.append(_reason_input(chosen.resource, draft.reason))
    if chosen.may_break_glass:
        blocks.append(_emergency_input(chosen.resource, draft.emergency))
    blocks.append(fields.context(TYPED))
    return form | {"submit": fields.plain("Request", 24), "blocks": blocks}


def _resource_input(choices: Sequence[Choice], choice: Choice) -> fields.Block:
    options = [fields.option(c.resource.name, c.resource.name, c.resource.description or None) for c in choices]
    initial = options[choices.index(choice)]
    select = fields.static_select(ActionId.PICK_RESOURCE, options, initial, "Choose a resource")
    return fields.input_block(block_id(FormField.RESOURCE), "Resource", select, dispatch_action=True)


def _level_input(choice: Choice, chosen: LevelChoice) -> fields.Block:
    def described(level: LevelChoice) -> str | None:
        own = (choice.resource.levels or {})[str(level.resource.level)].description
        return own or None

    options = [fields.option(str(lv.resource.level), str(lv.resource.level), described(lv)) for lv in choice.levels]
    initial = options[choice.levels.index(chosen)]
    select = fields.static_select(ActionId.PICK_LEVEL, options, initial)
    hint = "Least privileged first: ask for the least that will do."
    # Drawn for the resource: a level of the resource chosen before is never carried over.
    where = block_id(FormField.LEVEL, choice.resource.name)
    return fields.input_block(where, "Level", select, hint=hint, dispatch_action=True)


def _about(resource: Resource) -> str:
    approvals = resource.required_approvals
    parts = [code(resource.label), f"{approvals} approval{'s' if approvals > 1 else ''} needed"]
    if resource.level is not None and resource.description:
        parts.append(escape(resource.description, 300))  # the level's words (else the resource's), last on the line
    return " · ".join(parts)


def _duration_inputs(resource: Resource, draft: Draft) -> list[fields.Block]:
    low, default, high = resource.limits
    offered = offered_durations(resource)
    options = [
        fields.option(format_duration(d) + (" (default)" if d == default else ""), format_duration(d)) for d in offered
    ]
    values = [format_duration(d) for d in offered]
    initial = options[values.index(draft.duration)] if draft.duration in values else options[offered.index(default)]
    select = fields.static_select(FormField.DURATION.value, options, initial)
    allowed = f"{resource.label} allows {resource.allowed_range()}."
    # Drawn for the level: its limits decide the options, so a choice made for another level is never carried over.
    chosen = fields.input_block(
        block_id(FormField.DURATION, resource.label), "How long", select, hint=allowed, optional=True
    )
    typed = fields.text_input(
        FormField.TYPED_DURATION.value,
        max_length=MAX_TYPED_DURATION,
        placeholder="e.g. 1h30m",
        initial=draft.typed_duration[:MAX_TYPED_DURATION] or None,  # Slack refuses a longer initial value
    )
    hint = f"Between {format_duration(low)} and {format_duration(high)}, like 90s, 45m, 2h or 1h30m."
    typed_block = fields.input_block(
        block_id(FormField.TYPED_DURATION), "Or type a duration", typed, hint=hint, optional=True
    )
    return [chosen, typed_block]


def _reason_input(resource: Resource, reason: str) -> fields.Block:
    element = fields.text_input(
        FormField.REASON.value,
        multiline=True,
        max_length=MAX_REASON,
        placeholder="What is broken, and why you need this access",
        initial=reason[:MAX_REASON] or None,
    )
    seen = "Approvers and the audit trail see it."
    hint = (
        f"Must mention a reference matching `{resource.reason_pattern}`, e.g. an incident id. {seen}"
        if resource.reason_pattern
        else seen
    )
    return fields.input_block(
        block_id(FormField.REASON), "Reason", element, hint=f"{hint} At most {MAX_REASON} characters."
    )


def _emergency_input(resource: Resource, ticked: bool) -> fields.Block:
    option = fields.option("Break the glass", EMERGENCY_VALUE, "Access at once, without waiting for approval")
    element = fields.checkboxes(FormField.EMERGENCY.value, [option], [option] if ticked else None)
    when = (
        " Only during an incident (asked from an incident channel, or with one open)."
        if resource.emergency_trigger
        else ""
    )
    hint = (
        "For emergencies only. Access is granted at once without approval; security is alerted, the approvers are "
        f"told, and you account for it in a review afterwards.{when}"
    )
    return fields.input_block(
        block_id(FormField.EMERGENCY, resource.label), "Emergency", element, hint=hint, optional=True
    )


# -- reading what was chosen and typed -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Filled:
    """A submitted (or redrawn) form's answers, and each field's block in that view: where its mistake is shown."""

    resource: str | None
    level: str | None
    duration: str | None  # the select's choice
    typed_duration: str
    reason: str
    emergency: bool
    blocks: dict[FormField, str] = field(default_factory=dict)

    def where(self, name: FormField) -> str:
        """The block to show a mistake in ``name`` under: its own, else the level's, else the resource's (on every
        form with inputs). Slack shows an error only under a block the form has."""
        found = self.blocks.get(name) or self.blocks.get(FormField.LEVEL) or self.blocks.get(FormField.RESOURCE)
        return found or block_id(FormField.RESOURCE)

    @property
    def draft(self) -> Draft:
        return Draft(self.resource, self.level, self.duration, self.typed_duration, self.reason, self.emergency)


def _field(name: str) -> FormField | None:
    try:
        return FormField(name.partition(".")[0])
    except ValueError:
        return None


def _selected(element: object) -> str | None:
    option = element.get("selected_option") if isinstance(element, dict) else None
    value = option.get("value") if isinstance(option, dict) else None
    return value if isinstance(value, str) else None


def _typed(element: object) -> str:
    value = element.get("value") if isinstance(element, dict) else None
    return " ".join(clean(value).split()) if isinstance(value, str) else ""  # as a typed command's words are joined


def _ticked(element: object) -> bool:
    options = element.get("selected_options") if isinstance(element, dict) else None
    return isinstance(options, list) and any(isinstance(o, dict) and o.get("value") == EMERGENCY_VALUE for o in options)


def read(view: object) -> Filled:
    """What the form holds. Nothing here is trusted: the checks of a typed command follow (``check``)."""
    view = view if isinstance(view, dict) else {}
    state = view.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    values = values if isinstance(values, dict) else {}
    where: dict[FormField, str] = {}
    for block in view.get("blocks") or []:
        name = _field(str(block.get("block_id") or "")) if isinstance(block, dict) else None
        if name is not None and block.get("type") == "input":
            where[name] = str(block["block_id"])
    found: dict[FormField, object] = {}
    for key, inputs in values.items():
        name = _field(str(key))
        if name is None or not isinstance(inputs, dict):
            continue
        action = {FormField.RESOURCE: ActionId.PICK_RESOURCE, FormField.LEVEL: ActionId.PICK_LEVEL}.get(name, name)
        found[name] = inputs.get(action.value)
    return Filled(
        resource=_selected(found.get(FormField.RESOURCE)),
        level=_selected(found.get(FormField.LEVEL)),
        duration=_selected(found.get(FormField.DURATION)),
        typed_duration=_typed(found.get(FormField.TYPED_DURATION)),
        reason=_typed(found.get(FormField.REASON)),
        emergency=_ticked(found.get(FormField.EMERGENCY)),
        blocks=where,
    )


def picked(view: object, action: dict[str, Any]) -> Draft:
    """The form's answers with a choice just made in one of its selects: a new resource starts at its first level, and
    a duration chosen before is kept where the new limits allow it."""
    draft = read(view).draft
    value = _selected(action)
    # A duration left as the form set it (the old level's default) gives way to the new level's default.
    chosen = None if draft.duration == _initial(view, FormField.DURATION) else draft.duration
    if action.get("action_id") == ActionId.PICK_RESOURCE.value:
        return Draft(value, None, chosen, draft.typed_duration, draft.reason, draft.emergency)
    if action.get("action_id") == ActionId.PICK_LEVEL.value:
        return Draft(draft.resource, value, chosen, draft.typed_duration, draft.reason, draft.emergency)
    return draft


def _initial(view: object, name: FormField) -> str | None:
    """The option a select of the form was drawn with."""
    shown = view.get("blocks") if isinstance(view, dict) else None
    for block in shown if isinstance(shown, list) else []:
        if isinstance(block, dict) and _field(str(block.get("block_id") or "")) is name:
            return _selected({"selected_option": (block.get("element") or {}).get("initial_option")})
    return None


class Mistakes(Exception):
    """What is wrong with a submission, by block id (Slack shows each under its field); ``forbidden``: the refusal of
    something the policy forbids this person, to be audited as a typed command's is."""

    def __init__(self, errors: dict[str, str], forbidden: str | None = None) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors
        self.forbidden = forbidden


def ask(filled: Filled) -> Ask:
    """The ask a typed command would make from the same answers; Mistakes where one is not even shaped like one."""
    errors: dict[str, str] = {}
    if not filled.resource:
        errors[filled.where(FormField.RESOURCE)] = "Choose a resource."
    elif not RESOURCE_NAME.fullmatch(filled.resource):
        errors[filled.where(FormField.RESOURCE)] = "That is not a resource name. Choose one from the list."
    if filled.level is not None and not LEVEL_NAME.fullmatch(filled.level):
        errors[filled.where(FormField.LEVEL)] = "That is not a level name. Choose one from the list."
    if len(filled.typed_duration) > MAX_TYPED_DURATION:
        errors[filled.where(FormField.TYPED_DURATION)] = "That is not a duration: use one like 90s, 45m, 2h or 1h30m."
    if errors:
        raise Mistakes(errors)
    return Ask(
        resource=str(filled.resource),
        duration=filled.typed_duration or filled.duration,
        reason=filled.reason,
        emergency=filled.emergency,
        level=filled.level,
    )


def check(policy: Policy, may_request: Callable[[Resource], bool], filled: Filled) -> tuple[Resource, Ask]:
    """The resource and ask of a submission, checked by the rules a typed command is checked by, or Mistakes saying,
    under each field, what is wrong with it. ``may_request`` may raise MembershipUnknown (a group lookup).

    The last ``find_resource`` and ``check_ask`` are the typed command's checks exactly; the ones before them only
    find which field a refusal belongs to, in the order the typed command reports them."""
    asked = ask(filled)

    def refused(name: FormField, refusal: Refused) -> Mistakes:
        return Mistakes({filled.where(name): str(refusal)}, str(refusal) if isinstance(refusal, Forbidden) else None)

    steps: list[tuple[FormField, dict[str, Any]]] = [
        (FormField.RESOURCE, {}),
        (FormField.LEVEL, {"level": asked.level}),
        (FormField.EMERGENCY, {"level": asked.level, "emergency": asked.emergency}),
    ]
    resource: Resource | None = None
    for name, given in steps:
        try:
            resource = find_resource(policy, asked.resource, may_request, **given)
        except Refused as refusal:
            raise refused(name, refusal) from None
    assert resource is not None
    try:
        check_ask(resource, asked)
    except Refused as refusal:
        errors: dict[str, str] = {}
        reason_problem = _problem(lambda: check_ask(resource, replace(asked, duration=None)))
        if reason_problem != str(refusal):  # the duration comes first in check_ask: it is the one refused
            duration_field = FormField.TYPED_DURATION if filled.typed_duration else FormField.DURATION
            errors[filled.where(duration_field)] = str(refusal)
        if reason_problem is not None:
            errors[filled.where(FormField.REASON)] = reason_problem
        raise Mistakes(errors) from None
    return resource, asked


def _problem(work: Callable[[], object]) -> str | None:
    try:
        work()
    except Refused as refusal:
        return str(refusal)
    return None
