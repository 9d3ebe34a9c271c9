"""Kubernetes API semantics as plain functions, for the emulator: JSON merge and JSON patches, label selectors,
the Scale of a Deployment, resourceVersion preconditions, API paths and Status errors."""

from __future__ import annotations

import copy
import datetime
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import aiohttp.web
import kmock

JsonDict = dict[str, Any]


def k8s_error(status: int, message: str, *, details: JsonDict | None = None) -> Exception:
    reason = STATUS_REASONS.get(status, "Unknown")
    details = details or {"causes": []}  # never empty: kmock would put a server traceback there
    return kmock.KubernetesError(status=status, reason=reason, message=message, details=details)


def now_stamp() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(base: Mapping[str, Any], patch: Mapping[str, Any]) -> JsonDict:
    """RFC 7386 merge patch (also used for strategic merge): dicts merge recursively, ``None`` deletes."""
    result = dict(copy.deepcopy(base))
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merge_patch(result[key], value)
        elif isinstance(value, Mapping):
            result[key] = merge_patch({}, value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise k8s_error(422, f"invalid JSON pointer: {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]]


def _container(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def _json_patch_op(doc: Any, op: Mapping[str, Any]) -> None:
    *parents, last = _pointer(str(op.get("path", "")))
    target = _container(doc, parents)
    kind = op.get("op")
    if kind == "test":
        current = target[int(last)] if isinstance(target, list) else target.get(last)
        if current != op.get("value"):
            raise k8s_error(422, f"JSON patch test failed at {op.get('path')!r}")
    elif kind == "remove":
        del target[int(last) if isinstance(target, list) else last]
    elif kind in ("add", "replace") and isinstance(target, list):
        index = len(target) if last == "-" else int(last)
        if kind == "add":
            target.insert(index, copy.deepcopy(op.get("value")))
        else:
            target[index] = copy.deepcopy(op.get("value"))
    elif kind in ("add", "replace"):
        target[last] = copy.deepcopy(op.get("value"))
    else:
        raise k8s_error(422, f"unsupported JSON patch operation: {kind!r}")


def json_patch(base: Mapping[str, Any], ops: Iterable[Mapping[str, Any]]) -> JsonDict:
    """RFC 6902 JSON patch, the simple operations (add, replace, remove, test)."""
    doc: JsonDict = copy.deepcopy(dict(base))
    try:
        for op in ops:
            _json_patch_op(doc, op)
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise k8s_error(422, f"JSON patch cannot be applied: {exc!r}") from exc
    return doc


_SELECTOR_TERM = re.compile(r"^\s*(?P<neg>!)?\s*(?P<key>[\w./-]+)\s*(?:(?P<op>==|!=|=)\s*(?P<value>[\w.-]*))?\s*$")
_SET_TERM = re.compile(r"^\s*(?P<key>[\w./-]+)\s+(?P<op>in|notin)\s+\((?P<values>[\w.,\s-]*)\)\s*$")
Term = tuple[str, str, "str | frozenset[str] | None"]


def _split_terms(selector: str) -> list[str]:
    """Split on the commas between terms, not those inside a set (``a in (b,c),d``)."""
    return [part.strip() for part in re.split(r",(?![^(]*\))", selector) if part.strip()]


def parse_label_selector(selector: str) -> list[Term]:
    """Parse ``a=b,c!=d,e,!f,g in (h,i),j notin (k)`` into (key, op, value) terms; op is one of
    ``= != exists !exists in notin`` (the set operators carry a frozenset of values)."""
    terms: list[Term] = []
    for raw in _split_terms(selector):
        found = _SET_TERM.match(raw)
        if found is not None:
            values = frozenset(v.strip() for v in found["values"].split(",") if v.strip())
            terms.append((found["key"], found["op"], values))
            continue
        match = _SELECTOR_TERM.match(raw)
        if match is None or (match["neg"] and match["op"]):
            raise k8s_error(400, f"unsupported label selector term: {raw!r}")
        if match["op"]:
            terms.append((match["key"], "!=" if match["op"] == "!=" else "=", match["value"]))
        else:
            terms.append((match["key"], "!exists" if match["neg"] else "exists", None))
    return terms


def labels_match(labels: Mapping[str, str], terms: Iterable[Term]) -> bool:
    """Whether ``labels`` satisfy every selector term."""
    return all(_term_holds(labels, key=key, op=op, value=value) for key, op, value in terms)


def _term_holds(labels: Mapping[str, str], *, key: str, op: str, value: str | frozenset[str] | None) -> bool:
    if op == "exists":
        return key in labels
    if op == "!exists":
        return key not in labels
    if isinstance(value, frozenset):
        return (labels.get(key) in value) == (op == "in")  # notin also matches objects without the label
    return (labels.get(key) == value) == (op == "=")


def fields_match(obj: Mapping[str, Any], selector: str) -> bool:
    """A ``fieldSelector`` (``involvedObject.name=x,type!=Normal``): dotted paths compared as strings; the
    emulator takes any path, where the real API knows a few per resource."""
    for raw in _split_terms(selector):
        match = re.fullmatch(r"\s*([\w.]+)\s*(==|!=|=)\s*(.*?)\s*", raw)
        if match is None:
            raise k8s_error(400, f"unsupported field selector term: {raw!r}")
        found: Any = obj
        for part in match[1].split("."):
            found = found.get(part) if isinstance(found, Mapping) else None
        if ("" if found is None else str(found)) == match[3]:
            if match[2] == "!=":
                return False
        elif match[2] != "!=":
            return False
    return True


def scale_of(deployment: Mapping[str, Any]) -> JsonDict:
    """The ``autoscaling/v1`` Scale view of a Deployment, as the real ``/scale`` endpoint serves it."""
    meta = deployment.get("metadata", {})
    spec = deployment.get("spec", {})
    match_labels = spec.get("selector", {}).get("matchLabels", {})
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {key: meta[key] for key in ("name", "namespace", "uid", "resourceVersion") if key in meta},
        "spec": {"replicas": spec.get("replicas", 1)},
        "status": {
            "replicas": deployment.get("status", {}).get("replicas", 0),
            "selector": ",".join(f"{key}={value}" for key, value in sorted(match_labels.items())),
        },
    }


def scaled(deployment: Mapping[str, Any], replicas: int) -> JsonDict:
    # An instantly converged Deployment controller: status follows spec at once.
    status = dict(deployment.get("status", {}))
    for key in ("replicas", "readyReplicas", "availableReplicas", "updatedReplicas"):
        status[key] = replicas
    return merge_patch(deployment, {"spec": {"replicas": replicas}, "status": status})


def log_tail(text: str, *, tail_lines: int | None, limit_bytes: int | None) -> bytes:
    """What the kubelet serves for ``tailLines`` and ``limitBytes``: the last lines, then at most that many bytes
    counted from their start (so a limit cuts the newest lines, possibly inside a multi-byte character)."""
    lines = text.splitlines(keepends=True)
    if tail_lines is not None:
        lines = lines[-tail_lines:] if tail_lines > 0 else []
    data = "".join(lines).encode()
    return data if limit_bytes is None else data[:limit_bytes]


def spec_part(obj: Mapping[str, Any]) -> JsonDict:
    return {key: value for key, value in obj.items() if key not in ("metadata", "status")}


def check_precondition(stored: Mapping[str, Any], wanted: Mapping[str, Any], *, what: str) -> None:
    """Optimistic concurrency: a resourceVersion in the request must equal the stored one."""
    wanted_rv = (wanted.get("metadata") or {}).get("resourceVersion")
    stored_rv = stored.get("metadata", {}).get("resourceVersion")
    if wanted_rv not in (None, "") and wanted_rv != stored_rv:
        message = (
            f"Operation cannot be fulfilled on {what}: the object has been modified; "
            "please apply your changes to the latest version and try again"
        )
        raise k8s_error(409, message)


class ParsedPath(NamedTuple):
    resource: str | None
    namespace: str | None
    name: str | None
    subresource: str | None


_PATH = re.compile(
    r"^/(?:api/(?P<cv>[^/]+)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>.+))?$"
)


def parse_path(path: str) -> ParsedPath:
    match = _PATH.match(path)
    if match is None:
        return ParsedPath(None, None, None, None)
    prefix = match["cv"] or f"{match['group']}/{match['version']}"
    return ParsedPath(f"{prefix}/{match['plural']}", match["ns"], match["name"], match["sub"])


def status_split(stored: JsonDict, patched: JsonDict, *, status_only: bool) -> JsonDict:
    """A write to a kind with a status subresource, as the API server applies it: through ``/status`` only the
    status changes (the patch's resourceVersion precondition still counts), through the object itself everything
    but the status."""
    if status_only:
        result = {**stored, "status": patched.get("status")}
        precondition = (patched.get("metadata") or {}).get("resourceVersion")
        result["metadata"] = {**stored["metadata"], "resourceVersion": precondition}
    else:
        result = {**patched, "status": stored.get("status")}
    if result["status"] is None:
        del result["status"]
    return result


class ResourceSpec(NamedTuple):
    kind: str
    singular: str
    subresources: frozenset[str] = frozenset()


# The resources the responder, its leader election and the demo use; all namespaced.
RESOURCES: Mapping[str, ResourceSpec] = {
    "apps/v1/deployments": ResourceSpec("Deployment", "deployment", frozenset({"scale", "status"})),
    "v1/pods": ResourceSpec("Pod", "pod", frozenset({"log", "status"})),
    "networking.k8s.io/v1/ingresses": ResourceSpec("Ingress", "ingress", frozenset({"status"})),
    "v1/events": ResourceSpec("Event", "event"),
    "events.k8s.io/v1/events": ResourceSpec("Event", "event"),
    "coordination.k8s.io/v1/leases": ResourceSpec("Lease", "lease"),
    "gateway.networking.k8s.io/v1/httproutes": ResourceSpec("HTTPRoute", "httproute", frozenset({"status"})),
    "networking.istio.io/v1/virtualservices": ResourceSpec("VirtualService", "virtualservice", frozenset({"status"})),
    "argoproj.io/v1alpha1/rollouts": ResourceSpec("Rollout", "rollout", frozenset({"status"})),
}
VERBS = frozenset({"get", "list", "watch", "create", "update", "patch", "delete"})
STATUS_REASONS: Mapping[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Gone",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def api_version(resource: str) -> str:
    return resource.rsplit("/", 1)[0]


def header(request: Any, name: str) -> str:
    return next((str(v) for k, v in request.headers.items() if k.lower() == name), "")


def json_or_text(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return body.decode("utf-8", errors="replace")


def json_body(request: Any) -> Any:
    try:
        return json.loads(request.body) if request.body else None
    except ValueError as exc:
        raise k8s_error(400, f"the request body is not valid JSON: {exc}") from exc


def client_gone(request: Any) -> bool:
    transport = request._raw_request.transport if request._raw_request is not None else None
    return transport is None or transport.is_closing()


def drop(request: Any) -> aiohttp.web.StreamResponse:
    """Abort the TCP connection: the client sees a reset/disconnect instead of a response."""
    transport = request._raw_request.transport if request._raw_request is not None else None
    if transport is not None:
        transport.abort()
    return aiohttp.web.Response(status=500)  # never delivered: the connection is gone
