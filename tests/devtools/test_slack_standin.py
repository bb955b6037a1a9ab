"""The Slack stand-in, driven by the real slack_sdk WebClient, and Slack-style request signing."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qs

import pytest
import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier

from bot.devtools.slack_requests import block_action, sign, signed_headers, slash_command, view_submission
from bot.devtools.slack_standin import SlackStandIn

TOKEN = "xoxb-test-token"
BLOCKS = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*bob* asks for prod-db"}},
    {
        "type": "actions",
        "block_id": "decision",
        "elements": [
            {
                "type": "button",
                "action_id": "approve",
                "value": "r1",
                "text": {"type": "plain_text", "text": "OK"},
            },
        ],
    },
]


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    users = {"U0BOB": {"name": "bob", "real_name": "Bob Builder", "email": "bob@example.com"}}
    with SlackStandIn(token=TOKEN, users=users, groups={"S0ONCALL": ["U0ALICE"]}) as s:
        yield s


@pytest.fixture
def client(standin: SlackStandIn) -> WebClient:
    return WebClient(token=TOKEN, base_url=standin.api_url)


def test_auth_test(standin: SlackStandIn, client: WebClient) -> None:
    assert standin.api_url.endswith("/api/")
    resp = client.auth_test()
    assert (resp["team_id"], resp["user_id"], resp["bot_id"]) == ("T0TEST", "U0BOT", "B0BOT")
    assert [c.method for c in standin.calls()] == ["auth.test"]


def test_post_then_update(standin: SlackStandIn, client: WebClient) -> None:
    posted = client.chat_postMessage(channel="C0INCIDENT", text="request", blocks=BLOCKS)
    assert posted["channel"] == "C0INCIDENT" and posted["message"]["blocks"] == BLOCKS
    second = client.chat_postMessage(channel="C0INCIDENT", text="another")
    assert float(second["ts"]) > float(posted["ts"])

    client.chat_update(channel="C0INCIDENT", ts=posted["ts"], text="approved", blocks=BLOCKS[:1])
    msg = standin.message("C0INCIDENT", posted["ts"])
    assert msg is not None
    assert (msg.text, msg.blocks, msg.updates) == ("approved", BLOCKS[:1], 1)
    assert [m.text for m in standin.messages("C0INCIDENT")] == ["approved", "another"]
    assert standin.calls("chat.postMessage")[0].args["blocks"] == BLOCKS

    with pytest.raises(SlackApiError) as err:
        client.chat_update(channel="C0INCIDENT", ts="1.000001", text="x")
    assert err.value.response["error"] == "message_not_found"
    assert standin.calls("chat.update")[-1].error == "message_not_found"


def test_form_encoded_blocks_are_parsed(standin: SlackStandIn, client: WebClient) -> None:
    client.api_call("chat.postMessage", params={"channel": "C1", "text": "t", "blocks": json.dumps(BLOCKS)})
    assert standin.messages("C1")[0].blocks == BLOCKS


def test_dm_to_user_id(standin: SlackStandIn, client: WebClient) -> None:
    assert client.conversations_open(users="U0BOB")["channel"]["id"] == "DU0BOB"
    assert client.chat_postMessage(channel="U0BOB", text="hi")["channel"] == "DU0BOB"
    client.chat_postMessage(channel="DU0BOB", text="again")
    client.chat_postEphemeral(channel="C0INCIDENT", user="U0BOB", text="psst")
    assert [c.args["text"] for c in standin.dms("U0BOB")] == ["hi", "again"]
    assert len(standin.posts_to("U0BOB")) == 2 and standin.posts_to("C0INCIDENT") == []
    assert [c.args["text"] for c in standin.ephemerals("U0BOB")] == ["psst"]
    assert standin.ephemerals("U0OTHER") == []


def test_directory(standin: SlackStandIn, client: WebClient) -> None:
    user = client.users_info(user="U0BOB")["user"]
    assert (user["name"], user["real_name"]) == ("bob", "Bob Builder")
    assert user["profile"]["email"] == "bob@example.com"
    assert client.usergroups_users_list(usergroup="S0ONCALL")["users"] == ["U0ALICE"]

    for call, error in [
        (lambda: client.users_info(user="U0NOBODY"), "user_not_found"),
        (lambda: client.usergroups_users_list(usergroup="S0NONE"), "no_such_subteam"),
        (lambda: client.api_call("admin.nothing"), "unknown_method"),
    ]:
        with pytest.raises(SlackApiError) as err:
            call()
        assert err.value.response["error"] == error

    standin.add_user("U0CAROL", "carol", email="carol@example.com")
    standin.set_group("S0ONCALL", ["U0ALICE", "U0CAROL"])
    assert client.users_info(user="U0CAROL")["user"]["profile"]["email"] == "carol@example.com"
    assert client.usergroups_users_list(usergroup="S0ONCALL")["users"] == ["U0ALICE", "U0CAROL"]


def test_invalid_token(standin: SlackStandIn) -> None:
    with pytest.raises(SlackApiError) as err:
        WebClient(token="xoxb-wrong", base_url=standin.api_url).chat_postMessage(channel="C1", text="x")
    assert err.value.response["error"] == "invalid_auth"
    assert standin.messages() == [] and standin.posts_to("C1") == []


def test_fail_next_429(standin: SlackStandIn, client: WebClient) -> None:
    standin.fail_next("chat.postMessage", 1, status=429, retry_after=3)
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C1", text="x")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "3"
    assert client.chat_postMessage(channel="C1", text="x")["ok"]
    assert [c.failed for c in standin.calls("chat.postMessage")] == [True, False]
    assert len(standin.messages("C1")) == 1


def test_fail_next_500(standin: SlackStandIn, client: WebClient) -> None:
    standin.fail_next("auth.test", 2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as err:
            client.auth_test()
        assert err.value.response.status_code == 500
    assert client.auth_test()["ok"]


@pytest.mark.parametrize("status", [502, 503])
def test_fail_next_502_503(standin: SlackStandIn, client: WebClient, status: int) -> None:
    standin.fail_next("chat.postMessage", 1, status=status)
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C1", text="x")
    assert err.value.response.status_code == status
    assert standin.messages("C1") == []  # a fault is answered without acting
    client.chat_postMessage(channel="C1", text="x")
    assert [c.failed for c in standin.calls("chat.postMessage")] == [True, False]
    with pytest.raises(ValueError, match="status must be one of"):
        standin.fail_next("chat.postMessage", 1, status=404)


def test_stall_next_acts_at_once_and_answers_late(standin: SlackStandIn) -> None:
    impatient = WebClient(token=TOKEN, base_url=standin.api_url, timeout=0.2, retry_handlers=[])
    # Far longer than the client waits, so a client thread starved on a busy machine still times out first; the
    # stall only holds a daemon thread of the stand-in, which nobody waits for.
    standin.stall_next("chat.postMessage", 1, seconds=60)
    with pytest.raises(TimeoutError):
        impatient.chat_postMessage(channel="C1", text="slow")
    [call] = standin.calls("chat.postMessage")
    assert call.ok and [m.text for m in standin.messages("C1")] == ["slow"]  # Slack did the work all the same

    impatient.chat_postMessage(channel="C1", text="quick")  # only the next n calls stall: no timeout
    with pytest.raises(ValueError, match="positive"):
        standin.stall_next("chat.postMessage", 1, seconds=0)


def test_clear_faults_keeps_calls_and_messages(standin: SlackStandIn) -> None:
    impatient = WebClient(token=TOKEN, base_url=standin.api_url, timeout=0.5, retry_handlers=[])
    impatient.chat_postMessage(channel="C1", text="before")
    standin.fail_next("chat.postMessage", 5)
    standin.stall_next("chat.postMessage", 5, seconds=2)
    standin.clear_faults()
    impatient.chat_postMessage(channel="C1", text="after")  # neither failed nor stalled
    assert [m.text for m in standin.messages("C1")] == ["before", "after"]
    assert [c.ok for c in standin.calls("chat.postMessage")] == [True, True]


def test_response_urls_and_wait_for(standin: SlackStandIn) -> None:
    url = standin.response_url("cmd1")
    later = threading.Timer(0.05, requests.post, args=(url,), kwargs={"json": {"text": "done"}, "timeout": 5})
    later.start()
    assert standin.wait_for(lambda s: s.responses("cmd1"), timeout=2) == [{"text": "done"}]
    assert standin.responses("other") == []

    start = time.monotonic()
    with pytest.raises(TimeoutError, match="response_url posts"):
        standin.wait_for(lambda s: s.calls("chat.update"), timeout=0.2)
    assert time.monotonic() - start < 10  # it gave up (not waiting for ever); how soon is up to the machine's load
    standin.clear()
    assert standin.responses() == [] and standin.calls() == []


def test_signature_accepted_by_slack_sdk_verifier() -> None:
    body = slash_command(text="request prod-db 30m")
    headers = signed_headers("s3cret", body)
    ts = headers["X-Slack-Request-Timestamp"]
    verifier = SignatureVerifier("s3cret")
    assert verifier.is_valid(body, ts, headers["X-Slack-Signature"])
    assert verifier.is_valid(body, 1_700_000_000, sign("s3cret", 1_700_000_000, body)) is False  # stale
    assert not verifier.is_valid(body, ts, sign("other", int(ts), body))
    fields = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
    assert fields["command"] == "/breakglass" and fields["text"] == "request prod-db 30m"
    assert {"token", "team_domain", "api_app_id", "is_enterprise_install", "trigger_id"} <= fields.keys()


def test_block_action_round_trip() -> None:
    message = {"type": "message", "ts": "1700000000.000100", "text": "req", "blocks": BLOCKS}
    body = block_action("approve", "r1", "U0ALICE", "C0INCIDENT", "1700000000.000100", message=message)
    payload = json.loads(parse_qs(body)["payload"][0])
    assert payload["type"] == "block_actions"
    assert payload["user"] == {"id": "U0ALICE", "username": "alice", "name": "alice", "team_id": "T0TEST"}
    assert payload["container"] == {
        "type": "message",
        "message_ts": "1700000000.000100",
        "channel_id": "C0INCIDENT",
        "is_ephemeral": False,
    }
    assert payload["message"] == message and payload["channel"]["id"] == "C0INCIDENT"
    (action,) = payload["actions"]
    assert (action["action_id"], action["value"], action["block_id"]) == ("approve", "r1", "decision")
    assert action["text"] == {"type": "plain_text", "text": "OK", "emoji": True}


# -- modals, permalinks, threads, people by email ------------------------------------------------------------------

MODAL = {
    "type": "modal",
    "callback_id": "deny-reason",
    "private_metadata": '{"request": 1}',
    "title": {"type": "plain_text", "text": "Deny request"},
    "submit": {"type": "plain_text", "text": "Deny"},
    "blocks": [{"type": "input", "block_id": "words", "label": {"type": "plain_text", "text": "Why?"}}],
}


def test_views_open_keeps_the_view_with_its_trigger_and_user(standin: SlackStandIn, client: WebClient) -> None:
    trigger = standin.issue_trigger("U0BOB")

    resp = client.views_open(trigger_id=trigger, view=MODAL)

    answered = resp["view"]
    assert answered["id"].startswith("V") and answered["state"] == {"values": {}} and answered["hash"]
    assert {k: answered[k] for k in MODAL} == MODAL
    [opened] = standin.views()
    assert (opened.id, opened.trigger_id, opened.user, opened.view) == (answered["id"], trigger, "U0BOB", answered)
    assert standin.views("U0BOB") == [opened] and standin.views("U0OTHER") == []
    assert standin.view_for(trigger) == opened and standin.view_for("nope") is None


def test_views_open_from_a_form_encoded_body(standin: SlackStandIn) -> None:
    data = {"token": TOKEN, "trigger_id": "1.2.abc", "view": json.dumps(MODAL)}
    answer = requests.post(standin.api_url + "views.open", data=data, timeout=5).json()
    assert answer["ok"] and answer["view"]["callback_id"] == "deny-reason"
    assert standin.views()[0].user is None  # a trigger the stand-in did not issue: whose click is unknown


def test_views_open_refuses_a_missing_or_reused_trigger_and_a_non_modal(
    standin: SlackStandIn, client: WebClient
) -> None:
    trigger = standin.issue_trigger("U0BOB")
    client.views_open(trigger_id=trigger, view=MODAL)

    for trigger_id, view, code in [
        ("", MODAL, "invalid_trigger_id"),
        (trigger, MODAL, "exchanged_trigger_id"),
        (standin.issue_trigger("U0BOB"), {**MODAL, "type": "home"}, "invalid_arguments"),
    ]:
        with pytest.raises(SlackApiError) as failed:
            client.views_open(trigger_id=trigger_id, view=view)
        assert failed.value.response["error"] == code
    assert len(standin.views()) == 1
    standin.clear()
    assert standin.views() == []


def test_get_permalink(standin: SlackStandIn, client: WebClient) -> None:
    posted = client.chat_postMessage(channel="C0APPROVALS", text="request")

    link = client.chat_getPermalink(channel="C0APPROVALS", message_ts=posted["ts"])

    assert link["channel"] == "C0APPROVALS"
    assert (
        link["permalink"] == f"https://breakglass-test.slack.com/archives/C0APPROVALS/p{posted['ts'].replace('.', '')}"
    )
    with pytest.raises(SlackApiError) as missing:
        client.chat_getPermalink(channel="C0APPROVALS", message_ts="1.000001")
    assert missing.value.response["error"] == "message_not_found"
    with pytest.raises(SlackApiError):
        client.chat_getPermalink(channel="C0OTHER", message_ts=posted["ts"])


def test_thread_replies_are_kept_apart(standin: SlackStandIn, client: WebClient) -> None:
    parent = client.chat_postMessage(channel="C0APPROVALS", text="request")["ts"]
    other = client.chat_postMessage(channel="C0APPROVALS", text="another")["ts"]
    client.chat_postMessage(channel="C0APPROVALS", text="first", thread_ts=parent)
    client.chat_postMessage(channel="C0APPROVALS", text="elsewhere", thread_ts=other)
    client.chat_postMessage(channel="C0SECURITY", text="same ts, other channel", thread_ts=parent)
    client.chat_postMessage(channel="C0APPROVALS", text="second", thread_ts=parent)

    thread = standin.thread("C0APPROVALS", parent)

    assert [(m.text, m.thread_ts) for m in thread] == [("first", parent), ("second", parent)]
    assert [m.text for m in standin.thread("C0APPROVALS", other)] == ["elsewhere"]
    assert standin.thread("C0APPROVALS", "1.000001") == []


def test_users_lookup_by_email(standin: SlackStandIn, client: WebClient) -> None:
    found = client.users_lookupByEmail(email="Bob@Example.com")["user"]
    assert found["id"] == "U0BOB" and found["profile"]["email"] == "bob@example.com"
    assert found == client.users_info(user="U0BOB")["user"]
    with pytest.raises(SlackApiError) as missing:
        client.users_lookupByEmail(email="nobody@example.com")
    assert missing.value.response["error"] == "users_not_found"


def test_view_submission_round_trip() -> None:
    opened = {**MODAL, "id": "V0000000007", "hash": "1700000000.abcd", "root_view_id": "V0000000007"}
    body = view_submission(
        "U0ALICE", "deny-reason", '{"request": 1}', {"words": {"text": "not now"}}, view=opened, trigger_id="1.2.x"
    )

    payload = json.loads(parse_qs(body)["payload"][0])

    assert payload["type"] == "view_submission" and payload["trigger_id"] == "1.2.x"
    assert payload["user"] == {"id": "U0ALICE", "username": "alice", "name": "alice", "team_id": "T0TEST"}
    assert payload["team"]["id"] == "T0TEST" and payload["response_urls"] == []
    assert payload["is_enterprise_install"] is False and payload["token"] and payload["api_app_id"]
    view = payload["view"]
    assert (view["id"], view["type"], view["hash"]) == ("V0000000007", "modal", "1700000000.abcd")
    assert (view["callback_id"], view["private_metadata"]) == ("deny-reason", '{"request": 1}')
    assert view["blocks"] == MODAL["blocks"] and view["title"] == MODAL["title"]
    assert view["state"] == {"values": {"words": {"text": {"type": "plain_text_input", "value": "not now"}}}}
