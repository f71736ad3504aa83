"""DALEC, the site-scale carbon model of REFLEX (Williams et al. 2005; Fox et al. 2009), embedded.

Daily, driven by a site's meteorology (a Dataset on ``time`` with ``ta`` degC, ``sw`` MJ m-2
d-1, ``co2`` ppm and the site latitude in ``attrs["lat"]``, as
:func:`bayescal.readers.read_fluxnet_drivers` makes from a FLUXNET2015 file, the latitude from the
shipped FLUXNET2015 site table or the config's ``model.latitude``), vectorised over members
(a compiled loop, :mod:`._dalec_kernel`). Two versions:

* ``"evergreen"`` (DALEC-E): five pools, parameters p1-p11;
* ``"deciduous"`` (DALEC-D): adds a labile pool and phenology, p1-p17.

Both add ``eta_som``, Carvalhais et al.'s (2008, Global Biogeochem. Cycles 22, GB2007)
disequilibrium factor: the slow pools are spun up to steady state and the soil pool then
scaled by ``eta_som`` (1 = equilibrium, NEE ~ 0 on average; < 1 = a soil below its steady
state, a sink), and the fixed values ``lma`` and ``nit``. Spin-up, the diurnal temperature
range and every choice are in docs/site.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from ..parameters import Parameter, ParameterSpace
from . import _dalec_kernel as K

__all__ = ["OUTPUT_UNITS", "DalecModel", "dalec_parameter_space"]

_KINDS = {"evergreen": K.EVERGREEN, "deciduous": K.DECIDUOUS}
_UNITS = {"gpp": "gC m-2 d-1", "nee": "gC m-2 d-1", "reco": "gC m-2 d-1", "ra": "gC m-2 d-1",
          "rh": "gC m-2 d-1", "lai": "m2 m-2"}
#: Units of every output (fluxes gC m-2 d-1, NEE > 0 a source; LAI m2 m-2; pools gC m-2).
OUTPUT_UNITS = {name: _UNITS.get(name, "gC m-2") for name in K.OUTPUTS}
_INITIAL = np.array([100.0, 5000.0, 300.0, 100.0, 8000.0, 50.0])  # before spin-up, gC m-2


def _p(name, default, lo, hi, units, description, scale="linear") -> Parameter:
    return Parameter(name, default, lo, hi, units, description, scale=scale)


def dalec_parameter_space(kind: str = "deciduous") -> ParameterSpace:
    """REFLEX's parameters (Table A3 ranges; rates log-scaled) plus ``eta_som``; ``lma`` and
    ``nit`` fixed (free them with ``space.unfix()`` or a parameter file)."""
    if kind not in _KINDS:
        raise ValueError(f"DALEC kind must be one of {list(_KINDS)}, got {kind!r}")
    dec = kind == "deciduous"
    params = [
        _p("p1", 1e-4, 1e-6, 1e-2, "d-1", "litter to soil organic matter decomposition rate", "log"),
        _p("p2", 0.45, 0.2, 0.7, "1", "fraction of GPP respired (autotrophic)"),
        _p("p3", 0.45 if dec else 0.3, 0.01, 0.5, "1", "fraction of NPP allocated to foliage"),
        _p("p4", 0.3, 0.01, 0.5, "1", "fraction of remaining NPP allocated to roots"),
        _p("p5", 0.03 if dec else 2.5e-3, 1e-4, 0.1, "d-1", "foliage turnover", "log"),
        _p("p6", 5e-5, 1e-6, 1e-2, "d-1", "wood turnover", "log"),
        _p("p7", 2.5e-3, 1e-4, 1e-2, "d-1", "root turnover", "log"),
        _p("p8", 5e-3, 1e-5, 0.1, "d-1", "litter mineralisation", "log"),
        _p("p9", 5e-5, 1e-6, 1e-2, "d-1", "soil organic matter mineralisation", "log"),
        _p("p10", 0.07, 0.05, 0.2, "degC-1", "temperature sensitivity exponent"),
        _p("p11", 10.0 if dec else 6.0, 5.0, 20.0, "gC gN-1 d-1", "nitrogen use efficiency (ACM a1)"),
    ]
    if dec:
        params += [
            _p("p12", 300.0, 200.0, 400.0, "degC d", "growing degree days for leaf-out"),
            _p("p13", 11.0, 8.0, 15.0, "degC", "minimum daily temperature for leaf fall"),
            _p("p14", 0.3, 0.2, 0.7, "1", "fraction of leaf loss to litter"),
            _p("p15", 0.05, 1e-4, 0.1, "d-1", "labile turnover", "log"),
            _p("p16", 0.05, 0.01, 0.5, "1", "fraction of labile transfers respired"),
            _p("p17", 200.0, 100.0, 500.0, "gC m-2", "maximum foliar carbon"),
        ]
    params += [
        _p("eta_som", 1.0, 0.2, 1.0, "1", "soil carbon after spin-up / its steady state"),
        _p("lma", 35.0 if dec else 110.0, 15.0 if dec else 60.0, 70.0 if dec else 200.0, "gC m-2",
           "leaf mass per area"),
        _p("nit", 2.0 if dec else 2.5, 1.0, 4.0, "gN m-2", "foliar nitrogen per leaf area"),
    ]
    return ParameterSpace(params, fixed={"lma": None, "nit": None})


def _day_length(lat: float, doy: np.ndarray) -> np.ndarray:
    """Hours of daylight (REFLEX: declination -23.4 cos(2 pi (doy + 10) / 365))."""
    dec = np.deg2rad(-23.4 * np.cos(2.0 * np.pi * (doy + 10.0) / 365.0))
    x = np.clip(-np.tan(np.deg2rad(lat)) * np.tan(dec), -1.0, 1.0)
    return 24.0 * np.arccos(x) / np.pi


#: plausible daily means: air temperature (degC), shortwave radiation (MJ m-2 d-1; the top of the
#: atmosphere gets at most ~46; a sensor offset at night may leave a small negative mean), CO2 (ppm)
_PLAUSIBLE, _UNITS_IN = ((-70.0, 60.0), (-0.5, 50.0), (100.0, 2000.0)), ("degC", "MJ m-2 d-1", "ppm")


def _days_since_july(time: xr.DataArray) -> np.ndarray:
    """Day of the year counted from 1 July (1 July: 1; 30 June: 365 or 366), for the phenology of
    a southern-hemisphere site."""
    doy = time.dt.dayofyear.values.astype(float)
    july = 182.0 + (time.dt.days_in_year.values == 366)  # 1 July's day of the year
    return np.where(doy >= july, doy - july + 1.0, doy + 184.0)  # 1 July - 31 December: 184 days


def _check_drivers(d: xr.Dataset) -> None:
    """Daily drivers, every day once in order (a gap or a missing year would be run as one day),
    finite weather and a latitude in [-90, 90]: else a ValueError naming what is wrong."""
    src = d.attrs.get("source", "the drivers")
    t = pd.DatetimeIndex(d["time"].values)
    if t.size < 2:
        raise ValueError(f"DALEC drivers ({src}) need at least two days, got {t.size}")
    step = np.diff(t.values).astype("timedelta64[s]").astype(np.int64)
    bad = np.flatnonzero(step != 86400)
    if bad.size:
        i = int(bad[0])
        what = "duplicated" if step[i] == 0 else ("out of order" if step[i] < 0 else
                                                  f"followed by a gap of {step[i] // 86400 - 1} day(s)")
        raise ValueError(f"DALEC drivers ({src}) must be one row per consecutive day: "
                         f"{t[i]:%Y-%m-%d} is {what} (then {t[i + 1]:%Y-%m-%d})")
    lat = float(d.attrs["lat"])
    if not -90.0 <= lat <= 90.0:
        raise ValueError(f"DALEC drivers ({src}): latitude must be in [-90, 90] degrees north, got {lat}")
    for v in ("ta", "sw", "co2"):
        nf = ~np.isfinite(d[v].values.astype(float))
        if nf.any():
            raise ValueError(f"DALEC drivers ({src}): {v} is missing or non-finite on {int(nf.sum())} "
                             f"day(s), the first {t[nf][0]:%Y-%m-%d}")
    for v, (lo, hi), units in zip(("ta", "sw", "co2"), _PLAUSIBLE, _UNITS_IN, strict=True):
        x = d[v].values.astype(float)
        out = (x < lo) | (x > hi)
        if out.any():
            i = int(np.flatnonzero(out)[0])
            raise ValueError(f"DALEC drivers ({src}): {v} = {x[i]:g} {units} on {t[i]:%Y-%m-%d} is outside "
                             f"[{lo:g}, {hi:g}] ({int(out.sum())} such day(s)); units or fill values?")


_NO_SLOT = np.full(len(K.OUTPUTS), -1)  # the spin-up writes no output


class DalecModel:
    """DALEC at one site: ``model(theta (k, n_values)) -> Dataset`` on (member, time).

    Parameters
    ----------
    drivers : xarray.Dataset
        Daily meteorology on ``time``, every day once in order: ``ta`` (degC), ``sw``
        (MJ m-2 d-1), ``co2`` (ppm); ``attrs["lat"]`` (degrees north, in [-90, 90]). South of the
        equator the deciduous phenology's calendar (REFLEX's days 100 and 200) counts from 1 July.
    kind : {"deciduous", "evergreen"}
    space : ParameterSpace, optional
        Default :func:`dalec_parameter_space` of ``kind``.
    diurnal_range : float, default 8.0
        Tmax - Tmin (degC) for the ACM and the leaf-fall trigger; FLUXNET SUBSET files carry the
        daily mean only, so Tmax/Tmin = mean +- range/2 (docs/site.md shows its effect).
    spinup_years : int, default 5
        The first years of the drivers, cycled for the spin-up. A config's ``model.spinup_years``
        defaults to 3 (with 5 cycles: a site route runs the model hundreds of thousands of times);
        pass ``spinup_years=3, spinup_cycles=5`` for the model ``bayescal run`` calibrates.
    spinup_cycles : int, default 8
        Cycles; after each the pools are scaled to their cycle's steady state.
    """

    def __init__(self, drivers: xr.Dataset, kind: str = "deciduous", space: ParameterSpace | None = None,
                 diurnal_range: float = 8.0, spinup_years: int = 5, spinup_cycles: int = 8) -> None:
        if kind not in _KINDS:
            raise ValueError(f"DALEC kind must be one of {list(_KINDS)}, got {kind!r}")
        missing = [v for v in ("ta", "sw", "co2") if v not in drivers]
        missing += [] if "lat" in drivers.attrs else ["attrs.lat"]
        if missing:
            raise ValueError(f"DALEC drivers lack {missing}")
        _check_drivers(drivers)
        if not diurnal_range >= 0:
            raise ValueError(f"diurnal_range must be >= 0, got {diurnal_range}")
        self.kind = kind
        self.space = space if space is not None else dalec_parameter_space(kind)
        expected = dalec_parameter_space(kind).all_labels
        if self.space.all_labels != expected:
            raise ValueError(f"a DALEC-{kind} space must have the values {expected}, "
                             f"got {self.space.all_labels}")
        self.drivers = drivers
        self.diurnal_range = float(diurnal_range)
        self.spinup_years, self.spinup_cycles = int(spinup_years), int(spinup_cycles)
        # kernel column of each value of the space (eta_som is applied after the spin-up, not a column)
        cols = {f"p{i}": i - 1 for i in range(1, 18)} | {"lma": 17, "nit": 18}
        self._src = np.array([j for j, lab in enumerate(expected) if lab in cols])
        self._cols = np.array([cols[expected[j]] for j in self._src])
        self._met = self._met_arrays(drivers)
        years = drivers["time"].dt.year.values
        spin = years < years[0] + self.spinup_years
        self._spin = tuple(a[spin] for a in self._met)

    def _met_arrays(self, d: xr.Dataset) -> tuple[np.ndarray, ...]:
        doy = d["time"].dt.dayofyear.values.astype(float)
        lat = float(d.attrs["lat"])
        tm = d["ta"].values.astype(float)
        half = 0.5 * self.diurnal_range
        # the deciduous phenology's calendar (REFLEX's day 100 and 200 thresholds) is the northern
        # one; south of the equator it counts from 1 July, so its spring is September's
        season = doy if lat >= 0 else _days_since_july(d["time"])
        return (season, tm, tm + half, tm - half, d["sw"].values.astype(float),
                d["co2"].values.astype(float), _day_length(lat, doy))

    def __call__(self, theta: np.ndarray) -> xr.Dataset:
        return self.simulate(theta)

    def _par(self, theta: np.ndarray) -> np.ndarray:
        par = np.zeros((theta.shape[0], K.N_PAR))
        par[:, self._cols] = theta[:, self._src]
        return par

    def spin_up(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Pools and phenology after the spin-up, and where a member failed (day, pool; -1 = fine).

        Each cycle runs the spin-up years and then scales every pool by its cycle's inflow /
        outflow (the steady state of a first-order pool; square-rooted for the foliage and
        labile pools, whose inflow depends on themselves); foliage of the deciduous version is
        left to its phenology. ``eta_som`` then scales the soil pool.
        """
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        par, n = self._par(theta), theta.shape[0]
        kind = _KINDS[self.kind]
        pools = np.tile(_INITIAL, (n, 1))
        pools[:, 0] = 2.0 * par[:, 17]
        phen = np.zeros((n, 2))
        bad_day, bad_pool = np.full(n, -1), np.full(n, -1)
        power = np.array([0.5, 1.0, 1.0, 1.0, 1.0, 0.5])
        if kind == K.DECIDUOUS:
            power[0] = 0.0
        for _ in range(self.spinup_cycles):
            flow = np.zeros((n, 6, 2))
            K.run(kind, par, pools, phen, *self._spin, np.zeros((0, 0, 0)), _NO_SLOT, flow, bad_day, bad_pool)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(flow[:, :, 1] > 0, flow[:, :, 0] / flow[:, :, 1], 1.0)
            ok = (bad_day < 0)[:, None] & np.isfinite(ratio) & (ratio > 0)
            pools = np.where(ok, pools * np.where(ok, ratio, 1.0) ** power, pools)
        eta = theta[:, self.space.all_labels.index("eta_som")]
        pools[:, 4] *= eta
        return pools, phen, bad_day, bad_pool

    def _integrate(self, theta: np.ndarray, outputs: tuple[str, ...] = K.OUTPUTS
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``outputs`` on (output, member, day) (NaN for failed members), and the spin-up and
        run failures (``bad_day``, ``bad_pool``: -1 while fine; ``spun_failed``)."""
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        if theta.shape[1] != self.space.n_values:
            raise ValueError(
                f"theta has {theta.shape[1]} values; DALEC-{self.kind} takes {self.space.n_values}"
            )
        pools, phen, bad_day, bad_pool = self.spin_up(theta)
        spun_failed = bad_day >= 0
        n, n_d = theta.shape[0], self._met[0].size
        out = np.full((len(outputs), n, n_d), np.nan)
        slot = np.array([outputs.index(v) if v in outputs else -1 for v in K.OUTPUTS])
        K.run(_KINDS[self.kind], self._par(theta), pools, phen, *self._met, out, slot, np.zeros((n, 6, 2)),
              bad_day, bad_pool)
        out[:, bad_day >= 0, :] = np.nan
        return out, bad_day, bad_pool, spun_failed

    def output_arrays(self, theta: np.ndarray, variables) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """``{variable: (member, time) array}`` of the outputs named, and which members failed:
        :meth:`simulate`'s values without building a Dataset (the direct route's likelihood
        calls this tens of thousands of times; ``python benchmarks/bench_dalec.py``)."""
        variables = tuple(dict.fromkeys(variables))  # each once, in the order given
        gives = [v for v in K.OUTPUTS if not (v == "clab" and self.kind == "evergreen")]  # as simulate
        unknown = sorted(set(variables) - set(gives))
        if unknown:
            raise ValueError(f"DALEC-{self.kind} has no output {unknown}; it gives {gives}")
        out, bad_day, _, _ = self._integrate(theta, variables)
        return {v: out[i] for i, v in enumerate(variables)}, bad_day >= 0

    def simulate(self, theta: np.ndarray) -> xr.Dataset:
        """Run the members; fluxes gC m-2 d-1 (NEE > 0: source), pools gC m-2, ``status``/``reason``."""
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        out, bad_day, bad_pool, spun_failed = self._integrate(theta)
        n = theta.shape[0]
        times = self.drivers["time"].values
        reason = np.array([
            "" if d < 0 else f"pool {K.POOLS[p]} negative or non-finite "
            + ("during the spin-up" if spun_failed[m] else f"on {str(times[d])[:10]}")
            for m, (d, p) in enumerate(zip(bad_day, bad_pool, strict=True))
        ])
        failed = bad_day >= 0
        data = {name: (("member", "time"), out[i], {"units": _UNITS.get(name, "gC m-2")})
                for i, name in enumerate(K.OUTPUTS)}
        if self.kind == "evergreen":
            del data["clab"]
        data["status"] = ("member", np.where(failed, "failed", "done"))
        data["reason"] = ("member", reason)
        data["theta"] = (("member", "parameter"), theta)
        return xr.Dataset(data, coords={"member": np.arange(n), "time": times,
                                        "parameter": self.space.all_labels},
                          attrs={"model": f"DALEC-{self.kind} (REFLEX)", "lat": self.drivers.attrs["lat"]})
