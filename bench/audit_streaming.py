"""What audit streaming adds to a request's time: the same requests to a bot without sinks and to one streaming to four.

Two real bots through ``LocalBot`` (waitress + Bolt on loopback, the Slack stand-in, SQLite files of their own, the
``log`` adapter), in one process, so they share the machine's load. The second has ``audit_sinks:`` with all four
kinds, each with a real receiver on loopback: a webhook to an HTTP server that checks every HMAC, syslog over UDP
and over TCP to listeners that parse RFC 5424, and a JSON-lines file. Its shipper runs as in ``serve``: a thread
per sink, waking every second (``runtime.shipper.start()``).

Each round sends, to each bot in turn (the order alternating), one signed ``/breakglass orders-db 1h INC-n bench``
and, once answered, a signed Approve by an approver; then each bot's clock passes the hour and its sweep revokes the
grant (which frees the resource for the next round). Timed:

* ack: the signed POST until its HTTP response (what Slack waits for);
* answer: the same POST until the private answer reached the stand-in's ``response_url`` (store, audit, messages);
* revoke: the sweep that finds the grant expired, revokes it through the adapter and records it (audit, messages).

At the end the script waits until every sink has every event, and says how long that took after the last request.

    python bench/audit_streaming.py              # 200 rounds
    python bench/audit_streaming.py --rounds 50
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from bot.devtools.local_bot import LocalBot, Reply
from bot.devtools.sink_receivers import HmacReceiver, SyslogReceiver
from bot.policy import Policy, parse_policy
from bot.services.deps import Tuning
from bot.slack.ids import ActionId
from bot.store.models import AuditEvent

SECRET = "bench-siem-hmac-key-5b1c9e7a3d"
REQUESTER, APPROVER = "U0BOB", "U0ALICE01"
POLICY = """
channels: {approvals: C0APPROVALS, audit: C0SECURITY}
review: {required: none}
resources:
  orders-db:
    adapter: log
    principal: "{email_local}"
    approvers: [U0ALICE01]
    requesters: [U0BOB]
"""


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest rank: the smallest value with at least ``fraction`` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(int(fraction * len(ordered) + 0.999999) - 1, 0)]


def policy(sinks: str = "") -> Policy:
    return parse_policy(POLICY + (f"audit_sinks:\n{sinks}" if sinks else ""))


def fast() -> Tuning:
    return Tuning(grant_retry_pause=0.01, requests_per_hour=1_000_000, actions_per_minute=1_000_000)


def one_round(bot: LocalBot, n: int, acks: list[float], answers: list[float], revokes: list[float]) -> None:
    started = time.perf_counter()
    reply: Reply = bot.command(REQUESTER, f"orders-db 1h INC-{n} bench")
    answers.append(time.perf_counter() - started)
    acks.append(reply.ack_seconds)
    if reply.status != 200 or "Something went wrong" in reply.text:
        raise SystemExit(f"round {n}: unexpected answer {reply.text!r}")
    approved = bot.click(APPROVER, ActionId.APPROVE, request_number(bot))
    if approved.status != 200:
        raise SystemExit(f"round {n}: approve answered {approved.status}")
    bot.clock.advance(timedelta(hours=1, minutes=1))
    started = time.perf_counter()
    report = bot.sweep()
    revokes.append(time.perf_counter() - started)
    if report.revoked != 1:
        raise SystemExit(f"round {n}: the sweep revoked {report.revoked} grants, not 1")


def request_number(bot: LocalBot) -> int:
    assert bot.runtime is not None
    from sqlalchemy import func, select

    from bot.store.models import Request

    with bot.runtime.deps.db.transaction() as session:
        return int(session.scalar(select(func.max(Request.id))) or 0)


def last_seq(bot: LocalBot) -> int:
    assert bot.runtime is not None
    from sqlalchemy import func, select

    with bot.runtime.deps.db.transaction() as session:
        return int(session.scalar(select(func.max(AuditEvent.seq))) or 0)


def row(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{name:<34} {len(ms):>5} {statistics.median(ms):>10.2f} {percentile(ms, 0.99):>9.2f} {max(ms):>9.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        hmac_receiver = HmacReceiver(SECRET).start()
        udp, tcp = SyslogReceiver("udp").start(), SyslogReceiver("tcp").start()
        jsonl = folder / "audit.jsonl"
        sinks = (
            f"  - {{name: siem, type: webhook, url: '{hmac_receiver.url}', secret_env: SIEM_KEY}}\n"
            f"  - {{name: syslog-udp, type: syslog, host: 127.0.0.1, port: {udp.port}, protocol: udp}}\n"
            f"  - {{name: syslog-tcp, type: syslog, host: 127.0.0.1, port: {tcp.port}, protocol: tcp}}\n"
            f"  - {{name: file, type: file, path: '{jsonl}'}}\n"
        )
        plain = LocalBot(policy(), f"sqlite:///{folder / 'plain.db'}", tuning=fast()).start()
        streaming = LocalBot(
            policy(sinks), f"sqlite:///{folder / 'streaming.db'}", environ={"SIEM_KEY": SECRET}, tuning=fast()
        ).start()
        assert streaming.runtime is not None and streaming.runtime.shipper is not None
        streaming.runtime.shipper.start()
        timings: dict[str, tuple[list[float], list[float], list[float]]] = {
            "without": ([], [], []),
            "with": ([], [], []),
        }
        try:
            for bot in (plain, streaming):  # warm-up: first request of each, not timed
                one_round(bot, 0, [], [], [])
            began = time.perf_counter()
            for n in range(1, args.rounds + 1):
                order = [("without", plain), ("with", streaming)]
                for name, bot in order if n % 2 else reversed(order):
                    one_round(bot, n, *timings[name])
            finished = time.perf_counter()
            last = last_seq(streaming)
            receivers = {"siem": hmac_receiver, "syslog-udp": udp, "syslog-tcp": tcp}
            for receiver in receivers.values():
                if not receiver.wait_for_seq(last, timeout=30):
                    raise SystemExit(f"a receiver is missing events up to {last}")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(jsonl.read_text().splitlines()) < last:
                time.sleep(0.05)
            caught_up = time.perf_counter() - finished
        finally:
            streaming.runtime.shipper.stop()
            plain.stop()
            streaming.stop()
            for receiver in (hmac_receiver, udp, tcp):
                receiver.stop()
        lost = {name: sorted(set(range(1, last + 1)) - set(r.seqs())) for name, r in receivers.items()}
        file_seqs = {int(line.split('"seq":', 1)[1].split(",", 1)[0]) for line in jsonl.read_text().splitlines()}
        lost["file"] = sorted(set(range(1, last + 1)) - file_seqs)
    print(f"{'signed request, then its revoke':<34} {'n':>5} {'median ms':>10} {'p99 ms':>9} {'max ms':>9}")
    for label, index in (("ack", 0), ("answer", 1), ("revoke (sweep)", 2)):
        print(row(f"{label}, no sinks", timings["without"][index]))
        print(row(f"{label}, 4 sinks streaming", timings["with"][index]))

    def ratio(index: int) -> float:
        return statistics.median(timings["with"][index]) / statistics.median(timings["without"][index])

    print(
        f"\n{args.rounds} rounds in {finished - began:.1f} s; streaming bot: {last} events, every sink had all of "
        f"them {caught_up:.2f} s after the last request; median with/without: answer {ratio(1):.2f}x, "
        f"revoke {ratio(2):.2f}x"
    )
    print("missing per sink: " + ", ".join(f"{name} {len(missing)}" for name, missing in lost.items()))
    return 1 if any(lost.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
