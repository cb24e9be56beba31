"""Inter-rater statistics: published worked examples and parity with the reference libraries.

Krippendorff's alpha: Krippendorff (2011) "Computing Krippendorff's Alpha-Reliability", section C (4
observers, 12 units, missing values) and the `krippendorff` package. ICC: Shrout & Fleiss (1979),
Table 2 data and Table 4 values, and `pingouin.intraclass_corr`. Weighted kappa: scikit-learn's
`cohen_kappa_score`.
"""
from __future__ import annotations

import numpy as np
import pytest

from evalkit.icc import icc2
from evalkit.kappa import weighted_kappa
from evalkit.krippendorff import alpha_bootstrap_ci, krippendorff_alpha

NAN = np.nan
# Krippendorff (2011), section C: observers A-D (rows) x units 1-12 (columns); nan = no value.
KRIPPENDORFF_2011 = [[1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
                     [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
                     [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
                     [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN]]
# Shrout & Fleiss (1979), Table 2: 6 targets (rows) x 4 judges (columns).
SHROUT_FLEISS = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]


@pytest.mark.parametrize("level,published", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)])
def test_krippendorff_2011_worked_example(level, published):
    assert krippendorff_alpha(KRIPPENDORFF_2011, level) == pytest.approx(published, abs=5e-4)


def test_krippendorff_2011_coincidences_by_hand():
    # Section C: unit 12 has one value and is not pairable; 40 pairable values remain (n = 40).
    ci = alpha_bootstrap_ci(KRIPPENDORFF_2011, "nominal", 10)
    assert (ci.n_units, ci.n_values) == (11, 40)


def _random_data(rng, levels=5):
    raters, units = rng.integers(2, 7), rng.integers(2, 60)
    x = rng.integers(1, levels + 1, size=(raters, units)).astype(float)
    x[rng.random(x.shape) < rng.uniform(0, 0.5)] = NAN
    return x


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_alpha_equals_krippendorff_package(level):
    krippendorff = pytest.importorskip("krippendorff")
    rng = np.random.default_rng(7)
    compared = 0
    for _ in range(300):
        x = _random_data(rng)
        ours = krippendorff_alpha(x, level)
        try:
            with np.errstate(all="ignore"):
                ref = krippendorff.alpha(reliability_data=x, level_of_measurement=level)
        except (ValueError, ZeroDivisionError):
            continue  # the package refuses data with fewer than two values in the domain
        if np.isnan(ref):
            assert np.isnan(ours)
            continue
        assert ours == pytest.approx(ref, abs=1e-10)
        compared += 1
    assert compared > 250


def test_alpha_with_the_scale_given_and_unused_values():
    x = np.array([[1, 2, 2, 3], [1, 2, 3, 3]], dtype=float)
    for level in ("nominal", "ordinal", "interval"):
        assert krippendorff_alpha(x, level, values=range(1, 6)) == pytest.approx(krippendorff_alpha(x, level))


def test_alpha_undefined_cases():
    assert np.isnan(krippendorff_alpha([[3, 3, 3], [3, 3, 3]], "ordinal"))  # one value only: D_e = 0
    assert np.isnan(krippendorff_alpha([[1, NAN], [NAN, 2]], "ordinal"))   # no pairable unit
    assert krippendorff_alpha([[1, 2, 3], [1, 2, 3]], "ordinal") == 1.0      # perfect agreement
    with pytest.raises(ValueError):
        krippendorff_alpha([1, 2, 3])
    with pytest.raises(ValueError):
        krippendorff_alpha([[1, 9]], values=range(1, 6))


def test_bootstrap_ci_replays_with_the_reference_library():
    """The interval equals the percentile interval of the reference alpha on the same resampled units."""
    krippendorff = pytest.importorskip("krippendorff")
    x = np.array(KRIPPENDORFF_2011)
    pairable = x[:, (~np.isnan(x)).sum(axis=0) >= 2]
    n_resamples, seed = 300, 11
    ci = alpha_bootstrap_ci(x, "ordinal", n_resamples, seed=seed)
    idx = np.random.default_rng(seed).integers(0, pairable.shape[1], size=(n_resamples, pairable.shape[1]))
    ref = []
    for row in idx:
        with np.errstate(all="ignore"):
            try:
                ref.append(krippendorff.alpha(reliability_data=pairable[:, row], level_of_measurement="ordinal",
                                              value_domain=[1, 2, 3, 4, 5]))
            except ValueError:
                ref.append(np.nan)
    ref = np.array(ref)
    ref = ref[~np.isnan(ref)]
    assert ci.n_resamples == len(ref)
    assert (ci.low, ci.high) == pytest.approx(tuple(np.quantile(ref, [0.025, 0.975])), abs=1e-10)
    assert ci.low <= ci.alpha <= ci.high
    assert alpha_bootstrap_ci(x, "ordinal", n_resamples, seed=seed) == ci  # seeded: reproducible


