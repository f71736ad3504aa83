"""A multi-output emulator for many inputs: a ridge regression on every input plus a GP on the
residuals over each output's most active inputs (the structure of ExeterUQ's emulators).

At d ~ 100+ inputs an ARD Gaussian process on every input is both slow to fit and, with a few
hundred runs, inaccurate (each of its 100+ length scales is a free parameter). History-matching
practice (Vernon et al. 2010; Williamson et al. 2013; ExeterUQ, hmer) emulates each output as

    f_j(u) = b_j0 + sum_i b_ji u_i + GP_j(u[A_j]) + nugget_j,

a regression on all inputs (here ridge with its penalty chosen by generalised cross-validation,
so every input keeps its linear effect), a Gaussian process on the regression residuals over the
``n_active`` inputs ``A_j`` with the largest coefficients, and a nugget that carries what the
other inputs do beyond their linear effect. The nugget is part of the predictive variance: it is
emulator uncertainty, never mistaken for model-data discrepancy.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator
from sklearn.linear_model import RidgeCV
from threadpoolctl import threadpool_limits

from .base import EmulatorError, _as_inputs, _json_params, _NetCDFState, check_fitted, register
from .gp import GPEmulator

__all__ = ["ActiveGPEmulator"]


@register
class ActiveGPEmulator(_NetCDFState, BaseEstimator):
    """Ridge regression on all inputs + a GP on the residuals over each output's active inputs.

    Parameters
    ----------
    n_active : int
        Inputs of each output's GP: those with the largest absolute ridge coefficients.
    max_fit : int
        The GP's hyper-parameters are fitted on at most this many (random) runs of those it is
        conditioned on.
    max_condition : int
        The GP is conditioned on at most this many runs, the last ones given (in history
        matching: the latest waves', inside the region not ruled out); the ridge uses every run.
        A prediction with its sd costs O(max_condition^2) per point and output.
    kernel : {"matern52", "rbf"}
    max_iter : int
        L-BFGS-B iterations of each hyper-parameter fit.
    alphas : array_like
        Ridge penalties tried (on standardised outputs), chosen per output by generalised
        cross-validation.
    random_state : int
        Seed of the fitting subsets and the GPs.
    n_jobs : int
        Threads fitting the outputs' GPs (numpy releases the GIL).

    Attributes
    ----------
    coef_ : ndarray (outputs, inputs)
        Ridge coefficients on the standardised outputs.
    active_ : ndarray of int (outputs, n_active)
        The inputs of each output's GP.
    gps_ : list of GPEmulator
    """

    def __init__(self, n_active: int = 12, max_fit: int = 250, max_condition: int = 400,
                 kernel: str = "matern52", max_iter: int = 60, alphas: Any = None, random_state: int = 0,
                 n_jobs: int = 2) -> None:
        self.n_active = n_active
        self.max_fit = max_fit
        self.max_condition = max_condition
        self.kernel = kernel
        self.max_iter = max_iter
        self.alphas = alphas
        self.random_state = random_state
        self.n_jobs = n_jobs

    supports_uq = True

    def fit(self, X: Any, Y: Any) -> ActiveGPEmulator:
        """Fit to unit-cube inputs ``X`` (runs, inputs) and outputs ``Y`` (runs, outputs)."""
        Xa = _as_inputs(X)
        Ya = np.asarray(Y, dtype=float).reshape(Xa.shape[0], -1)
        if not np.isfinite(Ya).all():
            raise EmulatorError("outputs hold NaN/inf: drop failed runs before fitting")
        n, d = Xa.shape
        if n < 8:
            raise EmulatorError(f"need at least 8 runs, got {n}")
        self.y_mean_ = Ya.mean(0)
        self.y_sd_ = np.where(Ya.std(0) > 0, Ya.std(0), 1.0)
        Ys = (Ya - self.y_mean_) / self.y_sd_
        alphas = np.logspace(-3, 3, 13) * n if self.alphas is None else np.asarray(self.alphas, float)
        ridge = RidgeCV(alphas=alphas, alpha_per_target=True).fit(Xa, Ys)
        # C order, as a reloaded emulator's: the same BLAS path, the same bits
        self.coef_ = np.ascontiguousarray(np.atleast_2d(ridge.coef_))
        self.intercept_ = np.ascontiguousarray(np.atleast_1d(ridge.intercept_))
        # the GP models the ridge's leave-one-out residuals, r_i / (1 - h_ii): out-of-sample
        # errors, so its variance is honest where the in-sample residuals of a ridge with ~d
        # coefficients on a few hundred runs would be far too small
        resid = (Ys - (Xa @ self.coef_.T + self.intercept_)) / (1.0 - _ridge_leverage(Xa, ridge.alpha_))
        k = min(self.n_active, d)
        self.active_ = np.argsort(-np.abs(self.coef_), axis=1, kind="stable")[:, :k]
        rng = np.random.default_rng(self.random_state)
        last = np.arange(max(0, n - self.max_condition), n)
        sub = np.sort(rng.choice(last.size, size=min(last.size, self.max_fit), replace=False))
        Xc, rc = Xa[last], resid[last]
        # one BLAS thread per GP: small matrices, and a shared machine makes threads thrash
        with ThreadPoolExecutor(self.n_jobs) as pool, threadpool_limits(1, user_api="blas"):
            self.gps_ = list(pool.map(lambda j: self._fit_gp(Xc[:, self.active_[j]], rc[:, j], sub),
                                      range(Ys.shape[1])))
        self.n_features_in_ = d
        return self

    def _fit_gp(self, Xj: np.ndarray, r: np.ndarray, sub: np.ndarray) -> GPEmulator:
        """GP of one output's residuals: hyper-parameters on ``sub``, conditioned on all runs."""
        opts = dict(kernel=self.kernel, mean="constant", n_jobs=1, random_state=self.random_state)
        gp = GPEmulator(n_restarts=0, max_iter=self.max_iter, noise_bounds=(1e-6, 1.0), **opts)
        gp.fit(Xj[sub], r[sub])
        if sub.size == r.size:
            return gp
        # same hyper-parameters in the original units: rescale to the full set's standardisation
        scale = (gp.y_std_ / max(r.std(), 1e-12)) ** 2
        fixed = GPEmulator(optimizer=None, length_scale=gp.length_scale_,
                           signal_variance=gp.signal_variance_ * scale, noise=gp.noise_ * scale, **opts)
        return fixed.fit(Xj, r)

    def predict(self, X: Any, return_std: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Mean (points, outputs) and, with ``return_std``, the predictive sd including the nugget.

        Run many predictions under ``threadpoolctl.threadpool_limits(1)``: the matrices are small.
        """
        check_fitted(self, "gps_")
        Xa = _as_inputs(X, None, self.n_features_in_)
        return self._predict(Xa, return_std)

    def _predict(self, Xa: np.ndarray, return_std: bool) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        mean = Xa @ self.coef_.T + self.intercept_
        packed = None if return_std else self._packed()
        if packed is not None:  # the means alone (a sampler's call): every output in one compiled pass
            from ._mean_kernel import active_means

            active, inv_ls, Z, weights, offset, scale, shift = packed
            k = active_means(np.ascontiguousarray(Xa, dtype=float), active, inv_ls, Z, weights,
                             self.kernel == "matern52")
            mean += (k + offset) * scale + shift
            return mean * self.y_sd_ + self.y_mean_
        sd = np.zeros_like(mean)
        for j in range(len(self.gps_)):
            self._add_gp(Xa, j, mean[:, j], sd[:, j] if return_std else None)
        mean = mean * self.y_sd_ + self.y_mean_
        return (mean, sd * self.y_sd_) if return_std else mean

    def _add_gp(self, Xa: np.ndarray, j: int, mean: np.ndarray, sd: np.ndarray | None) -> None:
        """Add output ``j``'s GP mean to ``mean`` and write its sd to ``sd`` (if given), in place.

        The GPs' own block prediction: inputs were checked once by the caller (a sampler calls
        this thousands of times with a few points)."""
        for i in range(0, Xa.shape[0], 2048):
            m, s = self.gps_[j]._predict_block(Xa[i:i + 2048, self.active_[j]],
                                               None if sd is None else "std", True)
            mean[i:i + 2048] += m
            if sd is not None:
                sd[i:i + 2048] = s

    def predict_output(self, X: Any, output: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and predictive sd of one output (points,): column ``output`` of
        ``predict(X, return_std=True)``, computed the same way, without the other outputs' GPs."""
        check_fitted(self, "gps_")
        Xa = _as_inputs(X, None, self.n_features_in_)
        j = int(output)
        mean = (Xa @ self.coef_.T + self.intercept_)[:, j]  # every column, as predict does: the same bits
        sd = np.zeros_like(mean)
        self._add_gp(Xa, j, mean, sd)
        return mean * self.y_sd_[j] + self.y_mean_[j], sd * self.y_sd_[j]

    def predict_sd_bound(self, X: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """Mean and an upper bound on the predictive sd (points, outputs), at the cost of the mean.

        Conditioning a GP on fewer runs never lowers its variance, so the variance given only the
        most correlated training run bounds the variance given all of them. With the constant
        mean estimated (flat prior), one run ``i`` predicts ``f(x)`` by ``y_i`` with error
        variance ``2 s2 (1 - rho_i) + tau`` (``s2`` the signal variance, ``tau`` the noise with
        any jitter, ``rho_i`` the correlation); the nugget adds ``tau`` again. History matching
        uses it to rule a point out without the O(n^2) variance (``NotRuledOut.contains``).
        ``None`` when the GPs cannot be packed (:func:`._mean_kernel.pack`) or have no constant mean.
        """
        check_fitted(self, "gps_")
        packed = self._packed()
        if packed is None or any(g.mean != "constant" for g in self.gps_):
            return None
        from ._mean_kernel import active_means_nearest

        Xa = _as_inputs(X, None, self.n_features_in_)
        active, inv_ls, Z, weights, offset, scale, shift = packed
        k, rho = active_means_nearest(np.ascontiguousarray(Xa, dtype=float), active, inv_ls, Z, weights,
                                      self.kernel == "matern52")
        mean = Xa @ self.coef_.T + self.intercept_ + (k + offset) * scale + shift
        mean = mean * self.y_sd_ + self.y_mean_
        s2 = np.array([g.signal_variance_ for g in self.gps_])
        tau = np.array([g.noise_ + g._jitter for g in self.gps_])
        var = 2.0 * s2 * (1.0 - np.clip(rho, 0.0, 1.0)) + 2.0 * tau
        # fastmath's correlations may be off in the last bits: widen by far more than that
        return mean, np.sqrt(var * (1.0 + 1e-9) + 1e-12 * s2) * scale * self.y_sd_

    def _packed(self) -> tuple[np.ndarray, ...] | None:
        """The GPs' arrays for the compiled mean (:mod:`._mean_kernel`), made once per fit."""
        from ._mean_kernel import pack

        if getattr(self, "_packed_for_", None) is not self.gps_:
            self._packed_, self._packed_for_ = pack(self.gps_, self.active_), self.gps_
        return self._packed_

    def nugget_sd(self) -> np.ndarray:
        """Sd of each output's nugget (original units): what its inactive inputs add beyond
        their linear effect, as the emulator sees it."""
        check_fitted(self, "gps_")
        return np.array([np.sqrt(g.noise_) * g.y_std_ for g in self.gps_]) * self.y_sd_


    def to_dataset(self) -> xr.Dataset:
        """The fitted emulator as a Dataset (``save``; no pickle): the ridge, each output's active
        inputs and its GP's runs, residuals and hyper-parameters."""
        check_fitted(self, "gps_")
        g = self.gps_
        return xr.Dataset(
            {"y_mean": ("output", self.y_mean_), "y_sd": ("output", self.y_sd_),
             "coef": (("output", "input"), self.coef_), "intercept": ("output", self.intercept_),
             "active": (("output", "rank"), self.active_),
             "gp_X": (("output", "point", "rank"), np.stack([e.X_train_ for e in g])),
             "gp_y": (("output", "point"), np.stack([e.y_train_ for e in g])),
             "gp_theta": (("output", "hyperparameter"), np.stack([e.theta_ for e in g])),
             "gp_y_stats": (("output", "stat"), [[e.y_mean_, e.y_std_] for e in g])},
            attrs={"emulator": "ActiveGPEmulator", "settings": json.dumps(_json_params(self)),
                   "gp_settings": json.dumps([_json_params(e) for e in g])})

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> ActiveGPEmulator:
        """Rebuild a fitted emulator from :meth:`to_dataset` output without refitting."""
        em = cls(**json.loads(ds.attrs["settings"]))
        em.y_mean_, em.y_sd_ = ds["y_mean"].values, ds["y_sd"].values
        em.coef_, em.intercept_ = ds["coef"].values, ds["intercept"].values
        em.active_ = ds["active"].values.astype(int)
        em.n_features_in_ = em.coef_.shape[1]
        em.gps_ = [GPEmulator.from_dataset(xr.Dataset(
            {"X_train": (("point", "parameter"), ds["gp_X"].values[j]),
             "y_train": ("point", ds["gp_y"].values[j]),
             "theta": ("hyperparameter", ds["gp_theta"].values[j])},
            attrs={"settings": json.dumps(settings), "y_mean": float(ds["gp_y_stats"].values[j, 0]),
                   "y_std": float(ds["gp_y_stats"].values[j, 1])}))
            for j, settings in enumerate(json.loads(ds.attrs["gp_settings"]))]
        return em


def _ridge_leverage(X: np.ndarray, alpha: Any) -> np.ndarray:
    """Diagonal of the ridge hat matrix (with intercept) per run and output: (runs, outputs)."""
    U, s, _ = np.linalg.svd(X - X.mean(0), full_matrices=False)
    alpha = np.atleast_1d(np.asarray(alpha, dtype=float))
    shrink = s[:, None] ** 2 / (s[:, None] ** 2 + alpha[None, :])  # (k, outputs)
    h = (U**2) @ shrink + 1.0 / X.shape[0]
    return np.minimum(h, 0.99)
