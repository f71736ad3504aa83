"""Emulators: an exact Gaussian-process emulator of a scalar and SVD emulators of output fields.

:class:`GPEmulator` is an exact GP regression with an ARD kernel (Matérn 5/2 or squared
exponential), a fitted noise (nugget) term and a constant, linear or zero mean whose coefficients
are estimated by generalised least squares (universal kriging). Inputs are the unit cube of the
free parameters (:meth:`bayescal.parameters.ParameterSpace.to_unit`), outputs are standardised.
It follows scikit-learn's estimator conventions, so :func:`sklearn.model_selection.cross_val_score`,
:func:`sklearn.inspection.permutation_importance` and :func:`sklearn.inspection.partial_dependence`
work on it.

Why not :class:`sklearn.gaussian_process.GaussianProcessRegressor`? Its gradient of the log
marginal likelihood builds an n x n x d tensor: at the CLASSIC paper's scale (n = 1,530 runs,
d = 165 parameters) that is 3 GB per evaluation and it did not finish in 15 minutes. Here the
gradient with respect to every length scale comes from two matrix products,

    dL/dlog l_j = s2 * [ (M 1)^T z_j^2 - z_j^T M z_j ],   M = (a a^T - K^-1) o G,

with z = x / l the scaled inputs and G the kernel's radial derivative factor, so one evaluation
costs a Cholesky factorisation, an inverse and O(n^2 d) products (see ``benchmarks/bench_emulators.py``).

Leave-one-out cross-validation is exact and closed-form (Rasmussen & Williams 2006, §5.4.2,
extended to the estimated mean by Dubrule 1983): with P the top-left block of the inverse of the
bordered matrix [[K, H], [H^T, 0]], the LOO residual of point i is (P y)_i / P_ii and its
predictive variance 1 / P_ii. That equals refitting on n - 1 points with the hyper-parameters
fixed, to rounding.

:class:`SVDEmulator` reduces field outputs (members x cells/years) to their leading principal
components (centred SVD; K fixed or by explained variance) and fits one emulator per component
(a :class:`GPEmulator` or scikit-learn's MLP with early stopping); predictions are reconstructed
to the full field with the component variances and the truncation error as uncertainty, after
Lu & Ricciuto (2019) and Dagon et al. (2020).

Saved state is netCDF (:meth:`GPEmulator.save`, :meth:`SVDEmulator.save`, :func:`load_emulator`),
never pickle; a reloaded emulator predicts identically.
"""

from __future__ import annotations

import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from scipy import linalg
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.neural_network import MLPRegressor
from threadpoolctl import threadpool_limits

__all__ = [
    "GPEmulator",
    "SVDEmulator",
    "EmulatorError",
    "loo_metrics",
    "kfold",
    "load_emulator",
    "permutation_importance",
    "partial_dependence",
]

_UNIT_TOL = 1e-9


class EmulatorError(ValueError):
    """Invalid training data or inputs for an emulator."""


# ----------------------------------------------------------------------------------- input checks
def _labels_of(X: Any) -> list[str] | None:
    if isinstance(X, xr.DataArray) and "parameter" in X.dims:
        return [str(v) for v in X["parameter"].values]
    return None


