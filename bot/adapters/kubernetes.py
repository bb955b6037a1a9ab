"""Binds a Kubernetes Role or ClusterRole to the principal for the length of a grant.

A grant creates one RBAC binding, named ``breakglass-<hash of the grant id>``:

- ``kind: Role`` binds a Role in ``namespace`` (a RoleBinding);
- ``kind: ClusterRole`` with a ``namespace`` binds the cluster role in that namespace only (a RoleBinding that
  references a ClusterRole), and without one across the cluster (a ClusterRoleBinding).

Its subject is the principal as a ``User`` (or a ``Group``, with ``subject_kind``), named exactly as the
cluster's authenticator names people (an OIDC ``email`` claim, say); names starting with ``system:`` are
Kubernetes' own identities and are refused. The binding is labelled ``app.kubernetes.io/managed-by=breakglass``
and ``breakglass.dev/grant=<grant id>`` (hashed when the id is not a valid label value) and annotated with the
principal, request, resource and expiry: labels cannot hold arbitrary names, annotations can. Granting again
finds the binding (409) and keeps it, or puts it back as it should be when someone changed it. Revoke deletes
the binding by name, then every binding still labelled with the grant, so a copy cannot outlive it.

Verify (``Verifies``) reads the bindings the grant made, the one named in the receipt and any labelled with the
grant, and answers whether the principal is still a subject of one. It does not ask a SubjectAccessReview: that
answers for every path to a permission (a standing binding, another live grant, a group), which are not this
grant's to end, and it needs a verb and resource to ask about, which a role of many rules does not give.

Reconciliation (``Lists``) lists the bindings in the resource's namespace (or the cluster's) that bind this
role to subjects of ``subject_kind``. Bindings labelled ``managed-by=breakglass`` are the bot's, and only they are
listed unless ``everything`` is asked. A holding in a binding made by hand names its subject in ``data``: its
revoke takes that one subject out, deleting the binding only when it was the last, so the standing access of
others in the same binding stays.

Expiry: Kubernetes has no expiry for RBAC bindings. Access lasts until the bot revokes it at ``expires_at``;
the ``breakglass.dev/expires-at`` annotation shows what is overdue should the bot be down.

The bot connects with an explicit server and token, or a kubeconfig (and context), or, with neither, the pod's
service account when it runs in the cluster. It needs create, get, update, delete and list on the bindings in
the namespace (or cluster-wide), and ``bind`` on the role: RBAC lets nobody create a binding to a role unless
they may ``bind`` it or hold every permission it grants. ``check()`` asks the API server about each.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from bot.adapters.base import AdapterError, AdapterParams, GrantContext, Holding, Receipt, redact
from bot.clock import as_utc

log = logging.getLogger("breakglass.adapters.kubernetes")

RBAC = "rbac.authorization.k8s.io"
MANAGED_BY = "app.kubernetes.io/managed-by"
GRANT_LABEL = "breakglass.dev/grant"
BINDING_VERBS = ("create", "get", "update", "delete", "list")
CHECK_BINDING = "breakglass-check"  # the name the dry-run in check() uses; nothing is stored under it
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_MAX_SNIPPET = 300
_NAME_RESOLUTION = getattr(urllib3.exceptions, "NameResolutionError", ())  # urllib3 2 and later


class KubernetesParams(AdapterParams):
    model_config = ConfigDict(hide_input_in_errors=True)  # a rejected value may be the token

    kubeconfig: str | None = None
    context: str | None = None
    server: str | None = None
    token: SecretStr | None = None
    ca_file: str | None = None
    verify_tls: bool = True
    kind: Literal["Role", "ClusterRole"]
    role: str = Field(min_length=1, max_length=253)
    namespace: str | None = None
    subject_kind: Literal["User", "Group"] = "User"
    timeout: float = Field(default=10, gt=0, le=120)

    @field_validator("role")
    @classmethod
    def _path_segment(cls, value: str) -> str:
        if value in (".", "..") or any(char in value for char in "/%") or value != value.strip():
            raise ValueError("is not a valid Kubernetes object name")
        return value

    @field_validator("namespace")
    @classmethod
    def _dns_label(cls, value: str | None) -> str | None:
        if value is not None and not _DNS_LABEL.fullmatch(value):
            raise ValueError("must be a DNS label: lower-case letters, digits and '-', at most 63 characters")
        return value

    @field_validator("server")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and (urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).hostname):
            raise ValueError("must be the API server's URL, such as https://k8s.example:6443")
        return value

    @model_validator(mode="after")
    def _one_way_in(self) -> KubernetesParams:
        if self.server or self.token:
            if not (self.server and self.token):
                raise ValueError("server and token go together")
            if self.kubeconfig or self.context:
                raise ValueError("give either server and token, or kubeconfig (and context), not both")
        elif self.ca_file or not self.verify_tls:
            raise ValueError("ca_file and verify_tls go with server; a kubeconfig carries its own TLS settings")
        if self.kind == "Role" and not self.namespace:
            raise ValueError("a Role lives in a namespace: set namespace (or bind a ClusterRole)")
        return self


@dataclass(frozen=True)
class _Scope:
    """Where bindings live: a namespace (RoleBindings) or the cluster (ClusterRoleBindings)."""

    namespace: str | None

    @property
    def resource(self) -> str:
        return "rolebindings" if self.namespace else "clusterrolebindings"

    @property
    def kind(self) -> str:
        return "RoleBinding" if self.namespace else "ClusterRoleBinding"

    def __str__(self) -> str:
        return f"in namespace {self.namespace}" if self.namespace else "across the cluster"


def binding_name(grant_id: str) -> str:
    """The binding's name: a DNS-1123 name, the same for every attempt at one grant."""
    return "breakglass-" + hashlib.sha256(grant_id.encode()).hexdigest()[:16]


