"""Wilson interval and McNemar's exact test: published worked examples, statsmodels and scipy."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from evalkit.stats import discordant_pairs, mcnemar_exact, wilson_interval


@pytest.mark.parametrize("k,n,low,high", [
    # Newcombe 1998, Stat Med 17:857-872, Table II, method 3 (Wilson score, no continuity correction).
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0000, 0.1611), (1, 29, 0.0061, 0.1718),
])
def test_wilson_published_examples(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert (round(lo, 4), round(hi, 4)) == (low, high)


def test_wilson_equals_statsmodels():
    proportion = pytest.importorskip("statsmodels.stats.proportion")
    rng = np.random.default_rng(0)
    cases = [(0, 1), (1, 1), (0, 84), (84, 84), (42, 84)] + [(int(k), int(n)) for n in rng.integers(1, 5000, 60)
                                                               for k in [rng.integers(0, n + 1)]]
    for conf in (0.95, 0.9, 0.99):
        for k, n in cases:
            ref = proportion.proportion_confint(k, n, alpha=1 - conf, method="wilson")
            assert wilson_interval(k, n, conf) == pytest.approx(ref, abs=1e-12), (k, n, conf)


def test_wilson_bounds_and_errors():
    lo, hi = wilson_interval(0, 5)
    assert lo == 0.0 and 0 < hi < 1
    lo, hi = wilson_interval(5, 5)
    assert 0 < lo < 1 and hi == 1.0
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


def _pairs(b: int, c: int, both: int = 3, neither: int = 2) -> tuple[list[int], list[int]]:
    """Paired outcomes with b (x only right) and c (y only right) discordant pairs."""
    return [1] * b + [0] * c + [1] * both + [0] * neither, [0] * b + [1] * c + [1] * both + [0] * neither


def test_mcnemar_published_example():
    # Fagerland, Lydersen & Laake 2013 (BMC Med Res Methodol 13:91), Table 1: b = 1, c = 7, exact p = 0.070.
    x, y = _pairs(1, 7, both=1, neither=12)
    res = mcnemar_exact(x, y)
    assert discordant_pairs(x, y) == (1, 7)
    assert res.statistic == 1.0
    assert res.pvalue == pytest.approx(2 * (1 + 8) / 2 ** 8, abs=1e-15)  # 2 * P(X <= 1), X ~ Bin(8, 1/2)
    assert round(res.pvalue, 3) == 0.070


@pytest.mark.parametrize("b,c", [(0, 0), (0, 1), (3, 3), (5, 0), (2, 9), (10, 4), (25, 40), (130, 95), (400, 460)])
def test_mcnemar_equals_statsmodels_and_scipy(b, c):
    x, y = _pairs(b, c)
    res = mcnemar_exact(x, y)
    if b + c:
        assert res.pvalue == pytest.approx(sps.binomtest(c, b + c, 0.5).pvalue, rel=1e-10)
    else:
        assert res.pvalue == 1.0
    contingency = pytest.importorskip("statsmodels.stats.contingency_tables")
    ref = contingency.mcnemar([[3, b], [c, 2]], exact=True)
    assert res.statistic == ref.statistic
    assert res.pvalue == pytest.approx(ref.pvalue, rel=1e-10)


def test_mcnemar_rejects_non_binary_or_unpaired():
    with pytest.raises(ValueError):
        mcnemar_exact([0, 1, 2], [1, 1, 1])
    with pytest.raises(ValueError):
        mcnemar_exact([0, 1], [1, 1, 1])
