"""Grid and forcing of the embedded global land-carbon model.

The grid is a few hundred land cells drawn over nine biomes. Each biome has an area (their sum
is :data:`VEGETATED_LAND_AREA`), a latitude band, a seasonal climatology and fractions of the
nine CLASSIC plant functional types. Cells share their biome's area equally, so global totals
of ``flux x area`` come out in PgC/yr.

The forcing is monthly. Each cell has a seasonal climatology (temperature, a soil-moisture
index, surface shortwave radiation from top-of-atmosphere insolation times a transmissivity,
vapour-pressure deficit); years get reproducible interannual anomalies (an ENSO-like global AR(1)
mode that warms and dries the tropics, biome-level and cell-level AR(1) noise), and a
land-warming trend. Atmospheric CO2 is rebuilt from the GCB 2024 atmospheric growth series from
1959 on, and from a documented exponential ramp from the pre-industrial 285 ppm (1850) before;
land-use emissions are GCB 2024's E_LUC from 1959, ramped linearly from 0.5 PgC/yr in 1850. See
``docs/model.md`` for the equations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from scipy.signal import lfilter

from ..observations.gcb import load_gcb2024
from ..parameters import PFTS
from .climate import load_climate_indices

__all__ = ["BIOMES", "VEGETATED_LAND_AREA", "make_grid", "make_drivers", "Biome"]


@dataclass(frozen=True)
class Biome:
    """Climatology and vegetation of one biome (areas in 1e12 m2 = million km2)."""

    name: str
    area: float
    lat_bands: tuple[tuple[float, float], ...]
    tmean: float  # annual-mean air temperature at the band centre, degC
    tamp: float  # half the seasonal temperature range, K
    wmean: float  # annual-mean soil-moisture index, 0..1
    wamp: float  # seasonal amplitude of the moisture index
    wshift: float  # days between the temperature peak and the wet-season peak
    trans: float  # atmospheric transmissivity of shortwave radiation
    pft: dict[str, float]


BIOMES: tuple[Biome, ...] = (
    Biome("tropical forest", 15.0, ((-15, 0), (0, 10)), 26.0, 1.0, 0.85, 0.08, 0, 0.45,
          {"BDL-EVG": 0.88, "GRASS-C4": 0.05, "CROP-C4": 0.04, "CROP-C3": 0.03}),
    Biome("tropical savanna", 20.0, ((-25, -5), (5, 18)), 25.0, 3.0, 0.50, 0.30, 0, 0.60,
          {"BDL-DCD-DRY": 0.33, "GRASS-C4": 0.42, "CROP-C4": 0.10, "BDL-EVG": 0.10,
           "GRASS-C3": 0.05}),
    Biome("semi-arid shrubland", 13.0, ((-35, -18), (15, 40)), 19.0, 8.0, 0.28, 0.15, 0, 0.68,
          {"GRASS-C4": 0.30, "GRASS-C3": 0.35, "BDL-DCD-DRY": 0.20, "CROP-C3": 0.15}),
    Biome("temperate forest", 11.0, ((-45, -35), (35, 55)), 10.0, 11.0, 0.65, 0.12, 0, 0.50,
          {"BDL-DCD-CLD": 0.42, "NDL-EVG": 0.23, "CROP-C3": 0.20, "GRASS-C3": 0.15}),
    Biome("temperate grassland and cropland", 15.0, ((-40, -30), (30, 55)), 11.0, 13.0, 0.45,
          0.18, 0, 0.55,
          {"CROP-C3": 0.42, "CROP-C4": 0.13, "GRASS-C3": 0.38, "GRASS-C4": 0.07}),
    Biome("boreal forest", 16.0, ((50, 68),), -2.0, 18.0, 0.62, 0.10, 0, 0.45,
          {"NDL-EVG": 0.60, "NDL-DCD": 0.18, "BDL-DCD-CLD": 0.12, "GRASS-C3": 0.10}),
    Biome("tundra", 8.0, ((62, 75),), -9.0, 16.0, 0.60, 0.10, 0, 0.42,
          {"GRASS-C3": 0.80, "NDL-DCD": 0.10, "BDL-DCD-CLD": 0.10}),
    Biome("mediterranean", 5.0, ((-38, -30), (30, 44)), 15.0, 8.0, 0.45, 0.28, 182.5, 0.62,
          {"NDL-EVG": 0.30, "BDL-EVG": 0.20, "GRASS-C3": 0.30, "CROP-C3": 0.20}),
    Biome("monsoon cropland", 7.0, ((5, 32),), 24.0, 5.0, 0.58, 0.30, 0, 0.52,
          {"CROP-C3": 0.50, "CROP-C4": 0.20, "GRASS-C4": 0.10, "BDL-EVG": 0.20}),
)

#: Vegetated land area represented by the grid, m2 (ice-free land less barren deserts).
VEGETATED_LAND_AREA = sum(b.area for b in BIOMES) * 1e12

# days of year at which NH temperature peaks (about 19 July)
_T_PEAK_NH = 200.0
_PREINDUSTRIAL_CO2 = 285.0
PREINDUSTRIAL_YEAR = 1850
_LUC_1850 = 0.5
#: Months by which the Niño-3.4 anomaly leads the land's response (the land sink lags ENSO by a
#: season: detrended GCB 2024 S_LAND correlates at r = -0.69 with Niño-3.4 three months earlier).
ENSO_LAG_MONTHS = 3
#: Tropical land warming (K) and soil-moisture-index change per K of Niño-3.4.
ENSO_T, ENSO_W = 0.25, 0.01
#: e-folding memory (months) of the land's response to ENSO: soils integrate the rainfall deficits
#: of the preceding months, and the tropical troposphere warms over a season after Niño-3.4.
ENSO_MEMORY_MONTHS = 6.0
#: Surface shortwave lost, and light-use gain from diffuse light, per unit stratospheric AOD.
AEROSOL_DIMMING, DIFFUSE_GAIN = 0.2, 1.0


def make_grid(n_cells: int = 300, seed: int = 0) -> xr.Dataset:
    """The embedded model's land grid.

    Parameters
    ----------
    n_cells : int, default 300
        Number of cells, shared between biomes by area (each biome gets at least two).
    seed : int, default 0
        Seed of the within-biome scatter of latitude, longitude and climate.

    Returns
    -------
    xarray.Dataset
        Dimension ``cell`` (and ``pft``): ``lat``, ``lon``, ``area`` (m2), ``biome``,
        ``pft_frac`` (cell, pft; rows sum to 1) and the climatology parameters of each cell.
    """
    n_b = len(BIOMES)
    if n_cells < 2 * n_b:
        raise ValueError(f"make_grid: n_cells must be at least {2 * n_b}, got {n_cells}")
    rng = np.random.default_rng(seed)
    areas = np.array([b.area for b in BIOMES])
    raw = areas / areas.sum() * (n_cells - 2 * n_b)
    counts = np.floor(raw).astype(int) + 2
    order = np.argsort(-(raw - np.floor(raw)))
    counts[order[: n_cells - counts.sum()]] += 1
    rows = []
    for b, n in zip(BIOMES, counts, strict=True):
        bands = np.array(b.lat_bands, dtype=float)
        widths = bands[:, 1] - bands[:, 0]
        band = np.minimum(
            np.searchsorted(np.cumsum(widths) / widths.sum(), (np.arange(n) + 0.5) / n), len(bands) - 1
        )
        # stratified latitudes within the band, jittered
        pos = (np.arange(n) + rng.uniform(0.1, 0.9, n)) / n
        cum = np.concatenate([[0], np.cumsum(widths)])
        lat = bands[band, 0] + (pos * widths.sum() - cum[band])
        lat = np.clip(lat, bands[band, 0], bands[band, 1])
        centre = bands[band].mean(axis=1)
        frac = np.array([b.pft.get(p, 0.0) for p in PFTS])
        frac = frac / frac.sum()
        for i in range(n):
            jitter = rng.dirichlet(frac * 60 + 1e-9) if frac.max() < 1 else frac
            f = np.where(frac > 0, 0.5 * frac + 0.5 * jitter, 0.0)
            rows.append(
                dict(
                    lat=lat[i],
                    lon=rng.uniform(-180, 180),
                    area=b.area * 1e12 / n,
                    biome=b.name,
                    # cooler towards the poles within a band, plus cell scatter
                    tmean=b.tmean - 0.45 * (abs(lat[i]) - abs(centre[i])) + rng.normal(0, 1.0),
                    tamp=max(b.tamp * (1 + rng.normal(0, 0.1)), 0.3),
                    wmean=float(np.clip(b.wmean + rng.normal(0, 0.05), 0.08, 0.95)),
                    wamp=b.wamp,
                    wshift=b.wshift,
                    trans=float(np.clip(b.trans + rng.normal(0, 0.03), 0.3, 0.75)),
                    pft_frac=f / f.sum(),
                )
            )
    df = pd.DataFrame(rows)
    ds = xr.Dataset(
        {
            "lat": ("cell", df["lat"].to_numpy(), {"units": "degrees_north"}),
            "lon": ("cell", df["lon"].to_numpy(), {"units": "degrees_east"}),
            "area": ("cell", df["area"].to_numpy(), {"units": "m2", "long_name": "vegetated area"}),
            "biome": ("cell", df["biome"].to_numpy(dtype=str)),
            "pft_frac": (("cell", "pft"), np.stack(df["pft_frac"].to_numpy()), {"units": "1"}),
            "tmean": ("cell", df["tmean"].to_numpy(), {"units": "degC"}),
            "tamp": ("cell", df["tamp"].to_numpy(), {"units": "K"}),
            "wmean": ("cell", df["wmean"].to_numpy(), {"units": "1"}),
            "wamp": ("cell", df["wamp"].to_numpy(), {"units": "1"}),
            "wshift": ("cell", df["wshift"].to_numpy(), {"units": "day"}),
            "trans": ("cell", df["trans"].to_numpy(), {"units": "1"}),
        },
        coords={"cell": np.arange(n_cells), "pft": list(PFTS)},
        attrs={"title": "bayescal embedded land-carbon model grid", "seed": seed},
    )
    return ds


def _insolation(lat_deg: np.ndarray, doy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Daily-mean top-of-atmosphere shortwave (W m-2) and daylight fraction, (cell, doy)."""
    phi = np.deg2rad(lat_deg)[:, None]
    g = 2 * np.pi * np.asarray(doy, dtype=float)[None, :] / 365.0
    decl = 0.409 * np.sin(g - 1.39)
    h0 = np.arccos(np.clip(-np.tan(phi) * np.tan(decl), -1.0, 1.0))
    q = (1361.0 / np.pi) * (1 + 0.033 * np.cos(g)) * (
        h0 * np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.sin(h0)
    )
    return np.maximum(q, 0.0), h0 / np.pi


