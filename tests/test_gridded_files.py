"""The global workflow's own observation files, one step off the examples: gaps the model's
summaries must follow, a file edited between runs, a sigma in its own units, CLM's end-of-month
time stamps, and config mistakes named before any file is read (issue 25's newcomer checks)."""

import os
import warnings
from pathlib import Path

import cftime
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from test_gridded import TINY, _cells, _files_config

from bayescal.cli import main
from bayescal.observations.products import ObservationError, Observations, Product
from bayescal.operators.summaries import BiomeSummaries
from bayescal.readers import ReaderError, read_netcdf_product, write_gridded_products
from bayescal.workflows import ConfigError, load_config, make_context


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The tiny config's model at its defaults: (context, its output on the calibration months)."""
    ctx = make_context(load_config(TINY), tmp_path_factory.mktemp("gaps") / "run", progress=False)
    m = ctx.model
    return ctx, m.simulate(m.space.all_default[None, :]).sel(time=slice("2000", "2008"))


def _perfect(ds, data, name="perfect"):
    return Product(name, "gpp", data, 0.1 * abs(data))


def test_model_summaries_follow_the_products_gaps(default_run):
    """The model's own run as observations, with the northern winters blanked (optical products):
    with ``coverage`` the observed and modelled summaries agree to rounding; counting every cell
    and month on the model's side, as before, puts them several sigma apart."""
    ctx, ds = default_run
    g = ds["gpp"].isel(member=0, drop=True)
    lat = ctx.model.grid["lat"].sel(cell=g["cell"])
    gappy = g.where(~((lat > 30) & g["time"].dt.month.isin([11, 12, 1, 2, 3])))
    for prods in ([_perfect(ds, gappy)], [_perfect(ds, gappy), _perfect(ds, g * 1.2, "biased")]):
        obs = Observations(prods)
        follow = BiomeSummaries(["gpp"], 0.03, coverage=obs)
        y, s = follow.of_observations(obs, ctx.model.grid)
        shift = np.log(1.2) / 2 if len(prods) == 2 else 0.0  # the biased product's half of the mean
        np.testing.assert_allclose(y - shift, follow.of_model(ds)[0], rtol=0, atol=1e-12)
        blind = BiomeSummaries(["gpp"], 0.03)
        assert np.max(np.abs(y - shift - blind.of_model(ds)[0]) / s) > 1.0
    north = g.where(lat > 45)  # the tropics unobserved: a summary that cannot be formed is named
    with pytest.raises(ObservationError, match="no product of 'gpp'.*has a value in biome"):
        BiomeSummaries(["gpp"], 0.03, coverage=Observations([_perfect(ds, north)])).of_observations(
            Observations([_perfect(ds, north)]), ctx.model.grid)


def test_an_edited_product_file_is_read_again(tmp_path):
    twin = make_context(load_config(TINY), tmp_path / "twin_run", progress=False)
    obs, truth = twin.twin()
    write_gridded_products(obs, truth, tmp_path / "products", resolution=2.0)
    cfg = _files_config(tmp_path, tmp_path / "products")
    before = make_context(load_config(cfg), tmp_path / "run", progress=False).observed()[0]
    f = next((tmp_path / "products").glob("gpp_*.nc"))
    ds = xr.load_dataset(f)
    ds["gpp"] = ds["gpp"] * 1.5
    os.remove(f)
    ds.to_netcdf(f)
    after = make_context(load_config(cfg), tmp_path / "run", progress=False).observed()[0]
    n_r = np.unique(truth["biome"].values).size
    k = len(obs["gpp"])  # one of the gpp products x 1.5: the mean of their logs moves by ln 1.5 / k
    np.testing.assert_allclose(after[:n_r] - before[:n_r], np.log(1.5) / k, rtol=1e-5)
    np.testing.assert_array_equal(after[n_r:], before[n_r:])
    ds["gpp"] = -ds["gpp"]  # uptake as negative: log biome means of it cannot be formed, said before any run
    os.remove(f)
    ds.to_netcdf(f)
    with pytest.raises(ConfigError, match=rf"observed mean of 'gpp' over biome .* is not positive "
                                          rf".*'{f.stem}' \(values -.*other sign convention"):
        load_config(cfg)


