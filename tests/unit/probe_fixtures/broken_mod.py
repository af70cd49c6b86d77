"""Imported by preflight tests: fails at import with a long message."""

raise ValueError("broken at import: " + "x" * 5000)
