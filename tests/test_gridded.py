"""The CF-netCDF file route of the global model: twin products written on a lat-lon grid and read
back through the config give the same likelihood summaries; alignment and file errors."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayescal.cli import main
from bayescal.readers import ReaderError, read_netcdf_product, write_gridded_products
from bayescal.workflows import ConfigError, load_config, make_context

TINY = Path(__file__).parent / "data" / "tiny.toml"


def _files_config(tmp_path, products_dir, extra_obs=""):
    text = TINY.read_text()
    a, b = text.index("[observations]"), text.index("[screen]")
    obs = '[observations]\ntwin = false\nvariables = ["gpp", "lai"]\ngcb_years = [2000, 2008]\n' + extra_obs
    for f in sorted(products_dir.glob("*.nc")):
        v = f.name.split("_")[0]
        obs += (f'\n[[observations.products]]\nvariable = "{v}"\nformat = "netcdf"\nfile = "{f}"\n'
                f'sigma_variable = "{v}_sigma"\n')
    text = text[:a] + obs + "\n" + text[b:]
    text = text.replace('output = "runs/tiny"', f'output = "{tmp_path / "run"}"')
    path = tmp_path / "files.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cf")
    twin = make_context(load_config(TINY), tmp / "twin_run", progress=False)
    obs, truth = twin.twin()
    # 2 degree boxes: each of the 20 cells in a box of its own (else write_gridded_products refuses)
    write_gridded_products(obs, truth, tmp / "products", resolution=2.0)
    return twin, tmp


def test_file_route_reproduces_the_twin_summaries(written, tmp_path):
    twin, tmp = written
    files = make_context(load_config(_files_config(tmp_path, tmp / "products")), tmp_path / "run",
                          progress=False)
    y_twin, s_twin = twin.observed()
    y_file, s_file = files.observed()
    # float32 storage in the files: 1e-6 relative
    np.testing.assert_allclose(y_file, y_twin, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(s_file, s_twin, rtol=1e-5, atol=1e-9)


def test_footprint_averages_boxes_by_area(tmp_path):
    lat, lon = np.array([-0.5, 0.5, 59.5, 60.5]), np.array([9.5, 10.5])
    t = pd.date_range("2001-01-01", periods=59, freq="D")  # daily, Jan-Feb: averaged to months
    v = np.full((t.size, 4, 2), 2.0)
    v[:, 2:, :] = np.array([[1.0, 1.0], [3.0, 3.0]])[None]  # 59.5 N -> 1, 60.5 N -> 3
    v[:31, 0, 0] = np.nan  # a missing box is ignored
    ds = xr.Dataset({"gpp": (("time", "lat", "lon"), v, {"units": "gC m-2 d-1"})},
                    coords={"time": t, "lat": lat, "lon": lon})
    f = tmp_path / "p.nc"
    ds.to_netcdf(f)
    cells = xr.Dataset({"lat": ("cell", [0.0, 60.0]), "lon": ("cell", [10.0, 10.0])}, coords={"cell": [0, 1]})
    months = pd.date_range("2001-01-01", periods=3, freq="MS")
    p = read_netcdf_product(f, "gpp", cells=cells, months=months, units="gC m-2 d-1", relative_sigma=0.1,
                            footprint_deg=1.0)
    w = np.cos(np.deg2rad([59.5, 60.5]))
    assert p.data.values[1, 0] == pytest.approx((w[0] * 1 + w[1] * 3) / w.sum(), rel=1e-12)
    assert p.data.values[0, 0] == 2.0 and np.isnan(p.data.values[:, 2]).all()  # March: not in the file
    nearest = read_netcdf_product(f, "gpp", cells=cells, months=months, units="kgC m-2 s-1",
                                  relative_sigma=0.1)
    assert nearest.data.values[1, 0] == pytest.approx(1e-3 / 86400)  # 59.5 N is nearest; units converted
    # a cell on a box edge takes the same box whichever way the file's coordinates run (the first
    # index of a tie took the northern box when latitudes descend, the eastern one on 0..360)
    edge = xr.Dataset({"lat": ("cell", [60.0]), "lon": ("cell", [10.0])}, coords={"cell": [0]})
    seen = set()
    for flip in ({}, {"lat": slice(None, None, -1)}, {"lon": slice(None, None, -1)}):
        ds.isel(flip).to_netcdf(f)
        q = read_netcdf_product(f, "gpp", cells=edge, months=months, units="gC m-2 d-1", relative_sigma=0.1)
        seen.add(float(q.data.values[0, 0]))
    assert seen == {1.0}  # the southern box (59.5 N)


def test_file_errors_name_the_key(written, tmp_path):
    _, tmp = written
    good = _files_config(tmp_path, tmp / "products").read_text()

    def bad(old, new, match):
        p = tmp_path / "bad.toml"
        p.write_text(good.replace(old, new, 1))
        with pytest.raises(ConfigError, match=match):
            load_config(p)

    bad('sigma_variable = "gpp_sigma"', 'sigma_variable = "gpp_sd"', r"products\[0\].*no variable 'gpp_sd'")
    bad('format = "netcdf"', 'format = "fluxnet"', r"products\[0\].format' must be one of \('netcdf',\)")
    bad('variables = ["gpp", "lai"]', 'variables = ["gpp", "lai", "hfls"]', r"\['hfls'\] have no product")
    bad("start = 2000\nend = 2008\nramp_start = 1997", "start = 1990\nend = 1995\nramp_start = 1988",
        "no overlap in time or space")
    f = tmp_path / "nounits.nc"
    xr.Dataset({"gpp": (("time", "lat", "lon"), np.ones((1, 1, 1)))},
               coords={"time": [np.datetime64("2001-01-01")], "lat": [0.0], "lon": [0.0]}).to_netcdf(f)
    cells = xr.Dataset({"lat": ("cell", [0.0]), "lon": ("cell", [0.0])}, coords={"cell": [0]})
    with pytest.raises(ReaderError, match="no 'units' attribute"):
        read_netcdf_product(f, "gpp", cells=cells, months=pd.date_range("2001-01-01", periods=1, freq="MS"),
                            units="kg m-2 s-1", relative_sigma=0.1)


#: the tiny config made smaller still for the file route's end-to-end run (every stage still runs
#: and reads the products; tests/test_pipeline.py checks the results of the twin route)
SMALLER = {"max_evaluations = 12": "max_evaluations = 6", "n_runs = 30": "n_runs = 12",
           "n_steps = 200\nmax_steps = 200": "n_steps = 100\nmax_steps = 100",
           "left_out_runs = 12": "left_out_runs = 10", "n_new = 10": "n_new = 4",
           "cloud_points = 2000": "cloud_points = 500", "n_draws = 20": "n_draws = 5"}


@pytest.mark.slow
def test_file_route_runs_end_to_end(written, tmp_path):
    _, tmp = written
    cfg = _files_config(tmp_path, tmp / "products")
    text = cfg.read_text()
    for old, new in SMALLER.items():
        assert old in text, old
        text = text.replace(old, new)
    cfg.write_text(text)
    assert main(["run", str(cfg), "--quiet"]) == 0
    page = (tmp_path / "run" / "report.html").read_text()
    assert "real products from files" in page


# ------------------------------------------------------------------ CF reading (issue 27)
def _cells(lat, lon):
    return xr.Dataset({"lat": ("cell", np.asarray(lat, float)), "lon": ("cell", np.asarray(lon, float))},
                      coords={"cell": np.arange(len(lat))})


def test_noleap_calendar_and_coordinates_found_by_their_cf_attributes(tmp_path):
    """CLM/CESM output: a 'noleap' calendar (cftime) and coordinates named neither lat nor lon."""
    import cftime

    t = [cftime.DatetimeNoLeap(2001, 1 + d // 28, 1 + d % 28) for d in range(56)]  # Jan, Feb 2001
    v = np.zeros((56, 2, 3), dtype=np.float32)
    v[:28], v[28:] = 1.0, 2.0
    v[:14, 0, 0] = np.nan
    ds = xr.Dataset(
        {"GPP": (("time", "nj", "ni"), v, {"units": "gC/m^2/s"})},
        coords={"time": ("time", t, {"axis": "T"}),
                "yc": ("nj", [10.0, 20.0], {"standard_name": "latitude", "units": "degrees_north"}),
                "xc": ("ni", [0.0, 120.0, 240.0], {"standard_name": "longitude", "units": "degrees_east"})})
    f = tmp_path / "clm.nc"
    ds.to_netcdf(f, encoding={"time": {"units": "days since 2001-01-01", "calendar": "noleap"}})
    assert xr.open_dataset(f, decode_times=False)["time"].attrs["calendar"] == "noleap"
    months = pd.date_range("2001-01-01", periods=3, freq="MS")
    p = read_netcdf_product(f, "gpp", nc_variable="GPP", cells=_cells([11.0, 19.0], [-118.0, 239.0]),
                            months=months, units="gC m-2 d-1", relative_sigma=0.1)
    np.testing.assert_allclose(p.data.values[:, :2], [[86400.0, 2 * 86400.0]] * 2)
    assert np.isnan(p.data.values[:, 2]).all()  # March: not in the file
    assert p.data.attrs["file_units"] == "gC/m^2/s"


def _curvilinear(tmp_path, value):
    """A rotated 2-D lat/lon grid on projection coordinates (y, x in metres)."""
    y, x = np.meshgrid(np.arange(8.0), np.arange(10.0), indexing="ij")
    lat, lon = 40.0 + 0.5 * y + 0.1 * x, 355.0 + 0.8 * x - 0.1 * y  # crosses 0/360
    t = pd.date_range("2001-01-01", periods=2, freq="MS")
    v = np.stack([value(lat, lon)] * 2).astype(float)
    ds = xr.Dataset(
        {"lai": (("time", "y", "x"), v, {"units": "1", "coordinates": "nav_lat nav_lon"}),
         "nav_lat": (("y", "x"), lat, {"standard_name": "latitude", "units": "degrees_north"}),
         "nav_lon": (("y", "x"), lon, {"standard_name": "longitude", "units": "degrees_east"})},
        coords={"time": t, "y": ("y", np.arange(8) * 5e4, {"axis": "Y", "units": "m"}),
                "x": ("x", np.arange(10) * 5e4, {"axis": "X", "units": "m"})})
    f = tmp_path / "curv.nc"
    ds.to_netcdf(f)
    return f, lat, lon


def test_curvilinear_grid_nearest_box_and_footprint(tmp_path):
    f, lat, lon = _curvilinear(tmp_path, lambda la, lo: la)
    months = pd.date_range("2001-01-01", periods=2, freq="MS")
    cells = _cells([41.26, 42.0], [-3.1, 1.0])
    p = read_netcdf_product(f, "lai", cells=cells, months=months, units="m2 m-2", relative_sigma=0.1)
    dlon = (lon - (-3.1) + 180) % 360 - 180
    near = np.argmin((lat - 41.26) ** 2 + (dlon * np.cos(np.deg2rad(41.26))) ** 2)
    assert p.data.values[0, 0] == pytest.approx(lat.ravel()[near])
    q = read_netcdf_product(f, "lai", cells=cells, months=months, units="m2 m-2", relative_sigma=0.1,
                            footprint_deg=0.6)
    dlon = (lon - 1.0 + 180) % 360 - 180
    inside = (np.abs(lat - 42.0) <= 0.6) & (np.abs(dlon) <= 0.6 / np.cos(np.deg2rad(42.0)))
    w = np.cos(np.deg2rad(lat[inside]))
    assert inside.sum() > 3
    assert q.data.values[1, 1] == pytest.approx((w * lat[inside]).sum() / w.sum(), rel=1e-12)


def test_a_regular_grid_written_as_2d_coordinates_gives_the_same_product(tmp_path):
    lat, lon = np.array([-0.5, 0.5, 59.5, 60.5]), np.array([9.5, 10.5, 11.5])
    t = pd.date_range("2001-01-01", periods=40, freq="D")
    v = np.random.default_rng(0).uniform(1, 3, (t.size, 4, 3))
    v[3:9, 1, 2] = np.nan
    reg = xr.Dataset({"gpp": (("time", "lat", "lon"), v, {"units": "gC m-2 d-1"})},
                     coords={"time": t, "lat": lat, "lon": lon})
    glat, glon = np.meshgrid(lat, lon, indexing="ij")
    curv = xr.Dataset({"gpp": (("time", "j", "i"), v, {"units": "gC m-2 d-1"})},
                      coords={"time": t, "la": (("j", "i"), glat, {"standard_name": "latitude"}),
                              "lo": (("j", "i"), glon, {"standard_name": "longitude"})})
    reg.to_netcdf(tmp_path / "r.nc")
    curv.to_netcdf(tmp_path / "c.nc")
    kw = dict(cells=_cells([0.0, 60.0], [10.2, 11.0]), units="kgC m-2 s-1", relative_sigma=0.1,
              months=pd.date_range("2001-01-01", periods=2, freq="MS"))
    for fp in (None, 1.0):
        a = read_netcdf_product(tmp_path / "r.nc", "gpp", footprint_deg=fp, **kw)
        b = read_netcdf_product(tmp_path / "c.nc", "gpp", footprint_deg=fp, **kw)
        np.testing.assert_allclose(b.data.values, a.data.values, rtol=1e-13)
        assert np.isfinite(a.data.values).all()


def test_extra_dimension_and_wrong_units_are_named_errors(tmp_path):
    t = pd.date_range("2001-01-01", periods=2, freq="MS")
    ds = xr.Dataset({"mrso": (("time", "depth", "lat", "lon"), np.ones((2, 3, 2, 2)), {"units": "kg m-2"}),
                     "hfls": (("time", "lat", "lon"), np.ones((2, 2, 2)), {"units": "W m-2"}),
                     "evspsbl": (("time", "lat", "lon"), np.ones((2, 2, 2)), {"units": "kg m-2 s-1"})},
                    coords={"time": t, "depth": [0.1, 0.5, 1.0], "lat": [0.0, 1.0], "lon": [0.0, 1.0]})
    f = tmp_path / "x.nc"
    ds.to_netcdf(f)
    kw = dict(cells=_cells([0.0], [0.0]), months=t, relative_sigma=0.1, key="observations.products[2]")
    with pytest.raises(ReaderError, match=r"products\[2\]: .*x.nc: variable 'mrso' has dimension\(s\) "
                                          r"\{'depth': 3\} besides time"):
        read_netcdf_product(f, "mrso", units="kg m-2", **kw)
    with pytest.raises(ReaderError, match=r"x.nc: variable 'hfls': cannot convert 'W m-2' .* to "
                                          r"'gC m-2 d-1' .*for variable 'gpp'"):
        read_netcdf_product(f, "gpp", nc_variable="hfls", units="gC m-2 d-1", **kw)
    # evapotranspiration in kg m-2 s-1 is a water flux: latent heat 2.501e6 J kg-1, not carbon
    p = read_netcdf_product(f, "hfls", nc_variable="evspsbl", units="W m-2", **kw)
    assert p.data.values[0, 0] == pytest.approx(2.501e6)
    with pytest.raises(ReaderError, match="cannot convert 'kg m-2 s-1'"):
        read_netcdf_product(f, "et", nc_variable="evspsbl", units="gC m-2 d-1", **kw)
    # months counted in a noleap or standard calendar (CF allows them in 360_day only; TRENDY files
    # use them): read as calendar months, the same product as the file stamped by dates
    hfls = ds[["hfls"]].copy()
    hfls["hfls"] = hfls["hfls"] * xr.DataArray([1.0, 3.0], dims="time")
    hfls.to_netcdf(tmp_path / "d.nc")
    want = read_netcdf_product(tmp_path / "d.nc", "hfls", units="W m-2", **kw)
    for calendar, stamps in (("noleap", [0.5, 1.5]), ("standard", [0.0, 1.0]), ("gregorian", [12.5, 13.5])):
        ref = "2000-01-01" if stamps[0] > 12 else "2001-01-01"
        months = hfls.assign_coords(time=("time", stamps, {"units": f"months since {ref}",
                                                           "calendar": calendar}))
        months.to_netcdf(tmp_path / "m.nc")
        got = read_netcdf_product(tmp_path / "m.nc", "hfls", units="W m-2", **kw)
        xr.testing.assert_equal(got.data.drop_vars("time"), want.data.drop_vars("time"))
        np.testing.assert_array_equal(got.data["time"].values, want.data["time"].values)
    # a missing time, or a reference date cftime cannot read: named, not "not a readable netCDF file"
    missing = r"time variable 'time' \('months since 2001-01-01'\) has 1 missing values"
    unreadable = r"time variable 'time' has units 'months since 2001-13-01' in the 'noleap' calendar"
    for stamps, ref, said in (([0.5, np.nan], "2001-01-01", missing), ([0.5, 1.5], "2001-13-01", unreadable)):
        hfls.assign_coords(time=("time", stamps, {"units": f"months since {ref}", "calendar": "noleap"})
                           ).to_netcdf(tmp_path / "bad.nc")
        with pytest.raises(ReaderError, match=r"products\[2\]: \S+bad.nc: " + said):
            read_netcdf_product(tmp_path / "bad.nc", "hfls", units="W m-2", **kw)
    # a product of years, by its bounds or by its stamps' spacing, is refused: read by its stamps
    # each annual mean would be compared with one month (July)
    years = pd.date_range("2001-07-01", periods=2, freq="12MS")
    annual = hfls.assign_coords(time=years)
    annual.to_netcdf(tmp_path / "a.nc")
    apart = r"a.nc: the time steps of 'hfls' are 12 months apart: a product of seasons or years\? "
    with pytest.raises(ReaderError, match=apart + r".* give the time its bounds \(time_bnds of"):
        read_netcdf_product(tmp_path / "a.nc", "hfls", units="W m-2", **kw)
    july = annual.assign(time_bnds=(("time", "nv"), np.stack([years, years + pd.DateOffset(months=1)], 1)))
    july["time"].attrs["bounds"] = "time_bnds"  # bounds of one month: each value is July's mean
    july.to_netcdf(tmp_path / "july.nc")
    kw_july = {**kw, "months": pd.date_range("2001-01-01", "2002-12-01", freq="MS")}
    got = read_netcdf_product(tmp_path / "july.nc", "hfls", units="W m-2", **kw_july)
    assert np.isfinite(got.data.values).sum() == 2 and (got.data["time"].dt.month[np.isfinite(
        got.data.values[0])] == 7).all()
    bounded = annual.assign(time_bnds=(("time", "nv"), np.stack([years - pd.DateOffset(months=6),
                                                                 years + pd.DateOffset(months=6)], 1)))
    bounded["time"].attrs["bounds"] = "time_bnds"
    bounded.isel(time=[0]).to_netcdf(tmp_path / "a1.nc")  # one year: its bounds say so
    with pytest.raises(ReaderError, match=r"a1.nc: the time steps of 'hfls' span 365 days each \(its time "
                                          r"bounds\)"):
        read_netcdf_product(tmp_path / "a1.nc", "hfls", units="W m-2", **kw)
    # years are another matter (an annual value is not a month's): what to write instead
    years = hfls.assign_coords(time=("time", [0.5, 1.5], {"units": "years since 2001-01-01",
                                                          "calendar": "noleap"}))
    years.to_netcdf(tmp_path / "y.nc")
    with pytest.raises(ReaderError, match=r"y.nc: its time units 'years since 2001-01-01' cannot be decoded "
                                          r"for its calendar .* write time as 'days since \.\.\.'"):
        read_netcdf_product(tmp_path / "y.nc", "hfls", units="W m-2", **kw)


def test_regridding_weights_are_sparse_at_0p05_degrees():
    """A 0.05 degree global grid (7200 x 3600 boxes) and 60 cells: no dense cells x boxes matrix."""
    import tracemalloc

    from bayescal.readers.gridded import _weights

    lat, lon = np.arange(-89.975, 90, 0.05), np.arange(-179.975, 180, 0.05)
    rng = np.random.default_rng(1)
    cl, co = rng.uniform(-60, 70, 60), rng.uniform(-180, 180, 60)
    tracemalloc.start()
    w = _weights(lat, lon, cl, co, 1.0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert w.shape == (60, lat.size * lon.size)
    assert 60 * 40 * 40 <= w.nnz < 60 * 41 * 41 * 20  # ~1600 boxes a cell, more towards the poles
    assert peak < 100 * 2**20  # bytes; the dense matrix would be 12 GiB


def test_a_regional_product_leaves_the_cells_beyond_its_edges_unobserved(tmp_path):
    """A product of Europe (35-70 N, 10 W-40 E): without a footprint each cell took the nearest box
    however far, so a tropical cell got the grid edge's LAI; now only a cell whose centre is within
    half a box of one is observed -- on a regular grid and on the same grid as 2-D coordinates."""
    lat, lon = np.arange(35.25, 70.0, 0.5), np.arange(-9.75, 40.0, 0.5)
    t = pd.date_range("2001-01-01", periods=2, freq="MS")
    v = np.broadcast_to(lat[None, :, None] / 10.0, (2, lat.size, lon.size))
    reg = xr.Dataset({"lai": (("time", "lat", "lon"), v, {"units": "m2 m-2"})},
                     coords={"time": t, "lat": lat, "lon": lon})
    glat, glon = np.meshgrid(lat, lon, indexing="ij")
    curv = xr.Dataset({"lai": (("time", "j", "i"), v, {"units": "m2 m-2"})},
                      coords={"time": t, "la": (("j", "i"), glat, {"standard_name": "latitude"}),
                              "lo": (("j", "i"), glon, {"standard_name": "longitude"})})
    reg.to_netcdf(tmp_path / "r.nc")
    curv.to_netcdf(tmp_path / "c.nc")
    # inside; inside the southern edge (35.05 N: the box of 35.25); beyond it (34.6 N: 0.65 from the
    # nearest centre, half a box is 0.25); the tropics; the western edge (9.9 W), beyond it (10.6 W)
    cells = _cells([50.1, 35.05, 34.6, -6.4, 50.1, 50.1], [10.1, 10.1, 10.1, -110.3, -9.9, -10.6])
    kw = dict(cells=cells, months=t, units="m2 m-2", relative_sigma=0.1)
    for f in ("r.nc", "c.nc"):
        p = read_netcdf_product(tmp_path / f, "lai", **kw).data.isel(time=0).values
        np.testing.assert_allclose(p[[0, 1, 4]], [5.025, 3.525, 5.025])
        assert np.isnan(p[[2, 3, 5]]).all(), (f, p)
    # a global grid still observes every cell, the poles and the date line included
    glob = xr.Dataset({"lai": (("time", "lat", "lon"), np.ones((2, 180, 360)), {"units": "m2 m-2"})},
                      coords={"time": t, "lat": np.arange(-89.5, 90.0), "lon": np.arange(0.5, 360.0)})
    glob.to_netcdf(tmp_path / "g.nc")
    poles = _cells([89.99, -89.99, 0.0, 10.0], [0.0, 179.99, -179.99, 359.99])
    g = read_netcdf_product(tmp_path / "g.nc", "lai", cells=poles, months=t, units="m2 m-2",
                            relative_sigma=0.1)
    assert np.isfinite(g.data.values).all()


def test_an_undeclared_fill_code_is_refused_before_a_footprint_averages_it(tmp_path):
    """9999 over the ocean without a fill attribute: refused with a footprint as without one (the
    boxes' average of 9999 and land values is no longer 9999, and read LAI in the thousands)."""
    lat, lon = np.arange(-9.5, 10.0), np.arange(-9.5, 10.0)
    v = np.full((2, lat.size, lon.size), 3.0)
    v[:, :, :8] = 9999.0  # the western boxes: ocean
    ds = xr.Dataset({"lai": (("time", "lat", "lon"), v, {"units": "m2 m-2"})},
                    coords={"time": pd.date_range("2001-01-01", periods=2, freq="MS"), "lat": lat,
                            "lon": lon})
    ds.to_netcdf(tmp_path / "o.nc")
    kw = dict(cells=_cells([0.0, 5.0, -5.0], [-2.0, -2.0, 5.0]), months=ds["time"].values, units="m2 m-2",
              relative_sigma=0.1)
    for fp in (None, 0.75, 1.5):
        with pytest.raises(ReaderError, match=r"'lai' holds 9999 on \d+ monthly values .* fill_value = 9999"):
            read_netcdf_product(tmp_path / "o.nc", "lai", footprint_deg=fp, **kw)
        p = read_netcdf_product(tmp_path / "o.nc", "lai", footprint_deg=fp, fill_value=9999, **kw)
        np.testing.assert_allclose(p.data.values[np.isfinite(p.data.values)], 3.0)
    # codes only in months the model does not read: not its business (the model reads February)
    v[1], v[0, :, :8] = 3.0, 9999.0
    ds["lai"].values[:] = v
    ds.to_netcdf(tmp_path / "o2.nc")
    p = read_netcdf_product(tmp_path / "o2.nc", "lai", **{**kw, "months": ds["time"].values[1:]})
    np.testing.assert_allclose(p.data.values, 3.0)


def test_a_sigma_in_the_same_units_written_otherwise_follows_the_units_key(tmp_path):
    """Data in 'gC m-2 day-1', sigma in 'g m-2 d-1' (the same units): a 'units' key replacing the
    data's attribute replaces the sigma's too, as it does when both are written alike."""
    t = pd.date_range("2001-01-01", periods=2, freq="MS")
    ds = xr.Dataset({"gpp": (("time", "lat", "lon"), np.full((2, 1, 1), 4.0), {"units": "gC m-2 day-1"}),
                     "s": (("time", "lat", "lon"), np.full((2, 1, 1), 0.2), {"units": "g m-2 d-1"})},
                    coords={"time": t, "lat": [0.0], "lon": [0.0]})
    ds.to_netcdf(tmp_path / "g.nc")
    with pytest.warns(UserWarning, match="'units' key 'mg m-2 d-1' replaces it"):
        p = read_netcdf_product(tmp_path / "g.nc", "gpp", cells=_cells([0.0], [0.0]), months=t,
                                units="gC m-2 d-1", sigma_variable="s", file_units="mg m-2 d-1")
    np.testing.assert_allclose(p.data.values, 4e-3)
    np.testing.assert_allclose(p.sigma.values / p.data.values, 0.05)  # relative sigma as in the file


def test_products_of_a_variable_that_differ_by_orders_of_magnitude_are_warned_of():
    """GPP in gC m-2 d-1 labelled kg m-2 s-1 reads 86.4 million times too large: beside a product
    read right, the two differ by that factor, and their spread (the likelihood's sigma) would make
    GPP constrain nothing: said, naming both; products within tenfold are not."""
    import warnings

    from bayescal.observations.products import Product, say_products_disagree

    def product(name, value):
        data = xr.DataArray(np.full((3, 2), value), dims=("cell", "time"), attrs={"units": "gC m-2 d-1"})
        return Product(name, "gpp", data, data * 0.1)

    good, also, wrong = product("a", 4.0), product("b", 7.0), product("c", 4.0 * 86400 * 1000)
    with pytest.warns(UserWarning, match=r"the products of 'gpp' differ 8.64e\+07-fold in their median "
                                         r"values \('p\[2\]' 3.46e\+08 gC m-2 d-1, 'p\[0\]' 4 gC m-2 d-1"):
        say_products_disagree([good, also, wrong], ["p[0]", "p[1]", "p[2]"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        say_products_disagree([good, also], ["p[0]", "p[1]"])


def test_every_cell_inside_a_grid_of_varying_spacing_is_observed_and_none_outside_it():
    """The nearest-box rule against grids whose spacing varies: a finer tropical band (1/4 degree
    between 30 S and 30 N, 1 degree elsewhere), Gaussian-like latitudes to the poles, a boreal
    0.5 degree grid written with 2-D coordinates (its boxes 0.5 cos(lat) wide in distance), a
    one-row transect (its width the row's spacing): every cell inside is observed, cells beyond the
    edges by more than half the spacing there are not, and a product no cell reaches gives none."""
    from bayescal.readers.grid_weights import weights

    rng = np.random.default_rng(3)
    lat = np.concatenate([np.arange(-89.5, -30.0), np.arange(-29.875, 30.0, 0.25), np.arange(30.5, 90.0)])
    lon = np.arange(0.5, 360.0)
    cl, co = rng.uniform(-90, 90, 4000), rng.uniform(-180, 180, 4000)
    assert np.diff(weights(lat, lon, cl, co, None).indptr).min() == 1  # one box for every cell
    gauss = np.rad2deg(np.arcsin(np.polynomial.legendre.leggauss(96)[0]))  # T63's 96 latitudes
    poles = np.array([90.0, -90.0, 0.0, 89.9, -89.9])
    assert np.diff(weights(gauss, lon, poles, np.zeros(5), None).indptr).tolist() == [1] * 5
    blat, blon = np.arange(55.25, 75.0, 0.5), np.arange(0.25, 40.0, 0.5)
    glat, glon = np.meshgrid(blat, blon, indexing="ij")
    inside_lat, inside_lon = rng.uniform(55.25, 74.75, 2000), rng.uniform(0.25, 39.75, 2000)
    for points, (a, b) in ((False, (blat, blon)), (True, (glat, glon))):
        w = weights(a, b, inside_lat, inside_lon, None, points=points)
        assert np.diff(w.indptr).min() == 1, points
        out = weights(a, b, np.array([54.6, 76.0, 60.0, 60.0]), np.array([10.0, 10.0, -1.0, 41.0]), None,
                      points=points)
        assert np.diff(out.indptr).tolist() == [0, 0, 0, 0], points
        assert weights(a, b, np.array([-30.0]), np.array([100.0]), None, points=points).nnz == 0
    row = weights(np.array([50.0]), np.arange(0.5, 10.0), np.array([50.3, 51.0, 50.0]),
                  np.array([5.2, 5.2, 20.0]), None)
    assert np.diff(row.indptr).tolist() == [1, 0, 0]  # a transect: its width is its spacing
