"""Build and sign requests to the bot exactly as Slack does (slash commands, button clicks, submitted forms,
actions in modals and the Home tab, shortcuts, events).

Signing follows https://api.slack.com/authentication/verifying-requests-from-slack:
``v0=`` + hex HMAC-SHA256 of ``v0:{timestamp}:{body}`` keyed with the app's signing secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import requests

TEAM_ID = "T0TEST"
TEAM_DOMAIN = "breakglass-test"
API_APP_ID = "A0BREAKGLASS"
VERIFICATION_TOKEN = "verification-token-unused"  # deprecated by Slack; still sent in every payload
# Default response_url: nothing listens on port 9, so a bot that answers there fails at once, offline.
# Pass ``SlackStandIn.response_url(name)`` to capture responses.
DEFAULT_RESPONSE_URL = "http://127.0.0.1:9/respond/unset"


def sign(signing_secret: str, timestamp: int, body: str) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def signed_headers(
    signing_secret: str, body: str, timestamp: int | None = None, content_type: str = FORM
) -> dict[str, str]:
    """Headers Slack sends with a request; the timestamp defaults to now (bots check it against wall time).
    Events come as JSON (``content_type=JSON``); commands and interactions form-encoded."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": sign(signing_secret, ts, body),
        "Content-Type": content_type,
    }


def new_trigger_id() -> str:
    """A fresh id shaped like Slack's (e.g. "13345224609.738474920.8088930838d88f008e0")."""
    return f"{secrets.randbelow(10**11)}.{secrets.randbelow(10**9)}.{secrets.token_hex(16)}"


def slash_command(
    command: str = "/breakglass",
    text: str = "",
    user_id: str = "U0BOB",
    user_name: str = "bob",
    channel_id: str = "C0INCIDENT",
    channel_name: str = "incident",
    team_id: str = TEAM_ID,
    response_url: str = DEFAULT_RESPONSE_URL,
    trigger_id: str | None = None,
) -> str:
    """Form-encoded body of a slash command invocation."""
    return urlencode(
        {
            "token": VERIFICATION_TOKEN,
            "team_id": team_id,
            "team_domain": TEAM_DOMAIN,
            "channel_id": channel_id,
            "channel_name": channel_name,
            "user_id": user_id,
            "user_name": user_name,
            "command": command,
            "text": text,
            "api_app_id": API_APP_ID,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": trigger_id or new_trigger_id(),
        }
    )


def _button_text(message: dict[str, Any] | None, action_id: str) -> str:
    """The label of the button with ``action_id`` in the message's blocks, else the action id."""
    for block in (message or {}).get("blocks") or []:
        for element in block.get("elements") or []:
            if element.get("action_id") == action_id and isinstance(element.get("text"), dict):
                return str(element["text"].get("text", action_id))
    return action_id