def grant_label(grant_id: str) -> str:
    """The grant id as a label value: itself when it is one, else a hash of it."""
    if _LABEL_VALUE.fullmatch(grant_id):
        return grant_id
    return "sha256-" + hashlib.sha256(grant_id.encode()).hexdigest()[:40]


class KubernetesAdapter:
    name: ClassVar[str] = "kubernetes"
    Params: ClassVar[type[AdapterParams]] = KubernetesParams
    default_principal: ClassVar[str] = "{email}"

    def __init__(self, params: KubernetesParams) -> None:
        self.params = params
        self.scope = _Scope(params.namespace)
        self._client: client.ApiClient | None = None
        self._lock = threading.Lock()
        self._host = _display_host(params.server) if params.server else "the configured cluster"

    def __repr__(self) -> str:
        return f"KubernetesAdapter(host={self._host!r}, {self.params.kind}={self.params.role!r}, {self.scope})"

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def principal_problem(self, principal: str) -> str | None:
        if not principal.strip() or principal != principal.strip():
            return "Kubernetes names cannot be empty or begin or end with whitespace"
        if principal.lower().startswith("system:"):
            return "names starting with 'system:' are Kubernetes' own identities, which are never granted access"
        return None

    # -- grant and revoke -----------------------------------------------------------------------

    def grant(self, ctx: GrantContext) -> Receipt:
        problem = self.principal_problem(ctx.principal)
        if problem:
            raise AdapterError(f"cannot bind {ctx.principal!r}: {problem}", retryable=False)
        wanted = self._binding(ctx.principal, binding_name(ctx.grant_id), _labels(ctx), _annotations(ctx))
        name = wanted["metadata"]["name"]
        status, _ = self._bindings("create", self.scope, body=wanted, allow=(409,))
        if status == 409:
            self._put_back(wanted)
        else:
            log.info("grant %s: created %s %s %s", ctx.grant_id, self.scope.kind, name, self.scope)
        data = {"kind": self.scope.kind, "name": name, "namespace": self.scope.namespace}
        return Receipt(data=data, instructions=self._instructions(ctx))

    def revoke(self, ctx: GrantContext, receipt: Receipt) -> None:
        scope = _Scope(receipt.data["namespace"]) if "namespace" in receipt.data else self.scope
        if isinstance(receipt.data.get("subject"), dict):  # a holding found in a binding the bot did not make
            self._take_out(ctx, scope, str(receipt.data.get("name") or ""), receipt.data["subject"])
            return
        selector = ",".join(f"{key}={value}" for key, value in _labels(ctx).items())
        _, found = self._bindings("list", scope, label_selector=selector)
        names = {binding_name(ctx.grant_id), receipt.data.get("name") or binding_name(ctx.grant_id)}
        names |= {item["metadata"]["name"] for item in found.get("items") or []}
        for name in sorted(names):
            status, _ = self._bindings("delete", scope, name=name, allow=(404,))  # already gone is what we want
            if status != 404:
                log.info("revoke %s: deleted %s %s %s", ctx.grant_id, scope.kind, name, scope)

    def _take_out(self, ctx: GrantContext, scope: _Scope, name: str, subject: dict[str, Any]) -> None:
        """Remove one subject from a binding, deleting the binding only when no other subject is left."""
        status, found = self._bindings("read", scope, name=name, allow=(404,))
        if status == 404:
            return
        subjects = found.get("subjects") or []
        left = [s for s in subjects if not _is(s, subject)]
        if len(left) == len(subjects):
            return
        meta = found["metadata"]
        if left:
            body = found | {"subjects": left}
            self._bindings("replace", scope, name=name, body=body)
        else:
            preconditions = {"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]}
            self._bindings("delete", scope, name=name, body={"preconditions": preconditions}, allow=(404,))
        log.info("revoke %s: took %s out of %s %s %s", ctx.grant_id, subject.get("name"), scope.kind, name, scope)

    # -- verify and reconcile -------------------------------------------------------------------

    def verify(self, ctx: GrantContext, receipt: Receipt) -> bool:
        """Whether ``ctx.principal`` is still a subject of a binding this grant made (see the module docstring)."""
        data = receipt.data
        scope = _Scope(data["namespace"]) if "namespace" in data else self.scope
        if isinstance(data.get("subject"), dict):  # a holding in a binding made by hand: that subject there
            status, binding = self._bindings("read", scope, name=str(data.get("name") or "?"), allow=(404,))
            return status != 404 and _subject_in(binding, data["subject"])
        status, named = self._bindings("read", scope, name=data.get("name") or binding_name(ctx.grant_id), allow=(404,))
        _, labelled = self._bindings("list", scope, label_selector=f"{GRANT_LABEL}={grant_label(ctx.grant_id)}")
        bindings = ([named] if status != 404 else []) + (labelled.get("items") or [])
        return any(subject.get("name") == ctx.principal for b in bindings for subject in b.get("subjects") or [])

    def holdings(self, everything: bool) -> list[Holding]:
        """Who this resource's role is bound to in its scope; bindings made by hand only with ``everything``."""
        options: dict[str, Any] = {} if everything else {"label_selector": f"{MANAGED_BY}=breakglass"}
        _, listed = self._bindings("list", self.scope, **options)
        found = []
        for binding in listed.get("items") or []:
            ref = binding.get("roleRef") or {}
            if (ref.get("kind"), ref.get("name")) != (self.params.kind, self.params.role):
                continue
            meta = binding.get("metadata") or {}
            made = (meta.get("labels") or {}).get(MANAGED_BY) == "breakglass"
            where = {"kind": self.scope.kind, "name": meta.get("name"), "namespace": self.scope.namespace}
            for subject in binding.get("subjects") or []:
                if subject.get("kind") != self.params.subject_kind or not subject.get("name"):
                    continue
                data = where if made else where | {"subject": {"kind": subject["kind"], "name": subject["name"]}}
                found.append(Holding(str(subject["name"]), data, made_by_bot=made))
        return found

    def _put_back(self, wanted: dict[str, Any]) -> None:
        """The binding exists: keep it if it is as wanted, else make it so (a roleRef cannot change in place)."""
        name = wanted["metadata"]["name"]
        _, found = self._bindings("read", self.scope, name=name)
        if _same(found, wanted):
            return
        meta = found["metadata"]
        if found.get("roleRef") == wanted["roleRef"]:
            version = {"resourceVersion": meta["resourceVersion"]}
            self._bindings("replace", self.scope, name=name, body=wanted | {"metadata": wanted["metadata"] | version})
        else:
            preconditions = {"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]}
            self._bindings("delete", self.scope, name=name, body={"preconditions": preconditions})
            self._bindings("create", self.scope, body=wanted)
        log.warning("%s %s %s was not as granted; it was put back", self.scope.kind, name, self.scope)

    def _binding(
        self, principal: str, name: str, labels: dict[str, str], annotations: dict[str, str]
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "labels": labels, "annotations": annotations}
        if self.scope.namespace:
            meta["namespace"] = self.scope.namespace
        return {
            "apiVersion": f"{RBAC}/v1",
            "kind": self.scope.kind,
            "metadata": meta,
            "roleRef": {"apiGroup": RBAC, "kind": self.params.kind, "name": self.params.role},
            "subjects": [{"kind": self.params.subject_kind, "apiGroup": RBAC, "name": principal}],
        }

    def _instructions(self, ctx: GrantContext) -> str:
        until = as_utc(ctx.expires_at).strftime("%Y-%m-%d %H:%M UTC")
        who = f"the group `{ctx.principal}`" if self.params.subject_kind == "Group" else f"`{ctx.principal}`"
        can_i = "kubectl auth can-i --list" + (f" -n {self.scope.namespace}" if self.scope.namespace else "")
        return (
            f"The {self.params.kind} `{self.params.role}` is bound to {who} {self.scope} until {until}. "
            f"See what you may do with `{can_i}`."
        )

    # -- check ----------------------------------------------------------------------------------

    def check(self) -> list[str]:
        try:
            missing = [verb for verb in BINDING_VERBS if not self._may(verb, self.scope.resource)]
            if missing:
                return [
                    f"the bot may not {', '.join(missing)} {self.scope.resource} {self.scope}: grant it those verbs"
                ]
            # RBAC's escalation rule decides whether the bot may bind this role; a dry run asks the API server.
            trial = self._binding("breakglass-check", CHECK_BINDING, {MANAGED_BY: "breakglass"}, {})
            status, said = self._bindings("create", self.scope, body=trial, dry_run="All", allow=(403, 409))
            role = f"{self.params.kind} {self.params.role}"
            if status == 403:  # (409 means a binding by that name exists: RBAC allowed the bind)
                return [
                    f"the bot may not bind {role} {self.scope} ({_message(said, self._secret())}): RBAC lets it "
                    "bind only roles it has the `bind` verb on, or whose every permission it holds itself"
                ]
            return self._role_missing()
        except AdapterError as error:
            return [str(error)]

    def _may(self, verb: str, resource: str) -> bool:
        attributes = {"verb": verb, "group": RBAC, "resource": resource, "namespace": self.scope.namespace}
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        }
        authz = client.AuthorizationV1Api(self._api())
        _, answer = self._request(
            f"ask whether it may {verb} {resource}", authz.create_self_subject_access_review, review
        )
        return bool((answer.get("status") or {}).get("allowed"))

    def _role_missing(self) -> list[str]:
        """A binding to a role that does not exist grants nothing. Reading roles is optional: a 403 tells nothing."""
        rbac = client.RbacAuthorizationV1Api(self._api())
        role, kind = self.params.role, self.params.kind
        if kind == "Role":
            status, _ = self._request(
                f"read Role {role}", rbac.read_namespaced_role, role, self.scope.namespace, allow=(403, 404)
            )
        else:
            status, _ = self._request(f"read ClusterRole {role}", rbac.read_cluster_role, role, allow=(403, 404))
        if status == 404:
            where = f" in namespace {self.scope.namespace}" if kind == "Role" else ""
            return [f"the {kind} {role} does not exist{where}"]
        return []

    # -- the API --------------------------------------------------------------------------------

    def _bindings(
        self, action: str, scope: _Scope, *, name: str = "", body: dict[str, Any] | None = None, **options: Any
    ) -> tuple[int, dict[str, Any]]:
        """One call on RoleBindings or ClusterRoleBindings. Bodies are plain dicts, which every client version takes;
        its argument order is (name, namespace, body)."""
        rbac = client.RbacAuthorizationV1Api(self._api())
        suffix = "namespaced_role_binding" if scope.namespace else "cluster_role_binding"
        args: list[Any] = [arg for arg in (name, scope.namespace) if arg]
        if action in ("create", "replace"):
            args.append(body)
        elif body:
            options["body"] = body  # delete options
        target = name or (body or {}).get("metadata", {}).get("name", "")
        what = f"{action} {scope.kind}s" if action == "list" else f"{action} {scope.kind} {target}"
        return self._request(f"{what} {scope}", getattr(rbac, f"{action}_{suffix}"), *args, **options)

    def _request(
        self, action: str, call: Callable[..., Any], *args: Any, allow: tuple[int, ...] = (), **options: Any
    ) -> tuple[int, dict[str, Any]]:
        """(status, JSON answer) of one API call with the adapter's timeout; AdapterError unless 2xx or allowed."""
        try:
            response = call(*args, _request_timeout=self.params.timeout, _preload_content=False, **options)
        except ApiException as error:
            if error.status in allow:
                return error.status, _json(error.body)
            raise self._failure(action, error) from None
        except (urllib3.exceptions.HTTPError, ConfigException) as error:
            raise self._failure(action, error) from None
        try:
            return response.status, _json(response.data)
        finally:
            response.release_conn()

    def _api(self) -> client.ApiClient:
        with self._lock:
            if self._client is None:
                try:
                    configuration = _configuration(self.params)
                except (ConfigException, OSError, ValueError, TypeError) as error:
                    text = _redact(str(error), self._secret())
                    raise AdapterError(
                        f"cannot load the Kubernetes client configuration ({text})", retryable=False
                    ) from None
                self._host = _display_host(configuration.host)
                self._client = client.ApiClient(configuration)
            return self._client

    def _secret(self) -> str | None:
        return self.params.token.get_secret_value() if self.params.token else None

    def _failure(self, action: str, error: Exception) -> AdapterError:
        where = f"the Kubernetes API at {self._host}"
        if isinstance(error, ApiException):
            said = _message(_json(error.body), self._secret()) or error.reason or ""
            if error.status == 401:
                return AdapterError(f"{where} refused the bot's credentials (401 Unauthorized)", retryable=False)
            if error.status == 403:
                return AdapterError(f"{where} does not allow the bot to {action}: {said}", retryable=False)
            if not error.status:  # the client's own failure, such as TLS
                return AdapterError(f"could not {action} at {where}: {said.splitlines()[0]}", retryable=False)
            retryable = error.status >= 500 or error.status in (408, 409, 429)  # 409 here: a concurrent change
            return AdapterError(f"{where} answered {error.status} to '{action}': {said}", retryable=retryable)
        reason = getattr(error, "reason", None)
        if isinstance(reason, _NAME_RESOLUTION):
            return AdapterError(f"cannot resolve the host name of {where}", retryable=True)
        if isinstance(reason, urllib3.exceptions.NewConnectionError):  # (a subclass of the timeout below)
            return AdapterError(f"cannot connect to {where} (refused or unreachable)", retryable=True)
        if isinstance(error, urllib3.exceptions.TimeoutError) or isinstance(reason, urllib3.exceptions.TimeoutError):
            return AdapterError(f"{where} did not answer within {self.params.timeout:g}s to '{action}'", retryable=True)
        if isinstance(reason, urllib3.exceptions.SSLError):
            return AdapterError(f"TLS with {where} failed: check ca_file or the kubeconfig's CA", retryable=False)
        if isinstance(error, ConfigException):
            text = _redact(str(error), self._secret())
            return AdapterError(f"cannot refresh the bot's Kubernetes credentials ({text})", retryable=False)
        return AdapterError(f"cannot reach {where} ({type(reason or error).__name__})", retryable=True)


def _labels(ctx: GrantContext) -> dict[str, str]:
    return {MANAGED_BY: "breakglass", GRANT_LABEL: grant_label(ctx.grant_id)}  # never the principal: labels are narrow


def _annotations(ctx: GrantContext) -> dict[str, str]:
    return {
        "breakglass.dev/grant-id": ctx.grant_id,
        "breakglass.dev/principal": ctx.principal,
        "breakglass.dev/request": str(ctx.request_number),
        "breakglass.dev/resource": ctx.resource,
        "breakglass.dev/expires-at": as_utc(ctx.expires_at).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _configuration(params: KubernetesParams) -> client.Configuration:
    configuration = client.Configuration()
    if params.server and params.token:
        configuration.host = params.server.rstrip("/")
        configuration.api_key = {"BearerToken": params.token.get_secret_value()}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        configuration.ssl_ca_cert = params.ca_file
        configuration.verify_ssl = params.verify_tls
    elif not _in_cluster(params, configuration):
        path = params.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        config.load_kube_config(
            config_file=path, context=params.context, client_configuration=configuration, persist_config=False
        )
    configuration.retries = 0  # one attempt per call: the bot decides about retrying
    return configuration


def _in_cluster(params: KubernetesParams, configuration: client.Configuration) -> bool:
    """With no kubeconfig or context named, the pod's service account where there is one."""
    if params.kubeconfig or params.context or not os.environ.get("KUBERNETES_SERVICE_HOST"):
        return False
    try:
        config.load_incluster_config(client_configuration=configuration)
    except ConfigException:
        return False  # not in a pod after all, or one without a service account token
    return True


def _same(found: dict[str, Any], wanted: dict[str, Any]) -> bool:
    def subjects(binding: dict[str, Any]) -> list[tuple[Any, ...]]:
        return sorted(
            (s.get("kind"), s.get("apiGroup"), s.get("name"), s.get("namespace")) for s in binding.get("subjects") or []
        )

    meta, want = found.get("metadata") or {}, wanted["metadata"]
    return (
        found.get("roleRef") == wanted["roleRef"]
        and subjects(found) == subjects(wanted)
        and (meta.get("labels") or {}).items() >= want["labels"].items()
        and (meta.get("annotations") or {}).items() >= want["annotations"].items()
    )


def _is(subject: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return (subject.get("kind"), subject.get("name")) == (wanted.get("kind"), wanted.get("name"))


def _subject_in(binding: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return any(_is(subject, wanted) for subject in binding.get("subjects") or [])


def _json(raw: str | bytes | None) -> dict[str, Any]:
    try:
        parsed = json.loads(raw or b"{}")
    except ValueError:
        return {"message": raw.decode(errors="replace") if isinstance(raw, bytes) else raw}
    return parsed if isinstance(parsed, dict) else {}


def _message(status: dict[str, Any], secret: str | None) -> str:
    """What the API server said in a Status object, on one line, short, and without the token."""
    text = _redact(" ".join(str(status.get("message") or "").split()), secret)
    return text if len(text) <= _MAX_SNIPPET else text[: _MAX_SNIPPET - 1] + "…"


def _redact(text: str, secret: str | None) -> str:
    return redact(text, secret)


def _display_host(url: str | None) -> str:
    """Host and port only."""
    parts = urlsplit(url or "")
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or "?"
    return f"{host}:{port}" if port else host
