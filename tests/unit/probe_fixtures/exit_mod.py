"""Imported by preflight tests: calls sys.exit at import."""

import sys

sys.exit(3)