def _es(t: np.ndarray) -> np.ndarray:
    """Saturation vapour pressure, kPa (Tetens)."""
    return 0.6108 * np.exp(17.27 * t / (t + 237.3))


def make_drivers(
    grid: xr.Dataset,
    start: int = 1959,
    end: int = 2023,
    ramp_start: int = 1901,
    seed: int = 0,
) -> xr.Dataset:
    """Monthly forcing of the embedded model.

    Parameters
    ----------
    grid : xarray.Dataset
        From :func:`make_grid`.
    start, end : int
        First and last year of the transient period written to the model output (GCB 2024 covers
        1959-2023).
    ramp_start : int, default 1901
        First year of the ramp from the pre-industrial state; years ``ramp_start .. start - 1``
        are simulated but not written. The pre-industrial state is an equilibrium under the
        climatology with the CO2 of ``ramp_start`` from the pre-industrial ramp.
    seed : int, default 0
        Seed of the interannual anomalies.

    Returns
    -------
    xarray.Dataset
        ``tas`` (degC), ``wsoil`` (1), ``rsds`` (W m-2), ``dayfrac`` (1), ``daytrend`` (change
        of ``dayfrac`` over a month), ``vpd`` (kPa) on
        (cell, time) for every month of ``ramp_start .. end``; the same variables with a
        ``_clim`` suffix on (cell, month) for the spin-up climatology; ``co2`` (ppm) and
        ``luc_rate`` (fraction of tree biomass cleared per year) on time; ``days`` per month.
    """
    if not (PREINDUSTRIAL_YEAR <= ramp_start <= start <= end):
        raise ValueError(
            f"make_drivers: need {PREINDUSTRIAL_YEAR} <= ramp_start ({ramp_start}) <= start "
            f"({start}) <= end ({end})"
        )
    gcb = load_gcb2024()
    if start < int(gcb.year[0]) or end > int(gcb.year[-1]):
        # before 1959 the ramp supplies CO2 and land use; after 2023 there is no GCB data
        if end > int(gcb.year[-1]):
            raise ValueError(f"make_drivers: end={end} is after the last GCB 2024 year 2023")
    rng = np.random.default_rng(seed)
    time = pd.date_range(f"{ramp_start}-01-01", f"{end}-12-01", freq="MS")
    days = time.days_in_month.to_numpy().astype(float)
    doy_mid = (time.day_of_year.to_numpy() + days / 2 - 0.5).astype(float)

    # ---- seasonal climatology on (cell, month)
    clim_doy = np.array([15.5 + 30.42 * m for m in range(12)])

    clim = _seasonal(grid, clim_doy)
    clim_out = _finish(grid, clim["tas"], clim["wsoil"], clim["toa"])
    clim_out["dayfrac"] = clim["dayfrac"]
    clim_out["daytrend"] = clim["daytrend"]
    clim_out["par_gain"] = np.ones_like(clim["dayfrac"])

    # ---- transient: climatology + observed anomalies and warming + cell weather
    sea = _seasonal(grid, doy_mid)
    t_anom, w_anom, dimming, par_gain = _anomalies(rng, grid, time)
    tr = _finish(grid, sea["tas"] + t_anom, sea["wsoil"] + w_anom, sea["toa"] * dimming[None, :])

    # ---- CO2 and land-use change
    co2, co2_pre, luc = _co2_and_luc(gcb, time, ramp_start)
    ds = xr.Dataset(
        {
            "tas": (("cell", "time"), tr["tas"], {"units": "degC"}),
            "wsoil": (("cell", "time"), tr["wsoil"], {"units": "1", "long_name": "soil-moisture index"}),
            "rsds": (("cell", "time"), tr["rsds"], {"units": "W m-2"}),
            "dayfrac": (("cell", "time"), sea["dayfrac"], {"units": "1"}),
            "daytrend": (("cell", "time"), sea["daytrend"],
                         {"units": "month-1", "long_name": "change of dayfrac over a month"}),
            "vpd": (("cell", "time"), tr["vpd"], {"units": "kPa"}),
            "par_gain": (("cell", "time"), np.broadcast_to(par_gain, tr["tas"].shape).copy(), {
                "units": "1", "long_name": "light-use gain from diffuse light (volcanic aerosol)"}),
            "co2": ("time", co2, {"units": "ppm"}),
            "luc_emission": ("time", luc, {"units": "PgC yr-1"}),
            "days": ("time", days, {"units": "day"}),
            **{
                f"{k}_clim": (("cell", "month"), v, {})
                for k, v in clim_out.items()
            },
        },
        coords={"cell": grid["cell"].to_numpy(), "time": time, "month": np.arange(1, 13)},
        attrs={
            "start": start,
            "end": end,
            "ramp_start": ramp_start,
            "co2_preindustrial": float(co2_pre),
            "seed": seed,
        },
    )
    return ds


