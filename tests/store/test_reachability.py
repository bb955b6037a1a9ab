"""Telling an unreachable database from our own mistakes, and saying so once per outage."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from bot.store.db import make_engine
from bot.store.reachability import NoAnswer, OutageLog, unreachable


def raised(statement: str, url: str) -> Exception:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY)"))
            connection.execute(text(statement))
    except Exception as error:
        return error
    finally:
        engine.dispose()
    raise AssertionError("nothing was raised")


def test_a_database_that_cannot_be_opened_is_unreachable_and_a_broken_constraint_is_not(tmp_path: Path) -> None:
    gone = raised("SELECT 1", f"sqlite:///{tmp_path / 'no-such-dir' / 'bg.db'}")
    ours = raised("INSERT INTO t (id) VALUES (1), (1)", f"sqlite:///{tmp_path / 'bg.db'}")

    assert isinstance(gone, OperationalError) and unreachable(gone)
    assert isinstance(ours, IntegrityError) and not unreachable(ours)
    assert unreachable(NoAnswer("no answer within 2.5s")) and not unreachable(TimeoutError("a backend's"))
    try:
        raise RuntimeError("a lane's wrapper") from gone
    except RuntimeError as wrapped:
        assert unreachable(wrapped)  # what caused it counts


def test_an_outage_is_one_line_per_kind_until_the_database_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gone = raised("SELECT 1", f"sqlite:///{tmp_path / 'no-such-dir' / 'bg.db'}")
    outage = OutageLog()
    logger = logging.getLogger("breakglass.test")
    caplog.set_level(logging.WARNING)

    for _ in range(5):
        outage.failed(logger, "the sweep", gone)
        outage.failed(logger, "the health check", gone)
    assert outage.down
    outage.reachable()
    outage.failed(logger, "the sweep", gone)  # a new outage is told afresh

    lines = [record.getMessage() for record in caplog.records]
    assert [line.split(":")[0] for line in lines] == [
        "the sweep failed",
        "the health check failed",
        "the database is reachable again",
        "the sweep failed",
    ]
    assert not any(record.exc_info for record in caplog.records)


def test_any_other_failure_keeps_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    outage = OutageLog()
    outage.failed(logging.getLogger("breakglass.test"), "the sweep", ValueError("a bug"))

    [record] = caplog.records
    assert record.exc_info is not None and not outage.down


def test_a_server_that_never_answers_is_given_up_on(tmp_path: Path) -> None:
    """A listening socket nobody serves: the TCP handshake succeeds and the server then says nothing, as a hung or
    black-holed database does. Without a connect timeout libpq would wait for ever."""
    pytest.importorskip("psycopg")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        engine = make_engine(f"postgresql://breakglass:never-sent-0123@127.0.0.1:{port}/breakglass")
        outcome: list[BaseException] = []

        def connect() -> None:
            try:
                with engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
            except Exception as error:
                outcome.append(error)

        attempt = threading.Thread(target=connect, daemon=True)
        attempt.start()
        attempt.join(timeout=30)  # a guard against hanging for ever, far above the 2 s the engine allows
        engine.dispose()
    assert not attempt.is_alive(), "connecting to a silent server did not give up"
    [error] = outcome
    assert unreachable(error)
