"""A private OpenLDAP slapd for the ldap adapter tests: its own config, data and TLS certificate in a temp dir.

The directory holds ``dc=example,dc=org`` with the ACLs a real deployment would give a Breakglass bot: every
bound user may read, and only the bot account ``cn=breakglass,ou=services,…`` may write the membership
attributes of groups under ``ou=groups``, and their ``description`` (where the bot marks its grants) except in
groups named ``legacy-*``, which stand for a bot given the ACLs of before marks existed. slapd listens on loopback
only, StartTLS on ``ldap://`` and TLS on ``ldaps://``, with a certificate for 127.0.0.1 signed by a throwaway CA
(``ca_file``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bot.devtools.ports import free_port

SLAPD = "/usr/sbin/slapd"
SCHEMA = Path("/etc/ldap/schema")
MODULES = Path("/usr/lib/ldap")
SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-secret-4e1f"
BOT_DN = f"cn=breakglass,ou=services,{SUFFIX}"
BOT_PASSWORD = "bot-secret-9c2a"
MEMBERSHIP = "member,uniqueMember,memberUid"

CONFIG = """\
include "{schema}/core.schema"
include "{schema}/cosine.schema"
include "{schema}/inetorgperson.schema"
include "{schema}/nis.schema"
modulepath "{modules}"
moduleload back_mdb
pidfile "{dir}/slapd.pid"
argsfile "{dir}/slapd.args"
TLSCACertificateFile "{dir}/ca.pem"
TLSCertificateFile "{dir}/server.pem"
TLSCertificateKeyFile "{dir}/server.key"

database mdb
maxsize 16777216
suffix "{suffix}"
rootdn "{root_dn}"
rootpw {root_password}
directory "{dir}/data"

access to attrs=userPassword
    by self write
    by anonymous auth
    by * none
access to dn.subtree="ou=groups,{suffix}" attrs={membership}
    by dn.exact="{bot_dn}" write
    by users read
    by * none
access to dn.subtree="ou=groups,{suffix}" filter="(!(cn=legacy-*))" attrs=description
    by dn.exact="{bot_dn}" write
    by users read
    by * none
access to *
    by users read
    by * none
"""


def available() -> bool:
    return Path(SLAPD).is_file() and shutil.which("openssl") is not None


@dataclass
class Slapd:
    directory: Path
    port: int
    tls_port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def ca_file(self) -> str:
        return str(self.directory / "ca.pem")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start(directory: Path, within: float = 60) -> Slapd:  # returns once it listens
    """Start slapd in the foreground in ``directory``; return once it accepts connections."""
    (directory / "data").mkdir(parents=True)
    _make_certificates(directory)
    config = directory / "slapd.conf"
    config.write_text(
        CONFIG.format(
            schema=SCHEMA,
            modules=MODULES,
            dir=directory,
            suffix=SUFFIX,
            root_dn=ROOT_DN,
            root_password=ROOT_PASSWORD,
            bot_dn=BOT_DN,
            membership=MEMBERSHIP,
        )
    )
    port, tls_port = free_port(), free_port()
    listen = f"ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/"
    log = directory / "slapd.log"
    with log.open("wb") as output:  # `-d none` logs only start-up errors and shutdown
        process = subprocess.Popen(
            [SLAPD, "-h", listen, "-f", str(config), "-d", "none"], stdout=output, stderr=subprocess.STDOUT
        )
    server = Slapd(directory, port, tls_port, process)
    # slapd reports "slapd starting" before its listener thread calls listen(): nothing to wait on but the port.
    give_up = time.monotonic() + within
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"slapd exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            if time.monotonic() > give_up:
                server.stop()
                raise RuntimeError(f"slapd did not listen on {port} within {within:g}s") from None
            time.sleep(0.02)


def _make_certificates(directory: Path) -> None:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=30)

    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Test CA")
    openssl("req", "-new", *curve, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (directory / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "server.ext",
    )  # fmt: skip