def _seasonal(grid: xr.Dataset, doy: np.ndarray) -> dict[str, np.ndarray]:
    """Seasonal cycle on (cell, day of year): temperature, soil moisture, insolation, day length."""
    lat = grid["lat"].to_numpy()
    peak = np.where(lat >= 0, _T_PEAK_NH, _T_PEAK_NH - 182.5)[:, None]
    phase = 2 * np.pi * (doy[None, :] - peak) / 365.0
    tas = grid["tmean"].to_numpy()[:, None] + grid["tamp"].to_numpy()[:, None] * np.cos(phase)
    wphase = phase - 2 * np.pi * grid["wshift"].to_numpy()[:, None] / 365.0
    w = grid["wmean"].to_numpy()[:, None] + grid["wamp"].to_numpy()[:, None] * np.cos(wphase)
    toa, dayfrac = _insolation(lat, doy)
    # change of the daylight fraction over a month (spring > 0, autumn < 0)
    _, ahead = _insolation(lat, doy + 15.0)
    _, behind = _insolation(lat, doy - 15.0)
    return {"tas": tas, "wsoil": w, "toa": toa, "dayfrac": dayfrac, "daytrend": ahead - behind}


def _finish(grid: xr.Dataset, tas: np.ndarray, w: np.ndarray, toa: np.ndarray) -> dict[str, np.ndarray]:
    """Soil moisture clipped, surface radiation (wetter months are cloudier) and VPD."""
    w = np.clip(w, 0.02, 0.98)
    trans = grid["trans"].to_numpy()[:, None] * (1 - 0.25 * (w - grid["wmean"].to_numpy()[:, None]))
    rh = 0.25 + 0.45 * w  # daytime relative humidity
    return {"wsoil": w, "rsds": toa * trans, "vpd": _es(tas) * (1 - rh), "tas": tas}


