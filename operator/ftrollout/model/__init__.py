"""The resource as code: the FreeThreadedRollout pydantic models, CRD generation, durations.

The single source of truth for the CRD; imports nothing of the planner or the shell.
"""
