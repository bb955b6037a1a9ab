"""GET /metrics on the real bot: a known story of requests, decisions, an expiry and a failing revoke, then the
scrape over HTTP, read with Prometheus's own parser, and every number checked exactly.

The clock only moves when told, so the decision and revoke-lag histograms have exact sums; backend call times are
real, so only their counts are checked. Slack calls are checked against what the Slack stand-in itself received: a
call the bot made that the metric missed (Bolt's per-request client, the link's auth.test) shows as a difference.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from bot.devtools.local_bot import LocalBot
from bot.devtools.slack_standin import SlackStandIn
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.services.deps import Tuning
from bot.slack.ids import ActionId
from bot.store.models import Request
from tests.e2e.helpers import ALICE, BOB, CAROL, DAVE, view

ERIN = "U0ERIN"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(bot: LocalBot) -> Samples:
    response = requests.get(f"{bot.base_url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=")  # the text format, not OpenMetrics
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def series(samples: Samples, name: str, label: str | None = None) -> dict[str, float]:
    """The samples of one name, by the value of ``label`` (or by all labels, joined, without one)."""
    found = {}
    for (sample, labels), value in samples.items():
        if sample == name:
            key = dict(labels).get(label, "") if label else ",".join(f"{k}={v}" for k, v in sorted(labels))
            found[key] = value
    return found


def newest(bot: LocalBot) -> int:
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        return int(session.scalar(select(func.max(Request.id))) or 0)


def slack_calls_match(bot: LocalBot, slack: SlackStandIn) -> tuple[dict[str, float], dict[str, float]]:
    """(what /metrics counted, what the stand-in received), by method and outcome."""
    counted = series(scrape(bot), "breakglass_slack_calls_total")
    received = Counter(
        f"method={call.method},outcome={'ok' if call.ok else 'refused'}" for call in slack.calls() if not call.failed
    )
    return counted, {key: float(n) for key, n in received.items()}


def test_metrics_count_a_known_story_exactly(bot: LocalBot, receiver: WebhookReceiver) -> None:
    assert series(scrape(bot), "breakglass_requests_total") == {}  # nothing counted before anything happened

    bot.command(BOB, "orders-db 30m INC-1 fix the index")
    normal = newest(bot)
    bot.advance(timedelta(seconds=90))
    bot.click(ALICE, ActionId.APPROVE, normal)
    assert view(bot, normal).status is Status.ACTIVE

    bot.command(DAVE, "payments-admin 30m check a refund")
    denied = newest(bot)
    bot.advance(timedelta(seconds=30))
    bot.deny(ALICE, denied, "use the read-only console")
    bot.command(DAVE, "payments-admin 30m check it again")
    withdrawn = newest(bot)
    bot.command(DAVE, f"revoke {withdrawn}")
    bot.command(ERIN, "payments-admin 1h quarterly audit")
    half_approved = newest(bot)
    bot.click(ALICE, ActionId.APPROVE, half_approved)  # one of two approvals: nothing is settled yet
    bot.command(CAROL, "payments-admin 1h reconcile ledgers")
    assert [view(bot, r).status for r in (denied, withdrawn, half_approved)] == [
        Status.DENIED,
        Status.CANCELLED,
        Status.PENDING,
    ]

    midway = scrape(bot)
    assert series(midway, "breakglass_grants_active", "resource") == {"orders-db": 1, "payments-admin": 0}
    assert series(midway, "breakglass_pending_requests") == {"": 2}
    assert series(midway, "breakglass_database_up") == {"": 1}
    assert series(midway, "breakglass_requests_total") == {
        "level=,outcome=approved,resource=orders-db": 1,
        "level=,outcome=denied,resource=payments-admin": 1,
        "level=,outcome=cancelled,resource=payments-admin": 1,
    }

    # Access ends 30 m after the grant; the sweep runs 5 s after that.
    bot.advance(timedelta(minutes=30) - timedelta(seconds=30) + timedelta(seconds=5))
    assert view(bot, normal).status is Status.EXPIRED

    bot.command(BOB, "orders-db 2h INC-2 orders table locked --emergency")
    emergency = newest(bot)
    assert view(bot, emergency).status is Status.ACTIVE
    receiver.fail_next(1, status=500)
    bot.command(BOB, f"revoke {emergency}")
    assert view(bot, emergency).status is Status.REVOKE_FAILED
    bot.advance(timedelta(seconds=5))  # the first retry waits at most a second
    assert view(bot, emergency).status is Status.REVOKED

    # A day on: the two payments requests lapse, and the emergency's review is past its first reminder.
    bot.advance(timedelta(hours=24, seconds=1))
    assert [view(bot, r).status for r in (half_approved, half_approved + 1)] == [Status.TIMED_OUT] * 2
    bot.command(ERIN, "payments-admin 1h quarterly audit, again")

    final = scrape(bot)
    assert series(final, "breakglass_requests_total") == {
        "level=,outcome=approved,resource=orders-db": 1,
        "level=,outcome=denied,resource=payments-admin": 1,
        "level=,outcome=cancelled,resource=payments-admin": 1,
        "level=,outcome=emergency,resource=orders-db": 1,
        "level=,outcome=lapsed,resource=payments-admin": 2,
    }
    assert series(final, "breakglass_decision_seconds_count") == {"": 2}
    assert series(final, "breakglass_decision_seconds_sum") == {"": 90 + 30}
    assert series(final, "breakglass_revoke_lag_seconds_count") == {"": 1}  # the expiry; an early revoke is not late
    assert series(final, "breakglass_revoke_lag_seconds_sum") == {"": 5}
    assert series(final, "breakglass_revoke_failures_total", "resource") == {"orders-db": 1}
    assert series(final, "breakglass_backend_call_seconds_count") == {
        "adapter=webhook,outcome=ok,step=grant": 2,
        "adapter=webhook,outcome=ok,step=revoke": 2,
        "adapter=webhook,outcome=error,step=revoke": 1,
    }
    assert series(final, "breakglass_grants_active", "resource") == {"orders-db": 0, "payments-admin": 0}
    assert series(final, "breakglass_pending_requests") == {"": 1}
    assert series(final, "breakglass_reviews_overdue") == {"": 1}
    assert series(final, "breakglass_database_up") == {"": 1}
    assert series(final, "process_cpu_seconds_total"), "the process's own metrics are served too"

    # Every Web API call the stand-in received was counted once, under its method, Bolt's per-request client's
    # (the deny form's views.open) and the link's auth.test included.
    deadline = time.monotonic() + 10  # background deliveries settle within moments; only a failing test waits
    counted, received = slack_calls_match(bot, bot.slack)
    while counted != received and time.monotonic() < deadline:
        time.sleep(0.05)
        counted, received = slack_calls_match(bot, bot.slack)
    assert counted == received
    assert {"method=views.open,outcome=ok", "method=auth.test,outcome=ok", "method=chat.postMessage,outcome=ok"} <= set(
        counted
    )


def test_metrics_label_values_never_carry_people_or_reasons(bot: LocalBot) -> None:
    bot.command(BOB, "orders-db 30m INC-77 secret-looking reason hunter2")
    bot.click(ALICE, ActionId.APPROVE, newest(bot))
    page = requests.get(f"{bot.base_url}/metrics", timeout=10).text
    for private in ("hunter2", "INC-77", BOB, ALICE, "bob@example.com"):
        assert private not in page


def test_a_backend_call_abandoned_at_its_time_limit_counts_as_a_timeout(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    bot = make_bot(tuning=Tuning(grant_retry_pause=0.01, call_timeout=0.3))
    bot.command(BOB, "orders-db 30m INC-5 fix the index")
    request_id = newest(bot)
    bot.click(ALICE, ActionId.APPROVE, request_id)
    receiver.hang(60)  # held until released: the bot gives up after 0.3 s
    try:
        bot.command(BOB, f"revoke {request_id}")
        assert view(bot, request_id).status is Status.REVOKE_FAILED
    finally:
        receiver.release()
    samples = scrape(bot)
    assert series(samples, "breakglass_backend_call_seconds_count") == {
        "adapter=webhook,outcome=ok,step=grant": 1,
        "adapter=webhook,outcome=timeout,step=revoke": 1,
    }
    timed_out = series(samples, "breakglass_backend_call_seconds_sum")["adapter=webhook,outcome=timeout,step=revoke"]
    assert 0.3 <= timed_out < 5  # the whole wait until it was abandoned, not the hang
    assert series(samples, "breakglass_revoke_failures_total", "resource") == {"orders-db": 1}