def _anomalies(rng: np.random.Generator, grid: xr.Dataset, time: pd.DatetimeIndex):
    """Interannual temperature and soil-moisture anomalies and light terms on (cell, time).

    Observed records (:func:`.climate.load_climate_indices`) set the global land warming, the
    ENSO mode (tropical warming and drying, Niño-3.4 leading by :data:`ENSO_LAG_MONTHS`) and the
    volcanic aerosol (dimmer but more diffuse light); seeded noise only adds cell-scale weather.
    """
    lat = grid["lat"].to_numpy()
    area = grid["area"].to_numpy()
    idx = load_climate_indices(PREINDUSTRIAL_YEAR, int(time.year[-1]))
    months = idx["time"].to_index()
    at = months.get_indexer(time)
    amp = 1.0 + np.abs(lat) / 60.0  # high latitudes warm more; land-mean warming kept as observed
    amp /= (amp * area).sum() / area.sum()
    a = np.exp(-1.0 / ENSO_MEMORY_MONTHS)  # exponential memory of the index, then the lag
    nino = lfilter([1.0 - a], [1.0, -a], idx["nino34"].to_numpy())[np.maximum(at - ENSO_LAG_MONTHS, 0)]
    tropic = np.exp(-((lat / 20.0) ** 2))[:, None]
    years = time.year.to_numpy()
    uyears, yi = np.unique(years, return_inverse=True)
    t_cell = rng.standard_normal((lat.size, uyears.size))[:, yi]
    w_cell = rng.standard_normal((lat.size, uyears.size))[:, yi]
    t_anom = (amp[:, None] * idx["land_warming"].to_numpy()[at][None, :]
              + ENSO_T * tropic * nino[None, :] + 0.25 * t_cell)
    w_anom = -ENSO_W * tropic * nino[None, :] + 0.01 * w_cell
    saod = idx["saod"].to_numpy()[at]
    return t_anom, w_anom, 1.0 - AEROSOL_DIMMING * saod, 1.0 + DIFFUSE_GAIN * saod


