"""The embedded global land-carbon model: CLASSIC's stand-in for examples and tests.

A monthly model of vegetation, litter and soil carbon on the tiles (cell x PFT pairs with
non-zero fraction) of :func:`bayescal.models.drivers.make_grid`. State arrays have shape
``(pool, member, tile)``; each month of every member and tile is one pass of the compiled
kernel :func:`bayescal.models._kernel.month`, members spread over the cores.

Processes (equations in ``docs/model.md``): big-leaf canopy photosynthesis co-limited by
Rubisco and light (curvature ``beta2``) with CO2, temperature, soil-moisture (``sn``, root
access ``avertmas``) and vapour-pressure-deficit (``vpd0``) limitation and CO2 down-regulation
(``gamma_w``); LAI from leaf carbon and a leaf-lifespan-dependent specific leaf area; leaf,
stem and root maintenance respiration and growth respiration (``grescoef``); allocation to
leaves, stem and roots shifted to roots by water stress (``omega``) and limited by structural
support (``kappa``); cold and drought phenology (``coldthrs``); leaf turnover (``lfespany``) and
stem/root mortality (``maxage``); fire (``extnprob``, ``cmbcprm``); forest-area conversion
driven by GCB 2024 E_LUC (:mod:`.land_use`); crop harvest; litter and soil decomposition
(``bsratelt``, ``bsratesc``, ``humicfac``, ``q10_rh``); latent heat from transpiration and soil evaporation.

Mass is conserved by construction: every transfer is debited and credited in the same step, so
``d(cveg + clitter + csoil)/dt = nbp`` holds to rounding in every month and cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd
import xarray as xr

from ..parameters import PFTS, ParameterSpace
from . import _kernel
from ._kernel import LAI_MAX
from .drivers import make_drivers, make_grid
from .land_use import LandUse
from .landcarbon_space import _C4, _TREE, default_parameter_space

__all__ = ["LandCarbonModel", "default_parameter_space", "OUTPUT_VARIABLES"]

_UMOL_TO_KGC_YR = _kernel.UMOL_TO_KGC_YR  # µmol CO2 m-2 s-1  ->  kgC m-2 yr-1

# ---------------------------------------------------------------- PFT constants
#                  NDL-EVG NDL-DCD BDL-EVG BDL-CLD BDL-DRY CROP3 CROP4 GRAS3 GRAS4
_COLD_DECID = np.array([0, 1, 0, 1, 0, 1, 1, 1, 1], dtype=float)
_DRY_DECID = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1], dtype=float)
_T_LOW = np.array([-4.0, -4.0, 10.0, 2.0, 8.0, 2.0, 12.0, -4.0, 12.0])
_T_HIGH = np.array([38.0, 36.0, 42.0, 38.0, 42.0, 38.0, 45.0, 38.0, 45.0])
_ALLOC = np.array(  # base allocation of NPP to leaf, stem, root
    [[0.30, 0.35, 0.35]] * 5 + [[0.55, 0.0, 0.45]] * 4
)
_ROOT_TURN = np.where(_TREE, 0.15, 0.5)  # yr-1, on top of mortality
#: PFTs whose area land use converts: the forests (NDL-EVG, BDL-EVG, BDL-DCD-CLD); the
#: model's dry-deciduous and needleleaf-deciduous trees are sparse, their land not forest.
_CLEARED = np.array([1, 0, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
_RECEIVER = np.array([0, 0, 0, 0, 0, 1, 0, 1, 0], dtype=bool)
_HARVEST = np.array([0, 0, 0, 0, 0, 0.5, 0.5, 0, 0.0])  # harvested share of crops' shed leaves
_CHI_MAX = np.where(_C4, 0.45, 0.80)  # ci/ca at zero VPD
_FIRE_RATE = 0.2  # yr-1 burned fraction at full dryness and fuel
_SPINUP_DECAY = 0.88  # damping exponent of the vegetation jump: 0.5 * this ** cycle
_DAMPED = ("leaf", "stem", "root")  # pools whose spin-up jump is damped

#: Variables on (member, cell, time) in the output, with their units.
OUTPUT_VARIABLES: dict[str, tuple[str, str]] = {
    "gpp": ("kg m-2 s-1", "gross primary productivity (carbon)"),
    "ra": ("kg m-2 s-1", "autotrophic respiration (carbon)"),
    "rh": ("kg m-2 s-1", "heterotrophic respiration (carbon)"),
    "fire": ("kg m-2 s-1", "fire carbon emissions"),
    "fluc": ("kg m-2 s-1", "land-use change carbon emissions"),
    "nbp": ("kg m-2 s-1", "net biome productivity gpp - ra - rh - fire - fluc"),
    "lai": ("m2 m-2", "leaf area index"),
    "hfls": ("W m-2", "surface upward latent heat flux"),
    "hfss": ("W m-2", "surface upward sensible heat flux: net radiation (0.7 rsds) minus hfls"),
    "cveg": ("kg m-2", "vegetation carbon (end of month)"),
    "clitter": ("kg m-2", "litter carbon (end of month)"),
    "csoil": ("kg m-2", "soil carbon, excluding litter (end of month)"),
}
_FLUXES = ("gpp", "ra", "rh", "fire", "fluc", "nbp")
_MET = ("tas", "wsoil", "rsds", "dayfrac", "daytrend", "vpd", "par_gain")  # driver fields the model reads
# placeholders for kernel arguments a call does not use
_NO_BUDGET, _NO_GLOB, _NO_GRID = np.zeros((0, 1, 1)), np.zeros((0, 1, 1)), np.zeros((0, 1, 1, 1))
_NO_ROWS = np.full(len(_kernel.OUT_ROWS), -1)


@dataclass
class _Tiles:
    cell: np.ndarray  # cell of each tile
    pft: np.ndarray  # pft index of each tile, sorted
    frac: np.ndarray  # PFT fraction of the cell covered by the tile
    pft_start: np.ndarray  # first tile of each PFT, and the number of tiles


def _logistic(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class LandCarbonModel:
    """The embedded global land-carbon model.

    Parameters
    ----------
    grid : xarray.Dataset, optional
        From :func:`~bayescal.models.drivers.make_grid` (default: 300 cells, seed 0).
    drivers : xarray.Dataset, optional
        From :func:`~bayescal.models.drivers.make_drivers` on ``grid`` (default 1959-2023 with a
        ramp from 1901).
    space : ParameterSpace, optional
        Must hold the families of :func:`default_parameter_space` (bounds may differ).
    spinup_cycles : int, default 24
        Number of semi-analytic spin-up cycles; every member runs all of them, so the spun-up
        state is a smooth function of the parameters.
    spinup_tol : float, default 1e-2
        A member whose vegetation carbon still changes by more than this in the last cycle
        (area-weighted sum of absolute changes over the total) fails as not converged.
    chunk_size : int, default 256
        Members simulated together in one kernel call (memory grows with it); results do not
        depend on it.
    n_threads : int, optional
        Kernel threads. Default :func:`._kernel.auto_threads`: one per 8 members of a kernel call,
        at most numba's (all cores), so one member never waits on a thread pool with nothing to
        share (``benchmarks/bench_simulate.py --scaling``). Set 1 where the caller already runs
        several simulations at once (several Dask worker threads, say).

    Notes
    -----
    ``simulate(theta)`` runs every member in one call; it never raises for a member: members
    that turn unphysical fail with a reason in the returned ``failure`` variable. The first
    call in a fresh installation compiles the kernel (~6 s); numba caches it on disk.
    """

    def __init__(
        self,
        grid: xr.Dataset | None = None,
        drivers: xr.Dataset | None = None,
        space: ParameterSpace | None = None,
        spinup_cycles: int = 24,
        spinup_tol: float = 1e-2,
        chunk_size: int = 256,
        n_threads: int | None = None,
    ):
        self.grid = make_grid() if grid is None else grid
        self.drivers = make_drivers(self.grid) if drivers is None else drivers
        self.space = default_parameter_space() if space is None else space
        self.spinup_cycles = spinup_cycles
        self.spinup_tol = spinup_tol
        self.chunk_size = chunk_size
        self.n_threads = n_threads
        if chunk_size < 1:
            raise ValueError(f"LandCarbonModel: chunk_size must be >= 1, got {chunk_size}")
        if n_threads is not None and not 1 <= n_threads <= numba.config.NUMBA_NUM_THREADS:
            raise ValueError(
                f"LandCarbonModel: n_threads must be between 1 and {numba.config.NUMBA_NUM_THREADS}"
                f" (NUMBA_NUM_THREADS), got {n_threads}"
            )
        missing = sorted(set(default_parameter_space().names) - set(self.space.names))
        if missing:
            raise ValueError(f"LandCarbonModel: parameter space lacks {missing}")
        if self.drivers.sizes["cell"] != self.grid.sizes["cell"]:
            raise ValueError("LandCarbonModel: drivers and grid have different numbers of cells")
        frac = self.grid["pft_frac"].to_numpy()
        empty = np.flatnonzero(~(frac > 0).any(axis=1))
        if empty.size:
            raise ValueError(
                f"LandCarbonModel: every grid cell needs a PFT with non-zero fraction; cells "
                f"{self.grid['cell'].to_numpy()[empty].tolist()} have none"
            )
        pft, cell = np.nonzero(frac.T > 0)  # tiles PFT by PFT: the kernel's loop order
        self._tiles = _Tiles(
            cell=np.ascontiguousarray(cell),  # one layout for any grid: numba compiles one signature
            pft=pft,
            frac=frac[cell, pft],
            pft_start=np.searchsorted(pft, np.arange(len(PFTS) + 1)),
        )
        self._cell_area = self.grid["area"].to_numpy()[cell]
        self._tile_area = self._cell_area * self._tiles.frac
        self._land_use = LandUse(cell, self._tiles.frac, self._cell_area, _CLEARED[pft], _RECEIVER[pft],
                                 self.drivers["luc_emission"].to_numpy(), self.drivers["days"].to_numpy())
        self._t_acclim = self.drivers["tas_clim"].to_numpy().mean(axis=1)[cell]

    # ------------------------------------------------------------------ public
    @property
    def n_tiles(self) -> int:
        """Number of (cell, PFT) tiles with non-zero fraction."""
        return int(self._tiles.cell.size)

    def __call__(self, theta: np.ndarray) -> xr.Dataset:
        return self.simulate(theta)

    def simulate(
        self, theta: np.ndarray, variables: list[str] | tuple[str, ...] | None = None
    ) -> xr.Dataset:
        """Run every member of ``theta`` in one vectorised call.

        Parameters
        ----------
        theta : array_like, shape (n_members, n_values) or (n_values,)
            Full parameter vectors in the order of ``self.space.all_labels``.
        variables : sequence of str, optional
            Gridded variables to return (default all of :data:`OUTPUT_VARIABLES`); global annual
            totals of the carbon variables are always returned.

        Returns
        -------
        xarray.Dataset
            ``(member, cell, time)`` variables, ``<var>_global`` on ``(member, year)`` in
            PgC yr-1 (fluxes) or PgC (pools, annual mean), ``failed`` and ``failure`` (reason) on
            ``member``, ``theta`` on ``(member, parameter)``, grid coordinates on ``cell``.
            Failed members hold NaN.
        """
        theta = self.space.check(theta, strict=False, full=True)
        theta = np.atleast_2d(theta)
        variables = list(OUTPUT_VARIABLES) if variables is None else list(variables)
        unknown = sorted(set(variables) - set(OUTPUT_VARIABLES))
        if unknown:
            raise ValueError(f"unknown output variables {unknown}; known: {list(OUTPUT_VARIABLES)}")
        threads = self.n_threads or _kernel.auto_threads(min(theta.shape[0], self.chunk_size))
        before = numba.get_num_threads()
        if threads == before:
            return self._run(theta, variables)
        numba.set_num_threads(threads)  # numba's setting is per calling thread
        try:
            return self._run(theta, variables)
        finally:
            numba.set_num_threads(before)

    # --------------------------------------------------------------- internals
    def _pft_params(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """Parameter families per member and PFT, shape (member, 9)."""
        return {
            name: self.space[name].per_pft(values[:, None] if values.ndim == 1 else values)
            for name, values in self.space.unflatten(theta).items()
        }

    def _run(self, theta: np.ndarray, variables: list[str]) -> xr.Dataset:
        n_m = theta.shape[0]
        times = self.drivers["time"].to_index()
        write = np.flatnonzero(times.year >= int(self.drivers.attrs["start"]))
        n_cell = self.grid.sizes["cell"]
        wanted = variables  # hfss is derived from hfls
        if "hfss" in variables and "hfls" not in variables:
            variables = [*variables, "hfls"]
        # cell outputs are written month by month, so months are the slow axis of each member's
        # block; the Dataset gets a (member, cell, time) view of it
        rows = np.array([variables.index(v) if v in variables else -1 for v in _kernel.OUT_ROWS])
        grid = _kernel.zeros((len(variables), n_m, write.size, n_cell))
        glob = np.zeros((_kernel.N_GLOBAL, n_m, write.size))
        failed = np.zeros(n_m, dtype=bool)
        reason = np.array([""] * n_m, dtype=object)
        met = self._monthly_met()
        # each member's arithmetic is independent of the others, so chunking changes no result
        for lo in range(0, n_m, self.chunk_size):
            sl = slice(lo, min(lo + self.chunk_size, n_m))
            failed[sl], reason[sl] = self._run_chunk(theta[sl], lo, met, grid, rows, glob, write)
        gridded = {v: grid[i].transpose(0, 2, 1) for i, v in enumerate(variables)}
        if "hfss" in wanted:  # the surface energy balance, ground heat flux neglected monthly
            gridded["hfss"] = 0.7 * self.drivers["rsds"].to_numpy()[None, :, write] - gridded["hfls"]
        gridded = {v: gridded[v] for v in wanted}
        glob_monthly = {v: glob[i] for i, v in enumerate(_kernel.OUT_ROWS[: _kernel.N_GLOBAL])}
        return self._assemble(theta, gridded, glob_monthly, failed, reason, times[write])

    def _monthly_met(self) -> dict[str, np.ndarray]:
        """Driver fields on (time, tile), so that a month is one contiguous row."""
        d = self.drivers
        cellc = self._tiles.cell
        return {k: np.ascontiguousarray(d[k].to_numpy().T[:, cellc]) for k in _MET}

    def _run_chunk(self, theta, m0, met, grid, rows, glob, write):
        """Spin up and run members ``m0 ...`` of the batch; return their failure flags and reasons."""
        t = self._tiles
        n_m = theta.shape[0]
        d = self.drivers
        P = self._pft_params(theta)
        par = _kernel.pack_parameters(P, self._constants(P))
        state, failed, reason = self._spinup(par)
        times = d["time"].to_index()
        co2 = d["co2"].to_numpy()
        days = d["days"].to_numpy()
        first_write = write[0] if write.size else times.size
        active = ~failed
        lai = np.empty((n_m, self.n_tiles))
        bad = np.zeros(n_m, dtype=bool)
        for it in range(times.size):
            cl = self._climate({k: v[it] for k, v in met.items()}, co2[it])
            frac, clear, dilute, receive = self._land_use.month(it)
            _kernel.month(
                state, par, t.pft_start, cl, co2[it], clear, dilute, receive, days[it] / 365.25,
                active, _NO_BUDGET, _NO_BUDGET, t.cell, frac, frac * self._cell_area,
                1.0 / (days[it] * 86400.0),
                grid, rows, glob, it - first_write if it >= first_write else -1, m0, lai, bad,
            )
            if bad.any():
                for m in np.flatnonzero(bad):
                    reason[m] = self._reason(state, lai, m, times[it])
                failed |= bad
                active &= ~bad
        return failed, reason

    @staticmethod
    def _constants(P: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Quantities that depend on parameters and PFT only, shape (member, 9) or (9,)."""
        mort = -np.log(0.01) / P["maxage"]
        return dict(
            sla=25.0 / np.sqrt(P["lfespany"]),
            mort=mort,
            k_leaf0=1.0 / P["lfespany"],
            k_root0=_ROOT_TURN + mort,
            log_q10=np.log(P["q10_rh"]),
            fire_scale=_FIRE_RATE * (1.0 - P["extnprob"]),
            cold_decid=_COLD_DECID,
            dry_decid=_DRY_DECID,
            tree=_TREE.astype(float),
            c4=_C4.astype(float),
            inv_avertmas=1.0 / P["avertmas"],
            chi_vpd0=_CHI_MAX * P["vpd0"],
            inv_kn=1.0 / P["kn"],
            four_beta=4.0 * P["beta2"],
            inv_2beta=0.5 / P["beta2"],
            rml_vmax=P["rmlcoef"] * P["vmax"] * _UMOL_TO_KGC_YR,
            a_leaf=_ALLOC[:, 0],
            a_stem=_ALLOC[:, 1],
            a_root=_ALLOC[:, 2],
            shift_stem=np.where(_TREE, 0.5, 0.0),
            shift_root=np.where(_TREE, 0.5, 1.0),
            harvest=_HARVEST,
        )

    def _initial_state(self, n_m: int) -> np.ndarray:
        tree = _TREE[self._tiles.pft]
        init = np.stack([np.where(tree, a, b) for a, b in
                         ((0.3, 0.1), (5.0, 0.0), (1.5, 0.3), (0.5, 0.2), (10.0, 5.0))])
        return np.broadcast_to(init[:, None, :], (5, n_m, self.n_tiles)).copy()

    def _spinup(self, par):
        """Semi-analytic spin-up to the pre-industrial equilibrium.

        Each cycle runs one climatological year and sets every pool to ``input / loss rate`` of
        that year (``X* = I / k`` with ``k = loss / mean(X)``). Vegetation feeds back on its own
        inputs through LAI, so its jump is damped, more with every cycle. All members run
        ``spinup_cycles`` cycles: stopping each member once it changed by less than a tolerance
        made the spun-up state, and every output, jump where a small parameter change altered
        the cycle count (misfit jumps of 2x seen by DFO-LS). Litter and soil are exact given
        the year's litter fall.
        """
        n_m = par.shape[1]
        state = self._initial_state(n_m)
        failed = np.zeros(n_m, dtype=bool)
        reason = np.array([""] * n_m, dtype=object)
        change = np.full(n_m, np.inf)
        climate = self._spinup_climate()
        for cycle in range(self.spinup_cycles):
            # every member runs every cycle: a member that stopped once converged would have
            # a state that jumps with its parameters wherever the cycle count changes
            if failed.all():
                break
            # damping grows with the cycle number so that 2-cycle oscillations die out
            change = self._spinup_cycle(state, par, failed, reason, 0.5 * _SPINUP_DECAY**cycle, climate)
        not_conv = ~(change < self.spinup_tol) & ~failed
        for i in np.flatnonzero(not_conv):
            reason[i] = (
                f"spin-up did not converge in {self.spinup_cycles} cycles "
                f"(vegetation carbon still changing by {change[i]:.2%} per cycle)"
            )
        failed |= not_conv
        state[:, failed] = 0.0
        return state, failed, reason

    def _spinup_climate(self) -> list[np.ndarray]:
        """The twelve months of the spin-up climatology, as tile climate terms."""
        d = self.drivers
        cellc = self._tiles.cell
        clim = {k: d[f"{k}_clim"].to_numpy() for k in _MET}
        co2 = float(d.attrs["co2_preindustrial"])
        return [self._climate({k: v[cellc, m] for k, v in clim.items()}, co2) for m in range(12)]

    def _spinup_cycle(self, state, par, failed, reason, power, climate) -> np.ndarray:
        """One spin-up cycle of the members not ``failed``, in place; returns each member's change."""
        t = self._tiles
        days = np.array([31, 28.25, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
        co2 = float(self.drivers.attrs["co2_preindustrial"])
        n_m, n_t = state.shape[1:]
        budget = np.zeros((10, n_m, n_t))  # inflow, outflow of each pool
        mean = np.zeros((5, n_m, n_t))
        veg_before = state[:3].sum(axis=0)
        run = ~failed
        lai = np.empty((n_m, n_t))
        bad = np.zeros(n_m, dtype=bool)
        lu = self._land_use
        for m in range(12):
            _kernel.month(
                state, par, t.pft_start, climate[m], co2, lu.no_clear, lu.no_dilute, lu.no_receive,
                days[m] / 365.25, run, budget, mean,
                t.cell, t.frac, self._tile_area, 0.0, _NO_GRID, _NO_ROWS, _NO_GLOB, -1, 0, lai, bad,
            )
            for i in np.flatnonzero(bad):
                reason[i] = "spin-up: " + self._reason(state, lai, i, None)
            failed |= bad
            run &= ~bad
        inflow, outflow = budget[:5], budget[5:]
        for i, k in enumerate(_kernel.POOLS):
            ok = outflow[i] > 0
            ratio = inflow[i] / np.where(ok, outflow[i], 1.0)
            if k in _DAMPED:  # fast pools that feed back on their own input: damp the jump
                ratio = np.clip(ratio**power, 0.5, 2.0)
            state[i] = np.where(ok, mean[i] * ratio, state[i])
        state[:, failed] = 0.0
        veg_after = state[:3].sum(axis=0)
        w = self._tile_area
        change = (np.abs(veg_after - veg_before) @ w) / np.maximum(veg_after @ w, 1.0)  # kgC
        return change

    def _climate(self, met: dict[str, np.ndarray], co2: float) -> np.ndarray:
        """Terms that depend on the month's climate and PFT only, (row, tile) for the kernel."""
        pft = self._tiles.pft
        T, W, fd = met["tas"], met["wsoil"], met["dayfrac"]
        e25 = np.exp(0.0693 * (T - 25.0))
        f_t = e25 / ((1.0 + np.exp(0.3 * (T - _T_HIGH[pft]))) * (1.0 + np.exp(0.3 * (_T_LOW[pft] - T))))
        gamma_star = 42.75 * np.exp(0.0315 * (T - 25.0))
        terms = {
            "T": T,
            "W": W,
            "fd": fd,
            "f_t": f_t * (fd > 0.0),  # no photosynthesis in polar night
            "e25": e25,
            "f_q": np.exp(0.0693 * (T - self._t_acclim)),
            "par_day": 0.5 * 4.57 * met["rsds"] * met["par_gain"] / np.maximum(fd, 0.02),
            "gamma_star": gamma_star,
            "k_m": 700.0 * e25,
            "half_vpd": 0.5 * met["vpd"],
            "t10": (T - 15.0) / 10.0,
            "env": _logistic((T + 3.0) / 1.5) * (0.2 + 0.8 * W * (2.0 - W)),
            "fire_env": (1.0 - W) ** 2 * _logistic(T / 2.0),
            "rn": 0.7 * met["rsds"],
            # daytime transpiration per unit conductance, W m-2 / (mol m-2 s-1); VPD by day ~1.6x
            "le_per_gc": 1.6 * met["vpd"] / 101.3 * 0.018 * 2.45e6 * fd,
            "log_co2": np.log(co2 / float(self.drivers.attrs["co2_preindustrial"])),
            # leaves are grown while days lengthen and not while they shorten (photoperiod)
            "season": np.clip(1.0 + 20.0 * met["daytrend"], 0.0, 2.0),
        }
        return _kernel.pack_climate(terms, pft.size)

    def _reason(self, state, lai, m, when) -> str:
        at = "" if when is None else f" in {when:%Y-%m}"
        for i, name in enumerate(_kernel.POOLS):
            if not np.all(np.isfinite(state[i, m])):
                return f"non-finite {name} carbon{at}"
        for i, name in enumerate(_kernel.POOLS):
            if np.any(state[i, m] < -1e-12):
                t = int(np.argmin(state[i, m]))
                return (
                    f"negative {name} carbon ({state[i, m, t]:.3g} kg m-2) for "
                    f"{PFTS[self._tiles.pft[t]]} in cell {self._tiles.cell[t]}{at}"
                )
        t = int(np.argmax(lai[m]))
        return (
            f"runaway LAI {lai[m, t]:.1f} > {LAI_MAX} for {PFTS[self._tiles.pft[t]]} "
            f"in cell {self._tiles.cell[t]}{at}"
        )

    def _assemble(self, theta, gridded, glob_monthly, failed, reason, times) -> xr.Dataset:
        n_m = theta.shape[0]
        g = self.grid
        coords = {
            "member": np.arange(n_m),
            "cell": g["cell"].to_numpy(),
            "time": times,
            "lat": ("cell", g["lat"].to_numpy(), g["lat"].attrs),
            "lon": ("cell", g["lon"].to_numpy(), g["lon"].attrs),
            "area": ("cell", g["area"].to_numpy(), g["area"].attrs),
            "biome": ("cell", g["biome"].to_numpy()),
        }
        data = {}
        for v, arr in gridded.items():
            arr[failed] = np.nan
            units, long_name = OUTPUT_VARIABLES[v]
            data[v] = (("member", "cell", "time"), arr, {"units": units, "long_name": long_name})
        years = pd.DatetimeIndex(times).year.to_numpy()
        uyears, inv = np.unique(years, return_inverse=True)
        seconds = pd.DatetimeIndex(times).days_in_month.to_numpy() * 86400.0
        for v, arr in glob_monthly.items():
            arr[failed] = np.nan
            if v in _FLUXES:
                total = np.zeros((n_m, uyears.size))
                np.add.at(total.T, inv, (arr * seconds).T)
                units = "PgC yr-1"
                total /= 1e12
            else:
                total = np.zeros((n_m, uyears.size))
                np.add.at(total.T, inv, arr.T)
                total /= np.bincount(inv)[None, :] * 1e12
                units = "PgC"
            data[f"{v}_global"] = (
                ("member", "year"), total,
                {"units": units, "long_name": f"global annual {OUTPUT_VARIABLES[v][1]}"},
            )
        data["status"] = ("member", np.where(failed, "failed", "done"))
        data["reason"] = ("member", np.array([str(r) for r in reason], dtype=str))
        data["theta"] = (("member", "parameter"), theta)
        coords["year"] = uyears
        coords["parameter"] = self.space.all_labels
        return xr.Dataset(data, coords=coords, attrs={"model": "bayescal embedded land-carbon model"})
