"""How soon a dead replica's claims are taken over: from `kill -9` to the takeover, and to the backend hearing the
interrupted call again, with default settings (sweep interval 15 s, lease 30 s, heartbeat 2 s, dead after 6 s).

Real `breakglass serve` processes (the harness of tests/resilience), a webhook backend that takes 4 s to answer so
that every kill finds a call in flight, and the Slack stand-in. Each run kills the replica holding a grant or a
revoke (alternately) in the middle of the backend call, then:

* restart: one replica, restarted at once under a new pid (so a new name, as without BREAKGLASS_INSTANCE), on
  SQLite. The promise: taken over and the overdue call sent within sweep interval + 5 s of the kill.
* survivor: two replicas on PostgreSQL (BREAKGLASS_TEST_POSTGRES_URL or --postgres-url), the other one left
  running. The promise: taken over within 10 s of the kill.

    python bench/takeover.py                 # 6 runs of each
    python bench/takeover.py --runs 10 --only restart
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the resilience harness lives with the tests

from bot.services.deps import Tuning
from tests.resilience.harness import Fleet, fleet, kill_mid_call, wall_time

DEFAULTS: dict[str, str | None] = {  # the harness's short test settings removed: the bot's defaults apply
    "BREAKGLASS_SWEEP_INTERVAL": None,
    "BREAKGLASS_LEASE": None,
    "BREAKGLASS_BACKEND_TIMEOUT": None,
    "BREAKGLASS_EXPIRY_WARNING": None,
}
SWEEP_INTERVAL = 15.0  # the bot's default, BREAKGLASS_SWEEP_INTERVAL
LIMITS = {"restart": SWEEP_INTERVAL + 5, "survivor": 10.0}


def one_run(running: Fleet, topology: str, step: str) -> tuple[float, float, float | None]:
    """Seconds from the kill to the takeover, to the backend hearing the interrupted call again, and (on a restart)
    to the new process answering /healthz."""
    if topology == "restart":
        holder = running.start(running.replica("solo", settings={**DEFAULTS, "BREAKGLASS_INSTANCE": None}))
    else:
        holder = running.start(running.replica("replica-a", settings=DEFAULTS))
        running.start(running.replica("replica-b", settings=DEFAULTS))
    _, _, killed_at = kill_mid_call(running, holder, step)
    ready = None
    if topology == "restart":
        running.start(holder)
        assert holder.ready_at is not None
        ready = (holder.ready_at - killed_at).total_seconds()
    running.backend.wait_for(lambda calls: sum(call.event == step for call in calls) >= 2, timeout=60)
    taken = [e.at for e in running.audit() if e.action == "claim_taken_over"]
    assert len(taken) == 1, f"expected one takeover, saw {len(taken)}"
    resent = max(wall_time(call) for call in running.backend.calls if call.event == step)
    running.wait_until_settled(timeout=60)
    return (taken[0] - killed_at).total_seconds(), (resent - killed_at).total_seconds(), ready


@contextmanager
def database(topology: str, folder: Path, postgres_url: str | None) -> Iterator[str]:
    if topology == "restart":
        yield f"sqlite:///{folder / 'breakglass.db'}"
        return
    if not postgres_url:
        raise SystemExit("two replicas need PostgreSQL: set BREAKGLASS_TEST_POSTGRES_URL or pass --postgres-url")
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in postgres_url else "?"
    try:
        yield f"{postgres_url}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--only", choices=sorted(LIMITS))
    parser.add_argument("--postgres-url", default=os.environ.get("BREAKGLASS_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    tuning = Tuning()
    print(
        f"defaults: sweep interval {SWEEP_INTERVAL:.0f} s, lease {tuning.lease.total_seconds():.0f} s, heartbeat "
        f"{tuning.heartbeat.total_seconds():.0f} s, dead after {tuning.dead_after.total_seconds():.0f} s; "
        f"{args.runs} runs each, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
    )
    for topology in [args.only] if args.only else ["restart", "survivor"]:
        takeovers: list[float] = []
        resends: list[float] = []
        for run in range(args.runs):
            step = ("grant", "revoke")[run % 2]
            with (
                tempfile.TemporaryDirectory() as folder,
                database(topology, Path(folder), args.postgres_url) as url,
                fleet(url, Path(folder)) as running,
            ):
                taken, resent, ready = one_run(running, topology, step)
            takeovers.append(taken)
            resends.append(resent)
            restarted = "" if ready is None else f"; restarted process answering after {ready:.2f} s"
            print(f"  {topology} run {run + 1} mid-{step}: taken over {taken:.2f} s, resent {resent:.2f} s{restarted}")
        limit = LIMITS[topology]
        for name, values in (("taken over", takeovers), ("call sent again", resends)):
            print(
                f"{topology:8} {name:15} after the kill: median {statistics.median(values):.2f} s, "
                f"p99 {p99(values):.2f} s, max {max(values):.2f} s; limit {limit:.0f} s"
                f"{'' if max(values) <= limit else '  OVER THE LIMIT'}"
            )


if __name__ == "__main__":
    main()
