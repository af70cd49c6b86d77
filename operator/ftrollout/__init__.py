"""ftrollout: canary a Python service onto a free-threaded CPython image, with GIL guardrails."""

__version__ = "0.1.0"
