"""A private mariadbd with the ``server_audit`` plugin loaded, for the activity-capture tests.

The capture changes server-wide settings (the audit plugin's include-list, its rotation) and reads the audit file,
whose mode and place are fixed when the server starts. A throwaway server keeps all that away from the shared one:
its data, socket and audit log live in a temporary directory that is removed afterwards, it listens on a free high
loopback port only, and it starts with ``UMASK=0644`` so that the audit log it writes is readable by ``LOAD_FILE``
(which reads only files everyone may read). As root the server runs as the ``mysql`` OS user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pymysql

from bot.devtools.ports import free_port

MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = "/usr/bin/mariadb-install-db"
OS_USER = "mysql"


@dataclass(frozen=True)
class AuditedServer:
    host: str
    port: int
    audit_log: Path  # server_audit_file_path
    error_log: Path


def available() -> bool:
    return Path(MARIADBD).exists() and Path(INSTALL_DB).exists()


@contextmanager
def audited_server(plugin: bool = True) -> Iterator[AuditedServer]:
    """With ``plugin`` false the server runs without server_audit, as a server not set up for capture."""
    root = Path(tempfile.mkdtemp(prefix="breakglass-mariadb-"))
    as_root = os.geteuid() == 0
    process: subprocess.Popen[bytes] | None = None
    try:
        data, audit = root / "data", root / "audit"
        audit.mkdir()
        if as_root:
            owner = pwd.getpwnam(OS_USER)
            for path in (root, audit):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        user = [f"--user={OS_USER}"] if as_root else []
        install = [INSTALL_DB, "--no-defaults", f"--datadir={data}", *user, "--auth-root-authentication-method=normal"]
        done = subprocess.run([*install, "--skip-test-db"], capture_output=True, text=True, timeout=120, check=False)
        if done.returncode:
            raise RuntimeError(f"mariadb-install-db failed: {done.stderr[-2000:]}")
        port = free_port()
        server = AuditedServer("127.0.0.1", port, audit / "server_audit.log", root / "error.log")
        process = subprocess.Popen(
            [
                MARIADBD,
                "--no-defaults",
                f"--datadir={data}",
                *user,
                f"--port={port}",
                "--bind-address=127.0.0.1",
                f"--socket={root / 'mysqld.sock'}",
                f"--pid-file={root / 'mysqld.pid'}",
                f"--log-error={server.error_log}",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
                "--innodb-log-file-size=8M",
                "--event-scheduler=ON",
                *(["--plugin-load-add=server_audit", f"--server-audit-file-path={server.audit_log}"] if plugin else []),
            ],
            env={**os.environ, "UMASK": "0644", "UMASK_DIR": "0755"},  # LOAD_FILE reads world-readable files only
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_until_up(server, process)
        yield server
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        with suppress(OSError):
            shutil.rmtree(root)


def _wait_until_up(server: AuditedServer, process: subprocess.Popen[bytes]) -> None:
    give_up = time.monotonic() + 60
    while True:
        try:
            pymysql.connect(host=server.host, port=server.port, user="root", connect_timeout=2).close()
            return
        except pymysql.MySQLError:
            if process.poll() is not None or time.monotonic() > give_up:
                log = server.error_log.read_text(errors="replace")[-2000:] if server.error_log.exists() else ""
                raise RuntimeError(f"mariadbd did not start: {log}") from None
            time.sleep(0.1)
