"""The Kubernetes API stand-in, over plain HTTP: authentication, the RBAC decisions, the escalation rule,
impersonation, and the API server's answers (Status objects, conflicts, selectors, dry runs, faults)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from bot.devtools.kube_standin import RBAC, Identity, KubeStandIn

ADMIN, ALICE, BINDER, PROBER = "t-admin", "t-alice", "t-binder", "t-prober"
APIS = f"/apis/{RBAC}/v1"


@pytest.fixture
def standin() -> Iterator[KubeStandIn]:
    tokens = {
        ADMIN: Identity("admin", ("system:masters",)),
        ALICE: Identity("alice", ("devs",)),
        BINDER: Identity("binder"),
        PROBER: Identity("prober"),
    }
    with KubeStandIn(tokens) as running:
        yield running


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # nothing between us and loopback
        yield session


class Api:
    def __init__(self, standin: KubeStandIn, http: requests.Session) -> None:
        self.standin, self.http = standin, http

    def __call__(self, method: str, path: str, token: str | None = ADMIN, body: Any = None, **headers: str) -> Any:
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, self.standin.url + path, json=body, headers=headers, timeout=5)

    def names(self, path: str, selector: str) -> set[str]:
        answer = self.http.get(
            self.standin.url + path, params={"labelSelector": selector}, headers={"Authorization": f"Bearer {ADMIN}"}
        )
        return {item["metadata"]["name"] for item in answer.json()["items"]}

    def role(self, name: str, rules: list[dict[str, Any]], ns: str | None = "a") -> None:
        path = f"{APIS}/namespaces/{ns}/roles" if ns else f"{APIS}/clusterroles"
        assert self("POST", path, body={"metadata": {"name": name}, "rules": rules}).status_code == 201

    def bind(
        self,
        name: str,
        kind: str,
        role: str,
        subjects: list[dict[str, Any]],
        ns: str | None = "a",
        token: str = ADMIN,
        **labels: str,
    ) -> requests.Response:
        body = {
            "metadata": {"name": name, "labels": labels},
            "roleRef": {"apiGroup": RBAC, "kind": kind, "name": role},
            "subjects": subjects,
        }
        return self(
            "POST", f"{APIS}/namespaces/{ns}/rolebindings" if ns else f"{APIS}/clusterrolebindings", token, body
        )


@pytest.fixture
def api(standin: KubeStandIn, http: requests.Session) -> Api:
    return Api(standin, http)


PODS = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]


def test_a_missing_or_unknown_token_gets_a_401_status(api: Api) -> None:
    for token in (None, "nobody-knows-me"):
        answer = api("GET", "/api/v1/namespaces/a/pods", token)
        assert answer.status_code == 401
        assert answer.json() | {"details": {}} == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
            "details": {},
        }


def test_rbac_follows_namespaces_subjects_wildcards_and_resource_names(standin: KubeStandIn, api: Api) -> None:
    alice, bob = Identity("alice", ("devs",)), Identity("bob", ("ops",))
    api.role("pod-lister", PODS)
    api.bind("alice-lists", "Role", "pod-lister", [{"kind": "User", "name": "alice"}])
    api.role("one-secret", [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["s1"]}])
    api.bind("devs-read-s1", "Role", "one-secret", [{"kind": "Group", "name": "devs"}])
    api.role("everything-apps", [{"apiGroups": ["apps"], "resources": ["*"], "verbs": ["*"]}], ns=None)
    api.bind("ops-apps", "ClusterRole", "everything-apps", [{"kind": "Group", "name": "ops"}], ns=None)

    assert standin.allowed(alice, "list", "", "pods", "a")
    assert not standin.allowed(alice, "list", "", "pods", "b")  # a RoleBinding acts in its own namespace only
    assert not standin.allowed(alice, "delete", "", "pods", "a")
    assert not standin.allowed(bob, "list", "", "pods", "a")
    assert standin.allowed(alice, "get", "", "secrets", "a", "s1")  # through her group
    assert not standin.allowed(alice, "get", "", "secrets", "a", "s2")
    assert not standin.allowed(alice, "list", "", "secrets", "a")  # a named rule never matches a list
    assert standin.allowed(bob, "delete", "apps", "deployments", "anywhere")
    assert not standin.allowed(bob, "delete", "", "pods", "anywhere")


def test_a_binding_needs_bind_on_its_role_or_every_permission_the_role_grants(api: Api) -> None:
    api.role("secret-reader", [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}])
    api.role("binder", [{"apiGroups": [RBAC], "resources": ["rolebindings"], "verbs": ["create"]}])
    api.bind("binder", "Role", "binder", [{"kind": "User", "name": "binder"}])
    to_carol = [{"kind": "User", "name": "carol"}]

    refused = api.bind("carol-reads", "Role", "secret-reader", to_carol, token=BINDER)
    assert refused.status_code == 403 and refused.json()["reason"] == "Forbidden"
    assert "attempting to grant RBAC permissions not currently held" in refused.json()["message"]

    bind_it = {"apiGroups": [RBAC], "resources": ["roles"], "verbs": ["bind"], "resourceNames": ["secret-reader"]}
    api.role("binds-it", [bind_it])
    api.bind("binder-binds", "Role", "binds-it", [{"kind": "User", "name": "binder"}])
    assert api.bind("carol-reads", "Role", "secret-reader", to_carol, token=BINDER).status_code == 201

    api.role("pod-lister", PODS)
    api.role("holds-pods", PODS)
    api.bind("binder-lists", "Role", "holds-pods", [{"kind": "User", "name": "binder"}])
    assert api.bind("carol-lists", "Role", "pod-lister", to_carol, token=BINDER).status_code == 201  # held, no bind


def test_impersonation_needs_permission_and_then_acts_as_that_user(api: Api) -> None:
    pods = "/api/v1/namespaces/a/pods"
    as_alice = {"Impersonate-User": "alice"}
    assert api("GET", pods, PROBER, **as_alice).status_code == 403  # prober may not impersonate yet

    impersonate = [{"apiGroups": [""], "resources": ["users", "groups"], "verbs": ["impersonate"]}]
    api.role("impersonator", impersonate, ns=None)
    api.bind("prober-impersonates", "ClusterRole", "impersonator", [{"kind": "User", "name": "prober"}], ns=None)
    denied = api("GET", pods, PROBER, **as_alice)
    assert denied.status_code == 403 and 'User "alice" cannot list resource "pods"' in denied.json()["message"]

    api.role("pod-lister", PODS)
    api.bind("ops-list", "Role", "pod-lister", [{"kind": "Group", "name": "ops"}])
    assert api("GET", pods, PROBER, **as_alice).status_code == 403
    listed = api("GET", pods, PROBER, **as_alice, **{"Impersonate-Group": "ops"})
    assert listed.status_code == 200 and listed.json()["kind"] == "PodList" and listed.json()["items"] == []


def test_access_reviews_answer_for_oneself_or_for_someone_else(api: Api) -> None:
    api.role("pod-lister", PODS)
    api.bind("alice-lists", "Role", "pod-lister", [{"kind": "User", "name": "alice"}])
    attributes = {"verb": "list", "resource": "pods", "group": "", "namespace": "a"}

    def review(kind: str, token: str, **spec: Any) -> Any:
        body = {
            "kind": kind,
            "apiVersion": "authorization.k8s.io/v1",
            "spec": {"resourceAttributes": attributes, **spec},
        }
        return api("POST", f"/apis/authorization.k8s.io/v1/{kind.lower()}s", token, body)

    mine = review("SelfSubjectAccessReview", ALICE)
    assert mine.status_code == 201 and mine.json()["status"]["allowed"] is True
    assert 'RoleBinding "alice-lists/a" of Role "pod-lister"' in mine.json()["status"]["reason"]
    assert review("SelfSubjectAccessReview", PROBER).json()["status"] == {"allowed": False}
    assert review("SubjectAccessReview", ADMIN, user="alice").json()["status"]["allowed"] is True
    assert review("SubjectAccessReview", PROBER, user="alice").status_code == 403  # needs create on the reviews


def test_the_api_servers_answers_conflicts_not_found_immutable_role_ref_and_dry_run(api: Api) -> None:
    api.role("pod-lister", PODS)
    api.role("nothing", [])
    to_alice = [{"kind": "User", "name": "alice"}]
    created = api.bind("b", "Role", "pod-lister", to_alice).json()
    path = f"{APIS}/namespaces/a/rolebindings/b"

    again = api.bind("b", "Role", "pod-lister", to_alice)
    assert again.status_code == 409 and again.json()["reason"] == "AlreadyExists"
    stale = created | {"metadata": created["metadata"] | {"resourceVersion": "0"}}
    assert api("PUT", path, body=stale).json()["reason"] == "Conflict"
    moved = created | {"roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "nothing"}}
    assert api("PUT", path, body=moved).status_code == 422
    assert api("PUT", path, body=created | {"subjects": []}).status_code == 200

    dry = api("POST", f"{APIS}/namespaces/a/rolebindings?dryRun=All", body=created | {"metadata": {"name": "dry"}})
    assert dry.status_code == 201 and api("GET", f"{APIS}/namespaces/a/rolebindings/dry").status_code == 404

    assert api("DELETE", path).json()["status"] == "Success"
    gone = api("DELETE", path)
    assert gone.status_code == 404 and gone.json()["reason"] == "NotFound"


def test_label_selectors_and_label_syntax(api: Api) -> None:
    api.role("nothing", [])
    for name, labels in {"one": {"team": "x", "tier": "1"}, "two": {"team": "y"}, "three": {}}.items():
        assert api.bind(name, "Role", "nothing", [], **labels).status_code == 201
    assert api.bind("bad", "Role", "nothing", [], team="zoe@example.com").status_code == 422

    listed = f"{APIS}/namespaces/a/rolebindings"
    assert api.names(listed, "team=x") == {"one"}
    assert api.names(listed, "team==x,tier=1") == {"one"}
    assert api.names(listed, "team!=x") == {"two", "three"}
    assert api.names(listed, "team") == {"one", "two"}
    assert api.names(listed, "!team") == {"three"}


def test_scripted_faults_then_recovery(standin: KubeStandIn, api: Api) -> None:
    standin.fail_next(2, status=429)
    standin.fail_next(1, status=503)

    answers = [api("GET", "/api/v1/namespaces/a/pods") for _ in range(4)]

    assert [a.status_code for a in answers] == [429, 429, 503, 200]
    assert answers[0].headers["Retry-After"] == "1" and answers[0].json()["reason"] == "TooManyRequests"
    assert [call.status for call in standin.calls] == [429, 429, 503, 200]
