"""Observed monthly climate indices behind the embedded model's interannual climate.

Three records drive the year-to-year climate of :func:`bayescal.models.drivers.make_drivers`:

- the global land+ocean temperature anomaly (GISTEMP v4), turned into a land anomaly with the
  factor :data:`LAND_PER_GLOBAL` (fitted once against Berkeley Earth's land record, which is
  not shipped: its terms are non-commercial);
- the Niño-3.4 sea-surface temperature anomaly (HadISST; the ONI after the HadISST file ends);
- the stratospheric aerosol optical depth at 550 nm (GISS; Pinatubo, El Chichón, Agung).

The files, their providers, licences and citations are in ``bayescal/data/climate/README.md``.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import pandas as pd
import xarray as xr

__all__ = ["load_climate_indices", "LAND_PER_GLOBAL", "BASELINE_YEARS"]

#: Annual land-surface anomaly per unit global land+ocean anomaly: Berkeley Earth land on
#: GISTEMP v4, least squares over 1901-2023 (slope 1.315, r = 0.98; data README).
LAND_PER_GLOBAL = 1.315
#: Years whose mean GISTEMP anomaly counts as the pre-industrial climate (the model's spin-up).
BASELINE_YEARS = (1880, 1900)
#: Background stratospheric aerosol optical depth after the GISS record ends (its 2000-2012 mean).
_SAOD_BACKGROUND_YEARS = (2000, 2012)


def _csv(name: str) -> pd.DataFrame:
    with resources.files("bayescal").joinpath(f"data/climate/{name}").open() as fh:
        return pd.read_csv(fh)


def _monthly(df: pd.DataFrame, column: str) -> pd.Series:
    df = df.dropna(subset=[column])
    index = pd.PeriodIndex.from_fields(year=df["year"], month=df["month"], freq="M")
    return pd.Series(df[column].to_numpy(float), index=index)


@cache
def _records() -> dict[str, pd.Series]:
    temp = _csv("global_landocean_monthly.csv")
    return {
        "gistemp": _monthly(temp, "gistemp_v4_anom_1951_1980_degC"),
        "nino34": _monthly(_csv("nino34_hadisst_psl_monthly.csv"), "nino34_anom_degC"),
        "oni": _monthly(_csv("oni_cpc_ersstv5_monthly.csv"), "oni_anom_degC"),
        "saod": _monthly(_csv("saod550_giss_monthly.csv"), "saod550_global"),
    }


def load_climate_indices(start: int = 1850, end: int = 2023) -> xr.Dataset:
    """Monthly climate indices for ``start .. end``, gaps filled as documented.

    Parameters
    ----------
    start, end : int
        First and last year (1850 to 2024).

    Returns
    -------
    xarray.Dataset
        On ``time`` (first of each month):

        - ``land_warming`` (K): land-surface temperature anomaly relative to
          :data:`BASELINE_YEARS`, ``LAND_PER_GLOBAL x (GISTEMP - its baseline mean)``; zero
          before 1880.
        - ``nino34`` (K): Niño-3.4 anomaly, HadISST (1870-01 to 2023-03), then CPC's ONI;
          zero before 1870.
        - ``saod`` (1): global stratospheric aerosol optical depth at 550 nm; after 2012-09 the
          2000-2012 mean background.

    Raises
    ------
    ValueError
        If the years are outside what the records can fill.
    """
    if not 1850 <= start <= end <= 2024:
        raise ValueError(f"load_climate_indices: need 1850 <= start ({start}) <= end ({end}) <= 2024")
    rec = _records()
    months = pd.period_range(f"{start}-01", f"{end}-12", freq="M")
    gis = rec["gistemp"]
    base = gis[(gis.index.year >= BASELINE_YEARS[0]) & (gis.index.year <= BASELINE_YEARS[1])].mean()
    if months[-1] > gis.index[-1]:
        raise ValueError(f"load_climate_indices: GISTEMP ends {gis.index[-1]}; end={end} is later")
    warming = LAND_PER_GLOBAL * (gis.reindex(months) - base).fillna(0.0)
    nino = rec["nino34"].reindex(months).fillna(rec["oni"].reindex(months))
    if nino[months > rec["nino34"].index[0]].isna().any():
        raise ValueError(f"load_climate_indices: no Niño-3.4 value for {nino.index[nino.isna()][-1]}")
    nino = nino.fillna(0.0)  # before 1870: neutral
    saod = rec["saod"]
    background = saod[(saod.index.year >= _SAOD_BACKGROUND_YEARS[0])
                      & (saod.index.year <= _SAOD_BACKGROUND_YEARS[1])].mean()
    saod = saod.reindex(months).fillna(background)
    return xr.Dataset(
        {
            "land_warming": ("time", warming.to_numpy(), {
                "units": "K", "long_name": "land-surface temperature anomaly vs 1880-1900",
                "source": "GISTEMP v4 x LAND_PER_GLOBAL"}),
            "nino34": ("time", nino.to_numpy(), {
                "units": "K", "long_name": "Nino-3.4 SST anomaly", "source": "HadISST; ONI after 2023-03"}),
            "saod": ("time", saod.to_numpy(), {
                "units": "1", "long_name": "stratospheric aerosol optical depth at 550 nm",
                "source": "NASA GISS (Sato et al. 1993); background after 2012-09"}),
        },
        coords={"time": months.to_timestamp()},
        attrs={"citation": "see bayescal/data/climate/README.md"},
    )
