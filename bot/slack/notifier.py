"""The services' Notifier, through the Slack Web API: what the outbox's courier sends, and how a post whose answer
was lost is found again.

Every message the bot posts carries message metadata (``event_type`` breakglass_outbox, the outbox row's mark), so
``find`` can read the channel's history and tell whether a post in doubt arrived. That needs the history scopes
(``channels:history``, ``groups:history``, ``im:history``; see manifest.yml).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.services.activity_notes import ActivityNote
from bot.services.guard import UNSIGNED
from bot.services.ports import MessageRef, Notice, NotSent
from bot.services.snapshots import RequestView
from bot.slack import (
    activity_notices,
    blocks,
    dm_buttons,
    drill_notices,
    notices,
    policy_notices,
    sink_notices,
    thread_replies,
)
from bot.slack.retry import never_reached_slack
from bot.slack.text import escape, who

log = logging.getLogger("breakglass.slack.notifier")

MARK_EVENT = "breakglass_outbox"
# Errors after which the same message will never be taken: giving up is right, retrying forever would hold up every
# later message of the request. Anything else (rate limits, outages, a token being rotated) is retried.
PERMANENT = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "invalid_blocks_format",
        "cannot_dm_bot",
        "user_not_found",
        "user_disabled",
        "restricted_action",
        "message_not_found",
        "cant_update_message",
        "edit_window_closed",
        "too_many_attachments",
    }
)
HISTORY_PAGES = 5  # 1,000 messages: a post in doubt is among the channel's newest unless the outage was very long
CANNOT_LOOK = frozenset({"missing_scope", "not_allowed_token_type"})


class SlackNotifier:
    def __init__(self, client: WebClient) -> None:
        self.client = client
        self._dm: dict[str, str] = {}  # user id -> the DM channel id, for reading its history

    def _call(self, method: str, *, in_doubt: bool, **arguments: Any) -> dict[str, Any]:
        try:
            return getattr(self.client, method.replace(".", "_"))(**arguments).data
        except SlackApiError as error:
            code = str(error.response.get("error") or error.response.status_code)
            # A 5xx may come from a gateway after Slack acted: for a post, that is doubt, not a clean failure.
            maybe = in_doubt and error.response.status_code >= 500
            raise NotSent(f"slack {method}: {code}", permanent=code in PERMANENT, in_doubt=maybe) from None
        except Exception as error:  # network trouble: whether Slack acted depends on how far the request got
            reached = not never_reached_slack(error)
            raise NotSent(f"slack {method}: {type(error).__name__}", in_doubt=in_doubt and reached) from None

    def _post(
        self,
        channel: str,
        text: str,
        mark: str,
        content: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> MessageRef:
        arguments: dict[str, Any] = {"channel": channel, "text": text}
        if content is not None:
            arguments["blocks"] = content
        if thread_ts is not None:
            arguments["thread_ts"] = thread_ts
        metadata = {"event_type": MARK_EVENT, "event_payload": {"mark": mark}}
        answer = self._call("chat.postMessage", in_doubt=True, metadata=metadata, **arguments)
        return MessageRef(answer["channel"], answer["ts"])

    def post_request(self, channel: str, view: RequestView, mark: str, *, alert: bool = False) -> MessageRef:
        text, content = blocks.request_message(view, alert=alert)
        return self._post(channel, text, mark, content)

    def update_request(self, ref: MessageRef, view: RequestView, *, alert: bool = False) -> None:
        text, content = blocks.request_message(view, alert=alert)
        self._call("chat.update", in_doubt=False, channel=ref.channel, ts=ref.ts, text=text, blocks=content)

    def tell_requester(self, view: RequestView, notice: Notice, mark: str) -> MessageRef:
        text = notices.linked(notices.to_requester(view, notice), view)
        content = dm_buttons.with_buttons(text, dm_buttons.for_requester(view, notice))
        return self._post(view.requester_id, text, mark, content)

    def tell_channel(self, channel: str, view: RequestView, notice: Notice, mark: str) -> MessageRef:
        text = notices.linked(notices.to_channel(view, notice), view)
        return self._post(channel, text, mark, dm_buttons.with_buttons(text, dm_buttons.for_channel(view, notice)))

    def reply_in_thread(
        self, channel: str, thread_ts: str, view: RequestView, notice: Notice, note: dict[str, Any], mark: str
    ) -> MessageRef:
        text = thread_replies.reply(view, notice, note)
        arguments: dict[str, Any] = {"channel": channel, "text": text, "thread_ts": thread_ts}
        content = thread_replies.reply_blocks(view, notice, note)  # an extension's Approve / Deny buttons
        if content is not None:
            arguments["blocks"] = content
        if note.get("broadcast"):
            arguments["reply_broadcast"] = True  # shown in the channel too: the audit channel must see a page
        metadata = {"event_type": MARK_EVENT, "event_payload": {"mark": mark}}
        answer = self._call("chat.postMessage", in_doubt=True, metadata=metadata, **arguments)
        return MessageRef(answer["channel"], answer["ts"])

    def permalink(self, ref: MessageRef) -> str | None:
        try:
            answer = self._call("chat.getPermalink", in_doubt=False, channel=ref.channel, message_ts=ref.ts)
        except NotSent as failure:
            log.warning("no permalink for message %s in %s: %s", ref.ts, ref.channel, failure)
            return None
        link = answer.get("permalink")
        return link if isinstance(link, str) and link.startswith("https://") else None

    def warn_refusals(
        self, channel: str, actor: str, count: int, window: timedelta, latest: str, mark: str
    ) -> MessageRef:
        person = "Requests with a bad signature" if actor == UNSIGNED else who(actor)
        minutes = int(window.total_seconds() // 60)
        text = (
            f"🚩 {person} had {count} refused attempts in the last {minutes} minutes. "
            f"Latest: {escape(latest, 300)} (`breakglass audit export --since 1h` lists them.)"
        )
        return self._post(channel, text, mark)

    def tell_reconciled(
        self, channel: str, resource: str, principal: str, found: str, mark: str, *, taken: bool = True
    ) -> MessageRef:
        where = f"{escape(found, 200)} on *{escape(resource, 64)}* from `{escape(principal, 255)}`"
        if taken:
            text = f"🧹 Reconciliation took back {where}: no live grant covered it."
        else:
            text = (
                f"🔎 Reconciliation found {where} still there, and no live grant covers it. It was left alone: the "
                "backend cannot tell access the bot made from the same access given by hand. `reconcile: all` on "
                "the resource takes it back."
            )
        text += " (`breakglass audit export --since 1h` has it.)"
        return self._post(channel, text, mark)

    def tell_drill(self, channel: str, report: dict[str, Any], mark: str) -> MessageRef:
        return self._post(channel, drill_notices.report(report), mark)

    def tell_audit_sink(self, channel: str, report: dict[str, Any], mark: str) -> MessageRef:
        return self._post(channel, sink_notices.report(report), mark)

    def tell_policy(self, channel: str, report: dict[str, Any], mark: str) -> MessageRef:
        return self._post(channel, policy_notices.report(report), mark)

    def tell_activity(
        self, channel: str, thread_ts: str | None, view: RequestView, note: ActivityNote, mark: str
    ) -> MessageRef:
        return self._post(channel, activity_notices.activity(view, note), mark, thread_ts=thread_ts)

    def send_credentials(self, view: RequestView, credentials: str) -> None:
        # Straight to the requester's DM; the text is built here so the secret passes through nothing that logs.
        try:
            self.client.chat_postMessage(channel=view.requester_id, text=notices.credentials(view, credentials))
        except SlackApiError as error:
            log.warning("slack chat.postMessage (credentials) failed: %s", error.response.get("error"))
        except Exception as error:
            log.warning("slack chat.postMessage (credentials) failed: %s", type(error).__name__)

    def find(self, channel: str, mark: str, thread_ts: str | None = None) -> MessageRef | None:
        conversation = self._conversation(channel)
        cursor: str | None = None
        for _ in range(HISTORY_PAGES):
            page = self._history(conversation, cursor, thread_ts)
            for message in page.get("messages") or []:
                if _marked(message, mark):
                    return MessageRef(conversation, str(message["ts"]))
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return None

    def _history(self, conversation: str, cursor: str | None, thread_ts: str | None = None) -> dict[str, Any]:
        """A page of the channel's history, or with ``thread_ts`` of that thread's replies (a reply is never in the
        channel's history)."""
        arguments: dict[str, Any] = {"channel": conversation, "limit": 200, "include_all_metadata": True}
        if cursor:
            arguments["cursor"] = cursor
        method = "conversations.history"
        if thread_ts is not None:
            method, arguments["ts"] = "conversations.replies", thread_ts
        try:
            return self._call(method, in_doubt=False, **arguments)
        except NotSent as failure:
            if any(code in str(failure) for code in CANNOT_LOOK):
                # Without the history scopes the bot cannot tell; it must not hold every later message back forever.
                raise NotSent(
                    f"{failure}: add the history scopes in manifest.yml so a post in doubt can be checked",
                    permanent=True,
                ) from None
            raise

    def _conversation(self, channel: str) -> str:
        if channel[:1] not in ("U", "W"):
            return channel
        if channel not in self._dm:
            opened = self._call("conversations.open", in_doubt=False, users=channel)
            self._dm[channel] = str(opened["channel"]["id"])
        return self._dm[channel]


def _marked(message: dict[str, Any], mark: str) -> bool:
    metadata = message.get("metadata") or {}
    return metadata.get("event_type") == MARK_EVENT and (metadata.get("event_payload") or {}).get("mark") == mark
