"""DALEC (REFLEX versions) on real FLUXNET drivers: reference step, mass balance, spin-up, failures."""

import numpy as np
import pytest
from dalec_reference import step as reference_step

from bayescal.models import _dalec_kernel as K
from bayescal.models.dalec import DalecModel, dalec_parameter_space
from bayescal.readers import read_fluxnet_drivers

HAI = "FLX_DE-Hai_DD_2000-2012.csv"
PUE = "FLX_FR-Pue_DD_2000-2014.csv"


@pytest.fixture(scope="module")
def hai(fluxnet_dir):
    return read_fluxnet_drivers(fluxnet_dir / HAI).sel(time=slice("2000", "2003"))


def _random_theta(space, n, rng):
    return space.expand(space.from_unit(rng.random((n, space.n_free))))


@pytest.mark.parametrize("kind", ["evergreen", "deciduous"])
def test_one_day_equals_the_numpy_reference(kind, rng):
    """The compiled step against the equations written out in numpy, on random parameters,
    pools and weather, every branch of the phenology included."""
    space = dalec_parameter_space(kind)
    deciduous = kind == "deciduous"
    model_par = np.zeros(K.N_PAR)
    for trial in range(300):
        theta = _random_theta(space, 1, rng)[0]
        p = dict(zip(space.all_labels, theta, strict=True))
        ref_p = {int(k[1:]): v for k, v in p.items() if k[0] == "p" and k[1:].isdigit()}
        ref_p.update(lma=p["lma"], nit=p["nit"])
        for lab, v in p.items():
            if lab not in ("eta_som",):
                model_par[{"lma": 17, "nit": 18}.get(lab, None) or int(lab[1:]) - 1] = v
        pools = rng.uniform([1, 100, 10, 1, 100, 1], [500, 20000, 800, 500, 30000, 300])
        phen = np.array([rng.uniform(0, 500), float(rng.random() < 0.5)])
        doy = float(rng.integers(1, 366))
        tm = rng.uniform(-10, 30)
        met = (doy, tm, tm + 4.0, tm - 4.0, rng.uniform(0, 30), rng.uniform(350, 420), rng.uniform(8, 16))
        want, want_phen, want_nee, want_gpp = reference_step(deciduous, ref_p, pools, tuple(phen), *met)
        got, got_phen = pools.copy(), phen.copy()
        flux, flow = np.empty(6), np.zeros((6, 2))
        K.step(int(deciduous), model_par, got, got_phen, *met, flux, flow)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=f"trial {trial}")
        np.testing.assert_allclose([flux[1], flux[0]], [want_nee, want_gpp], rtol=1e-12, atol=1e-12)
        if deciduous:
            np.testing.assert_allclose(got_phen, want_phen)


@pytest.mark.parametrize("kind", ["evergreen", "deciduous"])
def test_carbon_is_conserved_to_1e_9(kind, hai, rng):
    """Total carbon changes by exactly minus the summed NEE, member by member, every day."""
    model = DalecModel(hai, kind, spinup_cycles=2, spinup_years=2)
    theta = _random_theta(model.space, 16, rng)
    out = model(theta)
    ok = out.status.values == "done"
    assert ok.sum() >= 8
    pools = [p for p in K.POOLS if p in out]
    total = sum(out[p].values[ok] for p in pools)  # end of each day
    nee = out["nee"].values[ok]
    change = total[:, 1:] - total[:, :-1]
    scale = np.abs(total).max()
    np.testing.assert_allclose(change, -nee[:, 1:], atol=1e-9 * scale)


def test_members_are_independent_and_vectorised(hai, rng):
    model = DalecModel(hai, "deciduous", spinup_cycles=2, spinup_years=2)
    theta = _random_theta(model.space, 6, rng)
    together = model(theta)
    alone = model(theta[3:4])
    np.testing.assert_array_equal(together.nee.values[3], alone.nee.values[0])


