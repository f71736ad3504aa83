"""Validation and interpretation of emulators: metrics, k-fold, permutation importance, partial dependence."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, RegressorMixin, clone

from .base import EmulatorError, _as_inputs

__all__ = ["loo_metrics", "kfold", "permutation_importance", "partial_dependence"]

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
        if getattr(est, "supports_uq", False):
            mean[te], sd[te] = est.predict(Xa[te], return_std=True)
        else:
            mean[te] = est.predict(Xa[te])
        fold[te] = f
    dims = ("point",) if ya.ndim == 1 else ("point", "output")
    ds = xr.Dataset({"y": (dims, ya), "mean": (dims, mean), "fold": ("point", fold)})
    has_sd = bool(np.isfinite(sd).all())
    if has_sd:
        ds["sd"] = (dims, sd)
    ds.attrs.update(loo_metrics(ya.ravel(), mean.ravel(), sd.ravel() if has_sd else None))
    return ds


# ------------------------------------------------------------------------------ interpretation
class _Output(RegressorMixin, BaseEstimator):
    """One output column of an emulator with several, as a scikit-learn regressor (already fitted)."""

    def __init__(self, emulator: Any = None, output: int = 0):
        self.emulator, self.output = emulator, output

    def fit(self, X: Any, y: Any) -> _Output:
        return self

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.emulator.predict(X)).reshape(len(X), -1)[:, self.output]

    def __sklearn_is_fitted__(self) -> bool:
        return True


def _labels(emulator: Any, d: int) -> list[str]:
    return getattr(emulator, "parameters_", None) or [f"x{j}" for j in range(d)]


def permutation_importance(
    emulator: BaseEstimator, X: Any, y: Any, n_repeats: int = 10, seed: int | None = 0,
    scoring: str | None = None, output: int | None = None,
) -> xr.Dataset:
    """Permutation importance of each input (Dagon et al. 2020, Fig. 7) via scikit-learn.

    Parameters
    ----------
    emulator : fitted estimator
    X, y : array_like
        Inputs (points, parameters) and the outputs to score against.
    n_repeats : int, default 10
        Shuffles per input.
    seed : int, optional
    scoring : str, optional
        A scikit-learn scorer name; default the emulator's ``score`` (R²). Dagon's is the mean
        squared error: ``"neg_mean_squared_error"``.
    output : int, optional
        Score one output column of a several-output emulator (``y`` may hold all columns).

    Returns
    -------
    xarray.Dataset
        ``importance`` and ``importance_sd`` on ``parameter``: the drop of the score when the input
        is shuffled (for the MSE scorer: the rise of the MSE), labelled by the emulator's
        parameters when it has them; ``attrs["baseline_score"]``: the score unshuffled.
    """
    from sklearn.inspection import permutation_importance as _pi
    from sklearn.metrics import check_scoring

    Xa = _as_inputs(X)
    ya = np.asarray(y, dtype=float)
    est = emulator
    if output is not None:
        est, ya = _Output(emulator, output), (ya[:, output] if ya.ndim == 2 else ya)
    r = _pi(est, Xa, ya, scoring=scoring, n_repeats=n_repeats, random_state=seed)
    return xr.Dataset(
        {"importance": ("parameter", r.importances_mean), "importance_sd": ("parameter", r.importances_std)},
        coords={"parameter": _labels(emulator, Xa.shape[1])},
        attrs={"baseline_score": float(check_scoring(est, scoring)(est, Xa, ya)),
               "scoring": scoring or "score"},
    )


def partial_dependence(
    emulator: BaseEstimator, X: Any, parameter: int | str, grid_resolution: int = 25,
    grid: Any = None, output: int | None = None,
) -> xr.DataArray:
    """Partial dependence of the emulated output on one input (Dagon et al. 2020, Fig. 8).

    ``parameter`` is a column index or a label of ``emulator.parameters_``; returns the average
    prediction over ``X`` on a grid of that input (unit-cube values, dim ``value``): ``grid``
    (Dagon: ten values evenly over the range) or ``grid_resolution`` values between the 5th and
    95th percentiles of ``X``. ``output``: that column of a several-output emulator (default the
    first).
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
    est = emulator if output is None else _Output(emulator, output)
    kw = ({"grid_resolution": grid_resolution} if grid is None
          else {"custom_values": {j: np.asarray(grid, dtype=float)}})
    r = _pd(est, Xa, [j], kind="average", **kw)
    name = labels[j] if labels else f"x{j}"
    return xr.DataArray(r["average"][0], dims="value", coords={"value": r["grid_values"][0]},
                        name="partial_dependence", attrs={"parameter": name})
