"""The emulator's REST semantics on top of kmock's store: discovery fixes, create/update/replace/delete/list,
the ``/scale`` subresource, optimistic concurrency and server-managed metadata (kmock fallbacks, overridden)."""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Mapping
from typing import Any

import kmock

from responder.testing.kube_json import (
    RESOURCES,
    ResourceSpec,
    api_version,
    check_precondition,
    fields_match,
    header,
    json_body,
    json_patch,
    k8s_error,
    labels_match,
    log_tail,
    merge_patch,
    now_stamp,
    parse_label_selector,
    scale_of,
    scaled,
    spec_part,
    status_split,
)

JsonDict = dict[str, Any]


class Served(kmock.KubernetesEmulator):
    _counter: int  # the global resourceVersion counter (set by the Emulator)
    logs: dict[tuple[str, str, str, bool], str]  # (namespace, pod, container, previous) -> log text (Emulator.set_log)
    # --- kmock fallbacks (overridden) -----------------------------------------------------------------

    async def _serve_version(self, request: Any) -> JsonDict:
        payload = await super()._serve_version(request)
        assert isinstance(payload, dict)
        if request.resource.group == "":
            payload["groupVersion"] = "v1"  # kmock reports "/v1"; kubectl and client-go reject that
        # kmock builds the list from sets: sorted, one answer for every run (clients and tests may index it).
        payload["resources"] = sorted(payload.get("resources", []), key=lambda entry: str(entry.get("name")))
        for entry in payload["resources"]:
            if entry["name"].endswith("/scale"):
                entry.update(kind="Scale", group="autoscaling", version="v1", verbs=["get", "patch", "update"])
        return payload

    async def _serve_fetch(self, request: Any) -> Any:
        async with self._lock:
            obj = self._live_raw(self._key(request))
        if request.subresource == "log":
            return self._pod_log(obj, request.params)
        return scale_of(obj) if request.subresource == "scale" else obj

    def _pod_log(self, pod: JsonDict, params: Mapping[str, str]) -> Any:
        """``pods/{name}/log`` as text, with the real API's 400s for a container it cannot choose or a previous
        instance it does not have."""
        meta = pod.get("metadata", {})
        name, containers = meta.get("name"), [c.get("name") for c in pod.get("spec", {}).get("containers", [])]
        container = params.get("container") or (containers[0] if len(containers) == 1 else None)
        if container not in containers:
            raise k8s_error(400, f"a valid container name must be given for pod {name}, choose one of: {containers}")
        # The API server parses booleans with Go's strconv.ParseBool; kubernetes_asyncio sends Python's "True".
        previous = params.get("previous", "") in ("1", "t", "T", "true", "TRUE", "True")
        key = (str(meta.get("namespace")), str(name), str(container), previous)
        if previous and key not in self.logs:
            raise k8s_error(400, f'previous terminated container "{container}" in pod "{name}" not found')
        tail, limit = params.get("tailLines"), params.get("limitBytes")
        data = log_tail(
            self.logs.get(key, ""),
            tail_lines=int(tail) if tail else None,
            limit_bytes=int(limit) if limit else None,
        )
        return kmock.Response(status=200, payload=data, headers={"Content-Type": "text/plain"})  # type: ignore[attr-defined]

    async def _serve_api(self, request: Any) -> JsonDict:
        payload = await super()._serve_api(request)
        assert isinstance(payload, dict)
        return {"apiVersion": "v1", **payload, "serverAddressByClientCIDRs": []}  # required by the client

    async def _serve_discovery(self, request: Any) -> Any:
        # kubernetes_asyncio asks discovery paths with a trailing slash ("/api/v1/", "/apis/apps/"); kmock's
        # own discovery routes match only the bare paths, and kmock parses these as lists of no resource.
        if re.fullmatch(r"/apis/[^/]+", str(request.url.path).rstrip("/")):
            return await self._serve_group(request)
        return await self._serve_version(request)

    async def _serve_list(self, request: Any) -> JsonDict:
        if request.resource.plural is None:
            result: JsonDict = await self._serve_discovery(request)
            return result
        resource = self._known_resource(request)
        terms = parse_label_selector(request.params.get("labelSelector", ""))
        async with self._lock:
            items = [
                self._live_raw(key)
                for key, obj in self._objects.items()
                if key[0] == request.resource and not obj.deleted
                if request.namespace is None or key[1] == request.namespace
            ]
        items = [item for item in items if labels_match(item.get("metadata", {}).get("labels") or {}, terms)]
        items = [item for item in items if fields_match(item, request.params.get("fieldSelector", ""))]
        kind = RESOURCES[resource].kind if resource in RESOURCES else "List"
        return {
            "apiVersion": api_version(resource),
            "kind": f"{kind}List",
            "metadata": {"resourceVersion": str(self._counter)},
            "items": items,
        }

    async def _serve_create(self, request: Any) -> Any:
        resource = self._known_resource(request)
        body = json_body(request)
        if not isinstance(body, dict):
            raise k8s_error(400, "the body of a create must be a JSON object")
        name = self._new_name(body)
        async with self._lock:
            key = (request.resource, request.namespace, name)
            if key in self._objects and not self._objects[key].deleted:
                raise k8s_error(409, f'{resource} "{name}" already exists', details={"name": name})
            metadata = {**(body.get("metadata") or {}), "resourceVersion": None}
            obj = self._stamp(resource, request.namespace, name, {**body, "metadata": metadata})
            await self._store(key, obj, event="ADDED")
        return kmock.Response(status=201, payload=obj)  # type: ignore[attr-defined]  # exported, not in __all__

    async def _serve_update(self, request: Any) -> JsonDict:
        resource = self._known_resource(request)
        async with self._lock:
            key = self._key(request)
            stored = self._live_raw(key)
            if request.subresource == "scale":
                return await self._patch_scale(key, stored, json_body(request))
            patched = self._patched(stored, request)
            has_status = "status" in RESOURCES.get(resource, ResourceSpec("", "")).subresources
            if request.subresource == "status" and not has_status:
                raise k8s_error(404, f"{resource} has no status subresource")
            if has_status:
                patched = status_split(stored, patched, status_only=request.subresource == "status")
            check_precondition(stored, patched, what=f'{resource} "{request.name}"')
            obj = self._stamp(resource, request.namespace, request.name, patched, previous=stored)
            await self._store(key, obj, event="MODIFIED")
        return obj

    async def _serve_replace(self, request: Any) -> JsonDict:
        resource = self._known_resource(request)
        body = json_body(request)
        if not isinstance(body, dict) or request.name is None:
            raise k8s_error(400, "a replace needs an object name in the URL and a JSON object body")
        async with self._lock:
            key = self._key(request)
            stored = self._live_raw(key)
            if request.subresource == "scale":
                return await self._replace_scale(key, stored, body)
            check_precondition(stored, body, what=f'{resource} "{request.name}"')
            self._check_name(body, request.name)
            if "status" in stored and "status" in RESOURCES.get(resource, ResourceSpec("", "")).subresources:
                body = {**body, "status": stored["status"]}  # status is owned by the /status subresource
            obj = self._stamp(resource, request.namespace, request.name, body, previous=stored)
            await self._store(key, obj, event="MODIFIED")
        return obj

    async def _serve_delete(self, request: Any) -> JsonDict:
        resource = self._known_resource(request)
        async with self._lock:
            key = self._key(request)
            stored = self._live_raw(key)
            self._objects[key].delete()
            self._counter += 1
            await self._buses[request.resource].put({"type": "DELETED", "object": stored})
        details = {"name": request.name, "kind": resource.rsplit("/", 1)[-1], "uid": stored["metadata"]["uid"]}
        return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success", "details": details}

    # --- the /scale subresource -----------------------------------------------------------------------

    async def _patch_scale(self, key: Any, stored: JsonDict, patch: Any) -> JsonDict:
        current = scale_of(stored)
        wanted = json_patch(current, patch) if isinstance(patch, list) else merge_patch(current, patch or {})
        return await self._replace_scale(key, stored, wanted)

    async def _replace_scale(self, key: Any, stored: JsonDict, wanted: JsonDict) -> JsonDict:
        check_precondition(stored, wanted, what=f'deployments.apps "{key[2]}"')
        replicas = (wanted.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise k8s_error(422, f"spec.replicas must be a non-negative integer, got {replicas!r}")
        obj = self._stamp("apps/v1/deployments", key[1], key[2], scaled(stored, replicas), previous=stored)
        await self._store(key, obj, event="MODIFIED")
        return scale_of(obj)

    # --- store internals (callers hold self._lock) -----------------------------------------------------

    def _key(self, request: Any) -> tuple[Any, str | None, str]:
        return (request.resource, request.namespace, request.name)

    def _known_resource(self, request: Any) -> str:
        resource = request.resource
        if resource is None or resource.plural is None:
            raise k8s_error(404, "the server could not find the requested resource")
        text = f"{resource.group}/{resource.version}/{resource.plural}".lstrip("/")
        if resource not in self._get_resources():
            raise k8s_error(404, f"the server could not find the requested resource ({text})")
        return text

    def _live_raw(self, key: Any) -> JsonDict:
        if key not in self._objects or self._objects[key].deleted:
            raise k8s_error(404, f'"{key[2]}" not found', details={"name": key[2]})
        obj = self._objects[key]
        if not obj.last.get("metadata", {}).get("resourceVersion"):
            # Stored behind our back (``emu.objects[...] = {...}``): stamp in place, without a new version.
            resource = f"{key[0].group}/{key[0].version}/{key[0].plural}".lstrip("/")
            obj.history[-1] = self._stamp(resource, key[1], key[2], obj.last.raw)
        return copy.deepcopy(obj.raw)

    async def _store(self, key: Any, obj: JsonDict, *, event: str) -> None:
        if key in self._objects:
            self._objects[key].history.append(obj)
        else:
            self._objects[key] = obj
        await self._buses[key[0]].put({"type": event, "object": copy.deepcopy(obj)})

    def _patched(self, stored: JsonDict, request: Any) -> JsonDict:
        content_type = header(request, "content-type")
        if "apply-patch" in content_type:
            raise k8s_error(415, "server-side apply is not supported by this emulator")
        patch = json_body(request)
        if isinstance(patch, list):
            return json_patch(stored, patch)
        if not isinstance(patch, dict):
            raise k8s_error(400, "a patch body must be a JSON object or a JSON patch array")
        return merge_patch(stored, patch)

    def _check_name(self, body: JsonDict, name: str) -> None:
        body_name = (body.get("metadata") or {}).get("name")
        if body_name not in (None, name):
            raise k8s_error(400, f"the name of the object ({body_name}) does not match the name in the URL")

    def _new_name(self, body: JsonDict) -> str:
        metadata = body.get("metadata") or {}
        name = metadata.get("name") or ""
        if not name and metadata.get("generateName"):
            name = f"{metadata['generateName']}{uuid.uuid4().hex[:5]}"
        if not name:
            raise k8s_error(422, "metadata.name or metadata.generateName is required")
        return str(name)

    def _stamp(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        body: Mapping[str, Any],
        *,
        previous: Mapping[str, Any] | None = None,
    ) -> JsonDict:
        """Fill server-managed fields; bump resourceVersion, and generation when the spec changed."""
        self._counter += 1
        obj = copy.deepcopy(dict(body))
        old_meta = (previous or {}).get("metadata", {})
        meta = {k: v for k, v in (obj.get("metadata") or {}).items() if v is not None}
        generation = old_meta.get("generation", 0)
        if previous is None or spec_part(previous) != spec_part(obj):
            generation += 1
        meta.update(
            name=name,
            uid=old_meta.get("uid") or meta.get("uid") or str(uuid.uuid4()),
            creationTimestamp=old_meta.get("creationTimestamp") or meta.get("creationTimestamp") or now_stamp(),
            resourceVersion=str(self._counter),
            generation=generation,
        )
        if namespace is not None:
            meta["namespace"] = namespace
        spec = RESOURCES.get(resource)
        obj.setdefault("apiVersion", api_version(resource))
        if spec is not None:
            obj.setdefault("kind", spec.kind)
        obj["metadata"] = meta
        return obj
