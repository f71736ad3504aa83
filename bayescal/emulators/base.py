"""The emulator protocol, input checks, netCDF state and the registry of emulators by name.

An emulator here is a scikit-learn regressor on unit-cube inputs with

* ``fit(X, y)`` and ``predict(X, return_std=False)`` (mean, and sd when it gives one);
* ``supports_uq``: True when ``predict(X, return_std=True)`` is available;
* ``to_dataset()`` / ``from_dataset(ds)`` (and ``save`` / ``load``): its fitted state as netCDF,
  never pickle;
* fitted-state checks through :func:`sklearn.utils.validation.check_is_fitted`.

:data:`REGISTRY` maps the names stored in files and used in configs (``"GPEmulator"``,
``"SVDEmulator"``) to classes; :func:`load_emulator` dispatches on it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator
from sklearn.exceptions import DataConversionWarning, NotFittedError
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted

__all__ = ["EmulatorError", "NotFittedEmulatorError", "REGISTRY", "check_fitted", "register", "load_emulator"]

_UNIT_TOL = 1e-9


class EmulatorError(ValueError):
    """Invalid training data or inputs for an emulator."""


class NotFittedEmulatorError(EmulatorError, NotFittedError):
    """An emulator used before ``fit`` (also scikit-learn's :class:`NotFittedError`)."""


def check_fitted(est: BaseEstimator, attribute: str) -> None:
    """scikit-learn's :func:`check_is_fitted`, raising :class:`NotFittedEmulatorError`."""
    try:
        check_is_fitted(est, attribute)
    except NotFittedError:
        raise NotFittedEmulatorError(
            f"this {type(est).__name__} is not fitted yet; call fit first"
        ) from None


# ----------------------------------------------------------------------------------- input checks
def _labels_of(X: Any) -> list[str] | None:
    if isinstance(X, xr.DataArray) and "parameter" in X.dims:
        return [str(v) for v in X["parameter"].values]
    return None


def _as_inputs(X: Any, labels: list[str] | None = None, n_features: int | None = None,
               domain: str = "unit_cube", who: str = "the emulator") -> np.ndarray:
    """Validate inputs; ``labels`` are the parameters the emulator was fitted on.

    ``domain="unit_cube"`` (bayescal's convention) also rejects points outside [0, 1];
    ``"any"`` only requires finite values and follows scikit-learn's input rules exactly (a
    1-D input is an error); in the unit cube a single point may be given 1-D. Complex, sparse
    and empty inputs are refused with scikit-learn's messages (``check_array``).
    """
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
    if domain != "any" and isinstance(X, np.ndarray | list | tuple) and np.ndim(X) == 1:
        X = np.asarray(X)[None, :]
    if domain != "any" and isinstance(X, np.ndarray | list | tuple) and np.ndim(X) != 2:
        raise EmulatorError(f"inputs must be 2-D (points, parameters), got shape {np.shape(X)}")
    X = check_array(X, dtype=float, order="C", ensure_all_finite=False)  # one memory layout: bit for bit
    if n_features is not None and X.shape[1] != n_features:
        raise EmulatorError(f"X has {X.shape[1]} features, but {who} is expecting {n_features} features "
                            f"as input (it was fitted on {n_features} parameters)")
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        name = labels[j] if labels else f"column {j}"
        raise EmulatorError(f"input {name} of point {i} is NaN or inf ({X[i, j]})")
    if domain == "any":
        return X
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
    if y is None:
        raise EmulatorError("this emulator requires y to be passed, but the target y is None")
    y = np.asarray(y, dtype=float)
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected; it is raveled",
                      DataConversionWarning, stacklevel=3)
    y = y.reshape(-1)
    if y.shape[0] != n:
        raise EmulatorError(f"{y.shape[0]} targets for {n} input points")
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise EmulatorError(
            f"{bad.size} target value(s) are NaN/inf (first at point {bad[0]}); drop failed runs before "
            "fitting (e.g. design[~failed]) — an emulator cannot learn from them"
        )
    return y


class _NetCDFState:
    """``save``/``load`` through the subclass's ``to_dataset``/``from_dataset`` (no pickle)."""

    def save(self, path: str | Path) -> None:
        """Write the fitted emulator to a netCDF file."""
        self.to_dataset().to_netcdf(path, engine="h5netcdf")

    supports_uq: bool = True

    @classmethod
    def load(cls, path: str | Path):
        """Read an emulator written by :meth:`save` (errors name the file)."""
        ds = _read_emulator_file(path)
        try:
            return cls.from_dataset(ds)
        except (EmulatorError, KeyError) as err:
            raise EmulatorError(f"{path}: {err}") from None


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


REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: make an emulator loadable by name (its class name in saved files)."""
    REGISTRY[cls.__name__] = cls
    return cls


def load_emulator(path: str | Path):
    """Read any emulator saved by bayescal, dispatching on the file's ``emulator`` attribute."""
    path = Path(path)
    ds = _read_emulator_file(path)
    kind = ds.attrs.get("emulator")
    if kind not in REGISTRY:
        raise EmulatorError(f"{path} is not a bayescal emulator file (emulator attribute {kind!r}; "
                            f"known: {sorted(REGISTRY)})")
    try:
        return REGISTRY[kind].from_dataset(ds)
    except (EmulatorError, KeyError) as err:
        raise EmulatorError(f"{path}: {err}") from None


def _read_emulator_file(path: str | Path) -> xr.Dataset:
    """The whole Dataset of an emulator file; a missing or unreadable file is named."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"emulator file {path} does not exist")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            ds = ds.load()
    except (OSError, ValueError) as err:
        raise EmulatorError(f"cannot read emulator file {path} (truncated or not netCDF-4?): {err}") from None
    for name, var in ds.data_vars.items():  # fitted state (weights, factors) is finite by construction
        if np.issubdtype(var.dtype, np.floating) and not np.isfinite(var.values).all():
            raise EmulatorError(f"emulator file {path}: variable {name!r} holds NaN/inf values (a damaged "
                                "or diverged fit); refit the emulator")
    return ds
