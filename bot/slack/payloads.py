"""What a signed request must look like before Bolt parses it.

A valid signature proves the body came from Slack, but Bolt's own parsing assumes every payload is well formed
(``actions[0]["action_id"]``, ``user["id"]``, a JSON object), and a shape it does not expect ends in a 500 or in a
listener that crashes. These checks answer such a body with a 400 instead. They mirror Bolt's parse_body: JSON
when the content type says so or the body starts with "{", else a form that may carry a ``payload`` of JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

# Slack's ids (U…, W…, T…, E…, C…, D…, G…) are short upper-case words; the bot stores them in columns of 32 and
# writes "team:user" as an actor (64), so an id that is not shaped like one never reaches the database.
_SLACK_ID = re.compile(r"[A-Z0-9]{1,31}")


def problem(body: bytes, content_type: str | None) -> str | None:
    """Why ``body`` is not a payload Slack sends, or None."""
    return read(body, content_type)[0]


def for_bolt(body: bytes, content_type: str | None) -> bytes:
    """The body as Bolt must see it.

    Bolt takes any form body containing the word "payload" for an interaction, and finding no payload field in
    it, for an empty request: a /breakglass command whose text (or user or channel name) says "payload" would
    vanish. Percent-encoding one letter keeps every value as it was and hides the word from that test.
    """
    return read(body, content_type)[1]


def read(body: bytes, content_type: str | None) -> tuple[str | None, bytes]:
    """``problem`` and ``for_bolt`` from one parse of the form: every ack waits for it, and a click's form is one
    long percent-encoded payload."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "the body is not UTF-8", body
    if not text:
        return None, body
    if _is_json(text, content_type):
        return _json_problem(text, _event_problem), body
    pairs = parse_qsl(text, keep_blank_values=True)
    payloads = [value for key, value in pairs if key == "payload"]
    bolted = body.replace(b"payload", b"p%61yload") if b"payload" in body and not payloads else body
    if len(payloads) > 1:
        return "more than one payload", bolted
    if payloads:
        return _json_problem(payloads[0], _interaction_problem), bolted
    form = dict(pairs)
    if "command" in form:
        return _command_problem(form), bolted
    return (None if "ssl_check" in form else "neither a command nor an interaction"), bolted


def _is_json(text: str, content_type: str | None) -> bool:
    return (content_type or "").strip().lower().startswith("application/json") or text.startswith("{")


def _json_problem(text: str, check: Any) -> str | None:
    try:
        data = json.loads(text)
    except ValueError:
        return "the payload is not JSON"
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return "the payload is not an object with a type"
    return check(data)


def _event_problem(data: dict[str, Any]) -> str | None:
    if "event" in data and not isinstance(data["event"], dict):
        return "the event is not an object"
    return None


def _interaction_problem(data: dict[str, Any]) -> str | None:
    user = data.get("user")
    if user is not None and not (isinstance(user, dict) and _is_id(user.get("id"))):
        return "the user is not an object with an id"
    for key in ("team", "channel", "enterprise"):
        part = data.get(key)
        if part is not None and not (isinstance(part, dict) and _is_id(part.get("id"), missing_ok=True)):
            return f"the {key} is not an object with an id"
    if data["type"] == "block_actions":
        if user is None:
            return "a click without a user"
        actions = data.get("actions")
        if not isinstance(actions, list) or not actions:
            return "a click without actions"
        for action in actions:
            if not isinstance(action, dict) or not _text(action.get("action_id")):
                return "an action without an action_id"
            if any(key in action and not isinstance(action[key], str) for key in ("value", "block_id")):
                return "an action whose value or block_id is not text"
    if data["type"] == "view_submission":
        if user is None:
            return "a form without a user"
        view = data.get("view")
        # Bolt routes on view.callback_id, and takes any other view type for a workflow step it then looks for.
        if not isinstance(view, dict) or not _text(view.get("callback_id")) or view.get("type") != "modal":
            return "a form that is not a modal with a callback_id"
        state = view.get("state")
        if state is not None and not (isinstance(state, dict) and isinstance(state.get("values", {}), dict)):
            return "a form whose state is not an object of values"
        if not isinstance(view.get("blocks", []), list):
            return "a form whose blocks are not a list"
    return _url_problem(data.get("response_url"))


def _command_problem(form: dict[str, str]) -> str | None:
    if not _is_id(form.get("user_id")):
        return "a command without a user id"
    for key in ("team_id", "channel_id", "enterprise_id"):
        if not _is_id(form.get(key), missing_ok=True):
            return f"a command whose {key} is not a Slack id"
    return _url_problem(form.get("response_url"))


def _url_problem(url: object) -> str | None:
    if url is None:
        return None
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        return "a response_url that is not an http(s) URL"
    return None


def _text(value: object) -> bool:
    return isinstance(value, str) and value != ""


def _is_id(value: object, missing_ok: bool = False) -> bool:
    if value is None or value == "":
        return missing_ok
    return isinstance(value, str) and _SLACK_ID.fullmatch(value) is not None
