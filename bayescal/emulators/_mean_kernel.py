"""Compiled predictive mean of many GPs at once (numba), for :class:`~.active.ActiveGPEmulator`.

A sampler asks an active-subspace emulator for the mean of every output at a few dozen points,
tens of thousands of times. In numpy each output costs a squared-distance matrix, a Matérn
correlation (seven passes over it) and a product with the weights, plus Python overhead per
output; here one pass per (point, output) pair does all of it, over both cores
(``python benchmarks/bench_emulators.py --active-mean``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

_SQRT5 = math.sqrt(5.0)


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _corr_row(x_row, active_j, inv_ls_j, Z_j, matern, r2):  # pragma: no cover - compiled
    """Correlations of one point with every training run of one output, in place of ``r2``
    (the loops of :func:`active_means`, which keeps its own copy: the sampler's means stay
    bit-for-bit those of earlier versions)."""
    a, n = Z_j.shape
    r2[:] = 0.0
    for c in range(a):
        x = x_row[active_j[c]] * inv_ls_j[c]
        for k in range(n):
            d = x - Z_j[c, k]
            r2[k] += d * d
    if matern:
        for k in range(n):
            s = _SQRT5 * math.sqrt(r2[k])
            r2[k] = (1.0 + s + s * s / 3.0) * math.exp(-s)
    else:
        for k in range(n):
            r2[k] = math.exp(-0.5 * r2[k])


@njit(parallel=True, cache=True, nogil=True, fastmath=True)
def active_means(X, active, inv_ls, Z, weights, matern):  # pragma: no cover - compiled
    """Kernel part of each output's mean, ``sum_k k(x_i, z_jk) w_jk``: (points, outputs).

    ``X`` (m, d) inputs; ``active`` (J, a) each output's input columns; ``inv_ls`` (J, a) their
    inverse length scales; ``Z`` (J, a, n) the scaled training inputs, transposed so the inner
    loops run along the training runs (SIMD); ``weights`` (J, n) the GP weights times its signal
    variance; ``matern``: Matérn 5/2, else squared exponential.
    """
    m, n_out = X.shape[0], Z.shape[0]
    a, n = Z.shape[1], Z.shape[2]
    out = np.zeros((m, n_out))
    for t in prange(m * n_out):
        i, j = t // n_out, t % n_out
        r2 = np.zeros(n)
        for c in range(a):
            x = X[i, active[j, c]] * inv_ls[j, c]
            for k in range(n):
                d = x - Z[j, c, k]
                r2[k] += d * d
        acc = 0.0
        if matern:
            for k in range(n):
                s = _SQRT5 * math.sqrt(r2[k])
                acc += weights[j, k] * (1.0 + s + s * s / 3.0) * math.exp(-s)
        else:
            for k in range(n):
                acc += weights[j, k] * math.exp(-0.5 * r2[k])
        out[i, j] = acc
    return out


@njit(parallel=True, cache=True, nogil=True, fastmath=True)
def active_means_nearest(X, active, inv_ls, Z, weights, matern):  # pragma: no cover - compiled
    """:func:`active_means` and each point's largest correlation with a training run, per output:
    two (points, outputs) arrays. The correlation bounds the predictive variance
    (:meth:`~.active.ActiveGPEmulator.predict_sd_bound`)."""
    m, n_out, n = X.shape[0], Z.shape[0], Z.shape[2]
    out = np.zeros((m, n_out))
    near = np.zeros((m, n_out))
    for t in prange(m * n_out):
        i, j = t // n_out, t % n_out
        rho = np.empty(n)
        _corr_row(X[i], active[j], inv_ls[j], Z[j], matern, rho)
        acc, best = 0.0, 0.0
        for k in range(n):
            acc += weights[j, k] * rho[k]
            best = max(best, rho[k])
        out[i, j], near[i, j] = acc, best
    return out, near


def pack(gps: list, active: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """The arrays :func:`active_means` takes, from fitted GPs on equally many training runs
    (``None`` when they differ, or a mean function other than a constant is used)."""
    if len({g.X_train_.shape[0] for g in gps}) != 1 or any(g.mean not in ("zero", "constant") for g in gps):
        return None
    inv_ls = np.array([1.0 / np.asarray(g.length_scale_, float) for g in gps])
    Z = np.stack([(g.X_train_ * inv_ls[j]).T for j, g in enumerate(gps)])
    weights = np.stack([g.signal_variance_ * g._alpha for g in gps])
    offset = np.array([float(g.beta_[0]) if g.mean == "constant" else 0.0 for g in gps])
    scale = np.array([g.y_std_ for g in gps])
    shift = np.array([g.y_mean_ for g in gps])
    return np.ascontiguousarray(active, dtype=np.int64), inv_ls, np.ascontiguousarray(Z), weights, \
        offset, scale, shift
