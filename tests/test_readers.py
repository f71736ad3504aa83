"""Readers on slices of the real FLUXNET2015 files: units, gaps, QC, sigma, and every file error."""

import numpy as np
import pandas as pd
import pytest

from bayescal.readers import (
    ReaderError,
    UnitError,
    conversion_factor,
    read_csv_product,
    read_fluxnet_drivers,
    read_fluxnet_product,
)

HAI = "FLX_DE-Hai_DD_2000-2012.csv"
PUE = "FLX_FR-Pue_DD_2000-2014.csv"


@pytest.fixture
def raw(fluxnet_dir):
    return pd.read_csv(fluxnet_dir / HAI)


def test_nee_product_keeps_qc_days_and_floors_sigma(fluxnet_dir, raw):
    p = read_fluxnet_product(fluxnet_dir / HAI, "nee", qc_min=0.8, sigma_floor=0.1)
    keep = raw["NEE_VUT_REF_QC"].to_numpy() >= 0.8
    assert int(p.data.notnull().sum()) == keep.sum() == 4196  # the README's count
    np.testing.assert_array_equal(p.data.values[keep], raw["NEE_VUT_REF"].to_numpy()[keep])
    unc = raw["NEE_VUT_REF_RANDUNC"].to_numpy()
    known = keep & (unc != -9999)
    np.testing.assert_allclose(p.sigma.values[known], np.maximum(unc[known], 0.1))
    # the 19 days without a random uncertainty get the median of the others (then the floor)
    gap = keep & (unc == -9999)
    assert gap.any() and np.all(p.sigma.values[gap] == max(np.median(unc[known]), 0.1))
    assert p.units == "gC m-2 d-1" and str(p.data.time.values[0])[:10] == "2000-01-01"


def test_gpp_partitionings_are_two_products_and_units_convert(fluxnet_dir, raw):
    nt = read_fluxnet_product(fluxnet_dir / HAI, "gpp", partitioning="NT")
    dt = read_fluxnet_product(fluxnet_dir / HAI, "gpp", partitioning="DT", units="kg m-2 s-1")
    assert nt.name == "DE-Hai-GPP-NT" and dt.name == "DE-Hai-GPP-DT"
    day = np.flatnonzero(nt.data.notnull().values)[200]
    assert dt.data.values[day] == pytest.approx(raw["GPP_DT_VUT_REF"][day] * 1e-3 / 86400, rel=1e-12)
    # relative sigma (15 %) with a floor of 0.3 gC m-2 d-1
    assert nt.sigma.values[day] == pytest.approx(max(0.15 * abs(raw["GPP_NT_VUT_REF"][day]), 0.3))


def test_le_uses_its_own_qc_and_uncertainty(fluxnet_dir, raw):
    p = read_fluxnet_product(fluxnet_dir / HAI, "le", qc_min=0.5)
    keep = (raw["LE_F_MDS_QC"] >= 0.5).to_numpy()
    assert int(p.data.notnull().sum()) == keep.sum()
    assert p.units == "W m-2"


def test_drivers_convert_radiation_and_fill_co2_gaps(fluxnet_dir):
    pue = pd.read_csv(fluxnet_dir / PUE)
    d = read_fluxnet_drivers(fluxnet_dir / PUE)
    assert d.attrs["site"] == "FR-Pue" and d.attrs["lat"] == pytest.approx(43.7414)
    np.testing.assert_allclose(d.sw.values, pue["SW_IN_F"].to_numpy() * 0.0864)
    gaps = (pue["CO2_F_MDS"] == -9999).to_numpy()
    assert gaps.sum() == 195 and np.isfinite(d.co2.values).all()
    # the gap is FR-Pue's first 195 days: filled with the first measured value (nearest)
    c = pue["CO2_F_MDS"].to_numpy()
    assert gaps[:195].all() and np.all(d.co2.values[:195] == c[195])


