"""Dagon et al.'s one-at-a-time screening of a gridded model (CLM5 paper, Eqs. 1-2).

The screened unit is a parameter family or a single value (``unit``). A family's values (e.g. the
nine PFT values of ``vmax``) go to their own minima together and then to their maxima, with
everything else at its defaults, as Dagon perturbed each of his 34 parameters with its PFT-specific
range (``unit = "family"``, Sect. 2.2); ``unit = "value"`` perturbs each value alone. With G units
that is 2 G + 1 runs (:func:`group_oat_design`). For each output field v (a time mean per cell,
e.g. 5-year annual mean GPP):

* parameter effect (Eq. 1): ``PE(p)_v`` = area-weighted global mean of the per-cell
  ``|X_p,max - X_p,min|`` (the map itself is ``pe_map``); ranked per output from highest (rank 1)
  and the ranks averaged over the outputs (``pe_mean_rank``; ``pe_rank`` orders that average);
* pattern correlation (Eq. 2): ``PC(p, q)_v`` the area-weighted spatial correlation of the PE maps
  of p and q; ``PC(p) = (1/Q) sum_q sum_v PC(p, q)_v`` (q over all Q parameters, p included, as
  the average over a row of their Fig. S2), ranked from lowest (rank 1: the most distinct pattern);
* combined: the mean of the PE rank and the PC rank, ranked (``combined_rank``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

import numpy as np
import xarray as xr

from ..parameters import ParameterSpace, family
from ..run.ensemble import member_status
from .sensitivity import SensitivityError

__all__ = ["OAT_UNITS", "dagon_oat", "group_oat_design", "oat_groups"]

#: what one one-at-a-time perturbation moves: a whole family (Dagon et al.) or one value
OAT_UNITS = ("family", "value")


def oat_groups(space: ParameterSpace, unit: str = "value") -> dict[str, list[int]]:
    """The screened units of ``space``'s free values: name -> columns of the free values.

    ``unit = "family"``: one unit per family (named by the family, its free values in space
    order); ``"value"``: one per free value (named by its label).
    """
    if unit not in OAT_UNITS:
        raise SensitivityError(f"unit must be one of {OAT_UNITS}, got {unit!r}")
    groups: dict[str, list[int]] = {}
    for i, label in enumerate(space.labels):
        groups.setdefault(family(label) if unit == "family" else label, []).append(i)
    return groups


def group_oat_design(space: ParameterSpace, unit: str = "value") -> tuple[np.ndarray, list[str]]:
    """The one-at-a-time design (2 G + 1, n_free) of the G units of :func:`oat_groups` and their names:
    the defaults, then each unit's values at their lower (row ``1 + 2 g``) and upper (row ``2 + 2 g``)
    bounds together, the other values at their defaults."""
    groups = oat_groups(space, unit)
    theta = np.tile(space.default, (2 * len(groups) + 1, 1))
    for g, cols in enumerate(groups.values()):
        theta[1 + 2 * g, cols] = space.lower[cols]
        theta[2 + 2 * g, cols] = space.upper[cols]
    return theta, list(groups)


def _rank(x: np.ndarray, descending: bool) -> np.ndarray:
    """Ranks 1..n along axis 0 (ties in order; NaN last)."""
    from scipy.stats import rankdata

    key = np.where(np.isnan(x), np.inf, -x if descending else x)
    return rankdata(key, method="ordinal", axis=0)


def _weighted_corr(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Area-weighted Pearson correlation between the rows of ``a`` (p, cell)."""
    w = w / w.sum()
    ac = a - (a @ w)[:, None]
    cov = (ac * w) @ ac.T
    sd = np.sqrt(np.diag(cov))
    with np.errstate(invalid="ignore", divide="ignore"):
        return cov / np.outer(sd, sd)


