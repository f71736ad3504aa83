"""Experimental designs over a parameter space: Latin hypercube, Sobol, uniform random.

Every design is drawn in the unit cube of the space's free values with :mod:`scipy.stats.qmc`,
optionally inside a sub-box of it, and returned as physical values on (member, parameter).
Designs are reproducible from ``seed``.

Sub-boxes, both used by Seiler's calibration:

* :func:`box_around` — ``point +/- fraction`` of each parameter's range (e.g. +/- 10 %), clipped to
  the bounds;
* :func:`box_spanning` — the range spanned by a set of points (e.g. the best 10 % of runs).
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.spatial.distance import pdist
from scipy.stats import qmc

from . import ParameterSpace

__all__ = ["latin_hypercube", "sobol", "uniform", "box_around", "box_spanning", "Box", "int_seed"]

Box = tuple[np.ndarray, np.ndarray]


def _check_box(space: ParameterSpace, box: Box | None) -> Box:
    if box is None:
        return np.zeros(space.n_free), np.ones(space.n_free)
    lo, hi = (np.asarray(b, dtype=float) for b in box)
    if lo.shape != (space.n_free,) or hi.shape != (space.n_free,):
        raise ValueError(f"box bounds must each have {space.n_free} values (the free parameters)")
    bad = np.flatnonzero(~((0 <= lo) & (lo < hi) & (hi <= 1)))
    if bad.size:
        raise ValueError(
            f"box for {space.labels[bad[0]]!r} is [{lo[bad[0]]}, {hi[bad[0]]}]; "
            "need 0 <= lower < upper <= 1 in unit-cube coordinates"
        )
    return lo, hi


def int_seed(seed: int | np.random.Generator | None) -> int | None:
    """An int seed for a library that takes only ints (SALib, numpy's global generator in
    DFO-LS): an int (or None) as it is, a ``numpy.random.Generator`` its next draw."""
    if seed is None or isinstance(seed, int | np.integer):
        return None if seed is None else int(seed)
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(2**31))
    raise TypeError(f"seed must be an int or a numpy.random.Generator, got {type(seed).__name__}")


def _result(space: ParameterSpace, u01: np.ndarray, box: Box | None, kind: str, seed) -> xr.DataArray:
    lo, hi = _check_box(space, box)
    u = lo + u01 * (hi - lo)
    da = space.to_dataarray(space.from_unit(u))
    da.attrs = {"design": kind, "seed": "none" if seed is None else str(seed)}
    return da


def _n(n: int) -> int:
    if int(n) != n or n < 1:
        raise ValueError(f"number of members must be a positive integer, got {n}")
    return int(n)


def latin_hypercube(
    space: ParameterSpace,
    n: int,
    seed: int | np.random.Generator | None = None,
    box: Box | None = None,
    optimization: str | None = None,
    candidates: int = 20,
) -> xr.DataArray:
    """A Latin hypercube: exactly one point per stratum ``[k/n, (k+1)/n)`` in every dimension.

    Parameters
    ----------
    space : ParameterSpace
    n : int
        Number of members.
    seed : int or numpy.random.Generator, optional
    box : (lower, upper), optional
        Sub-box in unit-cube coordinates of the free values (see :func:`box_around`).
    optimization : {None, "maximin", "random-cd", "lloyd"}
        ``"maximin"`` keeps, of ``candidates`` hypercubes, the one with the largest smallest
        distance between points; ``"random-cd"`` and ``"lloyd"`` are scipy's optimisations
        (``"lloyd"`` does not keep the one-point-per-stratum property).

    Returns
    -------
    xarray.DataArray
        Physical values on (member, parameter).
    """
    n = _n(n)
    rng = np.random.default_rng(seed)
    if optimization == "maximin":
        best, best_d = None, -np.inf
        for _ in range(candidates):
            u = qmc.LatinHypercube(d=space.n_free, rng=rng).random(n)
            d = pdist(u).min() if n > 1 else np.inf
            if d > best_d:
                best, best_d = u, d
        u = best
    elif optimization in (None, "random-cd", "lloyd"):
        u = qmc.LatinHypercube(d=space.n_free, optimization=optimization, rng=rng).random(n)
    else:
        raise ValueError(
            f"unknown optimization {optimization!r}; use None, 'maximin', 'random-cd' or 'lloyd'"
        )
    return _result(space, u, box, f"latin_hypercube({optimization})", seed)


def sobol(
    space: ParameterSpace, n: int, seed: int | np.random.Generator | None = None, box: Box | None = None
) -> xr.DataArray:
    """A scrambled Sobol' sequence (best balanced when ``n`` is a power of two)."""
    n = _n(n)
    engine = qmc.Sobol(d=space.n_free, scramble=True, rng=np.random.default_rng(seed))
    m = int(np.log2(n))
    u = engine.random_base2(m) if 2**m == n else engine.random(n)
    return _result(space, u, box, "sobol", seed)


def uniform(
    space: ParameterSpace, n: int, seed: int | np.random.Generator | None = None, box: Box | None = None
) -> xr.DataArray:
    """Independent uniform random points."""
    u = np.random.default_rng(seed).random((_n(n), space.n_free))
    return _result(space, u, box, "uniform", seed)


def box_around(space: ParameterSpace, point: np.ndarray, fraction: float = 0.1) -> Box:
    """Unit-cube box of ``point +/- fraction`` of each free parameter's range, clipped to bounds.

    Parameters
    ----------
    point : array_like, shape (n_free,)
        Physical free values (e.g. the optimum).
    fraction : float
        Half-width as a fraction of the range (Seiler's local ensemble: 0.1).
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    u = space.to_unit(space.check(point))
    lo, hi = np.clip(u - fraction, 0, 1), np.clip(u + fraction, 0, 1)
    hi = np.maximum(hi, lo + 1e-12)
    return lo, np.minimum(hi, 1.0)


def box_spanning(space: ParameterSpace, points: np.ndarray) -> Box:
    """Unit-cube box spanned by physical free ``points`` (n, n_free), e.g. the best runs."""
    u = space.to_unit(space.check(np.atleast_2d(points)))
    lo, hi = u.min(axis=0), u.max(axis=0)
    flat = np.flatnonzero(hi <= lo)
    if flat.size:
        raise ValueError(
            f"the points do not span {space.labels[flat[0]]!r} (all equal); fix it or widen the box"
        )
    return lo, hi
