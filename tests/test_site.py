"""The site route: series operator and AR(1) likelihood (analytic), error model, a DALEC twin,
and the python entry-point and external-program routes through ``bayescal run``."""

import json
import re
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from _seeds import seeds
from scipy.stats import multivariate_normal

from bayescal import open_run
from bayescal.cli import main
from bayescal.observations.products import Product
from bayescal.operators.timeseries import SeriesLikelihood, SeriesOperator, estimate_error_model
from bayescal.testing import write_toy_site_csv
from bayescal.workflow.rundir import RunDirError
from bayescal.workflows import ConfigError, load_config

DATA = Path(__file__).parent / "data"


def _series(values, sigma, start="2001-01-01", name="p", variable="nee"):
    t = pd.date_range(start, periods=len(values), freq="D")
    data = xr.DataArray(np.asarray(values, float), dims="time", coords={"time": t}, attrs={"units": "1"})
    sig = xr.DataArray(np.asarray(sigma, float), dims="time", coords={"time": t})
    return Product(name, variable, data, sig)


def test_ar1_likelihood_equals_the_multivariate_normal_density(rng):
    """Two products, gaps restart the AR(1): the likelihood is exactly a Gaussian with that covariance."""
    v1 = rng.normal(size=12)
    v1[[4, 5]] = np.nan  # a gap of two days
    p1 = _series(v1, rng.uniform(0.5, 1.0, 12), name="a")
    p2 = _series(rng.normal(size=8), rng.uniform(0.2, 0.4, 8), name="b", variable="gpp")
    time = pd.date_range("2001-01-01", periods=20, freq="D").values
    op = SeriesOperator([p1, p2], time, (2001, 2001))
    s, rho = np.array([0.3, 0.6]), np.array([0.7, 0.4])
    lik = SeriesLikelihood(op, s, rho)
    model = op.y + rng.normal(size=(3, op.y.size))
    # the covariance: tau_i tau_j rho^|i-j| within each run of consecutive days of a product
    tau = np.sqrt(op.sigma**2 + s[op.product_index] ** 2)
    seg = np.cumsum(~op.consecutive)
    day = np.concatenate([np.flatnonzero(~np.isnan(v1)), np.arange(8)])
    same = (seg[:, None] == seg[None, :])
    r = rho[op.product_index]
    cov = np.where(same, r[:, None] ** np.abs(day[:, None] - day[None, :]), 0.0) * np.outer(tau, tau)
    want = multivariate_normal(op.y, cov).logpdf(model)
    np.testing.assert_allclose(lik(model), want, rtol=1e-10)


def test_model_values_are_the_weights_times_the_series_for_daily_and_period_products(rng):
    """A daily product's rows are read by gathering its days, a monthly one's through the
    weights: both equal ``weights @ series`` (a gap, two variables, one variable in two products)."""
    v = rng.normal(size=59)
    v[[3, 40]] = np.nan
    daily = _series(v, np.full(59, 0.5), name="d")
    other = _series(rng.normal(size=30), np.ones(30), "2001-01-20", name="g", variable="gpp")
    monthly = Product("m", "nee", daily.data.resample(time="MS").mean(),
                      daily.sigma.resample(time="MS").mean(), attrs={"period": "month"})
    time = pd.date_range("2001-01-01", periods=59, freq="D").values
    op = SeriesOperator([daily, other, monthly], time, (2001, 2001))
    series = {"nee": rng.normal(size=(4, 59)), "gpp": rng.normal(size=(4, 59))}
    want = np.concatenate([op.weights[op.product_index == k] @ series[p.variable].T
                           for k, p in enumerate(op.products)]).T
    np.testing.assert_array_equal(op.of_arrays(series), want)
    assert [isinstance(w, np.ndarray) for _, _, w in op._rows()] == [True, True, False]


def test_monthly_aggregate_is_the_mean_of_observed_days_with_its_sigma():
    v = np.arange(59.0)
    v[3] = np.nan
    p = _series(v, np.full(59, 2.0))
    time = pd.date_range("2001-01-01", periods=59, freq="D").values
    op = SeriesOperator([p], time, (2001, 2001), "monthly")
    jan = np.delete(np.arange(31.0), 3)
    np.testing.assert_allclose(op.y, [jan.mean(), np.arange(31.0, 59.0).mean()])
    np.testing.assert_allclose(op.sigma, [2.0 / np.sqrt(30), 2.0 / np.sqrt(28)])
    assert op.consecutive.tolist() == [False, True]
    ds = xr.Dataset({"nee": (("member", "time"), np.vstack([np.arange(59.0), np.zeros(59)]))},
                    coords={"time": time})
    np.testing.assert_allclose(op.of_model(ds)[0], op.y)


def test_a_value_of_a_month_or_year_is_compared_with_the_models_mean_over_it():
    """A product whose values stand for their month or year (``attrs["period"]``) is compared with
    the model's mean over every day of that period, not its value on the stamped day; with a
    coarser aggregate the periods' values are averaged into it; a period the model's days cut
    (2002, when the model stops in March) is left out; a noleap model covers a February."""
    time = pd.date_range("2001-01-01", "2002-03-31", freq="D")
    day = np.arange(time.size, dtype=float)  # the model's value: its day's index
    ds = xr.Dataset({"nee": (("member", "time"), np.vstack([day, 2 * day]))}, coords={"time": time})
    stamp = pd.DatetimeIndex(["2001-07-01", "2002-07-01"])
    annual = Product("y", "nee", xr.DataArray([1.0, 2.0], dims="time", coords={"time": stamp},
                                              attrs={"units": "1"}),
                     xr.DataArray([0.5, 0.5], dims="time", coords={"time": stamp}), attrs={"period": "year"})
    with pytest.warns(UserWarning, match=r"product 'y' \(nee\): 1 value\(s\) of a year that the model's "
                                         r"days \(2001-01-01 to 2002-03-31\) do not wholly cover are left "
                                         "out, the first 2002-07-01"):
        op = SeriesOperator([annual], time.values, (2001, 2002))
    assert op.y.tolist() == [1.0] and op.sigma.tolist() == [0.5]  # 2002 is not whole in the model
    np.testing.assert_allclose(op.of_model(ds)[:, 0], [182.0, 364.0])  # days 0-364: mean 182
    months = pd.DatetimeIndex(["2001-01-15", "2001-02-15", "2001-03-15"])
    monthly = Product("m", "nee", xr.DataArray([1.0, 2.0, 4.0], dims="time", coords={"time": months},
                                               attrs={"units": "1"}),
                      xr.DataArray([0.3, 0.4, 1.2], dims="time", coords={"time": months}),
                      attrs={"period": "month"})
    op = SeriesOperator([monthly], time.values, (2001, 2001))
    np.testing.assert_allclose(op.of_model(ds)[0], [15.0, 44.5, 74.0])  # 0-30, 31-58, 59-89
    assert op.consecutive.tolist() == [False, True, True]
    op = SeriesOperator([monthly], time.values, (2001, 2001), "annual")  # the months' mean
    np.testing.assert_allclose(op.of_model(ds)[0], [(15.0 + 44.5 + 74.0) / 3])
    np.testing.assert_allclose([op.y[0], op.sigma[0]], [7.0 / 3, 1.3 / 3])
    leap = pd.date_range("2004-01-01", "2004-12-31", freq="D")
    noleap = leap[~((leap.month == 2) & (leap.day == 29))]
    feb = Product("f", "nee", xr.DataArray([1.0], dims="time", coords={"time": [np.datetime64("2004-02-10")]},
                                           attrs={"units": "1"}),
                  xr.DataArray([0.1], dims="time", coords={"time": [np.datetime64("2004-02-10")]}),
                  attrs={"period": "month"})
    assert SeriesOperator([feb], noleap.values, (2004, 2004)).weights.getnnz() == 28