def _as_inputs(X: Any, labels: list[str] | None = None, n_features: int | None = None) -> np.ndarray:
    """Validate unit-cube inputs; ``labels`` are the parameters the emulator was fitted on."""
    if isinstance(X, xr.DataArray) and "parameter" in X.dims:
        given = _labels_of(X)
        if labels is not None and given != labels:
            missing = [p for p in labels if p not in given]
            extra = [p for p in given if p not in labels]
            raise EmulatorError(
                "inputs are for other parameters than the emulator was fitted on"
                + (f"; missing {missing[:5]}" if missing else "")
                + (f"; unexpected {extra[:5]}" if extra else "")
                + ("" if missing or extra else "; same parameters in another order")
            )
        other = [d for d in X.dims if d != "parameter"]
        X = X.transpose(*other, "parameter").values
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2:
        raise EmulatorError(f"inputs must be 2-D (points, parameters), got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise EmulatorError(f"inputs have {X.shape[1]} parameters; the emulator was fitted on {n_features}")
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        name = labels[j] if labels else f"column {j}"
        raise EmulatorError(f"input {name} of point {i} is not finite ({X[i, j]})")
    out = (X < -_UNIT_TOL) | (X > 1 + _UNIT_TOL)
    if out.any():
        i, j = np.argwhere(out)[0]
        name = labels[j] if labels else f"column {j}"
        raise EmulatorError(
            f"input {name} of point {i} is {X[i, j]:.6g}, outside the unit cube [0, 1]; "
            "map physical values with ParameterSpace.to_unit first"
        )
    return np.clip(X, 0.0, 1.0)


def _as_target(y: Any, n: int) -> np.ndarray:
    y = np.asarray(y, dtype=float).reshape(-1)
    if y.shape[0] != n:
        raise EmulatorError(f"{y.shape[0]} targets for {n} input points")
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise EmulatorError(
            f"{bad.size} target value(s) are NaN/inf (first at point {bad[0]}); drop failed runs before "
            "fitting (e.g. design[~failed]) — an emulator cannot learn from them"
        )
    return y


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


# ----------------------------------------------------------------------------------- GP emulator
class _NetCDFState:
    """``save``/``load`` through the subclass's ``to_dataset``/``from_dataset`` (no pickle)."""

    def save(self, path: str | Path) -> None:
        """Write the fitted emulator to a netCDF file."""
        self.to_dataset().to_netcdf(path, engine="h5netcdf")

    @classmethod
    def load(cls, path: str | Path):
        """Read an emulator written by :meth:`save` (errors name the file)."""
        ds = _read_emulator_file(path)
        try:
            return cls.from_dataset(ds)
        except (EmulatorError, KeyError) as err:
            raise EmulatorError(f"{path}: {err}") from None


class GPEmulator(_NetCDFState, RegressorMixin, BaseEstimator):
    """Exact Gaussian-process emulator with an ARD kernel and analytic hyper-parameter gradients.

    Parameters
    ----------
    kernel : {"matern52", "rbf"}
        Stationary ARD kernel: Matérn 5/2 (default; less smooth, robust for model outputs) or the
        squared exponential.
    mean : {"constant", "linear", "quadratic", "zero"}
        Mean function; its coefficients are estimated by generalised least squares for every set
        of kernel hyper-parameters (profiled out of the likelihood). ``"quadratic"`` (all
        ``1 + d + d(d+1)/2`` terms) suits a misfit or log-likelihood, which is a bowl near its
        optimum (the negative-quadratic mean of VBMC, Acerbi 2018).
    normalize_y : bool
        Standardise the targets (subtract the mean, divide by the standard deviation) before
        fitting; predictions are returned in the original units.
    length_scale : float or array of shape (n_features,), optional
        Initial (or, with ``optimizer=None``, fixed) length scales in unit-cube units. Default:
        the best of a small grid around ``sqrt(n_features / 6)`` times each input's spread (the
        scale at which a typical pair of training points is one length apart).
    signal_variance : float
        Initial or fixed kernel variance (in standardised units when ``normalize_y``).
    noise : float
        Initial or fixed noise (nugget) variance, same units. It is what keeps the Cholesky
        factorisation of duplicated or near-duplicated points stable.
    length_scale_bounds, signal_variance_bounds, noise_bounds : (float, float)
        Bounds of the hyper-parameter search. Inputs whose length scale reaches the upper bound
        of ``length_scale_bounds`` are inert: the output does not vary along them.
    optimizer : {"L-BFGS-B", None}
        ``None`` keeps the hyper-parameters as given (e.g. to reproduce a published example).
    n_restarts : int
        Further optimisations started from random hyper-parameters (log-normal around the
        initial point, sd 1), run in ``n_jobs`` threads; the best log marginal likelihood wins.
    init_subset : int or None
        With more training points than this, the restarts run on a random subset of this size
        (a factor (n / init_subset)^3 cheaper) and their best optimum starts one final
        optimisation on all points. ``None`` optimises on all points throughout.
    max_iter : int
        Iteration limit of each L-BFGS-B run.
    random_state : int, numpy.random.Generator or None
        Seed of the restart points (default 0: refits are reproducible; ``None`` draws fresh
        entropy).
    n_jobs : int or None
        Threads running the optimisation starts in parallel (numpy's linear algebra releases the
        GIL; each start uses one BLAS thread). ``None``: one per CPU core.

    Attributes
    ----------
    length_scale_, signal_variance_, noise_ : fitted hyper-parameters (standardised units).
    beta_ : array
        Mean-function coefficients (standardised units).
    log_marginal_likelihood_value_ : float
        Log marginal likelihood of the standardised targets at the fitted hyper-parameters.
    parameters_ : list of str or None
        Parameter labels when fitted on a labelled DataArray; predicting on other labels fails.
    """

    def __init__(
        self,
        kernel: str = "matern52",
        mean: str = "constant",
        normalize_y: bool = True,
        length_scale: float | np.ndarray | None = None,
        signal_variance: float = 1.0,
        noise: float = 1e-4,
        length_scale_bounds: tuple[float, float] = (1e-2, 1e3),
        signal_variance_bounds: tuple[float, float] = (1e-3, 1e3),
        noise_bounds: tuple[float, float] = (1e-9, 1.0),
        optimizer: str | None = "L-BFGS-B",
        n_restarts: int = 2,
        init_subset: int | None = 400,
        max_iter: int = 300,
        random_state: int | np.random.Generator | None = 0,
        n_jobs: int | None = None,
    ) -> None:
        self.kernel = kernel
        self.mean = mean
        self.normalize_y = normalize_y
        self.length_scale = length_scale
        self.signal_variance = signal_variance
        self.noise = noise
        self.length_scale_bounds = length_scale_bounds
        self.signal_variance_bounds = signal_variance_bounds
        self.noise_bounds = noise_bounds
        self.optimizer = optimizer
        self.n_restarts = n_restarts
        self.init_subset = init_subset
        self.max_iter = max_iter
        self.random_state = random_state
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ settings
    def _check_settings(self) -> None:
        if self.kernel not in _KERNELS:
            raise EmulatorError(f"kernel must be one of {_KERNELS}, got {self.kernel!r}")
        if self.mean not in _MEANS:
            raise EmulatorError(f"mean must be one of {_MEANS}, got {self.mean!r}")
        if self.optimizer not in ("L-BFGS-B", None):
            raise EmulatorError(f"optimizer must be 'L-BFGS-B' or None, got {self.optimizer!r}")
        if self.noise < 0 or self.signal_variance <= 0:
            raise EmulatorError("noise must be >= 0 and signal_variance > 0")

    def _theta0(self, d: int) -> np.ndarray:
        ls = self.length_scale
        ls = np.full(d, np.sqrt(max(d, 1) / 6.0)) if ls is None else np.broadcast_to(
            np.asarray(ls, dtype=float), (d,)
        ).copy()
        if np.any(ls <= 0):
            raise EmulatorError("length_scale must be positive")
        noise = max(self.noise, 1e-300)
        return np.concatenate([[np.log(self.signal_variance)], np.log(ls), [np.log(noise)]])

    def _bounds(self, d: int) -> list[tuple[float, float]]:
        return (
            [_log_bounds(self.signal_variance_bounds, "signal_variance")]
            + [_log_bounds(self.length_scale_bounds, "length_scale")] * d
            + [_log_bounds(self.noise_bounds, "noise")]
        )

    # ------------------------------------------------------------------ likelihood
    def _factor(self, theta: np.ndarray, X: np.ndarray, H: np.ndarray, y: np.ndarray, grad: bool):
        """Everything the likelihood, its gradient and predictions need at ``theta``."""
        s2, ls, sn2 = np.exp(theta[0]), np.exp(theta[1:-1]), np.exp(theta[-1])
        Z = X / ls
        C, G = _corr(_sqdist(Z, Z), self.kernel, grad)
        K = s2 * C
        K[np.diag_indices_from(K)] += sn2
        L, jitter = _cholesky(K)
        # every product with K^-1 is a pair of triangular solves on L: with Wy = L^-1 y and
        # Q R = L^-1 H (thin QR), the GLS coefficients solve R beta = Q^T Wy and the residual
        # r = y - H beta gives alpha = K^-1 r = L^-T (Wy - Q Q^T Wy)
        Wy = linalg.solve_triangular(L, y, lower=True, check_finite=False)
        if H.shape[1]:
            Q, R = np.linalg.qr(linalg.solve_triangular(L, H, lower=True, check_finite=False))
            beta = linalg.solve_triangular(R, Q.T @ Wy, check_finite=False)
            Wr = Wy - Q @ (Q.T @ Wy)
        else:
            Q, R, beta, Wr = None, None, np.zeros(0), Wy
        alpha = linalg.solve_triangular(L, Wr, lower=True, trans="T", check_finite=False)
        lml = -0.5 * (Wr @ Wr) - np.log(np.diag(L)).sum() - 0.5 * y.shape[0] * np.log(2 * np.pi)
        out = {"L": L, "alpha": alpha, "beta": beta, "Q": Q, "R": R, "lml": lml, "jitter": jitter}
        if grad:
            # the trace terms of the gradient need the whole of K^-1 (LAPACK potri from L); it
            # only steers the optimiser, predictions and LOO never use it
            Ki = _chol_inverse(L)
            W = np.outer(alpha, alpha) - Ki
            g = np.empty_like(theta)
            g[0] = 0.5 * (np.einsum("ij,ij->", W, K) - sn2 * np.trace(W))
            M = W * G
            M *= s2
            g[1:-1] = (M.sum(1) @ (Z * Z)) - np.einsum("ij,ij->j", Z, M @ Z)
            g[-1] = 0.5 * sn2 * np.trace(W)
            out["grad"] = g
        return out

    def log_marginal_likelihood(
        self, theta: np.ndarray | None = None, eval_gradient: bool = False
    ) -> float | tuple[float, np.ndarray]:
        """Log marginal likelihood (standardised targets, mean profiled) at log hyper-parameters.

        ``theta`` is ``[log signal_variance, log length_scale_1..d, log noise]``; default: the
        fitted values. With ``eval_gradient`` also returns the analytic gradient.
        """
        self._check_fitted()
        theta = self.theta_ if theta is None else np.asarray(theta, dtype=float)
        f = self._factor(theta, self.X_train_, self._H, self._y, eval_gradient)
        return (f["lml"], f["grad"]) if eval_gradient else f["lml"]

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any) -> GPEmulator:
        """Fit to unit-cube inputs ``X`` (points, parameters) and targets ``y`` (points,).

        Duplicate points are allowed: the noise term (bounded below by ``noise_bounds[0]``) keeps
        the covariance positive definite, and should the factorisation still fail a jitter is
        added with a warning. Fewer points than mean coefficients + 2 is an error.
        """
        self._check_settings()
        labels = _labels_of(X)
        Xa = _as_inputs(X)
        n, d = Xa.shape
        ya = _as_target(y.values if isinstance(y, xr.DataArray) else y, n)
        H = _design_matrix(Xa, self.mean)
        if n < H.shape[1] + 2:
            raise EmulatorError(
                f"need at least {H.shape[1] + 2} training points for mean={self.mean!r}, got {n}"
            )
        if self.normalize_y:
            mu, sd = float(ya.mean()), float(ya.std())
            if sd == 0:
                raise EmulatorError("all targets are equal; there is nothing to emulate")
        else:
            mu, sd = 0.0, 1.0
        self.X_train_, self.y_train_ = Xa, ya
        self.y_mean_, self.y_std_ = mu, sd
        self.parameters_ = labels
        self.n_features_in_ = d
        self._H, self._y = H, (ya - mu) / sd
        theta = self._theta0(d)
        if self.optimizer is not None:
            theta = self._optimise(theta, d)
        self._set_theta(theta)
        return self

    def _optimise(self, theta0: np.ndarray, d: int) -> np.ndarray:
        bounds = self._bounds(d)
        lo, hi = np.array(bounds).T
        rng = np.random.default_rng(self.random_state)
        X, H, y = self.X_train_, self._H, self._y
        n = X.shape[0]
        sub = self.init_subset
        idx = rng.choice(n, size=int(sub), replace=False) if sub is not None and n > sub else np.arange(n)
        if self.length_scale is None:
            theta0 = self._grid_start(theta0, X[idx], H[idx], y[idx], lo, hi)
        if idx.size < n:
            # restarts on a random subset (cost ~ (sub/n)^3), then one refinement on all points
            theta0, self.init_results_ = self._minimise(theta0, X[idx], H[idx], y[idx], bounds, rng,
                                                       self.n_restarts)
            theta, results = self._minimise(theta0, X, H, y, bounds, rng, 0)
        else:
            theta, results = self._minimise(theta0, X, H, y, bounds, rng, self.n_restarts)
        self.optimizer_results_ = results
        return theta

    def _grid_start(self, theta0, X, H, y, lo, hi) -> np.ndarray:
        """Best of a few common length-scale multipliers and noise levels (no gradients).

        Length scales start at ``sqrt(d / 6)`` times each input's spread (sd * sqrt(12), which is
        1 for a full-range design), so designs in a sub-box start at the right scale; the grid
        keeps the optimiser away from the degenerate all-noise optimum.
        """
        d = X.shape[1]
        spread = np.clip(X.std(axis=0) * np.sqrt(12.0), 1e-3, 1.0)
        best, best_lml = theta0, -np.inf
        for mult in (0.25, 0.5, 1.0, 2.0):
            for noise in (1e-4, 1e-2):
                t = theta0.copy()
                t[1:-1] = np.log(np.sqrt(d / 6.0) * spread * mult)
                t[-1] = np.log(noise)
                t = np.clip(t, lo, hi)
                try:
                    lml = self._factor(t, X, H, y, False)["lml"]
                except np.linalg.LinAlgError:
                    continue
                if lml > best_lml:
                    best, best_lml = t, lml
        return best

    def _minimise(self, theta0, X, H, y, bounds, rng, n_restarts):
        lo, hi = np.array(bounds).T
        theta0 = np.clip(theta0, lo, hi)

        def f(t: np.ndarray) -> tuple[float, np.ndarray]:
            try:
                r = self._factor(t, X, H, y, True)
            except np.linalg.LinAlgError:
                return 1e25, np.zeros_like(t)
            return -r["lml"], -r["grad"]

        starts = [theta0] + [np.clip(theta0 + rng.normal(0.0, 1.0, theta0.size), lo, hi)
                             for _ in range(int(n_restarts))]

        def run(t0: np.ndarray):
            return minimize(f, t0, jac=True, method="L-BFGS-B", bounds=bounds,
                            options={"maxiter": int(self.max_iter)})

        n_jobs = min(len(starts), self.n_jobs or os.cpu_count() or 1)
        # one BLAS thread per start: numpy and scipy each bundle an OpenBLAS whose thread pools
        # contend when calls alternate (3x slower at n = 500); parallelism comes from the starts.
        with threadpool_limits(1, user_api="blas"):
            if n_jobs > 1:
                with ThreadPoolExecutor(n_jobs) as pool:
                    results = list(pool.map(run, starts))
            else:
                results = [run(t) for t in starts]
        best = min(results, key=lambda r: r.fun)
        return best.x, [(float(-r.fun), int(r.nit), bool(r.success)) for r in results]

    def _set_theta(self, theta: np.ndarray) -> None:
        f = self._factor(theta, self.X_train_, self._H, self._y, False)
        if f["jitter"] > 0:
            warnings.warn(
                f"GP covariance was not positive definite; added jitter {f['jitter']:.3g} to the diagonal "
                "(duplicated points with a noise term at its lower bound?)",
                RuntimeWarning,
                stacklevel=3,
            )
        self.theta_ = np.asarray(theta, dtype=float)
        self.signal_variance_ = float(np.exp(theta[0]))
        self.length_scale_ = np.exp(theta[1:-1])
        self.noise_ = float(np.exp(theta[-1]))
        self.beta_ = f["beta"]
        self.log_marginal_likelihood_value_ = float(f["lml"])
        self._L, self._alpha, self._Q, self._R = f["L"], f["alpha"], f["Q"], f["R"]
        self._jitter = f["jitter"]

    def _check_fitted(self) -> None:
        if not hasattr(self, "theta_"):
            raise EmulatorError("this GPEmulator is not fitted yet; call fit(X, y) first")

    # ------------------------------------------------------------------ predict
    def predict(
        self,
        X: Any,
        return_std: bool = False,
        return_cov: bool = False,
        noisy: bool = False,
        chunk_size: int = 1024,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Predictive mean (and standard deviation or covariance) at unit-cube points ``X``.

        The variance is that of the latent function including the uncertainty of the estimated
        mean coefficients (universal kriging); ``noisy=True`` adds the fitted noise variance, i.e.
        predicts a new observation. Points are processed in chunks of ``chunk_size``.
        """
        self._check_fitted()
        if return_std and return_cov:
            raise EmulatorError("ask for return_std or return_cov, not both")
        Xs = _as_inputs(X, self.parameters_, self.n_features_in_)
        if return_cov:
            mean, cov = self._predict_block(Xs, "cov", noisy)
            return mean, cov
        means, sds = [], []
        for i in range(0, Xs.shape[0], chunk_size):
            m, v = self._predict_block(Xs[i:i + chunk_size], "std" if return_std else None, noisy)
            means.append(m)
            sds.append(v)
        mean = np.concatenate(means) if means else np.zeros(0)
        if return_std:
            return mean, np.concatenate(sds) if sds else np.zeros(0)
        return mean

    def _predict_block(self, Xs: np.ndarray, what: str | None, noisy: bool):
        ls = self.length_scale_
        Zs, Z = Xs / ls, self.X_train_ / ls
        Ks = _corr(_sqdist(Zs, Z), self.kernel)[0]
        Ks *= self.signal_variance_
        Hs = _design_matrix(Xs, self.mean)
        mean = Hs @ self.beta_ + Ks @ self._alpha
        mean = mean * self.y_std_ + self.y_mean_
        if what is None:
            return mean, None
        # V = L^-1 Ks^T: the kriging variance is s2 - |V|^2 (+ |R^-T U^T|^2 for the estimated
        # mean, U = Hs - V^T Q R); no inverse of K is ever formed (cond(K) reaches 1e14 at the
        # hyper-parameter bounds, where an explicit inverse returns sd = 0 off the design)
        V = linalg.solve_triangular(self._L, Ks.T, lower=True, check_finite=False)
        p = Hs.shape[1]
        if p:
            U = Hs - (V.T @ self._Q) @ self._R  # (m, p)
            T = linalg.solve_triangular(self._R, U.T, trans="T", check_finite=False)  # R^-T U^T
        extra = self.noise_ + self._jitter if noisy else 0.0
        if what == "cov":
            Kss = self.signal_variance_ * _corr(_sqdist(Zs, Zs), self.kernel)[0]
            cov = Kss - V.T @ V
            if p:
                cov += T.T @ T
            cov[np.diag_indices_from(cov)] += extra
            return mean, cov * self.y_std_**2
        var = self.signal_variance_ - np.einsum("ij,ij->j", V, V)
        if p:
            var += np.einsum("ij,ij->j", T, T)
        var = np.maximum(var + extra, 0.0)
        return mean, np.sqrt(var) * self.y_std_

    # ------------------------------------------------------------------ LOO
    def loo(self) -> xr.Dataset:
        """Exact closed-form leave-one-out predictions of the training targets.

        Hyper-parameters are held at their fitted values and the mean coefficients re-estimated
        without each point (Dubrule 1983). Returns a Dataset on ``point`` with ``y``, ``mean``,
        ``sd`` (predictive, including noise) and ``z = (y - mean) / sd``, and the metrics of
        :func:`loo_metrics` as attributes.
        """
        self._check_fitted()
        # P = K^-1 - K^-1 H S^-1 H^T K^-1 = L^-T (I - Q Q^T) L^-1, so P_ii is the squared norm of
        # the projected column i of L^-1: a sum of squares, no cancellation of large terms
        Li = linalg.solve_triangular(self._L, np.eye(self._L.shape[0]), lower=True, check_finite=False)
        if self._Q is not None:
            Li -= self._Q @ (self._Q.T @ Li)
        dP = np.einsum("ij,ij->j", Li, Li)
        resid = self._alpha / dP  # = (P y)_i / P_ii, P y = alpha
        mean = (self._y - resid) * self.y_std_ + self.y_mean_
        sd = np.sqrt(1.0 / dP) * self.y_std_
        ds = xr.Dataset(
            {
                "y": ("point", self.y_train_),
                "mean": ("point", mean),
                "sd": ("point", sd),
                "z": ("point", (self.y_train_ - mean) / sd),
            }
        )
        ds.attrs.update(loo_metrics(self.y_train_, mean, sd))
        return ds

    # ------------------------------------------------------------------ persistence
    def to_dataset(self) -> xr.Dataset:
        """Everything needed to rebuild the fitted emulator, as a Dataset (no pickle)."""
        self._check_fitted()
        coords = {"parameter": self.parameters_} if self.parameters_ else {}
        ds = xr.Dataset(
            {
                "X_train": (("point", "parameter"), self.X_train_),
                "y_train": ("point", self.y_train_),
                "theta": ("hyperparameter", self.theta_),
            },
            coords=coords,
        )
        ds.attrs = {
            "emulator": "GPEmulator",
            "settings": json.dumps(_json_params(self)),
            "y_mean": self.y_mean_,
            "y_std": self.y_std_,
            "log_marginal_likelihood": self.log_marginal_likelihood_value_,
        }
        return ds

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> GPEmulator:
        """Rebuild a fitted emulator from :meth:`to_dataset` output without refitting.

        Checks what it reads: the variables and attributes, finite training data, and one
        hyper-parameter per input plus two; a problem is an :class:`EmulatorError` naming it.
        """
        for key in ("X_train", "y_train", "theta"):
            if key not in ds:
                raise EmulatorError(f"GP emulator dataset lacks the variable {key!r}")
        for key in ("settings", "y_mean", "y_std"):
            if key not in ds.attrs:
                raise EmulatorError(f"GP emulator dataset lacks the attribute {key!r}")
        try:
            gp = cls(**json.loads(ds.attrs["settings"]))
        except (TypeError, ValueError) as err:
            raise EmulatorError(f"GP emulator settings are not valid: {err}") from None
        X, y, theta = (np.asarray(ds[k].values, dtype=float) for k in ("X_train", "y_train", "theta"))
        if X.ndim != 2 or y.shape != (X.shape[0],):
            raise EmulatorError(f"X_train {X.shape} and y_train {y.shape} do not match (points, parameters)")
        if theta.shape != (X.shape[1] + 2,):
            raise EmulatorError(
                f"theta has {theta.size} hyper-parameters; {X.shape[1]} inputs need {X.shape[1] + 2} "
                "(log signal variance, one log length scale per input, log noise)"
            )
        for name, arr in (("X_train", X), ("y_train", y), ("theta", theta)):
            if not np.isfinite(arr).all():
                raise EmulatorError(f"{name} holds NaN/inf values")
        gp.y_mean_, gp.y_std_ = float(ds.attrs["y_mean"]), float(ds.attrs["y_std"])
        if not (np.isfinite(gp.y_mean_) and gp.y_std_ > 0):
            raise EmulatorError(f"y_mean {gp.y_mean_} / y_std {gp.y_std_} are not a valid scaling")
        gp.X_train_, gp.y_train_ = X, y
        gp.parameters_ = [str(p) for p in ds["parameter"].values] if "parameter" in ds.coords else None
        gp.n_features_in_ = X.shape[1]
        gp._H, gp._y = _design_matrix(X, gp.mean), (gp.y_train_ - gp.y_mean_) / gp.y_std_
        gp._set_theta(ds["theta"].values)
        return gp


def _json_params(est: BaseEstimator) -> dict[str, Any]:
    out = {}
    for k, v in est.get_params(deep=False).items():
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, tuple):
            v = list(v)
        elif isinstance(v, np.random.Generator):
            v = None
        out[k] = v
    return out


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


# -------------------------------------------------------------------------------------- metrics
def loo_metrics(y: np.ndarray, mean: np.ndarray, sd: np.ndarray | None = None) -> dict[str, float]:
    """RMSE, R² and (with ``sd``) the mean and sd of standardised errors and 68/95 % coverage."""
    y, mean = np.asarray(y, float), np.asarray(mean, float)
    resid = y - mean
    out = {
        "rmse": float(np.sqrt(np.mean(resid**2))),
        "r2": float(1.0 - np.sum(resid**2) / np.sum((y - y.mean()) ** 2)),
    }
    if sd is not None:
        z = resid / np.asarray(sd, float)
        out.update(
            z_mean=float(z.mean()),
            z_sd=float(z.std()),
            coverage_68=float(np.mean(np.abs(z) <= 1.0)),
            coverage_95=float(np.mean(np.abs(z) <= 1.96)),
        )
    return out


def kfold(
    emulator: BaseEstimator, X: Any, y: Any, k: int = 5, seed: int | np.random.Generator | None = 0
) -> xr.Dataset:
    """K-fold cross-validated predictions of any emulator (refitted ``k`` times, clones).

    ``y`` may be 1-D (points,) or 2-D (points, outputs) for :class:`SVDEmulator`. Returns a
    Dataset with ``y``, ``mean`` (and ``sd`` when the emulator gives one), ``fold``, and the
    metrics of :func:`loo_metrics` (pooled over outputs) as attributes.
    """
    from sklearn.model_selection import KFold

    Xa = _as_inputs(X)
    ya = np.asarray(y, dtype=float)
    n = Xa.shape[0]
    if k < 2 or k > n:
        raise EmulatorError(f"k must be between 2 and the number of points ({n}), got {k}")
    seed_int = int(np.random.default_rng(seed).integers(2**31))
    mean, sd = np.empty_like(ya), np.full_like(ya, np.nan)
    fold = np.empty(n, dtype=int)
    for f, (tr, te) in enumerate(KFold(k, shuffle=True, random_state=seed_int).split(Xa)):
        est = clone(emulator).fit(Xa[tr], ya[tr])
        try:
            mean[te], sd[te] = est.predict(Xa[te], return_std=True)
        except TypeError:
            mean[te] = est.predict(Xa[te])
        fold[te] = f
    dims = ("point",) if ya.ndim == 1 else ("point", "output")
    ds = xr.Dataset({"y": (dims, ya), "mean": (dims, mean), "fold": ("point", fold)})
    has_sd = bool(np.isfinite(sd).all())
    if has_sd:
        ds["sd"] = (dims, sd)
    ds.attrs.update(loo_metrics(ya.ravel(), mean.ravel(), sd.ravel() if has_sd else None))
    return ds


# --------------------------------------------------------------------------------- SVD emulator
class SVDEmulator(_NetCDFState, RegressorMixin, BaseEstimator):
    """Emulator of a field output (e.g. annual GPP per cell) via its principal components.

    The training outputs ``Y`` (points, outputs) are centred, reduced by a thin SVD to ``K``
    components, and each component's scores are emulated by a clone of ``estimator``.
    Predictions are reconstructed as ``mean + sum_k s_k(x) v_k``; the predictive variance of each
    output is ``sum_k var_k(x) v_k^2`` (component emulators' variances, where they give one) plus
    the training variance left in the discarded components.

    Parameters
    ----------
    n_components : int, optional
        Fixed number of components K. Default: the fewest that explain ``variance_threshold``
        and (with ``residual_sd``) leave no output with more residual than that.
    variance_threshold : float
        Fraction of the centred training variance to keep when ``n_components`` is None.
    residual_sd : float or array of shape (outputs,), optional
        Largest root-mean-square truncation error allowed per output, e.g. 0.1 x the
        observation sigma: the truncation error is added to the predictive sd, so it should be
        judged against the observation noise, not against the design's spread.
    estimator : {"gp", "mlp"} or scikit-learn regressor
        Component emulator: ``"gp"`` is :class:`GPEmulator` with its defaults, ``"mlp"`` a
        :class:`sklearn.neural_network.MLPRegressor` (two hidden layers of 64, early stopping,
        inputs in the unit cube, standardised scores). Any regressor with ``fit``/``predict``
        works (without uncertainty unless ``predict`` accepts ``return_std``).
    random_state : int or None
        Seed of every component estimator (the GPs' restarts, the MLP's initialisation and
        validation split), also of a passed estimator whose own ``random_state`` is None.
    """

    def __init__(
        self,
        n_components: int | None = None,
        variance_threshold: float = 0.999,
        estimator: str | BaseEstimator = "gp",
        random_state: int | None = 0,
        residual_sd: float | np.ndarray | None = None,
    ) -> None:
        self.n_components = n_components
        self.variance_threshold = variance_threshold
        self.estimator = estimator
        self.random_state = random_state
        self.residual_sd = residual_sd

    def _base_estimator(self) -> BaseEstimator:
        if self.estimator == "gp":
            return GPEmulator(random_state=self.random_state)
        if self.estimator == "mlp":
            return MLPRegressor(
                hidden_layer_sizes=(64, 64), early_stopping=True, max_iter=2000, tol=1e-6,
                n_iter_no_change=50, random_state=self.random_state,
            )
        if isinstance(self.estimator, str):
            raise EmulatorError(
                f"estimator must be 'gp', 'mlp' or a scikit-learn regressor, got {self.estimator!r}"
            )
        params = self.estimator.get_params(deep=False)
        if "random_state" in params and params["random_state"] is None:
            return clone(self.estimator).set_params(random_state=self.random_state)
        return self.estimator

    def fit(self, X: Any, Y: Any) -> SVDEmulator:
        """Fit to unit-cube inputs ``X`` (points, parameters) and outputs ``Y`` (points, outputs).

        ``Y`` may be a DataArray whose first dimension is the points; the other dimensions are
        stacked to outputs and restored by :meth:`predict_field`.
        """
        labels = _labels_of(X)
        Xa = _as_inputs(X)
        if isinstance(Y, xr.DataArray):
            self.output_template_ = Y.isel({Y.dims[0]: 0}, drop=True).copy(deep=True)
            Ya = Y.values.reshape(Y.shape[0], -1)
        else:
            self.output_template_ = None
            Ya = np.asarray(Y, dtype=float)
            Ya = Ya.reshape(Ya.shape[0], -1)
        n = Xa.shape[0]
        if Ya.shape[0] != n:
            raise EmulatorError(f"{Ya.shape[0]} output rows for {n} input points")
        bad = ~np.isfinite(Ya).all(axis=1)
        if bad.any():
            raise EmulatorError(
                f"{int(bad.sum())} training run(s) have NaN/inf outputs "
                f"(first: point {np.flatnonzero(bad)[0]}); "
                "drop failed runs before fitting"
            )
        if n < 3:
            raise EmulatorError(f"need at least 3 training runs, got {n}")
        self.mean_ = Ya.mean(axis=0)
        U, s, Vt = np.linalg.svd(Ya - self.mean_, full_matrices=False)
        var = s**2
        frac = np.cumsum(var) / var.sum() if var.sum() > 0 else np.ones_like(var)
        if self.n_components is None:
            if not 0 < self.variance_threshold <= 1:
                raise EmulatorError("variance_threshold must be in (0, 1]")
            K = int(np.searchsorted(frac, self.variance_threshold - 1e-12) + 1)
            if self.residual_sd is not None:
                K = max(K, self._components_for_residual(Ya - self.mean_, U, s, Vt))
        else:
            K = int(self.n_components)
            if not 1 <= K <= len(s):
                raise EmulatorError(f"n_components must be between 1 and {len(s)}, got {K}")
        K = min(K, len(s))
        self.n_components_ = K
        self.components_ = Vt[:K]
        self.explained_variance_ratio_ = var[:K] / var.sum() if var.sum() > 0 else np.ones(K)
        self.residual_variance_ = ((Ya - self.mean_ - (U[:, :K] * s[:K]) @ Vt[:K]) ** 2).mean(axis=0)
        scores = U[:, :K] * s[:K]
        self.score_scale_ = scores.std(axis=0)
        self.score_scale_[self.score_scale_ == 0] = 1.0
        base = self._base_estimator()
        if isinstance(base, MLPRegressor) and base.early_stopping:
            # scikit-learn needs >= 2 validation points; Lu & Ricciuto hold out 30 % of 20 runs
            frac = min(0.5, max(base.validation_fraction, 3.0 / n))
            base = clone(base).set_params(validation_fraction=frac)
        self.estimators_ = [clone(base).fit(Xa, scores[:, k] / self.score_scale_[k]) for k in range(K)]
        self.parameters_ = labels
        self.n_features_in_ = Xa.shape[1]
        return self

    def _components_for_residual(self, Yc, U, s, Vt) -> int:
        """Fewest components whose truncation leaves rms residual <= residual_sd for every output."""
        tol = np.broadcast_to(np.asarray(self.residual_sd, dtype=float), (Yc.shape[1],))
        if np.any(tol <= 0):
            raise EmulatorError("residual_sd must be positive")
        resid = Yc.copy()
        for k in range(len(s) + 1):
            if np.all(np.sqrt((resid**2).mean(axis=0)) <= tol):
                return max(k, 1)
            if k < len(s):
                resid -= np.outer(U[:, k] * s[k], Vt[k])
        return len(s)

    def predict(self, X: Any, return_std: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Reconstructed outputs (points, outputs), with their predictive standard deviation."""
        if not hasattr(self, "estimators_"):
            raise EmulatorError("this SVDEmulator is not fitted yet; call fit(X, Y) first")
        Xa = _as_inputs(X, self.parameters_, self.n_features_in_)
        m = Xa.shape[0]
        S, V = np.empty((m, self.n_components_)), np.zeros((m, self.n_components_))
        for k, est in enumerate(self.estimators_):
            if return_std and isinstance(est, GPEmulator):
                S[:, k], sd = est.predict(Xa, return_std=True)
                V[:, k] = sd**2
            else:
                S[:, k] = est.predict(Xa)
        S *= self.score_scale_
        mean = self.mean_ + S @ self.components_
        if not return_std:
            return mean
        V *= self.score_scale_**2
        var = V @ self.components_**2 + self.residual_variance_
        return mean, np.sqrt(var)

    def predict_field(
        self, X: Any, return_std: bool = False
    ) -> xr.DataArray | tuple[xr.DataArray, xr.DataArray]:
        """:meth:`predict` reshaped to the training output's dimensions, on a new ``point`` dim."""
        if self.output_template_ is None:
            raise EmulatorError("predict_field needs the emulator fitted on a DataArray of outputs")
        res = self.predict(X, return_std=return_std)
        t = self.output_template_

        def wrap(a: np.ndarray) -> xr.DataArray:
            da = xr.DataArray(a.reshape((a.shape[0],) + t.shape), dims=("point",) + t.dims,
                              coords=t.coords, attrs=t.attrs, name=t.name)
            return da

        return (wrap(res[0]), wrap(res[1])) if return_std else wrap(res)

    # ------------------------------------------------------------------ persistence
    def to_dataset(self) -> xr.Dataset:
        """The fitted emulator as a Dataset (GP or MLP components; no pickle)."""
        if not hasattr(self, "estimators_"):
            raise EmulatorError("this SVDEmulator is not fitted yet")
        ds = xr.Dataset(
            {
                "mean": ("output", self.mean_),
                "components": (("component", "output"), self.components_),
                "explained_variance_ratio": ("component", self.explained_variance_ratio_),
                "residual_variance": ("output", self.residual_variance_),
                "score_scale": ("component", self.score_scale_),
            }
        )
        est0 = self.estimators_[0]
        if isinstance(est0, GPEmulator):
            ds["X_train"] = (("point", "parameter"), est0.X_train_)
            ds["y_train"] = (("point", "component"), np.stack([e.y_train_ for e in self.estimators_], 1))
            ds["theta"] = (("component", "hyperparameter"), np.stack([e.theta_ for e in self.estimators_]))
            ds["y_stats"] = (("component", "stat"), [[e.y_mean_, e.y_std_] for e in self.estimators_])
            kind, sub = "gp", _json_params(est0)
        elif isinstance(est0, MLPRegressor):
            kind, sub = "mlp", _json_params(est0)
            for k, e in enumerate(self.estimators_):
                for j, (W, b) in enumerate(zip(e.coefs_, e.intercepts_, strict=True)):
                    ds[f"mlp{k}_W{j}"] = ((f"l{j}_in", f"l{j}_out"), W)
                    ds[f"mlp{k}_b{j}"] = ((f"l{j}_out",), b)
        else:
            raise EmulatorError("only GP and MLP component emulators can be saved")
        ds.attrs = {
            "emulator": "SVDEmulator",
            "settings": json.dumps({**_json_params(self), "estimator": kind}),
            "component_settings": json.dumps(sub),
        }
        if self.parameters_:
            ds = ds.assign_coords(parameter_label=("parameter_index", self.parameters_))
        if self.output_template_ is not None:
            ds.attrs["output_template"] = json.dumps(self.output_template_.to_dict(data="list"), default=str)
        ds.attrs["n_features"] = self.n_features_in_
        return ds

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> SVDEmulator:
        settings = json.loads(ds.attrs["settings"])
        em = cls(**settings)
        sub = json.loads(ds.attrs["component_settings"])
        em.mean_ = ds["mean"].values
        em.components_ = ds["components"].values
        em.n_components_ = em.components_.shape[0]
        em.explained_variance_ratio_ = ds["explained_variance_ratio"].values
        em.residual_variance_ = ds["residual_variance"].values
        em.score_scale_ = ds["score_scale"].values
        labels = ds.coords.get("parameter_label")
        em.parameters_ = [str(p) for p in labels.values] if labels is not None else None
        em.n_features_in_ = int(ds.attrs["n_features"])
        em.output_template_ = (
            xr.DataArray.from_dict(json.loads(ds.attrs["output_template"]))
            if "output_template" in ds.attrs
            else None
        )
        em.estimators_ = []
        for k in range(em.n_components_):
            if settings["estimator"] == "gp":
                sub_ds = xr.Dataset(
                    {"X_train": ds["X_train"], "y_train": ds["y_train"].isel(component=k, drop=True),
                     "theta": ds["theta"].isel(component=k, drop=True)},
                    attrs={"settings": json.dumps(sub), "y_mean": float(ds["y_stats"][k, 0]),
                           "y_std": float(ds["y_stats"][k, 1])},
                )
                em.estimators_.append(GPEmulator.from_dataset(sub_ds))
            else:
                mlp = MLPRegressor(**sub)
                n_layers = sum(1 for v in ds.data_vars if str(v).startswith(f"mlp{k}_W"))
                mlp.coefs_ = [ds[f"mlp{k}_W{j}"].values for j in range(n_layers)]
                mlp.intercepts_ = [ds[f"mlp{k}_b{j}"].values for j in range(n_layers)]
                mlp.n_layers_ = n_layers + 1
                mlp.n_outputs_ = 1
                mlp.n_features_in_ = em.n_features_in_
                mlp.out_activation_ = "identity"
                em.estimators_.append(mlp)
        return em


def load_emulator(path: str | Path) -> GPEmulator | SVDEmulator:
    """Read any emulator saved by bayescal, dispatching on the file's ``emulator`` attribute."""
    path = Path(path)
    ds = _read_emulator_file(path)
    kind = ds.attrs.get("emulator")
    try:
        if kind == "GPEmulator":
            return GPEmulator.from_dataset(ds)
        if kind == "SVDEmulator":
            return SVDEmulator.from_dataset(ds)
    except (EmulatorError, KeyError) as err:
        raise EmulatorError(f"{path}: {err}") from None
    raise EmulatorError(f"{path} is not a bayescal emulator file (emulator attribute {kind!r})")


def _read_emulator_file(path: str | Path) -> xr.Dataset:
    """The whole Dataset of an emulator file; a missing or unreadable file is named."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"emulator file {path} does not exist")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return ds.load()
    except (OSError, ValueError) as err:
        raise EmulatorError(f"cannot read emulator file {path} (truncated or not netCDF-4?): {err}") from None


# ------------------------------------------------------------------------------ interpretation
def permutation_importance(
    emulator: BaseEstimator, X: Any, y: Any, n_repeats: int = 10, seed: int | None = 0
) -> xr.Dataset:
    """Permutation importance of each input (Dagon et al. 2020, Fig. 7) via scikit-learn.

    Returns ``importance`` and ``importance_sd`` on ``parameter`` (drop in R² when the input is
    shuffled), labelled by the emulator's parameters when it has them.
    """
    from sklearn.inspection import permutation_importance as _pi

    Xa = _as_inputs(X)
    r = _pi(emulator, Xa, np.asarray(y, dtype=float), n_repeats=n_repeats, random_state=seed)
    labels = getattr(emulator, "parameters_", None) or [f"x{j}" for j in range(Xa.shape[1])]
    return xr.Dataset(
        {"importance": ("parameter", r.importances_mean), "importance_sd": ("parameter", r.importances_std)},
        coords={"parameter": labels},
    )


def partial_dependence(
    emulator: BaseEstimator, X: Any, parameter: int | str, grid_resolution: int = 25
) -> xr.DataArray:
    """Partial dependence of the emulated output on one input (Dagon et al. 2020, Fig. 8).

    ``parameter`` is a column index or a label of ``emulator.parameters_``; returns the average
    prediction over ``X`` on a grid of that input (unit-cube values, dim ``value``).
    """
    from sklearn.inspection import partial_dependence as _pd

    Xa = _as_inputs(X)
    labels = getattr(emulator, "parameters_", None)
    if isinstance(parameter, str):
        if not labels or parameter not in labels:
            raise EmulatorError(f"parameter {parameter!r} is not one of the emulator's inputs")
        j = labels.index(parameter)
    else:
        j = int(parameter)
    r = _pd(emulator, Xa, [j], grid_resolution=grid_resolution, kind="average")
    name = labels[j] if labels else f"x{j}"
    return xr.DataArray(r["average"][0], dims="value", coords={"value": r["grid_values"][0]},
                        name="partial_dependence", attrs={"parameter": name})
