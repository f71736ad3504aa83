"""Readers on slices of the real FLUXNET2015 files: units, gaps, QC, sigma, and every file error."""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

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
    assert gaps.sum() == 195 == d.attrs["co2_filled_days"] and np.isfinite(d.co2.values).all()
    # the gap is FR-Pue's first 195 days: filled with the first measured value (nearest)
    c = pue["CO2_F_MDS"].to_numpy()
    assert gaps[:195].all() and np.all(d.co2.values[:195] == c[195])
    # a model of your own reads the shipped file by the name a config gives it
    shipped = read_fluxnet_drivers(f"bayescal:data/fluxnet/{PUE}")
    xr.testing.assert_equal(shipped, d)
    assert shipped.attrs["site"] == "FR-Pue"


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
    with pytest.raises(UnitError, match="unknown unit 'bananas'"):
        conversion_factor("bananas", "W m-2")


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
    # FLUXNET2015's half-hourly and monthly files of the same download: the daily one is named
    half_hourly = tmp_path / "FLX_DE-Hai_FLUXNET2015_FULLSET_HH_2000-2012_1-4.csv"
    half_hourly.write_text("TIMESTAMP_START,TIMESTAMP_END,NEE_VUT_REF\n200001010000,200001010030,1.0\n")
    with pytest.raises(ReaderError, match=r"half-hourly or hourly file's; give the site's daily file .*_DD_"):
        read_fluxnet_product(half_hourly, "nee")
    weekly = tmp_path / "FLX_DE-Hai_FLUXNET2015_SUBSET_WW_2000-2012_1-4.csv"
    weekly.write_text("TIMESTAMP_START,TIMESTAMP_END,NEE_VUT_REF\n20000101,20000107,1.0\n")
    with pytest.raises(ReaderError, match=r"are a weekly file's; give the site's daily file"):
        read_fluxnet_product(weekly, "nee")
    monthly = _slice(f, tmp_path, name="FLX_DE-Hai_FLUXNET2015_SUBSET_MM_2000-2012_1-4.csv")
    df = pd.read_csv(monthly)
    df["TIMESTAMP"] = (df["TIMESTAMP"] // 100).astype(int)
    df.to_csv(monthly, index=False)
    with pytest.raises(ReaderError, match=r"TIMESTAMP '200001' .* monthly file\? give the site's daily"):
        read_fluxnet_product(monthly, "nee")
    with pytest.raises(ReaderError, match="missing columns"):
        read_fluxnet_drivers(_slice(f, tmp_path, drop="CO2_F_MDS"))
    lines = f.read_text().splitlines()
    cols = lines[0].split(",")
    row = lines[435].split(",")  # data row 435: 2001-03-10
    for col, value, match in (
            ("TIMESTAMP", "20011310", r"TIMESTAMP '20011310' \(data row 435\) is not a YYYYMMDD"),
            ("TIMESTAMP", "20010310.5", r"TIMESTAMP '20010310.5' \(data row 435\) is not a YYYYMMDD"),
            ("TA_F", "abc", r"column TA_F is not numeric on 2001-03-10 \(data row 435\): 'abc'")):
        edited = row.copy()
        edited[cols.index(col)] = value
        m = tmp_path / "FLX_DE-Hai_DD_2000-2012.csv"
        m.write_text("\n".join(lines[:435] + [",".join(edited)] + lines[436:]) + "\n")
        with pytest.raises(ReaderError, match=match):
            read_fluxnet_drivers(m)
    with pytest.raises(ReaderError, match=r"site 'XX-Abc' .* not in the FLUXNET2015 site table .*latitude"):
        read_fluxnet_drivers(_slice(f, tmp_path, name="FLX_XX-Abc_DD.csv"))
    with pytest.raises(ReaderError, match=r"site 'DE-Hia' .* site table .*did you mean 'DE-Hai'"):
        read_fluxnet_drivers(_slice(f, tmp_path, name="FLX_DE-Hia_DD_2000-2012.csv"))
    s = tmp_path / "s.csv"
    s.write_text("time,value,sigma\n2001-01-01,1.0,0.0\n")
    with pytest.raises(ReaderError, match=r"sigma must be > 0 \(after sigma_floor 0.0\); 2001-01-01 has 0.0"):
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


# ------------------------------------------------ any FLUXNET2015 site; silent wrong answers (issue 27)
EXAMPLE = Path(__file__).parent.parent / "examples" / "site_hainich.toml"


def _site_file(fluxnet_dir, tmp_path, site="US-Ha1", years=(2001, 2006), edit=None):
    """A FLUXNET2015 daily file of ``site``: DE-Hai's columns and days, perturbed (synthetic)."""
    df = pd.read_csv(fluxnet_dir / HAI)
    y = df["TIMESTAMP"] // 10000
    df = df[(y >= years[0]) & (y <= years[1])].reset_index(drop=True)
    rng = np.random.default_rng(7)
    df["TA_F"] = df["TA_F"] - 1.5 + rng.normal(0, 0.3, len(df))
    df["NEE_VUT_REF"] = df["NEE_VUT_REF"] * 0.9
    if edit is not None:
        df = edit(df)
    f = tmp_path / f"FLX_{site}_FLUXNET2015_SUBSET_DD_{years[0]}-{years[1]}_1-4.csv"
    df.to_csv(f, index=False)
    return f


def test_drivers_gaps_of_every_column_and_a_file_older_than_its_site_are_said(fluxnet_dir, tmp_path):
    """Gaps in TA_F and SW_IN_F are named together, each with its count and first day, with the
    way forward; a file that starts before its site's first FLUXNET2015 year (the site table) is
    warned of (a file named for another site gets that site's latitude and vegetation); a site
    code in lower case is the table's."""
    def holes(df):
        df.loc[[40, 41], "TA_F"] = -9999
        df.loc[[100], "SW_IN_F"] = -9999
        return df

    f = _site_file(fluxnet_dir, tmp_path, edit=holes)
    with pytest.raises(ReaderError, match=r"drivers missing: TA_F on 2 day\(s\), the first 2001-02-10; "
                                          r"SW_IN_F on 1 day\(s\), the first 2001-04-11; drivers must be "
                                          "gap-filled .*fill it, e.g. a few days by interpolation in time"):
        read_fluxnet_drivers(f)
    f = _site_file(fluxnet_dir, tmp_path, site="DE-Obe", years=(2005, 2010))
    with pytest.warns(UserWarning, match=r"the days start in 2005, before DE-Obe's first FLUXNET2015 year "
                                         r"2008 \(its record: 2008-2014, the site table\): is this DE-Obe's "
                                         r"file\?"):
        assert read_fluxnet_drivers(f).attrs["lat"] == 50.7836
    lower = f.rename(f.with_name(f.name.replace("DE-Obe", "de-obe")))
    with pytest.warns(UserWarning, match="DE-Obe's first"):
        assert read_fluxnet_drivers(lower).attrs["site"] == "DE-Obe"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        read_fluxnet_drivers(_site_file(fluxnet_dir, tmp_path, site="US-Ha1", years=(2001, 2016)))


def _example_with(tmp_path, data_file, cal, val, model_extra="", text=None):
    """examples/site_hainich.toml with only its data file and years changed (and ``model_extra``)."""
    text = text or EXAMPLE.read_text()
    text = text.replace("bayescal:data/fluxnet/FLX_DE-Hai_DD_2000-2012.csv", str(data_file))
    text = text.replace("calibration_years = [2000, 2008]", f"calibration_years = {list(cal)}")
    text = text.replace("validation_years = [2009, 2012]", f"validation_years = {list(val)}")
    text = text.replace('output = "runs/site_hainich"', f'output = "{tmp_path / "run"}"')
    if model_extra:
        text = text.replace('kind = "dalec"', f'kind = "dalec"\n{model_extra}')
    p = tmp_path / "site.toml"
    p.write_text(text)
    return p


def test_a_fluxnet2015_site_that_is_not_shipped_runs_from_the_example(fluxnet_dir, tmp_path):
    from bayescal.readers import SITES, site_info
    from bayescal.workflows import load_config
    from bayescal.workflows.site.model import site_model

    assert len(SITES) == 166 and "US-Ha1" in SITES
    info = site_info("US-Ha1")
    assert info["latitude"] == pytest.approx(42.5378) and info["igbp"] == "DBF"
    f = _site_file(fluxnet_dir, tmp_path)
    cfg = load_config(_example_with(tmp_path, f, (2001, 2004), (2005, 2006)))
    model = site_model(cfg)
    assert model.drivers.attrs["site"] == "US-Ha1"
    assert model.drivers.attrs["lat"] == pytest.approx(42.5378)
    out = model(model.space.all_default[None])
    assert str(out["status"].values[0]) == "done"
    assert np.isfinite(out["nee"].values).all() and out.attrs["lat"] == pytest.approx(42.5378)
    # the day length follows the latitude: the same weather at DE-Hai's latitude gives other GPP
    cfg["model"]["latitude"] = 51.0792
    other = site_model(cfg)(model.space.all_default[None])
    assert not np.allclose(other["gpp"].values, out["gpp"].values)


def test_latitude_key_for_a_site_outside_the_table(fluxnet_dir, tmp_path):
    from bayescal.workflows import ConfigError, load_config
    from bayescal.workflows.site.model import site_model

    f = _site_file(fluxnet_dir, tmp_path, site="XX-New")
    with pytest.raises(ConfigError, match=r"model.drivers: .*FLX_XX-New.*site 'XX-New' .*not in the "
                                          r"FLUXNET2015 site table.*model.latitude"):
        load_config(_example_with(tmp_path, f, (2001, 2004), (2005, 2006)))
    cfg = load_config(_example_with(tmp_path, f, (2001, 2004), (2005, 2006), "latitude = 45.25"))
    assert site_model(cfg).drivers.attrs["lat"] == 45.25
    with pytest.raises(ConfigError, match=r"'model.latitude' must be in \[-90, 90\]"):
        load_config(_example_with(tmp_path, f, (2001, 2004), (2005, 2006), "latitude = 145.0"))


def test_drivers_with_a_gap_a_duplicate_or_a_missing_year_stop_at_config_check(fluxnet_dir, tmp_path):
    from bayescal.workflows import ConfigError, load_config

    cases = {
        "gap": (lambda d: d.drop(index=range(400, 410)), r"10 day\(s\) missing, the first 2002-02-05"),
        "year": (lambda d: d[d["TIMESTAMP"] // 10000 != 2003],
                 r"365 day\(s\) missing, the first 2003-01-01; whole years missing: \[2003\]"),
        "dup": (lambda d: pd.concat([d.iloc[:100], d.iloc[99:]]),
                r"duplicated day\(s\); the first is 2001-04-10"),
    }
    for name, (edit, match) in cases.items():
        d = tmp_path / name
        d.mkdir()
        f = _site_file(fluxnet_dir, d, edit=edit)
        # the products read the same file: the drivers are checked first, naming model.drivers
        with pytest.raises(ConfigError, match=r"model.drivers: .*" + match):
            load_config(_example_with(d, f, (2001, 2004), (2005, 2006)))
    with pytest.raises(ConfigError, match=r"'site.validation_years' \[2005, 2009\] outside the drivers' "
                                          r"days 2001-01-01 to 2006-12-31"):
        load_config(_example_with(tmp_path, _site_file(fluxnet_dir, tmp_path), (2001, 2004), (2005, 2009)))
    cut = tmp_path / "cut"  # a file that stops on 20 December of its last year
    cut.mkdir()
    f = _site_file(fluxnet_dir, cut, edit=lambda d: d[d["TIMESTAMP"] < 20061221])
    with pytest.raises(ConfigError, match=r"'site.validation_years' \[2005, 2006\] outside the drivers' "
                                          r"days 2001-01-01 to 2006-12-20 .*every day of these years"):
        load_config(_example_with(cut, f, (2001, 2004), (2005, 2006)))


def test_validation_years_overlapping_calibration_years_are_refused(fluxnet_dir, tmp_path):
    from bayescal.workflows import ConfigError, load_config

    f = _site_file(fluxnet_dir, tmp_path)
    with pytest.raises(ConfigError, match=r"'site.validation_years' \[2004, 2006\] overlap "
                                          r"'site.calibration_years' \[2001, 2004\]"):
        load_config(_example_with(tmp_path, f, (2001, 2004), (2004, 2006)))


def test_product_units_are_compared_with_the_model_outputs(fluxnet_dir, tmp_path):
    from bayescal.workflows import ConfigError, load_config
    from bayescal.workflows.site.config import read_products

    f = _site_file(fluxnet_dir, tmp_path)
    t = pd.date_range("2001-01-01", "2006-12-31", freq="D")
    g = tmp_path / "gpp_per_year.csv"
    per_year = pd.DataFrame({"time": t.strftime("%Y-%m-%d"), "value": 365.25 * 2.0, "sigma": 365.25 * 0.5})
    per_year.to_csv(g, index=False)
    base = EXAMPLE.read_text()
    csv = (f'\n[[observations.products]]\nvariable = "{{v}}"\nformat = "csv"\nfile = "{g}"\nunits = "{{u}}"\n'
           'name = "extra"\n')
    text = base.replace("[posterior]", csv.format(v="gpp", u="gC m-2 yr-1") + "\n[posterior]")
    cfg = load_config(_example_with(tmp_path, f, (2001, 2004), (2005, 2006), text=text))
    p = read_products(cfg)[-1]  # per-year values fitted per day: converted to the model's units
    assert p.units == "gC m-2 d-1" and p.data.attrs["file_units"] == "gC m-2 yr-1"
    np.testing.assert_allclose(p.data.values, 2.0)
    np.testing.assert_allclose(p.sigma.values, 0.5)
    text = base.replace("[posterior]", csv.format(v="nee", u="W m-2") + "\n[posterior]")
    with pytest.raises(ConfigError, match=r"observations.products\[2\]': .*gpp_per_year.csv: .*model output "
                                          r"'nee' \[gC m-2 d-1\]: cannot convert 'W m-2' .* to 'gC m-2 d-1'"):
        load_config(_example_with(tmp_path, f, (2001, 2004), (2005, 2006), text=text))
    text = base.replace("[posterior]", csv.format(v="le", u="W m-2") + "\n[posterior]")
    with pytest.raises(ConfigError, match=r"products\[2\].variable': the model has no output 'le'"):
        load_config(_example_with(tmp_path, f, (2001, 2004), (2005, 2006), text=text))


def test_a_csv_product_of_annual_values_says_its_period(fluxnet_dir, tmp_path):
    """Annual GPP (one value a year, stamped 1 July, in kgC m-2 yr-1): with ``period = "year"``
    each value is compared with the model's annual mean rate; without it, a warning says each is
    compared with the model's one day; two values in one year, or an unknown period, are named."""
    from bayescal.operators.timeseries import SeriesOperator
    from bayescal.workflows import ConfigError, load_config
    from bayescal.workflows.site.config import read_drivers, read_products

    f = _site_file(fluxnet_dir, tmp_path)
    g = tmp_path / "gpp_annual.csv"
    g.write_text("time,value,sigma\n" + "".join(f"{y}-07-01,1.1,0.1\n" for y in range(2001, 2007)))
    csv = (f'\n[[observations.products]]\nvariable = "gpp"\nformat = "csv"\nfile = "{g}"\n'
           'units = "kgC m-2 yr-1"\nname = "annual"\n{period}')
    base = EXAMPLE.read_text()

    def config(period: str):
        text = base.replace("[posterior]", csv.format(period=period) + "\n[posterior]")
        return load_config(_example_with(tmp_path, f, (2001, 2004), (2005, 2006), text=text))

    cfg = config('period = "year"\n')
    p = read_products(cfg)[-1]
    assert p.attrs["period"] == "year"
    time = read_drivers(cfg)["time"].values
    op = SeriesOperator([p], time, (2001, 2004))
    assert op.y.size == 4 and op.weights.getnnz() == 365 * 3 + 366  # every day of 2001-2004
    # gC m-2 d-1: each year's total over its own days (2004: 366)
    np.testing.assert_allclose(op.y, 1100.0 / np.array([365, 365, 365, 366]), rtol=1e-12)
    with pytest.warns(UserWarning, match=r"gpp_annual.csv: its values are 365 days apart.*period = 'month' "
                                         "or 'year'"):
        assert read_products(config(""))[-1].attrs["period"] == "day"
    with pytest.raises(ConfigError, match=r"products\[2\].*period must be one of \['day', 'week', 'month', "
                                          r"'year'\], got 'annual'"):
        config('period = "annual"\n')
    g.write_text("time,value,sigma\n2001-03-01,1.1,0.1\n2001-07-01,1.2,0.1\n")
    with pytest.raises(ConfigError, match=r"gpp_annual.csv: 1 value\(s\) share a year with another \(the "
                                          r"first in 2001\); with period = 'year' give one value per year"):
        config('period = "year"\n')


def test_csv_fill_values_duplicates_and_order(tmp_path):
    f = tmp_path / "nee.csv"
    f.write_text("time,value,sigma\n2001-01-03,3.0,0.3\n2001-01-01,1.0,0.1\n2001-01-02,-9999,-9999\n"
                 "2001-01-04,-9999.0,0.2\n2001-01-05,-6999,0.2\n")
    p = read_csv_product(f, "nee", units="gC m-2 d-1")
    assert [str(d)[:10] for d in p.data.time.values] == [f"2001-01-0{i}" for i in range(1, 6)]  # sorted
    np.testing.assert_array_equal(p.data.values[[0, 2]], [1.0, 3.0])
    assert np.isnan(p.data.values[[1, 3, 4]]).all() and p.sigma.values[2] == 0.3
    # a file's own missing-value code (-999) read as data would enter the likelihood: named, unless given
    rows = "".join(f"2001-01-{d:02d},{-999 if d % 3 == 0 else d / 10},{0.2 if d % 3 else -999}\n"
                   for d in range(1, 11))
    f.write_text("time,value,sigma\n" + rows)
    with pytest.raises(ReaderError, match=r"column value holds -999 on 3 days \(the first 2001-01-03\).*"
                                          r"fill_value = -999"):
        read_csv_product(f, "nee", units="gC m-2 d-1")
    p = read_csv_product(f, "nee", units="gC m-2 d-1", fill_value=-999)
    assert int(p.data.notnull().sum()) == 7 and float(p.data.max()) == 1.0 and float(p.sigma.max()) == 0.2
    f.write_text("time,value,sigma\n2001-01-01,1.0,0.1\n2001-01-02,2.0,0.1\n2001-01-02,2.5,0.1\n")
    with pytest.raises(ReaderError, match=r"nee.csv: 1 duplicated day\(s\); the first is 2001-01-02"):
        read_csv_product(f, "nee", units="gC m-2 d-1", key="observations.products[1]")
    f.write_text("time,value,sigma\n2001-01-01,1.0,0.1\n2001-01-02,2.0,-0.1\n")
    with pytest.raises(ReaderError, match=r"column sigma is negative on 1 day\(s\), the first 2001-01-02"):
        read_csv_product(f, "nee", units="gC m-2 d-1", sigma_floor=0.2)  # not floored away
    # a daily value stamped within its day is that day's, and two stamps of one day are a duplicate
    f.write_text("time,value,sigma\n2001-01-01T12:00:00,1.0,0.1\n2001-01-02T12:00,2.0,0.1\n")
    p = read_csv_product(f, "nee", units="gC m-2 d-1")
    assert [str(d)[:19] for d in p.data.time.values] == ["2001-01-01T00:00:00", "2001-01-02T00:00:00"]
    f.write_text("time,value,sigma\n2001-01-02T06:00:00,1.0,0.1\n2001-01-02T18:00:00,2.0,0.1\n")
    with pytest.raises(ReaderError, match=r"1 duplicated day\(s\); the first is 2001-01-02"):
        read_csv_product(f, "nee", units="gC m-2 d-1")
    f.write_text("time,value,sigma\n20010101,1.0,0.1\n20010102,2.0,0.1\n")  # FLUXNET's TIMESTAMP form
    assert str(read_csv_product(f, "nee", units="gC m-2 d-1").data.time.values[1])[:10] == "2001-01-02"
    f.write_text("time,value,sigma\n13/01/2001,1.0,0.1\n")
    with pytest.raises(ReaderError, match=r"column time must hold ISO dates \(YYYY-MM-DD\) or YYYYMMDD; "
                                          r"line 2 has '13/01/2001'"):
        read_csv_product(f, "nee", units="gC m-2 d-1")
    f.write_text("time,value\n2001-01-01,1.0\n")
    with pytest.raises(ReaderError, match=r"relative_sigma must be > 0, got -0.1"):
        read_csv_product(f, "nee", units="gC m-2 d-1", relative_sigma=-0.1)


def test_fluxnet_duplicates_order_and_negative_sigma(fluxnet_dir, tmp_path):
    df = pd.read_csv(fluxnet_dir / HAI).iloc[:60]
    shuffled = df.sample(frac=1.0, random_state=3)
    f = tmp_path / "FLX_DE-Hai_DD_shuffled.csv"
    shuffled.to_csv(f, index=False)
    p, q = read_fluxnet_product(f, "nee"), read_fluxnet_product(_slice(fluxnet_dir / HAI, tmp_path), "nee")
    np.testing.assert_array_equal(p.data.time.values, q.data.time.values)
    np.testing.assert_array_equal(p.data.values, q.data.values)
    pd.concat([df, df.iloc[[20]]]).to_csv(f, index=False)
    with pytest.raises(ReaderError, match=r"FLX_DE-Hai_DD_shuffled.csv: 1 duplicated day\(s\); the first is "
                                          r"2000-01-21"):
        read_fluxnet_product(f, "nee")
    bad = df.copy()
    bad.loc[5, "NEE_VUT_REF_RANDUNC"] = -0.4
    bad.loc[5, "NEE_VUT_REF_QC"] = 1.0
    bad.to_csv(f, index=False)
    with pytest.raises(ReaderError, match=r"NEE_VUT_REF_RANDUNC \(the 1-sigma of NEE_VUT_REF\) is negative "
                                          r"on 1 kept day\(s\), the first 2000-01-06"):
        read_fluxnet_product(f, "nee")
    with pytest.raises(ReaderError, match=r"relative_sigma must be > 0, got -0.15"):
        read_fluxnet_product(fluxnet_dir / HAI, "gpp", partitioning="NT", relative_sigma=-0.15)


def test_cli_check_exits_2_naming_the_file_and_key(fluxnet_dir, tmp_path, capsys):
    from bayescal.cli import main

    f = _site_file(fluxnet_dir, tmp_path, edit=lambda d: pd.concat([d.iloc[:30], d.iloc[29:]]))
    assert main(["check", str(_example_with(tmp_path, f, (2001, 2004), (2005, 2006)))]) == 2
    err = capsys.readouterr().err
    assert "model.drivers" in err and f.name in err and "the first is 2001-01-30" in err
    assert "Traceback" not in err


def test_csv_text_in_a_number_column_is_named_by_line_and_sigma_may_have_its_own_units(tmp_path):
    """Text that is not a number is an error naming the column and the file's line (it used to
    become a gap silently); a missing sigma on an observed day is named by day; ``sigma_units``
    converts sigma (mgC m-2 h-1) to the values' units (umol m-2 s-1) before anything else."""
    f = tmp_path / "nee.csv"
    rows = ["time,value,sigma", "2003-01-02,1.0,36", "2003-01-01,-2.0,72", "2003-01-03,,", "2003-01-04,n/a,1"]
    f.write_text("\n".join(rows + ["2003-01-05,\"1,5\",2"]) + "\n")
    with pytest.raises(ReaderError, match=r"nee.csv: column value on line 6 is not a number: '1,5' \(1 such"):
        read_csv_product(f, "nee", units="umol m-2 s-1")
    f.write_text("\n".join(rows + ["2003-01-05,3.0,"]) + "\n")
    with pytest.raises(ReaderError, match="column sigma is missing on 1 day.* the first 2003-01-05"):
        read_csv_product(f, "nee", units="umol m-2 s-1")
    f.write_text("\n".join(rows) + "\n")
    p = read_csv_product(f, "nee", units="umol m-2 s-1", sigma_units="mgC m-2 h-1", to_units="gC m-2 d-1")
    # 36 mgC m-2 h-1 = 0.864 gC m-2 d-1; 1 umol m-2 s-1 = 12.011e-6 * 86400 gC m-2 d-1
    np.testing.assert_allclose(p.sigma.values[:2], [72 * 0.024, 36 * 0.024], rtol=1e-6)
    np.testing.assert_allclose(p.data.values[:2], [-2.0 * 1.0377504, 1.0 * 1.0377504], rtol=1e-6)
    assert np.isnan(p.data.values[2:]).all()
    with pytest.raises(ReaderError, match="sigma_units"):
        read_csv_product(f, "nee", units="umol m-2 s-1", sigma_units="W m-2")
    # columns of other names: said with what the file has; an unnamed decimal comma; an 'sd' column
    f.write_text("Date, GPP\n2003-01-01, 2.5\n")
    with pytest.raises(ReaderError, match=r"missing columns \['time', 'value'\] \(need time, value\[, "
                                          r"sigma\]; the file has \['Date', 'GPP'\]: name them with the "
                                          r"product.s columns key, such as columns = "):
        read_csv_product(f, "gpp", units="gC m-2 d-1", relative_sigma=0.1)
    f.write_text("time,value\n2003-01-01,2.5\n2003-01-02,2,5\n")
    with pytest.raises(ReaderError, match=r"Expected 2 fields in line 3, saw 3\); a decimal comma \(2,5\) "
                                          "splits"):
        read_csv_product(f, "gpp", units="gC m-2 d-1", relative_sigma=0.1)
    f.write_text("time;value\n2003-01-01;2,5\n2003-01-02;2,4\n")  # another locale's spreadsheet CSV
    with pytest.raises(ReaderError, match=r"nee.csv: its columns are separated by semicolons \(its header is "
                                          r"'time;value'\); bayescal reads comma-separated files"):
        read_csv_product(f, "gpp", units="gC m-2 d-1", relative_sigma=0.1)
    f.write_text("time;value;sigma\n2003-01-01;2;1\n2003-01-02;2,5;0,3\n")  # pandas fails on line 3 first
    with pytest.raises(ReaderError, match=r"nee.csv: its columns are separated by semicolons"):
        read_csv_product(f, "gpp", units="gC m-2 d-1")
    f.write_text("time,value\n2003-01-01,2.5\n2003-01-02,0.0\n")  # relative sigma of a zero
    zero = r"2003-01-02 has 0.0; relative_sigma x \|value\| is 0 where a value is 0: give sigma_floor too"
    with pytest.raises(ReaderError, match=zero + r" \(a smallest sigma, in gC m-2 d-1\)"):
        read_csv_product(f, "gpp", units="gC m-2 d-1", relative_sigma=0.1)
    floored = read_csv_product(f, "gpp", units="gC m-2 d-1", relative_sigma=0.1, sigma_floor=0.05)
    assert floored.sigma[1] == 0.05
    f.write_text("time,value,sd\n2003-01-01,2.5,0.2\n2003-01-02,2.4,0.2\n")
    with pytest.raises(ReaderError, match=r"no sigma column; give relative_sigma; its column\(s\) \['sd'\] "
                                          r'are not read: give columns = \{sigma = "sd"\}'):
        read_csv_product(f, "gpp", units="gC m-2 d-1")
    with pytest.warns(UserWarning, match=r"no sigma column, so relative_sigma gives sigma; its column\(s\) "
                                         r"\['sd'\] are not read"):
        read_csv_product(f, "gpp", units="gC m-2 d-1", relative_sigma=0.1)


def test_a_spreadsheets_csv_with_spaces_after_commas_and_a_bom_reads_as_the_original(fluxnet_dir, tmp_path):
    """Spaces after the commas (header and values) and a UTF-8 byte-order mark, as spreadsheets
    write them: the same product and drivers as the original file (they were 'missing columns')."""
    df = pd.read_csv(fluxnet_dir / HAI).iloc[:400]
    plain, messy = tmp_path / "FLX_DE-Hai_DD_plain.csv", tmp_path / "FLX_DE-Hai_DD_messy.csv"
    df.to_csv(plain, index=False)
    text = plain.read_text().replace(",", ", ")
    messy.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    p, q = read_fluxnet_product(messy, "nee"), read_fluxnet_product(plain, "nee")
    np.testing.assert_array_equal(p.data.values, q.data.values)
    np.testing.assert_array_equal(p.sigma.values, q.sigma.values)
    a, b = read_fluxnet_drivers(messy), read_fluxnet_drivers(plain)
    assert a.equals(b)


def test_a_csv_with_its_own_column_names_is_read_through_the_columns_key(fluxnet_dir, tmp_path, capsys):
    """A monthly GPP file with columns ``date, GPP, GPP_sd, value`` (a column of another meaning
    named value): ``columns`` names them, and the product is the one of a file written with
    time, value and sigma; a role or column that is not there is an error naming it, before any
    model run, through bayescal check."""
    from bayescal.cli import main
    from bayescal.workflows import load_config
    from bayescal.workflows.site.config import read_products

    stamp = pd.date_range("2001-01-01", periods=36, freq="MS") + pd.Timedelta(days=14)
    gpp = 2.0 + np.sin(np.arange(36) / 2.0)
    plain, messy = tmp_path / "plain.csv", tmp_path / "messy.csv"
    pd.DataFrame({"time": stamp.strftime("%Y-%m-%d"), "value": gpp, "sigma": 0.3}).to_csv(plain, index=False)
    pd.DataFrame({"date": stamp.strftime("%Y-%m-%d"), "GPP": gpp, "GPP_sd": 0.3, "value": -1.0}).to_csv(
        messy, index=False)
    p = read_csv_product(messy, "gpp", units="gC m-2 d-1", period="month",
                         columns={"time": "date", "value": "GPP", "sigma": "GPP_sd"})
    q = read_csv_product(plain, "gpp", units="gC m-2 d-1", period="month")
    xr.testing.assert_identical(p.data.drop_attrs(), q.data.drop_attrs())
    np.testing.assert_array_equal(p.sigma.values, q.sigma.values)
    with pytest.raises(ReaderError, match=r"columns.sigma = 'GPP_unc': the file has no such column \(it has "
                                          r"\['date', 'GPP', 'GPP_sd', 'value'\]\)"):
        read_csv_product(messy, "gpp", units="gC m-2 d-1", columns={"time": "date", "value": "GPP",
                                                                      "sigma": "GPP_unc"})
    gappy = pd.read_csv(messy)
    gappy.loc[4, "GPP_sd"] = np.nan
    gappy.to_csv(tmp_path / "gappy.csv", index=False)
    with pytest.raises(ReaderError, match=r"column GPP_sd is missing on 1 month\(s\) with a value, the first "
                                          r"2001-05-15; give every observed month its sigma"):
        read_csv_product(tmp_path / "gappy.csv", "gpp", units="gC m-2 d-1", period="month",
                         columns={"time": "date", "value": "GPP", "sigma": "GPP_sd"})
    with pytest.raises(ReaderError, match=r"columns: 'sd' is not one of 'time', 'value', 'sigma'"):
        read_csv_product(messy, "gpp", units="gC m-2 d-1", columns={"time": "date", "sd": "GPP_sd"})
    with pytest.raises(ReaderError, match=r"missing columns \['time'\] .* columns = \{time = "):
        read_csv_product(messy, "gpp", units="gC m-2 d-1", relative_sigma=0.1)
    f = _site_file(fluxnet_dir, tmp_path)
    csv = (f'\n[[observations.products]]\nvariable = "gpp"\nformat = "csv"\nfile = "{messy}"\n'
           'units = "gC m-2 d-1"\nperiod = "month"\nname = "monthly"\n{columns}\n')
    for columns, said in (('columns = {time = "date", value = "GPP", sigma = "GPP_sd"}', None),
                          ('columns = {time = "date", value = "GPP", sigma = "sd"}', "columns.sigma = 'sd'"),
                          ('columns = "date"', "'observations.products[2].columns' must be a table")):
        text = EXAMPLE.read_text().replace("[posterior]", csv.format(columns=columns) + "[posterior]")
        cfg = _example_with(tmp_path, f, (2001, 2003), (2004, 2005), text=text)
        if said is None:
            got = read_products(load_config(cfg))[-1]
            np.testing.assert_allclose(got.data.dropna("time").values, gpp, rtol=1e-12)
            continue
        assert main(["check", "--no-model-run", str(cfg)]) == 2
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err, err


def test_keys_that_would_do_nothing_or_lack_are_named(fluxnet_dir, tmp_path, capsys):
    """relative_sigma where the file gives sigma (FLUXNET NEE's random uncertainty, a CSV's sigma
    column) and a FLUXNET GPP without partitioning are named by key; a missing partitioning's
    column names the one the file has; an empty sigma column points to relative_sigma."""
    from bayescal.cli import main

    example = EXAMPLE.read_text()
    for edit, said in (
        (("qc_min = 0.8\n", "qc_min = 0.8\nrelative_sigma = 0.5\n", 1),
         "'observations.products[0].relative_sigma' does nothing for FLUXNET nee: its sigma is the file's "
         "NEE_VUT_REF_RANDUNC"),
        (('partitioning = "NT"\n', "", 1),
         "'observations.products[1].partitioning' is required for FLUXNET gpp: \"NT\""),
    ):
        cfg = _example_with(tmp_path, fluxnet_dir / HAI, (2001, 2004), (2005, 2006),
                            text=example.replace(*edit))
        assert main(["check", "--no-model-run", str(cfg)]) == 2
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err, err
    from bayescal.workflows import load_config

    cfg = _example_with(tmp_path, fluxnet_dir / HAI, (2001, 2004), (2005, 2006),
                        text=example.replace('start = "optimum"\n', 'start = "optimum"\nn_particles = 300\n'))
    with pytest.warns(UserWarning, match=r"'posterior.n_particles' \(300\) does nothing with "
                                         r"posterior.start = 'optimum' .* or set start = 'tempered'"):
        load_config(cfg)
    f = tmp_path / "FLX_DE-Hai_DD_2000-2012.csv"
    pd.read_csv(fluxnet_dir / HAI).drop(columns=["GPP_DT_VUT_REF"]).to_csv(f, index=False)
    with pytest.raises(ReaderError, match=r"missing columns \['GPP_DT_VUT_REF'\] \(the file has "
                                          r"GPP_NT_VUT_REF: partitioning = 'NT'\)"):
        read_fluxnet_product(f, "gpp", partitioning="DT")
    g = tmp_path / "gpp.csv"
    g.write_text("time,value,sigma\n2001-01-01,2.0,0.2\n2001-01-02,4.0,0.3\n")
    with pytest.raises(ReaderError, match="has a sigma column and relative_sigma is given: give only one"):
        read_csv_product(g, "gpp", units="gC m-2 d-1", relative_sigma=0.1)
    g.write_text("time,value,sigma\n2001-01-01,2.0,\n2001-01-02,4.0,\n")
    with pytest.raises(ReaderError, match="the column is empty: leave it out of the file and give "
                                          "relative_sigma instead"):
        read_csv_product(g, "gpp", units="gC m-2 d-1")


def test_lower_case_names_iso_dates_and_blank_rows_read_as_the_original(fluxnet_dir, tmp_path):
    """A FLUXNET file re-saved by hand: column names in lower case, dates as ISO (2000-01-01),
    a spreadsheet's blank rows of commas at the end -- the same product and drivers as the
    original (they were 'no TIMESTAMP column' and 'not a YYYYMMDD day')."""
    df = pd.read_csv(fluxnet_dir / HAI).iloc[:400]
    plain, messy = tmp_path / "FLX_DE-Hai_DD_plain.csv", tmp_path / "flx_de-hai_dd_messy.csv"
    df.to_csv(plain, index=False)
    edited = df.rename(columns=str.lower)
    edited["timestamp"] = pd.to_datetime(edited["timestamp"].astype(str)).dt.strftime("%Y-%m-%d")
    edited.to_csv(messy, index=False)
    with open(messy, "a") as fh:
        fh.write("," * (df.shape[1] - 1) + "\n" + "," * (df.shape[1] - 1) + "\n")
    p, q = read_fluxnet_product(messy, "nee"), read_fluxnet_product(plain, "nee")
    np.testing.assert_array_equal(p.data.values, q.data.values)
    np.testing.assert_array_equal(p.data["time"].values, q.data["time"].values)
    np.testing.assert_array_equal(p.sigma.values, q.sigma.values)
    assert p.name == "DE-Hai-NEE"  # the site of a lower-case file name, as the table spells it
    assert read_fluxnet_drivers(messy).equals(read_fluxnet_drivers(plain))


def test_a_row_cut_short_is_said_with_its_line_and_the_columns_it_lacks(fluxnet_dir, tmp_path):
    """A data row that ends before the columns read (a file cut short, a row edited by hand):
    pandas reads its missing fields as it reads -9999, so the reader says which line and which
    columns; a row that lacks only columns not read, and a row of commas, are not warned of."""
    import warnings

    df = pd.read_csv(fluxnet_dir / HAI).iloc[:60]
    f = tmp_path / "FLX_DE-Hai_DD_cut.csv"
    df.to_csv(f, index=False)
    lines = f.read_text().splitlines()
    nee = list(df.columns).index("NEE_VUT_REF")
    lines[11] = ",".join(lines[11].split(",")[:nee])  # ends just before NEE_VUT_REF
    f.write_text("\n".join(lines) + "\n")
    said = (rf"1 data row\(s\) end before the last of the columns read; the first is line 12 \(TIMESTAMP "
            rf"{df['TIMESTAMP'][10]}, {nee} of the header's {df.shape[1]} fields\), without NEE_VUT_REF, "
            r"NEE_VUT_REF_RANDUNC: read as missing there")  # qc_min = 0: its QC column is not read
    with pytest.warns(UserWarning, match=said):
        p = read_fluxnet_product(f, "nee", qc_min=0.0)
    assert np.flatnonzero(np.isnan(p.data.values)).tolist() == [10]  # that day's NEE: missing
    assert df.columns[-1] == "LE_RANDUNC"  # a row that lacks it: NEE's product reads all it needs
    lines[11] = lines[12].rsplit(",", 1)[0]
    f.write_text("\n".join(lines[:12] + lines[13:]) + "\n" + "," * 5 + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_fluxnet_product(f, "nee", qc_min=0.0).data.sizes["time"] == 59
    with pytest.warns(UserWarning, match=r"line 12 .* without LE_RANDUNC: read as missing"):
        from bayescal.readers.fluxnet import read_fluxnet

        read_fluxnet(f, ["LE_F_MDS", "LE_RANDUNC"])


def test_qc_min_zero_needs_no_qc_column_and_a_missing_uncertainty_is_said(fluxnet_dir, tmp_path):
    """qc_min = 0 keeps every value, so a file without the QC column reads (it was 'missing
    columns'); a random-uncertainty column missing on every day gives every day the floor, said."""
    df = pd.read_csv(fluxnet_dir / HAI).iloc[:400]
    f = tmp_path / "FLX_DE-Hai_DD_noqc.csv"
    df.drop(columns=["NEE_VUT_REF_QC"]).to_csv(f, index=False)
    p = read_fluxnet_product(f, "nee", qc_min=0.0)
    np.testing.assert_array_equal(p.data.values, df["NEE_VUT_REF"].to_numpy())
    with pytest.raises(ReaderError, match=r"missing columns \['NEE_VUT_REF_QC'\]"):
        read_fluxnet_product(f, "nee", qc_min=0.5)
    df["NEE_VUT_REF_RANDUNC"] = -9999
    g = tmp_path / "FLX_DE-Hai_DD_nounc.csv"
    df.to_csv(g, index=False)
    with pytest.warns(UserWarning, match=r"NEE_VUT_REF_RANDUNC \(the 1-sigma of NEE_VUT_REF\) is missing on "
                      r"every kept day, so every day's sigma is sigma_floor = 0.2 gC m-2 d-1"):
        q = read_fluxnet_product(g, "nee", qc_min=0.0)
    assert np.all(q.sigma.values == 0.2)


def test_a_site_config_one_step_off_its_example_is_told_what_does_not_fit(fluxnet_dir, tmp_path):
    """The weather of one site and the fluxes of another (one path edited), a latitude six degrees
    off the site table's, a twin's truth of a value left out of parameters.free: each warned of by
    name (the other hemisphere's latitude is an error: test_site_weather_...); the documented
    sigma_floor written out is the default (same keys)."""
    from bayescal.workflows import load_config

    pue = tmp_path / PUE
    pue.write_bytes((fluxnet_dir / PUE).read_bytes())
    base = _example_with(tmp_path, fluxnet_dir / HAI, (2000, 2008), (2009, 2012)).read_text()
    head, mark, tail = base.partition("[[observations.products]]")
    cases = {
        "mixed": (head + mark + tail.replace(str(fluxnet_dir / HAI), str(pue), 1),
                  r"'observations.products\[0\]' is site FR-Pue's file .* but 'model.drivers' is site "
                  r"DE-Hai's"),
        "north": (base.replace('kind = "dalec"', 'kind = "dalec"\nlatitude = 45.08'),
                  r"'model.latitude' = 45.08 but site DE-Hai .* at 51.08 in the FLUXNET2015 site table: "
                  r"leave the key out"),
        "twin": (base.replace("[site]", '[parameters]\nfree = ["p3", "p5"]\n\n[site]').replace(
            mark, "[observations]\ntwin = true\ntruth = { p2 = 0.9, p3 = 0.2 }\n\n" + mark, 1),
                 r"'observations.truth' moves \['p2'\], which the calibration holds at their defaults"),
    }
    for name, (text, match) in cases.items():
        (tmp_path / f"{name}.toml").write_text(text)
        with pytest.warns(UserWarning, match=match):
            load_config(tmp_path / f"{name}.toml")
    (tmp_path / "hainich_met.csv").write_bytes((fluxnet_dir / HAI).read_bytes())  # drivers of no FLX_ name
    named = base.replace(f'drivers = "{fluxnet_dir / HAI}"',
                         f'drivers = "{tmp_path / "hainich_met.csv"}"\nlatitude = 51.08', 1)
    assert named != base
    (tmp_path / "named.toml").write_text(named)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*is site .*'s file")  # no site to compare with
        load_config(tmp_path / "named.toml")
    (tmp_path / "plain.toml").write_text(base)
    floor = base.replace('variable = "nee"', 'variable = "nee"\nsigma_floor = 0.2')
    (tmp_path / "floor.toml").write_text(floor)
    plain, floored = load_config(tmp_path / "plain.toml"), load_config(tmp_path / "floor.toml")
    assert floored["observations"]["products"] == plain["observations"]["products"]
    (tmp_path / HAI).write_bytes((fluxnet_dir / HAI).read_bytes())
    (tmp_path / "sub").mkdir()
    direct = load_config(_example_with(tmp_path, tmp_path / HAI, (2000, 2008), (2009, 2012)))
    roundabout = tmp_path / "sub" / ".." / HAI  # the same file by another path: the same config
    assert load_config(_example_with(tmp_path, roundabout, (2000, 2008), (2009, 2012))) == direct


def _shifted(df, months=6):
    """``df``'s values moved by ``months`` on its own days (a site of the other hemisphere)."""
    out = df.copy()
    cols = [c for c in df.columns if c != "TIMESTAMP"]
    out[cols] = np.roll(df[cols].to_numpy(), round(365.25 * months / 12), axis=0)
    return out


@pytest.mark.parametrize("edit, lat, match", [
    (lambda df: df.assign(TA_F=df["TA_F"] + 273.15), None,
     r"TA_F = 27\d\.\d+ degC on 2001-01-01 is outside \[-70, 60\] degC \(2191 such day\(s\)\); kelvin\? "
     r"\(median 28\d\.\d; FLUXNET's TA_F is in degC"),
    (lambda df: df.assign(TA_F=df["TA_F"].mask(df.index == 200, 75.0)), None,
     r"TA_F = 75 degC on 2001-07-20 is outside \[-70, 60\] degC \(1 such day\(s\)\); units or fill"),
    (lambda df: df.assign(SW_IN_F=df["SW_IN_F"] * 4), None,
     r"SW_IN_F = [\d.]+ W m-2 on 2001-\d\d-\d\d is more than the sunlight at the top of the atmosphere at "
     r"latitude 42.5378 that day \(\d+ W m-2\), on \d+ day\(s\)"),
    (lambda df: df.assign(SW_IN_F=df["SW_IN_F"] * 0.0864), None,
     r"SW_IN_F averages [\d.]+ W m-2, [2-7] % of the sunlight .* in MJ m-2 d-1 are 11.6 times smaller"),
    (lambda df: df, -42.5,
     r"SW_IN_F peaks in (June|July), the summer of the northern hemisphere; 'model.latitude' = -42.5 is "
     r"south of the equator: a northern site's latitude is positive"),
])
def test_site_weather_in_other_units_or_of_the_other_hemisphere_is_refused(fluxnet_dir, tmp_path, edit,
                                                                             lat, match):
    """Drivers a site model would run on without failing, and blame the observations for: kelvin,
    a day at 75 degC, radiation scaled or in MJ m-2 d-1, a latitude with the wrong sign. Each
    refused naming the column (or key), the day and the fix; the unedited file is read."""
    f = _site_file(fluxnet_dir, tmp_path, edit=edit)
    with pytest.raises(ReaderError, match=match):
        read_fluxnet_drivers(f, lat=lat)
    (tmp_path / "plain").mkdir()
    read_fluxnet_drivers(_site_file(fluxnet_dir, tmp_path / "plain"), lat=lat if lat is None else -lat)


def test_a_southern_site_takes_its_seasons_from_the_site_table(fluxnet_dir, tmp_path):
    """DE-Hai's weather named for AU-Tum (35.66 S in the site table): its summer is in the wrong
    months, and the error asks whether the file is AU-Tum's; the same weather half a year on is a
    southern site's and is read at the table's latitude (also through a site config: exit 2, the
    key named, no traceback)."""
    f = _site_file(fluxnet_dir, tmp_path, site="AU-Tum")
    with pytest.raises(ReaderError, match=r"SW_IN_F peaks in (June|July), the summer of the northern "
                                          r"hemisphere; site AU-Tum is at -35.66 in the FLUXNET2015 site "
                                          r"table: is this AU-Tum's file \(its dates shifted by half a "
                                          r"year\?\)"):
        read_fluxnet_drivers(f)
    (tmp_path / "south").mkdir()
    g = _site_file(fluxnet_dir, tmp_path / "south", site="AU-Tum", edit=_shifted)
    assert read_fluxnet_drivers(g).attrs["lat"] == pytest.approx(-35.6566)


def test_cli_check_refuses_weather_in_kelvin_with_exit_2_before_any_model_run(fluxnet_dir, tmp_path, capsys):
    """It used to end in a traceback from the model (exit 1), naming its own variable in its units."""
    from bayescal.cli import main

    f = _site_file(fluxnet_dir, tmp_path, edit=lambda d: d.assign(TA_F=d["TA_F"] + 273.15))
    assert main(["check", str(_example_with(tmp_path, f, (2001, 2004), (2005, 2006)))]) == 2
    err = capsys.readouterr().err
    assert "model.drivers" in err and f.name in err and "TA_F = " in err and "kelvin?" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_weather_refused_by_the_checks_runs_when_the_config_turns_them_off(fluxnet_dir, tmp_path, capsys):
    """A deliberate experiment (northern weather at a southern latitude): refused by default, the
    error naming the switch; with ``model.check_weather = false`` the config is checked, the model
    run on the drivers as they are, at the latitude given. The switch is no stage input: turning it
    off for drivers that pass changes no key."""
    from bayescal.cli import main
    from bayescal.workflows import load_config
    from bayescal.workflows.site.model import site_model
    from bayescal.workflows.site.workflow import SITE

    f = _site_file(fluxnet_dir, tmp_path)
    assert main(["check", str(_example_with(tmp_path, f, (2001, 2004), (2005, 2006),
                                            model_extra="latitude = -42.5"))]) == 2
    err = capsys.readouterr().err
    assert "SW_IN_F peaks in" in err and "set model.check_weather = false" in err and "Traceback" not in err
    off = _example_with(tmp_path, f, (2001, 2004), (2005, 2006),
                        model_extra="latitude = -42.5\ncheck_weather = false")
    assert main(["check", str(off)]) == 0
    assert site_model(load_config(off)).drivers.attrs["lat"] == -42.5
    cfg = load_config(_example_with(tmp_path, f, (2001, 2004), (2005, 2006)))
    read = {k for s in SITE.stages for part in (s, *s.keeps) for k in part.keys(cfg)}
    assert "model.drivers" in read and "model.check_weather" not in read


def test_compressed_and_zipped_fluxnet_files_are_read_as_the_csv(fluxnet_dir, tmp_path):
    """A .gz file and a zip of one CSV are the CSV (no "rows cut short" warning from reading the
    compressed bytes as text); a FLUXNET2015 download's zip (daily, half-hourly and ERA-Interim
    files) gives its daily file; a zip of several others is refused, naming them."""
    import gzip
    import zipfile

    plain = _site_file(fluxnet_dir, tmp_path)
    want = read_fluxnet_drivers(plain)
    gz = plain.with_name(plain.name + ".gz")
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    one = plain.with_suffix(".zip")
    with zipfile.ZipFile(one, "w", zipfile.ZIP_DEFLATED) as zf:  # as macOS's "Compress" makes it
        zf.write(plain, plain.name)
        zf.writestr(f"__MACOSX/._{plain.name}", b"\x00\x05\x16\x07 resource fork")
    download = tmp_path / "FLX_US-Ha1_FLUXNET2015_SUBSET_2001-2006_1-4.zip"
    with zipfile.ZipFile(download, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("FLX_US-Ha1_FLUXNET2015_SUBSET_HH_2001-2006_1-4.csv", "TIMESTAMP_START,TIMESTAMP_END\n")
        zf.writestr("FLX_US-Ha1_FLUXNET2015_ERAI_DD_1989-2014_1-4.csv", "TIMESTAMP,TA_ERA\n")
        zf.write(plain, plain.name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        for f in (gz, one, download):
            xr.testing.assert_identical(read_fluxnet_drivers(f).drop_attrs(), want.drop_attrs())
            product = read_fluxnet_product(f, "nee")
            assert product.data.count() == read_fluxnet_product(plain, "nee").data.count() > 1000
    renamed = tmp_path / "harvard.zip"  # the download renamed: its site is the daily file's in it
    renamed.write_bytes(download.read_bytes())
    assert read_fluxnet_drivers(renamed).attrs["site"] == "US-Ha1"
    several = tmp_path / "two.zip"
    with zipfile.ZipFile(several, "w") as zf:
        zf.writestr("a.csv", "TIMESTAMP\n")
        zf.writestr("b.csv", "TIMESTAMP\n")
    with pytest.raises(ReaderError, match=r"two.zip: the zip holds 2 CSV files \(a.csv, b.csv\), and not one "
                                          r"daily file .*\(extract it"):
        read_fluxnet_drivers(several, lat=45.0)
    bad = tmp_path / "FLX_US-Ha1_x.csv.gz"
    bad.write_bytes(plain.read_bytes())
    with pytest.raises(ReaderError, match=r"FLX_US-Ha1_x.csv.gz: not a readable gz file"):
        read_fluxnet_drivers(bad)
    packed = gz.read_bytes()
    for at in (20, 21, len(packed) // 2, len(packed) - 6):  # one bit damaged in transit, here and there:
        flipped = bytearray(packed)  # a broken deflate stream (zlib.error), a CRC, a garbled row
        flipped[at] ^= 0x01
        bad.write_bytes(bytes(flipped))
        with pytest.raises(ReaderError, match=r"FLX_US-Ha1_x.csv.gz: not a"):
            read_fluxnet_drivers(bad)


def test_a_file_with_comment_lines_or_without_qc_or_co2_is_told_how_to_go_on(fluxnet_dir, tmp_path):
    """AmeriFlux BASE files start with '# Site:' lines (not a decimal comma's fault); a file without
    NEE_VUT_REF_QC is pointed to qc_min = 0; drivers without CO2 to where a CO2 series comes from."""
    plain = _site_file(fluxnet_dir, tmp_path)
    base = tmp_path / "AMF_US-Ha1_BASE_HH_18-5.csv"
    base.write_text("# Site: US-Ha1\n# Version: 18-5\n" + plain.read_text())
    with pytest.raises(ReaderError, match=r"starts with comment lines \('# Site: US-Ha1'\): an AmeriFlux "
                                          r"BASE file\?"):
        read_fluxnet_drivers(base)
    (tmp_path / "noqc").mkdir()
    noqc = _site_file(fluxnet_dir, tmp_path / "noqc", edit=lambda d: d.drop(columns=["NEE_VUT_REF_QC"]))
    with pytest.raises(ReaderError, match=r"missing columns \['NEE_VUT_REF_QC'\] \(a file without quality "
                                          r"flags: qc_min = 0 keeps every value it gives\)"):
        read_fluxnet_product(noqc, "nee")
    assert read_fluxnet_product(noqc, "nee", qc_min=0).data.count() > 1000
    (tmp_path / "noco2").mkdir()
    noco2 = _site_file(fluxnet_dir, tmp_path / "noco2", edit=lambda d: d.assign(CO2_F_MDS=-9999))
    with pytest.raises(ReaderError, match=r"CO2_F_MDS is missing on every day \(a site model's drivers need "
                                          r"the air's CO2 in ppm: fill CO2_F_MDS"):
        read_fluxnet_drivers(noco2)
