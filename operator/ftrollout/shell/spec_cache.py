"""An analysed rollout's spec parsed once per change, not once per reconcile."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ftrollout.model import api
from ftrollout.plan.observe import Key, revision_of
from ftrollout.plan.prometheus import address_error

if TYPE_CHECKING:
    from ftrollout.shell.state import State


@dataclass
class ParsedSpec:
    """A rollout's spec as last parsed, kept while the spec dict is the same: after each
    analysis round the rollout reconciles with an unchanged spec, and validating it again (and
    hashing the free-threaded template into its revision) was a fifth of that reconcile."""

    raw: Any
    spec: api.RolloutSpec | None
    error: api.SpecError | None
    _revisions: tuple[str, str] | None = None  # (target template hash, revision)

    def revision(self, template_hash: str) -> str:
        assert self.spec is not None
        if self._revisions is None or self._revisions[0] != template_hash:
            self._revisions = (template_hash, revision_of(template_hash, self.spec.free_threaded))
        return self._revisions[1]


def parsed_spec(state: State, key: Key, raw: Any) -> ParsedSpec:
    kept = state.specs.get(key)
    if kept is not None and kept.raw is raw:
        return kept
    if kept is not None and kept.raw == raw:
        kept.raw = raw  # the same spec in a new dict (a re-list): the old one is freed
        return kept
    spec: api.RolloutSpec | None
    error: api.SpecError | None
    try:
        api.check_name(key[1])
        spec = api.parse_spec(raw)
        error = address_error(spec, state.prometheus.allowed, key[0])
        if error is not None:
            # Never queried, not even once: the address itself is what is not allowed.
            spec = None
    except api.SpecError as exc:
        spec, error = None, exc
    kept = state.specs[key] = ParsedSpec(raw, spec, error)
    return kept


def release_unless_analysed(state: State, key: Key) -> None:
    """Only a rollout analysed every interval keeps its parse: another reconciles when
    something happens or at its hourly look, where parsing again costs less than keeping the
    models of every idle rollout's spec (memory per rollout, issue 22)."""
    if state.scheduler is None or key not in state.scheduler.targets:
        state.specs.pop(key, None)
