"""The services' Notifier, through the Slack Web API. A failed Slack call is logged; it never undoes or blocks
the change it was telling people about."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.services.guard import UNSIGNED
from bot.services.ports import MessageRef, Notice
from bot.services.views import RequestView
from bot.slack import blocks, notices
from bot.slack.text import escape, who

log = logging.getLogger("breakglass.slack.notifier")


class SlackNotifier:
    def __init__(self, client: WebClient) -> None:
        self.client = client

    def _call(self, method: str, **arguments: Any) -> dict[str, Any] | None:
        try:
            return getattr(self.client, method.replace(".", "_"))(**arguments).data  # type: ignore[no-any-return]
        except SlackApiError as error:
            log.warning("slack %s failed: %s", method, error.response.get("error"))
        except Exception as error:  # network trouble: the database stays the truth
            log.warning("slack %s failed: %s", method, type(error).__name__)
        return None

    def post_request(self, channel: str, view: RequestView) -> MessageRef | None:
        text, content = blocks.request_message(view)
        answer = self._call("chat.postMessage", channel=channel, text=text, blocks=content)
        return MessageRef(answer["channel"], answer["ts"]) if answer else None

    def refresh(self, view: RequestView) -> None:
        text, content = blocks.request_message(view)
        for channel, ts in ((view.approval_channel, view.approval_ts), (view.alert_channel, view.alert_ts)):
            if channel and ts:
                self._call("chat.update", channel=channel, ts=ts, text=text, blocks=content)

    def tell_requester(self, view: RequestView, notice: Notice) -> None:
        self._call("chat.postMessage", channel=view.requester_id, text=notices.to_requester(view, notice))

    def send_credentials(self, view: RequestView, credentials: str) -> None:
        # Straight to the requester's DM; the text is built here so the secret passes through nothing that logs.
        self._call("chat.postMessage", channel=view.requester_id, text=notices.credentials(view, credentials))

    def tell_channel(self, channel: str, view: RequestView, notice: Notice) -> None:
        self._call("chat.postMessage", channel=channel, text=notices.to_channel(view, notice))

    def warn_refusals(self, channel: str, actor: str, count: int, window: timedelta, latest: str) -> None:
        person = "Requests with a bad signature" if actor == UNSIGNED else who(actor)
        minutes = int(window.total_seconds() // 60)
        text = (
            f"🚩 {person} had {count} refused attempts in the last {minutes} minutes. "
            f"Latest: {escape(latest, 300)} (`breakglass audit export --since 1h` lists them.)"
        )
        self._call("chat.postMessage", channel=channel, text=text)
