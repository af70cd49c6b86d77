"""The MannWhitney judge's statistics against reference values computed once with
scipy 1.17.1 (`scipy.stats.mannwhitneyu(x, y, method="asymptotic")`), which the project
does not depend on."""

from __future__ import annotations

import random

import pytest

from ftrollout.plan.stats import hodges_lehmann, mann_whitney, ranks, samples_needed, smallest_p

SCIPY = [
    # (x, y, U of x, two-sided p) as scipy computed them
    ([1, 2, 2, 3, 3, 3, 4, 5], [2, 3, 4, 4, 5, 6, 6, 7, 8], 13.0, 0.028372715346028934),
    (
        [
            96.504,
            102.831,
            100.975,
            85.732,
            86.927,
            92.794,
            92.027,
            102.217,
            109.042,
            93.316,
            83.637,
            87.73,
        ],
        [109.196, 106.05, 95.586, 110.967, 97.343, 103.928, 124.331, 94.823, 108.83, 111.102],
        17.0,
        0.005072912660238282,
    ),
    (
        [10.0, 11, 12, 13, 14, 15, 16, 17],
        [10.5, 11.5, 12.5, 13.5, 14.5, 15.5, 16.5, 17.5],
        28.0,
        0.713191261016072,
    ),
    ([1.0, 2, 3, 4, 5, 6, 7, 8], [11.0, 12, 13, 14, 15, 16, 17, 18], 0.0, 0.0009391056991171899),
]


@pytest.mark.parametrize(("x", "y", "u", "p"), SCIPY)
def test_mann_whitney_matches_scipy(x: list[float], y: list[float], u: float, p: float) -> None:
    r = mann_whitney(x, y)
    assert r.u == u
    assert r.p == pytest.approx(p, rel=1e-9)


def test_all_tied_is_no_evidence() -> None:
    assert mann_whitney([3.0] * 8, [3.0] * 8).p == 1.0


def test_mid_ranks_and_tie_term() -> None:
    assert ranks([5.0, 1.0, 5.0, 2.0]) == ([3.5, 1.0, 3.5, 2.0], 6.0)


def test_hodges_lehmann_is_the_median_pairwise_difference() -> None:
    s = hodges_lehmann([1.0, 2.0, 3.0], [11.0, 12.0, 14.0], 0.95)
    # differences: 10 9 8 / 11 10 9 / 13 12 11 -> median 10
    assert s.estimate == 10.0
    assert s.low <= s.estimate <= s.high
    assert (s.low, s.high) == (8.0, 13.0)  # 3x3 is too small for any narrower interval


def test_interval_from_order_statistics() -> None:
    x = [float(i) for i in range(10)]
    y = [float(i) + 100 for i in range(10)]
    s = hodges_lehmann(x, y, 0.95)
    # k = floor(50 - 1.96 * sqrt(100 * 21 / 12)) = floor(24.07) = 24; differences 91..109
    diffs = sorted(b - a for a in x for b in y)
    assert (s.low, s.high) == (diffs[23], diffs[76])
    assert s.estimate == 100.0


def test_interval_covers_the_true_shift_at_the_stated_rate() -> None:
    # Seeded, so deterministic: 400 trials of lognormal samples with a known 5 % shift.
    rnd = random.Random(20)
    covered = 0
    trials = 400
    for _ in range(trials):
        x = [rnd.lognormvariate(0, 0.2) * 100 for _ in range(15)]
        noise = [rnd.lognormvariate(0, 0.2) * 100 for _ in range(15)]
        y = [v + 5 for v in noise]  # a pure location shift of +5
        s = hodges_lehmann(x, y, 0.9)
        covered += s.low <= 5 <= s.high
    assert 0.85 <= covered / trials <= 0.96


@pytest.mark.parametrize(("n1", "n2"), [(3, 3), (4, 4), (7, 7), (8, 8), (3, 40), (20, 5)])
def test_smallest_p_is_that_of_two_separated_samples(n1: int, n2: int) -> None:
    x = [float(i) for i in range(n1)]
    y = [float(n1 + i) for i in range(n2)]
    assert smallest_p(n1, n2) == pytest.approx(mann_whitney(x, y).p, rel=1e-12)
    assert smallest_p(n1, n2) == pytest.approx(mann_whitney(y, x).p, rel=1e-12)


def test_smallest_p_matches_scipy_for_eight_per_side() -> None:
    # The last SCIPY case is two separated samples of 8.
    assert smallest_p(8, 8) == pytest.approx(0.0009391056991171899, rel=1e-9)


@pytest.mark.parametrize(
    ("confidence", "n"), [(0.5, 3), (0.9, 3), (0.95, 4), (0.99, 6), (0.995, 7), (0.999, 8)]
)
def test_samples_needed_per_side(confidence: float, n: int) -> None:
    assert samples_needed(confidence) == n
    assert smallest_p(n, n) < 1 - confidence
    assert n == 3 or smallest_p(n - 1, n - 1) >= 1 - confidence
