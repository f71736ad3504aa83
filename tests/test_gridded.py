"""The CF-netCDF file route of the global model: twin products written on a lat-lon grid and read
back through the config give the same likelihood summaries; alignment and file errors."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayescal.cli import main
from bayescal.pipeline import ConfigError, load_config, make_pipeline
from bayescal.readers import ReaderError, read_netcdf_product, write_gridded_products

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
    twin = make_pipeline(load_config(TINY), tmp / "twin_run", progress=False)
    obs, truth = twin.twin()
    write_gridded_products(obs, truth, tmp / "products", resolution=0.5)
    return twin, tmp


def test_file_route_reproduces_the_twin_summaries(written, tmp_path):
    twin, tmp = written
    files = make_pipeline(load_config(_files_config(tmp_path, tmp / "products")), tmp_path / "run",
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


@pytest.mark.slow
def test_file_route_runs_end_to_end(written, tmp_path):
    _, tmp = written
    cfg = _files_config(tmp_path, tmp / "products")
    assert main(["run", str(cfg), "--quiet"]) == 0
    page = (tmp_path / "run" / "report.html").read_text()
    assert "real products from files" in page
