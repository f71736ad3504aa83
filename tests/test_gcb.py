import numpy as np
import pytest

from bayescal.observations.gcb import GTC_PER_PPM, load_gcb2024, load_gcb2024_land_models


def test_budget_identity():
    g = load_gcb2024()
    resid = g.fossil + g.luc - g.atm_growth - g.ocean - g.land - g.cement - g.imbalance
    assert float(np.abs(resid).max()) <= 1e-9
    assert int(g.year[0]) == 1959 and int(g.year[-1]) == 2023


def test_nbp_equals_land_sink_minus_luc_plus_imbalance():
    g = load_gcb2024()
    assert float(np.abs(g.nbp - (g.land - g.luc + g.imbalance)).max()) <= 1e-9


def test_sigma_conventions_and_eq17():
    g = load_gcb2024(sigma_atm_pre1980=0.9)
    assert float(g.sigma_atm_growth.sel(year=1979)) == 0.9
    assert float(g.sigma_atm_growth.sel(year=1980)) == 0.2
    np.testing.assert_allclose(g.sigma_fossil, 0.05 * g.fossil)
    expected = np.sqrt(g.sigma_fossil**2 + g.sigma_atm_growth**2 + g.sigma_ocean**2)
    np.testing.assert_allclose(g.nbp_sigma, expected)
    with pytest.raises(ValueError, match="sigma_ocean"):
        load_gcb2024(sigma_ocean=-1)


def test_co2_rebuilt_from_growth():
    g = load_gcb2024()
    # successive annual means differ by the mean of the two years' growth
    dc = g.co2.diff("year").values
    expected = 0.5 * (g.atm_growth.values[1:] + g.atm_growth.values[:-1]) / GTC_PER_PPM
    np.testing.assert_allclose(dc, expected, rtol=1e-12)
    assert 418 < float(g.co2.sel(year=2023)) < 421  # NOAA global mean 2023: 419.3 ppm


def test_land_models_table():
    m = load_gcb2024_land_models()
    assert m.sizes["model"] == 20 and "CLASSIC" in m.model.values
    np.testing.assert_allclose(m.sink.mean("model"), m["mean"], atol=1e-9)
    np.testing.assert_allclose(m.sink.std("model", ddof=1), m["sd"], atol=1e-6)


def test_decadal_nbp_sigma_correlated_or_independent():
    """The decade's sigma: the mean annual sigma (fully correlated errors, the default) or
    sqrt(sum sigma^2) / n (independent)."""
    import xarray as xr

    from bayescal.observations.gcb import load_gcb2024
    from bayescal.observations.products import Observations, Product
    from bayescal.operators.summaries import BiomeSummaries

    gcb = load_gcb2024()
    data = xr.DataArray(np.ones((2, 1)), dims=("cell", "time"), attrs={"units": "1"},
                        coords={"cell": [0, 1], "time": [np.datetime64("2001-01-01")]})
    obs = Observations([Product("P", "gpp", data, data * 0.1)])
    grid = xr.Dataset({"biome": ("cell", ["a", "b"]), "area": ("cell", [1.0, 1.0])}, coords={"cell": [0, 1]})
    _, corr = BiomeSummaries(["gpp"], 0.03, (1990, 2009)).of_observations(obs, grid)
    _, ind = BiomeSummaries(["gpp"], 0.03, (1990, 2009), "independent").of_observations(obs, grid)
    s = gcb["nbp_sigma"].sel(year=slice(1990, 1999)).values
    assert corr[-2] == pytest.approx(s.mean()) and ind[-2] == pytest.approx(np.sqrt((s**2).sum()) / 10)
    assert ind[-1] < corr[-1] / 3
    # annual blocks: one summary per year, the year's own value and sigma under either error model
    for errors in ("correlated", "independent"):
        o, s1 = BiomeSummaries(["gpp"], 0.03, (1990, 2009), errors, gcb_block=1).of_observations(obs, grid)
        assert o.size == 2 + 20
        np.testing.assert_allclose(o[2:], gcb["nbp"].sel(year=slice(1990, 2009)).values, rtol=1e-14)
        np.testing.assert_allclose(s1[2:], gcb["nbp_sigma"].sel(year=slice(1990, 2009)).values, rtol=1e-14)
