"""Skill scores, misfits and likelihoods: analytic cases, monotonicity, invariants, errors."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

from bayescal.observations.products import Observations, Product, make_twin
from bayescal.operators.scores import (
    ScoreError,
    chi2_nbp,
    gaussian_loglik,
    product_scores,
    residuals,
    score,
)

N_CELL = 24


@pytest.fixture(scope="module")
def truth():
    """A reference field with spatial structure, a seasonal cycle and interannual variability."""
    rng = np.random.default_rng(0)
    time = pd.date_range("2000-01-01", "2009-12-01", freq="MS")
    month = time.month.to_numpy() - 1
    year = time.year.to_numpy() - 2000
    base = rng.uniform(1.0, 5.0, N_CELL)
    amp = rng.uniform(0.5, 2.0, N_CELL)
    peak = rng.integers(0, 12, N_CELL)
    iav = rng.normal(0, 0.3, (N_CELL, 10))
    data = (base[:, None] + amp[:, None] * np.cos(2 * np.pi * (month[None, :] - peak[:, None]) / 12)
            + iav[:, year])
    return xr.DataArray(
        data, dims=("cell", "time"),
        coords={"cell": np.arange(N_CELL), "time": time,
                "area": ("cell", rng.uniform(1.0, 3.0, N_CELL)),
                "biome": ("cell", np.array(["a", "b", "c"])[np.arange(N_CELL) % 3])},
        attrs={"units": "kg m-2 s-1"},
    )


def as_sim(members):
    """Stack DataArrays (cell, time) into a simulation Dataset on (member, cell, time)."""
    da = xr.concat(members, dim="member").assign_coords(member=np.arange(len(members)))
    return xr.Dataset({"gpp": da})


def prod(data, name="ref", sigma=None):
    return Product(name, "gpp", data, sigma)


def test_identical_scores_one(truth):
    s = product_scores(as_sim([truth]), prod(truth))
    np.testing.assert_allclose(s.values, 1.0, atol=1e-12)


def _strictly_decreasing(x):
    return np.all(np.diff(x) < 0)


def test_bias_score_falls_with_bias(truth):
    sim = as_sim([truth + k * 0.3 for k in range(6)])
    s = product_scores(sim, prod(truth))
    assert _strictly_decreasing(s.sel(score="bias").values)
    assert _strictly_decreasing(s.sel(score="overall").values)
    # a bias leaves the centred scores alone
    np.testing.assert_allclose(s.sel(score=["rmse", "phase", "iav"]).values, 1.0, atol=1e-12)


def test_phase_score_falls_with_phase_shift(truth):
    sim = as_sim([truth.roll(time=k, roll_coords=False) for k in range(7)])
    s = product_scores(sim, prod(truth)).sel(score="phase").values
    assert s[0] == pytest.approx(1.0)
    assert _strictly_decreasing(s)
    assert s[6] < 0.2


def test_rmse_and_iav_fall_with_amplitude_error(truth):
    mean = truth.mean("time")
    sim = as_sim([mean + (1 + 0.25 * k) * (truth - mean) for k in range(6)])
    s = product_scores(sim, prod(truth))
    assert _strictly_decreasing(s.sel(score="rmse").values)
    assert _strictly_decreasing(s.sel(score="iav").values)


def test_dist_score_falls_with_spatial_noise(truth):
    noise = xr.DataArray(np.random.default_rng(1).normal(0, 1, N_CELL), dims="cell")
    sim = as_sim([truth + k * 0.4 * noise for k in range(6)])
    s = product_scores(sim, prod(truth)).sel(score="dist").values
    assert s[0] == pytest.approx(1.0)
    assert _strictly_decreasing(s)


def test_between_two_products_scores_flat_and_worse_outside(truth):
    obs = Observations([prod(1.1 * truth, "high"), prod(0.9 * truth, "low")])
    inside = np.linspace(0.9, 1.1, 9)
    outside = np.array([0.7, 0.8, 1.2, 1.3])
    s = score(as_sim([f * truth for f in np.concatenate([inside, outside])]), obs)
    total = s["overall"].values
    flat = total[: inside.size]
    assert flat.max() - flat.min() < 0.02
    assert np.all(total[inside.size:] < flat.min() - 0.02)


def test_multi_product_structure_and_weights(truth):
    obs = Observations([prod(truth, "A"), prod(1.2 * truth, "B"),
                        Product("P", "lai", truth.assign_attrs(units="m2 m-2"))])
    sim = as_sim([truth, 1.1 * truth])
    sim["lai"] = sim["gpp"].assign_attrs(units="m2 m-2")
    s = score(sim, obs)
    assert s["scores"].dims == ("member", "variable", "product", "score")
    assert np.isnan(s["scores"].sel(variable="lai", product="A")).all()
    a = s["scores"].sel(variable="gpp", product="A", score="overall")
    b = s["scores"].sel(variable="gpp", product="B", score="overall")
    np.testing.assert_allclose(s["variable_score"].sel(variable="gpp"), (a + b) / 2)
    np.testing.assert_allclose(s["overall"], s["variable_score"].mean("variable"))
    only_a = score(sim, obs, product_weights={"gpp": {"A": 1.0, "B": 0.0}})
    np.testing.assert_allclose(only_a["variable_score"].sel(variable="gpp"), a)
    np.testing.assert_allclose(s["misfit"], 1 - s["overall"])


def test_seiler_weights_every_dataset_equally(truth):
    """Seiler: all datasets weighted equally, so GPP's two products count twice LAI's one."""
    obs = Observations([prod(truth, "A"), prod(1.2 * truth, "B"),
                        Product("P", "lai", truth.assign_attrs(units="m2 m-2"))])
    sim = as_sim([1.1 * truth, 0.8 * truth])
    sim["lai"] = (0.9 * sim["gpp"]).assign_attrs(units="m2 m-2")
    by_var = score(sim, obs)
    by_set = score(sim, obs, weighting="datasets")
    o = by_var["scores"].sel(score="overall")
    a, b, p = (o.sel(variable=v, product=n) for v, n in (("gpp", "A"), ("gpp", "B"), ("lai", "P")))
    np.testing.assert_allclose(by_set["overall"], (a + b + p) / 3, rtol=1e-12)
    np.testing.assert_allclose(by_var["overall"], ((a + b) / 2 + p) / 2, rtol=1e-12)
    assert not np.allclose(by_set["overall"], by_var["overall"])
    with pytest.raises(ScoreError, match="weighting"):
        score(sim, obs, weighting="products")


def test_failed_member_stays_nan(truth):
    sim = as_sim([truth, truth * np.nan])
    s = score(sim, [prod(truth)])
    assert s["overall"].values[0] == pytest.approx(1.0)
    assert np.isnan(s["overall"].values[1])


def test_nans_in_products_are_masked(truth):
    gappy = truth.where(np.random.default_rng(2).random(truth.shape) > 0.2)
    s = product_scores(as_sim([truth, truth + 0.5]), prod(gappy))
    assert np.isfinite(s.values).all()
    np.testing.assert_allclose(s.isel(member=0).values, 1.0, atol=1e-12)


def test_alignment_is_by_coordinates(truth):
    # a product over a subset of cells and reordered times scores the same as the matching subset
    sub = truth.isel(cell=slice(3, 15)).isel(time=slice(None, None, -1))
    sim = as_sim([truth + 0.2])
    a = product_scores(sim, prod(sub))
    b = product_scores(as_sim([(truth + 0.2).isel(cell=slice(3, 15))]), prod(truth.isel(cell=slice(3, 15))))
    np.testing.assert_allclose(a.values, b.values, rtol=1e-12)


def test_errors_name_product_and_variable(truth):
    sim = as_sim([truth])
    shifted = truth.assign_coords(cell=truth.cell + 100)
    with pytest.raises(ScoreError, match="product 'ref' of variable 'gpp': 24 cell coordinate"):
        product_scores(sim, prod(shifted))
    with pytest.raises(ScoreError, match="has no 'time' dimension"):
        product_scores(sim, prod(truth.isel(time=0, drop=True)))
    with pytest.raises(ScoreError, match="units 'g m-2 d-1' differ from the simulation's 'kg m-2 s-1'"):
        product_scores(sim, prod(truth.assign_attrs(units="g m-2 d-1")))
    with pytest.raises(ScoreError, match="simulation has no variable 'lai'"):
        product_scores(sim, Product("M", "lai", truth))
    with pytest.raises(ValueError, match="all NaN"):
        prod(truth * np.nan)
    with pytest.raises(ScoreError, match="unknown scores"):
        product_scores(sim, prod(truth), score_weights={"bias2": 1})


def test_a_product_of_years_on_a_monthly_simulation_is_warned_of(truth):
    """Annual means stamped 1 January would be scored against January alone: said; monthly
    values (also a product with gaps) are not."""
    import warnings

    sim = as_sim([truth])
    annual = truth.resample(time="YS").mean().assign_attrs(truth.attrs)
    with pytest.warns(UserWarning, match=r"'ref' of variable 'gpp': its values are 365 days apart .* "
                                         r"compared with the simulation's month at its time stamp alone"):
        product_scores(sim, prod(annual))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        product_scores(sim, prod(truth))
        product_scores(sim, prod(truth.where(truth["time.month"] % 3 != 0)))
        product_scores(sim, prod(truth.isel(time=slice(None, None, 2))))  # every other month


def test_residuals_zero_at_truth_and_invariant_to_splitting(truth):
    obs = [prod(truth)]
    sim = as_sim([truth, 1.1 * truth]).assign_coords(area=truth.area, biome=truth.biome)
    r = residuals(sim, obs)
    assert r.sizes["residual"] == 3
    np.testing.assert_allclose(r.isel(member=0), 0.0, atol=1e-15)
    assert float(r.isel(member=1).min()) > 0
    # split cell 0 into two identical cells of half its area
    split = xr.concat([truth, truth.isel(cell=[0])], dim="cell")
    area = split.area.values.copy()
    area[0] /= 2
    area[-1] = area[0]
    split = split.assign_coords(cell=np.arange(N_CELL + 1), area=("cell", area))
    sim2 = as_sim([split, 1.1 * split]).assign_coords(area=split.area, biome=split.biome)
    r2 = residuals(sim2, [prod(split)])
    np.testing.assert_allclose(r2.values, r.values, rtol=1e-12)


def test_gaussian_loglik_matches_scipy():
    rng = np.random.default_rng(3)
    time = pd.date_range("2001-01-01", periods=4, freq="MS")
    y = xr.DataArray(rng.normal(2, 1, (3, 4)), dims=("cell", "time"),
                     coords={"cell": [0, 1, 2], "time": time}, attrs={"units": "1"})
    y[1, 2] = np.nan
    sig = xr.full_like(y, 0.5)
    m = y.fillna(0) + rng.normal(0, 0.3, (3, 4))
    sim = xr.Dataset({"lai": m.expand_dims(member=[0]).assign_attrs(units="1")})
    ll = gaussian_loglik(sim, [Product("P", "lai", y, sig)], discrepancy={"lai": 0.2})
    mask = np.isfinite(y.values)
    expected = stats.norm.logpdf(y.values[mask], m.values[mask], np.sqrt(0.5**2 + 0.2**2)).sum()
    assert float(ll["loglik"][0]) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ScoreError, match="has no sigma"):
        gaussian_loglik(sim, [Product("Q", "lai", y)])


def test_chi2_nbp_against_gcb():
    from bayescal.observations.gcb import load_gcb2024

    g = load_gcb2024()
    sim = xr.Dataset({"nbp_global": (g.nbp + xr.DataArray([0.0, 1.0], dims="member")).assign_attrs(
        units="PgC yr-1")})
    chi2 = chi2_nbp(sim)
    assert float(chi2[0]) == pytest.approx(0.0, abs=1e-20)
    assert float(chi2[1]) == pytest.approx(float((1 / g.nbp_sigma**2).sum()), rel=1e-12)
    assert chi2.attrs["n_years"] == 65
    with pytest.raises(ScoreError, match="share no year"):
        chi2_nbp(sim.assign_coords(year=sim.year + 500))


@pytest.mark.slow
def test_twin_truth_beats_defaults(small_model):
    space = small_model.space
    truth_theta = space.all_default.copy()
    for i, lab in enumerate(space.all_labels):
        if lab.startswith(("vmax[", "kn[")):
            truth_theta[i] = space.all_lower[i] + 0.7 * (space.all_upper[i] - space.all_lower[i])
    obs, _ = make_twin(small_model, truth_theta, seed=0)
    obs = Observations([p for p in obs if p.data.sizes["time"] > 0])
    sim = small_model.simulate(np.stack([truth_theta, space.all_default]))
    s = score(sim, obs)
    assert float(s["overall"][0]) > float(s["overall"][1])
    assert float(s["variable_score"].sel(variable="gpp")[0]) > float(
        s["variable_score"].sel(variable="gpp")[1])
