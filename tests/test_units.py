"""Units through pint (bayescal.readers.units): the units FLUXNET, CMIP (CMOR) and ILAMB files use for
bayescal's variables, converted to the model's units, against factors computed by hand."""

import numpy as np
import pytest

from bayescal.readers import UnitError, conversion_factor, convert
from bayescal.readers.units import LATENT_HEAT, parse_units

DAY, YEAR = 86400.0, 365.25 * 86400.0
C = 12.011  # g C per mol CO2

# (source, variable, the file's unit, the model's unit, factor by hand)
TABLE = [
    # FLUXNET2015 (DD/WW/MM: per day; YY: per year; HH: umolCO2 m-2 s-1)
    ("FLUXNET DD NEE_VUT_REF", "nee", "gC m-2 d-1", "gC m-2 d-1", 1.0),
    ("FLUXNET DD GPP_NT_VUT_REF", "gpp", "gC m-2 d-1", "kg m-2 s-1", 1e-3 / DAY),
    ("FLUXNET YY NEE_VUT_REF", "nee", "gC m-2 y-1", "gC m-2 d-1", 1 / 365.25),
    ("FLUXNET HH NEE_VUT_REF", "nee", "umolCO2 m-2 s-1", "gC m-2 d-1", C * 1e-6 * DAY),
    ("FLUXNET HH RECO", "reco", "µmol m-2 s-1", "gC m-2 d-1", C * 1e-6 * DAY),
    ("FLUXNET LE_F_MDS", "le", "W m-2", "W m-2", 1.0),
    ("FLUXNET LE_F_MDS as hfls", "hfls", "W m-2", "W m-2", 1.0),
    ("FLUXNET H_F_MDS", "hfss", "W m-2", "W m-2", 1.0),
    # CMIP6 CMOR (Lmon / Emon tables)
    ("CMIP gpp", "gpp", "kg m-2 s-1", "gC m-2 d-1", 1e3 * DAY),
    ("CMIP gpp", "gpp", "kg m-2 s-1", "kg m-2 s-1", 1.0),
    ("CMIP nbp", "nbp", "kg m-2 s-1", "gC m-2 d-1", 1e3 * DAY),
    ("CMIP nep as nee", "nee", "kg m-2 s-1", "gC m-2 d-1", 1e3 * DAY),
    ("CMIP ra", "ra", "kg m-2 s-1", "kgC m-2 yr-1", YEAR),
    ("CMIP lai", "lai", "1", "m2 m-2", 1.0),
    ("CMIP hfls", "hfls", "W m-2", "W m-2", 1.0),
    ("CMIP hfss", "hfss", "W m-2", "W m-2", 1.0),
    ("CMIP evspsbl -> latent heat", "hfls", "kg m-2 s-1", "W m-2", LATENT_HEAT),
    ("CMIP evspsbl", "evspsbl", "kg m-2 s-1", "mm day-1", DAY),
    ("CMIP evspsbl -> le", "le", "kg m-2 s-1", "W m-2", 2.501e6),
    ("CMIP mrso", "mrso", "kg m-2", "kg m-2", 1.0),
    ("CMIP mrso", "mrso", "kg m-2", "mm", 1.0),
    ("CMIP cVeg", "cveg", "kg m-2", "gC m-2", 1e3),
    # ILAMB (FLUXCOM, GBAF, MODIS, AVHRR, GCB, biomass)
    ("ILAMB GBAF gpp", "gpp", "g m-2 d-1", "gC m-2 d-1", 1.0),
    ("ILAMB FLUXCOM gpp", "gpp", "gC m-2 day-1", "kg m-2 s-1", 1e-3 / DAY),
    ("ILAMB GBAF reco", "reco", "g m-2 d-1", "gC m-2 d-1", 1.0),
    ("ILAMB nee", "nee", "g m-2 d-1", "kg m-2 s-1", 1e-3 / DAY),
    ("ILAMB FLUXCOM le", "hfls", "MJ m-2 d-1", "W m-2", 1e6 / DAY),
    ("ILAMB MODIS et", "et", "kg m-2 s-1", "mm d-1", DAY),
    ("ILAMB GLEAM et", "et", "mm day-1", "kg m-2 s-1", 1 / DAY),
    ("ILAMB et -> latent heat", "hfls", "mm day-1", "W m-2", 2.501e6 / DAY),
    ("ILAMB AVHRR lai", "lai", "1", "m2 m-2", 1.0),
    ("ILAMB MODIS lai", "lai", "m2/m2", "m2 m-2", 1.0),
    ("ILAMB GCB nbp", "nbp", "Pg yr-1", "kg s-1", 1e12 / YEAR),
    ("ILAMB biomass", "cveg", "Mg ha-1", "kg m-2", 0.1),
    # the spellings
    ("GCB land sink", "nbp", "PgC yr-1", "GtC/yr", 1.0),
    ("GCB land sink", "nbp", "PgC yr-1", "kgC s-1", 1e12 / YEAR),
    ("monthly sums", "gpp", "gC m-2 month-1", "gC m-2 d-1", 12 / 365.25),
    ("mol fluxes", "nee", "mol m-2 s-1", "gC m-2 d-1", C * DAY),
    ("slashes", "gpp", "gC/m^2/day", "gC m-2 d-1", 1.0),
    ("spaced carbon", "gpp", "g C m-2 day-1", "gC/m2/d", 1.0),
    ("model gpp", "gpp", "kgC m-2 s-1", "kg m-2 s-1", 1.0),
    # masses of CO2 (inventories, chamber fluxes): carbon is 12.011 / 44.0095 of them
    ("CO2 mass flux", "nee", "gCO2 m-2 d-1", "gC m-2 d-1", C / 44.0095),
    ("CO2 mass flux, spaced", "nee", "g CO2 m-2 d-1", "gC m-2 d-1", C / 44.0095),
    ("CO2 chamber flux", "reco", "mg CO2 m-2 h-1", "gC m-2 d-1", 1e-3 * 24 * C / 44.0095),
    ("CO2 inventory", "nee", "t CO2 ha-1 yr-1", "gC m-2 yr-1", 1e6 / 1e4 * C / 44.0095),
    ("CO2 per second", "gpp", "kgCO2 m-2 s-1", "kgC m-2 s-1", C / 44.0095),
    # a count of a time unit: per half hour, per 8 days (not 30 per minute, 8 per day)
    ("half-hourly sums", "nee", "gC m-2 30min-1", "gC m-2 d-1", 48.0),
    ("half-hourly sums, count first", "nee", "30min-1 gC m-2", "gC m-2 d-1", 48.0),
    ("UDUNITS scale factor", "gpp", "100 gC m-2 s-1", "gC m-2 s-1", 100.0),
    ("UDUNITS scale factor, per", "gpp", "gC m-2 100 s-1", "gC m-2 s-1", 100.0),
    ("Python exponents", "gpp", "kg m**-2 s-1", "kg m-2 s-1", 1.0),
    ("half-hourly sums, UDUNITS", "nee", "gC m-2 (30 min)-1", "gC m-2 d-1", 48.0),
    ("MODIS 8-day sums", "gpp", "kgC m-2 8day-1", "gC m-2 d-1", 1e3 / 8),
]