def block_action(
    action_id: str,
    value: str,
    user_id: str,
    channel_id: str = "C0INCIDENT",
    message_ts: str = "1700000000.000100",
    *,
    user_name: str | None = None,
    channel_name: str = "incident",
    message: dict[str, Any] | None = None,
    response_url: str = DEFAULT_RESPONSE_URL,
    team_id: str = TEAM_ID,
    block_id: str = "decision",
    trigger_id: str | None = None,
) -> str:
    """Form-encoded body (``payload=<json>``) of a button click in a message (``block_actions``).

    ``user_name`` defaults to the user id without its "U0" prefix, lower-cased (U0ALICE -> alice).
    """
    name = user_name or user_id.removeprefix("U0").lower()
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user_id, "username": name, "name": name, "team_id": team_id},
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id or new_trigger_id(),
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": channel_name},
        "message": message if message is not None else {"type": "message", "ts": message_ts, "text": ""},
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "text": {"type": "plain_text", "text": _button_text(message, action_id), "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})


def _element_state(value: Any) -> dict[str, Any]:
    """An input's state as Slack sends it: text typed (None: left empty) as a plain text input's, or a dict given
    as is (``{"type": "static_select", "selected_option": {...}}``, ``{"type": "checkboxes", ...}``)."""
    if isinstance(value, dict):
        return value
    return {"type": "plain_text_input", "value": value}


def selected(value: str, text: str | None = None) -> dict[str, Any]:
    """A static select's state with the option ``value`` chosen."""
    option = {"text": {"type": "plain_text", "text": text or value, "emoji": True}, "value": value}
    return {"type": "static_select", "selected_option": option}


def checked(*values: str) -> dict[str, Any]:
    """A checkboxes element's state with ``values`` ticked (none: nothing ticked)."""
    options = [{"text": {"type": "plain_text", "text": v, "emoji": True}, "value": v} for v in values]
    return {"type": "checkboxes", "selected_options": options}


def view_submission(
    user_id: str,
    callback_id: str,
    private_metadata: str,
    values: dict[str, dict[str, Any]],
    *,
    view: dict[str, Any] | None = None,
    user_name: str | None = None,
    team_id: str = TEAM_ID,
    trigger_id: str | None = None,
) -> str:
    """Form-encoded body (``payload=<json>``) of a modal's submission (``view_submission``).

    ``values`` maps each input block's id to its inputs' action ids and what was typed in them (None: left
    empty, which Slack sends as a null value), or their state as Slack sends it (``selected``, ``checked``).
    ``view`` is the modal as ``views.open`` answered it, so the
    submission carries its id, blocks and hash as Slack's would; without it a minimal modal is made up.
    """
    name = user_name or user_id.removeprefix("U0").lower()
    opened = dict(view or {})
    view_id = opened.get("id") or f"V{secrets.randbelow(10**10):010d}"
    state = {
        block: {action: _element_state(value) for action, value in inputs.items()} for block, inputs in values.items()
    }
    submitted = {
        "id": view_id,
        "team_id": team_id,
        "type": "modal",
        "blocks": opened.get("blocks") or [],
        "private_metadata": private_metadata,
        "callback_id": callback_id,
        "state": {"values": state},
        "hash": opened.get("hash") or f"{int(time.time())}.{secrets.token_hex(4)}",
        "title": opened.get("title") or {"type": "plain_text", "text": "Form", "emoji": True},
        "clear_on_close": bool(opened.get("clear_on_close", False)),
        "notify_on_close": bool(opened.get("notify_on_close", False)),
        "close": opened.get("close"),
        "submit": opened.get("submit"),
        "previous_view_id": None,
        "root_view_id": opened.get("root_view_id") or view_id,
        "app_id": API_APP_ID,
        "external_id": "",
        "app_installed_team_id": team_id,
        "bot_id": opened.get("bot_id") or "B0BOT",
    }
    payload = {
        "type": "view_submission",
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "user": {"id": user_id, "username": name, "name": name, "team_id": team_id},
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id or new_trigger_id(),
        "view": submitted,
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }
    return urlencode({"payload": json.dumps(payload)})


def view_action(
    user_id: str,
    view: dict[str, Any],
    action_id: str,
    *,
    value: str | None = None,
    selected_option: dict[str, Any] | None = None,
    block_id: str = "",
    values: dict[str, dict[str, Any]] | None = None,
    user_name: str | None = None,
    team_id: str = TEAM_ID,
    trigger_id: str | None = None,
) -> str:
    """Form-encoded body of an action inside a view (``block_actions`` from a modal or the Home tab): a button
    (``value``) or a select (``selected_option``, e.g. ``selected("orders-db")["selected_option"]``). ``view`` is the
    view as Slack holds it (``current_view``, ``home``); ``values`` what the modal's inputs hold at the moment. Such
    a payload has no channel, message or response_url: the answer goes back through the view or a DM."""
    name = user_name or user_id.removeprefix("U0").lower()
    state = {block: {a: _element_state(v) for a, v in inputs.items()} for block, inputs in (values or {}).items()}
    action: dict[str, Any] = {"action_id": action_id, "block_id": block_id, "action_ts": f"{time.time():.6f}"}
    if selected_option is not None:
        action |= {"type": "static_select", "selected_option": selected_option}
    else:
        action |= {"type": "button", "value": value or "", "text": {"type": "plain_text", "text": action_id}}
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user_id, "username": name, "name": name, "team_id": team_id},
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {"type": "view", "view_id": view.get("id") or ""},
        "trigger_id": trigger_id or new_trigger_id(),
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "view": {**view, "state": {"values": state}},
        "actions": [action],
    }
    return urlencode({"payload": json.dumps(payload)})


