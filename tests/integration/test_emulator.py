"""The Kubernetes API emulator, exercised through the real kubernetes_asyncio client (and raw HTTP) on loopback."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.leaderelection.leaderelectionrecord import LeaderElectionRecord
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock

from responder.testing.emulator import Emulator, parse_label_selector, run_emulator, sample_canary_objects

NS = "shop"
CANARY = "checkout-canary"
MERGE = "application/merge-patch+json"
DEPLOYMENTS = "apps/v1/deployments"


@pytest.fixture
async def served() -> AsyncIterator[tuple[Emulator, str]]:
    async with run_emulator(sample_canary_objects()) as pair:
        yield pair


@pytest.fixture
def emu(served: tuple[Emulator, str]) -> Emulator:
    return served[0]


@pytest.fixture
async def api(served: tuple[Emulator, str]) -> AsyncIterator[client.ApiClient]:
    async with client.ApiClient(client.Configuration(host=served[1])) as api_client:
        yield api_client


@pytest.fixture
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture
async def http(served: tuple[Emulator, str]) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=served[1]) as session:
        yield session


def status_body(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    return body


# --- server-managed metadata ----------------------------------------------------------------------------


async def test_objects_get_server_managed_metadata(apps: client.AppsV1Api) -> None:
    stable = await apps.read_namespaced_deployment("checkout", NS)
    canary = await apps.read_namespaced_deployment(CANARY, NS)
    assert stable.metadata.uid and canary.metadata.uid and stable.metadata.uid != canary.metadata.uid
    assert stable.metadata.creation_timestamp is not None
    assert stable.metadata.generation == 1
    assert int(canary.metadata.resource_version) > int(stable.metadata.resource_version)


async def test_mutations_bump_resource_version_and_spec_changes_bump_generation(apps: client.AppsV1Api) -> None:
    before = await apps.read_namespaced_deployment(CANARY, NS)
    annotated = await apps.patch_namespaced_deployment(
        CANARY, NS, {"metadata": {"annotations": {"a": "b"}}}, _content_type=MERGE
    )
    respec = await apps.patch_namespaced_deployment(CANARY, NS, {"spec": {"paused": True}}, _content_type=MERGE)
    rvs = [int(d.metadata.resource_version) for d in (before, annotated, respec)]
    assert rvs == sorted(set(rvs))
    assert [d.metadata.generation for d in (before, annotated, respec)] == [1, 1, 2]
    assert respec.metadata.uid == before.metadata.uid
    assert respec.spec.replicas == 2  # merged, not replaced


async def test_objects_stored_directly_through_kmock_are_stamped_on_read(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    emu.objects[DEPLOYMENTS, NS, "raw"] = {"metadata": {"name": "raw", "namespace": NS}, "spec": {"replicas": 1}}
    async with http.get(f"/apis/apps/v1/namespaces/{NS}/deployments/raw") as response:
        raw = await response.json()
    assert raw["metadata"]["resourceVersion"] and raw["metadata"]["uid"] and raw["kind"] == "Deployment"


# --- optimistic concurrency -----------------------------------------------------------------------------


async def test_merge_patch_with_stale_resource_version_is_a_conflict(apps: client.AppsV1Api) -> None:
    current = await apps.read_namespaced_deployment(CANARY, NS)
    await apps.patch_namespaced_deployment(CANARY, NS, {"metadata": {"labels": {"x": "1"}}}, _content_type=MERGE)
    stale = {"metadata": {"resourceVersion": current.metadata.resource_version, "labels": {"x": "2"}}}
    with pytest.raises(ApiException) as info:
        await apps.patch_namespaced_deployment(CANARY, NS, stale, _content_type=MERGE)
    assert info.value.status == 409
    body = status_body(info.value)
    assert body["kind"] == "Status" and body["reason"] == "Conflict" and body["code"] == 409
    assert "the object has been modified" in body["message"]


async def test_patch_with_current_resource_version_succeeds(apps: client.AppsV1Api) -> None:
    current = await apps.read_namespaced_deployment(CANARY, NS)
    body = {"metadata": {"resourceVersion": current.metadata.resource_version, "labels": {"x": "1"}}}
    patched = await apps.patch_namespaced_deployment(CANARY, NS, body, _content_type=MERGE)
    assert patched.metadata.labels["x"] == "1"
    assert int(patched.metadata.resource_version) > int(current.metadata.resource_version)


async def test_strategic_merge_patch_is_a_recursive_merge(apps: client.AppsV1Api) -> None:
    # A dict body without an explicit content type goes as strategic-merge-patch+json.
    patched = await apps.patch_namespaced_deployment(CANARY, NS, {"metadata": {"labels": {"x": "1"}}})
    assert patched.metadata.labels == {"app": "checkout", "version": "canary", "x": "1"}


async def test_json_patch_applies_and_honours_resource_version(apps: client.AppsV1Api) -> None:
    current = await apps.read_namespaced_deployment(CANARY, NS)
    ops = [{"op": "replace", "path": "/spec/replicas", "value": 3}]
    patched = await apps.patch_namespaced_deployment(CANARY, NS, ops)
    assert patched.spec.replicas == 3
    stale = [{"op": "replace", "path": "/metadata/resourceVersion", "value": current.metadata.resource_version}]
    with pytest.raises(ApiException) as info:
        await apps.patch_namespaced_deployment(CANARY, NS, stale)
    assert info.value.status == 409


async def test_put_replaces_and_a_stale_put_conflicts(emu: Emulator, apps: client.AppsV1Api) -> None:
    current = await apps.read_namespaced_deployment(CANARY, NS)
    current.metadata.labels = {"app": "checkout", "version": "canary", "replaced": "yes"}
    replaced = await apps.replace_namespaced_deployment(CANARY, NS, current)
    assert replaced.metadata.labels["replaced"] == "yes"
    assert emu.get_object(DEPLOYMENTS, NS, CANARY)["metadata"]["labels"]["replaced"] == "yes"
    with pytest.raises(ApiException) as info:
        await apps.replace_namespaced_deployment(CANARY, NS, current)  # still carries the old resourceVersion
    assert info.value.status == 409 and status_body(info.value)["reason"] == "Conflict"


async def test_create_then_duplicate_create_is_already_exists(api: client.ApiClient) -> None:
    coordination = client.CoordinationV1Api(api)
    body = {"metadata": {"name": "lock"}, "spec": {"holderIdentity": "a"}}
    created = await coordination.create_namespaced_lease(NS, body)
    assert created.metadata.namespace == NS and created.metadata.resource_version
    with pytest.raises(ApiException) as info:
        await coordination.create_namespaced_lease(NS, body)
    assert info.value.status == 409


async def test_delete_removes_and_second_delete_is_not_found(emu: Emulator, apps: client.AppsV1Api) -> None:
    await apps.delete_namespaced_deployment(CANARY, NS)
    with pytest.raises(KeyError):
        emu.get_object(DEPLOYMENTS, NS, CANARY)
    with pytest.raises(ApiException) as info:
        await apps.delete_namespaced_deployment(CANARY, NS)
    assert info.value.status == 404


async def test_leader_election_lease_lock_creates_reads_and_renews(api: client.ApiClient) -> None:
    lock = LeaseLock("canary-responder", NS, "pod-a", api)
    found, _ = await lock.get("canary-responder", NS)
    assert not found
    stamp = "2026-01-01 00:00:00.000000"
    assert await lock.create("canary-responder", NS, LeaderElectionRecord("pod-a", "15", stamp, stamp))
    found, _ = await lock.get("canary-responder", NS)
    renewed = "2026-01-01 00:00:05.000000"
    assert found and await lock.update("canary-responder", NS, LeaderElectionRecord("pod-a", "15", stamp, renewed))
    found, record = await lock.get("canary-responder", NS)
    assert isinstance(record, LeaderElectionRecord) and record.renew_time == "2026-01-01 00:00:05"


# --- the /scale subresource -----------------------------------------------------------------------------


async def test_scale_get_returns_an_autoscaling_scale(apps: client.AppsV1Api, http: aiohttp.ClientSession) -> None:
    scale = await apps.read_namespaced_deployment_scale(CANARY, NS)
    assert isinstance(scale, client.V1Scale)
    assert (scale.kind, scale.api_version) == ("Scale", "autoscaling/v1")
    assert scale.spec.replicas == 2 and scale.status.replicas == 2
    assert scale.status.selector == "app=checkout,version=canary"
    async with http.get(f"/apis/apps/v1/namespaces/{NS}/deployments/{CANARY}/scale") as response:
        raw = await response.json()
    assert raw["kind"] == "Scale" and "template" not in raw.get("spec", {})


async def test_scale_patch_updates_the_deployment(emu: Emulator, apps: client.AppsV1Api) -> None:
    scale = await apps.read_namespaced_deployment_scale(CANARY, NS)
    body = {"metadata": {"resourceVersion": scale.metadata.resource_version}, "spec": {"replicas": 0}}
    patched = await apps.patch_namespaced_deployment_scale(CANARY, NS, body, _content_type=MERGE)
    assert isinstance(patched, client.V1Scale) and patched.spec.replicas == 0
    deployment = emu.get_object(DEPLOYMENTS, NS, CANARY)
    assert deployment["spec"]["replicas"] == 0 and deployment["status"]["replicas"] == 0
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "checkout:1.5.0"
    assert int(deployment["metadata"]["resourceVersion"]) > int(scale.metadata.resource_version)
    assert patched.metadata.resource_version == deployment["metadata"]["resourceVersion"]
    [mutation] = emu.mutations
    assert (mutation.method, mutation.kind, mutation.name, mutation.subresource) == (
        "PATCH",
        "Deployment",
        CANARY,
        "scale",
    )


async def test_scale_patch_with_stale_resource_version_conflicts(emu: Emulator, apps: client.AppsV1Api) -> None:
    scale = await apps.read_namespaced_deployment_scale(CANARY, NS)
    await apps.patch_namespaced_deployment(CANARY, NS, {"metadata": {"labels": {"x": "1"}}}, _content_type=MERGE)
    body = {"metadata": {"resourceVersion": scale.metadata.resource_version}, "spec": {"replicas": 0}}
    with pytest.raises(ApiException) as info:
        await apps.patch_namespaced_deployment_scale(CANARY, NS, body, _content_type=MERGE)
    assert info.value.status == 409
    assert emu.get_object(DEPLOYMENTS, NS, CANARY)["spec"]["replicas"] == 2


async def test_scale_put_replaces_replicas(emu: Emulator, apps: client.AppsV1Api) -> None:
    scale = await apps.read_namespaced_deployment_scale(CANARY, NS)
    scale.spec.replicas = 1
    replaced = await apps.replace_namespaced_deployment_scale(CANARY, NS, scale)
    assert replaced.spec.replicas == 1
    assert emu.get_object(DEPLOYMENTS, NS, CANARY)["spec"]["replicas"] == 1


async def test_negative_replicas_are_invalid(apps: client.AppsV1Api) -> None:
    with pytest.raises(ApiException) as info:
        await apps.patch_namespaced_deployment_scale(CANARY, NS, {"spec": {"replicas": -1}}, _content_type=MERGE)
    assert info.value.status == 422


# --- lists ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("version=canary", [CANARY]),
        ("app=checkout,version!=canary", ["checkout"]),
        ("version==stable", ["checkout"]),
        ("app", ["checkout", CANARY]),
        ("!app", []),
        ("", ["checkout", CANARY]),
    ],
)
async def test_label_selector_filters_lists(apps: client.AppsV1Api, selector: str, expected: list[str]) -> None:
    listed = await apps.list_namespaced_deployment(NS, label_selector=selector)
    assert sorted(item.metadata.name for item in listed.items) == expected


async def test_lists_are_scoped_to_the_namespace(emu: Emulator, apps: client.AppsV1Api) -> None:
    emu.seed(sample_canary_objects(namespace="other"))
    assert len((await apps.list_namespaced_deployment(NS)).items) == 2
    assert len((await apps.list_deployment_for_all_namespaces()).items) == 4


def test_unsupported_selector_syntax_is_rejected() -> None:
    assert parse_label_selector("a=b, c!=d ,e,!f") == [
        ("a", "=", "b"),
        ("c", "!=", "d"),
        ("e", "exists", None),
        ("f", "!exists", None),
    ]
    # Set-based terms, as the adapter writes a Deployment's matchExpressions: the commas inside a set split nothing.
    assert parse_label_selector("app=x,track in (canary, b),z notin (q)") == [
        ("app", "=", "x"),
        ("track", "in", frozenset({"canary", "b"})),
        ("z", "notin", frozenset({"q"})),
    ]
    for bad in ("a in b", "a > 1", "!a=b", "a in (b"):
        with pytest.raises(Exception, match="unsupported label selector"):
            parse_label_selector(bad)


# --- discovery ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1", "/api/v1/"])
async def test_core_discovery_reports_group_version_v1(http: aiohttp.ClientSession, path: str) -> None:
    async with http.get(path) as response:
        body = await response.json()
    assert body["groupVersion"] == "v1"
    assert {"name": "events", "kind": "Event", "namespaced": True}.items() <= body["resources"][0].items()


async def test_discovery_through_the_client(api: client.ApiClient) -> None:
    assert (await client.VersionApi(api).get_code()).major == "1"
    assert (await client.CoreApi(api).get_api_versions()).versions == ["v1"]
    groups = {g.name for g in (await client.ApisApi(api).get_api_versions()).groups}
    assert {"apps", "networking.k8s.io", "coordination.k8s.io", "gateway.networking.k8s.io"} <= groups
    assert (await client.AppsApi(api).get_api_group()).name == "apps"


async def test_group_discovery_has_kinds_and_scale(api: client.ApiClient) -> None:
    apps_resources = await client.AppsV1Api(api).get_api_resources()
    kinds = {r.name: (r.kind, r.namespaced) for r in apps_resources.resources}
    assert kinds["deployments"] == ("Deployment", True)
    assert kinds["deployments/scale"] == ("Scale", True)
    networking = await client.NetworkingV1Api(api).get_api_resources()
    assert {r.name: r.kind for r in networking.resources}["ingresses"] == "Ingress"


@pytest.mark.parametrize(
    ("path", "plural", "kind"),
    [
        ("/apis/events.k8s.io/v1", "events", "Event"),
        ("/apis/coordination.k8s.io/v1", "leases", "Lease"),
        ("/apis/gateway.networking.k8s.io/v1", "httproutes", "HTTPRoute"),
    ],
)
async def test_declared_groups_are_discoverable(http: aiohttp.ClientSession, path: str, plural: str, kind: str) -> None:
    async with http.get(path) as response:
        body = await response.json()
    assert body["groupVersion"] == path.removeprefix("/apis/")
    assert {r["name"]: (r["kind"], r["namespaced"]) for r in body["resources"]}[plural] == (kind, True)


async def test_core_and_events_api_events_can_be_created(api: client.ApiClient) -> None:
    body = {"metadata": {"name": "e1"}, "involvedObject": {"kind": "Deployment", "name": CANARY}, "reason": "R"}
    created = await client.CoreV1Api(api).create_namespaced_event(NS, body)
    assert created.reason == "R"
    new_style = {"metadata": {"name": "e2"}, "eventTime": "2026-01-01T00:00:00.000000Z", "reason": "R"}
    assert (await client.EventsV1Api(api).create_namespaced_event(NS, new_style)).metadata.name == "e2"


# --- faults ---------------------------------------------------------------------------------------------


async def test_status_faults_apply_in_order_and_expire(emu: Emulator, apps: client.AppsV1Api) -> None:
    emu.add_fault(method="GET", path_contains=f"/deployments/{CANARY}", status=503, times=2)
    emu.add_fault(method="GET", path_contains="/deployments/", status=403, times=1)
    statuses = []
    for _ in range(4):
        try:
            await apps.read_namespaced_deployment(CANARY, NS)
            statuses.append(200)
        except ApiException as exc:
            statuses.append(exc.status)
    assert statuses == [503, 503, 403, 200]


async def test_fault_status_bodies_are_kubernetes_status_objects(emu: Emulator, apps: client.AppsV1Api) -> None:
    emu.add_fault(method="PATCH", status=422, message="bad field")
    with pytest.raises(ApiException) as info:
        await apps.patch_namespaced_deployment(CANARY, NS, {"spec": {}}, _content_type=MERGE)
    body = status_body(info.value)
    assert (body["kind"], body["reason"], body["message"]) == ("Status", "Invalid", "bad field")
    assert emu.mutations[-1].status == 422 and not emu.mutations[-1].ok


async def test_clear_faults(emu: Emulator, apps: client.AppsV1Api) -> None:
    emu.add_fault(status=500, times=None)
    emu.clear_faults()
    assert (await apps.read_namespaced_deployment(CANARY, NS)).metadata.name == CANARY


async def test_delay_fault_times_out_the_client_and_never_lands_late(emu: Emulator, apps: client.AppsV1Api) -> None:
    emu.add_fault(method="PATCH", path_contains="/scale", delay=10.0)
    body = {"spec": {"replicas": 0}}
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await apps.patch_namespaced_deployment_scale(CANARY, NS, body, _content_type=MERGE, _request_timeout=0.3)
    assert loop.time() - started < 5
    await asyncio.sleep(0.05)
    assert emu.get_object(DEPLOYMENTS, NS, CANARY)["spec"]["replicas"] == 2


async def test_delay_fault_without_timeout_is_just_slow(emu: Emulator, apps: client.AppsV1Api) -> None:
    emu.add_fault(method="GET", path_contains=f"/deployments/{CANARY}", delay=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await apps.read_namespaced_deployment(CANARY, NS)).metadata.name == CANARY
    assert loop.time() - started >= 0.2


async def test_reset_fault_drops_the_connection(emu: Emulator, apps: client.AppsV1Api) -> None:
    emu.add_fault(method="PATCH", path_contains="/scale", reset=True)
    with pytest.raises(aiohttp.ClientConnectionError):
        await apps.patch_namespaced_deployment_scale(CANARY, NS, {"spec": {"replicas": 0}}, _content_type=MERGE)
    assert emu.mutations[-1].status == 0
    assert emu.get_object(DEPLOYMENTS, NS, CANARY)["spec"]["replicas"] == 2
    # the next request gets through on a fresh connection
    assert (await apps.read_namespaced_deployment_scale(CANARY, NS)).spec.replicas == 2


# --- faults on the answer (after=True): the change lands, the client sees a failure --------------------


async def test_after_fault_answers_the_status_but_the_patch_landed(emu: Emulator, apps: client.AppsV1Api) -> None:
    emu.add_fault(method="PATCH", path_contains="/scale", status=500, after=True)
    with pytest.raises(ApiException) as info:
        await apps.patch_namespaced_deployment_scale(CANARY, NS, {"spec": {"replicas": 0}}, _content_type=MERGE)
    assert info.value.status == 500 and status_body(info.value)["details"] == {"injected": True}
    assert emu.get_object(DEPLOYMENTS, NS, CANARY)["spec"]["replicas"] == 0
    [mutation] = emu.mutations
    assert (mutation.status, mutation.answered) == (200, 500)
    assert mutation.ok and mutation.landed


async def test_after_fault_with_delay_lands_before_the_answer_arrives(emu: Emulator, apps: client.AppsV1Api) -> None:
    emu.add_fault(method="PATCH", path_contains="/scale", delay=0.5, after=True)
    body = {"spec": {"replicas": 0}}
    patch = asyncio.create_task(apps.patch_namespaced_deployment_scale(CANARY, NS, body, _content_type=MERGE))
    await wait_until(lambda: emu.get_object(DEPLOYMENTS, NS, CANARY)["spec"]["replicas"] == 0)
    assert not patch.done()  # the change is in, the answer is still held
    assert emu.mutations[-1].landed and emu.mutations[-1].answered is None
    scale = await patch
    arrived = time.time()
    assert scale.spec.replicas == 0  # delivered late, but the real answer
    assert emu.mutations[-1].status == 200 and emu.mutations[-1].answered is None
    assert arrived - emu.mutations[-1].at >= 0.3  # ``at`` is when the change landed, not when it was answered


async def test_after_fault_with_delay_is_a_client_timeout_whose_change_landed(
    emu: Emulator, apps: client.AppsV1Api
) -> None:
    emu.add_fault(method="PATCH", path_contains="/ingresses/", delay=10.0, after=True)
    networking = client.NetworkingV1Api(apps.api_client)
    body = {"metadata": {"annotations": {"nginx.ingress.kubernetes.io/canary": "false"}}}
    with pytest.raises(TimeoutError):
        await networking.patch_namespaced_ingress(CANARY, NS, body, _content_type=MERGE, _request_timeout=0.3)
    annotations = emu.get_object("networking.k8s.io/v1/ingresses", NS, CANARY)["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/canary"] == "false"
    assert emu.mutations[-1].landed


async def test_after_fault_reset_drops_the_answer_of_a_landed_change(emu: Emulator, apps: client.AppsV1Api) -> None:
    emu.add_fault(method="PATCH", path_contains="/scale", reset=True, after=True)
    with pytest.raises(aiohttp.ClientConnectionError):
        await apps.patch_namespaced_deployment_scale(CANARY, NS, {"spec": {"replicas": 0}}, _content_type=MERGE)
    assert emu.get_object(DEPLOYMENTS, NS, CANARY)["spec"]["replicas"] == 0
    assert (emu.mutations[-1].status, emu.mutations[-1].answered) == (200, 0)


async def test_after_fault_on_a_refused_request_logs_the_real_refusal(emu: Emulator, apps: client.AppsV1Api) -> None:
    emu.add_fault(method="PATCH", path_contains="/scale", status=503, after=True)
    with pytest.raises(ApiException) as info:
        await apps.patch_namespaced_deployment_scale(CANARY, NS, {"spec": {"replicas": -1}}, _content_type=MERGE)
    assert info.value.status == 503
    assert (emu.mutations[-1].status, emu.mutations[-1].answered) == (422, 503)
    assert not emu.mutations[-1].landed
    assert emu.get_object(DEPLOYMENTS, NS, CANARY)["spec"]["replicas"] == 2


async def wait_until(condition: Callable[[], bool], *, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# --- the mutation log and kmock compatibility -----------------------------------------------------------


async def test_mutation_log_records_only_mutating_requests_in_order(emu: Emulator, api: client.ApiClient) -> None:
    apps, networking = client.AppsV1Api(api), client.NetworkingV1Api(api)
    await apps.read_namespaced_deployment(CANARY, NS)
    await networking.patch_namespaced_ingress(
        CANARY, NS, {"metadata": {"annotations": {"x": "1"}}}, _content_type=MERGE
    )
    await apps.patch_namespaced_deployment_scale(CANARY, NS, {"spec": {"replicas": 0}}, _content_type=MERGE)
    assert [(m.method, m.kind, m.name, m.subresource, m.status) for m in emu.mutations] == [
        ("PATCH", "Ingress", CANARY, None, 200),
        ("PATCH", "Deployment", CANARY, "scale", 200),
    ]
    assert emu.mutations[0].body == {"metadata": {"annotations": {"x": "1"}}}
    assert emu.mutations_of("Deployment", "checkout") == []


async def test_kmock_history_and_dsl_overrides_still_work(emu: Emulator, apps: client.AppsV1Api) -> None:
    await apps.patch_namespaced_deployment(CANARY, NS, {"spec": {"paused": True}}, _content_type=MERGE)
    history = emu.objects[DEPLOYMENTS, NS, CANARY].history
    assert len(history) == 2 and history[-1]["spec"]["paused"] is True
    fields = ("buildDate", "compiler", "gitCommit", "gitTreeState", "goVersion", "platform")
    emu["get /version/"] << {"major": "1", "minor": "99", "gitVersion": "v1.99.0", **dict.fromkeys(fields, "x")}
    version = await client.VersionApi(apps.api_client).get_code()
    assert version.minor == "99"
