"""Kernels, mean-function design matrices and Cholesky helpers of the GP emulator."""

from __future__ import annotations

import numpy as np
from scipy import linalg

from .base import EmulatorError

# -------------------------------------------------------------------------------------- kernels
_KERNELS = ("matern52", "rbf")
_MEANS = ("zero", "constant", "linear", "quadratic")
_SQRT5 = np.sqrt(5.0)


def _sqdist(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    d = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * (A @ B.T)
    np.maximum(d, 0.0, out=d)
    return d


def _corr(r2: np.ndarray, kind: str, grad: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Unit-variance correlation of squared scaled distance, and G with dk/dlog l_j = G z_j^2.

    Works in place on ``r2`` (which is consumed) to keep memory traffic low.
    """
    if kind == "rbf":
        r2 *= -0.5
        k = np.exp(r2, out=r2)
        return k, (k if grad else None)
    s = np.sqrt(r2, out=r2)
    s *= _SQRT5
    e = np.exp(-s)
    G = None
    if grad:
        G = s + 1.0
        G *= e
        G *= 5.0 / 3.0
    k = s * s
    k *= 1.0 / 3.0
    k += s
    k += 1.0
    k *= e
    return k, G


def _design_matrix(X: np.ndarray, mean: str) -> np.ndarray:
    if mean == "zero":
        return np.zeros((X.shape[0], 0))
    if mean == "constant":
        return np.ones((X.shape[0], 1))
    if mean == "linear":
        return np.hstack([np.ones((X.shape[0], 1)), X])
    i, j = np.triu_indices(X.shape[1])
    c = X - 0.5  # centred, so the columns are far from collinear
    return np.hstack([np.ones((X.shape[0], 1)), c, c[:, i] * c[:, j]])


def _log_bounds(b: tuple[float, float], what: str) -> tuple[float, float]:
    lo, hi = float(b[0]), float(b[1])
    if not 0 < lo <= hi:
        raise EmulatorError(f"{what} bounds must satisfy 0 < lower <= upper, got {b}")
    return np.log(lo), np.log(hi)


def _cholesky(K: np.ndarray) -> tuple[np.ndarray, float]:
    """Lower Cholesky factor; on failure add growing jitter (returned) up to 1e-4 of the diagonal."""
    try:
        return linalg.cholesky(K, lower=True, check_finite=False), 0.0
    except linalg.LinAlgError:
        pass
    scale = float(np.mean(np.diag(K)))
    for jit in scale * 10.0 ** np.arange(-10, -3):
        try:
            K2 = K.copy()
            K2[np.diag_indices_from(K2)] += jit
            return linalg.cholesky(K2, lower=True, check_finite=False), float(jit)
        except linalg.LinAlgError:
            continue
    raise np.linalg.LinAlgError("GP covariance is not positive definite even with jitter 1e-4")


def _chol_inverse(L: np.ndarray) -> np.ndarray:
    """Inverse of L L^T from its lower Cholesky factor (LAPACK potri), symmetrised."""
    inv, info = linalg.lapack.dpotri(L, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"potri failed with info={info}")
    return np.tril(inv) + np.tril(inv, -1).T
