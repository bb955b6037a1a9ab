"""An attack on `breakglass drill` as an operator runs it: a real process against a SQLite database and a backend
program (the command adapter), as tests/test_drill_cli.py runs it. Serial: it starts processes.

`breakglass revoke` makes the CLI a replica while it holds a claim (a heartbeat, leases renewed), so the bot neither
takes the claim over in the middle of a backend call nor waits a whole lease to find a killed CLI dead. A drill from
the CLI holds the same claims (the grant's, then the revoke's) and must be a replica for as long too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bot.settings import VARIABLES
from bot.store import schema
from bot.store.db import Database
from tests.test_drill_cli import AUDIT_KEY, BACKEND, policy

# The backend of tests/test_drill_cli.py, which also writes down, when asked to grant, which replicas the bot's
# database knows at that moment: the claim it is called under is held by one of them, or by nobody alive.
SEEING = (
    "import sqlite3\n"
    + BACKEND
    + """
if event["event"] == "grant":
    folder = os.path.dirname(path)
    with sqlite3.connect(os.path.join(folder, "breakglass.db")) as db:
        alive = [row[0] for row in db.execute("select instance from replicas")]
        holder = db.execute("select claimed_by from requests where status = 'granting'").fetchall()
    json.dump({"alive": alive, "holders": [row[0] for row in holder]}, open(os.path.join(folder, "seen.json"), "w"))
"""
)


# A backend whose grant fails with words a terminal or rich would act on: markup that does not close, an escape
# sequence that clears the screen.
REFUSING = """\
import sys
sys.stderr.write("no such role [/oops] [link=https://evil.example]click[/link] \\x1b[2J")
sys.exit(1)
"""


def drill(directory: Path, backend: str) -> subprocess.CompletedProcess[str]:
    """`breakglass drill gate` in a process of its own, on a database the bot has migrated."""
    db = Database.from_url(f"sqlite:///{directory / 'breakglass.db'}")
    schema.upgrade(db.engine)
    db.dispose()
    (directory / "backend.py").write_text(backend, encoding="utf-8")
    (directory / "breakglass.yml").write_text(policy(directory, keep=False), encoding="utf-8")
    env = {name: value for name, value in os.environ.items() if name not in VARIABLES}
    env |= {
        "DATABASE_URL": f"sqlite:///{directory / 'breakglass.db'}",
        "BREAKGLASS_POLICY": str(directory / "breakglass.yml"),
        "BREAKGLASS_AUDIT_KEY": AUDIT_KEY,
    }
    return subprocess.run(
        [sys.executable, "-m", "bot", "drill", "gate"],
        env=env,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_backends_words_print_as_they_are_in_the_drill_table(tmp_path: Path) -> None:
    """The step's detail is a backend's text; printed into the rich table as markup, `[/oops]` crashed the command
    (a traceback instead of the table, after the drill had run) and `[link=…]` made a link in the operator's
    terminal."""
    done = drill(tmp_path, REFUSING)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "MarkupError" not in done.stderr, done.stderr
    assert "FAILED" in done.stdout
    flat = " ".join(done.stdout.split())
    assert "[/oops]" in flat and "[link=https://evil.example]click[/link]" in flat
    assert "\x1b" not in done.stdout


def test_a_drill_from_the_cli_is_a_live_replica_while_its_grant_is_under_way(tmp_path: Path) -> None:
    done = drill(tmp_path, SEEING)

    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads((tmp_path / "seen.json").read_text())
    [holder] = seen["holders"]
    assert holder.startswith("cli:")
    assert holder in seen["alive"], f"the claim's holder {holder} wrote no heartbeat; alive: {seen['alive']}"
    db = Database.from_url(f"sqlite:///{tmp_path / 'breakglass.db'}")
    try:
        with db.engine.connect() as connection:
            left = connection.exec_driver_sql("select instance from replicas").fetchall()
        assert left == []  # its heartbeat row is gone once it is done, as a replica's on a clean stop
    finally:
        db.dispose()