def test_a_sigma_variable_in_its_own_units_and_clm_end_of_month_stamps(tmp_path):
    """sigma in gC m-2 d-1 beside data in kg m-2 s-1; a CLM history file: noleap, each month
    stamped at its end (January on 1 February) with time_bounds."""
    ends = [cftime.DatetimeNoLeap(2001 + (m + 1) // 12, (m + 1) % 12 + 1, 1) for m in range(3)]
    starts = [cftime.DatetimeNoLeap(2001, m + 1, 1) for m in range(3)]
    v = np.arange(1.0, 4.0)[:, None, None] * np.ones((3, 2, 2)) * 1e-8
    ds = xr.Dataset({"GPP": (("time", "lat", "lon"), v, {"units": "kg m-2 s-1"}),
                     "GPP_sd": (("time", "lat", "lon"), 0.1 * v * 1e3 * 86400, {"units": "g C m-2 d-1"}),
                     "time_bounds": (("time", "hist_interval"), np.array([starts, ends]).T)},
                    coords={"time": ("time", ends, {"bounds": "time_bounds"}), "lat": [10.0, 20.0],
                            "lon": [0.0, 10.0]})
    f = tmp_path / "clm.nc"
    ds.to_netcdf(f, encoding={"time": {"units": "days since 2001-01-01", "calendar": "noleap"},
                              "time_bounds": {"units": "days since 2001-01-01", "calendar": "noleap"}})
    p = read_netcdf_product(f, "gpp", nc_variable="GPP", sigma_variable="GPP_sd", cells=_cells([10.0], [0.0]),
                            months=pd.date_range("2001-01-01", periods=3, freq="MS"), units="gC m-2 d-1")
    np.testing.assert_allclose(p.data.values[0], np.arange(1.0, 4.0) * 1e-8 * 1e3 * 86400)  # Jan = 1
    np.testing.assert_allclose((p.sigma / p.data).values, 0.1)
    # a year of such stamps without the bounds is read by its stamps, a month late if it is CLM's: said
    ends = [cftime.DatetimeNoLeap(2001 + (m + 1) // 12, (m + 1) % 12 + 1, 1) for m in range(12)]
    one = xr.Dataset({"GPP": (("time", "lat", "lon"), np.ones((12, 2, 2)), {"units": "kg m-2 s-1"})},
                     coords={"time": ends, "lat": [10.0, 20.0], "lon": [0.0, 10.0]})
    one.to_netcdf(f, encoding={"time": {"units": "days since 2001-01-01", "calendar": "noleap"}})
    with pytest.warns(UserWarning, match=r"stamps fall on the 1st, from 2001-02 to 2002-01, without time bo"):
        read_netcdf_product(f, "gpp", nc_variable="GPP", relative_sigma=0.1, cells=_cells([10.0], [0.0]),
                            months=pd.date_range("2001-01-01", periods=3, freq="MS"), units="gC m-2 d-1")
    # six months (April to September) of stamps on the 1st: said if CESM/CLM wrote the file, not otherwise
    six = one.isel(time=slice(2, 8))
    for attrs, said in [({"source": "Community Land Model CLM5.0", "case_id": "I2000"}, True), ({}, False)]:
        six.assign_attrs(attrs).to_netcdf(f, encoding={"time": {"units": "days since 2001-01-01",
                                                                 "calendar": "noleap"}})
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            read_netcdf_product(f, "gpp", nc_variable="GPP", relative_sigma=0.1, cells=_cells([10.0], [0.0]),
                                months=pd.date_range("2001-04-01", periods=6, freq="MS"), units="gC m-2 d-1")
        assert any("from 2001-04 to 2001-09, without time bounds" in str(w.message) for w in seen) == said


def test_units_the_file_lacks_are_given_in_the_products_keys(tmp_path):
    """A file without ``units`` attributes (a variable written by a script): refused, naming the
    variable and the key; with ``units`` / ``sigma_units`` from the config it is read and converted
    as if the file had said them; the config's units replace a wrong attribute."""
    v = np.arange(1.0, 4.0)[:, None, None] * np.ones((3, 2, 2))
    ds = xr.Dataset({"GPP": (("time", "lat", "lon"), v), "GPP_sd": (("time", "lat", "lon"), 0.1 * v)},
                    coords={"time": pd.date_range("2001-01-01", periods=3, freq="MS"),
                            "lat": ("lat", [10.0, 20.0], {"units": "degrees_north"}),
                            "lon": ("lon", [0.0, 10.0], {"units": "degrees_east"})})
    f = tmp_path / "bare.nc"
    ds.to_netcdf(f)
    where = {"cells": _cells([10.0], [0.0]), "months": pd.date_range("2001-01-01", periods=3, freq="MS"),
             "units": "kg m-2 s-1", "nc_variable": "GPP", "sigma_variable": "GPP_sd",
             "key": "observations.products[0]"}
    with pytest.raises(ReaderError, match=r"observations.products\[0\]: .*bare.nc: variable 'GPP' has no "
                                          r"'units' attribute \(CF\): give its units in the product's "
                                          "'units' key"):
        read_netcdf_product(f, "gpp", **where)
    p = read_netcdf_product(f, "gpp", file_units="g m-2 d-1", sigma_units="mg m-2 d-1", **where)
    np.testing.assert_allclose(p.data.values[0], np.arange(1.0, 4.0) * 1e-3 / 86400)
    np.testing.assert_allclose((p.sigma / p.data).values, 1e-4)  # 0.1 of the value, in mg
    assert p.data.attrs["file_units"] == "g m-2 d-1"
    ds["GPP"].attrs["units"] = "kg m-2 s-1"  # wrong: the config's units win, and say so
    os.remove(f)
    ds.to_netcdf(f)
    with pytest.warns(UserWarning, match="units attribute says 'kg m-2 s-1'; the product's 'units' key"):
        q = read_netcdf_product(f, "gpp", file_units="g m-2 d-1", **where)
    np.testing.assert_allclose(q.data.values, p.data.values)
    ds["GPP"].attrs["units"] = "-"  # not a unit: the units key is named as the remedy
    os.remove(f)
    ds.to_netcdf(f)
    with pytest.raises(ReaderError, match=r"variable 'GPP': .*'-'.*; if its units attribute '-' is wrong or "
                                          r"not a unit, give the file's units in the product's 'units' key"):
        read_netcdf_product(f, "gpp", **where)


def test_product_config_mistakes_are_named_before_any_file_is_read(tmp_path):
    twin = make_context(load_config(TINY), tmp_path / "twin_run", progress=False)
    obs, truth = twin.twin()
    write_gridded_products(obs, truth, tmp_path / "products", resolution=2.0)
    good = _files_config(tmp_path, tmp_path / "products").read_text()

    def refused(text, match):
        p = tmp_path / "bad.toml"
        p.write_text(text)
        with pytest.raises(ConfigError, match=match):
            load_config(p)
        assert main(["check", "--no-model-run", str(p)]) == 2

    first = good.index('sigma_variable = "gpp_sigma"')
    refused(good[:first] + 'footprint_deg = "2"\n' + good[first:],
            r"products\[0\]\.footprint_deg' must be a number")
    refused(good.replace('sigma_variable = "gpp_sigma"', 'sigma_variable = ["gpp_sigma"]', 1),
            r"products\[0\]\.sigma_variable' must be a string")
    block = good[good.index("[[observations.products]]"):good.index("[[observations.products]]", first)]
    refused(good + "\n" + block, r"'gpp' product 'gpp.*' is also 'observations.products\[0\]'")
    refused(good.replace("twin = false\n", "twin = true\n"), "not read by a twin")
    refused(good.replace('variable = "gpp"', 'variable = "gppp"', 1),
            r"products\[0\]\.variable' 'gppp' is not in 'observations.variables' \['gpp', 'lai'\]; did you "
            r"mean 'gpp'\? Else add it there")
    implicit = tmp_path / "implicit.toml"  # files given, twin not said: the files are calibrated against
    implicit.write_text(good.replace("twin = false\n", ""))
    assert load_config(implicit)["observations"]["twin"] is False


def test_a_parameters_file_without_a_family_keeps_the_models_own(tmp_path):
    """A parameters file of the embedded model that leaves out a family (gamma_w) is a file of
    the values it changes: gamma_w keeps the built-in bounds and default (as DALEC's and a python
    model's files do); before, it was refused as a whole space that lacked a family."""
    from bayescal.models.landcarbon import default_parameter_space
    from bayescal.parameters import ParameterSpace
    from bayescal.workflows.validate import model_space

    space = default_parameter_space()
    table = space.to_dict()
    del table["parameters"]["gamma_w"]
    table["parameters"]["beta2"]["lower"] = 0.85  # narrowed (from 0.8)
    ParameterSpace.from_dict(table).to_toml(tmp_path / "params.toml")
    file = tmp_path / "params.toml"
    text = TINY.read_text().replace("[model]\n", f'[model]\nparameters_file = "{file}"\n', 1)
    (tmp_path / "c.toml").write_text(text.replace('output = "runs/tiny"', f'output = "{tmp_path / "run"}"'))
    mine = model_space(load_config(tmp_path / "c.toml"))
    assert mine.all_labels == space.all_labels and mine["gamma_w"] == space["gamma_w"]
    assert float(mine["beta2"].lower[0]) == 0.85 and mine["beta2"].upper == space["beta2"].upper
    assert Path(tmp_path / "run").exists() is False


def _tiny(tmp_path, replace: dict) -> Path:
    text = TINY.read_text().replace('output = "runs/tiny"', f'output = "{tmp_path / "run"}"')
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_twin_products_follow_the_models_years():
    """The twin's products of a variable are its defaults that meet the model's years; a model of
    another era (your own) gets them over its own years; a variable without defaults gets one."""
    from bayescal.observations.products import DEFAULT_TWIN_PRODUCTS, twin_specs

    # the years meet every default: the defaults in their order, whatever the variables' (the
    # twin's noise is drawn product by product from one stream: the main job's twin unchanged)
    assert twin_specs(["lai", "hfls", "gpp"], 1990, 2022) == [
        s for s in DEFAULT_TWIN_PRODUCTS if s.variable in ("gpp", "lai", "hfls")]

    names = [(s.name, s.start, s.end) for s in twin_specs(["gpp", "lai"], 1990, 1995)]
    assert names == [("FLUXCOM-like", 1980, 2013), ("AVHRR-like", 1982, 2010)]  # GOSIF's 2000-2017 missed
    old = twin_specs(["gpp", "cveg"], 1901, 1906)
    assert [(s.name, s.start, s.end) for s in old] == [
        ("GOSIF-like", None, None), ("FLUXCOM-like", None, None), ("CVEG-twin", None, None)]
    assert old[0].bias == 1.05 and old[1].bias == 0.95  # the defaults' structure kept


def test_an_emulator_without_optimiser_runs_is_named_before_any_run(tmp_path):
    none = _tiny(tmp_path, {'method = "dfols"': 'method = "none"',
                            "[design]": '[emulator]\ntraining = "optimize"\n\n[design]'})
    with pytest.raises(ConfigError, match=r"'emulator.training' = 'optimize' trains on the optimiser's runs"):
        load_config(none)
    assert not (tmp_path / "run").exists()


def test_the_screen_keeps_free_values_that_are_not_candidates(tmp_path):
    """parameters.free is kept whatever the screen chooses among parameters.candidates."""
    screen = "[screen]\nenabled = true\ntrajectories = 2\ntop_k = 1"
    cfg = _tiny(tmp_path, {"[screen]\nenabled = false": screen,
                           'free = ["vmax[GRASS-C3]", "vmax[NDL-EVG]", "kn[BDL-EVG]", "gamma_w"]':
                           'free = ["kn[BDL-EVG]"]\ncandidates = ["gamma_w", "vmax[GRASS-C3]"]'})
    ctx = make_context(load_config(cfg), tmp_path / "run", progress=False)
    ctx.run(("screen",))
    chosen = ctx.rundir.selected()
    assert "kn[BDL-EVG]" in chosen and len(chosen) == 2
    assert set(chosen) - {"kn[BDL-EVG]"} <= {"gamma_w", "vmax[GRASS-C3]"}


def test_a_relative_sigma_of_zero_values_is_named_and_floored(tmp_path):
    """Winter GPP of zero with relative_sigma: sigma 0 is refused, counting the cell-months and
    naming the remedy; ``sigma_floor`` (in the file's units) floors it, converted as the data are."""
    v = np.array([0.0, 1.0, 2.0])[:, None, None] * np.ones((3, 2, 2))
    ds = xr.Dataset({"GPP": (("time", "lat", "lon"), v, {"units": "g m-2 d-1"})},
                    coords={"time": pd.date_range("2001-01-01", periods=3, freq="MS"),
                            "lat": ("lat", [10.0, 20.0], {"units": "degrees_north"}),
                            "lon": ("lon", [0.0, 10.0], {"units": "degrees_east"})})
    f = tmp_path / "zeros.nc"
    ds.to_netcdf(f)
    where = {"cells": _cells([10.0, 20.0], [0.0, 10.0]), "units": "kg m-2 s-1", "nc_variable": "GPP",
             "months": pd.date_range("2001-01-01", periods=3, freq="MS"), "relative_sigma": 0.1}
    with pytest.raises(ReaderError, match=r"sigma of 'GPP' is zero on 2 of the 6 cell-months with data \(the "
                                          r"first in 2001-01\): zero values .*'sigma_floor'"):
        read_netcdf_product(f, "gpp", **where)
    p = read_netcdf_product(f, "gpp", sigma_floor=0.15, **where)
    np.testing.assert_allclose(p.sigma.transpose("cell", "time").values,
                               np.array([[0.15, 0.15, 0.2]] * 2) * 1e-3 / 86400)
    # a sigma map without time is every month's; a negative one is named as negative
    ds["s"] = (("lat", "lon"), np.full((2, 2), 0.5), {"units": "g m-2 d-1"})
    ds.to_netcdf(f)
    del where["relative_sigma"]
    p = read_netcdf_product(f, "gpp", sigma_variable="s", **where)
    np.testing.assert_allclose(p.sigma.values, 0.5e-3 / 86400)
    ds["s"] = -ds["s"]
    ds.to_netcdf(f)
    with pytest.raises(ReaderError, match=r"sigma of 'GPP' is negative on 6 of the 6 .*fill_value"):
        read_netcdf_product(f, "gpp", sigma_variable="s", **where)
    # an undeclared fill value is named; the units key replacing an attribute that says otherwise warns
    ds["s"], ds["GPP"][:2] = -ds["s"], -9999.0
    ds.to_netcdf(f)
    with pytest.raises(ReaderError, match=r"'GPP' holds -9999 on 4 monthly values of the boxes the model's "
                                          r"cells read.*fill_va"):
        read_netcdf_product(f, "gpp", sigma_variable="s", **where)
    with pytest.warns(UserWarning, match=r"units attribute says 'g m-2 d-1'; the product's 'units' key 'g"):
        p = read_netcdf_product(f, "gpp", sigma_variable="s", fill_value=-9999, file_units="g m-2 s-1",
                                **where)
    assert int(p.data.notnull().sum()) == 2  # the fill value missing; sigma follows the key (same attribute)
    np.testing.assert_allclose(p.sigma.values, 0.5e-3)
    np.testing.assert_allclose(p.data.transpose("cell", "time").values[:, 2:], [[2e-3]] * 2)


def test_a_time_step_twice_and_a_variable_named_otherwise_are_named(tmp_path):
    """Two versions of a product concatenated (months 4-6 twice) were read as the mean of the two;
    now an error naming the first such step. A variable named ``GPP`` where ``gpp`` is looked for:
    the error names the key that reads it."""
    from bayescal.readers.gridded import check_netcdf_file

    t = pd.date_range("2001-01-01", periods=6, freq="MS")
    ds = xr.Dataset({"GPP": (("time", "lat", "lon"), np.ones((6, 2, 2)), {"units": "gC m-2 d-1"})},
                    coords={"time": t, "lat": ("lat", [0.5, 1.5], {"units": "degrees_north"}),
                            "lon": ("lon", [0.5, 1.5], {"units": "degrees_east"})})
    ds.to_netcdf(tmp_path / "a.nc")
    with pytest.raises(ReaderError, match=r"no variable 'gpp'; the file has \['GPP'\] \(the product's "
                                          r"'nc_variable' key names the file's variable: "
                                          r"nc_variable = 'GPP'\?\)"):
        check_netcdf_file(tmp_path / "a.nc", "gpp", relative_sigma=0.1)
    check_netcdf_file(tmp_path / "a.nc", "gpp", nc_variable="GPP", relative_sigma=0.1)
    xr.concat([ds, ds.isel(time=slice(3, 6))], "time").to_netcdf(tmp_path / "b.nc")
    with pytest.raises(ReaderError, match=r"has 3 time step\(s\) twice, the first 2001-04-01.*"
                                          r"drop_duplicates\('time'\)"):
        check_netcdf_file(tmp_path / "b.nc", "gpp", nc_variable="GPP", relative_sigma=0.1)


def test_a_single_product_far_off_the_models_scale_is_warned_of(tmp_path):
    """gC m-2 d-1 values in a file saying kg m-2 s-1 (86.4 million times too large once read): with
    one product of the variable nothing disagrees with it, and the check against the model's run
    at its defaults says so, naming the file and both units."""
    twin = make_context(load_config(TINY), tmp_path / "twin_run", progress=False)
    obs, truth = twin.twin()
    one = Observations([obs["gpp"][0], *obs["lai"]])
    write_gridded_products(one, truth, tmp_path / "products", resolution=2.0)
    f = next((tmp_path / "products").glob("gpp_*.nc"))
    ds = xr.load_dataset(f)
    assert ds["gpp"].attrs["units"] == "kg m-2 s-1"  # the embedded model's: now its values in gC m-2 d-1
    for v in ("gpp", "gpp_sigma"):
        ds[v] = (ds[v] * 86400e3).assign_attrs(ds[v].attrs)
    os.remove(f)
    ds.to_netcdf(f)
    cfg = load_config(_files_config(tmp_path, tmp_path / "products"))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        make_context(cfg, tmp_path / "run", progress=False).twin()
    msgs = [str(w.message) for w in said if "times the model's at its defaults" in str(w.message)]
    assert len(msgs) == 1 and f.name in msgs[0] and "[kg m-2 s-1]" in msgs[0], [str(w.message) for w in said]
