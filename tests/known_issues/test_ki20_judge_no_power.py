"""minSamples may be 3 (CRD 3..1000), but with 3 samples per track the two-sided
Mann-Whitney p-value cannot go below ~0.08: at confidence 0.95 (default) the judge can never
say Failed, and a +100 % regression is judged Successful (which advances the step), not
Inconclusive. Same for n < 8 at confidence 0.999 (min p at n=7 is ~0.002)."""

from __future__ import annotations

import pytest

from ftrollout.model import api
from ftrollout.plan import metrics


@pytest.mark.parametrize(("n", "confidence"), [(3, 0.95), (7, 0.999)])
def test_doubling_with_min_samples_is_not_successful(n: int, confidence: float) -> None:
    m = api.Metric.model_validate(
        {
            "name": "p99",
            "query": "q",
            "compare": {
                "judge": "MannWhitney",
                "maxIncreasePercent": 2,
                "minSamples": n,
                "confidence": confidence,
            },
        }
    )
    std = metrics.Samples(tuple(100.0 + i for i in range(n)))
    ft = metrics.Samples(tuple(200.0 + i for i in range(n)))  # +100 %, perfectly separated
    r = metrics.judge_samples(m, ft, std, "2025-01-01T00:00:00Z")
    assert r.phase != "Successful", r.message
