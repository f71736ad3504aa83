"""Dagon et al.'s one-at-a-time screening of a gridded model (CLM5 paper, Eqs. 1-2).

For each free value p, the model runs at its minimum and maximum with the others at their
defaults (:func:`bayescal.analysis.sensitivity.oat_design`). For each output field v (a time mean per
cell, e.g. 5-year annual mean GPP):

* parameter effect (Eq. 1): ``PE(p)_v`` = area-weighted global mean of the per-cell
  ``|X_p,max - X_p,min|``; ranked per output from highest (rank 1) and the ranks averaged over the
  outputs (``pe_mean_rank``; ``pe_rank`` orders that average);
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

from ..parameters import ParameterSpace
from ..run.ensemble import member_status
from .sensitivity import SensitivityError, oat_design

__all__ = ["dagon_oat"]


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

    Returns
    -------
    xarray.Dataset
        ``pe`` and ``pe_rank_by_output`` (parameter, output), ``pe_mean_rank``, ``pe_rank``,
        ``pc_pairs`` (parameter, parameter2, output), ``pc``, ``pc_rank``, ``combined``,
        ``combined_rank`` (parameter). Failed runs give NaN effects (ranked last).
    """
    if not fields:
        raise SensitivityError("give at least one output field")
    d = space.n_free
    theta = oat_design(space)
    ds = simulator(space.expand(theta))
    failed = member_status(ds)[0] != "done"
    w = np.asarray(area, dtype=float).reshape(-1)
    names = list(fields)
    pe = np.empty((d, len(names)))
    pcs = np.empty((d, d, len(names)))
    lo, hi = 1 + 2 * np.arange(d), 2 + 2 * np.arange(d)
    for j, name in enumerate(names):
        f = fields[name](ds)
        if f.dims[0] != "member" or f.ndim != 2 or f.shape[1] != w.size:
            raise SensitivityError(f"field {name!r} must be on (member, cell) with {w.size} cells, "
                                   f"got {f.dims} {f.shape}")
        x = np.where(failed[:, None], np.nan, f.values)
        maps = np.abs(x[hi] - x[lo])  # (parameter, cell): Eq. 1 per cell
        pe[:, j] = maps @ w / w.sum()
        pcs[:, :, j] = _weighted_corr(maps, w)
    pe_rank_v = _rank(pe, descending=True)
    pe_mean = pe_rank_v.mean(axis=1)
    pc = _pattern_score(pcs)
    pe_rank, pc_rank = _rank(pe_mean, descending=False), _rank(pc, descending=False)
    combined = 0.5 * (pe_rank + pc_rank)
    return xr.Dataset(
        {"pe": (("parameter", "output"), pe), "pe_rank_by_output": (("parameter", "output"), pe_rank_v),
         "pe_mean_rank": ("parameter", pe_mean), "pe_rank": ("parameter", pe_rank),
         "pc_pairs": (("parameter", "parameter2", "output"), pcs), "pc": ("parameter", pc),
         "pc_rank": ("parameter", pc_rank), "combined": ("parameter", combined),
         "combined_rank": ("parameter", _rank(combined, descending=False))},
        coords={"parameter": space.labels, "parameter2": space.labels, "output": names},
        attrs={"method": "Dagon et al. one-at-a-time", "runs": int(theta.shape[0]),
               "failed_runs": int(failed.sum())},
    )
