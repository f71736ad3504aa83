"""Emulators of output fields through their principal components (Lu & Ricciuto 2019, Dagon et al. 2020)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.neural_network import MLPRegressor

from .base import EmulatorError, _as_inputs, _json_params, _labels_of, _NetCDFState, check_fitted, register
from .gp import GPEmulator

__all__ = ["SVDEmulator"]


@register
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

    @property
    def supports_uq(self) -> bool:
        """Predictive sd only with GP components (an MLP gives a mean only)."""
        return self.estimator == "gp" or isinstance(self.estimator, GPEmulator)

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
        check_fitted(self, "estimators_")
        Xa = _as_inputs(X, self.parameters_, self.n_features_in_)
        m = Xa.shape[0]
        if not return_std and (packed := self._packed()) is not None:
            # the means alone (a sampler's call): every component in one compiled pass
            from ._mean_kernel import active_means

            active, inv_ls, Z, weights, offset, scale, shift = packed
            k = active_means(np.ascontiguousarray(Xa, dtype=float), active, inv_ls, Z, weights,
                             self.estimators_[0].kernel == "matern52")
            return self.mean_ + (((k + offset) * scale + shift) * self.score_scale_) @ self.components_
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

    def _packed(self) -> tuple[np.ndarray, ...] | None:
        """The component GPs' arrays for the compiled mean (:mod:`._mean_kernel`), once per fit;
        ``None`` unless every component is a :class:`GPEmulator` with one kernel."""
        from ._mean_kernel import pack

        est = self.estimators_
        if getattr(self, "_packed_for_", None) is not est:
            ok = all(isinstance(e, GPEmulator) for e in est) and len({e.kernel for e in est}) == 1 \
                and est[0].kernel in ("matern52", "rbf")
            active = np.tile(np.arange(self.n_features_in_), (len(est), 1))
            self._packed_, self._packed_for_ = (pack(est, active) if ok else None), est
        return self._packed_

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
        check_fitted(self, "estimators_")
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
