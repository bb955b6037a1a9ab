"""A scrape while the database is down or hung answers at once, 200, with the process's own metrics and
``breakglass_database_up 0``: Prometheus records the outage instead of a failed scrape, and nothing waits on it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import psycopg
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from bot.devtools.local_bot import LocalBot
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.policy import Policy
from bot.slack.ids import ActionId
from bot.store.reachability import ANSWER_WITHIN
from tests.adapters.pg_cluster import Cluster, find_bindir, running_cluster
from tests.e2e.conftest import WEBHOOK_SECRET
from tests.e2e.helpers import ALICE, BOB

# Every gauge read from the database; none may be reported from a read that did not happen.
FROM_DATABASE = {"breakglass_grants_active", "breakglass_pending_requests", "breakglass_reviews_overdue"}


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("initdb not found: CI needs the PostgreSQL server binaries", pytrace=False)
        pytest.skip("PostgreSQL server binaries (initdb) not found: install postgresql to test a database outage")
    with running_cluster(bindir) as running:
        yield running


def start_bot(policy: Policy, receiver: WebhookReceiver, url: str) -> LocalBot:
    environ = {"WEBHOOK_URL": receiver.url, "BREAKGLASS_WEBHOOK_SECRET": WEBHOOK_SECRET}
    return LocalBot(policy, url, environ=environ).start()


def scrape(bot: LocalBot) -> tuple[float, dict[str, float]]:
    """(seconds the scrape took, value of each sample without labels or the first one with)."""
    started = time.monotonic()
    response = requests.get(f"{bot.base_url}/metrics", timeout=10)
    took = time.monotonic() - started
    assert response.status_code == 200, response.text
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, sample.value)
    return took, samples


def test_a_scrape_with_the_database_stopped_says_so_at_once(
    policy: Policy, receiver: WebhookReceiver, cluster: Cluster
) -> None:
    bot = start_bot(policy, receiver, cluster.url())
    try:
        bot.command(BOB, "orders-db 30m INC-1 fix the index")
        _, before = scrape(bot)
        assert before["breakglass_database_up"] == 1 and before["breakglass_pending_requests"] == 1

        cluster.stop()
        took, during = scrape(bot)
        assert took < ANSWER_WITHIN + 1
        assert during["breakglass_database_up"] == 0
        assert not FROM_DATABASE & set(during)
        assert "process_cpu_seconds_total" in during
        assert during["breakglass_slack_calls_total"] >= 1  # what this process counted survives the outage

        cluster.start()
        _, after = scrape(bot)
        assert after["breakglass_database_up"] == 1 and after["breakglass_pending_requests"] == 1
    finally:
        bot.stop()


def test_a_scrape_with_the_database_hung_gives_up_within_its_bound(
    policy: Policy, receiver: WebhookReceiver, postgres_url: str
) -> None:
    """A table another session holds locked: the read waits on the lock, and the scrape does not wait with it."""
    bot = start_bot(policy, receiver, postgres_url)
    try:
        bot.command(BOB, "orders-db 30m INC-2 fix the index")
        bot.click(ALICE, ActionId.APPROVE, 1)
        with psycopg.connect(postgres_url) as blocker:
            blocker.execute("LOCK TABLE requests IN ACCESS EXCLUSIVE MODE")
            took, during = scrape(bot)
            blocker.rollback()
        assert ANSWER_WITHIN - 0.1 <= took < ANSWER_WITHIN + 1
        assert during["breakglass_database_up"] == 0
        assert not FROM_DATABASE & set(during)
        _, after = scrape(bot)
        assert after["breakglass_database_up"] == 1 and after["breakglass_grants_active"] == 1
    finally:
        bot.stop()
