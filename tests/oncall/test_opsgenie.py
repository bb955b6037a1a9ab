"""The Opsgenie client against its loopback stand-in: who is on call, open incidents, alerts as pages, and every
way the service can fail, each one an OnCallUnavailable that never carries the key."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from bot.clock import ManualClock
from bot.devtools.opsgenie_standin import OpsgenieStandIn
from bot.oncall.base import OnCallUnavailable
from bot.oncall.opsgenie import OpsgenieOnCall

KEY = "og-genie-key-SECRET-5d2e"
WEB = "https://acme.app.opsgenie.com"


@pytest.fixture
def og() -> Iterator[OpsgenieStandIn]:
    with OpsgenieStandIn(KEY, clock=ManualClock()) as standin:
        yield standin


def client(og: OpsgenieStandIn, key: str = KEY, web_url: str | None = WEB) -> OpsgenieOnCall:
    return OpsgenieOnCall(key, api_url=og.url, web_url=web_url, timeout=5)


def failure(call: Callable[[], object]) -> str:
    """The text of the OnCallUnavailable ``call`` raises."""
    with pytest.raises(OnCallUnavailable) as raised:
        call()
    return str(raised.value)


# -- who is on call --------------------------------------------------------------------------------------------


def test_on_call_gives_the_schedules_recipients_lower_cased(og: OpsgenieStandIn) -> None:
    og.set_on_call("sched-1", ["Ada@Example.com", "bob@example.com"])
    og.set_on_call("sched-2", ["eve@example.com"])

    assert client(og).on_call("sched-1") == frozenset({"ada@example.com", "bob@example.com"})
    method, path, params = og.calls_with_params[-1]
    assert (method, path) == ("GET", "/v2/schedules/sched-1/on-calls")
    assert params == {"scheduleIdentifierType": ["id"], "flat": ["true"]}


def test_nobody_on_call_is_an_empty_set(og: OpsgenieStandIn) -> None:
    og.set_on_call("sched-1", [])

    assert client(og).on_call("sched-1") == frozenset()


def test_an_unknown_schedule_is_unavailable(og: OpsgenieStandIn) -> None:
    assert failure(lambda: client(og).on_call("nope")) == "opsgenie GET /v2/schedules/nope/on-calls: HTTP 404"


def test_a_schedule_id_is_quoted_into_the_path(og: OpsgenieStandIn) -> None:
    og.set_on_call("team/a b?c", ["ada@example.com"])

    assert client(og).on_call("team/a b?c") == {"ada@example.com"}
    assert og.calls[-1] == ("GET", "/v2/schedules/team%2Fa%20b%3Fc/on-calls")


# -- incidents ------------------------------------------------------------------------------------------------


def test_open_incidents_map_the_documented_fields(og: OpsgenieStandIn) -> None:
    og.open_incident("inc-1", "Database down", service=["svc-db", "svc-api"], priority="P1")
    og.open_incident("inc-2", "Old news", service="svc-db")
    og.resolve_incident("inc-2")

    [incident] = client(og).open_incidents()

    assert incident.id == "inc-1"
    assert incident.title == "Database down"
    assert incident.services == ("svc-db", "svc-api")
    assert incident.priority == "P1"
    assert incident.url == f"{og.url}/incident/detail/inc-1"
    params = og.calls_with_params[-1][2]
    assert params["query"] == ["status:open"]


def test_no_open_incidents_is_an_empty_list(og: OpsgenieStandIn) -> None:
    assert client(og).open_incidents() == []


def test_incidents_are_filtered_by_service(og: OpsgenieStandIn) -> None:
    og.open_incident("inc-1", "Database down", service="svc-db")
    og.open_incident("inc-2", "Slow API", service="svc-api")
    og.open_incident("inc-3", "Both", service=["svc-cache", "svc-api"])
    og.open_incident("inc-4", "No service")

    assert sorted(i.id for i in client(og).open_incidents(["svc-db", "svc-cache"])) == ["inc-1", "inc-3"]
    assert sorted(i.id for i in client(og).open_incidents()) == ["inc-1", "inc-2", "inc-3", "inc-4"]


def test_incidents_follow_paging_next_through_every_page() -> None:
    with OpsgenieStandIn(KEY, page_limit=2) as og:
        for n in range(5):
            og.open_incident(f"inc-{n}", f"Incident {n}")

        assert sorted(i.id for i in client(og).open_incidents()) == [f"inc-{n}" for n in range(5)]
        assert [params.get("offset") for _, _, params in og.calls_with_params] == [None, ["2"], ["4"]]


def test_a_next_page_on_another_host_is_refused_and_not_visited(og: OpsgenieStandIn) -> None:
    with OpsgenieStandIn(KEY, page_limit=1) as first, OpsgenieStandIn("other") as elsewhere:
        first.open_incident("inc-1", "One")
        first.open_incident("inc-2", "Two")
        first.next_links_to(elsewhere.url)

        text = failure(lambda: client(first).open_incidents())

        assert text == "opsgenie GET /v1/incidents: unexpected answer (paging.next points to another host)"
        assert elsewhere.calls == []


# -- pages ------------------------------------------------------------------------------------------------------


def test_a_page_is_a_p1_alert_to_the_schedule_and_links_the_alert(og: OpsgenieStandIn) -> None:
    page = client(og).page("sched-1", "Break-glass access to prod-db by ada", "bg-req-42", {"request": "42"})

    [alert] = og.pages
    assert alert == {
        "message": "Break-glass access to prod-db by ada",
        "alias": "bg-req-42",
        "description": "Break-glass access to prod-db by ada",
        "responders": [{"id": "sched-1", "type": "schedule"}],
        "priority": "P1",
        "details": {"request": "42"},
        "source": "breakglass",
    }
    alert_id = og.alert_id("bg-req-42")
    assert alert_id is not None
    assert page.key == "bg-req-42"
    assert page.url == f"{WEB}/alert/detail/{alert_id}/details"
    assert og.calls[0] == ("POST", "/v2/alerts")
    assert og.calls[1][1].startswith("/v2/alerts/requests/")


def test_the_same_page_twice_is_one_alert(og: OpsgenieStandIn) -> None:
    first = client(og).page("sched-1", "Break-glass", "bg-req-42", {})
    second = client(og).page("sched-1", "Break-glass", "bg-req-42", {})

    assert first.url == second.url
    assert og.alert_count("bg-req-42") == 2


def test_a_long_message_and_alias_are_cut_to_what_opsgenie_takes(og: OpsgenieStandIn) -> None:
    page = client(og).page("sched-1", "m" * 500, "k" * 900, {})

    [alert] = og.pages
    assert len(alert["message"]) == 130
    assert alert["description"] == "m" * 500
    assert len(alert["alias"]) == 512
    assert page.key == "k" * 512


def test_a_page_not_processed_yet_has_no_link(og: OpsgenieStandIn) -> None:
    og.processing_lag(True)

    page = client(og).page("sched-1", "Break-glass", "bg-req-7", {})

    assert page.url is None
    assert len(og.pages) == 1


def test_without_a_web_url_a_page_has_no_link_and_asks_nothing_more(og: OpsgenieStandIn) -> None:
    page = client(og, web_url=None).page("sched-1", "Break-glass", "bg-req-7", {})

    assert page.url is None
    assert og.calls == [("POST", "/v2/alerts")]


# -- failures ---------------------------------------------------------------------------------------------------


def test_an_unreachable_service_is_unavailable(og: OpsgenieStandIn) -> None:
    on_call = client(og)
    og.stop()

    assert failure(lambda: on_call.on_call("s")) == "opsgenie GET /v2/schedules/s/on-calls: ConnectionError"
    assert failure(lambda: on_call.open_incidents()) == "opsgenie GET /v1/incidents: ConnectionError"
    assert failure(lambda: on_call.page("s", "m", "k", {})) == "opsgenie POST /v2/alerts: ConnectionError"


def test_an_outage_is_unavailable_and_ends_when_the_service_is_back(og: OpsgenieStandIn) -> None:
    og.set_on_call("s", ["ada@example.com"])
    og.outage(True)

    assert failure(lambda: client(og).on_call("s")) == "opsgenie GET /v2/schedules/s/on-calls: HTTP 503"
    assert failure(lambda: client(og).open_incidents()) == "opsgenie GET /v1/incidents: HTTP 503"
    assert failure(lambda: client(og).page("s", "m", "k", {})) == "opsgenie POST /v2/alerts: HTTP 503"

    og.outage(False)
    assert client(og).on_call("s") == {"ada@example.com"}


def test_a_wrong_key_is_refused(og: OpsgenieStandIn) -> None:
    og.set_on_call("s", ["ada@example.com"])

    assert failure(lambda: client(og, key="wrong").on_call("s")) == "opsgenie GET /v2/schedules/s/on-calls: HTTP 401"
    assert failure(lambda: client(og, key="wrong").open_incidents()) == "opsgenie GET /v1/incidents: HTTP 401"
    assert failure(lambda: client(og, key="wrong").page("s", "m", "k", {})) == "opsgenie POST /v2/alerts: HTTP 401"
    assert og.pages == []


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("<html>maintenance</html>", "not JSON"),
        ('["a list"]', "the answer is not a dict"),
        ('{"data": "nope"}', "data is not a"),
        ('{"data": {"onCallRecipients": [7]}}', "unexpected answer"),
        ('{"data": [{"id": "i", "message": 7}]}', "unexpected answer"),
    ],
)
def test_an_answer_not_shaped_as_documented_is_unavailable(og: OpsgenieStandIn, body: str, says: str) -> None:
    og.malformed(True, body)

    assert says in failure(lambda: client(og).on_call("s"))
    assert says in failure(lambda: client(og).open_incidents())


def test_an_alert_answer_not_as_documented_is_unavailable(og: OpsgenieStandIn) -> None:
    og.malformed(True, '{"result": "Request will be processed"}')

    # 200 where Opsgenie answers 202 is already not an accepted alert.
    assert failure(lambda: client(og).page("s", "m", "k", {})) == "opsgenie POST /v2/alerts: HTTP 200"


def test_no_failure_ever_says_the_key(og: OpsgenieStandIn) -> None:
    texts = [
        failure(lambda: client(og, key="wrong").on_call("s")),
        failure(lambda: client(og).on_call("unknown")),
    ]
    for body in ("<html/>", '{"data": 1}'):
        og.malformed(True, body)
        texts += [failure(lambda: client(og).on_call("s")), failure(lambda: client(og).open_incidents())]
    og.malformed(False)
    og.outage(True)
    texts.append(failure(lambda: client(og).page("s", "m", "k", {})))
    on_call = client(og)
    og.stop()
    texts += [failure(lambda: on_call.open_incidents()), failure(lambda: on_call.page("s", "m", "k", {}))]

    assert len(texts) == 9
    for text in texts:
        assert KEY not in text
        assert "?" not in text and "status:open" not in text  # no query string either
    assert KEY not in repr(on_call)