def test_validation_sums_a_flux_and_averages_a_state(rng):
    """A year of NEE (a rate per day) is its sum in gC m-2 yr-1; a year of LAI (a state) its mean
    in m2 m-2, not 365 of them added: both the bands and the observed values, without noise the
    exact numbers."""
    from bayescal.posterior.site_calibration import validation

    time = pd.date_range("2003-01-01", "2004-12-31", freq="D")
    nee, lai = np.linspace(-2.0, 1.0, time.size), np.linspace(2.0, 5.0, time.size)
    draws = xr.Dataset({"nee": (("member", "time"), np.tile(nee, (20, 1)), {"units": "gC m-2 d-1"}),
                        "lai": (("member", "time"), np.tile(lai, (20, 1)), {"units": "m2 m-2"})},
                       coords={"time": time})
    observed = {v: draws[v].isel(member=0, drop=True) for v in ("nee", "lai")}
    bands, summary = validation(draws, draws.isel(member=[0]), observed, {"nee": 0.0, "lai": 0.0},
                                {"nee": 0.0, "lai": 0.0}, (2004, 2004), rng)
    days = slice(time.get_loc("2004-01-01"), None)
    assert float(bands["nee_annual"].sel(quantile=0.5)[0]) == pytest.approx(nee[days].sum())
    assert float(bands["lai_annual"].sel(quantile=0.5)[0]) == pytest.approx(lai[days].mean())
    assert float(bands["lai_observed_monthly"][0]) == pytest.approx(lai[days][:31].mean())
    assert [bands[f"{v}_annual"].attrs["units"] for v in ("nee", "lai")] == ["gC m-2 yr-1", "m2 m-2"]
    assert bands["lai_annual"].attrs["cell_methods"] == "time: mean"
    assert {bands[t].attrs["axis"] for t in ("time", "time_monthly", "time_annual")} == {"T"}
    from bayescal.posterior.site_calibration import period_units

    daily = ("gC m-2 day-1", "gC/m2/d", "mm d-1", "W m-2", "kg m-2 s-1")  # rates per day summed, the rest
    assert [period_units(u, "annual") for u in daily] == [  # averaged
        "gC m-2 yr-1", "gC/m2/yr", "mm yr-1", "W m-2", "kg m-2 s-1"]
    assert summary["lai"]["observed_annual"] == [pytest.approx(lai[days].mean())]
    # LAI every 8 days (a MODIS composite): each month's mean of its composites, the year's of its
    # months'; NEE with a missing day: no sum for its month and year (not a part-sum)
    sparse = observed["lai"].where(np.arange(time.size) % 8 == 0)
    gap = observed["nee"].where(time != pd.Timestamp("2004-03-05"))
    bands, summary = validation(draws, draws.isel(member=[0]), {"nee": gap, "lai": sparse},
                                {"nee": 0.0, "lai": 0.0}, {"nee": 0.0, "lai": 0.0}, (2004, 2004), rng)
    assert float(bands["lai_observed_monthly"][0]) == pytest.approx(sparse.sel(time="2004-01").mean().item())
    assert summary["lai"]["observed_annual"] == [pytest.approx(sparse.sel(time="2004").mean().item())]
    nee_months = bands["nee_observed_monthly"].values
    assert np.isnan(nee_months[2]) and np.isfinite(nee_months[[0, 1, 3]]).all()
    assert summary["nee"]["observed_annual"] == [None]
    half = sparse.where(sparse["time.month"] <= 8)  # 8 of 12 months: no year's mean
    _, summary = validation(draws, draws.isel(member=[0]), {"lai": half}, {"lai": 0.0}, {"lai": 0.0},
                            (2004, 2004), rng)
    assert summary["lai"]["observed_annual"] == [None]


def test_validation_takes_products_of_months_and_years_where_no_day_is_observed(rng):
    """A variable observed only by a product of months (each value the month's mean per day,
    stamped mid-month) and one of years: the observed monthly values are the months' sums (a
    flux), the years' the product of years' means times their days (366 in 2004), or twelve
    months' sums without it; the coverage is computed on them."""
    from bayescal.posterior.site_calibration import validation

    time = pd.date_range("2003-01-01", "2004-12-31", freq="D")
    gpp = 5.0 + 4.0 * np.sin(np.arange(time.size) / 58.0)
    draws = xr.Dataset({"gpp": (("member", "time"), np.tile(gpp, (20, 1)), {"units": "gC m-2 d-1"})},
                       coords={"time": time})
    days = xr.DataArray(gpp, dims="time", coords={"time": time})
    months = days.resample(time="MS").mean()
    months["time"] = months["time"] + np.timedelta64(14, "D")
    years = days.resample(time="YS").mean()
    years["time"] = years["time"] + np.timedelta64(181, "D")
    nothing = draws["gpp"].isel(member=0, drop=True) * np.nan
    for periods, n_complete in (({"month": months, "year": years}, 1), ({"month": months}, 1),
                                ({"month": months.where(months["time.month"] != 5)}, 0)):
        bands, summary = validation(draws, draws.isel(member=[0]), {"gpp": nothing}, {"gpp": 0.5},
                                    {"gpp": 0.0}, (2004, 2004), rng, periods={"gpp": periods})
        observed = bands["gpp_observed_monthly"].values
        np.testing.assert_allclose(observed[[0, 1, 11]], [days.sel(time=m).sum().item()
                                                         for m in ("2004-01", "2004-02", "2004-12")])
        s = summary["gpp"]
        assert s["validation_observed_days"] == 0 and s["validation_complete_years"] == n_complete
        if n_complete:
            assert s["observed_annual"] == [pytest.approx(days.sel(time="2004").sum().item())]
            assert s["annual_coverage_90"] == 1.0  # the model is the truth: its band's median
    # a noleap model (no 29 February 2004): a month's and a year's sums are over its days; a
    # state's year from twelve months weighted by their days is its days' mean
    noleap = time[~((time.month == 2) & (time.day == 29))]
    level = np.asarray(noleap.month, float)  # one value a day, constant within each month
    model = xr.Dataset({"gpp": (("member", "time"), np.tile(level, (20, 1)), {"units": "gC m-2 d-1"}),
                        "lai": (("member", "time"), np.tile(level, (20, 1)), {"units": "m2 m-2"})},
                       coords={"time": noleap})
    per_month = model["gpp"].isel(member=0, drop=True).resample(time="MS").mean()
    empty = {v: model[v].isel(member=0, drop=True) * np.nan for v in ("gpp", "lai")}
    bands, summary = validation(model, model.isel(member=[0]), empty, {"gpp": 0.0, "lai": 0.0},
                                {"gpp": 0.0, "lai": 0.0}, (2004, 2004), rng,
                                periods={v: {"month": per_month} for v in ("gpp", "lai")})
    assert float(bands["gpp_observed_monthly"][1]) == 2.0 * 28  # February of the model's 28 days
    assert summary["gpp"]["observed_annual"] == [pytest.approx(level[noleap.year == 2004].sum())]
    assert summary["lai"]["observed_annual"] == [pytest.approx(level[noleap.year == 2004].mean())]


def test_error_model_recovers_discrepancy_and_autocorrelation(rng):
    n, s_true, rho_true = 20000, 0.8, 0.6
    sigma = np.full(n, 0.5)
    tau = np.hypot(0.5, s_true)
    e = np.empty(n)
    e[0] = rng.normal() * tau
    for t in range(1, n):
        e[t] = rho_true * e[t - 1] + rng.normal() * tau * np.sqrt(1 - rho_true**2)
    p = _series(np.zeros(n), sigma, start="2000-01-01")
    time = pd.date_range("2000-01-01", periods=n, freq="D").values
    op = SeriesOperator([p], time, (2000, 2060))
    s, rho = estimate_error_model(op, e)
    assert s[0] == pytest.approx(s_true, rel=0.05) and rho[0] == pytest.approx(rho_true, abs=0.02)
    # every 8th day only (an 8-day LAI composite): no consecutive days, rho not estimable -- 0 is
    # used, and the report says it was not estimated (it showed "0.00", as if it had been)
    from bayescal.operators.timeseries import consecutive_pairs
    from bayescal.report.site import _error_row

    sparse = _series(np.where(np.arange(n) % 8 == 0, 0.0, np.nan), sigma, start="2000-01-01", name="q",
                     variable="lai")
    op2 = SeriesOperator([p, sparse], time, (2000, 2060))
    assert consecutive_pairs(op2).tolist() == [n - 1, 0]
    s2, rho2 = estimate_error_model(op2, np.r_[e, e[::8]])
    assert rho2[0] == rho[0] and rho2[1] == 0.0
    row = {"product": "lai", "n_values": n // 8, "sigma_median": 0.5, "discrepancy": s2[1], "rho": 0.0,
           "units": "m2 m-2", "variable": "lai"}
    assert "0 (not estimable: 2 consecutive pairs, 3 needed)" in _error_row({**row, "rho_pairs": 2})
    assert "<td>0.00</td>" in _error_row({**row, "rho_pairs": 400})


def _toy_csv(tmp_path, a=2.5, b=-0.4, sigma=0.3, seed=0):
    return write_toy_site_csv(tmp_path / "nee.csv", a=a, b=b, sigma=sigma, seed=seed)


def _site_toml(tmp_path, model: str, extra: str = "", n_draws: int = 20, seed: int = 3) -> Path:
    csv = _toy_csv(tmp_path)
    text = f"""
[run]
output = "{tmp_path / 'run'}"
seed = {seed}
[model]
{model}
[site]
calibration_years = [2001, 2002]
validation_years = [2003, 2003]
discrepancy = "none"
autocorrelation = false
ml_evaluations = 200
[[observations.products]]
variable = "nee"
format = "csv"
file = "{csv}"
units = "gC m-2 d-1"
[posterior]
n_steps = 400
max_steps = 400
n_walkers = 8
{extra}
[propagate]
n_draws = {n_draws}
"""
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def _posterior(run: Path) -> np.ndarray:
    import arviz as az

    post = az.from_netcdf(str(run / "posterior" / "posterior.nc")).posterior
    return np.stack([post["a"].values.ravel(), post["b"].values.ravel()], axis=1)


