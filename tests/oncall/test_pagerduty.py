"""The PagerDuty client against its loopback stand-in: who is on call, open incidents, pages, and every way the
service can fail, each one an OnCallUnavailable that never carries a key."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from bot.clock import ManualClock
from bot.devtools.pagerduty_standin import PagerDutyStandIn
from bot.oncall.base import OnCallUnavailable
from bot.oncall.pagerduty import PagerDutyOnCall

TOKEN = "pd-rest-token-SECRET-3f9a"
ROUTING_KEY = "pd-routing-key-SECRET-77c1"


@pytest.fixture
def pd() -> Iterator[PagerDutyStandIn]:
    with PagerDutyStandIn(TOKEN, routing_key=ROUTING_KEY, clock=ManualClock()) as standin:
        yield standin


def client(pd: PagerDutyStandIn, token: str = TOKEN, routing_key: str | None = ROUTING_KEY) -> PagerDutyOnCall:
    return PagerDutyOnCall(token, api_url=pd.url, events_url=pd.url, routing_key=routing_key, timeout=5)


def failure(call: Callable[[], object]) -> str:
    """The text of the OnCallUnavailable ``call`` raises."""
    with pytest.raises(OnCallUnavailable) as raised:
        call()
    return str(raised.value)


# -- who is on call --------------------------------------------------------------------------------------------


def test_on_call_gives_the_schedules_emails_lower_cased(pd: PagerDutyStandIn) -> None:
    pd.set_on_call("PSCHED1", ["Ada@Example.com", "bob@example.com"])
    pd.set_on_call("POTHER", ["eve@example.com"])

    assert client(pd).on_call("PSCHED1") == frozenset({"ada@example.com", "bob@example.com"})
    method, path, params = pd.calls_with_params[-1]
    assert (method, path) == ("GET", "/oncalls")
    assert params["schedule_ids[]"] == ["PSCHED1"]
    assert params["include[]"] == ["users"]
    assert params["earliest"] == ["true"]
    assert params["limit"] == ["100"]


def test_nobody_on_call_is_an_empty_set(pd: PagerDutyStandIn) -> None:
    pd.set_on_call("PSCHED1", [])

    assert client(pd).on_call("PSCHED1") == frozenset()


def test_on_call_follows_more_through_every_page() -> None:
    emails = [f"person{n}@example.com" for n in range(7)]
    with PagerDutyStandIn(TOKEN, page_limit=3) as pd:
        pd.set_on_call("PSCHED1", emails)

        assert client(pd).on_call("PSCHED1") == frozenset(emails)
        offsets = [params["offset"] for _, _, params in pd.calls_with_params]
    assert offsets == [["0"], ["3"], ["6"]]


# -- incidents ------------------------------------------------------------------------------------------------


def test_open_incidents_are_triggered_and_acknowledged_ones(pd: PagerDutyStandIn) -> None:
    pd.open_incident("PINC1", "Database down", service="PSVCDB", urgency="high")
    pd.open_incident("PINC2", "Slow API", service="PSVCAPI", urgency="low")
    pd.acknowledge_incident("PINC2")
    pd.open_incident("PINC3", "Old news", service="PSVCDB")
    pd.resolve_incident("PINC3")

    incidents = {incident.id: incident for incident in client(pd).open_incidents()}

    assert set(incidents) == {"PINC1", "PINC2"}
    assert incidents["PINC1"].title == "Database down"
    assert incidents["PINC1"].services == ("PSVCDB",)
    assert incidents["PINC1"].urgency == "high"
    assert incidents["PINC1"].url == f"{pd.url}/incidents/PINC1"
    assert incidents["PINC2"].urgency == "low"
    params = pd.calls_with_params[-1][2]
    assert params["statuses[]"] == ["triggered", "acknowledged"]


def test_no_open_incidents_is_an_empty_list(pd: PagerDutyStandIn) -> None:
    pd.open_incident("PINC1", "Done", service="PSVCDB")
    pd.resolve_incident("PINC1")

    assert client(pd).open_incidents() == []


def test_incidents_are_filtered_by_service(pd: PagerDutyStandIn) -> None:
    pd.open_incident("PINC1", "Database down", service="PSVCDB")
    pd.open_incident("PINC2", "Slow API", service="PSVCAPI")
    pd.open_incident("PINC3", "Cache cold", service="PSVCCACHE")

    found = client(pd).open_incidents(["PSVCDB", "PSVCCACHE"])

    assert sorted(incident.id for incident in found) == ["PINC1", "PINC3"]
    assert pd.calls_with_params[-1][2]["service_ids[]"] == ["PSVCDB", "PSVCCACHE"]


def test_incidents_follow_more_through_every_page() -> None:
    with PagerDutyStandIn(TOKEN, page_limit=2) as pd:
        for n in range(5):
            pd.open_incident(f"PINC{n}", f"Incident {n}")

        assert sorted(i.id for i in client(pd).open_incidents()) == [f"PINC{n}" for n in range(5)]
        assert len(pd.calls) == 3


# -- pages ------------------------------------------------------------------------------------------------------


def test_a_page_is_a_trigger_event_with_the_dedup_key_and_links_its_incident(pd: PagerDutyStandIn) -> None:
    page = client(pd).page("PSCHED1", "Break-glass access to prod-db by ada", "bg-req-42", {"request": "42"})

    [event] = pd.pages
    assert event == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "bg-req-42",
        "payload": {
            "summary": "Break-glass access to prod-db by ada",
            "source": "breakglass",
            "severity": "critical",
            "custom_details": {"request": "42", "schedule": "PSCHED1"},
        },
    }
    assert page.key == "bg-req-42"
    assert page.url is not None and page.url.startswith(f"{pd.url}/incidents/")
    assert pd.calls[-2:] == [("POST", "/v2/enqueue"), ("GET", "/incidents")]
    assert pd.calls_with_params[-1][2]["incident_key"] == ["bg-req-42"]


def test_the_same_page_twice_opens_one_incident(pd: PagerDutyStandIn) -> None:
    first = client(pd).page("PSCHED1", "Break-glass", "bg-req-42", {})
    second = client(pd).page("PSCHED1", "Break-glass", "bg-req-42", {})

    assert len(pd.pages) == 2
    assert [event["dedup_key"] for event in pd.pages] == ["bg-req-42", "bg-req-42"]
    assert first.url == second.url
    assert len(client(pd).open_incidents()) == 1


def test_a_long_summary_is_cut_to_what_the_events_api_takes(pd: PagerDutyStandIn) -> None:
    client(pd).page("PSCHED1", "x" * 5000, "bg-long", {})

    assert len(pd.pages[0]["payload"]["summary"]) == 1024


def test_a_page_whose_incident_is_not_found_has_no_link(pd: PagerDutyStandIn) -> None:
    pd.incidents_from_pages(False)

    page = client(pd).page("PSCHED1", "Break-glass", "bg-req-7", {})

    assert page.url is None
    assert page.key == "bg-req-7"
    assert len(pd.pages) == 1


def test_a_page_accepted_while_the_rest_api_refuses_still_counts_without_a_link(pd: PagerDutyStandIn) -> None:
    page = client(pd, token="wrong-token").page("PSCHED1", "Break-glass", "bg-req-8", {})

    assert page.url is None
    assert len(pd.pages) == 1


def test_a_page_without_a_routing_key_names_the_variable_and_sends_nothing(pd: PagerDutyStandIn) -> None:
    on_call = PagerDutyOnCall(TOKEN, api_url=pd.url, events_url=pd.url, routing_key_env="PD_PAGES_KEY")

    text = failure(lambda: on_call.page("PSCHED1", "Break-glass", "bg-1", {}))

    assert "PD_PAGES_KEY" in text
    assert pd.calls == []


def test_a_wrong_routing_key_is_refused(pd: PagerDutyStandIn) -> None:
    text = failure(lambda: client(pd, routing_key="not-the-key").page("PSCHED1", "Break-glass", "bg-1", {}))

    assert text == "pagerduty POST /v2/enqueue: HTTP 400"
    assert pd.pages == []


# -- failures ---------------------------------------------------------------------------------------------------


def test_an_unreachable_service_is_unavailable(pd: PagerDutyStandIn) -> None:
    on_call = client(pd)
    pd.stop()

    assert failure(lambda: on_call.on_call("PSCHED1")) == "pagerduty GET /oncalls: ConnectionError"
    assert failure(lambda: on_call.open_incidents()) == "pagerduty GET /incidents: ConnectionError"
    assert failure(lambda: on_call.page("PSCHED1", "s", "k", {})) == "pagerduty POST /v2/enqueue: ConnectionError"


def test_an_outage_is_unavailable_and_ends_when_the_service_is_back(pd: PagerDutyStandIn) -> None:
    pd.set_on_call("PSCHED1", ["ada@example.com"])
    pd.outage(True)

    assert failure(lambda: client(pd).on_call("PSCHED1")) == "pagerduty GET /oncalls: HTTP 503"
    assert failure(lambda: client(pd).open_incidents()) == "pagerduty GET /incidents: HTTP 503"
    assert failure(lambda: client(pd).page("PSCHED1", "s", "k", {})) == "pagerduty POST /v2/enqueue: HTTP 503"

    pd.outage(False)
    assert client(pd).on_call("PSCHED1") == {"ada@example.com"}


def test_a_wrong_key_is_refused(pd: PagerDutyStandIn) -> None:
    pd.set_on_call("PSCHED1", ["ada@example.com"])

    assert failure(lambda: client(pd, token="wrong").on_call("PSCHED1")) == "pagerduty GET /oncalls: HTTP 401"
    assert failure(lambda: client(pd, token="wrong").open_incidents()) == "pagerduty GET /incidents: HTTP 401"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("<html>maintenance</html>", "not JSON"),
        ('["a list"]', "the answer is not a dict"),
        ('{"oncalls": "nope", "incidents": "nope"}', "is not a list"),
        ('{"oncalls": [{"user": {"id": "PU1"}}], "incidents": [{"id": 7}]}', "unexpected answer"),
    ],
)
def test_an_answer_not_shaped_as_documented_is_unavailable(pd: PagerDutyStandIn, body: str, says: str) -> None:
    pd.malformed(True, body)

    assert says in failure(lambda: client(pd).on_call("PSCHED1"))
    assert says in failure(lambda: client(pd).open_incidents())


def test_a_page_answered_with_something_else_than_json_is_unavailable(pd: PagerDutyStandIn) -> None:
    pd.malformed(True)

    # The stand-in answers 200 where the Events API answers 202: that alone is not an accepted event.
    assert failure(lambda: client(pd).page("PSCHED1", "s", "k", {})) == "pagerduty POST /v2/enqueue: HTTP 200"


def test_no_failure_ever_says_a_key(pd: PagerDutyStandIn) -> None:
    texts: list[str] = []
    texts.append(failure(lambda: client(pd, token="wrong").on_call("PSCHED1")))
    texts.append(failure(lambda: client(pd, routing_key=ROUTING_KEY + "x").page("S", "s", "k", {})))
    for body in ("<html/>", '{"oncalls": 1}'):
        pd.malformed(True, body)
        texts.append(failure(lambda: client(pd).on_call("PSCHED1")))
        texts.append(failure(lambda: client(pd).page("S", "s", "k", {})))
    pd.malformed(False)
    pd.outage(True)
    texts += [failure(lambda: client(pd).open_incidents()), failure(lambda: client(pd).page("S", "s", "k", {}))]
    on_call = client(pd)
    pd.stop()
    texts += [failure(lambda: on_call.on_call("PSCHED1")), failure(lambda: on_call.page("S", "s", "k", {}))]

    assert len(texts) == 10
    for text in texts:
        assert TOKEN not in text and ROUTING_KEY not in text
        assert "?" not in text  # no query string either
    assert TOKEN not in repr(on_call) and ROUTING_KEY not in repr(on_call)


def test_schedule_ids_are_sent_as_query_values_not_spliced_into_the_path(pd: PagerDutyStandIn) -> None:
    pd.set_on_call("P/../x&y=1", ["ada@example.com"])

    assert client(pd).on_call("P/../x&y=1") == {"ada@example.com"}
    assert pd.calls_with_params[-1][2]["schedule_ids[]"] == ["P/../x&y=1"]
