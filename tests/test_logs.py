"""Logs as the `breakglass` command writes them: text as ever, or one JSON object per line with the request's context,
and secrets redacted in both formats (the redacting filter runs before either formatter)."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from bot import logs, redaction
from bot.logs import log_context
from bot.services.lanes import Lanes
from bot.settings import Settings

SECRET = "xoxb-9137-5581-logs-test-secret-token"
log = logging.getLogger("breakglass.test_logs")


@pytest.fixture
def written(request: pytest.FixtureRequest) -> Iterator[tuple[str, io.StringIO]]:
    """Logging configured as the command does it (in the format the test is parametrised with), into a buffer."""
    log_format = getattr(request, "param", "json")
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    settings = Settings.model_construct(log_format=log_format, log_level="INFO")
    handler = logs.configure(settings, stream)
    undo = redaction.install(redaction.Redactor([SECRET]))
    try:
        yield log_format, stream
    finally:
        undo()
        root.removeHandler(handler)
        root.setLevel(level)
        logging.captureWarnings(False)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]  # each line a whole object


def test_a_plain_message_is_one_json_object(written: tuple[str, io.StringIO]) -> None:
    log.info("sweep started %s", "granted=1")
    (entry,) = lines(written[1])
    assert entry.keys() == {"ts", "level", "logger", "message"}
    assert entry["level"] == "INFO"
    assert entry["logger"] == "breakglass.test_logs"
    assert entry["message"] == "sweep started granted=1"
    assert entry["ts"].endswith("+00:00")


def test_a_message_within_a_request_carries_its_context(written: tuple[str, io.StringIO]) -> None:
    with log_context(request_id=42, actor="U0BOB"), log_context(resource="orders-db"):
        log.warning("granting failed for now")
    log.info("outside")
    inside, outside = lines(written[1])
    assert inside["request_id"] == 42
    assert inside["resource"] == "orders-db"
    assert inside["actor"] == "U0BOB"
    assert inside["message"] == "granting failed for now"
    assert "request_id" not in outside and "actor" not in outside


def test_an_exception_comes_as_its_traceback_in_one_line(written: tuple[str, io.StringIO]) -> None:
    try:
        raise RuntimeError("the backend hung up")
    except RuntimeError:
        log.exception("revoke failed")
    text = written[1].getvalue()
    assert text.count("\n") == 1  # the traceback's newlines are escaped inside the object
    (entry,) = lines(written[1])
    assert entry["level"] == "ERROR"
    assert entry["message"] == "revoke failed"
    assert entry["exc"].startswith("Traceback (most recent call last):")
    assert entry["exc"].endswith("RuntimeError: the backend hung up")


@pytest.mark.parametrize("written", ["json", "text"], indirect=True)
def test_a_secret_is_redacted_in_both_formats(written: tuple[str, io.StringIO]) -> None:
    log_format, stream = written
    log.error("Slack said no to %s", SECRET)
    try:
        raise ValueError(f"token {SECRET} refused")
    except ValueError:
        log.exception("calling Slack with %s failed", "the bot token")
    text = stream.getvalue()
    assert SECRET not in text
    assert text.count(redaction.REDACTED) == 2
    if log_format == "json":
        first, second = lines(stream)
        assert first["message"] == f"Slack said no to {redaction.REDACTED}"
        assert second["exc"].endswith(f"ValueError: token {redaction.REDACTED} refused")
    else:
        assert f"ERROR breakglass.test_logs: Slack said no to {redaction.REDACTED}" in text
        assert f"ValueError: token {redaction.REDACTED} refused" in text


def test_lane_work_logs_in_the_context_it_was_handed_over_in(written: tuple[str, io.StringIO]) -> None:
    """The sweep's seam: a lane thread runs the step, and logs its failure, with the request it is about."""
    lanes = Lanes(1)
    done = threading.Event()

    def step() -> None:
        log.info("revoking")
        done.set()
        raise ValueError("no such role")

    with log_context(request_id=7, resource="orders-db"):
        future = lanes.submit("orders-db", ("backend", 7), step)
    assert future is not None
    with pytest.raises(ValueError):
        future.result(timeout=10)
    lanes.close(5)
    working, failed = lines(written[1])
    assert working["message"] == "revoking" and working["request_id"] == 7 and working["resource"] == "orders-db"
    assert failed["level"] == "ERROR" and failed["request_id"] == 7 and "no such role" in failed["exc"]


def test_log_context_takes_only_the_known_fields() -> None:
    with pytest.raises(TypeError, match="request_id, resource, actor"), log_context(user="U0BOB"):
        pass