@pytest.mark.parametrize(("source", "variable", "unit", "model_unit", "factor"), TABLE,
                         ids=[f"{r[0]}:{r[2]}->{r[3]}" for r in TABLE])
def test_file_units_convert_to_the_models(source, variable, unit, model_unit, factor):
    assert conversion_factor(unit, model_unit, variable) == pytest.approx(factor, rel=1e-12)
    back = conversion_factor(model_unit, unit, variable)
    assert back * factor == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize(("variable", "unit", "model_unit"), [
    ("gpp", "W m-2", "gC m-2 d-1"),            # energy for carbon
    ("et", "kg m-2 s-1", "gC m-2 d-1"),        # evapotranspiration is water, not carbon
    ("hfls", "kg m-2 s-1", "gC m-2 d-1"),
    ("hfss", "kg m-2 s-1", "W m-2"),            # sensible heat has no latent-heat conversion
    ("nbp", "PgC yr-1", "gC m-2 yr-1"),         # a global total is not per area
    ("mrso", "m3 m-3", "kg m-2"),               # volumetric: needs a depth
    ("lai", "1", "W m-2"),
    ("gpp", "mm day-1", "gC m-2 d-1"),
    ("nee", "gC m-2", "gC m-2 d-1"),             # a stock is not a flux
])
def test_different_quantities_are_named_errors(variable, unit, model_unit):
    with pytest.raises(UnitError, match=rf"cannot convert '{unit}' \(.*\) to '{model_unit}' \(.*\) "
                                        rf"for variable '{variable}'"):
        conversion_factor(unit, model_unit, variable)


