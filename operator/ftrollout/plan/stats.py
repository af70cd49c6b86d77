"""Two-sample statistics for the MannWhitney judge, pure and stdlib-only.

* Mann-Whitney U, two-sided, normal approximation with tie and continuity correction (what
  `scipy.stats.mannwhitneyu(x, y, method="asymptotic")` computes; the tests pin reference
  values scipy produced).
* Hodges-Lehmann estimate of the shift y - x: the median of all pairwise differences.
* Its distribution-free confidence interval: order statistics k and mn+1-k of the pairwise
  differences, k from the normal approximation of U's null distribution (Hollander & Wolfe,
  "Nonparametric Statistical Methods", 4.3).

Hand-written rather than scipy: scipy plus numpy install ~200 MB into the operator image for
these ~100 lines (README "Statistical judge").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist, median

_NORMAL = NormalDist()


@dataclass(frozen=True)
class MannWhitney:
    u: float  # U of the first sample (x), scipy's convention
    p: float  # two-sided


def ranks(values: Sequence[float]) -> tuple[list[float], float]:
    """Mid-ranks (1-based) of `values` and the tie term sum(t^3 - t) over groups of ties."""
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    ties = 0.0
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        mid = (i + j) / 2 + 1
        for k in range(i, j + 1):
            out[order[k]] = mid
        t = j - i + 1
        ties += t**3 - t
        i = j + 1
    return out, ties


def mann_whitney(x: Sequence[float], y: Sequence[float]) -> MannWhitney:
    """Two-sided Mann-Whitney U test of x against y (both non-empty)."""
    n1, n2 = len(x), len(y)
    r, ties = ranks([*x, *y])
    u1 = sum(r[:n1]) - n1 * (n1 + 1) / 2
    u2 = n1 * n2 - u1
    n = n1 + n2
    mu = n1 * n2 / 2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:  # every value tied: no evidence of any shift
        return MannWhitney(u1, 1.0)
    z = (max(u1, u2) - mu - 0.5) / math.sqrt(var)
    return MannWhitney(u1, min(1.0, max(0.0, 2 * (1 - _NORMAL.cdf(z)))))


def smallest_p(n1: int, n2: int) -> float:
    """The smallest two-sided p `mann_whitney` gives for samples of n1 and n2 (both > 0)
    without ties: that of two samples that do not overlap at all.

    Below it untied data has no power: at n1 = n2 = 3 it never goes under 0.08, so at a 95 %
    confidence level no shift of untied data, however large, is significant. Ties shrink the
    variance, so tied data can go lower (3 against 3, each track all one value: 0.047).
    """
    mu = n1 * n2 / 2
    z = (n1 * n2 - mu - 0.5) / math.sqrt(n1 * n2 / 12 * (n1 + n2 + 1))
    return min(1.0, max(0.0, 2 * (1 - _NORMAL.cdf(z))))


def samples_needed(confidence: float) -> int:
    """The fewest samples per side (equal sides, at least 3) with which the test can be
    significant at `confidence`: 4 at 0.95, 6 at 0.99, 8 at 0.999."""
    n = 3
    while smallest_p(n, n) >= 1 - confidence:
        n += 1
    return n


@dataclass(frozen=True)
class Shift:
    estimate: float  # Hodges-Lehmann: median of y_j - x_i
    low: float
    high: float


def hodges_lehmann(x: Sequence[float], y: Sequence[float], confidence: float) -> Shift:
    """The shift of y against x with its `confidence` interval (x, y non-empty)."""
    diffs = sorted(b - a for a in x for b in y)
    mn = len(diffs)
    z = _NORMAL.inv_cdf(1 - (1 - confidence) / 2)
    m, n = len(x), len(y)
    k = math.floor(mn / 2 - z * math.sqrt(m * n * (m + n + 1) / 12))
    k = min(max(k, 1), (mn + 1) // 2)  # tiny samples: the widest interval there is
    return Shift(median(diffs), diffs[k - 1], diffs[mn - k])
