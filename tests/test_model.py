"""The embedded land-carbon model: conservation, vectorisation, responses, global numbers."""

import numpy as np
import pytest
from scipy import stats
from scipy.stats import qmc

from bayescal.models import VEGETATED_LAND_AREA, LandCarbonModel, make_grid
from bayescal.models.landcarbon import OUTPUT_VARIABLES


def _vmax_scaled(space, factor):
    x = space.all_default.copy()
    idx = [i for i, lab in enumerate(space.all_labels) if lab.startswith("vmax[")]
    x[idx] = np.minimum(x[idx] * factor, space.all_upper[idx])
    return x


def test_grid_areas_add_up_and_fractions_sum_to_one():
    grid = make_grid()
    assert 200 <= grid.sizes["cell"] <= 500
    np.testing.assert_allclose(float(grid.area.sum()), VEGETATED_LAND_AREA, rtol=1e-12)
    np.testing.assert_allclose(grid.pft_frac.sum("pft"), 1.0, rtol=1e-12)
    assert len(set(grid.biome.values)) >= 8
    assert float(grid.lat.min()) < -20 and float(grid.lat.max()) > 60


def test_parameter_space_size(default_model):
    space = default_model.space
    assert len(space) >= 12 and space.n_values >= 40
    for name in ("vmax", "kn", "alpha_phtsyn", "sn", "vpd0", "grescoef", "omega", "lfespany",
                 "kappa"):
        assert name in space


def test_outputs_and_units(default_run):
    for var, (units, _) in OUTPUT_VARIABLES.items():
        assert default_run[var].dims == ("member", "cell", "time")
        assert default_run[var].attrs["units"] == units
    assert default_run["gpp_global"].attrs["units"] == "PgC yr-1"
    assert int(default_run.year[0]) == 1959 and int(default_run.year[-1]) == 2023
    assert not bool(default_run.failed[0])


def test_carbon_mass_balance_closes_every_month(default_run):
    ds = default_run.isel(member=0)
    total = ds.cveg + ds.clitter + ds.csoil  # kg m-2, end of month
    seconds = ds.time.dt.days_in_month * 86400.0
    change = total.diff("time")
    expected = (ds.nbp * seconds).isel(time=slice(1, None))
    resid = np.abs(change.values - expected.values) / total.isel(time=slice(1, None)).values
    assert resid.max() <= 1e-9


def test_nbp_is_sum_of_fluxes(default_run):
    ds = default_run.isel(member=0)
    np.testing.assert_allclose(ds.nbp, ds.gpp - ds.ra - ds.rh - ds.fire - ds.fluc,
                               rtol=0, atol=1e-15)


def test_default_global_numbers(default_run):
    ds = default_run.isel(member=0)
    period = ds.sel(year=slice(2003, 2022))
    assert 110 <= float(period.gpp_global.mean()) <= 140
    assert 0 <= float(period.nbp_global.mean()) <= 3
    nbp = ds.nbp_global.sel(year=slice(1960, 2023))
    fit = stats.linregress(nbp.year.values, nbp.values)
    assert fit.slope > 0 and fit.pvalue < 0.05
    detrended = nbp.values - (fit.intercept + fit.slope * nbp.year.values)
    assert detrended.std() > 0.3  # interannual variability, PgC/yr


def test_boreal_lai_peaks_in_nh_summer(default_run):
    ds = default_run.isel(member=0)
    boreal = ds.lai.where(ds.biome == "boreal forest", drop=True).mean("cell")
    clim = boreal.groupby("time.month").mean()
    assert int(clim.month[int(np.argmax(clim.values))]) in (6, 7, 8)
    assert float(clim.max()) > 1.1 * float(clim.sel(month=[1, 2]).mean())


def test_batched_equals_member_by_member(small_model):
    space = small_model.space
    u = qmc.LatinHypercube(d=space.n_free, seed=7).random(5)
    theta = space.from_unit(u)
    batch = small_model.simulate(theta)
    for m in range(theta.shape[0]):
        one = small_model.simulate(theta[m])
        for var in ("gpp", "nbp", "lai", "cveg", "hfls"):
            np.testing.assert_allclose(batch[var].isel(member=m), one[var].isel(member=0),
                                       rtol=1e-12, atol=1e-20)
        np.testing.assert_allclose(batch.gpp_global.isel(member=m), one.gpp_global.isel(member=0),
                                   rtol=1e-12)
    # chunking changes nothing
    other = LandCarbonModel(grid=small_model.grid, drivers=small_model.drivers, chunk_size=5)
    np.testing.assert_array_equal(other.simulate(theta).gpp.values, batch.gpp.values)


def test_gpp_rises_with_vmax(small_model):
    space = small_model.space
    ds = small_model.simulate(np.stack([_vmax_scaled(space, f) for f in (0.8, 1.0, 1.2)]))
    gpp = ds.gpp_global.mean("year").values
    assert np.all(np.diff(gpp) > 0)


def test_gpp_rises_with_co2(small_model):
    drivers = small_model.drivers.copy()
    drivers["co2"] = drivers["co2"] + 100.0
    high = LandCarbonModel(grid=small_model.grid, drivers=drivers)
    theta = small_model.space.all_default
    assert float(high.simulate(theta).gpp_global.mean()) > float(
        small_model.simulate(theta).gpp_global.mean()
    )
    # and along the historical CO2 rise, at fixed climate anomalies
    assert float(high.simulate(theta).gpp.mean()) > 0


def test_failed_members_are_reported_not_raised(small_model):
    space = small_model.space
    theta = space.from_unit(qmc.LatinHypercube(d=space.n_free, seed=1).random(40))
    ds = small_model.simulate(theta)
    failed = ds.failed.values
    assert failed.any(), "this design is known to contain parameter sets the model rejects"
    assert not failed.all()
    for m in np.flatnonzero(failed):
        assert ds.failure.values[m] != ""
        assert np.isnan(ds.gpp.values[m]).all()
    ok = ~failed
    assert np.isfinite(ds.gpp.values[ok]).all()
    assert all(r == "" for r in ds.failure.values[ok])


def test_bad_input_is_named(small_model):
    with pytest.raises(ValueError, match="shape"):
        small_model.simulate(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="unknown output variables \\['gross'\\]"):
        small_model.simulate(small_model.space.all_default, variables=["gross"])
    theta = small_model.space.all_default.copy()
    theta[0] = np.nan
    with pytest.raises(ValueError, match=r"vmax\[NDL-EVG\]"):
        small_model.simulate(theta)