def test_without_a_variable_carbon_units_imply_carbon_and_water_is_not_guessed():
    assert conversion_factor("umol m-2 s-1", "gC m-2 d-1") == pytest.approx(C * 1e-6 * DAY)
    with pytest.raises(UnitError, match="cannot convert 'kg m-2 s-1'"):
        conversion_factor("kg m-2 s-1", "W m-2")  # ET to LE only for an ET / latent-heat variable
    with pytest.raises(UnitError, match="unknown unit 'bananas m-2'"):
        conversion_factor("bananas m-2", "W m-2")
    with pytest.raises(UnitError, match="unknown unit ''"):
        parse_units("")


def test_convert_arrays_and_scaled_units():
    out = convert([1.0, 2.0], "gC m-2 d-1", "kg m-2 s-1", "gpp")
    np.testing.assert_allclose(out, [1e-3 / DAY, 2e-3 / DAY])
    assert conversion_factor("1e-3 kg m-2", "kg m-2", "cveg") == pytest.approx(1e-3)
    assert conversion_factor("%", "1", "lai") == pytest.approx(0.01)


@pytest.mark.parametrize("unit", ["degC", "deg C", "degrees C", "deg. C", "degree_Celsius", "°C"])
def test_temperatures_written_apart_are_celsius(unit):
    """Written apart, a temperature is Celsius (not coulombs); to kelvin it has no factor (an
    offset): refused by name, not scaled by 274.15 as a factor would."""
    assert convert(np.array([0.0, 25.0]), unit, "degC") == pytest.approx([0.0, 25.0])
    with pytest.raises(UnitError, match=r"to 'K': the scales differ by an offset \(0 .* = 273.15 K\)"):
        convert(np.array([25.0]), unit, "K")
    assert convert(np.array([2.0]), "delta_degC", "K") == pytest.approx([2.0])  # a difference: a factor



def test_the_registry_reads_the_units_bayescal_writes_as_pint_xarray_would():
    """pint-xarray's ``quantify(unit_registry=registry())`` hands the registry each ``units``
    attribute as it is written (no bayescal parsing first) and needs ndarray-like quantities:
    the CF spellings, carbon, nitrogen and photons parse, to the right quantities."""
    from bayescal.readers.units import registry

    ureg = registry()
    assert ureg.force_ndarray_like
    q = ureg.Quantity(np.array([1.0, 2.0]), "gC m-2 d-1")
    np.testing.assert_allclose(q.to("kgC m-2 yr-1").magnitude, np.array([1.0, 2.0]) * 365.25e-3)
    assert ureg.Quantity(1.0, "PgC yr-1").to("gC yr-1").magnitude == pytest.approx(1e15)
    assert str(ureg.Quantity(1.0, "gC gN-1 d-1").dimensionality) == "[carbon] / [nitrogen] / [time]"
    assert ureg.Quantity(0.08, "mol CO2 mol-1 photon").to("1").magnitude == pytest.approx(0.08)
    assert ureg.Quantity(3.0, "m2 m-2").dimensionless and ureg.Quantity(1.0, "umol CO2 m-2 s-1").check(
        "[substance] / [length] ** 2 / [time]")


