"""The user-facing command line: the `kubectl ftr` plugin and the KPI report (no kopf)."""
