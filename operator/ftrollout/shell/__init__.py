"""The operator shell: kopf handlers, the watch cache, Kubernetes writes, the Prometheus
scheduler, the GIL log scanner, the gate's Job I/O, metrics, status writes and the runner.

All I/O lives here; every decision is delegated to `ftrollout.plan`.
"""
