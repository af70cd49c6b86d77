"""A tiny external metrics API (`external.metrics.k8s.io/v1beta1`) for the local cluster.

The local cluster runs no kubelet and no metrics-server, so a HorizontalPodAutoscaler has nothing
to read. This dev tool serves external metrics whose values the test sets, registered through the
aggregation layer: an ``APIService`` pointing at an ``ExternalName`` Service ``localhost``, so the
kube-apiserver (which has no cluster network) proxies to this process over TLS (a serving
certificate signed by the cluster's CA, trusted through the APIService's ``caBundle``). The real
HPA controller of kube-controller-manager then reads it as it reads any metrics adapter
(prometheus-adapter, KEDA).

With an ``External`` metric and an ``AverageValue`` target, the HPA asks for
``ceil(value / averageValue)`` replicas whatever the pods report, so the test dictates the HPA's
recommendation exactly.

>>> with ExternalMetricsServer(cluster) as metrics:
...     metrics.set("shop", "queue_depth", 8)

It is test tooling only: the operator never imports it.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import yaml

from ftrollout_dev.localcluster import LocalCluster, _sign

GROUP = "external.metrics.k8s.io"
VERSION = "v1beta1"
APISERVICE = f"{VERSION}.{GROUP}"
NAMESPACE = "kube-system"
SERVICE = "ftrollout-external-metrics"
CERT = "external-metrics"


def _quantity(value: float) -> str:
    """A Kubernetes quantity: milli-units keep fractions exact enough for an HPA."""
    milli = round(value * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that drops the connection or rejects the certificate is the client's story
        # (the APIService's Available condition tells it); no traceback on the test's stderr.
        pass


class ExternalMetricsServer:
    """Serves `external.metrics.k8s.io/v1beta1` on 127.0.0.1 and registers it with the cluster.

    Values are per (namespace, metric name); label selectors are accepted and ignored. A metric
    that was never set answers 404, as an adapter does for an unknown series.
    """

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self._lock = threading.Lock()
        self._values: dict[tuple[str, str], float] = {}
        self.requests: dict[tuple[str, str], int] = {}
        pki = cluster.pki
        if not (pki / f"{CERT}.crt").exists():
            _sign(
                pki,
                CERT,
                "/CN=ftrollout-external-metrics",
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                # The aggregator checks the name of the Service, not the one it dials.
                "extendedKeyUsage=serverAuth\n"
                f"subjectAltName=DNS:{SERVICE}.{NAMESPACE}.svc,DNS:localhost,IP:127.0.0.1\n",
            )
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki / f"{CERT}.crt", pki / f"{CERT}.key")
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                code, body = server._answer(self.path.split("?", 1)[0])
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # The handshake runs in the handler thread (not in accept()), so one slow client cannot
        # stall the others.
        self._server.socket = ctx.wrap_socket(
            self._server.socket, server_side=True, do_handshake_on_connect=False
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def set(self, namespace: str, metric: str, value: float) -> None:
        with self._lock:
            self._values[(namespace, metric)] = float(value)

    def served(self, namespace: str, metric: str) -> int:
        """How many times the metric was read (by the HPA controller, through the apiserver)."""
        with self._lock:
            return self.requests.get((namespace, metric), 0)

    def _answer(self, path: str) -> tuple[int, dict[str, Any]]:
        base = f"/apis/{GROUP}/{VERSION}"
        if path.rstrip("/") == base:
            # Legacy discovery (the aggregator falls back to it when /apis answers 404). Only
            # `get`: the namespace and garbage collectors skip resources they cannot list.
            return 200, {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{GROUP}/{VERSION}",
                "resources": [
                    {
                        "name": "externalmetrics",
                        "singularName": "",
                        "namespaced": True,
                        "kind": "ExternalMetricValueList",
                        "verbs": ["get"],
                    }
                ],
            }
        parts = path[len(base) :].strip("/").split("/") if path.startswith(base + "/") else []
        if len(parts) == 3 and parts[0] == "namespaces":
            key = (parts[1], parts[2])
            with self._lock:
                value = self._values.get(key)
                self.requests[key] = self.requests.get(key, 0) + 1
            if value is not None:
                return 200, {
                    "kind": "ExternalMetricValueList",
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "metadata": {},
                    "items": [
                        {
                            "metricName": key[1],
                            "metricLabels": {},
                            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "value": _quantity(value),
                        }
                    ],
                }
        return 404, {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "reason": "NotFound",
            "code": 404,
            "message": f"no external metric at {path}",
        }

    # -- registration ------------------------------------------------------------------------
    def manifests(self) -> list[dict[str, Any]]:
        ca = base64.b64encode((self.cluster.pki / "ca.crt").read_bytes()).decode()
        return [
            {
                # ExternalName: the aggregator dials `localhost:<port>` itself (with the default
                # service routing, an ExternalName Service resolves to its name), which a
                # cluster without pod networking can reach.
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": SERVICE, "namespace": NAMESPACE},
                "spec": {"type": "ExternalName", "externalName": "localhost"},
            },
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": APISERVICE},
                "spec": {
                    "group": GROUP,
                    "version": VERSION,
                    "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                    "caBundle": ca,
                    "service": {"name": SERVICE, "namespace": NAMESPACE, "port": self.port},
                },
            },
        ]

    def available(self) -> bool:
        proc = self.cluster.kubectl("get", "apiservice", APISERVICE, "-o", "json", check=False)
        if proc.returncode != 0:
            return False
        conds = (json.loads(proc.stdout).get("status") or {}).get("conditions") or []
        return any(c["type"] == "Available" and c["status"] == "True" for c in conds)

    def serve(self) -> None:
        """Answer on 127.0.0.1:`port` (without registering with the cluster)."""
        self._thread.start()

    def start(self, timeout: float = 60.0) -> None:
        """Serve, register the APIService and wait until the aggregator reports it Available."""
        self.serve()
        docs = "---\n".join(yaml.safe_dump(d) for d in self.manifests())
        self.cluster.kubectl("apply", "-f", "-", input=docs)
        deadline = time.monotonic() + timeout
        while not self.available():
            if time.monotonic() > deadline:
                proc = self.cluster.kubectl("get", "apiservice", APISERVICE, "-o", "yaml")
                raise AssertionError(f"APIService {APISERVICE} not Available:\n{proc.stdout}")
            time.sleep(0.5)

    def stop(self) -> None:
        # Unregister first: an APIService left behind without its server makes discovery fail
        # for every client and blocks namespace deletion.
        self.cluster.kubectl("delete", "apiservice", APISERVICE, "--ignore-not-found", check=False)
        self.cluster.kubectl(
            "delete", "service", SERVICE, "-n", NAMESPACE, "--ignore-not-found", check=False
        )
        self.shutdown()

    def shutdown(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ExternalMetricsServer:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