def test_dalec_likelihood_fast_path_is_the_datasets_and_counts_its_runs(tmp_path):
    """The direct route's DALEC values through ``output_arrays`` (no Dataset) equal the Dataset
    path's, failed members as NaN rows, every run counted once; only the direct route's chain
    reads ``posterior.moves`` (a changed moves default must not redo an emulator route's runs)."""
    from bayescal.posterior.site_calibration import model_values
    from bayescal.workflows import make_context
    from bayescal.workflows.site.workflow import SITE

    cfg = load_config(Path(__file__).parents[1] / "examples" / "site_puechabon.toml")
    ctx = make_context(cfg, tmp_path / "run", progress=False)
    op, space = ctx.operator("calibration"), ctx.space()
    u = np.random.default_rng(4).random((12, space.n_free))
    slow = model_values(ctx.calibration_simulator, space, op)(u)
    before = ctx.model_runs()
    fast = model_values(ctx.calibration_simulator, space, op, arrays=ctx.calibration_arrays())(u)
    assert ctx.model_runs() - before == 12
    np.testing.assert_array_equal(fast, slow)
    failed = np.isnan(slow).all(axis=1)
    assert failed.any() and not failed.all() and not np.isnan(slow[~failed]).any()
    posterior = next(st for st in SITE.stages if st.name == "posterior")
    assert "posterior.moves" in posterior.keys(cfg)
    cfg["posterior"]["route"] = "emulator"  # its rounds' chains use the moves too
    assert {"posterior.moves", "posterior.refine_rounds"} <= set(posterior.keys(cfg))


def test_python_entry_point_route_through_bayescal_run(tmp_path):
    cfg = _site_toml(tmp_path, 'kind = "python"\nentry_point = "bayescal.testing:ToySiteModel"\n'
                               'options = {start = "2001-01-01", end = "2003-12-31"}', "n_particles = 200")
    assert main(["run", str(cfg), "--quiet"]) == 0
    post = _posterior(tmp_path / "run")
    # 730 days of sigma 0.3: the truth (2.5, -0.4) within a few posterior sd, sd ~ 0.3 / sqrt(365)
    assert np.all(np.abs(post.mean(0) - [2.5, -0.4]) < 4 * post.std(0) + 1e-3)
    assert post.std(0).max() < 0.05
    summary = json.loads((tmp_path / "run" / "propagate" / "summary.json").read_text())
    assert summary["nee"]["rmse_daily_posterior_mean"] < 0.5 * summary["nee"]["rmse_daily_defaults"]
    run = open_run(tmp_path / "run")
    units = {v: run.bands[v].attrs["units"] for v in ("nee_daily", "nee_monthly", "nee_observed_annual")}
    assert units == {"nee_daily": "gC m-2 d-1", "nee_monthly": "gC m-2 month-1",
                     "nee_observed_annual": "gC m-2 yr-1"}  # sums of the days, not daily rates
    with pytest.raises(RunDirError, match=r"training.nc: not written \(the site workflow has no 'design'"):
        run.training  # noqa: B018 - the site workflow has no design stage
    (tmp_path / "run" / "report.html").unlink()
    assert main(["report", str(tmp_path / "run")]) == 0  # from the run directory alone
    page = (tmp_path / "run" / "report.html").read_text()
    assert "Validation on held-out years" in page and "Route: direct (posterior.route" in page


def test_the_models_own_failure_reasons_reach_the_optimisers_history(tmp_path, capsys):
    """A member the model marks failed keeps the model's reason in optimize/history.nc, and the
    stage says how many failed and why."""
    (tmp_path / "picky.py").write_text(
        "import numpy as np\n"
        "from bayescal.testing import ToySiteModel\n"
        "class Picky(ToySiteModel):\n"
        "    def __call__(self, theta):\n"
        "        ds = super().__call__(theta)\n"
        "        bad = np.atleast_2d(theta)[:, 0] > 3.0\n"
        "        ds['status'] = ('member', np.where(bad, 'failed', 'done'))\n"
        "        ds['reason'] = ('member', np.where(bad, 'amplitude above 3: no leaf-on', ''))\n"
        "        return ds\n")
    cfg = _site_toml(tmp_path, 'kind = "python"\nentry_point = "picky:Picky"\n'
                               'options = {start = "2001-01-01", end = "2003-12-31"}')
    assert main(["run", str(cfg), "--until", "optimize"]) == 0
    h = xr.load_dataset(tmp_path / "run" / "optimize" / "history.nc")
    failed = h["status"].values != "done"
    assert failed.any() and set(h["reason"].values[failed].astype(str)) == {"amplitude above 3: no leaf-on"}
    np.testing.assert_array_equal(failed, h["theta"].values[:, 0] > 3.0)  # exactly those members
    assert f"{int(failed.sum())} of {failed.size} model runs failed" in capsys.readouterr().out
    # the emulator route's design says the same, each reason with its count
    (tmp_path / "run2").mkdir()
    cfg = _site_toml(tmp_path / "run2", 'kind = "python"\nentry_point = "picky:Picky"\n'
                     f'python_path = ["{tmp_path}"]\noptions = {{start = "2001-01-01", end = "2003-12-31"}}',
                     extra='route = "emulator"\n[design]\nn_runs = 30')
    assert main(["run", str(cfg), "--until", "optimize"]) == 0
    kept = xr.load_dataset(tmp_path / "run2" / "run" / "optimize" / "design.nc")["X"].values  # done runs only
    n_bad = 30 - kept.shape[0]
    assert n_bad > 0 and kept[:, 0].max() <= 0.6  # a > 3 is u > 0.6 of [0, 5]
    assert (f"{n_bad} of 30 model runs failed ({tmp_path / 'run2' / 'run' / 'optimize' / 'design'}): "
            f"{n_bad} x amplitude above 3") in capsys.readouterr().out


@pytest.mark.seed_sweep
@pytest.mark.parametrize("seed", seeds(3))
def test_direct_route_with_de_stretch_moves_recovers_the_toy_posterior(tmp_path, seed):
    """``posterior.moves = "de_stretch"`` (emcee's DE 0.8 + stretch 0.2; the default is DREAM's
    crossover move, ``de_subspace``, tested above): the posterior is the analytic one of the linear
    toy (truth within 4 sd, sd ~ 0.3 / sqrt(365))."""
    model = ('kind = "python"\nentry_point = "bayescal.testing:ToySiteModel"\n'
             'options = {start = "2001-01-01", end = "2003-12-31"}')
    cfg = _site_toml(tmp_path, model, 'moves = "de_stretch"', n_draws=2, seed=seed)
    assert main(["run", str(cfg), "--quiet", "--until", "posterior"]) == 0
    post = _posterior(tmp_path / "run")
    assert np.all(np.abs(post.mean(0) - [2.5, -0.4]) < 4 * post.std(0) + 1e-3)
    assert 0.003 < post.std(0).min() and post.std(0).max() < 0.05


def _external_toy(tmp_path, *program: str) -> Path:
    """A site config running ``program`` (the toy program, or a wrapper of it) as an external
    model through its template and parameters file; a program costs a process per run: the
    emulator route (12 design runs, the optimum and one refinement round of 4)."""
    (tmp_path / "params.template").write_text("a = {{ a }}\nb = {{ b }}\n")
    (tmp_path / "space.toml").write_text(
        '[parameters.a]\ndefault = 2.0\nlower = 0.0\nupper = 5.0\n'
        '[parameters.b]\ndefault = 0.0\nlower = -2.0\nupper = 2.0\n')
    command = ", ".join(f'"{c}"' for c in (sys.executable, *program, "{param_file}", "{output}"))
    model = (f'kind = "external"\ncommand = [{command}]\ntemplate = "params.template"\n'
             'parameters_file = "space.toml"\ntimeout = 60.0')
    return _site_toml(tmp_path, model, 'route = "emulator"\nrefine_rounds = 1\nn_new = 4\nn_particles = 200\n'
                      '[design]\nn_runs = 12\nbatch_size = 4', n_draws=2)


def test_external_program_route_through_bayescal_run(tmp_path):
    cfg = _external_toy(tmp_path, str(DATA / "toy_site_program.py"))  # every run through the store
    assert main(["run", str(cfg), "--quiet", "--until", "propagate"]) == 0  # the report is not under test
    post = _posterior(tmp_path / "run")
    assert np.all(np.abs(post.mean(0) - [2.5, -0.4]) < 0.1)
    stored = list((tmp_path / "run" / "optimize" / "design" / "members").glob("*.nc"))
    assert len(stored) == 12


