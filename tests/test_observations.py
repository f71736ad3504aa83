import numpy as np
import pytest
import xarray as xr

from bayescal.observations.products import (
    DEFAULT_TWIN_PRODUCTS,
    ObservationError,
    Observations,
    Product,
    ProductSpec,
    gcb_nbp,
    make_twin,
)


@pytest.fixture(scope="module")
def twin(small_model):
    theta = small_model.space.all_default
    specs = [s for s in DEFAULT_TWIN_PRODUCTS if s.start is None or s.start <= 2005]
    specs = [ProductSpec(s.variable, s.name, s.bias, s.noise, s.gaps, 1990, 2010) for s in specs]
    obs, _truth = make_twin(small_model, theta, specs, seed=4)
    return obs, specs


def test_twin_products(twin):
    obs, specs = twin
    assert obs.variables == ["gpp", "lai", "hfls", "hfss"]
    assert len(obs["gpp"]) == 2 and len(obs["lai"]) == 3
    for p in obs:
        assert p.data.dims == ("cell", "time")
        assert p.sigma.shape == p.data.shape
        missing = float(p.data.isnull().mean())
        assert 0.02 < missing < 0.1  # 5 % gaps requested


def test_twin_gpp_products_disagree_by_their_bias(twin):
    obs, _ = twin
    a = obs.product("gpp", "GOSIF-like").data
    b = obs.product("gpp", "FLUXCOM-like").data
    ratio = float(a.mean()) / float(b.mean())
    assert ratio == pytest.approx(1.05 / 0.95, rel=0.02)


def test_twin_is_reproducible(small_model, twin):
    obs, specs = twin
    again, _ = make_twin(small_model, small_model.space.all_default, specs, seed=4)
    other, _ = make_twin(small_model, small_model.space.all_default, specs, seed=5)
    for p, q, r in zip(obs, again, other, strict=True):
        xr.testing.assert_identical(p.data, q.data)
        assert not p.data.equals(r.data)


def test_product_errors_name_product():
    good = xr.DataArray(np.ones((2, 3)), dims=("cell", "time"), attrs={"units": "1"})
    with pytest.raises(ObservationError, match="'X' of variable 'gpp': data has no 'units'"):
        Product("X", "gpp", xr.DataArray(np.ones(3), dims="time"))
    with pytest.raises(ObservationError, match="'Y' of variable 'lai'.*all NaN"):
        Product("Y", "lai", good * np.nan)
    with pytest.raises(ObservationError, match="negative"):
        Product("Z", "lai", good, sigma=-good)
    p = Product("A", "gpp", good)
    with pytest.raises(ObservationError, match="duplicate product 'A' for variable 'gpp'"):
        Observations([p, p])
    with pytest.raises(KeyError, match="no product observes 'nbp'"):
        Observations([p])["nbp"]


def test_gcb_nbp_product():
    p = gcb_nbp()
    assert p.variable == "nbp_global" and p.data.dims == ("year",)
    assert float(p.sigma.min()) > 0


def test_products_round_trip_through_netcdf(tmp_path):
    from bayescal.models import LandCarbonModel, make_drivers, make_grid
    from bayescal.observations.products import Observations, make_twin

    grid = make_grid(n_cells=18, seed=1)
    drivers = make_drivers(grid, start=2000, end=2010, ramp_start=1999, seed=1)
    model = LandCarbonModel(grid=grid, drivers=drivers)
    obs, _ = make_twin(model, model.space.all_default, seed=3)
    obs.to_netcdf(tmp_path / "products.nc")
    back = Observations.from_netcdf(tmp_path / "products.nc")
    assert [(p.variable, p.name) for p in back] == [(p.variable, p.name) for p in obs]
    for a, b in zip(obs, back, strict=True):
        xr.testing.assert_identical(a.data, b.data)
        if a.sigma is not None:
            xr.testing.assert_identical(a.sigma, b.sigma)
        assert a.attrs == b.attrs


def test_summaries_operator_decades_and_gcb_sigma():
    from bayescal.observations.gcb import load_gcb2024
    from bayescal.operators.summaries import BiomeSummaries, decades

    assert decades(1990, 2022) == [(1990, 1999), (2000, 2009), (2010, 2019), (2020, 2022)]
    gcb = load_gcb2024()
    op = BiomeSummaries(["gpp"], gcb_years=(1990, 2022))
    nbp = gcb["nbp"].expand_dims(member=[0])
    blocks = op._nbp_blocks(nbp)
    assert blocks.shape == (1, 4)
    assert blocks[0, 1] == pytest.approx(float(gcb["nbp"].sel(year=slice(2000, 2009)).mean()))
