"""Global Carbon Budget 2024: the packaged tables as xarray, with their 1-sigma uncertainties.

Data: Friedlingstein, P. et al. (2025) Global Carbon Budget 2024, Earth Syst. Sci. Data 17,
965-1039, doi:10.5194/essd-17-965-2025 (CC BY 4.0); data set doi:10.18160/gcp-2024. The CSV files
in ``bayescal/data/gcb2024`` are verbatim copies of the openclimatedata/global-carbon-budget
conversions of the GCB 2024 workbook (see the README beside them).

Uncertainty conventions (1 sigma, as stated in the workbook header unless noted):

* fossil emissions: 5 % of the value;
* land-use change emissions: 0.7 GtC/yr;
* atmospheric growth: 0.2 GtC/yr from 1980. The workbook gives no figure before 1980; the GCB
  papers report a mean uncertainty of 0.61 GtC/yr for 1959-1979, the default here
  (``sigma_atm_pre1980``, configurable);
* ocean sink: 0.4 GtC/yr; land sink: 0.5 GtC/yr; no sigma for the cement sink or the imbalance.

Net biome productivity follows Seiler's Appendix 6.1 (Eqs. 16-17)::

    NBP = E_FOS - G_ATM - S_OCEAN - S_CEMENT
    sigma_NBP = (sigma_EFOS**2 + sigma_GATM**2 + sigma_SOCEAN**2) ** 0.5

which by the budget identity equals ``S_LAND - E_LUC + B_IM``.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["load_gcb2024", "load_gcb2024_land_models", "co2_from_growth", "compare_land_sink", "GTC_PER_PPM"]

#: Mass of carbon per ppm of atmospheric CO2 (GCB convention), GtC/ppm.
GTC_PER_PPM = 2.124

#: Annual-mean atmospheric CO2 in 1959 at Mauna Loa (NOAA/Scripps), ppm: the anchor from which the
#: GCB growth series rebuilds the concentration.
CO2_1959 = 315.98

_CITATION = (
    "Friedlingstein, P. et al. (2025) Global Carbon Budget 2024, Earth Syst. Sci. Data 17, "
    "965-1039, doi:10.5194/essd-17-965-2025 (CC BY 4.0); data doi:10.18160/gcp-2024"
)

_COLUMNS = {
    "fossil emissions excluding carbonation": "fossil",
    "land-use change emissions": "luc",
    "atmospheric growth": "atm_growth",
    "ocean sink": "ocean",
    "land sink": "land",
    "cement carbonation sink": "cement",
    "budget imbalance": "imbalance",
}

_LONG_NAMES = {
    "fossil": "fossil CO2 emissions excluding cement carbonation (E_FOS)",
    "luc": "land-use change emissions (E_LUC)",
    "atm_growth": "atmospheric CO2 growth (G_ATM)",
    "ocean": "ocean sink (S_OCEAN)",
    "land": "land sink (S_LAND)",
    "cement": "cement carbonation sink (S_CEMENT)",
    "imbalance": "budget imbalance (B_IM)",
}


def _read_csv(name: str) -> pd.DataFrame:
    path = resources.files("bayescal") / "data" / "gcb2024" / name
    with path.open() as fh:
        return pd.read_csv(fh, comment="#")


def load_gcb2024(
    sigma_atm_pre1980: float = 0.61,
    sigma_atm: float = 0.2,
    fossil_relative_sigma: float = 0.05,
    sigma_luc: float = 0.7,
    sigma_ocean: float = 0.4,
    sigma_land: float = 0.5,
) -> xr.Dataset:
    """The GCB 2024 global budget, 1959-2023, with 1-sigma uncertainties and NBP.

    Parameters
    ----------
    sigma_atm_pre1980 : float, default 0.61
        1-sigma of atmospheric growth before 1980, GtC/yr (not given in the workbook).
    sigma_atm : float, default 0.2
        1-sigma of atmospheric growth from 1980, GtC/yr.
    fossil_relative_sigma : float, default 0.05
        1-sigma of fossil emissions as a fraction of the value.
    sigma_luc, sigma_ocean, sigma_land : float
        1-sigma of land-use change emissions, ocean sink and land sink, GtC/yr.

    Returns
    -------
    xarray.Dataset
        Dimension ``year``; variables ``fossil``, ``luc``, ``atm_growth``, ``ocean``, ``land``,
        ``cement``, ``imbalance`` and ``sigma_<term>`` for the terms that have one; ``nbp`` and
        ``nbp_sigma`` (Seiler Eqs. 16-17); ``co2`` (annual mean, ppm, rebuilt from the growth
        series). Units ``PgC yr-1`` (1 GtC = 1 PgC).
    """
    for name, value in {
        "sigma_atm_pre1980": sigma_atm_pre1980,
        "sigma_atm": sigma_atm,
        "fossil_relative_sigma": fossil_relative_sigma,
        "sigma_luc": sigma_luc,
        "sigma_ocean": sigma_ocean,
        "sigma_land": sigma_land,
    }.items():
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"load_gcb2024: {name} must be a finite value >= 0, got {value}")
    df = _read_csv("global-carbon-budget-2024-global-carbon-budget.csv")
    missing = sorted((set(_COLUMNS) | {"Year"}) - set(df.columns))
    if missing:
        raise ValueError(f"GCB 2024 budget table: missing columns {missing}")
    year = df["Year"].to_numpy(int)
    ds = xr.Dataset(coords={"year": ("year", year, {"long_name": "calendar year"})})
    for col, var in _COLUMNS.items():
        ds[var] = ("year", df[col].to_numpy(float), {"units": "PgC yr-1", "long_name": _LONG_NAMES[var]})
    ds["sigma_fossil"] = np.abs(ds["fossil"]) * fossil_relative_sigma
    ds["sigma_luc"] = xr.full_like(ds["luc"], sigma_luc)
    ds["sigma_atm_growth"] = ("year", np.where(year < 1980, sigma_atm_pre1980, sigma_atm))
    ds["sigma_ocean"] = xr.full_like(ds["ocean"], sigma_ocean)
    ds["sigma_land"] = xr.full_like(ds["land"], sigma_land)
    for var in ("fossil", "luc", "atm_growth", "ocean", "land"):
        ds[f"sigma_{var}"].attrs = {"units": "PgC yr-1", "long_name": f"1-sigma of {var}"}
    ds["nbp"] = ds["fossil"] - ds["atm_growth"] - ds["ocean"] - ds["cement"]
    ds["nbp"].attrs = {
        "units": "PgC yr-1",
        "long_name": "net biome productivity E_FOS - G_ATM - S_OCEAN - S_CEMENT (Seiler Eq. 16)",
    }
    ds["nbp_sigma"] = np.sqrt(
        ds["sigma_fossil"] ** 2 + ds["sigma_atm_growth"] ** 2 + ds["sigma_ocean"] ** 2
    )
    ds["nbp_sigma"].attrs = {"units": "PgC yr-1", "long_name": "1-sigma of NBP (Seiler Eq. 17)"}
    ds["co2"] = ("year", co2_from_growth(ds["atm_growth"].to_numpy()), {
        "units": "ppm",
        "long_name": "annual-mean atmospheric CO2 rebuilt from the growth series",
    })
    ds.attrs = {
        "title": "Global Carbon Budget 2024, global annual values",
        "source": "bayescal/data/gcb2024/global-carbon-budget-2024-global-carbon-budget.csv",
        "citation": _CITATION,
        "sigma_atm_pre1980": sigma_atm_pre1980,
        "sigma_atm": sigma_atm,
    }
    return ds


def co2_from_growth(growth_gtc: np.ndarray, co2_first_year: float = CO2_1959) -> np.ndarray:
    """Annual-mean CO2 (ppm) from annual atmospheric growth (GtC/yr), 1 ppm = 2.124 GtC.

    The concentration at the middle of the first year is ``co2_first_year``; each year adds half of
    its own growth and half of the next year's between successive mid-year values.
    """
    g = np.asarray(growth_gtc, dtype=float) / GTC_PER_PPM
    start = co2_first_year - 0.5 * g[0]
    year_start = start + np.concatenate([[0.0], np.cumsum(g)[:-1]])
    return year_start + 0.5 * g


def load_gcb2024_land_models() -> xr.Dataset:
    """The GCB 2024 land sink simulated by each of the 20 DGVMs (S2), with mean and spread.

    Returns
    -------
    xarray.Dataset
        ``sink`` (year, model) in PgC/yr, ``mean`` and ``sd`` (year) as published (multi-model
        mean and sample standard deviation).
    """
    df = _read_csv("global-carbon-budget-2024-terrestrial-sink-individual-models.csv")
    year = df["Year"].to_numpy(int)
    models = [c for c in df.columns if c not in ("Year", "Multi-model mean", "Model Spread (sd)")]
    ds = xr.Dataset(
        {
            "sink": (("year", "model"), df[models].to_numpy(float), {"units": "PgC yr-1"}),
            "mean": ("year", df["Multi-model mean"].to_numpy(float), {"units": "PgC yr-1"}),
            "sd": ("year", df["Model Spread (sd)"].to_numpy(float), {"units": "PgC yr-1"}),
        },
        coords={"year": year, "model": models},
        attrs={"title": "GCB 2024 land sink of individual DGVMs (S2)", "citation": _CITATION},
    )
    return ds


def compare_land_sink(nbp: xr.DataArray, fluc: xr.DataArray) -> dict[str, tuple[float, float]]:
    """A model's global land carbon fluxes against GCB 2024, as in the embedded model's docs.

    Parameters
    ----------
    nbp, fluc : xarray.DataArray
        The model's global annual NBP and land-use emissions (PgC/yr) on ``year`` covering
        1959-2022. The model's land sink is ``nbp + fluc`` (GCB's S_LAND counterpart).

    Returns
    -------
    dict
        ``name: (model, gcb)`` for: ``nbp_mean_1990_2022`` (GCB: Seiler's Eq. 16 NBP),
        ``sink_iav_sd`` (sd of the linearly detrended annual land sink, 1980-2022),
        ``sink_r`` and ``nbp_r`` (Pearson r of the detrended annual series with GCB's S_LAND and
        NBP, 1980-2022; the GCB entry is 1), ``sink_trend`` (PgC/yr per decade, 1980-2022) and
        ``in_dgvm_range`` (share of 1959-2022 years with the sink inside the 20 DGVMs' mean ± 2
        sd; the GCB entry is the share of GCB's S_LAND inside it).
    """
    gcb = load_gcb2024()
    dgvm = load_gcb2024_land_models()
    sink = nbp + fluc

    def _detrended(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, float]:
        slope, intercept = np.polyfit(x, y, 1)
        return y - (intercept + slope * x), float(slope)

    recent = slice(1990, 2022)
    years = np.arange(1980, 2023)
    m_sink, m_trend = _detrended(sink.sel(year=years).to_numpy(), years)
    g_sink, g_trend = _detrended(gcb["land"].sel(year=years).to_numpy(), years)
    m_nbp, _ = _detrended(nbp.sel(year=years).to_numpy(), years)
    g_nbp, _ = _detrended(gcb["nbp"].sel(year=years).to_numpy(), years)
    every = np.arange(1959, 2023)
    lo = (dgvm["mean"] - 2 * dgvm["sd"]).sel(year=every).to_numpy()
    hi = (dgvm["mean"] + 2 * dgvm["sd"]).sel(year=every).to_numpy()

    def _inside(s: np.ndarray) -> float:
        return float(np.mean((s >= lo) & (s <= hi)))

    return {
        "nbp_mean_1990_2022": (float(nbp.sel(year=recent).mean()),
                               float(gcb["nbp"].sel(year=recent).mean())),
        "sink_iav_sd": (float(m_sink.std(ddof=1)), float(g_sink.std(ddof=1))),
        "sink_r": (float(np.corrcoef(m_sink, g_sink)[0, 1]), 1.0),
        "nbp_r": (float(np.corrcoef(m_nbp, g_nbp)[0, 1]), 1.0),
        "sink_trend": (10 * m_trend, 10 * g_trend),
        "in_dgvm_range": (_inside(sink.sel(year=every).to_numpy()),
                          _inside(gcb["land"].sel(year=every).to_numpy())),
    }
