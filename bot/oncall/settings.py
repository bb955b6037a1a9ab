"""The ``oncall:`` section of the policy file, and building the provider it names.

What this module keeps true: a configuration that validates names one provider, only http(s) base URLs without
credentials, query or fragment, and only the keys that provider uses; keys are read from the environment variable
the configuration names, and an error about a missing key names the variable, never a value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from bot.oncall.base import OnCall

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

DEFAULT_API_URL = {"pagerduty": "https://api.pagerduty.com", "opsgenie": "https://api.opsgenie.com"}
DEFAULT_TOKEN_ENV = {"pagerduty": "PAGERDUTY_API_TOKEN", "opsgenie": "OPSGENIE_API_KEY"}
DEFAULT_EVENTS_URL = "https://events.pagerduty.com"
DEFAULT_ROUTING_KEY_ENV = "PAGERDUTY_ROUTING_KEY"


def _base_url(value: str) -> str:
    """An http(s) base URL; the trailing slash is dropped so paths can be appended as they are."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        # Credentials belong in the environment variables, never in the policy file.
        raise ValueError("must not carry a user name or password")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query or fragment")
    return value.strip().rstrip("/")


def _env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError("must be an environment variable name (letters, digits and _, not starting with a digit)")
    return value


BaseUrl = Annotated[str, AfterValidator(_base_url)]
EnvName = Annotated[str, AfterValidator(_env_name)]


class OnCallService(BaseModel):
    """Which on-call service Breakglass asks, where it is, and where its keys are."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Literal["pagerduty", "opsgenie"] = Field(description="The on-call service: pagerduty or opsgenie.")
    api_url: BaseUrl | None = Field(
        default=None,
        description="REST API base URL. Default https://api.pagerduty.com or https://api.opsgenie.com; "
        "EU accounts use https://api.eu.pagerduty.com or https://api.eu.opsgenie.com.",
    )
    events_url: BaseUrl | None = Field(
        default=None,
        description="PagerDuty only: Events API v2 host pages are sent to. Default https://events.pagerduty.com "
        "(EU: https://events.eu.pagerduty.com).",
    )
    token_env: EnvName | None = Field(
        default=None,
        description="Environment variable holding the REST API key. Default PAGERDUTY_API_TOKEN or OPSGENIE_API_KEY.",
    )
    routing_key_env: EnvName | None = Field(
        default=None,
        description="PagerDuty only: environment variable holding the Events API v2 integration key used for "
        "pages. Default PAGERDUTY_ROUTING_KEY.",
    )
    web_url: BaseUrl | None = Field(
        default=None,
        description="Opsgenie only: your account's web address (e.g. https://acme.app.opsgenie.com), to link a "
        "page to its alert.",
    )
    timeout: float = Field(default=5.0, ge=0.5, le=30, description="Seconds each HTTP call may take (0.5 to 30).")

    @model_validator(mode="after")
    def _keys_of_the_provider(self) -> OnCallService:
        # A key another provider uses is most likely a copy-paste left over: refusing it beats ignoring it.
        if self.provider == "opsgenie":
            for name in ("events_url", "routing_key_env"):
                if getattr(self, name) is not None:
                    raise ValueError(f"oncall.{name} is for provider pagerduty only, not opsgenie")
        elif self.web_url is not None:
            raise ValueError("oncall.web_url is for provider opsgenie only, not pagerduty")
        return self

    @property
    def effective_api_url(self) -> str:
        return self.api_url or DEFAULT_API_URL[self.provider]

    @property
    def effective_events_url(self) -> str | None:
        """The Events API v2 base (PagerDuty), None for Opsgenie."""
        if self.provider != "pagerduty":
            return None
        return self.events_url or DEFAULT_EVENTS_URL

    @property
    def effective_token_env(self) -> str:
        return self.token_env or DEFAULT_TOKEN_ENV[self.provider]

    @property
    def effective_routing_key_env(self) -> str | None:
        """The routing key's variable (PagerDuty), None for Opsgenie."""
        if self.provider != "pagerduty":
            return None
        return self.routing_key_env or DEFAULT_ROUTING_KEY_ENV


def connect(config: OnCallService, environ: Mapping[str, str]) -> OnCall:
    """The provider ``config`` names, with its keys read from ``environ``.

    Raises ValueError naming the variable when the REST key is missing or empty. PagerDuty's routing key may be
    missing: reading on-call and incidents still works, and pages say the variable is not set.
    """
    token_env = config.effective_token_env
    token = environ.get(token_env, "").strip()
    if not token:
        raise ValueError(f"oncall.token_env: environment variable {token_env} is not set")
    if config.provider == "pagerduty":
        from bot.oncall.pagerduty import PagerDutyOnCall

        routing_env = config.effective_routing_key_env or DEFAULT_ROUTING_KEY_ENV
        return PagerDutyOnCall(
            token,
            api_url=config.effective_api_url,
            events_url=config.effective_events_url or DEFAULT_EVENTS_URL,
            routing_key=environ.get(routing_env, "").strip() or None,
            routing_key_env=routing_env,
            timeout=config.timeout,
        )
    from bot.oncall.opsgenie import OpsgenieOnCall

    return OpsgenieOnCall(token, api_url=config.effective_api_url, web_url=config.web_url, timeout=config.timeout)
