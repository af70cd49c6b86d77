"""Bad input through the real apiserver: random FreeThreadedRollout specs (hypothesis) are applied
with kubectl; each is either rejected with a message naming a field, or accepted and the operator
reports a phase for it. The operator never crashes: its process stays alive and its log has no
Traceback. (The pydantic models alone are fuzzed in tests/unit/test_api.py / test_crd.py.)"""

from __future__ import annotations

import copy
import itertools
import re
from typing import Any

import pytest
import yaml
from e2e_operator import ftr_status, ready_deployment, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rel_support import OperatorFactory, record

from ftrollout_dev.localcluster import LocalCluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

PHASES = {"Pending", "Progressing", "Paused", "Promoted", "RolledBack", "Failed"}

junk = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 200), st.text(max_size=12),
    st.lists(st.integers(0, 3), max_size=2), st.just({}),
)  # fmt: skip
duration = st.one_of(st.sampled_from(["1s", "5m", "1h", "0s", "-1s", "10x", "", "1.5s"]), junk)
step = st.fixed_dictionaries(
    {},
    optional={
        "weight": st.one_of(st.integers(-10, 150), junk),
        "pause": st.one_of(st.fixed_dictionaries({}, optional={"duration": duration}), junk),
    },
)
metric = st.fixed_dictionaries(
    {
        "name": st.one_of(st.sampled_from(["p99", "Bad Name", "", "x" * 70]), junk),
        "query": st.one_of(st.just("vector(1)"), junk),
    },
    optional={
        "threshold": st.one_of(st.fixed_dictionaries({}, optional={"min": junk, "max": st.floats(-1, 2)}), junk),
        "compare": st.one_of(st.fixed_dictionaries({}, optional={"maxIncreasePercent": st.floats(-5, 50)}), junk),
    },
)  # fmt: skip
VALID: dict[str, Any] = {
    "targetRef": {"name": "web"},
    "freeThreaded": {"image": "example/app:3.14t"},
    "steps": [{"weight": 50, "pause": {"duration": "1s"}}, {"weight": 100, "pause": {}}],
}
FIELDS: dict[str, Any] = {
    "targetRef": st.one_of(
        st.fixed_dictionaries({"name": st.sampled_from(["web", "nope", ""])}), junk
    ),
    "freeThreaded": st.one_of(
        st.fixed_dictionaries(
            {"image": st.one_of(st.just("example/app:3.14t"), junk)},
            optional={"container": st.one_of(st.sampled_from(["app", "other"]), junk)},
        ),
        junk,
    ),
    "steps": st.one_of(st.lists(step, max_size=4), junk),
    "analysis": st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "interval": duration,
                "failureLimit": st.one_of(st.integers(-2, 5), junk),
                "onInconclusive": st.sampled_from(["Pause", "Rollback", "Promote"]),
                "metrics": st.lists(metric, max_size=2),
            },
        ),
        junk,
    ),
    "guardrails": st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "gilFallback": st.one_of(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "maxPods": st.integers(-1, 3),
                            "action": st.sampled_from(["Rollback", "Pause", "Explode"]),
                        },
                    ),
                    junk,
                ),
                "raceBudget": st.one_of(
                    st.fixed_dictionaries(
                        {}, optional={"maxIncidents": st.integers(-1, 3), "window": duration}
                    ),
                    junk,
                ),
            },
        ),
        junk,
    ),
    "paused": st.one_of(st.booleans(), junk),
    "unknownField": junk,
}


@st.composite
def specs(draw: Any) -> dict[str, Any]:
    """A valid spec with up to two of its fields replaced by random (often invalid) values."""
    out = copy.deepcopy(VALID)
    for key in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=2, unique=True)):
        out[key] = draw(FIELDS[key])
    return out


FIELD = re.compile(r"spec\.[A-Za-z]")  # the apiserver names the field: spec.steps[0].weight


def test_random_specs_are_rejected_with_a_field_or_handled(
    cluster: LocalCluster, namespace: str, operators: OperatorFactory
) -> None:
    ns = namespace
    ready_deployment(cluster, ns, 2)
    op = operators(ns)
    counter = itertools.count()
    outcomes = {"rejected": 0, "accepted": 0}
    phases: dict[str, int] = {}

    @settings(max_examples=30, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(specs())
    def check(s: dict[str, Any]) -> None:
        name = f"fuzz-{next(counter)}"
        doc = {
            "apiVersion": "freethreaded.dev/v1alpha1",
            "kind": "FreeThreadedRollout",
            "metadata": {"name": name},
            "spec": s,
        }
        proc = cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(doc), check=False)
        if proc.returncode != 0:
            outcomes["rejected"] += 1
            assert FIELD.search(proc.stderr), proc.stderr
            return
        outcomes["accepted"] += 1
        phase = wait_for(lambda: ftr_status(cluster, ns, name).get("phase"), 60,
                         f"a phase for {s}")  # fmt: skip
        assert phase in PHASES
        phases[phase] = phases.get(phase, 0) + 1
        if phase == "Failed":
            assert ftr_status(cluster, ns, name).get("message")
        cluster.kubectl("delete", "ftr", name, "-n", ns, "--wait=false", check=False)
        assert op.proc is not None
        assert op.proc.poll() is None, op.log_tail()

    check()
    assert op.proc is not None
    assert op.proc.poll() is None
    log = op.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert outcomes["accepted"] >= 3, outcomes  # the generator must exercise the operator too
    record("fuzzed-specs", **outcomes, phases=phases)
