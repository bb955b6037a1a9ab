"""Filling in a modal as a person would, for the tests and the demo: the state Slack sends with a submission or with
an action inside the modal, from the view as Slack holds it.

Slack sends every input block's value, including those the person left as the form set them (a select's initial
option, a text input's initial value), so a submission made here starts from those and changes only what it is told.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.devtools.slack_requests import checked, selected


def _given(answers: Mapping[str, Any], block_id: str) -> tuple[bool, Any]:
    """The answer for a block, named by its id or by the part of it before "." (the request form's blocks are drawn
    for a resource or level: ``duration.orders-db:write`` is answered as ``duration``)."""
    for key in (block_id, block_id.partition(".")[0]):
        if key in answers:
            return True, answers[key]
    return False, None


def _option_values(options: object) -> list[str]:
    return [str(o.get("value")) for o in options or [] if isinstance(o, dict)] if isinstance(options, list) else []


def state_of(view: Mapping[str, Any], answers: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """What ``view``'s inputs hold, as ``view_submission``/``view_action`` take it: block id -> action id -> state.

    ``answers`` changes some: a select's chosen value (a str), a text input's text (None: empty), a checkbox group's
    ticked values (a list; True ticks them all, False none)."""
    answers = answers or {}
    state: dict[str, dict[str, Any]] = {}
    for block in view.get("blocks") or []:
        if not isinstance(block, dict) or block.get("type") != "input":
            continue
        element, block_id = block.get("element") or {}, str(block.get("block_id") or "")
        action, kind = str(element.get("action_id") or ""), element.get("type")
        given, answer = _given(answers, block_id)
        if kind == "static_select":
            initial = element.get("initial_option")
            value = answer if given else (initial or {}).get("value")
            chosen: dict[str, Any] = (
                selected(str(value)) if value is not None else {"type": kind, "selected_option": None}
            )
        elif kind == "checkboxes":
            everything = _option_values(element.get("options"))
            if given:
                ticked = everything if answer is True else [] if answer is False else [str(v) for v in answer]
            else:
                ticked = _option_values(element.get("initial_options"))
            chosen = checked(*ticked)
        else:
            chosen = {"type": kind or "plain_text_input", "value": answer if given else element.get("initial_value")}
        state[block_id] = {action: chosen}
    return state


def block_of(view: Mapping[str, Any], name: str) -> str | None:
    """The id of ``view``'s input block named ``name`` (its id, or the part of it before ".")."""
    for block in view.get("blocks") or []:
        block_id = str(block.get("block_id") or "") if isinstance(block, dict) else ""
        if block.get("type") == "input" and name in (block_id, block_id.partition(".")[0]):
            return block_id
    return None
