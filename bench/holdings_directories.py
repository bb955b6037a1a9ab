"""What one ``holdings()`` call costs on aws-iam, ldap and kubernetes with 1,000 holders.

Reconciliation lists each resource's holders once per run (default every 10 minutes). For each backend this starts
the server the adapter tests use (moto's IAM, a private slapd, the Kubernetes API stand-in), gives ``--holders``
principals the resource's access, half through the adapter's own grant (so bot-made) and half by hand as an
operator would, then times ``holdings(everything=False)`` and ``holdings(everything=True)`` and counts the backend
requests one call makes. The baseline is the same read made bare with the backend's own client (one IAM
``GetAccountAuthorizationDetails`` page, one LDAP search of the group, one list of RoleBindings), so what the adapter
adds shows apart from what the server takes. These servers are local stand-ins: the figures say how the cost
grows, not what AWS or a real API server answers in.

    PYTHONPATH=. python bench/holdings_directories.py --holders 1000 --rounds 5   # (it borrows the tests' servers)

Needs moto, OpenLDAP's slapd and openssl (as the adapter tests do). Everything runs in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from kubernetes import client
from ldap3 import BASE, MODIFY_ADD, NONE, Connection, Server
from ldap3.utils.dn import escape_rdn

from bot.adapters.aws_iam import AwsIamAdapter, AwsIamParams
from bot.adapters.base import Lists
from bot.adapters.kubernetes import RBAC, KubernetesAdapter, KubernetesParams
from bot.adapters.ldap import LdapAdapter, LdapParams
from bot.devtools.kube_standin import Identity, KubeStandIn
from bot.testing.contract import grant_context
from tests.adapters import slapd_server
from tests.adapters.moto_server import MotoServer, offline_aws_env

KEY, SECRET = "AKIABENCHKEY00000000", "bench-secret-access-key-0123456789abcdef"
STATEMENTS = [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::bench"}]
ADMIN_TOKEN = "bench-kube-admin-token"


def timed(action: Callable[[], object], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def report(
    name: str, adapter: Lists, rounds: int, requests: Callable[[], int] | None, baseline: Callable[[], object]
) -> None:
    """``requests`` counts the backend requests made so far; None where one call makes one search by construction."""
    baseline()  # warm-up: the client's first call sets up what later ones reuse
    bare = timed(baseline, rounds)
    print(f"{name:<16} baseline{'':<27}median {statistics.median(bare):8.1f} ms  max {max(bare):8.1f} ms")
    for everything in (False, True):
        before = requests() if requests else 0
        listed = adapter.holdings(everything=everything)
        per_call = requests() - before if requests else 1
        samples = timed(lambda everything=everything: adapter.holdings(everything=everything), rounds)
        made = sum(holding.made_by_bot for holding in listed)
        print(
            f"{name:<16} everything={everything!s:<5} listed {len(listed):>5} ({made} bot-made)  "
            f"median {statistics.median(samples):8.1f} ms  max {max(samples):8.1f} ms  requests/call {per_call}"
        )


@contextmanager
def iam(workdir: Path) -> Iterator[tuple[str, Any]]:
    with offline_aws_env(), MotoServer(workdir) as server:
        session = boto3.session.Session(aws_access_key_id=KEY, aws_secret_access_key=SECRET, region_name="us-east-1")
        yield server.url, session.client("iam", endpoint_url=server.url)


def bench_iam(holders: int, rounds: int, workdir: Path) -> None:
    with iam(workdir) as (url, client):
        client.create_group(GroupName="bench-ops")
        base = {"endpoint_url": url, "access_key_id": KEY, "secret_access_key": SECRET}
        modes = {
            "aws-iam policy": AwsIamAdapter(AwsIamParams(mode="policy", statements=STATEMENTS, **base)),
            "aws-iam group": AwsIamAdapter(AwsIamParams(mode="group", group="bench-ops", **base)),
        }
        sent = [0]
        for adapter in modes.values():  # the adapter's own boto3 session: every client it makes counts its requests
            adapter._session.events.register("before-call.iam", lambda **_: sent.__setitem__(0, sent[0] + 1))
        document = json.dumps({"Version": "2012-10-17", "Statement": STATEMENTS})
        for index in range(holders):
            user = f"bench-{index}"
            client.create_user(UserName=user)
            if index % 2:
                client.put_user_policy(UserName=user, PolicyName="ops-standing", PolicyDocument=document)
                client.add_user_to_group(UserName=user, GroupName="bench-ops")
            else:
                modes["aws-iam policy"].grant(grant_context(user))
                modes["aws-iam group"].grant(grant_context(user))

        def bare() -> object:
            return client.get_account_authorization_details(Filter=["User"], MaxItems=1000)

        for name, adapter in modes.items():
            report(name, adapter, rounds, lambda: sent[0], bare)


def bench_ldap(holders: int, rounds: int, workdir: Path) -> None:
    server = slapd_server.start(workdir / "slapd")
    suffix, people, group = (
        slapd_server.SUFFIX,
        f"ou=people,{slapd_server.SUFFIX}",
        f"cn=bench,ou=groups,{slapd_server.SUFFIX}",
    )
    try:
        admin = Connection(Server(server.url), slapd_server.ROOT_DN, slapd_server.ROOT_PASSWORD, auto_bind=True)
        admin.add(suffix, ["dcObject", "organization"], {"o": "Example"})
        for unit in ("people", "groups", "services"):
            admin.add(f"ou={unit},{suffix}", ["organizationalUnit"])
        admin.add(
            slapd_server.BOT_DN,
            ["applicationProcess", "simpleSecurityObject"],
            {"userPassword": slapd_server.BOT_PASSWORD},
        )
        admin.add(group, ["groupOfNames"], {"member": group})
        adapter = LdapAdapter(
            LdapParams(
                url=server.url,
                bind_dn=slapd_server.BOT_DN,
                password=slapd_server.BOT_PASSWORD,
                group_dn=group,
                user_dn=f"uid={{principal}},{people}",
            )
        )
        for index in range(holders):
            name = f"bench-{index}"
            dn = f"uid={escape_rdn(name)},{people}"
            admin.add(dn, ["inetOrgPerson"], {"uid": name, "cn": name, "sn": "bench"})
            if index % 2:
                admin.modify(group, {"member": [(MODIFY_ADD, [dn])]})
            else:
                adapter.grant(grant_context(name))

        def bare() -> object:
            with Connection(
                Server(server.url, get_info=NONE), slapd_server.BOT_DN, slapd_server.BOT_PASSWORD, auto_bind=True
            ) as bot:
                return bot.search(group, "(objectClass=*)", search_scope=BASE, attributes=["member", "description"])

        admin.unbind()
        report("ldap", adapter, rounds, None, bare)  # one search per call (bind and unbind aside)
    finally:
        server.stop()


def bench_kubernetes(holders: int, rounds: int) -> None:
    with KubeStandIn({ADMIN_TOKEN: Identity("admin", ("system:masters",))}) as standin:
        configured = client.Configuration(
            host=standin.url, api_key={"BearerToken": ADMIN_TOKEN}, api_key_prefix={"BearerToken": "Bearer"}
        )
        params = KubernetesParams(
            server=standin.url, token=ADMIN_TOKEN, kind="ClusterRole", role="view", namespace="team"
        )
        adapter = KubernetesAdapter(params)
        rbac = client.RbacAuthorizationV1Api(client.ApiClient(configured))
        for index in range(holders):
            name = f"bench-{index}@example.com"
            if index % 2:
                binding = {
                    "metadata": {"name": f"standing-{uuid.uuid4().hex[:10]}", "namespace": "team"},
                    "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "view"},
                    "subjects": [{"kind": "User", "apiGroup": RBAC, "name": name}],
                }
                rbac.create_namespaced_role_binding("team", binding)
            else:
                adapter.grant(grant_context(name))
        report(
            "kubernetes",
            adapter,
            rounds,
            lambda: len(standin.calls),
            lambda: rbac.list_namespaced_role_binding("team", _preload_content=False).data,
        )
        adapter.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holders", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        workdir = Path(temporary)
        bench_kubernetes(args.holders, args.rounds)
        bench_ldap(args.holders, args.rounds, workdir)
        bench_iam(args.holders, args.rounds, workdir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