def shortcut(
    callback_id: str,
    user_id: str,
    *,
    user_name: str | None = None,
    team_id: str = TEAM_ID,
    trigger_id: str | None = None,
) -> str:
    """Form-encoded body of a global shortcut chosen from Slack's shortcut menu (``shortcut``)."""
    name = user_name or user_id.removeprefix("U0").lower()
    payload = {
        "type": "shortcut",
        "token": VERIFICATION_TOKEN,
        "action_ts": f"{time.time():.6f}",
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "user": {"id": user_id, "username": name, "team_id": team_id},
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": trigger_id or new_trigger_id(),
    }
    return urlencode({"payload": json.dumps(payload)})


def app_home_opened(
    user_id: str, *, tab: str = "home", view: dict[str, Any] | None = None, team_id: str = TEAM_ID
) -> str:
    """JSON body of the ``app_home_opened`` event Slack sends when ``user_id`` opens the app's Home (or Messages)
    tab; ``view`` is the Home tab last published for them, which Slack includes once there is one."""
    event: dict[str, Any] = {
        "type": "app_home_opened",
        "user": user_id,
        "channel": "D" + user_id,
        "tab": tab,
        "event_ts": f"{time.time():.6f}",
    }
    if view is not None:
        event["view"] = view
    return json.dumps(
        {
            "token": VERIFICATION_TOKEN,
            "team_id": team_id,
            "api_app_id": API_APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{secrets.token_hex(5).upper()}",
            "event_time": int(time.time()),
            "authorizations": [
                {"team_id": team_id, "user_id": "U0BOT", "is_bot": True, "is_enterprise_install": False}
            ],
            "is_ext_shared_channel": False,
        }
    )


class SlackSender:
    """POSTs signed Slack requests to a running bot at ``base_url + "/slack/events"``."""

    def __init__(self, base_url: str, signing_secret: str, timeout: float = 30.0) -> None:  # a hang, not a slow ack
        self.url = base_url.rstrip("/") + "/slack/events"
        self.signing_secret = signing_secret
        self.timeout = timeout

    def command(self, text: str, **kwargs: Any) -> requests.Response:
        """A slash command (``/breakglass`` unless ``command=`` is given); kwargs go to ``slash_command``."""
        return self.post(slash_command(text=text, **kwargs))

    def click(
        self, action_id: str, value: str, user_id: str, channel_id: str, message_ts: str, **kwargs: Any
    ) -> requests.Response:
        """A button click; kwargs go to ``block_action``."""
        return self.post(block_action(action_id, value, user_id, channel_id, message_ts, **kwargs))

    def submit_view(
        self,
        user_id: str,
        callback_id: str,
        private_metadata: str,
        values: dict[str, dict[str, Any]],
        **kwargs: Any,
    ) -> requests.Response:
        """A modal's submission; kwargs go to ``view_submission``."""
        return self.post(view_submission(user_id, callback_id, private_metadata, values, **kwargs))

    def act_in_view(self, user_id: str, view: dict[str, Any], action_id: str, **kwargs: Any) -> requests.Response:
        """A click or a choice inside a modal or the Home tab; kwargs go to ``view_action``."""
        return self.post(view_action(user_id, view, action_id, **kwargs))

    def shortcut(self, callback_id: str, user_id: str, **kwargs: Any) -> requests.Response:
        """A global shortcut; kwargs go to ``shortcut``."""
        return self.post(shortcut(callback_id, user_id, **kwargs))

    def event(self, body: str) -> requests.Response:
        """An Events API delivery (JSON), e.g. ``app_home_opened(...)``."""
        return self.post(body, content_type=JSON)

    def post(self, body: str, timestamp: int | None = None, content_type: str = FORM) -> requests.Response:
        return self.post_raw(body, signed_headers(self.signing_secret, body, timestamp, content_type))

    def post_raw(self, body: str, headers: dict[str, str]) -> requests.Response:
        """POST ``body`` with exactly ``headers`` (e.g. a bad or stale signature)."""
        return requests.post(self.url, data=body.encode(), headers=headers, timeout=self.timeout)
