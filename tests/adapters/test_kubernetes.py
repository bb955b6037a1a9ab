"""The kubernetes adapter against the Kubernetes API stand-in, and against a real cluster where KUBECONFIG is set.

No API server can run here, so ``bot.devtools.kube_standin`` plays one: it authenticates bearer tokens and
authorizes every request with the RBAC objects it holds, escalation rule and impersonation included. The probe
proves access the way ``kubectl --as`` would: it lists pods in the namespace as the principal.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config import incluster_config
from pydantic import ValidationError

from bot.adapters.base import AdapterError, GrantContext, Receipt
from bot.adapters.kubernetes import (
    BINDING_VERBS,
    CHECK_BINDING,
    KubernetesAdapter,
    KubernetesParams,
    binding_name,
    grant_label,
)
from bot.devtools.kube_standin import RBAC, Identity, KubeStandIn
from bot.testing.contract import (
    AWKWARD,
    AdapterContract,
    ListsContract,
    OneLiveGrantContract,
    StandingAccessContract,
    VerifyContract,
    grant_context,
)

ADMIN_TOKEN = "kube-admin-token-5d1f0c"
BOT_TOKEN = "kube-bot-token-a8e2794c1b"
PROBER_TOKEN = "kube-prober-token-77c0e1"
WRONG_TOKEN = "kube-wrong-token-3b9d2f"
NAMESPACE = "team"
TARGET = "pod-reader"  # the role the adapter binds: it allows listing pods, which is what the probe does
READ_PODS = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
READ_SECRETS = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]
SECRETS = [ADMIN_TOKEN, BOT_TOKEN, PROBER_TOKEN, WRONG_TOKEN]


@dataclass(frozen=True)
class Mode:
    kind: str
    namespace: str | None
    subject_kind: str = "User"
    kubeconfig: bool = False  # connect through a kubeconfig file and context instead of server + token


MODES = {
    "role-in-namespace": Mode("Role", NAMESPACE),
    "clusterrole-cluster-wide-via-kubeconfig": Mode("ClusterRole", None, kubeconfig=True),
    "clusterrole-in-namespace-to-group": Mode("ClusterRole", NAMESPACE, subject_kind="Group"),
}


def configured(url: str, token: str) -> client.Configuration:
    return client.Configuration(host=url, api_key={"BearerToken": token}, api_key_prefix={"BearerToken": "Bearer"})


class Admin:
    """Sets the stand-in up as a cluster admin would, through the API."""

    def __init__(self, standin: KubeStandIn) -> None:
        self.api = client.ApiClient(configured(standin.url, ADMIN_TOKEN))
        self.rbac = client.RbacAuthorizationV1Api(self.api)

    def role(self, name: str, rules: list[dict[str, Any]], namespace: str | None = NAMESPACE) -> None:
        body = {"metadata": {"name": name}, "rules": rules}
        if namespace:
            self.rbac.create_namespaced_role(namespace, client.V1Role.from_dict(body))
        else:
            self.rbac.create_cluster_role(client.V1ClusterRole.from_dict(body))

    def bind(
        self,
        name: str,
        kind: str,
        role: str,
        subjects: list[dict[str, Any]],
        namespace: str | None = NAMESPACE,
        labels: dict[str, str] | None = None,
    ) -> None:
        body = {
            "metadata": {"name": name, "labels": labels or {}},
            "roleRef": {"apiGroup": RBAC, "kind": kind, "name": role},
            "subjects": [{"apiGroup": RBAC, **subject} for subject in subjects],
        }
        if namespace:
            self.rbac.create_namespaced_role_binding(namespace, client.V1RoleBinding.from_dict(body))
        else:
            self.rbac.create_cluster_role_binding(client.V1ClusterRoleBinding.from_dict(body))

    def bot_may_manage(self, user: str, mode: Mode) -> None:
        """The minimum the docs ask for: the binding verbs where the bindings live, and `bind` on the role."""
        resource = "rolebindings" if mode.namespace else "clusterrolebindings"
        rules = [
            {"apiGroups": [RBAC], "resources": [resource], "verbs": list(BINDING_VERBS)},
            {"apiGroups": [RBAC], "resources": [f"{mode.kind.lower()}s"], "verbs": ["bind"], "resourceNames": [TARGET]},
        ]
        self.role(f"rights-of-{user}", rules, mode.namespace)
        self.bind(
            f"rights-of-{user}",
            "Role" if mode.namespace else "ClusterRole",
            f"rights-of-{user}",
            [{"kind": "User", "name": user}],
            mode.namespace,
        )

    def close(self) -> None:
        self.api.close()


def prepare(standin: KubeStandIn, mode: Mode) -> None:
    admin = Admin(standin)
    admin.role(TARGET, READ_PODS)
    admin.role(TARGET, READ_PODS, namespace=None)
    admin.role("secret-reader", READ_SECRETS)
    admin.role("nothing", [])
    impersonate = [{"apiGroups": [""], "resources": ["users", "groups"], "verbs": ["impersonate"]}]
    admin.role("impersonator", impersonate, namespace=None)
    admin.bind("prober-impersonates", "ClusterRole", "impersonator", [{"kind": "User", "name": "prober"}], None)
    admin.bot_may_manage("breakglass-bot", mode)
    admin.close()


class KubeProbe:
    """Uses the access as the principal, by impersonation (``kubectl --as``): lists pods in the namespace."""

    def __init__(self, configuration: client.Configuration, namespace: str, subject_kind: str, prefix: str) -> None:
        self.api = client.ApiClient(configuration)
        self.namespace, self.subject_kind, self.prefix = namespace, subject_kind, prefix

    def principal(self, hint: str = "") -> str:
        name = f"{self.prefix}{uuid.uuid4().hex[:10]}"
        return f"{name} {hint}" if hint else name

    def can_use(self, ctx: GrantContext, receipt: Receipt) -> bool:
        return self.can_list_pods(ctx.principal)

    def can_list_pods(self, principal: str) -> bool:
        if self.subject_kind == "Group":  # someone in the group
            headers = {"Impersonate-User": f"member-{uuid.uuid4().hex[:6]}", "Impersonate-Group": principal}
        else:
            headers = {"Impersonate-User": principal}
        try:
            client.CoreV1Api(self.api).list_namespaced_pod(self.namespace, _headers=headers, _request_timeout=10)
        except ApiException as error:
            if error.status == 403:
                return False
            raise
        return True

    def secrets(self) -> list[str]:
        return SECRETS

    def close(self) -> None:
        self.api.close()


class StandingKubeProbe(KubeProbe):
    """Also binds the role by hand, as a cluster admin would: a binding with no Breakglass labels."""

    def __init__(self, standin: KubeStandIn, mode: Mode, prefix: str) -> None:
        super().__init__(configured(standin.url, PROBER_TOKEN), NAMESPACE, mode.subject_kind, prefix)
        self.standin, self.mode = standin, mode

    def give_standing(self, principal: str) -> None:
        admin = Admin(self.standin)
        subject = {"kind": self.mode.subject_kind, "name": principal}
        admin.bind(f"standing-{uuid.uuid4().hex[:8]}", self.mode.kind, TARGET, [subject], self.mode.namespace)
        admin.close()


def params_for(standin: KubeStandIn, mode: Mode, tmp_path: Path, token: str, **changes: Any) -> KubernetesParams:
    fields: dict[str, Any] = {"kind": mode.kind, "role": TARGET, "namespace": mode.namespace}
    fields["subject_kind"] = mode.subject_kind
    if mode.kubeconfig:
        fields["kubeconfig"] = str(write_kubeconfig(standin, tmp_path))
        fields["context"] = {BOT_TOKEN: "bot", WRONG_TOKEN: None}[token]  # None: the current context, a stranger
    else:
        fields |= {"server": standin.url, "token": token}
    return KubernetesParams(**(fields | changes))


def write_kubeconfig(standin: KubeStandIn, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    users = {"bot": BOT_TOKEN, "stranger": WRONG_TOKEN}
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "standin", "cluster": {"server": standin.url}}],
        "users": [{"name": name, "user": {"token": token}} for name, token in users.items()],
        "contexts": [{"name": name, "context": {"cluster": "standin", "user": name}} for name in users],
        "current-context": "stranger",
    }
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def standin() -> Iterator[KubeStandIn]:
    tokens = {
        ADMIN_TOKEN: Identity("admin", ("system:masters",)),
        BOT_TOKEN: Identity("breakglass-bot"),
        PROBER_TOKEN: Identity("prober"),
    }
    with KubeStandIn(tokens) as running:
        yield running


class TestKubernetesContract(
    AdapterContract, OneLiveGrantContract, VerifyContract, ListsContract, StandingAccessContract
):
    @pytest.fixture(params=list(MODES))
    def mode(self, request: pytest.FixtureRequest, standin: KubeStandIn) -> Mode:
        mode = MODES[request.param]
        prepare(standin, mode)
        return mode

    @pytest.fixture
    def adapter(self, standin: KubeStandIn, mode: Mode, tmp_path: Path) -> Iterator[KubernetesAdapter]:
        adapter = KubernetesAdapter(params_for(standin, mode, tmp_path, BOT_TOKEN))
        yield adapter
        adapter.close()

    @pytest.fixture
    def wrong_credentials(self, standin: KubeStandIn, mode: Mode, tmp_path: Path) -> Iterator[KubernetesAdapter]:
        adapter = KubernetesAdapter(params_for(standin, mode, tmp_path, WRONG_TOKEN))
        yield adapter
        adapter.close()

    @pytest.fixture
    def probe(self, standin: KubeStandIn, mode: Mode) -> Iterator[KubeProbe]:
        probe = StandingKubeProbe(standin, mode, "ops-" if mode.subject_kind == "Group" else "zoe-")
        yield probe
        probe.close()

    def test_the_instructions_say_how_to_see_the_access(
        self, granted: tuple[GrantContext, Receipt], mode: Mode
    ) -> None:
        ctx, receipt = granted
        text = receipt.instructions or ""
        assert f"The {mode.kind} `{TARGET}` is bound to " in text and ctx.principal in text
        if mode.namespace:
            assert "in namespace team" in text and "`kubectl auth can-i --list -n team`" in text
        else:
            assert "across the cluster" in text and "`kubectl auth can-i --list`." in text


# -- a real cluster -------------------------------------------------------------------------------------

REAL_PREFIX = "breakglass-contract-"


class TestRealClusterContract(AdapterContract, OneLiveGrantContract, VerifyContract, ListsContract):
    """Binds the built-in ClusterRole ``view`` in one namespace (``BREAKGLASS_TEST_K8S_NAMESPACE``, default
    ``default``) to made-up users, and checks by impersonating them. Needs a kubeconfig allowed to do that."""

    @pytest.fixture
    def real(self) -> Iterator[tuple[str, client.Configuration, str]]:
        path = os.environ.get("KUBECONFIG")
        if not path:
            pytest.skip(
                "KUBECONFIG is unset, so there is no real cluster to run against (expected in CI, which has none; "
                "the stand-in tests cover the adapter there)"
            )
        configuration = client.Configuration()
        config.load_kube_config(config_file=path, client_configuration=configuration, persist_config=False)
        namespace = os.environ.get("BREAKGLASS_TEST_K8S_NAMESPACE", "default")
        yield path, configuration, namespace
        with client.ApiClient(configuration) as api:  # anything a failed test left behind
            rbac = client.RbacAuthorizationV1Api(api)
            managed = rbac.list_namespaced_role_binding(
                namespace, label_selector="app.kubernetes.io/managed-by=breakglass"
            )
            for binding in managed.items:
                principal = (binding.metadata.annotations or {}).get("breakglass.dev/principal") or ""
                if principal.startswith(REAL_PREFIX):
                    rbac.delete_namespaced_role_binding(binding.metadata.name, namespace)

    @pytest.fixture
    def adapter(self, real: tuple[str, client.Configuration, str]) -> Iterator[KubernetesAdapter]:
        path, _, namespace = real
        params = KubernetesParams(kubeconfig=path, kind="ClusterRole", role="view", namespace=namespace)
        adapter = KubernetesAdapter(params)
        yield adapter
        adapter.close()

    @pytest.fixture
    def wrong_credentials(self, real: tuple[str, client.Configuration, str]) -> Iterator[KubernetesAdapter]:
        _, configuration, namespace = real
        params = KubernetesParams(
            server=configuration.host,
            token=WRONG_TOKEN,
            ca_file=configuration.ssl_ca_cert,
            verify_tls=configuration.verify_ssl,
            kind="ClusterRole",
            role="view",
            namespace=namespace,
        )
        adapter = KubernetesAdapter(params)
        yield adapter
        adapter.close()

    @pytest.fixture
    def probe(self, real: tuple[str, client.Configuration, str]) -> Iterator[KubeProbe]:
        _, configuration, namespace = real
        probe = KubeProbe(configuration, namespace, "User", REAL_PREFIX)
        yield probe
        probe.close()


# -- focused tests (a Role in a namespace, server + token) ------------------------------------------------

ROLE_MODE = MODES["role-in-namespace"]


@pytest.fixture
def prepared(standin: KubeStandIn) -> KubeStandIn:
    prepare(standin, ROLE_MODE)
    return standin


@pytest.fixture
def make_adapter(prepared: KubeStandIn, tmp_path: Path) -> Iterator[Any]:
    made: list[KubernetesAdapter] = []

    def make(token: str = BOT_TOKEN, **changes: Any) -> KubernetesAdapter:
        made.append(KubernetesAdapter(params_for(prepared, ROLE_MODE, tmp_path, token, **changes)))
        return made[-1]

    yield make
    for adapter in made:
        adapter.close()


@pytest.fixture
def probe(prepared: KubeStandIn) -> Iterator[KubeProbe]:
    probe = KubeProbe(configured(prepared.url, PROBER_TOKEN), NAMESPACE, "User", "zoe-")
    yield probe
    probe.close()


def bindings(standin: KubeStandIn) -> dict[str, dict[str, Any]]:
    return {b["metadata"]["name"]: b for b in standin.objects("rolebindings", NAMESPACE)}


def failure(call: Any, *args: Any) -> AdapterError:
    with pytest.raises(AdapterError) as caught:
        call(*args)
    assert not any(secret in str(caught.value) for secret in SECRETS), "a token leaked"
    return caught.value


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_binding_names_are_dns_names_that_stay_the_same_for_a_grant(make_adapter, prepared, probe) -> None:
    ids = [str(uuid.uuid4()), "g-7f3a", "Grant With Spaces/ünïcode:" + "x" * 300, ""]
    names = [binding_name(grant_id) for grant_id in ids]
    assert names == [binding_name(grant_id) for grant_id in ids]
    assert len(set(names)) == len(ids)
    for name in names:
        assert len(name) <= 63 and name.startswith("breakglass-")
        assert name.replace("-", "").isalnum() and name == name.lower()

    ctx = grant_context(probe.principal())
    receipt = make_adapter().grant(ctx)

    assert receipt.data == {"kind": "RoleBinding", "name": binding_name(ctx.grant_id), "namespace": NAMESPACE}
    assert list(bindings(prepared)) == ["rights-of-breakglass-bot", binding_name(ctx.grant_id)]


@pytest.mark.parametrize("grant_id", ["2d91781b-718c-496d-98a6-3348537d4eca", "grant #42 / for zoe@example.com"])
def test_labels_carry_the_grant_and_annotations_the_principal(make_adapter, prepared, grant_id) -> None:
    principal = "zoe.o'brien@example.com"
    ctx = grant_context(principal, grant_id=grant_id)
    make_adapter().grant(ctx)  # the stand-in refuses labels that are not label-safe, as the API server does

    stored = bindings(prepared)[binding_name(grant_id)]
    labels, annotations = stored["metadata"]["labels"], stored["metadata"]["annotations"]
    assert labels["app.kubernetes.io/managed-by"] == "breakglass"
    assert labels["breakglass.dev/grant"] == grant_label(grant_id)
    assert (labels["breakglass.dev/grant"] == grant_id) == (" " not in grant_id)  # hashed only when it must be
    assert not any("zoe" in value or "brien" in value for value in labels.values())
    assert annotations["breakglass.dev/principal"] == principal
    assert annotations["breakglass.dev/grant-id"] == grant_id
    assert annotations["breakglass.dev/request"] == "4211"
    assert annotations["breakglass.dev/expires-at"] == ctx.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert stored["subjects"] == [{"kind": "User", "apiGroup": RBAC, "name": principal}]


def test_a_binding_changed_behind_the_bots_back_is_put_back(make_adapter, prepared, probe) -> None:
    adapter, admin = make_adapter(), Admin(prepared)
    ctx = grant_context(probe.principal())
    adapter.grant(ctx)
    name = binding_name(ctx.grant_id)
    tampered = client.V1RoleBinding.from_dict(bindings(prepared)[name])
    tampered.subjects.append(client.RbacV1Subject(kind="User", api_group=RBAC, name="mallory"))
    admin.rbac.replace_namespaced_role_binding(name, NAMESPACE, tampered)
    assert probe.can_list_pods("mallory")

    adapter.grant(ctx)  # the retry finds the binding (409), and it is not what was granted

    assert not probe.can_list_pods("mallory")
    assert probe.can_use(ctx, Receipt())
    assert [s["name"] for s in bindings(prepared)[name]["subjects"]] == [ctx.principal]
    admin.close()


def test_a_binding_of_another_role_under_the_grants_name_is_replaced(make_adapter, prepared, probe) -> None:
    ctx = grant_context(probe.principal())
    admin = Admin(prepared)
    admin.bind(binding_name(ctx.grant_id), "Role", "nothing", [{"kind": "User", "name": ctx.principal}])
    assert not probe.can_use(ctx, Receipt())

    make_adapter().grant(ctx)  # a roleRef cannot change in place: the bot deletes and creates it

    assert bindings(prepared)[binding_name(ctx.grant_id)]["roleRef"]["name"] == TARGET
    assert probe.can_use(ctx, Receipt())
    admin.close()


def test_revoke_removes_every_binding_labelled_with_the_grant(make_adapter, prepared, probe) -> None:
    adapter, admin = make_adapter(), Admin(prepared)
    ctx, other = grant_context(probe.principal()), grant_context(probe.principal())
    receipt = adapter.grant(ctx)
    adapter.grant(other)
    labels = bindings(prepared)[binding_name(ctx.grant_id)]["metadata"]["labels"]
    admin.bind("copy-of-the-grant", "Role", TARGET, [{"kind": "User", "name": ctx.principal}], labels=labels)

    adapter.revoke(ctx, receipt)

    assert not probe.can_use(ctx, receipt)
    assert set(bindings(prepared)) == {"rights-of-breakglass-bot", binding_name(other.grant_id)}
    assert probe.can_use(other, Receipt())
    admin.close()


def test_verify_sees_a_labelled_copy_of_the_grant_but_not_standing_access(make_adapter, prepared, probe) -> None:
    adapter, admin = make_adapter(), Admin(prepared)
    ctx = grant_context(probe.principal())
    receipt = adapter.grant(ctx)
    labels = bindings(prepared)[binding_name(ctx.grant_id)]["metadata"]["labels"]
    admin.bind("copy-of-the-grant", "Role", TARGET, [{"kind": "User", "name": ctx.principal}], labels=labels)
    admin.rbac.delete_namespaced_role_binding(binding_name(ctx.grant_id), NAMESPACE)
    assert adapter.verify(ctx, Receipt(data=receipt.data)) is True  # the copy still gives the grant's access

    admin.bind("standing", "Role", TARGET, [{"kind": "User", "name": ctx.principal}])
    adapter.revoke(ctx, Receipt(data=receipt.data))
    assert probe.can_use(ctx, Receipt()), "the standing binding should still work, or the test proves nothing"
    assert adapter.verify(ctx, Receipt(data=receipt.data)) is False  # not this grant's access to end
    admin.close()


def test_reconciling_a_hand_made_binding_takes_out_one_subject_and_keeps_the_others(
    make_adapter, prepared, probe
) -> None:
    adapter, admin = make_adapter(), Admin(prepared)
    stray, keeper = probe.principal(), probe.principal()
    admin.bind("ops-by-hand", "Role", TARGET, [{"kind": "User", "name": stray}, {"kind": "User", "name": keeper}])
    admin.bind("other-role", "Role", "secret-reader", [{"kind": "User", "name": stray}])
    assert adapter.holdings(everything=False) == []

    found = {h.principal: h for h in adapter.holdings(everything=True)}
    assert set(found) == {stray, keeper}  # not the bot's own rights binding, nor another role's
    assert not found[stray].made_by_bot
    assert adapter.verify(grant_context(stray), Receipt(data=found[stray].data)) is True
    adapter.revoke(grant_context(stray), Receipt(data=found[stray].data))

    assert not probe.can_list_pods(stray) and probe.can_list_pods(keeper)
    assert adapter.verify(grant_context(stray), Receipt(data=found[stray].data)) is False
    assert adapter.verify(grant_context(keeper), Receipt(data=found[keeper].data)) is True
    assert [s["name"] for s in bindings(prepared)["ops-by-hand"]["subjects"]] == [keeper]
    assert "other-role" in bindings(prepared)
    adapter.revoke(grant_context(stray), Receipt(data=found[stray].data))  # a retry finds nothing to take out
    adapter.revoke(grant_context(keeper), Receipt(data=found[keeper].data))
    assert "ops-by-hand" not in bindings(prepared) and not probe.can_list_pods(keeper)
    admin.close()


@pytest.mark.parametrize(
    "principal",
    [
        "system:admin",
        "system:serviceaccount:kube-system:default",
        "SYSTEM:x",
        "system:masters",
        " zoe",
        "zoe ",
        "",
        "\t",
    ],
)
def test_system_identities_and_blank_edged_names_are_refused(make_adapter, prepared, principal) -> None:
    adapter = make_adapter()
    assert adapter.principal_problem(principal)
    calls = len(prepared.calls)

    error = failure(adapter.grant, grant_context(principal))

    assert not error.retryable
    assert len(prepared.calls) == calls, "a refused principal reached the API server"


@pytest.mark.parametrize("principal", ["zoe@example.com", AWKWARD, "oidc:zoe", "CN=Zoë,OU=ops"])
def test_any_other_name_is_a_valid_subject(make_adapter, principal) -> None:
    assert make_adapter().principal_problem(principal) is None


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_trouble_is_retryable(make_adapter, prepared, probe, status) -> None:
    adapter = make_adapter()
    ctx = grant_context(probe.principal())
    prepared.fail_next(1, status=status)

    error = failure(adapter.grant, ctx)

    assert error.retryable and str(status) in str(error)
    assert not probe.can_use(ctx, Receipt())
    adapter.grant(ctx)
    assert probe.can_use(ctx, Receipt())


def test_a_hung_api_server_times_out_retryably(make_adapter, prepared, probe) -> None:
    prepared.stall_next(1, seconds=60)  # far past the client's 0.3 s whatever the load; stop() ends the stall

    error = failure(make_adapter(timeout=0.3).grant, grant_context(probe.principal()))

    assert error.retryable and "did not answer within 0.3s" in str(error)


def test_an_unreachable_api_server_is_retryable_and_check_says_so(make_adapter) -> None:
    adapter = make_adapter(server=f"http://127.0.0.1:{closed_port()}")

    error = failure(adapter.grant, grant_context("zoe"))
    problems = adapter.check()

    assert error.retryable and str(error).startswith("cannot connect to the Kubernetes API at 127.0.0.1:")
    assert len(problems) == 1 and problems[0].startswith("cannot connect to the Kubernetes API at 127.0.0.1:")


def test_refused_credentials_and_missing_privileges_are_not_retryable(make_adapter, probe) -> None:
    refused = failure(make_adapter(WRONG_TOKEN).grant, grant_context(probe.principal()))
    forbidden = failure(make_adapter(role="secret-reader").grant, grant_context(probe.principal()))

    assert not refused.retryable and "refused the bot's credentials" in str(refused)
    assert not forbidden.retryable and "attempting to grant RBAC permissions not currently held" in str(forbidden)
    assert make_adapter(WRONG_TOKEN).check() == [
        f"the Kubernetes API at {make_adapter().params.server.removeprefix('http://')} refused the bot's "
        "credentials (401 Unauthorized)"
    ]


def test_check_names_what_the_bot_lacks_and_stores_nothing(make_adapter, prepared) -> None:
    prepared.add_token("nobody-token", "nobody")
    assert make_adapter().check() == []

    [no_verbs] = make_adapter("nobody-token").check()
    [no_bind] = make_adapter(role="secret-reader").check()
    [no_role] = make_adapter(ADMIN_TOKEN, role="absent").check()

    assert no_verbs.startswith("the bot may not create, get, update, delete, list rolebindings in namespace team")
    assert "may not bind Role secret-reader in namespace team" in no_bind and "`bind` verb" in no_bind
    assert no_role == "the Role absent does not exist in namespace team"
    assert CHECK_BINDING not in bindings(prepared)


def test_holding_every_permission_of_the_role_is_enough_to_bind_it(make_adapter, prepared, probe) -> None:
    admin = Admin(prepared)
    prepared.add_token("holder-token", "holder")
    rules = [{"apiGroups": [RBAC], "resources": ["rolebindings"], "verbs": list(BINDING_VERBS)}, *READ_PODS]
    admin.role("holder", rules)
    admin.bind("holder", "Role", "holder", [{"kind": "User", "name": "holder"}])
    adapter = make_adapter("holder-token")  # no `bind` verb anywhere
    ctx = grant_context(probe.principal())

    assert adapter.check() == []
    adapter.grant(ctx)
    assert probe.can_use(ctx, Receipt())
    admin.close()


def test_the_token_never_shows_in_params_errors_or_reprs(make_adapter) -> None:
    with pytest.raises(ValidationError) as invalid:
        KubernetesParams(server="https://k8s.example:6443", token=BOT_TOKEN, kubeconfig="/k", kind="Role", role="r")
    adapter = make_adapter()

    for text in (str(invalid.value), repr(adapter), repr(adapter.params), str(adapter.params.model_dump())):
        assert BOT_TOKEN not in text


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"kind": "Role", "role": "r"}, "a Role lives in a namespace"),
        ({"kind": "ClusterRole", "role": "r", "server": "https://k8s:6443"}, "server and token go together"),
        ({"kind": "ClusterRole", "role": "r", "token": "t"}, "server and token go together"),
        ({"kind": "ClusterRole", "role": "r", "server": "https://k8s", "token": "t", "context": "c"}, "not both"),
        ({"kind": "ClusterRole", "role": "r", "ca_file": "/ca.pem"}, "go with server"),
        ({"kind": "ClusterRole", "role": "r", "namespace": "Team_1"}, "DNS label"),
        ({"kind": "ClusterRole", "role": "a/b"}, "not a valid Kubernetes object name"),
        ({"kind": "ClusterRole", "role": "r", "server": "k8s:6443", "token": "t"}, "must be the API server's URL"),
    ],
)
def test_params_refuse_combinations_that_cannot_work(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        KubernetesParams(**fields)


def test_params_accept_each_binding_shape() -> None:
    for fields in (
        {"kind": "ClusterRole", "role": "view"},
        {"kind": "ClusterRole", "role": "view", "namespace": "a"},
        {"kind": "Role", "role": "deployer", "namespace": "a", "subject_kind": "Group"},
    ):
        KubernetesParams(**fields)


def test_with_no_kubeconfig_named_it_uses_the_pods_service_account_else_KUBECONFIG(
    prepared: KubeStandIn, probe: KubeProbe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = write_kubeconfig(prepared, tmp_path)
    kubeconfig.write_text(kubeconfig.read_text().replace("current-context: stranger", "current-context: bot"))
    account = tmp_path / "serviceaccount"
    account.mkdir()
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(account / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(account / "ca.crt"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(closed_port()))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    fields = {"kind": "Role", "role": TARGET, "namespace": NAMESPACE}

    outside = KubernetesAdapter(KubernetesParams(**fields))  # no token file: not in a pod after all
    ctx = grant_context(probe.principal())
    outside.grant(ctx)
    assert probe.can_use(ctx, Receipt())
    outside.close()

    (account / "token").write_text("service-account-token")
    (account / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    inside = KubernetesAdapter(KubernetesParams(**fields))
    [problem] = inside.check()
    assert problem.startswith(
        f"cannot connect to the Kubernetes API at 127.0.0.1:{os.environ['KUBERNETES_SERVICE_PORT']}"
    )
    inside.close()