def test_check_times_an_external_program_by_its_runs_not_its_kept_output(tmp_path, capsys):
    """A program's output is kept by parameter values, so a second run at the defaults only reads
    it: ``bayescal check`` times the program's one run (at least its 0.5 s sleep here), and takes
    that as each member's cost (a batch of copies would read one output)."""
    (tmp_path / "slow.py").write_text("import runpy, sys, time\ntime.sleep(0.5)\nsys.argv = sys.argv[1:]\n"
                                      "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    cfg = _external_toy(tmp_path, str(tmp_path / "slow.py"), str(DATA / "toy_site_program.py"))
    assert main(["check", str(cfg)]) == 0
    out = capsys.readouterr().out
    took = float(re.search(r"one run at the defaults took ([\d.e+-]+) s", out).group(1))
    assert took >= 0.5 and "in a batch of 32" not in out, out
    assert re.search(r"model runs: 12 \(design; the search runs the emulator\) \(up to ~([6-9]|\d\d+) s", out)


def test_propagate_table_years_is_named_where_no_stage_reads_it(tmp_path, capsys):
    """The global route's Table 3 years in a site config (or a Dagon one) change nothing: named,
    exit 2; left out (the default, clamped to a global model's years) they pass."""
    model = 'kind = "python"\nentry_point = "bayescal.testing:ToySiteModel"'
    path = _site_toml(tmp_path, model)
    path.write_text(path.read_text().replace("[propagate]\n", "[propagate]\ntable_years = [2001, 2002]\n"))
    assert main(["check", str(path), "--no-model-run"]) == 2
    err = capsys.readouterr().err
    assert "'propagate.table_years' is not read by the site workflow: remove it" in err
    assert "Traceback" not in err
    dagon = Path(__file__).parents[1] / "examples" / "dagon_workflow.toml"
    (tmp_path / "dagon.toml").write_text(dagon.read_text().replace('"../runs/dagon_workflow"', '"drun"'))
    assert main(["check", str(tmp_path / "dagon.toml"), "--no-model-run"]) == 0  # clamped to 2000-2004
    (tmp_path / "dagon.toml").write_text((tmp_path / "dagon.toml").read_text() + "\n[propagate]\n"
                                         "table_years = [2001, 2002]\n")
    assert main(["check", str(tmp_path / "dagon.toml"), "--no-model-run"]) == 2
    assert "'propagate.table_years' is not read by the dagon workflow" in capsys.readouterr().err


def test_the_emulator_routes_keys_on_the_direct_route_are_warned_of(tmp_path):
    """Keys only the emulator route reads, in a direct-route config, do nothing: said (not
    refused: a user switching routes back keeps them); none on the emulator route."""
    model = 'kind = "python"\nentry_point = "bayescal.testing:ToySiteModel"'
    path = _site_toml(tmp_path, model, extra='refine_rounds = 2\n[design]\nn_runs = 30')
    with pytest.warns(UserWarning, match=r"'design.n_runs', 'posterior.refine_rounds' are read only with "
                                         r"posterior.route = 'emulator'; this config's route is 'direct'"):
        load_config(path)
    path = _site_toml(tmp_path, model, extra='route = "emulator"\nrefine_rounds = 2\n[design]\nn_runs = 30')
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        load_config(path)


def test_site_config_errors_name_the_key_before_any_run(tmp_path):
    good = _site_toml(tmp_path, 'kind = "python"\nentry_point = "bayescal.testing:ToySiteModel"')
    text = good.read_text()

    def bad(old, new, match):
        p = tmp_path / "bad.toml"
        p.write_text(text.replace(old, new))
        with pytest.raises(ConfigError, match=match):
            load_config(p)

    bad('file = "', 'file = "missing-', r"observations.products\[0\].file': file not found")
    bad('format = "csv"', 'format = "grib"', r"observations.products\[0\].format' must be one of")
    bad('units = "gC m-2 d-1"', 'units = "gC m-2 d-1"\ncolour = "red"', r"unknown keys \['colour'\]")
    bad('units = "gC m-2 d-1"', 'units = "gC m-2 d-1"\nsigmafloor = 0.1',
        r"unknown keys \['sigmafloor'\]; did you mean 'sigma_floor'")
    bad("n_walkers = 8", "n_walkers = 8\nn_stpes = 10", r"unknown key 'posterior.n_stpes'; did you mean "
        r"'posterior.n_steps'")
    bad("[propagate]", "[postrior]\n[propagate]", r"unknown section \[postrior\]; did you mean 'posterior'")
    bad('units = "gC m-2 d-1"', 'units = "W m-2"\nto_units = "gC m-2 d-1"', "cannot convert")
    bad("calibration_years = [2001, 2002]", "calibration_years = [2009, 2010]",
        "calibration_years.*no observed day in these years")  # validation years may have none
    bad('entry_point = "bayescal.testing:ToySiteModel"', 'entry_point = "bayescal.testing"',
        "package.module:Factory")
    bad("n_walkers = 8", 'n_walkers = 8\nmoves = "hmc"', r"'posterior.moves' must be one of")
    bad("n_walkers = 8", 'n_walkers = 8\nstart = "warm"', r"'posterior.start' must be one of")
    bad("n_walkers = 8", "n_walkers = 8\nn_particles = 10", r"'posterior.n_particles' must be >= 100")
    bad("n_walkers = 8", 'n_walkers = 8\nemulator_target = "median"',
        r"'posterior.emulator_target' must be one of")
    bad("[propagate]", "[emulator]\nn_restarts = -1\n[propagate]", r"'emulator.n_restarts' must be >= 0")
    obs = "[[observations.products]]"
    bad(obs, "[observations]\nsummary_noise = true\n" + obs, "summary_noise.* is for the global")
    bad(obs, "[observations]\ntwin = false\ntruth = { a = 0.5 }\n" + obs, "observations.truth.* is for twins")
    bad(obs, "[observations]\ntwin = false\ntruth_from_prior = true\n" + obs,
        r"'observations.truth_from_prior' is for twins")
    bad("n_walkers = 8", "n_walkers = 3",
        r"'posterior.n_walkers' must be 0 \(automatic\) or >= 2 x the 2 ")
    bad("ml_evaluations = 200", "ml_evaluations = 0", r"'site.ml_evaluations' must be >= 1")
    bad('entry_point = "', 'diurnal_range = -8.0\nentry_point = "',
        r"'model.diurnal_range' is read only with model.kind = 'dalec'; this config's model.kind is "
        r"'python': set model.kind = 'dalec', or remove model.diurnal_range")
    bad('kind = "python"\n', "", r"'model.entry_point' is read only with model.kind = 'python'; this config "
        r"leaves model.kind unset \(the embedded global model\): set model.kind = 'python'")
    bad('entry_point = "', 'template = "t.txt"\nentry_point = "', r"'model.template' is read only with "
        r"model.kind = 'external'")
    bad('file = "', 'qc_min = "high"\nfile = "', r"products\[0\].qc_min' must be a number, got 'high'")
    bad('units = "gC m-2 d-1"', 'units = "gC m-2 d-1"\nfill_value = "-999"',
        r"products\[0\].fill_value' must be a number, got '-999'")
    bad('units = "gC m-2 d-1"\n', "", r"'observations.products\[0\].units' is required for a CSV product")
    block = text[text.index("[[observations.products]]"):text.index("[posterior]")]
    bad("[posterior]", block + "[posterior]", r"products\[1\]' repeats 'observations.products\[0\]'")
    bad("[posterior]", block.replace('units = "gC m-2 d-1"', 'units = "gC m-2 d-1"\nsigma_floor = 0.1')
        + "[posterior]", r"products\[1\]' is named '\w+' as 'observations.products\[0\]' is")
    bad("[posterior]", block.replace('units = "gC m-2 d-1"', 'units = "gC m-2 d-1"\nname = "again"')
        + "[posterior]", r"products\[1\]' reads nee from .* as 'observations.products\[0\]' does")
    bad("seed = 3", 'seed = 3\nworkflow = "dagon"', r"'run.workflow' = 'dagon' does not run a site model")
    bad('entry_point = "', 'python_path = ["nowhere"]\nentry_point = "', r"python_path': .*nowhere is not")
    bad('kind = "python"\nentry_point = "bayescal.testing:ToySiteModel"',
        'kind = "dalec"\npython_path = ["."]',
        r"'model.python_path' is read only with model.kind = 'python'; this config's model.kind is 'dalec'")
    bad("[posterior]", '[parameters]\ncandidates = ["a"]\n[posterior]',
        r"'parameters.candidates' is not read by the site workflow \(it has no screen; it calibrates "
        r"'parameters.free', or every value without it\)")
    given = load_config(good)  # a key at its default and a key left out: the same config
    explicit = text.replace('units = "gC m-2 d-1"', 'units = "gC m-2 d-1"\nsigma_floor = 0.0')
    (tmp_path / "explicit.toml").write_text(explicit)
    assert load_config(tmp_path / "explicit.toml") == given
    assert load_config(good)["model"]["kind"] == "python"


def test_a_product_far_off_the_models_scale_is_named_with_its_file_units(rng):
    """Units that convert but are not the file's: values of umol m-2 s-1 declared kg C m-2 s-1 are
    about 8.6e7 times a plausible GPP; 30 times off or more is named, a poor default (5x) is not."""
    from bayescal.workflows.site.config import say_scale_mismatch

    gpp = _series(rng.uniform(2, 8, 50), np.full(50, 0.5), variable="gpp")
    for factor, named in ((8.6e7, True), (1 / 40, True), (5.0, False), (0.2, False)):
        p = _series(gpp.data.values * factor, np.full(50, 0.5), name="x", variable="gpp")
        p.data.attrs.update(file_units="kg C m-2 s-1", source="x.csv")
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            say_scale_mismatch([p], {"gpp": float(np.median(gpp.data.values)), "nee": 1.0})
        assert bool(got) == named, (factor, [str(w.message) for w in got])
        if named:
            assert "gpp (x.csv)" in str(got[0].message) and "[kg C m-2 s-1]" in str(got[0].message)


def test_a_config_means_the_same_from_any_working_directory(tmp_path, monkeypatch):
    """Relative paths are the config folder's: started from its folder or from above it, the
    validated config (and so every stage's key) is the same."""
    good = _site_toml(tmp_path, 'kind = "python"\nentry_point = "bayescal.testing:ToySiteModel"')
    text = good.read_text().replace(str(tmp_path / "nee.csv"), "nee.csv")
    text = text.replace(str(tmp_path / "run"), "run")
    good.write_text(text)
    monkeypatch.chdir(tmp_path)
    here = load_config("site.toml")
    monkeypatch.chdir(tmp_path.parent)
    above = load_config(f"{tmp_path.name}/site.toml")
    assert here == above
    assert here["observations"]["products"][0]["file"] == str(tmp_path / "nee.csv")


HAI = "bayescal:data/fluxnet/FLX_DE-Hai_DD_2000-2012.csv"


@pytest.mark.slow
@pytest.mark.seed_sweep
@pytest.mark.parametrize("seed", seeds(5))
def test_dalec_twin_recovers_the_truth_and_names_what_is_not_identifiable(tmp_path, seed):
    """DALEC-deciduous at DE-Hai, FLUXNET drivers, the real days, gaps and sigma of NEE and GPP in
    three calibration years; the truth moves six values away from the defaults, and two more are
    calibrated with them: p1 and p6 (litter-to-soil and wood turnover), which three years of NEE
    and GPP do not constrain (REFLEX). A one-year, three-cycle spin-up and 400 emcee steps of 32
    walkers keep the direct route cheap; the twin is made with the same model."""
    truth = {"p3": 0.7, "p5": 0.55, "p10": 0.3, "p11": 0.6, "p17": 0.35, "eta_som": 0.6}
    free = ["p1", "p3", "p5", "p6", "p10", "p11", "p17", "eta_som"]
    run = tmp_path / "run"
    cfg = tmp_path / "twin.toml"
    cfg.write_text(f"""
[run]
output = "{run}"
seed = {seed}
[model]
kind = "dalec"
drivers = "{HAI}"
spinup_years = 1
spinup_cycles = 3
[parameters]
free = {json.dumps(free)}
[site]
calibration_years = [2000, 2002]
validation_years = [2003, 2004]
[observations]
twin = true
truth = {{ {", ".join(f"{k} = {v}" for k, v in truth.items())} }}
[[observations.products]]
variable = "nee"
format = "fluxnet"
file = "{HAI}"
[[observations.products]]
variable = "gpp"
format = "fluxnet"
file = "{HAI}"
partitioning = "NT"
[posterior]
n_steps = 400
max_steps = 400
n_particles = 500
[propagate]
n_draws = 30
""")
    assert main(["run", str(cfg), "--quiet"]) == 0
    summary = json.loads((run / "propagate" / "summary.json").read_text())
    pc = summary["parameter_coverage"]
    assert sorted(pc) == sorted(free)
    # identifiable: posterior sd below half the prior's. The six values the truth moves are; the
    # table names p1 or p6, or both, as not (over a dozen pairs of run and twin seeds their sd ratios
    # were 0.66-0.95, the six others' at most 0.36). Over run seeds 0-9 (`BAYESCAL_TEST_SEEDS=0-9
    # python -m pytest -m seed_sweep`) seed 3's chain put p6 at 0.83-0.995 of its range, truth 0.42:
    # 400 steps from the optimum do not cross a direction the data leave free, and its
    # diagnostics.nc says so (R-hat 1.36, not converged)
    identifiable = sorted(k for k, v in pc.items() if v["identifiable"])
    assert set(truth) <= set(identifiable) and not {"p1", "p6"} <= set(identifiable), pc
    # each moved value's truth near its posterior: within 4 posterior sd of the median (unit
    # cube). Over those seeds the largest |z| was 2.4; a biased posterior (p5's sd is 0.003) fails
    from bayescal.posterior import load_inference_data, unit_samples
    from bayescal.workflow.rundir import RunDir

    space = RunDir(run).space()
    u = np.asarray(unit_samples(load_inference_data(run / "posterior" / "posterior.nc"), space))
    z = {k: float((np.median(u[:, j]) - pc[k]["truth_u"]) / u[:, j].std())
         for j, k in enumerate(space.labels) if k in truth}
    assert all(abs(v) < 4.0 for v in z.values()), z
    # the report's table is of these draws: its 90 % intervals, and at least half the truths in
    # them (each interval misses 10 % of the time; over those seeds at most 3 of 6 missed)
    for j, k in enumerate(space.labels):
        np.testing.assert_allclose([pc[k]["q05"], pc[k]["q95"]], np.quantile(u[:, j], [0.05, 0.95]),
                                   rtol=1e-12)
        assert pc[k]["inside_90"] == (pc[k]["q05"] <= pc[k]["truth_u"] <= pc[k]["q95"])
    inside = [k for k in truth if pc[k]["inside_90"]]
    assert len(inside) >= len(truth) / 2, {k: pc[k] for k in truth}
    assert "Twin: parameter recovery" in (run / "report.html").read_text()


def test_loglik_sd_is_the_gradient_times_the_emulator_sd_and_matches_monte_carlo(rng):
    """The emulator route's acquisition: sd[log L] of the AR(1) likelihood under independent
    Gaussian errors of the values. Its linear term is the exact gradient (finite differences), and
    with errors of 0.05-0.2 tau it matches the sd of log L over 200,000 perturbed series."""
    v1 = rng.normal(size=60)
    v1[25:28] = np.nan  # a gap: the AR(1) restarts
    prods = [_series(v1, rng.uniform(0.5, 1.0, 60), name="a"),
             _series(rng.normal(size=30), rng.uniform(0.3, 0.6, 30), name="b", variable="gpp")]
    op = SeriesOperator(prods, pd.date_range("2001-01-01", periods=60, freq="D").values, (2001, 2001))
    like = SeriesLikelihood(op, discrepancy=[0.3, 0.1], rho=[0.6, 0.3])
    m = op.y + rng.normal(size=op.y.size)
    eps, grad = 1e-6, np.empty(op.y.size)
    for i in range(op.y.size):
        d = np.zeros(op.y.size)
        d[i] = eps
        grad[i] = (like(m + d) - like(m - d))[0] / (2 * eps)
    tiny = np.full(op.y.size, 1e-5)
    np.testing.assert_allclose(like.loglik_sd(m, tiny), np.sqrt(((grad * tiny) ** 2).sum()), rtol=1e-6)
    sd = rng.uniform(0.05, 0.2, op.y.size) * like.tau
    draws = like(m + sd * rng.standard_normal((200_000, op.y.size)))
    np.testing.assert_allclose(like.loglik_sd(m, sd), draws.std(), rtol=0.02)


def test_expected_log_likelihood_is_the_average_over_the_values_uncertainty(rng):
    """The emulator route's posterior target: E[log L(m + e)] for independent Gaussian errors e of
    the values. Against 200,000 perturbed series of an AR(1) likelihood with a gap: within 5 of the
    Monte Carlo mean's standard errors, where dropping the AR(1) term (r^2 q_(i-1)^2) is > 20 off;
    with no uncertainty it is the log-likelihood."""
    v1 = rng.normal(size=60)
    v1[25:28] = np.nan
    prods = [_series(v1, rng.uniform(0.5, 1.0, 60), name="a"),
             _series(rng.normal(size=30), rng.uniform(0.3, 0.6, 30), name="b", variable="gpp")]
    op = SeriesOperator(prods, pd.date_range("2001-01-01", periods=60, freq="D").values, (2001, 2001))
    like = SeriesLikelihood(op, discrepancy=[0.3, 0.1], rho=[0.8, 0.3])
    m = op.y + rng.normal(size=op.y.size)
    np.testing.assert_allclose(like.expected(m, np.zeros(op.y.size)), like(m), rtol=1e-12)
    sd = rng.uniform(0.2, 0.6, op.y.size) * like.tau
    draws = like(m + sd * rng.standard_normal((200_000, op.y.size)))
    se = draws.std() / np.sqrt(draws.size)
    got = like.expected(m, sd)[0]
    assert abs(got - draws.mean()) < 5 * se, (got, draws.mean(), se)
    q2 = (sd / like.tau) ** 2
    no_ar = like(m)[0] - 0.5 * (q2 / like._innov).sum()
    assert abs(no_ar - draws.mean()) > 20 * se
    assert like.expected(np.full_like(m, np.nan), sd)[0] == -np.inf


def _vegetation_config(tmp_path, site: str, dalec_type: str) -> Path:
    name = {"DE-Gri": "FLX_DE-Gri_DD_2004-2014", "FR-Pue": "FLX_FR-Pue_DD_2000-2014",
            "DE-Hai": "FLX_DE-Hai_DD_2000-2012"}[site]
    cfg = tmp_path / "site.toml"
    cfg.write_text(f"""
[run]
output = "{tmp_path / 'run'}"
[model]
kind = "dalec"
dalec_type = "{dalec_type}"
drivers = "bayescal:data/fluxnet/{name}.csv"
[site]
calibration_years = [2005, 2006]
validation_years = [2007, 2007]
[[observations.products]]
variable = "nee"
format = "fluxnet"
file = "bayescal:data/fluxnet/{name}.csv"
""")
    return cfg


@pytest.mark.parametrize(("site", "dalec_type", "expected"), [
    ("DE-Gri", "deciduous", "DE-Gri is GRA (grassland)"),   # a grassland: no embedded DALEC fits
    ("FR-Pue", "deciduous", 'dalec_type = "evergreen" describes it'),  # an evergreen forest
    ("DE-Hai", "deciduous", None),  # a deciduous broadleaf forest: no warning
    ("FR-Pue", "evergreen", None),
])
def test_check_warns_when_the_sites_vegetation_is_not_the_embedded_dalecs(tmp_path, site, dalec_type,
                                                                         expected):
    """The drivers' site class in the FLUXNET2015 site table (IGBP) against the configured DALEC:
    a warning naming the key, the site and its class; the config stays valid (exit 0)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["check", str(_vegetation_config(tmp_path, site, dalec_type))]) == 0
    mine = [str(w.message) for w in caught if "'model.drivers'" in str(w.message)]
    if expected is None:
        assert not mine
    else:
        assert len(mine) == 1 and mine[0].startswith(f"'model.drivers': site {site} is ")
        assert expected in mine[0] and f"DALEC-{dalec_type}" in mine[0]


def test_a_model_running_against_the_observations_is_warned_of(tmp_path):
    """A model of your own whose NEE has the other sign (an uptake positive): ``bayescal check``
    warns, naming the variable and the correlation at the defaults (the run went on, exit 0,
    and reported a poor fit as a posterior); the same model with FLUXNET's sign is not warned of."""
    import warnings

    (tmp_path / "flipped.py").write_text(textwrap.dedent('''
        from bayescal.testing import ToySiteModel

        class Flipped(ToySiteModel):
            def __call__(self, theta):
                ds = super().__call__(theta)
                ds["nee"] = (-ds["nee"]).assign_attrs(ds["nee"].attrs)
                return ds
    '''))
    options = 'options = {start = "2001-01-01", end = "2003-12-31"}'
    flipped = _site_toml(tmp_path, f'kind = "python"\nentry_point = "flipped:Flipped"\n{options}')
    with pytest.warns(UserWarning, match=r"nee .*runs against the observations \(correlation -0\.[5-9]"):
        assert main(["check", str(flipped)]) == 0
    right = _site_toml(tmp_path, f'kind = "python"\nentry_point = "bayescal.testing:ToySiteModel"\n{options}')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["check", str(right)]) == 0
    assert not [w for w in caught if "runs against" in str(w.message)]


