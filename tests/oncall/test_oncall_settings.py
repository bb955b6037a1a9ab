"""The ``oncall:`` policy section: what it accepts, the defaults it resolves to, and connect() building a working
provider from it, with errors that name variables and never carry their values."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from bot.devtools.opsgenie_standin import OpsgenieStandIn
from bot.devtools.pagerduty_standin import PagerDutyStandIn
from bot.oncall.base import OnCallUnavailable
from bot.oncall.opsgenie import OpsgenieOnCall
from bot.oncall.pagerduty import PagerDutyOnCall
from bot.oncall.settings import OnCallService, connect


def refused(**section: Any) -> str:
    with pytest.raises(ValidationError) as raised:
        OnCallService.model_validate(section)
    return str(raised.value)


def test_pagerduty_defaults() -> None:
    config = OnCallService(provider="pagerduty")

    assert config.effective_api_url == "https://api.pagerduty.com"
    assert config.effective_events_url == "https://events.pagerduty.com"
    assert config.effective_token_env == "PAGERDUTY_API_TOKEN"
    assert config.effective_routing_key_env == "PAGERDUTY_ROUTING_KEY"
    assert config.timeout == 5.0


def test_opsgenie_defaults() -> None:
    config = OnCallService(provider="opsgenie")

    assert config.effective_api_url == "https://api.opsgenie.com"
    assert config.effective_events_url is None
    assert config.effective_token_env == "OPSGENIE_API_KEY"
    assert config.effective_routing_key_env is None


def test_eu_hosts_and_own_variable_names_are_kept() -> None:
    config = OnCallService.model_validate(
        {
            "provider": "pagerduty",
            "api_url": "https://api.eu.pagerduty.com/",
            "events_url": "https://events.eu.pagerduty.com",
            "token_env": "PD_TOKEN",
            "routing_key_env": "PD_ROUTING",
            "timeout": 2.5,
        }
    )

    assert config.effective_api_url == "https://api.eu.pagerduty.com"  # the trailing slash is dropped
    assert config.effective_events_url == "https://events.eu.pagerduty.com"
    assert (config.effective_token_env, config.effective_routing_key_env) == ("PD_TOKEN", "PD_ROUTING")


@pytest.mark.parametrize(
    "url",
    ["api.pagerduty.com", "ftp://api.pagerduty.com", "https://", "https://u:p@api.pagerduty.com", "https://a.b/?x=1"],
)
def test_a_bad_url_is_refused(url: str) -> None:
    assert "api_url" in refused(provider="pagerduty", api_url=url)


@pytest.mark.parametrize("key", ["events_url", "routing_key_env"])
def test_pagerduty_only_keys_are_refused_for_opsgenie(key: str) -> None:
    value = "https://events.pagerduty.com" if key == "events_url" else "PD_ROUTING"

    assert f"oncall.{key} is for provider pagerduty only" in refused(provider="opsgenie", **{key: value})


def test_web_url_is_refused_for_pagerduty() -> None:
    assert "oncall.web_url is for provider opsgenie only" in refused(provider="pagerduty", web_url="https://x.io")


@pytest.mark.parametrize("name", ["1TOKEN", "MY-TOKEN", "", "A B"])
def test_a_bad_variable_name_is_refused(name: str) -> None:
    assert "token_env" in refused(provider="opsgenie", token_env=name)


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"provider": "victorops"}, "provider"),
        ({"provider": "opsgenie", "timeout": 0.1}, "timeout"),
        ({"provider": "opsgenie", "timeout": 31}, "timeout"),
        ({"provider": "opsgenie", "api_key": "inline"}, "api_key"),
    ],
)
def test_other_bad_sections_are_refused(section: dict[str, Any], field: str) -> None:
    assert field in refused(**section)


def test_the_section_is_frozen() -> None:
    config = OnCallService(provider="opsgenie")
    with pytest.raises(ValidationError):
        config.timeout = 9  # type: ignore[misc]


def test_a_missing_token_variable_is_named_and_no_value_is_shown() -> None:
    config = OnCallService(provider="pagerduty", token_env="PD_TOKEN")
    environ = {"PAGERDUTY_API_TOKEN": "value-under-the-default-name", "PD_TOKEN": "  "}

    with pytest.raises(ValueError) as raised:
        connect(config, environ)

    assert str(raised.value) == "oncall.token_env: environment variable PD_TOKEN is not set"


def test_connect_builds_a_working_pagerduty_and_a_missing_routing_key_only_stops_pages() -> None:
    with PagerDutyStandIn("rest-token") as pd:
        pd.set_on_call("PSCHED1", ["ada@example.com"])
        config = OnCallService(provider="pagerduty", api_url=pd.url, events_url=pd.url, timeout=2)

        on_call = connect(config, {"PAGERDUTY_API_TOKEN": "rest-token"})

        assert isinstance(on_call, PagerDutyOnCall)
        assert on_call.on_call("PSCHED1") == {"ada@example.com"}
        with pytest.raises(OnCallUnavailable, match="PAGERDUTY_ROUTING_KEY"):
            on_call.page("PSCHED1", "s", "k", {})
        assert pd.pages == []


def test_connect_passes_the_routing_key_from_its_variable() -> None:
    with PagerDutyStandIn("rest-token", routing_key="rk-1") as pd:
        config = OnCallService(provider="pagerduty", api_url=pd.url, events_url=pd.url, routing_key_env="PD_RK")

        connect(config, {"PAGERDUTY_API_TOKEN": "rest-token", "PD_RK": "rk-1"}).page("PSCHED1", "s", "k", {})

        assert [event["routing_key"] for event in pd.pages] == ["rk-1"]


def test_connect_builds_a_working_opsgenie() -> None:
    with OpsgenieStandIn("genie") as og:
        og.set_on_call("sched-1", ["ada@example.com"])
        config = OnCallService(provider="opsgenie", api_url=og.url, web_url="https://acme.app.opsgenie.com")

        on_call = connect(config, {"OPSGENIE_API_KEY": "genie"})

        assert isinstance(on_call, OpsgenieOnCall)
        assert on_call.on_call("sched-1") == {"ada@example.com"}
        assert on_call.page("sched-1", "s", "k", {}).url is not None
