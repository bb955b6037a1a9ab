"""A private PostgreSQL cluster with real password authentication, for tests that need the server to check one, or
to stop and start it (a database outage).

The shared test server trusts every loopback login, so it cannot show that ``VALID UNTIL`` refuses a password
after expiry. This starts a throwaway cluster: scram-sha-256 on 127.0.0.1 only, a free high port, its socket and
data in a temporary directory that is removed afterwards. PostgreSQL refuses to run as root, so as root the
binaries run as the ``postgres`` OS user.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bot.devtools.ports import free_port

SUPERUSER = "postgres"


@dataclass(frozen=True)
class Cluster:
    host: str
    port: int
    superuser: str
    password: str = field(repr=False)
    pg_ctl: tuple[str, ...] = field(default=(), repr=False, compare=False)  # how to stop and start it again
    server_log: Path | None = field(default=None, repr=False, compare=False)

    def url(self, dbname: str = "postgres") -> str:
        """A SQLAlchemy URL for the superuser (the password is URL-safe by construction)."""
        return f"postgresql://{self.superuser}:{self.password}@{self.host}:{self.port}/{dbname}"

    def stop(self) -> None:
        """Stop the server, cutting every open connection, as an outage does; ``start`` undoes it. A fast shutdown,
        not an immediate one: with ``synchronous_commit = off`` (below) an immediate stop could lose the last
        commits it had acknowledged, which a real server (synchronous_commit on) never does."""
        _run([*self.pg_ctl, "-m", "fast", "-w", "-t", "30", "stop"], self.server_log)

    def start(self) -> None:
        """Start the stopped server again, on the same port with the same data."""
        log = self.server_log
        _run([*self.pg_ctl, "-l", str(log), "-w", "-t", "30", "start"] if log else [*self.pg_ctl, "start"], log)

    def connect(self, user: str | None = None, password: str | None = None, **options: object) -> psycopg.Connection:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            dbname="postgres",
            user=user or self.superuser,
            password=self.password if user is None else password,
            connect_timeout=5,
            autocommit=True,
            **options,
        )


def find_bindir() -> Path | None:
    """The newest installed server's bin directory, or None."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    on_path = shutil.which("initdb")
    found = candidates[-1] if candidates else on_path
    return Path(found).parent if found else None


def _version(path: str) -> float:
    try:
        return float(Path(path).parent.parent.name)
    except ValueError:
        return 0.0


@contextmanager
def running_cluster(bindir: Path, settings: Mapping[str, str] | None = None) -> Iterator[Cluster]:
    """``settings`` are extra ``postgresql.conf`` lines (name -> value as written there, quotes included), written
    after the defaults so they win: e.g. ``{"shared_preload_libraries": "'pgaudit'"}``."""
    as_postgres = os.geteuid() == 0
    prefix = ["runuser", "-u", SUPERUSER, "--"] if as_postgres else []
    root = Path(tempfile.mkdtemp(prefix="breakglass-pg-"))
    try:
        password = "pg-" + secrets.token_urlsafe(16)
        data = root / "data"
        pwfile = root / "pwfile"
        pwfile.write_text(password + "\n")
        if as_postgres:
            owner = pwd.getpwnam(SUPERUSER)
            os.chown(root, owner.pw_uid, owner.pw_gid)
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        root.chmod(0o700)  # mkdtemp's directory sits in /tmp, which everyone can traverse
        _run(
            [
                *prefix,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        port = free_port()
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{root}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 40\n"
            )
            conf.writelines(f"{name} = {value}\n" for name, value in (settings or {}).items())
        (data / "pg_hba.conf").write_text("local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n")
        pg_ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(data)]
        _run([*pg_ctl, "-l", str(root / "server.log"), "-w", "-t", "30", "start"], root / "server.log")
        try:
            yield Cluster("127.0.0.1", port, SUPERUSER, password, tuple(pg_ctl), root / "server.log")
        finally:
            subprocess.run([*pg_ctl, "-m", "immediate", "-w", "stop"], capture_output=True, timeout=30, check=False)
    finally:
        with suppress(OSError):
            shutil.rmtree(root)


def _run(command: list[str], log: Path | None = None) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode:
        server_log = log.read_text(errors="replace") if log and log.exists() else ""
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}{server_log}")
