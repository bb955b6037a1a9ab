"""A local stand-in for the Kubernetes API server's RBAC, for the kubernetes adapter's tests.

Point the official client at it (``Configuration(host=standin.url, api_key={"BearerToken": token},
api_key_prefix={"BearerToken": "Bearer"})``). It keeps Roles, ClusterRoles, RoleBindings and ClusterRoleBindings
in memory and authorizes every request with them the way the API server's RBAC authorizer does:

- bearer tokens name identities (``add_token``); a missing or unknown token gets ``401``; members of
  ``system:masters`` may do anything, as on a real cluster;
- ``Impersonate-User`` / ``Impersonate-Group`` switch identity when the caller may ``impersonate`` those users
  and groups, as ``kubectl --as`` does;
- rules match verbs, API groups, resources and resource names, with ``*``; RoleBindings act in their namespace,
  ClusterRoleBindings everywhere; subjects are Users, Groups and ServiceAccounts;
- the escalation rule: a binding may be written only by someone with ``bind`` on its role or who already holds
  every permission the role grants; a role only with ``escalate`` on it or holding its rules;
- ``dryRun=All``, ``labelSelector`` (``=``, ``==``, ``!=``, ``key``, ``!key``), an immutable ``roleRef``,
  ``resourceVersion`` conflicts, and errors as ``Status`` objects;
- ``SelfSubjectAccessReview`` and ``SubjectAccessReview``, and ``GET /api/v1/namespaces/{ns}/pods``: an empty
  PodList when RBAC allows ``list pods``, else ``403``: something a principal can really use.

Not modelled: namespaces as objects, role aggregation, subresources, non-resource URLs, watch and patch.
``fail_next`` answers the next requests with a server error; ``stall_next`` holds answers back.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

RBAC = "rbac.authorization.k8s.io"
AUTHZ = "authorization.k8s.io"
SUPERUSERS = "system:masters"
KINDS = {"roles": "Role", "rolebindings": "RoleBinding", "clusterroles": "ClusterRole"}
KINDS["clusterrolebindings"] = "ClusterRoleBinding"
_RBAC_PATH = re.compile(
    r"/apis/rbac\.authorization\.k8s\.io/v1/(?:namespaces/(?P<ns>[^/]+)/)?"
    r"(?P<resource>roles|rolebindings|clusterroles|clusterrolebindings)(?:/(?P<name>[^/]+))?"
)
_REVIEW_PATH = re.compile(r"/apis/authorization\.k8s\.io/v1/(?P<kind>selfsubjectaccessreviews|subjectaccessreviews)")
_PODS_PATH = re.compile(r"/api/v1/namespaces/(?P<ns>[^/]+)/pods")
_LABEL_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"(?:[a-z0-9](?:[-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}")
_LABEL_VALUE = re.compile(rf"(?:{_LABEL_NAME})?")
_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed"}
_REASONS |= {409: "AlreadyExists", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError"}
_REASONS |= {503: "ServiceUnavailable"}


@dataclass(frozen=True)
class Identity:
    user: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Request:
    verb: str
    resource: str
    ns: str | None
    name: str | None
    who: Identity
    body: dict[str, Any]
    dry_run: bool

    @property
    def what(self) -> str:
        return f'{self.resource}.{RBAC} "{self.name}"'


@dataclass(frozen=True)
class KubeCall:
    method: str
    path: str
    user: str | None  # who the request acted as (after impersonation); None if it was not authenticated
    status: int


class KubeError(Exception):
    def __init__(self, code: int, message: str, reason: str | None = None, **details: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.details = code, reason or _REASONS.get(code, "Unknown"), details

    def status(self) -> dict[str, Any]:
        return _status(self.code, str(self), self.reason, **self.details)


def _status(code: int, message: str = "", reason: str = "", **details: str) -> dict[str, Any]:
    """A ``Status`` object, as the API server answers errors and deletions."""
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "details": details, "code": code}
    if code < 400:
        return body | {"status": "Success"}
    return body | {"status": "Failure", "message": message, "reason": reason}


class KubeStandIn:
    """RBAC API stand-in on 127.0.0.1 (ephemeral port), served from daemon threads."""

    def __init__(self, tokens: dict[str, Identity] | None = None) -> None:
        self._tokens = dict(tokens or {})
        self._objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (resource, namespace or "", name)
        self._versions = itertools.count(1)
        self._faults: list[int] = []
        self._stalls: list[float] = []
        self._calls: list[KubeCall] = []
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: _Server | None = None

    def __enter__(self) -> KubeStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> KubeStandIn:
        self._server = _Server(self)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            self._stopping.set()
            server.shutdown()
            server.server_close()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("KubeStandIn is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add_token(self, token: str, user: str, groups: tuple[str, ...] = ()) -> None:
        with self._lock:
            self._tokens[token] = Identity(user, tuple(groups))

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """The next ``n`` requests answer ``status`` (429 with ``Retry-After``) without acting."""
        with self._lock:
            self._faults += [status] * n

    def stall_next(self, n: int = 1, seconds: float = 1.0) -> None:
        """The next ``n`` requests wait ``seconds`` before they are acted on (a client may give up first)."""
        with self._lock:
            self._stalls += [seconds] * n

    @property
    def calls(self) -> list[KubeCall]:
        with self._lock:
            return list(self._calls)

    def objects(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Stored objects of ``resource`` (in ``namespace``, for namespaced ones), as JSON copies."""
        with self._lock:
            found = [o for (r, ns, _), o in self._objects.items() if r == resource and ns == (namespace or "")]
            return json.loads(json.dumps(found))

    def allowed(
        self, who: Identity, verb: str, group: str, resource: str, namespace: str | None = None, name: str | None = None
    ) -> str | None:
        """Why RBAC allows the request (the binding that does), or None when it does not."""
        if SUPERUSERS in who.groups:
            return f"member of {SUPERUSERS}"
        with self._lock:
            for (resource_, ns, _), binding in self._objects.items():
                if resource_ == "clusterrolebindings" or (resource_ == "rolebindings" and ns == namespace):
                    if not any(_is_subject(s, who, ns) for s in binding.get("subjects") or []):
                        continue
                    ref = binding["roleRef"]
                    if any(_rule_matches(r, verb, group, resource, name) for r in self._rules(ref, ns) or []):
                        where = f"{binding['metadata']['name']}/{ns}" if ns else binding["metadata"]["name"]
                        return f'RBAC: allowed by {KINDS[resource_]} "{where}" of {ref["kind"]} "{ref["name"]}"'
        return None

    def _rules(self, ref: dict[str, Any], namespace: str) -> list[dict[str, Any]] | None:
        role = self._objects.get(
            ("roles", namespace, ref["name"]) if ref["kind"] == "Role" else ("clusterroles", "", ref["name"])
        )
        return None if role is None else role.get("rules") or []

    def _holds(self, who: Identity, rules: list[dict[str, Any]], namespace: str | None) -> bool:
        for rule in rules:
            if rule.get("nonResourceURLs") and SUPERUSERS not in who.groups:
                return False
            combos = itertools.product(
                rule.get("verbs") or [],
                rule.get("apiGroups") or [],
                rule.get("resources") or [],
                rule.get("resourceNames") or [None],
            )
            if not all(self.allowed(who, *combo[:3], namespace, combo[3]) for combo in combos):
                return False
        return True

    # -- request handling (server threads) -------------------------------------------------------

    def _answer(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, Any], float]:
        with self._lock:
            stall = self._stalls.pop(0) if self._stalls else 0.0
        if stall and self._stopping.wait(stall):
            return 503, {}, 0.0
        who: Identity | None = None
        try:
            with self._lock:
                if self._faults:
                    status = self._faults.pop(0)
                    raise KubeError(status, f"injected fault ({_REASONS.get(status, status)})")
                who = self._authenticate(headers)
                code, payload = self._route(method, path, who, json.loads(body) if body else {})
        except KubeError as error:
            code, payload = error.code, error.status()
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            code, payload = 400, KubeError(400, f"malformed request: {error!r}").status()
        with self._lock:
            self._calls.append(KubeCall(method, path, who.user if who else None, code))
        return code, payload, 1.0 if code == 429 else 0.0

    def _authenticate(self, headers: Any) -> Identity:
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        who = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if who is None:
            raise KubeError(401, "Unauthorized")
        who = Identity(who.user, (*who.groups, "system:authenticated"))
        user, groups = headers.get("Impersonate-User"), headers.get_all("Impersonate-Group") or []
        if user is None and groups:
            raise KubeError(400, "impersonating groups requires impersonating a user")
        if user is None:
            return who
        for resource, name in [("users", user), *(("groups", group) for group in groups)]:
            if not self.allowed(who, "impersonate", "", resource, None, name):
                raise _forbidden(who, "impersonate", "", resource, None, name)
        return Identity(user, (*groups, "system:authenticated"))

    def _route(self, method: str, path: str, who: Identity, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        url = urlsplit(path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        match = _RBAC_PATH.fullmatch(url.path)
        if match and (match["ns"] is None or not match["resource"].startswith("cluster")):
            verbs = {"GET": "get" if match["name"] else "list", "POST": "create", "PUT": "update", "DELETE": "delete"}
            verb = verbs.get(method)
            if verb is None or (verb in ("create", "list")) == bool(match["name"]):
                raise KubeError(405, f"{method} is not supported here")
            name = match["name"] and unquote(match["name"])
            request = _Request(verb, match["resource"], match["ns"], name, who, body, query.get("dryRun") == "All")
            if request.ns is None and request.resource in ("roles", "rolebindings") and verb != "list":
                raise KubeError(404, "the server could not find the requested resource")
            if not self.allowed(who, verb, RBAC, request.resource, request.ns, name):
                raise _forbidden(who, verb, RBAC, request.resource, request.ns, name)
            if verb == "list":
                return 200, self._list(request, query.get("labelSelector", ""))
            if verb in ("get", "delete"):
                return 200, self._get_or_delete(request)
            return self._write(request)
        if (match := _REVIEW_PATH.fullmatch(url.path)) and method == "POST":
            return 201, self._review(match["kind"], who, body)
        if (match := _PODS_PATH.fullmatch(url.path)) and method == "GET":
            if not self.allowed(who, "list", "", "pods", match["ns"]):
                raise _forbidden(who, "list", "", "pods", match["ns"])
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []}
        raise KubeError(404, "the server could not find the requested resource")

    def _list(self, request: _Request, selector: str) -> dict[str, Any]:
        terms = _selector(selector)
        items = [
            {key: value for key, value in stored.items() if key not in ("kind", "apiVersion")}
            for (resource, ns, _), stored in self._objects.items()
            if resource == request.resource
            and request.ns in (None, ns)
            and _selected(stored["metadata"].get("labels") or {}, terms)
        ]
        kind, meta = f"{KINDS[request.resource]}List", {"resourceVersion": str(next(self._versions))}
        return {"kind": kind, "apiVersion": f"{RBAC}/v1", "metadata": meta, "items": items}

    def _get_or_delete(self, request: _Request) -> dict[str, Any]:
        key = (request.resource, request.ns or "", request.name or "")
        stored = self._objects.get(key)
        if stored is None:
            raise KubeError(404, f"{request.what} not found", name=key[2], group=RBAC, kind=request.resource)
        if request.verb == "get":
            return stored
        for field, wanted in (request.body.get("preconditions") or {}).items():
            if wanted is not None and stored["metadata"].get(field) != wanted:
                raise KubeError(409, f"Precondition failed for {request.what}: {field} does not match", "Conflict")
        if not request.dry_run:
            del self._objects[key]
        return _status(200, name=key[2], group=RBAC, kind=request.resource, uid=stored["metadata"]["uid"])

    def _write(self, request: _Request) -> tuple[int, dict[str, Any]]:
        resource, ns, body, who = request.resource, request.ns, request.body, request.who
        meta = dict(body.get("metadata") or {})
        what = f'{resource}.{RBAC} "{meta.get("name")}"'
        if request.name is not None and meta.get("name") != request.name:
            raise KubeError(400, "the name of the object does not match the name on the URL")
        if meta.get("namespace", ns) != ns:
            raise KubeError(400, "the namespace of the provided object does not match the namespace on the request")
        _validate(resource, body, what)
        key = (resource, ns or "", meta["name"])
        stored = self._objects.get(key)
        if stored is None and request.verb == "update" and not self.allowed(who, "create", RBAC, resource, ns):
            raise _forbidden(who, "create", RBAC, resource, ns)  # an update of nothing creates it
        if stored is not None and request.verb == "update":
            if meta.get("resourceVersion") not in (None, stored["metadata"]["resourceVersion"]):
                raise KubeError(
                    409, f"Operation cannot be fulfilled on {what}: the object has been modified", "Conflict"
                )
            if resource.endswith("bindings") and body["roleRef"] != stored["roleRef"]:
                raise KubeError(422, f"{what} is invalid: roleRef: Invalid value: cannot change roleRef")
        lacking = self._lacking(request, meta["name"])
        if lacking:
            raise KubeError(
                403,
                f'{what} is forbidden: user "{who.user}" (groups={list(who.groups)}) is attempting to grant RBAC '
                f"permissions not currently held (it needs {lacking}, or every permission the role grants)",
            )
        if stored is not None and request.verb == "create":  # after the escalation check, as the API server does
            raise KubeError(409, f"{what} already exists", name=meta["name"], group=RBAC, kind=resource)
        old = stored["metadata"] if stored else {"uid": str(uuid.uuid4()), "creationTimestamp": _now()}
        meta |= {"uid": old["uid"], "creationTimestamp": old["creationTimestamp"]}
        meta |= {"resourceVersion": str(next(self._versions))} | ({"namespace": ns} if ns else {})
        obj = body | {"kind": KINDS[resource], "apiVersion": f"{RBAC}/v1", "metadata": meta}
        if not request.dry_run:
            self._objects[key] = obj
        return (200 if stored else 201), obj

    def _lacking(self, request: _Request, name: str) -> str | None:
        """RBAC's escalation rule: what the caller lacks to write this binding or role, or None."""
        who, ns, body = request.who, request.ns, request.body
        if request.resource.endswith("bindings"):
            ref = body["roleRef"]
            if self.allowed(who, "bind", RBAC, f"{ref['kind'].lower()}s", ns, ref["name"]):
                return None
            rules = self._rules(ref, ns or "")
            held = rules is not None and self._holds(who, rules, ns)
            return None if held else f"bind on {ref['kind']} {ref['name']!r}"
        if self.allowed(who, "escalate", RBAC, request.resource, ns, name) or self._holds(
            who, body.get("rules") or [], ns
        ):
            return None
        return f"escalate on {KINDS[request.resource]} {name!r}"

    def _review(self, kind: str, who: Identity, body: dict[str, Any]) -> dict[str, Any]:
        spec = body.get("spec") or {}
        if kind == "subjectaccessreviews":
            if not self.allowed(who, "create", AUTHZ, kind):
                raise _forbidden(who, "create", AUTHZ, kind, None)
            who = Identity(spec.get("user") or "", tuple(spec.get("groups") or ()))
        attrs = spec.get("resourceAttributes")
        if attrs is None:
            why = f"member of {SUPERUSERS}" if SUPERUSERS in who.groups else None
        else:
            why = self.allowed(
                who,
                attrs.get("verb") or "",
                attrs.get("group") or "",
                attrs.get("resource") or "",
                attrs.get("namespace") or None,
                attrs.get("name") or None,
            )
        status = {"allowed": why is not None} | ({"reason": why} if why else {})
        return body | {"metadata": body.get("metadata") or {}, "status": status}


def _is_subject(subject: dict[str, Any], who: Identity, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "ServiceAccount":
        return who.user == f"system:serviceaccount:{subject.get('namespace') or binding_namespace}:{name}"
    return (kind == "User" and name == who.user) or (kind == "Group" and name in who.groups)


def _rule_matches(rule: dict[str, Any], verb: str, group: str, resource: str, name: str | None) -> bool:
    def has(field: str, value: str) -> bool:
        return value in (rule.get(field) or []) or "*" in (rule.get(field) or [])

    names = rule.get("resourceNames") or []
    return (
        has("verbs", verb) and has("apiGroups", group) and has("resources", resource) and (not names or name in names)
    )


def _forbidden(
    who: Identity, verb: str, group: str, resource: str, ns: str | None, name: str | None = None
) -> KubeError:
    what = f"{resource}.{group}" if group else resource
    what += f' "{name}"' if name else ""
    scope = f'in the namespace "{ns}"' if ns else "at the cluster scope"
    message = (
        f'{what} is forbidden: User "{who.user}" cannot {verb} resource "{resource}" in API group "{group}" {scope}'
    )
    return KubeError(403, message, group=group, kind=resource, **({"name": name} if name else {}))


def _validate(resource: str, body: dict[str, Any], what: str) -> None:
    meta = body.get("metadata") or {}
    problems = []
    if not meta.get("name") or "/" in meta["name"] or "%" in meta["name"] or meta["name"] in (".", ".."):
        problems.append("metadata.name: Invalid value: not a valid path segment name")
    for key, value in (meta.get("labels") or {}).items():
        if not _LABEL_KEY.fullmatch(key) or not isinstance(value, str) or not _LABEL_VALUE.fullmatch(value):
            problems.append(f"metadata.labels: Invalid value: {key!r}: {value!r}")
    if resource.endswith("bindings"):
        ref = body.get("roleRef") or {}
        kinds = ("ClusterRole",) if resource == "clusterrolebindings" else ("Role", "ClusterRole")
        if ref.get("apiGroup") != RBAC or ref.get("kind") not in kinds or not ref.get("name"):
            problems.append(f"roleRef: Invalid value: {ref!r}")
        for subject in body.get("subjects") or []:
            if subject.get("kind") not in ("User", "Group", "ServiceAccount") or not subject.get("name"):
                problems.append(f"subjects: Invalid value: {subject!r}")
    if problems:
        raise KubeError(422, f"{what} is invalid: {'; '.join(problems)}")


def _selector(text: str) -> list[tuple[str, str | None, str]]:
    """``key=value``, ``key==value``, ``key!=value``, ``key`` and ``!key`` terms, comma-separated."""
    terms = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        found = re.fullmatch(r"(!?)([^=!]+)(?:(==|=|!=)(.*))?", part)
        if found is None:
            raise KubeError(400, f"unable to parse requirement: {part!r}")
        negate, key, op, value = found.groups()
        terms.append((key.strip(), "absent" if negate else op, (value or "").strip()))
    return terms


def _selected(labels: dict[str, str], terms: list[tuple[str, str | None, str]]) -> bool:
    def holds(key: str, op: str | None, value: str) -> bool:
        if op in (None, "absent"):
            return (key in labels) == (op is None)
        return (labels.get(key) == value) == (op != "!=")

    return all(holds(*term) for term in terms)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, standin: KubeStandIn) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.standin = standin


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, payload, retry_after = self.server.standin._answer(self.command, self.path, self.headers, body)
        data = json.dumps(payload).encode()
        with contextlib.suppress(ConnectionError):  # the client gave up waiting
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if retry_after:
                self.send_header("Retry-After", str(int(retry_after)))
            self.end_headers()
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle
