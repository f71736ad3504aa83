"""The embedded global land-carbon model: CLASSIC's stand-in for examples and tests.

A monthly, vectorised model of vegetation, litter and soil carbon on the tiles (cell x PFT
pairs with non-zero fraction) of :func:`bayescal.models.drivers.make_grid`. Every ensemble
member runs in the same array operation: state arrays have shape ``(member, tile)``.

Processes (equations in ``docs/model.md``): big-leaf canopy photosynthesis co-limited by
Rubisco and light (curvature ``beta2``) with CO2, temperature, soil-moisture (``sn``, root
access ``avertmas``) and vapour-pressure-deficit (``vpd0``) limitation and CO2 down-regulation
(``gamma_w``); LAI from leaf carbon and a leaf-lifespan-dependent specific leaf area; leaf,
stem and root maintenance respiration and growth respiration (``grescoef``); allocation to
leaves, stem and roots shifted to roots by water stress (``omega``) and limited by structural
support (``kappa``); cold and drought phenology (``coldthrs``); leaf turnover (``lfespany``) and
stem/root mortality (``maxage``); fire (``extnprob``, ``cmbcprm``); land-use clearing driven by
GCB 2024 E_LUC; litter and soil decomposition (``bsratelt``, ``bsratesc``, ``humicfac``,
``q10_rh``); latent heat from transpiration and soil evaporation.

Mass is conserved by construction: every transfer is debited and credited in the same step, so
``d(cveg + clitter + csoil)/dt = nbp`` holds to rounding in every month and cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from ..parameters import PFTS, Parameter, ParameterSpace
from .drivers import make_drivers, make_grid

__all__ = ["LandCarbonModel", "default_parameter_space", "OUTPUT_VARIABLES"]

SECONDS_PER_YEAR = 365.25 * 86400.0
# µmol CO2 m-2 s-1  ->  kgC m-2 yr-1
_UMOL_TO_KGC_YR = 12.011e-9 * SECONDS_PER_YEAR
LAI_MAX = 15.0

# ---------------------------------------------------------------- PFT constants
#                  NDL-EVG NDL-DCD BDL-EVG BDL-CLD BDL-DRY CROP3 CROP4 GRAS3 GRAS4
_TREE = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
_C4 = np.array([0, 0, 0, 0, 0, 0, 1, 0, 1], dtype=bool)
_COLD_DECID = np.array([0, 1, 0, 1, 0, 1, 1, 1, 1], dtype=float)
_DRY_DECID = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1], dtype=float)
_T_LOW = np.array([-4.0, -4.0, 10.0, 2.0, 8.0, 2.0, 12.0, -4.0, 12.0])
_T_HIGH = np.array([38.0, 36.0, 42.0, 38.0, 42.0, 38.0, 45.0, 38.0, 45.0])
_ALLOC = np.array(  # base allocation of NPP to leaf, stem, root
    [[0.30, 0.35, 0.35]] * 5 + [[0.55, 0.0, 0.45]] * 4
)
_ROOT_TURN = np.where(_TREE, 0.15, 0.5)  # yr-1, on top of mortality
_CHI_MAX = np.where(_C4, 0.45, 0.80)  # ci/ca at zero VPD
_RM_STEM = 0.30  # yr-1 at the annual-mean temperature, of live stem carbon
_RM_ROOT = 0.12  # yr-1 at the annual-mean temperature
_LAI_MIN = 0.3  # leaf onset from root storage below this LAI
_FIRE_RATE = 0.2  # yr-1 burned fraction at full dryness and fuel
_LUC_REF_CVEG = 450.0
_DAMPED = ("leaf", "stem", "root")  # PgC: E_LUC / this = fraction of tree carbon cleared per year

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
    "cveg": ("kg m-2", "vegetation carbon (end of month)"),
    "clitter": ("kg m-2", "litter carbon (end of month)"),
    "csoil": ("kg m-2", "soil carbon, excluding litter (end of month)"),
}
_FLUXES = ("gpp", "ra", "rh", "fire", "fluc", "nbp")
_POOLS = ("cveg", "clitter", "csoil")


def _p(name, default, lower, upper, units, description, groups="pft9") -> Parameter:
    return Parameter(name, default, lower, upper, units, description, groups)


def default_parameter_space() -> ParameterSpace:
    """The embedded model's parameters: 22 families, 122 values (Seiler's Table 1 names).

    Bounds are plausible ranges in the spirit of Seiler's Table 1 (TRY-based for ``vmax``); they
    are this model's, not CLASSIC's.
    """
    vmax = np.array([48.0, 48.0, 50.0, 52.0, 42.0, 42.0, 23.0, 48.0, 11.5])
    c3 = ~_C4
    return ParameterSpace([
        _p("vmax", vmax, 0.6 * vmax, 1.6 * vmax, "umol CO2 m-2 s-1",
           "maximum carboxylation rate at 25 degC"),
        _p("kn", [0.50, 0.50, 0.65, 0.50, 0.50, 0.46, 0.44, 0.52, 0.52], 0.3, 0.9, "1",
           "canopy extinction coefficient"),
        _p("alpha_phtsyn", np.where(c3, 0.07, 0.04), np.where(c3, 0.05, 0.025),
           np.where(c3, 0.12, 0.065), "mol CO2 mol-1 photon", "quantum efficiency"),
        _p("sn", [2.0, 2.0, 5.0, 5.0, 3.0, 2.0, 2.0, 2.0, 2.0], 1.0, 8.0, "1",
           "exponent of soil-moisture stress on photosynthesis"),
        _p("vpd0", [1.5, 1.5, 2.0, 1.5, 2.0, 1.5, 2.0, 1.5, 2.0], 0.5, 4.0, "kPa",
           "stomatal conductance VPD parameter"),
        _p("gamma_w", 0.6, 0.0, 1.5, "1", "photosynthesis down-regulation with rising CO2",
           groups=None),
        _p("beta2", 0.95, 0.80, 0.995, "1", "co-limitation curvature of photosynthesis",
           groups=None),
        _p("rmlcoef", np.where(c3, 0.015, 0.025), np.where(c3, 0.008, 0.012),
           np.where(c3, 0.030, 0.045), "1", "leaf maintenance respiration per unit vmax"),
        _p("grescoef", 0.15, 0.08, 0.30, "1", "growth respiration coefficient"),
        _p("minlvfr", 0.05, 0.02, 0.20, "1", "minimum live wood fraction", groups=None),
        _p("omega", np.where(_TREE, 0.8, 0.5), 0.0, 2.0, "1",
           "shift of allocation to roots under water stress"),
        _p("kappa", np.where(_TREE, 1.6, 1.2), 0.8, 3.0, "1",
           "minimum stem and root to leaf biomass ratio"),
        _p("lfespany", [5.0, 1.0, 1.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
           [2.0, 0.5, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
           [8.0, 1.5, 3.0, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5], "yr", "leaf life span"),
        _p("maxage", [250.0, 300.0, 250.0, 250.0, 200.0, 20.0, 20.0, 20.0, 20.0],
           [125.0, 150.0, 125.0, 125.0, 100.0, 10.0, 10.0, 10.0, 10.0],
           [500.0, 600.0, 500.0, 500.0, 400.0, 40.0, 40.0, 40.0, 40.0], "yr",
           "maximum plant age (stem and root mortality)"),
        _p("avertmas", [1.85, 1.45, 2.45, 2.10, 2.10, 0.10, 0.10, 0.70, 0.70],
           [0.9, 0.7, 1.2, 1.0, 1.0, 0.05, 0.05, 0.35, 0.35],
           [3.7, 2.9, 4.9, 4.2, 4.2, 0.2, 0.2, 1.4, 1.4], "kg m-2",
           "average root biomass (root water access)"),
        _p("coldthrs", [2.0, 2.0], [-3.0, -2.0], [8.0, 8.0], "degC",
           "temperature threshold of cold leaf loss and harvest", groups="pft2"),
        _p("bsratelt", 0.45, 0.2, 0.9, "yr-1", "litter respiration rate at 15 degC", groups=None),
        _p("bsratesc", 0.026, 0.012, 0.05, "yr-1", "soil carbon respiration rate at 15 degC",
           groups=None),
        _p("humicfac", 0.4, 0.2, 0.6, "1", "humified fraction of decomposed litter", groups=None),
        _p("q10_rh", 2.0, 1.4, 3.0, "1", "Q10 of heterotrophic respiration", groups=None),
        _p("extnprob", 0.5, 0.25, 0.75, "1", "fire extinction probability", groups=None),
        _p("cmbcprm", [0.5, 0.5, 0.6, 0.7], 0.2, 0.9, "1", "combusted fraction of burned leaves",
           groups="pft4"),
    ])


@dataclass
class _Tiles:
    cell: np.ndarray  # cell of each tile, sorted
    pft: np.ndarray  # pft index of each tile
    frac: np.ndarray  # PFT fraction of the cell covered by the tile
    starts: np.ndarray  # first tile of each cell (for np.add.reduceat)


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
    spinup_cycles : int, default 40
        Maximum number of semi-analytic spin-up cycles.
    spinup_tol : float, default 1e-3
        Change of vegetation carbon between cycles (area-weighted sum of absolute changes over
        the total) below which the spin-up has converged; a member that does not converge fails
        with that reason.
    chunk_size : int, default 32
        Members simulated together in one array operation; results do not depend on it.

    Notes
    -----
    ``simulate(theta)`` runs every member in one vectorised call; it never raises for a member:
    members that turn unphysical fail with a reason in the returned ``failure`` variable.
    """

    def __init__(
        self,
        grid: xr.Dataset | None = None,
        drivers: xr.Dataset | None = None,
        space: ParameterSpace | None = None,
        spinup_cycles: int = 40,
        spinup_tol: float = 1e-3,
        chunk_size: int = 32,
    ):
        self.grid = make_grid() if grid is None else grid
        self.drivers = make_drivers(self.grid) if drivers is None else drivers
        self.space = default_parameter_space() if space is None else space
        self.spinup_cycles = spinup_cycles
        self.spinup_tol = spinup_tol
        self.chunk_size = chunk_size
        if chunk_size < 1:
            raise ValueError(f"LandCarbonModel: chunk_size must be >= 1, got {chunk_size}")
        missing = sorted(set(default_parameter_space().names) - set(self.space.names))
        if missing:
            raise ValueError(f"LandCarbonModel: parameter space lacks {missing}")
        if self.drivers.sizes["cell"] != self.grid.sizes["cell"]:
            raise ValueError("LandCarbonModel: drivers and grid have different numbers of cells")
        frac = self.grid["pft_frac"].to_numpy()
        cell, pft = np.nonzero(frac > 0)
        self._tiles = _Tiles(
            cell=cell,
            pft=pft,
            frac=frac[cell, pft],
            starts=np.searchsorted(cell, np.arange(frac.shape[0])),
        )
        self._tile_area = self.grid["area"].to_numpy()[cell] * self._tiles.frac
        self._t_acclim = self.drivers["tas_clim"].to_numpy().mean(axis=1)[cell]
        if np.any(np.diff(self._tiles.starts) == 0) or cell.max() != frac.shape[0] - 1:
            raise ValueError("LandCarbonModel: every grid cell needs a PFT with non-zero fraction")

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
        return self._run(theta, variables)

    # --------------------------------------------------------------- internals
    def _tile_params(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        fam = self.space.unflatten(theta)
        out = {}
        for name, values in fam.items():
            p = self.space[name]
            if p.is_scalar:  # (member, 1): broadcasts over tiles at no cost
                out[name] = values[:, None].copy()
            else:
                out[name] = np.ascontiguousarray(p.per_pft(values)[:, self._tiles.pft])
        return out

    def _run(self, theta: np.ndarray, variables: list[str]) -> xr.Dataset:
        n_m = theta.shape[0]
        d = self.drivers
        times = d["time"].to_index()
        write = np.flatnonzero(times.year >= int(d.attrs["start"]))
        n_cell = self.grid.sizes["cell"]
        out = {
            "gridded": {v: np.empty((n_m, n_cell, write.size)) for v in variables},
            "global": {v: np.empty((n_m, write.size)) for v in (*_FLUXES, *_POOLS)},
            "failed": np.zeros(n_m, dtype=bool),
            "reason": np.array([""] * n_m, dtype=object),
        }
        # members run in chunks small enough for the state arrays to stay in cache; each
        # member's arithmetic is independent of the others, so chunking changes no result
        chunks = [slice(lo, min(lo + self.chunk_size, n_m)) for lo in range(0, n_m, self.chunk_size)]
        for sl in chunks:
            self._run_chunk(theta, sl, out, write)
        return self._assemble(
            theta, out["gridded"], out["global"], out["failed"], out["reason"], times[write]
        )

    def _run_chunk(self, theta_all, sl, out, write) -> None:
        tiles = self._tiles
        theta = theta_all[sl]
        n_m, n_t = theta.shape[0], self.n_tiles
        d = self.drivers
        P = self._tile_params(theta)
        const = self._constants(P)
        state, failed, reason = self._spinup(P, const, n_m, n_t)
        times = d["time"].to_index()
        gridded = {v: arr[sl] for v, arr in out["gridded"].items()}
        glob_monthly = {v: arr[sl] for v, arr in out["global"].items()}
        area = self.grid["area"].to_numpy()
        frac = tiles.frac
        cellc = tiles.cell
        clim = {k: d[k].to_numpy() for k in ("tas", "wsoil", "rsds", "dayfrac", "daytrend", "vpd")}
        co2 = d["co2"].to_numpy()
        luc = d["luc_emission"].to_numpy()
        days = d["days"].to_numpy()
        first_write = write[0] if write.size else times.size
        needed = sorted(set(gridded) | set(_FLUXES) | set(_POOLS))
        for it in range(times.size):
            cl = self._climate({k: v[cellc, it] for k, v in clim.items()}, co2[it])
            dt = days[it] / 365.25
            flux = self._step(state, P, const, cl, co2[it], luc[it] / _LUC_REF_CVEG, dt)
            newly = self._check(state, flux) & ~failed
            if newly.any():
                for m in np.flatnonzero(newly):
                    reason[m] = self._reason(state, flux, m, times[it])
                failed |= newly
                for arr in state.values():
                    arr[failed] = 0.0
            if it < first_write:
                continue
            k_out = it - first_write
            per_second = 1.0 / (days[it] * 86400.0)
            tile_vals = {
                "lai": flux["lai"],
                "hfls": flux["hfls"],
                "cveg": state["leaf"] + state["stem"] + state["root"],
                "clitter": state["litter"],
                "csoil": state["soil"],
            }
            for v in _FLUXES:
                tile_vals[v] = flux[v] * per_second
            stack = np.stack([tile_vals[v] for v in needed])  # (var, member, tile)
            cellv = np.add.reduceat(stack * frac, tiles.starts, axis=2)
            glob = cellv @ area
            for i, v in enumerate(needed):
                if v in gridded:
                    gridded[v][:, :, k_out] = cellv[i]
                if v in glob_monthly:
                    glob_monthly[v][:, k_out] = glob[i]
        out["failed"][sl] = failed
        out["reason"][sl] = reason

    def _constants(self, P: dict[str, np.ndarray]) -> dict[str, np.ndarray | float]:
        """Quantities that depend on parameters and PFT only, shape (member, tile)."""
        pft = self._tiles.pft
        mort = -np.log(0.01) / P["maxage"]
        return dict(
            sla=25.0 / np.sqrt(P["lfespany"]),
            mort=mort,
            k_leaf0=1.0 / P["lfespany"],
            k_root0=_ROOT_TURN[pft] + mort,
            log_q10=np.log(P["q10_rh"]),
            fire_scale=_FIRE_RATE * (1.0 - P["extnprob"]),
            cold_decid=_COLD_DECID[pft],
            dry_decid=_DRY_DECID[pft],
            tree=_TREE[pft],
            c4=_C4[pft],
            inv_avertmas=1.0 / P["avertmas"],
            chi_vpd0=_CHI_MAX[pft] * P["vpd0"],
            inv_kn=1.0 / P["kn"],
            four_beta=4.0 * P["beta2"],
            inv_2beta=0.5 / P["beta2"],
            rml_vmax=P["rmlcoef"] * P["vmax"] * _UMOL_TO_KGC_YR,
            a_leaf=np.broadcast_to(_ALLOC[pft, 0], P["kn"].shape),
            a_stem=np.broadcast_to(_ALLOC[pft, 1], P["kn"].shape),
            a_root=_ALLOC[pft, 2],
            shift_stem=np.where(_TREE[pft], 0.5, 0.0),
            shift_root=np.where(_TREE[pft], 0.5, 1.0),
        )

    def _initial_state(self, n_m: int, n_t: int) -> dict[str, np.ndarray]:
        tree = _TREE[self._tiles.pft]
        shape = (n_m, n_t)
        return {
            "leaf": np.broadcast_to(np.where(tree, 0.3, 0.1), shape).copy(),
            "stem": np.broadcast_to(np.where(tree, 5.0, 0.0), shape).copy(),
            "root": np.broadcast_to(np.where(tree, 1.5, 0.3), shape).copy(),
            "litter": np.broadcast_to(np.where(tree, 0.5, 0.2), shape).copy(),
            "soil": np.broadcast_to(np.where(tree, 10.0, 5.0), shape).copy(),
        }

    def _spinup(self, P, const, n_m, n_t):
        """Semi-analytic spin-up to the pre-industrial equilibrium.

        Each cycle runs one climatological year and sets every pool to ``input / loss rate`` of
        that year (``X* = I / k`` with ``k = loss / mean(X)``); vegetation feeds back on its own
        inputs through LAI, so cycles repeat until vegetation carbon changes by less than
        ``spinup_tol``. Litter and soil are exact given the year's litter fall.
        """
        state = self._initial_state(n_m, n_t)
        failed = np.zeros(n_m, dtype=bool)
        reason = np.array([""] * n_m, dtype=object)
        change = np.full(n_m, np.inf)
        climate = self._spinup_climate()
        for _cycle in range(self.spinup_cycles):
            # a member stops cycling once it has converged, so its result never depends on the
            # other members of the batch
            active = ~(change < self.spinup_tol) & ~failed
            if not active.any():
                break
            # damping grows with the cycle number so that 2-cycle oscillations die out
            change[active] = self._spinup_cycle(
                state, P, const, failed, reason, 0.5 * 0.93**_cycle, active, climate
            )
        not_conv = ~(change < self.spinup_tol) & ~failed
        for i in np.flatnonzero(not_conv):
            reason[i] = (
                f"spin-up did not converge in {self.spinup_cycles} cycles "
                f"(vegetation carbon still changing by {change[i]:.2%} per cycle)"
            )
        failed |= not_conv
        for arr in state.values():
            arr[failed] = 0.0
        return state, failed, reason

    def _spinup_climate(self) -> list[dict[str, np.ndarray]]:
        """The twelve months of the spin-up climatology, as tile climate terms."""
        d = self.drivers
        cellc = self._tiles.cell
        clim = {k: d[f"{k}_clim"].to_numpy() for k in ("tas", "wsoil", "rsds", "dayfrac", "daytrend", "vpd")}
        co2 = float(d.attrs["co2_preindustrial"])
        return [self._climate({k: v[cellc, m] for k, v in clim.items()}, co2) for m in range(12)]

    def _spinup_cycle(self, state, P, const, failed, reason, power, active, climate) -> np.ndarray:
        """One spin-up cycle of the ``active`` members in place; returns their change."""
        frozen = {k: v[~active].copy() for k, v in state.items()}
        days = np.array([31, 28.25, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
        co2 = float(self.drivers.attrs["co2_preindustrial"])
        n_m, n_t = state["leaf"].shape
        pools = tuple(state)
        inflow = {k: np.zeros((n_m, n_t)) for k in pools}
        outflow = {k: np.zeros((n_m, n_t)) for k in pools}
        mean = {k: np.zeros((n_m, n_t)) for k in pools}
        veg_before = state["leaf"] + state["stem"] + state["root"]
        for m in range(12):
            dt = days[m] / 365.25
            flux = self._step(state, P, const, climate[m], co2, 0.0, dt, budget=(inflow, outflow))
            for k in pools:
                mean[k] += state[k] * dt
            bad = self._check(state, flux) & ~failed & active
            for i in np.flatnonzero(bad):
                reason[i] = "spin-up: " + self._reason(state, flux, i, None)
            failed |= bad
        for k in pools:
            ok = outflow[k] > 0
            ratio = inflow[k] / np.where(ok, outflow[k], 1.0)
            if k in _DAMPED:  # fast pools that feed back on their own input: damp the jump
                ratio = np.clip(ratio**power, 0.5, 2.0)
            state[k] = np.where(ok, mean[k] * ratio, state[k])
            state[k][failed] = 0.0
        for k, v in frozen.items():
            state[k][~active] = v
        veg_after = state["leaf"] + state["stem"] + state["root"]
        w = self._tile_area
        change = (np.abs(veg_after - veg_before) @ w) / np.maximum(veg_after @ w, 1.0)  # kgC
        return change[active]

    def _climate(self, met: dict[str, np.ndarray], co2: float) -> dict[str, np.ndarray]:
        """Terms that depend on the month's climate and PFT only, shape (tile,)."""
        pft = self._tiles.pft
        T, W, fd = met["tas"], met["wsoil"], met["dayfrac"]
        e25 = np.exp(0.0693 * (T - 25.0))
        f_t = e25 / ((1.0 + np.exp(0.3 * (T - _T_HIGH[pft]))) * (1.0 + np.exp(0.3 * (_T_LOW[pft] - T))))
        gamma_star = 42.75 * np.exp(0.0315 * (T - 25.0))
        return {
            "T": T,
            "W": W,
            "fd": fd,
            "f_t": f_t * (fd > 0.0),  # no photosynthesis in polar night
            "e25": e25,
            "f_q": np.exp(0.0693 * (T - self._t_acclim)),
            "par_day": 0.5 * 4.57 * met["rsds"] / np.maximum(fd, 0.02),
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

    def _step(self, s, P, c, cl, co2, luc_rate, dt, budget=None):
        """Advance the state ``s`` by one month in place; return the month's fluxes (kgC m-2)."""
        leaf, stem, root, litter, soil = s["leaf"], s["stem"], s["root"], s["litter"], s["soil"]
        T, W = cl["T"], cl["W"]
        lai = leaf * c["sla"]
        # ---------------- water and stomata
        access = 1.0 - np.exp(-root * c["inv_avertmas"])
        weff = W * (0.6 + 0.4 * access)
        f_w = 1.0 - np.exp(P["sn"] * np.log1p(-weff))
        ci = c["chi_vpd0"] * co2 / (P["vpd0"] + cl["half_vpd"])
        # ---------------- photosynthesis (daytime rates, umol m-2 s-1)
        down = 1.0 / (1.0 + P["gamma_w"] * cl["log_co2"])
        ext = np.exp(-P["kn"] * lai)
        lam = (1.0 - ext) * c["inv_kn"]
        gs = cl["gamma_star"]
        pos = np.maximum(ci - gs, 0.0)
        c4 = c["c4"]
        co2_c = np.where(c4, ci / (ci + 60.0), pos / (ci + cl["k_m"]))
        co2_e = np.where(c4, 1.0, pos / (ci + 2.0 * gs))
        jc = (P["vmax"] * down) * (cl["f_t"] * f_w) * lam * co2_c
        je = P["alpha_phtsyn"] * cl["par_day"] * (1.0 - ext) * co2_e
        tot = jc + je
        j = (tot - np.sqrt(np.maximum(tot * tot - c["four_beta"] * jc * je, 0.0))) * c["inv_2beta"]
        gpp_rate = j * (cl["fd"] * _UMOL_TO_KGC_YR)  # kgC m-2 yr-1
        # ---------------- autotrophic respiration (kgC m-2 yr-1)
        r_leaf = c["rml_vmax"] * down * lam * cl["e25"]
        # stem and root respiration acclimated to the local annual-mean temperature
        live = P["minlvfr"] + (1.0 - P["minlvfr"]) * np.exp(-stem)
        r_m = r_leaf + (_RM_STEM * live * stem + _RM_ROOT * root) * cl["f_q"]
        r_g = P["grescoef"] * np.maximum(gpp_rate - r_m, 0.0)
        npp = gpp_rate - r_m - r_g
        # ---------------- phenology and allocation
        cold = c["cold_decid"] * _logistic(P["coldthrs"] - T)
        dry = c["dry_decid"] * _logistic((0.15 - weff) / 0.03)
        dormant = np.maximum(cold, dry)
        a_l = c["a_leaf"]
        a_s = c["a_stem"]
        a_r = c["a_root"] + P["omega"] * (1.0 - f_w)
        norm = a_l + a_s + a_r
        support = np.clip((stem + root) / (P["kappa"] * leaf + 1e-9), 0.0, 1.0)
        # leaf allocation falls as the canopy closes (light at the canopy floor, ext**0.5)
        a_l_eff = a_l * support * (1.0 - dormant) * np.sqrt(ext) * cl["season"]
        shift = a_l - a_l_eff
        a_s = a_s + shift * c["shift_stem"]
        a_r = a_r + shift * c["shift_root"]
        a_l, a_s, a_r = a_l_eff / norm, a_s / norm, a_r / norm
        npp_pos = np.maximum(npp, 0.0) * dt
        npp_neg = np.maximum(-npp, 0.0) * dt
        # ---------------- fire and land use (rates, yr-1)
        fuel = np.clip((leaf + litter - 0.1) / 0.9, 0.0, 1.0)
        burn = c["fire_scale"] * cl["fire_env"] * fuel
        luc = np.where(c["tree"], luc_rate, 0.0)
        cmb = P["cmbcprm"]
        # ---------------- vegetation losses
        k_l = c["k_leaf0"] + 6.0 * dormant + burn + luc
        k_s = c["mort"] * c["tree"] + 0.3 * burn + luc
        k_r = c["k_root0"] + luc
        f_l = -np.expm1(-k_l * dt) / k_l
        f_s = -np.expm1(-k_s * dt) / np.where(k_s > 0, k_s, 1.0)
        f_r = -np.expm1(-k_r * dt) / k_r
        leaf_fire = f_l * burn * cmb * leaf
        leaf_luc = f_l * luc * leaf
        leaf_litter = f_l * leaf * k_l - leaf_fire - leaf_luc
        stem_fire = f_s * 0.1 * burn * stem
        stem_luc = f_s * luc * stem
        stem_litter = f_s * k_s * stem - stem_fire - stem_luc
        root_luc = f_r * luc * root
        root_litter = f_r * k_r * root - root_luc
        leaf_out = leaf_fire + leaf_luc + leaf_litter
        stem_out = stem_fire + stem_luc + stem_litter
        root_out = root_luc + root_litter
        # ---------------- decomposition
        env = np.exp(c["log_q10"] * cl["t10"]) * cl["env"]
        fire_litter = -np.expm1(-burn * 0.5 * dt) * litter
        decomp = -np.expm1(-P["bsratelt"] * env * dt) * (litter - fire_litter)
        rh_lit = (1.0 - P["humicfac"]) * decomp
        humus = decomp - rh_lit
        rh_soil = -np.expm1(-P["bsratesc"] * env * dt) * soil
        # ---------------- update vegetation (negative NPP drawn from all pools pro rata)
        leaf_n = leaf - leaf_out
        stem_n = stem - stem_out
        root_n = root - root_out
        veg_n = leaf_n + stem_n + root_n
        # respiration cannot exceed the carbon there is: a starving tile dies back to zero
        starve = np.maximum(npp_neg - veg_n, 0.0)
        share = np.minimum(npp_neg / np.maximum(veg_n, 1e-300), 1.0)
        leaf_draw, stem_draw, root_draw = share * leaf_n, share * stem_n, share * root_n
        leaf_a = leaf_n - leaf_draw + a_l * npp_pos
        root_a = root_n - root_draw + a_r * npp_pos
        # leaf onset from root storage (at most a fifth of the roots a month)
        leaf_min = _LAI_MIN / c["sla"]
        onset = (1.0 - dormant) * np.minimum(np.maximum(leaf_min - leaf_a, 0.0), 0.2 * root_a)
        leaf_in = a_l * npp_pos + onset
        stem_in = a_s * npp_pos
        s["leaf"] = leaf_a + onset
        s["stem"] = stem_n - stem_draw + stem_in
        s["root"] = root_a - onset
        to_litter = leaf_litter + stem_litter + root_litter
        s["litter"] = litter - fire_litter - decomp + to_litter
        s["soil"] = soil - rh_soil + humus
        if budget is not None:
            inflow, outflow = budget
            inflow["leaf"] += leaf_in
            outflow["leaf"] += leaf_out + leaf_draw
            inflow["stem"] += stem_in
            outflow["stem"] += stem_out + stem_draw
            inflow["root"] += a_r * npp_pos
            outflow["root"] += root_out + root_draw + onset
            inflow["litter"] += to_litter
            outflow["litter"] += fire_litter + decomp
            inflow["soil"] += humus
            outflow["soil"] += rh_soil
        gpp = gpp_rate * dt
        ra = (r_m + r_g) * dt - starve
        rh = rh_lit + rh_soil
        fire = leaf_fire + stem_fire + fire_litter
        fluc = leaf_luc + stem_luc + root_luc
        # ---------------- latent heat (W m-2, monthly mean)
        rn = cl["rn"]
        gc = 1.6 * j / np.maximum(co2 - ci, 1.0)  # mol m-2 s-1 in daylight
        le_tr = gc * cl["le_per_gc"]
        le_soil = 0.5 * rn * W * np.exp(-0.5 * lai)
        cap = np.maximum(0.95 * rn, 1e-6)
        hfls = cap * -np.expm1(-(le_tr + le_soil) / cap)
        return {
            "gpp": gpp,
            "ra": ra,
            "rh": rh,
            "fire": fire,
            "fluc": fluc,
            "nbp": gpp - ra - rh - fire - fluc,
            "hfls": hfls,
            "lai": lai,
        }

    @staticmethod
    def _check(state, flux) -> np.ndarray:
        total = sum(arr.sum(axis=1) for arr in state.values())  # NaN or inf propagate
        bad = ~np.isfinite(total) | (flux["lai"].max(axis=1) > LAI_MAX)
        for arr in state.values():
            bad |= arr.min(axis=1) < -1e-12
        return bad

    def _reason(self, state, flux, m, when) -> str:
        at = "" if when is None else f" in {when:%Y-%m}"
        for name, arr in state.items():
            if not np.all(np.isfinite(arr[m])):
                return f"non-finite {name} carbon{at}"
        for name, arr in state.items():
            if np.any(arr[m] < -1e-12):
                t = int(np.argmin(arr[m]))
                return (
                    f"negative {name} carbon ({arr[m, t]:.3g} kg m-2) for "
                    f"{PFTS[self._tiles.pft[t]]} in cell {self._tiles.cell[t]}{at}"
                )
        t = int(np.argmax(flux["lai"][m]))
        return (
            f"runaway LAI {flux['lai'][m, t]:.1f} > {LAI_MAX} for {PFTS[self._tiles.pft[t]]} "
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
        data["failed"] = ("member", failed.copy())
        data["failure"] = ("member", np.array([str(r) for r in reason], dtype=str))
        data["theta"] = (("member", "parameter"), theta)
        coords["year"] = uyears
        coords["parameter"] = self.space.all_labels
        return xr.Dataset(data, coords=coords, attrs={"model": "bayescal embedded land-carbon model"})
