"""Kubernetes writes and the few reads the watch cache cannot answer.

The official client is synchronous; calls run in a small thread pool so the event loop (and
so every other rollout) never waits on one slow request. A client-side token bucket keeps the
operator's request rate within `--qps`/`--burst`, sized for thousands of rollouts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import kubernetes
from kubernetes.client.exceptions import ApiException

from ftrollout.model import api
from ftrollout.plan import FIELD_MANAGER
from ftrollout.plan.observe import resource_version

log = logging.getLogger("ftrollout.shell.kube")
T = TypeVar("T")

# Without a timeout a half-open connection (a dead apiserver or proxy that never answers)
# holds a worker for ever; with all workers held, every rollout stops, rollbacks included.
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 30.0

GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_VERSION = "v1"


class TokenBucket:
    def __init__(self, qps: float, burst: int) -> None:
        self.qps = qps
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.qps)
                self.stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.qps)


class Kube:
    """The operator's API writer; counts writes so tests and benchmarks can assert on them."""

    def __init__(
        self,
        qps: float = 50.0,
        burst: int = 100,
        workers: int = 8,
        client: kubernetes.client.ApiClient | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        """`client`: an already configured API client (tests point one at a mock server);
        by default the in-cluster config, else the kubeconfig. Every call gets the connect and
        read timeouts (seconds)."""
        if client is None:
            try:
                kubernetes.config.load_incluster_config()
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config()
            client = kubernetes.client.ApiClient()
        self.client = client
        self.request_timeout = (float(connect_timeout), float(read_timeout))
        self.apps = kubernetes.client.AppsV1Api(self.client)
        self.core = kubernetes.client.CoreV1Api(self.client)
        self.batch = kubernetes.client.BatchV1Api(self.client)
        self.custom = kubernetes.client.CustomObjectsApi(self.client)
        self.bucket = TokenBucket(qps, burst)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube")
        self.writes = 0
        self.reads = 0

    async def call(self, fn: Callable[..., T], *args: Any, write: bool = True, **kw: Any) -> T:
        await self.bucket.take()
        if write:
            self.writes += 1
        else:
            self.reads += 1
        kw.setdefault("_request_timeout", self.request_timeout)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, lambda: fn(*args, **kw))

    # ---------------------------------------------------------------- deployments
    async def _read(self, fn: Any, *args: Any) -> dict[str, Any] | None:
        """A GET as plain JSON-like data; None when the object does not exist (404)."""
        try:
            obj = await self.call(fn, *args, write=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        out: dict[str, Any] = self.client.sanitize_for_serialization(obj)
        return out

    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read(self.apps.read_namespaced_deployment, name, namespace)

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> int:
        """Set spec.replicas; returns the Deployment's resourceVersion after it (0: unknown)."""
        scale = await self.call(
            self.apps.patch_namespaced_deployment_scale,
            name,
            namespace,
            {"spec": {"replicas": replicas}},
            field_manager=FIELD_MANAGER,
        )
        out: dict[str, Any] = self.client.sanitize_for_serialization(scale)
        return resource_version(out.get("metadata") or {})

    async def create_deployment(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create; returns the Deployment as the apiserver stored it."""
        ns = manifest["metadata"]["namespace"]
        created = await self.call(
            self.apps.create_namespaced_deployment, ns, manifest, field_manager=FIELD_MANAGER
        )
        out: dict[str, Any] = self.client.sanitize_for_serialization(created)
        return out

    async def replace_twin_template(self, manifest: dict[str, Any]) -> None:
        """Point the twin at a new template (new revision); replicas stay as they are."""
        meta = manifest["metadata"]
        patch = {
            "metadata": {"annotations": meta["annotations"], "labels": meta["labels"]},
            "spec": {"template": manifest["spec"]["template"]},
        }
        await self.call(
            self.apps.patch_namespaced_deployment, meta["name"], meta["namespace"], patch
        )

    async def annotate_deployment(
        self, namespace: str, name: str, annotations: dict[str, str]
    ) -> int:
        """Merge annotations; returns the resourceVersion after it (0: unknown)."""
        out = await self.call(
            self.apps.patch_namespaced_deployment,
            name,
            namespace,
            {"metadata": {"annotations": annotations}},
            field_manager=FIELD_MANAGER,
        )
        body: dict[str, Any] = self.client.sanitize_for_serialization(out)
        return resource_version(body.get("metadata") or {})

    async def set_controller(
        self, namespace: str, name: str, owner: dict[str, Any]
    ) -> dict[str, Any]:
        """Make `owner` the Deployment's only controller reference (other, non-controller
        references stay); conditional on the version read (409 if it changed since)."""
        current = await self.get_deployment(namespace, name)
        meta = (current or {}).get("metadata") or {}
        refs = [r for r in meta.get("ownerReferences") or [] if not r.get("controller")]
        patch = {
            "metadata": {
                "resourceVersion": meta.get("resourceVersion"),
                "ownerReferences": [*refs, owner],
            }
        }
        out = await self.call(
            self.apps.patch_namespaced_deployment,
            name,
            namespace,
            patch,
            field_manager=FIELD_MANAGER,
        )
        body: dict[str, Any] = self.client.sanitize_for_serialization(out)
        return body

    async def delete_deployment(self, namespace: str, name: str, uid: str = "") -> bool:
        """Delete the Deployment `name`, only if its uid is `uid` when given: a Deployment
        deleted and created again under that name since it was read (someone else's) is not
        ours to delete. False when it has another uid (409), True when it is gone."""
        options = kubernetes.client.V1DeleteOptions(
            preconditions=kubernetes.client.V1Preconditions(uid=uid) if uid else None
        )
        try:
            await self.call(self.apps.delete_namespaced_deployment, name, namespace, body=options)
        except ApiException as exc:
            if exc.status == 409 and uid:
                return False
            if exc.status != 404:
                raise
        return True

    # ------------------------------------------------------------------- rollouts
    async def patch_rollout_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        # JSON patch "add" on /status replaces it whole: fields the plan dropped disappear,
        # which a merge patch would not do for nested objects.
        await self.call(
            self.custom.patch_namespaced_custom_object_status,
            api.GROUP,
            api.VERSION,
            namespace,
            api.PLURAL,
            name,
            [{"op": "add", "path": "/status", "value": status}],
            _content_type="application/json-patch+json",
        )

    async def patch_rollout_status_fields(
        self, namespace: str, name: str, fields: dict[str, Any]
    ) -> None:
        """Merge `fields` into status, leaving the rest as it is."""
        await self.call(
            self.custom.patch_namespaced_custom_object_status,
            api.GROUP,
            api.VERSION,
            namespace,
            api.PLURAL,
            name,
            {"status": fields},
            _content_type="application/merge-patch+json",
        )

    async def patch_rollout(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        await self.call(
            self.custom.patch_namespaced_custom_object,
            api.GROUP,
            api.VERSION,
            namespace,
            api.PLURAL,
            name,
            patch,
        )

    async def get_rollout(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read(
            self.custom.get_namespaced_custom_object,
            api.GROUP,
            api.VERSION,
            namespace,
            api.PLURAL,
            name,
        )

    async def remove_rollout_annotation(
        self, namespace: str, name: str, key: str, value: str
    ) -> bool:
        """Remove annotation `key` only while it still holds `value` (a JSON-patch test): a
        request written over it meanwhile is someone else's, not applied yet, and stays for the
        next reconcile. False when it was replaced (nothing was changed); True when it is gone.
        A 422 is also what an admission policy or validation answers: the annotation is read
        again, and one still holding `value` is an error (the caller retries), never
        "replaced" (that would let the request be read as new and applied twice)."""
        path = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
        try:
            await self.call(
                self.custom.patch_namespaced_custom_object,
                api.GROUP,
                api.VERSION,
                namespace,
                api.PLURAL,
                name,
                [{"op": "test", "path": path, "value": value}, {"op": "remove", "path": path}],
                _content_type="application/json-patch+json",
            )
        except ApiException as exc:
            if exc.status != 422:
                raise
            obj = await self.get_rollout(namespace, name)
            now = None if obj is None else (obj["metadata"].get("annotations") or {}).get(key)
            if now is None:
                return True
            if now == value:
                raise
            return False
        return True

    # ------------------------------------------------------- traffic routing (Gateway API)
    async def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read(self.core.read_namespaced_service, name, namespace)

    async def create_service(self, manifest: dict[str, Any]) -> None:
        ns = manifest["metadata"]["namespace"]
        await self.call(
            self.core.create_namespaced_service, ns, manifest, field_manager=FIELD_MANAGER
        )

    async def patch_service(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        await self.call(
            self.core.patch_namespaced_service,
            name,
            namespace,
            patch,
            field_manager=FIELD_MANAGER,
        )

    async def delete_service(self, namespace: str, name: str) -> None:
        try:
            await self.call(self.core.delete_namespaced_service, name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def get_httproute(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The HTTPRoute, or None when it (or the Gateway API CRD) does not exist."""
        return await self._read(
            self.custom.get_namespaced_custom_object,
            GATEWAY_GROUP,
            GATEWAY_VERSION,
            namespace,
            "httproutes",
            name,
        )

    async def patch_httproute_rules(
        self, namespace: str, name: str, resource_version: str, rules: list[dict[str, Any]]
    ) -> None:
        """Replace spec.rules, only if the route is still at `resource_version` (409 if a user
        edited it since it was read: the next reconcile starts again from their edit)."""
        await self.call(
            self.custom.patch_namespaced_custom_object,
            GATEWAY_GROUP,
            GATEWAY_VERSION,
            namespace,
            "httproutes",
            name,
            {"metadata": {"resourceVersion": resource_version}, "spec": {"rules": rules}},
            _content_type="application/merge-patch+json",
        )

    # --------------------------------------------------------------------- events
    async def emit_event(
        self,
        rollout: dict[str, Any],
        type_: str,
        reason: str,
        message: str,
        action: str | None = None,
    ) -> bool:
        """`action`: the freethreaded.dev/action request the Event answers, kept in the same
        annotation on the Event. Never raises: False when the Event was not recorded (a caller
        that says something once may say it again next time)."""
        meta = rollout["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event_meta: dict[str, Any] = {
            "generateName": f"{meta['name']}.",
            "namespace": meta["namespace"],
        }
        if action is not None:
            event_meta["annotations"] = {f"{api.GROUP}/action": action}
        body = {
            "metadata": event_meta,
            "involvedObject": {
                "apiVersion": f"{api.GROUP}/{api.VERSION}",
                "kind": api.KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "ftrollout"},
            "reportingComponent": "ftrollout",
            "reportingInstance": "ftrollout",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.call(self.core.create_namespaced_event, meta["namespace"], body)
        except Exception as exc:  # best effort: never fail a reconcile on an Event
            # Not only ApiException: a timeout (urllib3) must not stop the writes after it.
            why = exc.reason if isinstance(exc, ApiException) else repr(exc)
            log.warning("event %s/%s not recorded: %s", reason, meta["name"], why)
            return False
        return True

    # ---------------------------------------------------------- preflight / probe
    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read(self.batch.read_namespaced_job, name, namespace)

    async def create_job(self, manifest: dict[str, Any]) -> None:
        ns = manifest["metadata"]["namespace"]
        try:
            await self.call(self.batch.create_namespaced_job, ns, manifest)
        except ApiException as exc:
            if exc.status != 409:  # already created by an earlier reconcile
                raise

    async def delete_job(self, namespace: str, name: str) -> None:
        try:
            await self.call(
                self.batch.delete_namespaced_job, name, namespace, propagation_policy="Background"
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        obj = await self.call(
            self.core.list_namespaced_pod, namespace, label_selector=selector, write=False
        )
        out: list[dict[str, Any]] = self.client.sanitize_for_serialization(obj).get("items", [])
        return out

    async def ensure_configmap(
        self, namespace: str, name: str, data: dict[str, str], labels: dict[str, str]
    ) -> None:
        body = {"metadata": {"name": name, "namespace": namespace, "labels": labels}, "data": data}
        try:
            current = await self.call(
                self.core.read_namespaced_config_map, name, namespace, write=False
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            await self.call(self.core.create_namespaced_config_map, namespace, body)
            return
        if (current.data or {}) != data:
            await self.call(self.core.replace_namespaced_config_map, name, namespace, body)

    async def read_log(
        self,
        namespace: str,
        pod: str,
        container: str | None,
        since_seconds: int | None,
        limit_bytes: int,
    ) -> str:
        kwargs: dict[str, Any] = {"timestamps": True, "limit_bytes": limit_bytes}
        if container:
            kwargs["container"] = container
        if since_seconds is not None:
            kwargs["since_seconds"] = since_seconds
        out = await self.call(
            self.core.read_namespaced_pod_log, pod, namespace, write=False, **kwargs
        )
        return str(out or "")


def short_error(exc: Exception) -> str:
    """One line for a log or an Event: the apiserver's message rather than its whole HTTP
    response."""
    body = getattr(exc, "body", None)
    if isinstance(body, str | bytes):
        try:
            return f"{getattr(exc, 'status', '')} {json.loads(body).get('message', '')}".strip()
        except ValueError:
            pass
    if isinstance(exc, ApiException) and exc.reason:
        return f"{exc.status} {exc.reason}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