def test_spin_up_reaches_steady_state_and_eta_scales_the_soil(hai):
    model = DalecModel(hai, "deciduous")
    space = model.space
    x = space.all_default.copy()
    eq = model(x[None])
    nee = eq.nee.isel(member=0).groupby("time.year").sum()
    # at eta_som = 1 the site is near steady state: mean annual NEE near zero next to GPP
    gpp = float(eq.gpp.isel(member=0).groupby("time.year").sum().mean())
    assert abs(float(nee.mean())) < 0.05 * gpp and gpp > 800
    x[space.all_labels.index("eta_som")] = 0.6
    sink = model(x[None])
    assert float(sink.csom[0, 0]) == pytest.approx(0.6 * float(eq.csom[0, 0]), rel=0.01)
    assert float(sink.nee.isel(member=0).sum()) < float(eq.nee.isel(member=0).sum()) - 100


def test_diurnal_range_effect_is_documented_size(hai):
    """FLUXNET SUBSET files have no Tmin/Tmax: GPP's sensitivity to the assumed range (docs/site.md)."""
    out = {}
    for dtr in (4.0, 8.0, 12.0):
        m = DalecModel(hai, "deciduous", diurnal_range=dtr)
        out[dtr] = float(m(m.space.all_default[None]).gpp.sum())
    # a wider range lowers canopy conductance: less GPP, by a few per cent per 4 degC
    assert out[4.0] > out[8.0] > out[12.0]
    assert 0.01 < out[4.0] / out[8.0] - 1 < 0.3


def test_a_negative_pool_fails_the_member_with_its_pool_and_day(hai):
    model = DalecModel(hai, "evergreen", spinup_cycles=1, spinup_years=1)
    space = model.space
    x = np.tile(space.all_default, (2, 1))
    # litter loss (p1 + p8) T per day exceeds the pool once T = 0.5 exp(0.2 Tm) > 10 (Tm > 15 degC)
    x[1, space.all_labels.index("p8")] = 0.1
    x[1, space.all_labels.index("p10")] = 0.2
    out = model(x)
    assert out.status.values.tolist() == ["done", "failed"]
    assert str(out.reason.values[1]).startswith("pool clit negative or non-finite")
    assert np.isnan(out.nee.values[1]).all() and np.isfinite(out.nee.values[0]).all()


@pytest.mark.parametrize("kind", ["evergreen", "deciduous"])
def test_output_arrays_are_the_datasets_values_and_failures(kind, hai, rng):
    """The direct route's fast path (no Dataset, only the rows asked for written) gives the same
    bits as ``simulate``, members failed in the spin-up and after it included."""
    drivers = hai.copy(deep=True)
    drivers["ta"].loc["2002-07-01"] = 60.0  # one hot day after the spin-up year
    model = DalecModel(drivers, kind, spinup_cycles=1, spinup_years=1)
    x = np.vstack([_random_theta(model.space, 6, rng), np.tile(model.space.all_default, (2, 1))])
    labels = model.space.all_labels
    x[-2, labels.index("p8")] = 0.05  # litter loss > the pool on the hot day only
    x[-1, labels.index("p8")], x[-1, labels.index("p10")] = 0.1, 0.2  # ... already in the spin-up
    ds = model(x)
    assert str(ds.reason.values[-2]) == "pool clit negative or non-finite on 2002-07-01"
    assert str(ds.reason.values[-1]).endswith("during the spin-up")
    arrays, failed = model.output_arrays(x, ["nee", "gpp", "lai", "nee"])  # a repeated name: once
    assert list(arrays) == ["nee", "gpp", "lai"]
    assert failed.tolist() == (ds.status.values == "failed").tolist()
    for v in ("nee", "gpp", "lai"):
        np.testing.assert_array_equal(arrays[v], ds[v].values)
    one, _ = model.output_arrays(x, ["csom"])  # a pool alone: only its row is written
    np.testing.assert_array_equal(one["csom"], ds["csom"].values)
    with pytest.raises(ValueError, match=r"no output \['le'\]"):
        model.output_arrays(x, ["nee", "le"])
    if kind == "evergreen":  # simulate has no labile pool for the evergreen version
        with pytest.raises(ValueError, match=r"no output \['clab'\]"):
            model.output_arrays(x, ["clab"])


