"""Helpers shared by the reliability tests (a uniquely named module: `conftest` is ambiguous
when tests/e2e and tests/reliability run in one session)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import kubernetes
from e2e_operator import OperatorProcess

N = 10
RESULTS: list[dict[str, Any]] = []
OperatorFactory = Callable[..., OperatorProcess]


def record(scenario: str, **values: Any) -> None:
    """Keep a measured outcome (recovery time, minimum capacity...) for docs/reliability.md.

    Printed at the end of the session, and appended as JSON lines to $FTR_RELIABILITY_RESULTS
    when that is set."""
    row = {"scenario": scenario, **values}
    RESULTS.append(row)
    out = os.environ.get("FTR_RELIABILITY_RESULTS")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")


class Sampler:
    """Samples both tracks and the rollout's status every 50 ms in a thread (in-process client).

    Records the minimum Ready capacity (standard + free-threaded), the maximum spec.replicas
    of each track, and every (phase, stepIndex) the status went through."""

    def __init__(
        self, api: kubernetes.client.ApiClient, ns: str, target: str = "web", rollout: str = "web"
    ) -> None:
        self.apps = kubernetes.client.AppsV1Api(api)
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.ns, self.target, self.rollout = ns, target, rollout
        self.min_ready = 10**9
        self.max_std = 0
        self.max_ft = 0
        self.steps: list[tuple[str | None, int | None]] = []
        self.samples = 0
        self.errors = 0
        self.pause = threading.Event()  # set while the apiserver is known to be down
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _tracks(self) -> dict[str, tuple[int, int]]:
        """(spec.replicas, readyReplicas) of every Deployment, from ONE list: a consistent
        snapshot. Two GETs in a row can pair the standard track's old count with the twin's new
        one and show a capacity dip that never happened (a rollback raises standard first)."""
        items = self.apps.list_namespaced_deployment(self.ns, _request_timeout=5).items
        return {
            d.metadata.name: (
                int(d.spec.replicas or 0),
                int((d.status.ready_replicas if d.status else 0) or 0),
            )
            for d in items
        }

    def _run(self) -> None:
        while not self.stop.is_set():
            if self.pause.is_set():
                time.sleep(0.05)
                continue
            try:
                tracks = self._tracks()
                std, std_ready = tracks.get(self.target, (0, 0))
                ft, ft_ready = tracks.get(f"{self.target}-ft", (0, 0))
                obj = self.custom.get_namespaced_custom_object(
                    "freethreaded.dev", "v1alpha1", self.ns, "freethreadedrollouts", self.rollout,
                    _request_timeout=5,
                )  # fmt: skip
            except Exception:
                self.errors += 1
                time.sleep(0.1)
                continue
            self.min_ready = min(self.min_ready, std_ready + ft_ready)
            self.max_std = max(self.max_std, std)
            self.max_ft = max(self.max_ft, ft)
            st = obj.get("status") or {}
            point = (st.get("phase"), st.get("stepIndex"))
            if not self.steps or self.steps[-1] != point:
                self.steps.append(point)
            self.samples += 1
            time.sleep(0.05)

    def step_indices(self) -> list[int]:
        return [s for _, s in self.steps if s is not None]

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()

    def assert_capacity_and_no_double_scale(self, n: int = N) -> None:
        assert self.samples > 5, "the sampler saw nothing"
        assert self.min_ready >= n, f"Ready capacity dropped to {self.min_ready} (< {n})"
        assert self.max_std <= n, f"standard track scaled to {self.max_std} (> {n})"
        assert self.max_ft <= n, f"free-threaded track scaled to {self.max_ft} (> {n})"

    def assert_progress_never_reset(self) -> None:
        idx = self.step_indices()
        assert idx == sorted(idx), f"stepIndex went backwards: {self.steps}"
