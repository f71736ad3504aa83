"""Equifinality analyses: distance clouds, the top-10 % PCA procedure, alternatives, priors in TOML."""

import numpy as np
import pytest

from bayescal.analysis.equifinality import (
    alternatives,
    constrained_directions,
    distance_score_cloud,
    identifiability,
    normalized_distance,
    seiler_alternatives,
    top_fraction_pca,
)
from bayescal.emulators import GPEmulator
from bayescal.parameters import Parameter, ParameterSpace
from bayescal.posterior import PosteriorError, Priors


def _fit(f, d=4, n=200, seed=0):
    X = np.random.default_rng(seed).random((n, d))
    return GPEmulator(random_state=0).fit(X, f(X)), X


def test_normalized_distance_is_eq18():
    u = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(normalized_distance(u, [0, 0, 0, 0]), [0.0, 1.0])
    np.testing.assert_allclose(normalized_distance(u[:1], [0.5, 0, 0, 0]), [0.25])


def test_distance_cloud_separates_unique_optimum_from_ridge():
    star = np.full(4, 0.5)
    bowl, _ = _fit(lambda x: ((x - 0.5) ** 2).sum(1))
    ridge, _ = _fit(lambda x: (x[:, 0] + x[:, 1] - 1.0) ** 2)  # optimum along a line; x2, x3 inert
    c_bowl = distance_score_cloud(bowl, star, n=5000, seed=1)
    c_ridge = distance_score_cloud(ridge, star, n=5000, seed=1)
    assert c_bowl.attrs["spearman"] > 0.9
    assert c_ridge.attrs["spearman"] < 0.5
    local = distance_score_cloud(bowl, star, n=2000, local=0.1, seed=1)
    assert float(local.distance.max()) <= 0.1 + 1e-12
    assert np.all(np.abs(local.u.values - 0.5) <= 0.1 + 1e-12)


def test_local_cloud_relative_to_range_or_value():
    """Seiler's ±10 % box: of each parameter's range, or of its value."""
    space = ParameterSpace([Parameter("a", 2.0, 1.0, 5.0), Parameter("b", 10.0, 0.0, 100.0)])
    gp, _ = _fit(lambda x: (x**2).sum(1), d=2, n=50)
    star = space.to_unit([2.0, 10.0])
    by_range = distance_score_cloud(gp, star, n=400, local=0.1, seed=0)
    x = space.from_unit(by_range.u.values)
    assert np.all(np.abs(x - [2.0, 10.0]) <= 0.1 * (space.upper - space.lower) + 1e-9)
    by_value = distance_score_cloud(gp, star, n=400, local=0.1, seed=0, relative_to="value", space=space)
    x = space.from_unit(by_value.u.values)
    assert np.all(np.abs(x - [2.0, 10.0]) <= 0.1 * np.array([2.0, 10.0]) + 1e-9)
    assert np.abs(x[:, 1] - 10.0).max() > 0.9  # the box is filled, not collapsed
    with pytest.raises(ValueError, match="needs the parameter space"):
        distance_score_cloud(gp, star, n=10, local=0.1, relative_to="value")


def test_top_fraction_pca_finds_the_trade_off():
    gp, X = _fit(lambda x: (x[:, 0] - x[:, 1]) ** 2 + 0.02 * x[:, 2], n=300)
    y = gp.predict(X)
    res = top_fraction_pca(gp, X, y, fraction=0.1, n=5000, seed=0)
    assert res.sizes["sample"] == 500
    first = res.loadings.sel(component=1).values
    # the leading direction is along x0 = x1 (both loadings large, same sign)
    assert abs(first[0]) > 0.5 and abs(first[1]) > 0.5 and first[0] * first[1] > 0
    assert np.all(res.box_lower.values >= 0) and np.all(res.box_upper.values <= 1)


