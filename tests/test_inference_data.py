"""Complete InferenceData under ArviZ 0.2x and 1.x: saved, reloaded, and read by ArviZ itself.

Run in both lines (CI: Python 3.11 with ArviZ 0.23, and ArviZ 1.3): ``az.loo``, ``az.summary``,
``az.plot_trace`` and the PPC plot (``az.plot_ppc`` on 0.2x, ``az.plot_ppc_dist`` on 1.x) on the
saved file.
"""

import warnings

import matplotlib

matplotlib.use("Agg")

import arviz as az  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

from bayescal.observations.products import Product  # noqa: E402
from bayescal.operators.timeseries import SeriesLikelihood, SeriesOperator  # noqa: E402
from bayescal.parameters import Parameter, ParameterSpace  # noqa: E402
from bayescal.posterior import (  # noqa: E402
    GaussianLikelihood,
    PosteriorSampler,
    PosteriorWarning,
    diagnose,
    get_group,
    group_names,
    load_inference_data,
    save_inference_data,
    unit_samples,
)
from bayescal.posterior.inference_data import ARVIZ_1, family_dataset, make_inference_data  # noqa: E402
from bayescal.posterior.site_calibration import sample_posterior, series_log_likelihood  # noqa: E402

pytestmark = pytest.mark.arviz

GROUPS = {"posterior", "sample_stats", "log_likelihood", "posterior_predictive", "observed_data", "prior",
          "constant_data"}


def _elpd(loo) -> float:
    """elpd_loo of ``az.loo``'s result: ``.elpd`` in ArviZ 1.x, ``["elpd_loo"]`` in 0.2x."""
    return float(loo.elpd if hasattr(loo, "elpd") else loo["elpd_loo"])


def _space():
    return ParameterSpace([
        Parameter("a", 1.0, 0.0, 2.0, units="gC m-2 d-1", description="slope"),
        Parameter("b", [0.5, 0.5], [0.0, 0.0], [1.0, 1.0], units="1", groups=["x", "y"]),
    ])


def _global_posterior(seed=0):
    space = _space()
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(5, 3))
    y = A @ np.array([0.5, 0.4, 0.6]) + 0.05 * rng.normal(size=5)
    labels = [f"gpp:{b}" for b in ("boreal", "temperate", "tropical")] + ["nbp_global:1960-1969",
                                                                          "nbp_global:1970-1979"]
    like = GaussianLikelihood(
        lambda u: u @ A.T, y, 0.05, dim="summary",
        coords={"summary": labels, "variable": ["gpp"] * 3 + ["nbp_global"] * 2,
                "region": ["boreal", "temperate", "tropical", "1960-1969", "1970-1979"]},
        units=["ln(gC m-2 d-1)"] * 3 + ["PgC yr-1"] * 2)
    ps = PosteriorSampler(like, space, n_walkers=16, seed=seed).run(1500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PosteriorWarning)
        return ps, ps.to_inference_data(n_prior=200)


def test_families_over_the_same_groups_share_their_dimension():
    """Per-PFT families share ``pft`` (one PFT's values of every family by one ``sel``; a table has
    a column per value, not the product of every family's groups); pft2 families share ``pft2``,
    a custom list its first family's ``<family>_group``; the values come back as they went in,
    also from a file of the earlier layout (a dimension per family)."""
    space = ParameterSpace([
        Parameter("vmax", np.full(9, 50.0), np.full(9, 10.0), np.full(9, 90.0), groups="pft9"),
        Parameter("kn", np.full(9, 0.5), np.zeros(9), np.ones(9), groups="pft9"),
        Parameter("cold", [1.0, 2.0], [0.0, 0.0], [3.0, 3.0], groups="pft2"),
        Parameter("c", [0.5, 0.5], [0.0, 0.0], [1.0, 1.0], groups=["x", "y"]),
        Parameter("d", [0.5, 0.5], [0.0, 0.0], [1.0, 1.0], groups=["x", "y"]),
        Parameter("e", 1.0, 0.0, 2.0)]).only(["vmax", "kn", "cold", "c", "d", "e"])
    u = np.random.default_rng(0).random((4, 50, space.n_free))
    ds = family_dataset(space, u)
    assert {v: ds[v].dims[2:] for v in ds.data_vars} == {
        "vmax": ("pft",), "kn": ("pft",), "cold": ("pft2",), "c": ("c_group",), "d": ("c_group",), "e": ()}
    one = ds.sel(pft="NDL-EVG")
    assert float(one["vmax"][1, 3]) == pytest.approx(10.0 + 80.0 * u[1, 3, 0])
    assert float(one["kn"][1, 3]) == pytest.approx(u[1, 3, 9])
    assert ds.to_dataframe().shape[0] == 4 * 50 * 9 * 2 * 2  # the groups' product, no family's own
    np.testing.assert_allclose(unit_samples(make_inference_data({"posterior": ds}), space).values,
                               u.reshape(-1, space.n_free), atol=1e-12)
    old = xr.Dataset({v: ds[v].rename({d: f"{v}_group" for d in ds[v].dims[2:]}) for v in ds.data_vars})
    old = old.drop_vars([c for c in ("pft", "pft2") if c in old.coords])
    np.testing.assert_allclose(unit_samples(make_inference_data({"posterior": old}), space).values,
                               u.reshape(-1, space.n_free), atol=1e-12)