def test_calendar_months_and_years_totals_divide_by_their_own_days(tmp_path):
    """A monthly product of calendar months' totals in ``gC m-2 month-1`` (a CSV of period
    "month", a monthly netCDF in any CF calendar) is each month's flux per day times its days:
    read per day it is that flux, in February as in July (pint's month alone is 30.44 days: a
    28-day February would read 8 % low); a year's total per year likewise (365 or 366 days)."""
    import cftime
    import pandas as pd
    import xarray as xr

    from bayescal.readers import read_csv_product, read_netcdf_product
    from bayescal.readers.units import calendar_factor, per_period

    assert per_period("gC m-2 month-1") == per_period("mm mon-1") == "month"
    assert per_period("kg m-2 yr-1") == "year" and per_period("gC m-2 d-1") is None
    np.testing.assert_allclose(calendar_factor("gC m-2 d-1", [28, 31]), [1.0, 1.0])
    rate = np.array([2.0, 3.0, 1.5, 0.5] * 6)  # flux per day in each month
    stamp = pd.date_range("2004-01-01", periods=24, freq="MS") + pd.Timedelta(days=14)  # 2004: leap
    total = rate * stamp.days_in_month
    pd.DataFrame({"time": stamp.strftime("%Y-%m-%d"), "value": total, "sigma": 0.1 * total}).to_csv(
        tmp_path / "m.csv", index=False)
    p = read_csv_product(tmp_path / "m.csv", "gpp", units="gC m-2 month-1", to_units="gC m-2 d-1",
                         period="month")
    np.testing.assert_allclose(p.data.values, rate, rtol=1e-12)
    np.testing.assert_allclose(p.sigma.values, 0.1 * rate, rtol=1e-12)
    years = pd.DatetimeIndex(["2004-07-01", "2005-07-01"])  # 366 and 365 days
    pd.DataFrame({"time": years.strftime("%Y-%m-%d"), "value": [366.0, 365.0 * 2], "sigma": 36.6}).to_csv(
        tmp_path / "y.csv", index=False)
    p = read_csv_product(tmp_path / "y.csv", "gpp", units="gC m-2 yr-1", to_units="gC m-2 d-1", period="year")
    np.testing.assert_allclose(p.data.values, [1.0, 2.0], rtol=1e-12)
    # a daily product's rate per month stays pint's: it is no month's total
    with pytest.warns(UserWarning, match="31 days apart"):
        p = read_csv_product(tmp_path / "m.csv", "gpp", units="gC m-2 month-1", to_units="gC m-2 d-1")
    np.testing.assert_allclose(p.data.values, total / (365.25 / 12), rtol=1e-12)

    cells = xr.Dataset({"lat": ("cell", [10.0]), "lon": ("cell", [20.0])}, coords={"cell": [0]})
    months = pd.date_range("2004-01-01", periods=3, freq="MS")
    for calendar, feb in (("standard", 29), ("noleap", 28), ("360_day", 30)):
        t = [cftime.datetime(2004, m, 15, calendar=calendar) for m in (1, 2, 3)]
        days = np.array([31 if calendar != "360_day" else 30, feb, 31 if calendar != "360_day" else 30])
        v = (np.array([2.0, 3.0, 1.5]) * days)[:, None, None] * np.ones((3, 1, 1))
        ds = xr.Dataset({"gpp": (("time", "lat", "lon"), v, {"units": "gC m-2 month-1"})},
                        coords={"time": t, "lat": [10.0], "lon": [20.0]})
        f = tmp_path / f"{calendar}.nc"
        ds.to_netcdf(f, encoding={"time": {"units": "days since 2004-01-01", "calendar": calendar}})
        p = read_netcdf_product(f, "gpp", cells=cells, months=months, units="gC m-2 d-1", relative_sigma=0.1)
        np.testing.assert_allclose(p.data.values[0], [2.0, 3.0, 1.5], rtol=1e-6, err_msg=calendar)
        np.testing.assert_allclose(p.sigma.values[0], [0.2, 0.3, 0.15], rtol=1e-6, err_msg=calendar)