def test_seiler_alternatives_are_the_five_best_of_the_top_ensemble():
    gp, X = _fit(lambda x: ((x - 0.3) ** 2).sum(1), n=200)
    res = top_fraction_pca(gp, X, gp.predict(X), fraction=0.1, n=2000, seed=1)
    assert np.all(np.diff(res.score_top.values) >= 0)  # best first
    np.testing.assert_allclose(res.score_top.values, gp.predict(res.u_top.values), rtol=1e-12)
    alt = seiler_alternatives(res, np.full(4, 0.3))
    np.testing.assert_array_equal(alt.u.values, res.u_top.values[:5])
    assert alt.score.values.max() <= np.quantile(res.score_top.values, 0.05) + 1e-12
    np.testing.assert_allclose(alt.distance.values, normalized_distance(alt.u.values, np.full(4, 0.3)))


def test_alternatives_are_distinct_and_near_optimal():
    rng = np.random.default_rng(2)
    u = rng.random((2000, 3))
    s = (u[:, 0] - u[:, 1]) ** 2
    alt = alternatives(u, s, k=5, tolerance=0.01)
    assert alt.sizes["alternative"] == 5
    assert np.all(alt.score.values <= s.min() + 0.01)
    assert alt.attrs["min_distance"] > 0.2
    with pytest.raises(ValueError, match="candidates within tolerance"):
        alternatives(u, s, k=5, tolerance=-1.0)


def test_identifiability_flags_constrained():
    rng = np.random.default_rng(0)
    post = np.column_stack([0.5 + 0.02 * rng.normal(size=4000), rng.random(4000)])
    t = identifiability(post, np.sqrt(1 / 12))
    assert t.constrained.values.tolist() == [True, False]
    assert t.ratio.values[1] == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_constrained_directions_find_a_pinned_combination_no_marginal_shows(seed):
    """A posterior that pins only the sum of 8 values (sd 0.05 of the prior's along it) and leaves
    every other direction at the prior's spread: each marginal keeps ~0.99 of its prior sd, so
    per-value identifiability sees nothing, but the analysis finds exactly one fixed direction,
    the equal-weight sum, with its sd ratio."""
    rng = np.random.default_rng(seed)
    d, n, psd = 8, 20000, np.sqrt(1 / 12)
    e = np.ones(d) / np.sqrt(d)
    q, _ = np.linalg.qr(np.column_stack([e, rng.standard_normal((d, d - 1))]))
    sd = np.r_[0.05, np.ones(d - 1)] * psd  # along e: 0.05 of the prior's; elsewhere the prior's
    post = 0.5 + (rng.standard_normal((n, d)) * sd) @ q.T
    assert not identifiability(post, psd).constrained.values.any()
    out = constrained_directions(post, psd)
    assert out.attrs["n_constrained"] == 1
    assert out.sd_ratio.values[0] == pytest.approx(0.05, rel=0.05)
    assert np.all(np.abs(out.sd_ratio.values[1:] - 1) < 0.05)
    assert np.abs(out.loadings.values[0] @ e) > 0.999
    np.testing.assert_allclose(out.loadings.values @ out.loadings.values.T, np.eye(d), atol=1e-10)
    # in prior-sd units: rescaling a value and its prior sd alike (another unit) changes nothing
    c = np.linspace(0.5, 4.0, d)
    again = constrained_directions(post * c, psd * c)
    np.testing.assert_allclose(again.sd_ratio.values, out.sd_ratio.values, rtol=1e-9)


def test_priors_from_toml(tmp_path):
    space = ParameterSpace(
        [Parameter("vmax", 50.0, 10.0, 100.0, groups=["A", "B"]), Parameter("q10", 2.0, 1.0, 3.0)]
    )
    path = tmp_path / "priors.toml"
    path.write_text(
        '[priors.vmax]\ndist = "truncnorm"\nmean = 40.0\nsd = 10.0\n'
        '[priors.q10]\ndist = "beta"\na = 2\nb = 2\n'
    )
    pr = Priors.from_toml(path, space)
    assert pr.kinds == ["truncnorm", "truncnorm", "beta"]
    path.write_text('[priors.vmax]\ndist = "gamma"\n')
    with pytest.raises(PosteriorError, match="priors.toml.*vmax.*dist must be one of"):
        Priors.from_toml(path, space)
