"""A parameter space: ordered parameter families, flattened values, the unit cube, fixing, I/O."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w
import xarray as xr

from .parameter import _LABEL_RE, _PARAM_KEYS, _UNIT_TOL, Parameter, ParameterError, split_label

__all__ = ["UNIT_CUBE", "ParameterSpace"]

#: attributes of an array of unit-cube values (a design's ``u``, alternatives, clouds)
UNIT_CUBE = {"long_name": "calibrated values on the unit cube (0 and 1: the bounds of each prior range)"}


class ParameterSpace:
    """An ordered set of parameter families, flattened to labelled values.

    Parameters
    ----------
    parameters : sequence of Parameter
        The families, in order. Names must be unique.
    fixed : mapping of str to float, optional
        Labels (``"vmax[CROP-C4]"``) or family names (``"gamma_w"``, or ``"vmax"`` for all its
        values) to hold fixed, with the value to hold them at (``None`` for the default).

    Examples
    --------
    >>> from bayescal.parameters import Parameter, ParameterSpace
    >>> space = ParameterSpace([Parameter("vmax", 50.0, 20.0, 100.0, groups="pft4"),
    ...                         Parameter("q10", 2.0, 1.5, 3.0)])
    >>> space.labels[:2]
    ['vmax[NDL]', 'vmax[BDL]']
    >>> space.fix({"q10": None}).n_free
    4
    """

    def __init__(
        self, parameters: Sequence[Parameter], fixed: Mapping[str, float | None] | None = None
    ):
        params = list(parameters)
        names = [p.name for p in params]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ParameterError(f"duplicate parameter names: {dupes}")
        if not params:
            raise ParameterError("a parameter space needs at least one parameter")
        self._params = {p.name: p for p in params}
        self._all_labels = [lab for p in params for lab in p.labels]
        self._index = {lab: i for i, lab in enumerate(self._all_labels)}
        self._family_slices: dict[str, slice] = {}
        start = 0
        for p in params:
            self._family_slices[p.name] = slice(start, start + p.size)
            start += p.size
        self._all_lower = np.concatenate([p.lower for p in params])
        self._all_upper = np.concatenate([p.upper for p in params])
        self._all_default = np.concatenate([p.default for p in params])
        self._all_log = np.concatenate([np.full(p.size, p.scale == "log") for p in params])
        self._fixed_values = self._all_default.copy()
        self._fixed_mask = np.zeros(len(self._all_labels), dtype=bool)
        for key, value in (fixed or {}).items():
            idx = self._resolve(key)
            if value is None:
                vals = self._all_default[idx]
            else:
                vals = np.broadcast_to(np.asarray(value, dtype=float), idx.shape).copy()
                for i, v in zip(idx, vals, strict=True):
                    self._check_value(i, v, strict=True, what="fixed value")
            self._fixed_mask[idx] = True
            self._fixed_values[idx] = vals
        self._free_idx = np.flatnonzero(~self._fixed_mask)
        log = self._all_log[self._free_idx]
        # the unit cube maps linearly onto g(value): g = log for log-scaled values, else identity
        self._g_lower = np.where(log, np.log(np.where(log, self.lower, 1.0)), self.lower)
        self._g_upper = np.where(log, np.log(np.where(log, self.upper, 1.0)), self.upper)
        self._log_free = log
        if self._free_idx.size == 0:
            raise ParameterError("every parameter value is fixed: nothing left to calibrate")

    # ------------------------------------------------------------------ lookup
    def _resolve(self, key: str) -> np.ndarray:
        """Indices (into the full vector) of a family name or a value label."""
        if key in self._family_slices:
            s = self._family_slices[key]
            return np.arange(s.start, s.stop)
        if key in self._index:
            return np.array([self._index[key]])
        m = _LABEL_RE.match(key)
        family = m.group(1) if m else key
        if family in self._params and m and m.group(2):
            p = self._params[family]
            raise ParameterError(
                f"unknown group {m.group(2)!r} for parameter {family!r}; "
                f"its groups are {list(p.group_labels or [])}"
            )
        raise ParameterError(f"unknown parameter {key!r}; known parameters: {self.names}")

    def _check_value(self, i: int, v: float, strict: bool, what: str = "value") -> None:
        label = self._all_labels[i]
        if not np.isfinite(v):
            raise ParameterError(f"parameter {label!r}: {what} {v} is not finite")
        if strict and not (self._all_lower[i] <= v <= self._all_upper[i]):
            raise ParameterError(
                f"parameter {label!r}: {what} {v} outside bounds "
                f"[{self._all_lower[i]}, {self._all_upper[i]}]"
            )

    def __getitem__(self, name: str) -> Parameter:
        try:
            return self._params[name]
        except KeyError:
            raise ParameterError(f"unknown parameter {name!r}; known parameters: {self.names}") from None

    def __iter__(self) -> Iterator[Parameter]:
        return iter(self._params.values())

    def __len__(self) -> int:
        return len(self._params)

    def __contains__(self, name: object) -> bool:
        return name in self._params

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ParameterSpace):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return (
            f"<ParameterSpace: {len(self)} parameters, {self.n_values} values, "
            f"{self.n_free} free>"
        )

    # -------------------------------------------------------------- properties
    @property
    def names(self) -> list[str]:
        """Family names, in order."""
        return list(self._params)

    @property
    def all_labels(self) -> list[str]:
        """Labels of every value, fixed or free."""
        return list(self._all_labels)

    @property
    def labels(self) -> list[str]:
        """Labels of the free values (the coordinates of designs, emulators and posteriors)."""
        return [self._all_labels[i] for i in self._free_idx]

    @property
    def n_values(self) -> int:
        """Number of values, fixed and free (Seiler's 28 parameters give 165)."""
        return len(self._all_labels)

    @property
    def n_free(self) -> int:
        """Number of free values."""
        return int(self._free_idx.size)

    @property
    def free_index(self) -> np.ndarray:
        """Positions of the free values in the full vector."""
        return self._free_idx.copy()

    @property
    def lower(self) -> np.ndarray:
        """Lower bounds of the free values."""
        return self._all_lower[self._free_idx]

    @property
    def upper(self) -> np.ndarray:
        """Upper bounds of the free values."""
        return self._all_upper[self._free_idx]

    @property
    def default(self) -> np.ndarray:
        """Defaults of the free values."""
        return self._all_default[self._free_idx]

    @property
    def all_lower(self) -> np.ndarray:
        """Lower bounds of every value."""
        return self._all_lower.copy()

    @property
    def all_upper(self) -> np.ndarray:
        """Upper bounds of every value."""
        return self._all_upper.copy()

    @property
    def all_default(self) -> np.ndarray:
        """Defaults of every value (fixed values not applied)."""
        return self._all_default.copy()

    @property
    def fixed(self) -> dict[str, float]:
        """Fixed labels and the values they are held at."""
        return {
            self._all_labels[i]: float(self._fixed_values[i])
            for i in np.flatnonzero(self._fixed_mask)
        }

    # ------------------------------------------------------------ transforms
    def _as_batch(self, x: Any, n: int, what: str) -> tuple[np.ndarray, bool]:
        arr = np.asarray(x, dtype=float)
        single = arr.ndim == 1
        arr = np.atleast_2d(arr)
        if arr.ndim != 2 or arr.shape[1] != n:
            raise ParameterError(
                f"{what} must have shape (n, {n}) or ({n},) for this space, got {np.shape(x)}"
            )
        return arr, single

    def to_unit(self, x: Any) -> np.ndarray:
        """Map free physical values to the unit cube (Seiler Eq. 1).

        Parameters
        ----------
        x : array_like, shape (n_free,) or (n, n_free)

        Returns
        -------
        numpy.ndarray
            ``(x - lower) / (upper - lower)`` (of ``log x`` for log-scaled values), same shape
            as ``x``. A value outside its bounds maps outside [0, 1], not an error (a truth or a
            published value outside the prior's range is still placed); :meth:`from_unit`, which
            makes what a model runs, refuses such points.
        """
        arr, single = self._as_batch(x, self.n_free, "x")
        if self._log_free.any():
            with np.errstate(divide="ignore", invalid="ignore"):
                arr = np.where(self._log_free, np.log(np.where(self._log_free, arr, 1.0)), arr)
        u = (arr - self._g_lower) / (self._g_upper - self._g_lower)
        return u[0] if single else u

    def from_unit(self, u: Any) -> np.ndarray:
        """Map unit-cube values to free physical values (inverse of :meth:`to_unit`).

        Raises :class:`ParameterError` naming the parameter (and row) for a value that is NaN or
        outside [0, 1] by more than 1e-9 (round-off within that is clipped), so an out-of-bounds
        physical value never reaches a model.
        """
        arr, single = self._as_batch(u, self.n_free, "u")
        bad = ~((arr >= -_UNIT_TOL) & (arr <= 1 + _UNIT_TOL))  # NaN fails both comparisons
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ParameterError(
                f"unit-cube value of {self.labels[j]!r} is {float(arr[i, j])}"
                + ("" if single else f" (row {i})")
                + f", outside [0, 1]; {int(bad.sum())} value(s) in all"
            )
        g = self._g_lower + np.clip(arr, 0.0, 1.0) * (self._g_upper - self._g_lower)
        x = np.where(self._log_free, np.exp(g), g) if self._log_free.any() else g
        if self._log_free.any():  # exp(log(bound)) may miss the bound by an ulp
            x = np.clip(x, self.lower, self.upper)
        return x[0] if single else x

    def expand(self, x: Any) -> np.ndarray:
        """Free values ``(n, n_free)`` to full vectors ``(n, n_values)`` with fixed values filled in."""
        arr, single = self._as_batch(x, self.n_free, "x")
        full = np.broadcast_to(self._fixed_values, (arr.shape[0], self.n_values)).copy()
        full[:, self._free_idx] = arr
        return full[0] if single else full

    def reduce(self, x_full: Any) -> np.ndarray:
        """Full vectors ``(n, n_values)`` to their free values ``(n, n_free)``."""
        arr, single = self._as_batch(x_full, self.n_values, "x_full")
        out = arr[:, self._free_idx]
        return out[0] if single else out

    def check(self, x: Any, strict: bool = True, full: bool = False) -> np.ndarray:
        """Validate a batch of parameter vectors and return it as a float array.

        Parameters
        ----------
        x : array_like, shape (n_free,) or (n, n_free); (.., n_values) if ``full``
        strict : bool, default True
            Also require every value to lie within its bounds.
        full : bool, default False
            ``x`` holds every value, not only the free ones.

        Raises
        ------
        ParameterError
            Naming the first offending label, member and value.
        """
        n = self.n_values if full else self.n_free
        arr, single = self._as_batch(x, n, "x")
        index = np.arange(self.n_values) if full else self._free_idx
        bad = ~np.isfinite(arr)
        if strict:
            lo, hi = self._all_lower[index], self._all_upper[index]
            bad |= (arr < lo) | (arr > hi)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            self._check_value(int(index[col]), float(arr[row, col]), strict)
        return arr[0] if single else arr

    def unflatten(self, x_full: Any) -> dict[str, np.ndarray]:
        """Split full vectors into families: ``{name: (..., size)}`` (scalars as ``(...,)``)."""
        arr, single = self._as_batch(x_full, self.n_values, "x_full")
        out = {}
        for name, s in self._family_slices.items():
            v = arr[:, s]
            if self._params[name].is_scalar:
                v = v[:, 0]
            out[name] = v[0] if single else v
        return out

    def flatten(self, values: Mapping[str, Any]) -> np.ndarray:
        """Inverse of :meth:`unflatten`; families not given take their defaults.

        Raises
        ------
        ParameterError
            For an unknown family name or a vector of the wrong length.
        """
        unknown = sorted(set(values) - set(self._params))
        if unknown:
            raise ParameterError(f"unknown parameters {unknown}; known parameters: {self.names}")
        batch_shape: tuple[int, ...] | None = None
        parts = {}
        for name, v in values.items():
            p = self._params[name]
            arr = np.asarray(v, dtype=float)
            if not p.is_scalar:
                if arr.ndim == 0 or arr.shape[-1] != p.size:
                    raise ParameterError(
                        f"parameter {name!r}: expected {p.size} values "
                        f"({', '.join(p.group_labels or ())}), got shape {arr.shape}"
                    )
                bshape = arr.shape[:-1]
            else:
                bshape = arr.shape
                arr = arr[..., None]
            if batch_shape is not None and bshape != batch_shape:
                raise ParameterError(f"parameter {name!r}: batch shape {bshape} != {batch_shape}")
            batch_shape = bshape
            parts[name] = arr
        batch_shape = batch_shape or ()
        out = np.broadcast_to(self._all_default, (*batch_shape, self.n_values)).copy()
        for name, arr in parts.items():
            out[..., self._family_slices[name]] = arr
        return out

    def index(self, label: str) -> int:
        """Position of a label among the free values."""
        i = self._resolve(label)
        if i.size != 1:
            raise ParameterError(f"{label!r} is a vector parameter; give a label like {label}[...]")
        pos = np.flatnonzero(self._free_idx == i[0])
        if pos.size == 0:
            raise ParameterError(f"parameter {label!r} is fixed in this space")
        return int(pos[0])

    # --------------------------------------------------------------- subsets
    def fix(self, selection: Mapping[str, float | None] | Iterable[str]) -> ParameterSpace:
        """A new space with more values fixed.

        Parameters
        ----------
        selection : mapping or iterable of str
            Labels or family names; a mapping also gives the values (``None``: the default).
        """
        new = dict(self.fixed)
        if isinstance(selection, Mapping):
            new.update(selection)
        else:
            new.update({k: None for k in selection})
        return ParameterSpace(list(self), fixed=new)

    def only(self, selection: Iterable[str]) -> ParameterSpace:
        """A new space in which only ``selection`` (labels or family names) is free.

        Everything else is fixed at its current fixed value or its default.
        """
        keep = np.zeros(self.n_values, dtype=bool)
        for key in selection:
            keep[self._resolve(key)] = True
        fixed = {
            self._all_labels[i]: float(self._fixed_values[i])
            for i in np.flatnonzero(~keep)
        }
        return ParameterSpace(list(self), fixed=fixed)

    def unfix(self) -> ParameterSpace:
        """The same families with every value free."""
        return ParameterSpace(list(self))

    # ----------------------------------------------------------------- xarray
    def to_dataarray(self, x: Any, dim: str = "member", full: bool = False) -> xr.DataArray:
        """A labelled ``(dim, parameter)`` array of parameter vectors.

        The ``parameter`` coordinate holds labels; ``name`` and ``group`` coordinates give the
        family and group of each value, and ``lower``/``upper`` the bounds.
        """
        arr = self.check(x, strict=False, full=full)
        arr = np.atleast_2d(arr)
        index = np.arange(self.n_values) if full else self._free_idx
        labels = [self._all_labels[i] for i in index]
        fam, grp = zip(*(split_label(lab) for lab in labels), strict=True)
        return xr.DataArray(
            arr,
            dims=(dim, "parameter"),
            coords={
                dim: np.arange(arr.shape[0]),
                "parameter": labels,
                "name": ("parameter", list(fam)),
                "group": ("parameter", list(grp)),
                "lower": ("parameter", self._all_lower[index]),
                "upper": ("parameter", self._all_upper[index]),
            },
            name="theta",
        )

    # ------------------------------------------------------------------ TOML
    def to_dict(self) -> dict[str, Any]:
        """A TOML/JSON-ready description: ``{"parameters": {name: {...}}}``."""
        params = {}
        fixed = self.fixed
        for p in self:
            d = p.to_dict()
            fx = {lab: fixed[lab] for lab in p.labels if lab in fixed}
            if fx:
                d["fixed"] = fx
            params[p.name] = d
        return {"parameters": params}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "parameter table") -> ParameterSpace:
        """Build a space from :meth:`to_dict` output (or a parsed TOML document).

        ``fixed`` in a family may be ``true`` (the whole family at its defaults), a list of labels
        (at their defaults) or a table of ``label = value``.
        """
        if "parameters" not in data or not isinstance(data["parameters"], Mapping):
            raise ParameterError(f"{source}: missing a [parameters] table")
        params, fixed = [], {}
        for name, spec in data["parameters"].items():
            if not isinstance(spec, Mapping):
                raise ParameterError(f"{source}: parameters.{name} must be a table")
            unknown = sorted(set(spec) - _PARAM_KEYS)
            if unknown:
                raise ParameterError(
                    f"{source}: parameters.{name} has unknown keys {unknown}; "
                    f"allowed: {sorted(_PARAM_KEYS)}"
                )
            missing = [k for k in ("default", "lower", "upper") if k not in spec]
            if missing:
                raise ParameterError(f"{source}: parameters.{name} is missing {missing}")
            try:
                p = Parameter(name=name, default=spec["default"], lower=spec["lower"], upper=spec["upper"],
                              units=str(spec.get("units", "")), description=str(spec.get("description", "")),
                              groups=spec.get("groups"), scale=str(spec.get("scale", "linear")))
            except ParameterError as err:  # bounds, default, scale: named with the file
                raise ParameterError(f"{source}: {err}") from None
            except (TypeError, ValueError) as err:  # a bound that is not a number ("0.5x")
                raise ParameterError(f"{source}: parameter {name!r}: {err}") from None
            params.append(p)
            fx = spec.get("fixed", False)
            if fx is True:
                fixed[name] = None
            elif isinstance(fx, Mapping):
                fixed.update(fx)
            elif isinstance(fx, list):
                fixed.update({k: None for k in fx})
            elif fx is not False:
                raise ParameterError(
                    f"{source}: parameters.{name}.fixed must be true/false, a list or a table"
                )
        return cls(params, fixed=fixed)

    def to_toml(self, path: str | Path) -> None:
        """Write the space (bounds, defaults, units, fixed values) to a TOML file."""
        Path(path).write_text(tomli_w.dumps(self.to_dict()))

    @classmethod
    def from_toml(cls, path: str | Path) -> ParameterSpace:
        """Read a space written by :meth:`to_toml` (or by hand in the same layout)."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ParameterError(f"parameter file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as err:
            raise ParameterError(f"parameter file {str(path)!r} is not valid TOML: {err}") from None
        return cls.from_dict(data, source=str(path))
