"""The Socket Mode stand-in, driven by slack_sdk's own built-in Socket Mode client (the one Bolt's handler uses): the
connection is opened as Slack opens it, envelopes arrive as Slack frames them, and each ack finds its envelope, large
or small, in whatever order the acks come."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from bot.devtools.slack_requests import JSON, app_home_opened, slash_command, view_submission
from bot.devtools.socket_mode_standin import APP_TOKEN, SocketModeStandIn, payload_of

TOKEN = "xoxb-socket-standin-test"


@pytest.fixture
def standin() -> Iterator[SocketModeStandIn]:
    with SocketModeStandIn(token=TOKEN) as running:
        yield running


RELEASE = threading.Event()  # what a held envelope's listener waits for before it acks
SENT = threading.Event()  # set once a held envelope's ack is sent


@pytest.fixture
def received(standin: SocketModeStandIn) -> Iterator[list[SocketModeRequest]]:
    """A connected client that acks every envelope with what it says to: the envelope's payload names the ack's
    payload (``"answer"``), and ``"hold"`` keeps the ack back until RELEASE is set (a slow listener)."""
    seen: list[SocketModeRequest] = []
    client = SocketModeClient(app_token=APP_TOKEN, web_client=WebClient(token=TOKEN, base_url=standin.api_url))
    RELEASE.clear()
    SENT.clear()

    def on_request(client: SocketModeClient, request: SocketModeRequest) -> None:
        seen.append(request)
        held = bool(request.payload.get("hold"))
        if held:
            assert RELEASE.wait(30)
        client.send_socket_mode_response(SocketModeResponse(request.envelope_id, request.payload.get("answer")))
        if held:
            SENT.set()

    client.socket_mode_request_listeners.append(on_request)  # type: ignore[arg-type]
    client.connect()
    try:
        assert standin.connected.wait(10)
        yield seen
    finally:
        client.close()


def test_the_connection_is_opened_with_the_app_token_only(standin: SocketModeStandIn) -> None:
    with pytest.raises(SlackApiError) as refused:
        WebClient(token=TOKEN, base_url=standin.api_url).apps_connections_open(app_token=TOKEN)
    assert refused.value.response["error"] == "invalid_auth"

    opened = WebClient(token=TOKEN, base_url=standin.api_url).apps_connections_open(app_token=APP_TOKEN)

    assert opened["ok"] and str(opened["url"]).startswith("ws://127.0.0.1:")
    assert [c.ok for c in standin.calls("apps.connections.open")] == [False, True]


def test_envelopes_are_framed_as_slack_frames_them(
    standin: SocketModeStandIn, received: list[SocketModeRequest]
) -> None:
    command = payload_of(slash_command(text="help", user_id="U0BOB"))
    event = payload_of(app_home_opened("U0BOB"), JSON)

    assert standin.deliver(*command) == {}  # acked with nothing to say
    assert standin.deliver(*event) == {}

    [first, second] = received
    assert (first.type, first.accepts_response_payload, first.retry_attempt) == ("slash_commands", True, None)
    assert first.payload["text"] == "help" and first.payload["user_id"] == "U0BOB"  # the command's fields
    assert (second.type, second.accepts_response_payload, second.retry_attempt) == ("events_api", False, 0)
    assert second.payload["event"]["type"] == "app_home_opened"
    assert first.envelope_id != second.envelope_id


def test_frames_over_64_kib_go_both_ways(standin: SocketModeStandIn, received: list[SocketModeRequest]) -> None:
    big = "x" * 70_000  # a 64-bit length; the ack's frame is masked, as every client's is
    kind, payload = payload_of(view_submission("U0BOB", "form", big, {}))
    assert kind == "interactive" and payload["view"]["private_metadata"] == big

    acked = standin.deliver(kind, payload | {"answer": {"response_action": "errors", "errors": {"b": big}}})

    assert acked == {"response_action": "errors", "errors": {"b": big}}
    medium = standin.deliver("interactive", {"answer": {"text": "y" * 300}})  # a 16-bit length
    assert medium == {"text": "y" * 300}


def test_acks_out_of_order_find_their_envelopes(standin: SocketModeStandIn, received: list[SocketModeRequest]) -> None:
    acks: dict[str, object] = {}

    def deliver(name: str, hold: bool) -> None:
        acks[name] = standin.deliver("interactive", {"answer": {"text": name}, "hold": hold})

    slow = threading.Thread(target=deliver, args=("slow", True))
    slow.start()
    deliver("quick", False)  # acked while the slow one is held
    quick_first = "slow" not in acks
    RELEASE.set()
    slow.join()

    assert acks == {"slow": {"text": "slow"}, "quick": {"text": "quick"}} and quick_first


def test_no_ack_in_time_is_none_and_a_late_ack_is_dropped(
    standin: SocketModeStandIn, received: list[SocketModeRequest]
) -> None:
    assert standin.deliver("interactive", {"answer": {"text": "late"}, "hold": True}, timeout=0.2) is None
    RELEASE.set()
    assert SENT.wait(30)
    # Frames are read in order: once the next ack is in, the late one was read before it, and dropped.
    assert standin.deliver("interactive", {"answer": {"text": "next"}}) == {"text": "next"}
    assert standin._acks == {}


def test_payload_of_reads_what_slack_requests_builds() -> None:
    assert payload_of(slash_command(text="a b", user_id="U0X"))[0] == "slash_commands"
    kind, body = payload_of(app_home_opened("U0X"), JSON)
    assert kind == "events_api" and json.loads(app_home_opened("U0X"))["event"]["user"] == body["event"]["user"]