def test_drivers_interpolate_an_inner_co2_gap_linearly(fluxnet_dir, tmp_path):
    df = pd.read_csv(fluxnet_dir / HAI).iloc[:30]
    c = df["CO2_F_MDS"].to_numpy().copy()
    df.loc[10:13, "CO2_F_MDS"] = -9999
    f = tmp_path / "FLX_DE-Hai_DD_gap.csv"
    df.to_csv(f, index=False)
    d = read_fluxnet_drivers(f)
    np.testing.assert_allclose(d.co2.values[10:14], c[9] + (np.arange(10, 14) - 9) / 5 * (c[14] - c[9]))


def test_csv_series_with_and_without_sigma(tmp_path):
    f = tmp_path / "lai.csv"
    f.write_text("time,value,sigma\n2001-01-01,1.5,0.2\n2001-01-02,,\n2001-01-03,2.0,0.3\n")
    p = read_csv_product(f, "lai", units="m2 m-2")
    assert np.isnan(p.data.values[1]) and p.sigma.values[2] == 0.3
    g = tmp_path / "gpp.csv"
    g.write_text("time,value\n2001-01-01,2.0\n2001-01-02,4.0\n")
    q = read_csv_product(g, "gpp", units="gC m-2 d-1", to_units="kgC m-2 yr-1", relative_sigma=0.1)
    assert q.data.values[1] == pytest.approx(4.0e-3 * 365.25)
    assert q.sigma.values[1] == pytest.approx(0.1 * 4.0e-3 * 365.25)


def test_units_table():
    assert conversion_factor("umol m-2 s-1", "gC m-2 d-1") == pytest.approx(12.011e-6 * 86400)
    assert conversion_factor("g C m-2 day-1", "gC/m2/d") == 1.0
    with pytest.raises(UnitError, match="cannot convert 'W m-2'"):
        conversion_factor("W m-2", "gC m-2 d-1")
    with pytest.raises(UnitError, match="unknown unit 'furlongs'"):
        conversion_factor("furlongs", "W m-2")


def test_every_file_problem_names_the_file_and_key(fluxnet_dir, tmp_path):
    f = fluxnet_dir / HAI
    with pytest.raises(ReaderError, match=r"observations.products\[0\]: .*nope.csv: file not found"):
        read_fluxnet_product(tmp_path / "nope.csv", "nee", key="observations.products[0]")
    with pytest.raises(ReaderError, match="unknown FLUXNET variable 'lai'"):
        read_fluxnet_product(f, "lai")
    with pytest.raises(ReaderError, match="needs partitioning"):
        read_fluxnet_product(f, "gpp")
    with pytest.raises(ReaderError, match="every value of NEE_VUT_REF is missing after QC"):
        read_fluxnet_product(_slice(f, tmp_path, qc=0.2), "nee", qc_min=0.9)
    with pytest.raises(ReaderError, match="cannot convert"):
        read_fluxnet_product(f, "nee", units="W m-2")
    with pytest.raises(ReaderError, match="sigma_floor must be > 0"):
        read_fluxnet_product(f, "nee", sigma_floor=0.0)
    bad = tmp_path / "bad.csv"
    bad.write_text("DATE,NEE\n1,2\n")
    with pytest.raises(ReaderError, match="no TIMESTAMP column"):
        read_fluxnet_product(bad, "nee")
    with pytest.raises(ReaderError, match="missing columns"):
        read_fluxnet_drivers(_slice(f, tmp_path, drop="CO2_F_MDS"))
    with pytest.raises(ReaderError, match="not in bayescal's site table"):
        read_fluxnet_drivers(_slice(f, tmp_path, name="FLX_XX-Abc_DD.csv"))
    s = tmp_path / "s.csv"
    s.write_text("time,value,sigma\n2001-01-01,1.0,0.0\n")
    with pytest.raises(ReaderError, match=r"sigma must be > 0; row 0 \(2001-01-01\)"):
        read_csv_product(s, "lai", units="m2 m-2")


def _slice(path, tmp_path, qc=None, drop=None, name="FLX_DE-Hai_DD_slice.csv"):
    df = pd.read_csv(path).iloc[:60]
    if qc is not None:
        df["NEE_VUT_REF_QC"] = qc
    if drop:
        df = df.drop(columns=drop)
    out = tmp_path / name
    df.to_csv(out, index=False)
    return out