def test_shrout_fleiss_1979_table_4():
    r = icc2(SHROUT_FLEISS)
    assert (r.n, r.k) == (6, 4)
    assert r.icc2_1 == pytest.approx(0.29, abs=0.005)  # Table 4, ICC(2,1)
    assert r.icc2_k == pytest.approx(0.62, abs=0.005)  # Table 4, ICC(2,4)
    # Table 3's mean squares: BMS 11.24, JMS 32.49, EMS 1.02
    assert (r.bms, r.jms, r.ems) == pytest.approx((11.24, 32.49, 1.02), abs=0.005)


@pytest.mark.filterwarnings("ignore:The inplace keyword")  # pingouin on pandas 3
def test_icc_equals_pingouin():
    pd = pytest.importorskip("pandas")
    pg = pytest.importorskip("pingouin")
    rng = np.random.default_rng(3)
    for _ in range(40):
        n, k = rng.integers(3, 30), rng.integers(2, 6)
        x = rng.integers(1, 6, size=(n, k)) + rng.integers(0, 4, size=(n, 1))
        ours = icc2(x)
        df = pd.DataFrame([(i, j, x[i, j]) for i in range(n) for j in range(k)], columns=["t", "r", "s"])
        ref = pg.intraclass_corr(df, "t", "r", "s").set_index("Type")
        single = "ICC(A,1)" if "ICC(A,1)" in ref.index else "ICC2"
        average = "ICC(A,k)" if "ICC(A,k)" in ref.index else "ICC2k"
        assert ours.icc2_1 == pytest.approx(ref.loc[single, "ICC"], abs=1e-10)
        assert ours.icc2_k == pytest.approx(ref.loc[average, "ICC"], abs=1e-10)
        # pingouin rounds its intervals to 2 decimals
        assert ours.ci2_1 == pytest.approx(tuple(ref.loc[single, "CI95"]), abs=0.0051)
        assert ours.ci2_k == pytest.approx(tuple(ref.loc[average, "CI95"]), abs=0.0051)


def test_icc_input_checks():
    with pytest.raises(ValueError):
        icc2([[1, 2, 3]])
    with pytest.raises(ValueError):
        icc2([[1, NAN], [2, 3]])
    assert np.isnan(icc2([[3, 3], [3, 3]]).icc2_1)


@pytest.mark.parametrize("weights,sk", [("quadratic", "quadratic"), ("linear", "linear"), ("none", None)])
def test_weighted_kappa_equals_scikit_learn(weights, sk):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(5)
    for _ in range(300):
        n = rng.integers(2, 80)
        a = rng.integers(1, 6, size=n)
        b = np.clip(a + rng.integers(-2, 3, size=n), 1, 5)
        ref = metrics.cohen_kappa_score(a, b, labels=[1, 2, 3, 4, 5], weights=sk)
        ours = weighted_kappa(a, b, range(1, 6), weights)
        if np.isnan(ref):
            assert np.isnan(ours)
        else:
            assert ours == pytest.approx(ref, abs=1e-12)


def test_weighted_kappa_by_hand():
    # Two raters, three units: (1, 1), (2, 3), (3, 3). O has 1/3 on (1,1), (2,3), (3,3); margins
    # a = (1/3, 1/3, 1/3), b = (1/3, 0, 2/3). Quadratic w = (i - j)^2: sum w O = 1/3 (the (2,3) cell);
    # sum w E = sum_i a_i sum_j w_ij b_j = (1/3) (8/3 + 1 + 4/3) = 5/3; kappa = 1 - (1/3) / (5/3) = 0.8.
    assert weighted_kappa([1, 2, 3], [1, 3, 3], [1, 2, 3]) == pytest.approx(0.8)
    assert weighted_kappa([1, 2, 3], [1, 2, 3]) == 1.0
    assert np.isnan(weighted_kappa([2, 2], [2, 2]))
    with pytest.raises(ValueError):
        weighted_kappa([1, 2], [1])