def _co2_and_luc(gcb: xr.Dataset, time: pd.DatetimeIndex, ramp_start: int):
    """Monthly CO2 (GCB from 1959, the pre-industrial ramp before), its ramp-start value, and E_LUC."""
    years = time.year.to_numpy()
    days = time.days_in_month.to_numpy().astype(float)
    co2_ann = gcb["co2"].to_numpy()
    gyears = gcb["year"].to_numpy()
    growth = gcb["atm_growth"].to_numpy() / 2.124
    co2_start_1959 = co2_ann[0] - 0.5 * growth[0]
    # start-of-year CO2 from 1959 on, then linear within each year
    t_frac = years + (time.day_of_year.to_numpy() - 1 + days / 2) / 365.25
    knots_y = np.concatenate([gyears, [gyears[-1] + 1]]).astype(float)
    knots_c = np.concatenate([[co2_start_1959], co2_start_1959 + np.cumsum(growth)])
    rate = np.log((co2_start_1959 - 280.0) / (_PREINDUSTRIAL_CO2 - 280.0)) / (1959 - 1850)
    co2 = np.where(
        t_frac >= 1959,
        np.interp(t_frac, knots_y, knots_c),
        280.0 + (_PREINDUSTRIAL_CO2 - 280.0) * np.exp(rate * (t_frac - 1850)),
    )
    co2_pre = 280.0 + (_PREINDUSTRIAL_CO2 - 280.0) * np.exp(rate * (ramp_start - 1850))
    luc = np.where(
        years >= 1959,
        np.interp(years, gyears, gcb["luc"].to_numpy()),
        np.interp(years, [1850, 1959], [_LUC_1850, float(gcb["luc"][0])]),
    )
    return co2, co2_pre, luc
