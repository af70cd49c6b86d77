"""ftrollout side by side with Argo Rollouts and Flagger (`bench_peers.py` is the command):
one module a concern. `controllers/` starts each controller and makes, promotes and aborts its
canaries; `run.py` is one run on a fresh cluster; `sampler.py` the steady window; `latency.py`
the latency phase; `pyspy.py` py-spy; `report.py` results.json, results.md and the plot.

Imported as `peers` with benchmarks/ on sys.path, beside the scale benchmark (`scale`) whose
cluster, watches and exporter every run uses, and the shared `sampling` and `processes`."""
