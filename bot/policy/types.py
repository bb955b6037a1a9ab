"""The policy's building blocks: durations, Slack ids, regular expressions, and strict frozen models."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from bot.domain.durations import FORMAT_HINT, DurationError, parse_duration

SLACK_ID = re.compile(r"[UWS][A-Z0-9]{2,}")
CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,}")


def _to_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"expected {FORMAT_HINT}")
    if isinstance(value, int):
        value = f"{value}s"
    try:
        return parse_duration(value)
    except DurationError as error:
        raise ValueError(str(error)) from None


Duration = Annotated[timedelta, BeforeValidator(_to_duration)]


def check_slack_ids(values: list[str]) -> list[str]:
    for value in values:
        if not SLACK_ID.fullmatch(value):
            raise ValueError(f"'{value}' is not a Slack user id (U…/W…) or user-group id (S…)")
    return values


SlackIds = Annotated[list[str], Field(min_length=1), AfterValidator(check_slack_ids)]


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as error:
        raise ValueError(f"not a valid regular expression ({error})") from None
    return value


Regex = Annotated[str, AfterValidator(_regex)]


def check_patterns(values: list[str]) -> list[str]:
    for index, value in enumerate(values):
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"[{index}] '{value}' is not a valid regular expression ({error})") from None
    return values


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
