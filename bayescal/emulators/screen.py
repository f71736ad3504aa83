"""Dagon et al.'s emulator screen: the cost over very many points of the space, and its optimum.

:func:`emulator_screen` evaluates an emulator's mean at ``n`` quasi-random points of the unit cube
(Sobol'; 10^7 in Dagon et al.) in batches -- memory stays at one batch -- and keeps the histogram of
the cost and the ``k`` best points. :func:`emulator_optimum` minimises the emulated cost with
scipy's differential evolution (vectorised: one emulator call per generation); the caller then
verifies the optimum with a model run (Dagon et al.'s workflow).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import xarray as xr
from scipy.stats import qmc

__all__ = ["emulator_optimum", "emulator_screen"]


def _cost(emulator: Any, u: np.ndarray) -> np.ndarray:
    y = np.asarray(emulator.predict(u), dtype=float)
    return y.reshape(u.shape[0], -1).sum(axis=1) if y.ndim > 1 else y


def emulator_screen(emulator: Any, d: int, n: int = 10_000_000, batch: int = 2**18, k: int = 100,
                    bins: int = 200, seed: int = 0, labels: list[str] | None = None) -> xr.Dataset:
    """Emulated cost at ``n`` scrambled-Sobol' points of the unit cube ``[0, 1]^d``.

    The cost is the emulator's mean (summed over outputs when it has several). The histogram's
    range comes from the first batch, widened by half its span on each side; costs outside fall
    in the end bins (counted in ``attrs["below"]``/``["above"]``).

    Returns
    -------
    xarray.Dataset
        ``count`` on ``bin`` (with ``bin_lower``, ``bin_upper``), the ``k`` best ``u`` (best,
        parameter) and their ``cost``; attrs ``n``, ``min``, ``max``, ``mean``.
    """
    sampler = qmc.Sobol(d=d, scramble=True, seed=seed)
    best_u, best_c = np.empty((0, d)), np.empty(0)
    counts = np.zeros(bins, dtype=np.int64)
    edges, total, lo_out, hi_out = None, 0.0, 0, 0
    c_min, c_max, done = np.inf, -np.inf, 0
    while done < n:
        m = min(batch, n - done)
        with warnings.catch_warnings():  # a last batch that is not a power of 2 loses no coverage here
            warnings.filterwarnings("ignore", message=".*balance properties of Sobol", category=UserWarning)
            u = sampler.random(m)
        c = _cost(emulator, u)
        if edges is None:
            span = float(np.ptp(c)) or 1.0
            edges = np.linspace(c.min() - 0.5 * span, c.max() + 0.5 * span, bins + 1)
        idx = np.clip(np.searchsorted(edges, c, side="right") - 1, 0, bins - 1)
        counts += np.bincount(idx, minlength=bins)
        lo_out += int((c < edges[0]).sum())
        hi_out += int((c > edges[-1]).sum())
        total += float(c.sum())
        c_min, c_max = min(c_min, float(c.min())), max(c_max, float(c.max()))
        keep = np.argpartition(c, min(k, m) - 1)[:k]
        best_u, best_c = np.vstack([best_u, u[keep]]), np.concatenate([best_c, c[keep]])
        order = np.argsort(best_c, kind="stable")[:k]
        best_u, best_c = best_u[order], best_c[order]
        done += m
    labels = labels or [f"x{i}" for i in range(d)]
    return xr.Dataset(
        {"count": ("bin", counts), "bin_lower": ("bin", edges[:-1]), "bin_upper": ("bin", edges[1:]),
         "u": (("best", "parameter"), best_u), "cost": ("best", best_c)},
        coords={"parameter": labels},
        attrs={"n": int(n), "min": c_min, "max": c_max, "mean": total / n, "below": lo_out, "above": hi_out},
    )


def emulator_optimum(emulator: Any, d: int, seed: int = 0, pop_size: int = 20, max_generations: int = 200,
                     x0: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """The emulated cost's minimum in the unit cube by differential evolution (one call a generation).

    Returns the unit-cube point and its emulated cost; verify it with a model run.
    """
    from scipy.optimize import differential_evolution

    sol = differential_evolution(lambda x: _cost(emulator, np.asarray(x).T), [(0.0, 1.0)] * d,
                                 popsize=pop_size, maxiter=max_generations, rng=np.random.default_rng(seed),
                                 vectorized=True, updating="deferred", polish=False, x0=x0, tol=1e-8)
    return np.asarray(sol.x), float(sol.fun)