def test_bad_drivers_and_theta_named(hai):
    with pytest.raises(ValueError, match="co2"):
        DalecModel(hai.drop_vars("co2"))
    with pytest.raises(ValueError, match="kind"):
        DalecModel(hai, "tropical")
    m = DalecModel(hai, "evergreen", spinup_cycles=1, spinup_years=1)
    with pytest.raises(ValueError, match="values"):
        m(np.zeros((1, 3)))


def test_drivers_with_a_gap_duplicate_or_bad_latitude_are_refused(hai):
    """A missing year would be run as one day: the model names the day instead (issue 27)."""
    gap = hai.drop_sel(time=hai["time"].values[400:765])
    with pytest.raises(ValueError, match=r"one row per consecutive day: 2001-02-03 is followed by a gap of "
                                         r"365 day\(s\)"):
        DalecModel(gap, "deciduous")
    dup = hai.isel(time=np.r_[0:10, 9:40])
    with pytest.raises(ValueError, match="2000-01-10 is duplicated"):
        DalecModel(dup, "deciduous")
    with pytest.raises(ValueError, match=r"latitude must be in \[-90, 90\]"):
        DalecModel(hai.assign_attrs(lat=95.0), "deciduous")
    holes = hai.copy(deep=True)
    holes["ta"][3] = np.nan
    with pytest.raises(ValueError, match=r"ta is missing or non-finite on 1 day\(s\), the first 2000-01-04"):
        DalecModel(holes, "deciduous")
    for v, value, match in (("ta", 999.0, r"ta = 999 degC on 2000-01-06 is outside \[-70, 60\]"),
                            ("sw", -50.0, r"sw = -50 MJ m-2 d-1 on 2000-01-06 is outside \[-0.5, 50\]"),
                            ("co2", 3.8e-4, r"co2 = 0.00038 ppm on 2000-01-06 is outside")):  # mol/mol
        odd = hai.copy(deep=True)
        odd[v][5] = value
        with pytest.raises(ValueError, match=match):
            DalecModel(odd, "deciduous")


def test_latitude_changes_the_day_length_only(fluxnet_dir):
    """The model's latitude (its drivers' ``lat``) enters through the day length only."""
    d = read_fluxnet_drivers(fluxnet_dir / HAI).sel(time=slice("2000", "2003")).assign_attrs(lat=-33.0)
    assert d.attrs["lat"] == -33.0
    south, north = DalecModel(d, "evergreen"), DalecModel(d.assign_attrs(lat=33.0), "evergreen")
    np.testing.assert_allclose(south._met[6], 24.0 - north._met[6], atol=1e-9)  # mirrored day length
    np.testing.assert_array_equal(south._met[1], north._met[1])  # same weather


def test_a_southern_deciduous_site_leafs_out_in_its_own_spring(fluxnet_dir):
    """DALEC-deciduous's calendar (REFLEX's day-100 and day-200 thresholds) is the north's: south
    of the equator it counts from 1 July. Hainich's weather moved half a year earlier and put at
    51 S gives the same seasons there: each year's largest LAI comes 182 +- 10 days before
    Hainich's, as large (within 5 %)."""
    import pandas as pd

    north = read_fluxnet_drivers(fluxnet_dir / HAI).sel(time=slice("2000-07-01", "2008-06-30"))
    shift = pd.Timedelta(days=182)
    south = north.assign_coords(time=pd.DatetimeIndex(north["time"].values) - shift)
    south = south.assign_attrs(lat=-north.attrs["lat"])
    theta = dalec_parameter_space("deciduous").all_default[None]
    lai_n, lai_s = (DalecModel(d, "deciduous", spinup_years=2, spinup_cycles=3).simulate(theta)["lai"]
                    .isel(member=0) for d in (north, south))
    for year in range(2002, 2008):
        peak_n = lai_n.sel(time=str(year))
        day_n = pd.Timestamp(peak_n.idxmax().values)
        window = pd.Timedelta(days=90)
        around = lai_s.sel(time=slice(day_n - shift - window, day_n - shift + window))
        gap = (day_n - pd.Timestamp(around.idxmax().values)).days
        assert 172 <= gap <= 192, (year, day_n, around.idxmax().values)
        assert float(around.max()) == pytest.approx(float(peak_n.max()), rel=0.05)