def test_saved_posterior_is_complete_and_arviz_reads_it(tmp_path):
    ps, idata = _global_posterior()
    path = save_inference_data(idata, tmp_path / "posterior" / "posterior.nc")
    assert not list(path.parent.glob(".*tmp"))  # the temporary file is gone
    saved = load_inference_data(path)
    assert GROUPS <= set(group_names(saved))
    post, obs = get_group(saved, "posterior"), get_group(saved, "observed_data")
    assert post.attrs["n_steps"] == 1500 and post["a"].attrs["units"] == "gC m-2 d-1"
    assert post["b"].dims == ("chain", "draw", "b_group")
    assert obs["y"].dims == ("summary",) and list(obs["summary"].values)[0] == "gpp:boreal"
    assert list(obs["units"].values)[-1] == "PgC yr-1" and obs["y"].attrs["units"]
    ll, pp = get_group(saved, "log_likelihood")["y"], get_group(saved, "posterior_predictive")["y"]
    assert ll.dims == pp.dims == ("chain", "draw", "summary")
    assert ll.sizes["chain"] == post.sizes["chain"] and ll.sizes["draw"] == post.sizes["draw"]
    # the pointwise terms sum to the sampled log-likelihood, draw by draw
    np.testing.assert_allclose(ll.sum("summary").values, get_group(saved, "sample_stats")["loglik"].values,
                               rtol=1e-10, atol=1e-9)
    # predictive draws scatter about the observations by about sigma
    resid = (pp - obs["y"]).values
    assert 0.03 < resid.std() < 0.2
    const = get_group(saved, "constant_data")
    assert set(const.data_vars) >= {"lower", "upper", "sigma", "discrepancy"}
    np.testing.assert_array_equal(unit_samples(saved, ps.space).values, unit_samples(idata, ps.space).values)

    # ArviZ itself on the saved file (not the in-memory object)
    loaded = az.from_netcdf(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        loo = az.loo(loaded)
    assert np.isfinite(_elpd(loo))
    summ = az.summary(loaded)
    assert any("a" == str(i) for i in summ.index) and "r_hat" in summ.columns
    import matplotlib.pyplot as plt

    az.plot_trace(loaded)
    if ARVIZ_1:
        az.plot_ppc_dist(loaded, num_samples=50)
    else:
        az.plot_ppc(loaded, num_pp_samples=50)
    plt.close("all")
    # R-hat/ESS of the saved file
    diag = diagnose(loaded, rhat_max=2.0, ess_min=0)
    assert list(diag["parameter"].values) == ["a", "b[x]", "b[y]"]
    assert (diag["r_hat"] < 1.2).all() and (diag["ess_bulk"] > 50).all()
    # the posterior group itself, as a user takes it: a Dataset on 0.2x, a DataTree node on 1.x
    group = loaded.posterior
    xr.testing.assert_identical(diagnose(group, rhat_max=2.0, ess_min=0), diag)
    np.testing.assert_array_equal(unit_samples(group, ps.space).values, unit_samples(saved, ps.space).values)
    if ARVIZ_1:  # a node knows its name: another group is refused, not read as the posterior
        with pytest.raises(KeyError, match="group 'sample_stats', not 'posterior'"):
            diagnose(loaded.sample_stats)


def _toy_site(kill_at=None):
    """A monthly NEE series, its AR(1) likelihood and a one-parameter model of it."""
    time = pd.date_range("2000-01-01", "2001-12-31", freq="D")
    rng = np.random.default_rng(1)
    truth = 2.0 + np.sin(np.arange(time.size) / 58.0)
    nee = xr.DataArray(truth + 0.2 * rng.normal(size=time.size), dims="time", coords={"time": time},
                       attrs={"units": "gC m-2 d-1"})
    nee[rng.choice(time.size, 40, replace=False)] = np.nan
    sig = xr.full_like(nee, 0.2)
    op = SeriesOperator([Product("FLUX-NEE", "nee", nee, sig)], time.values, (2000, 2001),
                        aggregate="monthly")
    space = ParameterSpace([Parameter("k", 1.0, 0.5, 1.5, units="1", description="scale")])

    def values(u):
        k = space.from_unit(np.atleast_2d(u))[:, :1]
        return op.of_model(xr.Dataset({"nee": (("member", "time"), k * truth[None])},
                                      coords={"time": time}))

    calls = {"n": 0}

    def killable(u):
        calls["n"] += 1
        if calls["n"] == kill_at:
            raise KeyboardInterrupt("killed")
        return values(u)

    return series_log_likelihood(killable, SeriesLikelihood(op, np.array([0.05]), np.array([0.3]))), space


def test_moves_are_described_by_their_settings_not_their_addresses():
    from bayescal.posterior import DESubspaceMove
    from bayescal.posterior.sampler import default_moves, describe_moves

    assert describe_moves(default_moves()) == describe_moves(None) == "DEMove 0.8 / StretchMove 0.2"
    a, b = (describe_moves([(DESubspaceMove(scale=0.25), 1.0)]) for _ in range(2))
    assert a == b and a.startswith("DESubspaceMove(scale=0.25,") and "0x" not in a


def test_site_series_posterior_has_time_and_variable(tmp_path):
    like, space = _toy_site()
    ps = sample_posterior(like, space, np.array([0.5]), n_walkers=8, n_steps=600, seed=2,
                          backend=tmp_path / "chain.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PosteriorWarning)
        idata = ps.to_inference_data(n_prior=100, max_draws=200)
    assert get_group(idata, "posterior").sizes["draw"] * 8 <= 200
    path = save_inference_data(idata, tmp_path / "posterior.nc")
    saved = load_inference_data(path)
    assert GROUPS <= set(group_names(saved))
    obs = get_group(saved, "observed_data")["y"]
    assert obs.dims == ("observation",) and obs.sizes["observation"] == 24
    # the site route's default moves, by their settings: the same text on every run (no address);
    # the adaptation (the first 300 of the 600 steps: DE alone to step 37, then refits) by its
    # own, and none of it among the draws
    attrs = get_group(saved, "posterior").attrs
    de = "DESubspaceMove(scale=0.5, crossover=(0.333, 0.667, 1), jump=0.1, sigma=1e-06)"
    assert attrs["moves"] == f"IndependenceMove(n_components=4, df=5, inflate=1.2, seed=2) 0.5 / {de} 0.5"
    assert attrs["adaptation"] == f"{de} 1 to step 37, then the moves refitted at steps 37, 75, 150, 300"
    assert attrs["adaptation_steps"] == 300 and attrs["burn"] >= 300
    assert {"time", "variable", "product", "units"} <= set(obs.coords)
    assert str(obs["time"].values[0])[:10] == "2000-01-01" and obs["variable"].values[0] == "nee"
    assert obs.attrs["units"] == "gC m-2 d-1"
    ll = get_group(saved, "log_likelihood")["y"]
    loglik = get_group(saved, "sample_stats")["loglik"].values
    np.testing.assert_allclose(ll.sum("observation").values, loglik, rtol=1e-10, atol=1e-9)
    pp = get_group(saved, "posterior_predictive")["y"]
    assert pp.dims == ("chain", "draw", "observation") and np.isfinite(pp.values).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert np.isfinite(_elpd(az.loo(az.from_netcdf(str(path)))))


@pytest.mark.parametrize("kill_at", [100, 500, 1400])
def test_killed_site_chain_resumes_bit_for_bit(tmp_path, kill_at):
    """The site route's chain (150 steps adapting the moves: DE alone for 18, then refits; n_steps,
    then on to 50 tau) killed while adapting or after it continues from chain.h5."""
    def go(kill_at=None):
        like, space = _toy_site(kill_at)
        return sample_posterior(like, space, np.array([0.5]), n_walkers=8, n_steps=300, max_steps=1500,
                                seed=2, backend=tmp_path / "chain.h5" if kill_at else None)

    full = go()
    with pytest.raises(KeyboardInterrupt):
        go(kill_at=kill_at)
    like, space = _toy_site()
    resumed = sample_posterior(like, space, np.array([0.5]), n_walkers=8, n_steps=300, max_steps=1500,
                               seed=2, backend=tmp_path / "chain.h5")
    np.testing.assert_array_equal(resumed.sampler.get_chain(), full.sampler.get_chain())
    # and the whole InferenceData: prior draws and predictive noise too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PosteriorWarning)
        a, b = full.to_inference_data(n_prior=100), resumed.to_inference_data(n_prior=100)
    for g in ("posterior", "prior", "log_likelihood", "posterior_predictive", "observed_data"):
        xr.testing.assert_identical(get_group(a, g), get_group(b, g))


@pytest.mark.parametrize("kill_at", [150, 700])
def test_killed_adaptive_chain_resumes_bit_for_bit(tmp_path, kill_at):
    """A run killed during the first block or during an extension ends with the same chain."""
    space = _space()
    calls = {"n": 0}

    def like(u, crash_at=None):
        calls["n"] += 1
        if crash_at is not None and calls["n"] == crash_at:
            raise KeyboardInterrupt("killed")
        return -0.5 * (((u - 0.4) / 0.15) ** 2).sum(1)

    def run(f, backend=None):
        return PosteriorSampler(f, space, n_walkers=8, seed=3, backend=backend).run_adaptive(
            max_steps=1200, min_steps=300, factor=80)

    full = run(like).sampler.get_chain()
    assert full.shape[0] > 300  # the chain was extended: a kill at 700 calls is in an extension
    path = tmp_path / "chain.h5"
    calls["n"] = 0
    with pytest.raises(KeyboardInterrupt):
        run(lambda u: like(u, crash_at=kill_at), path)
    resumed = run(like, path).sampler.get_chain()
    np.testing.assert_array_equal(resumed, full)
