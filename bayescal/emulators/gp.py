"""Exact Gaussian-process emulator (see the package docstring for the method)."""

from __future__ import annotations

import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import xarray as xr
from scipy import linalg
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, RegressorMixin
from threadpoolctl import threadpool_limits

from .base import (
    EmulatorError,
    _as_inputs,
    _as_target,
    _json_params,
    _labels_of,
    _NetCDFState,
    check_fitted,
    register,
)
from .kernels import _KERNELS, _MEANS, _chol_inverse, _cholesky, _corr, _design_matrix, _log_bounds, _sqdist
from .validation import loo_metrics

__all__ = ["GPEmulator"]

@register
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
    input_domain : {"unit_cube", "any"}, default "unit_cube"
        ``"unit_cube"``: inputs outside [0, 1] are an error (bayescal's convention: map physical
        values with ``ParameterSpace.to_unit``); ``"any"``: any finite inputs (a plain
        scikit-learn regressor; the length-scale bounds are then in the inputs' units).

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
        input_domain: str = "unit_cube",
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
        self.input_domain = input_domain

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
        if self.input_domain not in ("unit_cube", "any"):
            raise EmulatorError(f"input_domain must be 'unit_cube' or 'any', got {self.input_domain!r}")

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
        Xa = _as_inputs(X, domain=self.input_domain, who=type(self).__name__)
        n, d = Xa.shape
        ya = _as_target(y.values if isinstance(y, xr.DataArray) else y, n)
        H = _design_matrix(Xa, self.mean)
        if n < H.shape[1] + 2:
            raise EmulatorError(
                f"need at least {H.shape[1] + 2} training points for mean={self.mean!r}, got n_samples={n}"
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
        self.n_iter_ = 0
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
        self.n_iter_ = max(1, int(max((getattr(r, "nit", 0) for r in results), default=0)))
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
        check_fitted(self, "theta_")

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
        Xs = _as_inputs(X, self.parameters_, self.n_features_in_, domain=self.input_domain,
                        who=type(self).__name__)
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