def _pattern_score(pcs: np.ndarray) -> np.ndarray:
    """Eq. 2: per parameter, the pattern correlations summed over outputs, averaged over q.

    A parameter with no effect on an output (a constant map: its correlations are undefined)
    carries no distinct pattern there: it scores 1, the worst, for that output, so it cannot
    rank well by having nothing to correlate. Its undefined correlation in other parameters'
    rows is left out of their average (the sum over outputs is scaled to all outputs).
    """
    pcs = pcs.copy()
    d, _, n_out = pcs.shape
    for j in range(n_out):
        flat = ~np.isfinite(np.diag(pcs[:, :, j]))  # the parameter's map has zero variance
        pcs[flat, :, j] = 1.0
    with warnings.catch_warnings():  # all-NaN rows are expected (a parameter without any effect)
        warnings.simplefilter("ignore", RuntimeWarning)
        per_q = np.nanmean(pcs, axis=2) * n_out  # (parameter, q): the sum over outputs
        return np.nanmean(per_q, axis=1)


def dagon_oat(
    simulator: Callable[[np.ndarray], xr.Dataset],
    space: ParameterSpace,
    fields: Mapping[str, Callable[[xr.Dataset], xr.DataArray]],
    area: xr.DataArray | np.ndarray,
    unit: str = "value",
) -> xr.Dataset:
    """Parameter effects, pattern correlations and their ranks (see the module docstring).

    Parameters
    ----------
    simulator : callable
        ``simulator(theta (k, n_values)) -> Dataset``.
    space : ParameterSpace
        Its free values are screened.
    fields : mapping name -> callable
        Each gives a field on (member, cell) from the simulator's output (a time mean per cell).
    area : array (cell,)
        Cell areas (the weights of the global means and the pattern correlations).
    unit : {"value", "family"}
        What one perturbation moves (:func:`oat_groups`); ``parameter`` holds the units' names.

    Returns
    -------
    xarray.Dataset
        ``pe`` and ``pe_rank_by_output`` (parameter, output), ``pe_map`` (parameter, output, cell),
        ``pe_mean_rank``, ``pe_rank``, ``pc_pairs`` (parameter, parameter2, output), ``pc``,
        ``pc_rank``, ``combined``, ``combined_rank`` (parameter). Failed runs give NaN effects
        (ranked last).
    """
    if not fields:
        raise SensitivityError("give at least one output field")
    theta, units = group_oat_design(space, unit)
    d = len(units)
    ds = simulator(space.expand(theta))
    failed = member_status(ds)[0] != "done"
    w = np.asarray(area, dtype=float).reshape(-1)
    names = list(fields)
    pe = np.empty((d, len(names)))
    pcs = np.empty((d, d, len(names)))
    pe_map = np.empty((d, len(names), w.size))
    lo, hi = 1 + 2 * np.arange(d), 2 + 2 * np.arange(d)
    for j, name in enumerate(names):
        f = fields[name](ds)
        if f.dims[0] != "member" or f.ndim != 2 or f.shape[1] != w.size:
            raise SensitivityError(f"field {name!r} must be on (member, cell) with {w.size} cells, "
                                   f"got {f.dims} {f.shape}")
        x = np.where(failed[:, None], np.nan, f.values)
        maps = np.abs(x[hi] - x[lo])  # (parameter, cell): Eq. 1 per cell
        pe_map[:, j] = maps
        pe[:, j] = maps @ w / w.sum()
        pcs[:, :, j] = _weighted_corr(maps, w)
    pe_rank_v = _rank(pe, descending=True)
    pe_mean = pe_rank_v.mean(axis=1)
    pc = _pattern_score(pcs)
    pe_rank, pc_rank = _rank(pe_mean, descending=False), _rank(pc, descending=False)
    combined = 0.5 * (pe_rank + pc_rank)
    return xr.Dataset(
        {"pe": (("parameter", "output"), pe), "pe_map": (("parameter", "output", "cell"), pe_map),
         "pe_rank_by_output": (("parameter", "output"), pe_rank_v),
         "pe_mean_rank": ("parameter", pe_mean), "pe_rank": ("parameter", pe_rank),
         "pc_pairs": (("parameter", "parameter2", "output"), pcs), "pc": ("parameter", pc),
         "pc_rank": ("parameter", pc_rank), "combined": ("parameter", combined),
         "combined_rank": ("parameter", _rank(combined, descending=False))},
        coords={"parameter": units, "parameter2": units, "output": names},
        attrs={"method": "Dagon et al. one-at-a-time", "unit": unit, "runs": int(theta.shape[0]),
               "failed_runs": int(failed.sum())},
    )