def test_check_names_the_config_when_a_batch_breaks_the_contract(tmp_path, capsys):
    """A model that runs one member right but returns one member for a batch: ``bayescal check``
    (which times a batch of 32, as the runner and chains give) names the config and the batch."""
    (tmp_path / "first.py").write_text(textwrap.dedent('''
        from bayescal.testing import ToySiteModel

        class FirstOnly(ToySiteModel):
            def __call__(self, theta):
                return super().__call__(theta[:1])
    '''))
    cfg = _site_toml(tmp_path, 'kind = "python"\nentry_point = "first:FirstOnly"\n'
                     'options = {start = "2001-01-01", end = "2003-12-31"}')
    assert main(["check", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}: model (python) given a batch of 32 parameter vectors" in err
    assert "returned 1 members" in err and "Traceback" not in err


def test_run_says_a_configs_warnings_also_when_the_config_is_then_refused(tmp_path):
    """The vegetation warning comes before a later check refuses the config (a truth on real
    observations): ``bayescal run`` says both, as ``bayescal check`` does (it said only the error)."""
    cfg = _vegetation_config(tmp_path, "DE-Gri", "deciduous")
    cfg.write_text(cfg.read_text().replace("[[observations.products]]",
                                           "[observations]\ntruth = { p3 = 0.5 }\n[[observations.products]]"))
    for command in ("run", "check"):
        with pytest.warns(UserWarning, match="site DE-Gri is GRA"):
            assert main([command, str(cfg), "--quiet"] if command == "run" else [command, str(cfg)]) == 2
    assert not (tmp_path / "run").exists()


def test_the_command_prints_a_warning_as_one_line(tmp_path):
    """``bayescal check`` in its own process: the warning is one line on stderr, without Python's
    source line."""
    import subprocess

    cfg = _vegetation_config(tmp_path, "DE-Gri", "deciduous")
    out = subprocess.run([sys.executable, "-m", "bayescal", "check", str(cfg), "--no-model-run"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [x for x in out.stderr.splitlines() if x.strip()]
    assert lines and all(x.startswith("bayescal: warning (UserWarning): ") for x in lines), out.stderr
    assert any("site DE-Gri is GRA (grassland)" in x for x in lines)


def test_two_products_of_one_towers_variable_are_warned_of_and_the_report_shows_it(tmp_path):
    """DE-Hai's NEE from its FLUXNET file and from a copy of it: a warning naming both keys at
    validation, kept in config_warnings.json and shown in the report's Warnings; GPP of both
    partitionings from one file is warned of too, one product of each variable is not."""
    import shutil
    import warnings

    from bayescal.workflow.rundir import RunDir

    hai = Path(__file__).parents[1] / "bayescal" / "data" / "fluxnet" / "FLX_DE-Hai_DD_2000-2012.csv"
    shutil.copy(hai, tmp_path / "FLX_DE-Hai_DD_2000-2012_copy.csv")
    model = ('kind = "python"\nentry_point = "bayescal.testing:ToySiteModel"\n'
             'options = {start = "2001-01-01", end = "2003-12-31"}')
    cfg = _site_toml(tmp_path, model, 'start = "optimum"', n_draws=2)
    text = cfg.read_text()
    fluxnet = '[[observations.products]]\nvariable = "nee"\nformat = "fluxnet"\nfile = "{}"\nname = "{}"\n'
    one = text[:text.index("[[observations.products]]")] + fluxnet.format(hai, "nee") + \
        text[text.index("[posterior]"):]
    cfg.write_text(one)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_config(cfg)
    assert not [w for w in caught if "count twice" in str(w.message)]
    cfg.write_text(one.replace("[posterior]", fluxnet.format("FLX_DE-Hai_DD_2000-2012_copy.csv", "copy")
                               + "[posterior]"))
    with pytest.warns(UserWarning, match=r"'observations.products\[1\]' and 'observations.products\[0\]' are "
                                         r"both nee of site DE-Hai on [0-9]+ of the .*count twice"):
        assert main(["run", str(cfg), "--quiet"]) == 0
    said = RunDir(tmp_path / "run").config_warnings()
    assert len(said) == 1 and said[0].startswith("UserWarning: 'observations.products[1]'"), said
    page = (tmp_path / "run" / "report.html").read_text()
    assert "<b>config</b>: UserWarning: &#x27;observations.products[1]&#x27; and" in page
    # GPP of both partitionings from one file: warned of; of years that share no day: not
    import dataclasses

    from bayescal.readers import read_fluxnet_product
    from bayescal.workflows.site.config import _warn_same_tower

    specs = [{"variable": "gpp", "format": "fluxnet", "file": str(hai), "partitioning": p}
             for p in ("NT", "DT")]
    gpp = [read_fluxnet_product(hai, "gpp", partitioning=p) for p in ("NT", "DT")]
    with pytest.warns(UserWarning, match=r"products\[1\]' and .*products\[0\]' are both gpp of site DE-Hai"):
        _warn_same_tower(specs, gpp)
    apart = [gpp[0].data.sel(time=slice("2000", "2004")), gpp[1].data.sel(time=slice("2005", "2012"))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_same_tower(specs, [dataclasses.replace(g, data=d, sigma=g.sigma.sel(time=d["time"]))
                                 for g, d in zip(gpp, apart, strict=True)])


def test_a_search_still_improving_at_its_budget_is_warned_of():
    """The maximum-likelihood search's best -log L still falling by more than a nat over its last
    fifth: its optimum (the error model's start) is not the maximum -- a warning naming the key."""
    import warnings

    from bayescal.workflows.site.stages import _say_if_still_improving

    falling = np.concatenate([np.full(10, np.nan), 1000.0 - np.linspace(0, 50, 400)])  # 10 failed first
    with pytest.warns(RuntimeWarning, match=r"fell by 10 over its last 80 of 400 .*ml_evaluations \(410\)"):
        _say_if_still_improving(falling, 410)
    converged = np.r_[1000.0 - np.linspace(0, 50, 300), np.full(100, 950.0 - 0.5)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _say_if_still_improving(converged, 400, converged[-24:])  # its last generation: all at the best
    # a stalled search (a newcomer's 100 evaluations): its best flat over the last fifth, its last
    # generation (8 runs here) still thousands of nats apart -- not converged either
    rng = np.random.default_rng(0)
    misfit = 20000.0 + rng.uniform(0, 5000, 100)
    misfit[50], misfit[-8:] = 19926.7, 19926.7 + np.array([1, 40, 900, 3000, 50, 7, 12000, 600])
    stalled = np.minimum.accumulate(misfit)
    with pytest.warns(RuntimeWarning, match=r"not converged .*its last 8 evaluations' -log L spread over"):
        _say_if_still_improving(stalled, 100, misfit[-8:])


def test_a_search_that_settled_far_above_its_best_run_is_warned_of():
    """CMA-ES converged (its last generation within 0.01 nats) 28,600 nats above a run of its
    second generation (FR-Pue): that run is the optimum used -- said, naming it; a search whose
    last generation is at its best is not."""
    import warnings

    from bayescal.workflows.site.stages import _say_if_settled_above

    misfit = np.r_[np.full(30, 80000.0), 50352.9, np.full(69, 79000.0), np.full(24, 78949.01)]
    misfit[3] = np.nan  # a failed run
    last = np.r_[np.zeros(100, bool), np.ones(24, bool)]
    with pytest.warns(RuntimeWarning, match=r"converged at -log L 78949, 2\.86e\+04 above its best run "
                                            r"\(evaluation 31 of 124, -log L 50352\.9"):
        _say_if_settled_above(misfit, last)
    misfit[-24:] = 50352.9 + np.linspace(0, 0.01, 24)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _say_if_settled_above(misfit, last)


def test_a_sigma_far_above_the_residuals_is_warned_of(tmp_path):
    """A CSV's sigma column in the wrong units (0.3 gC m-2 d-1 declared as kgC m-2 d-1: 300, far
    above the residuals) is warned of by the posterior stage, naming the product, as the stage
    runs (not only counted in its record); the right units are not."""
    import warnings

    toy = 'kind = "python"\nentry_point = "bayescal.testing:ToySiteModel"\noptions = {end = "2003-12-31"}'
    for units, warned in (("gC m-2 d-1", False), ("kgC m-2 d-1", True)):
        cfg = _site_toml(tmp_path, toy, "n_particles = 200")  # a message: a short tempered start
        cfg.write_text(cfg.read_text().replace('units = "gC m-2 d-1"',
                                               f'units = "gC m-2 d-1"\nsigma_units = "{units}"', 1))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert main(["run", str(cfg), "--until", "posterior", "--run-dir", str(tmp_path / units),
                         "--quiet"]) == 0
        pattern = (r"product 'nee': the best run's residuals \(rms 0\.\d+ gC m-2 d-1\) are far below the "
                   r"observations' sigma \(rms 300\)")
        said = [w for w in caught if w.category is UserWarning and re.match(pattern, str(w.message))]
        assert bool(said) == warned, [str(w.message) for w in caught]
        record = json.loads((tmp_path / units / "posterior" / "stage.json").read_text())
        assert any(re.search(pattern, m) for m in record["warnings"]) == warned


def test_a_bad_parameters_file_is_a_config_error_naming_it_for_every_model_kind(tmp_path):
    """Reversed bounds, a default outside them, a missing or unknown DALEC value and bounds wider
    than DALEC's own ranges: exit 2 naming 'model.parameters_file' (DALEC's and python models'
    went out as tracebacks); a narrowed DALEC space is accepted."""
    import tomllib

    import tomli_w

    from bayescal.models.dalec import dalec_parameter_space
    from bayescal.workflows.validate import model_space

    base = tmp_path / "dalec_space.toml"
    dalec_parameter_space("evergreen").to_toml(base)
    spec = tomllib.loads(base.read_text())

    def space_with(edit) -> dict:
        d = {k: dict(v) for k, v in spec["parameters"].items()}
        edit(d)
        path = tmp_path / "edited.toml"
        path.write_text(tomli_w.dumps({**spec, "parameters": d}))
        return {"model": {"kind": "dalec", "dalec_type": "evergreen", "parameters_file": str(path)}}

    narrow = space_with(lambda d: d["p2"].update(lower=0.3, upper=0.6))
    assert model_space(narrow)["p2"].upper[0] == 0.6
    # a file of the values it changes: the others keep DALEC's bounds and defaults, in its order
    (tmp_path / "p2.toml").write_text("[parameters.p2]\nlower = 0.3\nupper = 0.6\n"
                                      "[parameters.p10]\ndefault = 0.1\n")
    partial = model_space({"model": {"kind": "dalec", "dalec_type": "evergreen",
                                     "parameters_file": str(tmp_path / "p2.toml")}})
    full = dalec_parameter_space("evergreen")
    assert partial.all_labels == full.all_labels and partial.fixed == full.fixed
    changed = {"p2": (0.3, 0.6, full["p2"].default[0]),
               "p10": (full["p10"].lower[0], full["p10"].upper[0], 0.1)}
    for name in full.names:
        want = changed.get(name, (full[name].lower[0], full[name].upper[0], full[name].default[0]))
        assert (partial[name].lower[0], partial[name].upper[0], partial[name].default[0]) == want, name
    cases = [
        (lambda d: d["p2"].update(lower=0.65, upper=0.3), r"p2.*lower bound 0.65 is not below upper"),
        (lambda d: d["p2"].update(default=0.9), r"p2.*default 0.9 outside bounds"),
        (lambda d: d.update(p2x=d.pop("p2")), r"DALEC-evergreen has no values \['p2x'\]; did you mean 'p2'"),
        (lambda d: d.update(p3=0.5), r"needs a \[parameters.<name>\] table for each value it changes"),
        (lambda d: d["p2"].update(groups="pft9"), r"p2 is 1 value\(s\) in DALEC .*; the file makes it 9"),
        (lambda d: d["p2"].update(lower=0.0, upper=1.5),
         r"p2's bounds \[0, 1.5\] leave DALEC's range \[0.2, 0.7\]"),
    ]
    for edit, match in cases:
        with pytest.raises(ConfigError, match=r"'model.parameters_file' .*edited.toml: .*" + match):
            model_space(space_with(edit))
    (tmp_path / "space.toml").write_text('[parameters.a]\ndefault = 2.0\nlower = 5.0\nupper = 0.0\n'
                                         '[parameters.b]\ndefault = 0.0\nlower = -2.0\nupper = 2.0\n')
    cfg = _site_toml(tmp_path, 'kind = "python"\nentry_point = "bayescal.testing:ToySiteModel"\n'
                     'parameters_file = "space.toml"')
    assert main(["check", str(cfg), "--no-model-run"]) == 2


def test_the_direct_routes_chain_counts_its_runs_and_failures_for_the_report(tmp_path):
    """The direct route's chain runs the model in place (not stored): its runs and failed ones
    (by reason) are counted into posterior/evaluations.json and the report's table -- here a
    model failing for b > 1.5 (an eighth of the prior, where the tempered start begins)."""
    from bayescal.report.page import failed_runs_section
    from bayescal.workflow.rundir import RunDir

    (tmp_path / "failing.py").write_text(textwrap.dedent('''
        import numpy as np
        from bayescal.testing import ToySiteModel

        class Failing(ToySiteModel):
            def __call__(self, theta):
                ds = super().__call__(theta)
                b = np.atleast_2d(theta)[:, 1]
                ds["status"] = ("member", np.where(b > 1.5, "failed", "done"))
                why = [f"offset {v:.3f} above 1.5" if v > 1.5 else "" for v in b]
                ds["reason"] = ("member", np.array(why))
                ds["nee"].values[b > 1.5] = np.nan
                return ds
    '''))
    cfg = _site_toml(tmp_path, 'kind = "python"\nentry_point = "failing:Failing"\n'
                     'options = {start = "2001-01-01", end = "2003-12-31"}',
                     'start = "tempered"\nn_particles = 200', n_draws=2)
    assert main(["run", str(cfg), "--quiet"]) == 0
    rows = RunDir(tmp_path / "run").run_failures()
    runs_chain, why = rows["posterior (inside the chain, not stored)"]
    assert set(why) == {"offset … above …"} and 0 < why["offset … above …"] < runs_chain
    assert runs_chain >= 200 + 8 * 400  # the tempered start's particles and every chain step's walkers
    assert "inside the chain, not stored" in failed_runs_section(RunDir(tmp_path / "run"))
    # the maximum-likelihood search's runs too (CMA-ES from the defaults, b = 0: few if any fail)
    history = xr.load_dataset(tmp_path / "run" / "optimize" / "history.nc")
    runs, why = rows["optimize (inside the search, not stored)"]
    assert runs == history.sizes[history["misfit"].dims[0]]
    assert sum(why.values()) == int((history["status"] == "failed").sum())
    # a damaged output file reruns the finished stage on its finished chain: its record still
    # counts the chain's runs (it counted only the stored optimum run), and adds those made again
    # (the predictive draws), as the chain's count does
    record = json.loads((tmp_path / "run" / "posterior" / "stage.json").read_text())
    (tmp_path / "run" / "posterior" / "diagnostics.nc").write_bytes(b"torn")
    with pytest.warns(RuntimeWarning, match="damaged"):
        assert main(["run", str(cfg), "--quiet"]) == 0
    again = json.loads((tmp_path / "run" / "posterior" / "stage.json").read_text())
    rows = RunDir(tmp_path / "run").run_failures()
    chain = [n for row, (n, _) in rows.items() if row.startswith("posterior (inside the chain")]
    assert len(chain) == 1 and again["runs"] - record["runs"] == chain[0] - runs_chain < 0.1 * runs_chain
    assert record["runs"] > 200 + 8 * 400 and again["kept_runs"] == 0


def test_a_continued_chain_is_said(tmp_path):
    """A resumed direct route says where its chain continues: the stored steps."""
    import emcee

    from bayescal.workflows.site.stages import _say_resumed

    said: list[str] = []

    class Ctx:
        say = staticmethod(said.append)

    chain = tmp_path / "chain.h5"
    _say_resumed(Ctx, chain)  # none yet: nothing said
    assert said == []
    (tmp_path / "tempered_progress.nc").write_bytes(b"")  # a stopped tempered SMC: said
    _say_resumed(Ctx, chain)
    assert said == ["  tempered SMC resumed (tempered_progress.nc holds the temperatures a stopped run "
                    "finished)"]
    said.clear()
    backend = emcee.backends.HDFBackend(str(chain))
    backend.reset(4, 1)
    emcee.EnsembleSampler(4, 1, lambda x: -0.5 * float(x @ x), backend=backend).run_mcmc(
        np.random.default_rng(0).normal(size=(4, 1)), 7)
    _say_resumed(Ctx, chain)
    assert said == ["  chain resumed at step 7 (chain.h5 holds the steps of a stopped run, or of a run "
                    "with a lower posterior.max_steps)"]
    # the emulator route's rounds, in their order (round10 after round2; the final chain last)
    from bayescal.workflows.site.stages import _say_rounds_resumed

    said.clear()
    _say_rounds_resumed(Ctx, tmp_path / "chains")  # none yet: nothing said
    (tmp_path / "chains").mkdir()
    for name, steps in (("round_final", 2), ("round10", 3), ("round2", 5)):
        backend = emcee.backends.HDFBackend(str(tmp_path / "chains" / f"{name}.h5"))
        backend.reset(4, 1)
        emcee.EnsembleSampler(4, 1, lambda x: -0.5 * float(x @ x), backend=backend).run_mcmc(
            np.random.default_rng(0).normal(size=(4, 1)), steps)
    _say_rounds_resumed(Ctx, tmp_path / "chains")
    assert said == ["  resumed: the chains of a stopped run are continued (round2 5 steps, round10 3 steps, "
                    "round_final 2 steps); the rounds' model runs are in their stores"]


def test_a_partial_dalec_parameters_file_reaches_the_model(tmp_path):
    """The documented file of the values it changes (docs/site.md) is the model's space, not only
    the validated config's: check's model run and the stages use the merged space."""
    from bayescal.workflows import make_context

    example = Path(__file__).parents[1] / "examples" / "site_hainich.toml"
    (tmp_path / "dalec_space.toml").write_text("[parameters.p2]\nlower = 0.3\nupper = 0.6\n"
                                               "[parameters.lma]\nfixed = false\n")
    text = example.read_text().replace("[model]\n", '[model]\nparameters_file = "dalec_space.toml"\n', 1)
    text = text.replace('output = "', f'output = "{tmp_path}/run" #', 1)
    (tmp_path / "site.toml").write_text(text)
    assert main(["check", str(tmp_path / "site.toml")]) == 0
    ctx = make_context(load_config(tmp_path / "site.toml"), tmp_path / "run", progress=False)
    space = ctx.model.space
    assert (space["p2"].lower[0], space["p2"].upper[0]) == (0.3, 0.6) and "lma" in space.labels
    assert "lma" not in space.fixed and space.fixed == {"nit": 2.0}


def _monthly_csv(tmp_path, a=2.5, b=-0.4) -> Path:
    """The toy site's monthly means (2001-2003), stamped mid-month, sigma 0.1."""
    from bayescal.testing import toy_site_series

    t = pd.date_range("2001-01-01", "2003-12-31", freq="D")
    y = pd.Series(toy_site_series(np.array([a]), np.array([b]), t.values)[0], index=t).resample("MS").mean()
    path = tmp_path / "nee_monthly.csv"
    pd.DataFrame({"time": (y.index + pd.Timedelta(days=14)).strftime("%Y-%m-%d"), "value": y.values,
                  "sigma": 0.1}).to_csv(path, index=False)
    return path


def test_a_site_run_with_monthly_products_validates_on_the_daily_one(tmp_path):
    """A monthly product beside a daily one: the propagation validates day by day on the daily
    product with that product's error model, whichever comes first; with the monthly product
    alone every stage still runs (the bands are drawn, no day is observed) and the posterior
    recovers the twin's amplitude from the monthly means."""
    from bayescal.workflows import make_context
    from bayescal.workflows.site.propagate_stage import _observed_full

    model = 'kind = "python"\nentry_point = "bayescal.testing:ToySiteModel"'
    monthly = (f'[[observations.products]]\nvariable = "nee"\nformat = "csv"\n'
               f'file = "{_monthly_csv(tmp_path)}"\nunits = "gC m-2 d-1"\nperiod = "month"\n'
               'name = "monthly"\n')
    path = _site_toml(tmp_path, model, "n_particles = 200", n_draws=8)
    daily = path.read_text()
    first = daily.replace("[[observations.products]]", monthly + "[[observations.products]]", 1)
    for text in (daily.replace("[posterior]", monthly + "[posterior]"), first):
        path.write_text(text)
        ctx = make_context(load_config(path), tmp_path / "run", progress=False)
        assert _observed_full(ctx)["nee"].attrs["product"] == "nee"  # the daily CSV's name
    start, end = daily.index("[[observations.products]]"), daily.index("[posterior]")
    path.write_text(daily[:start] + monthly + daily[end:])
    assert [p["name"] for p in load_config(path)["observations"]["products"]] == ["monthly"]
    assert main(["run", str(path), "--quiet", "--run-dir", str(tmp_path / "only")]) == 0
    summary = json.loads((tmp_path / "only" / "propagate" / "summary.json").read_text())
    assert summary["nee"]["validation_observed_days"] == 0
    assert (tmp_path / "only" / "report.html").exists()
    a = _posterior(tmp_path / "only")[:, 0]
    assert abs(np.median(a) - 2.5) < 0.15
