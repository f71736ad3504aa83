"""One parameter family (scalar or per-PFT vector), the PFT groupings, and parameter labels."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["GROUPINGS", "PFTS", "Parameter", "ParameterError", "family", "group_index", "split_label"]

PFTS: tuple[str, ...] = (
    "NDL-EVG",
    "NDL-DCD",
    "BDL-EVG",
    "BDL-DCD-CLD",
    "BDL-DCD-DRY",
    "CROP-C3",
    "CROP-C4",
    "GRASS-C3",
    "GRASS-C4",
)

#: Named groupings of the PFTs used by parameter vectors (Seiler 2026, Table 1): nine values, one per
#: PFT; four values (needleleaf trees, broadleaf trees, crops, grasses); two values (trees vs. crops
#: and grasses).
GROUPINGS: dict[str, tuple[str, ...]] = {
    "pft9": PFTS,
    "pft4": ("NDL", "BDL", "CROP", "GRASS"),
    "pft2": ("TREE", "NONTREE"),
}

_GROUP_OF_PFT: dict[str, tuple[int, ...]] = {
    "pft9": tuple(range(9)),
    "pft4": (0, 0, 1, 1, 1, 2, 2, 3, 3),
    "pft2": (0, 0, 0, 0, 0, 1, 1, 1, 1),
}

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[([^\[\]]+)\])?$")


_UNIT_TOL = 1e-9


class ParameterError(ValueError):
    """Invalid parameter definition or parameter values; the message names the parameter."""


def group_index(grouping: str) -> np.ndarray:
    """Index of each of the nine PFTs into the groups of ``grouping``.

    Parameters
    ----------
    grouping : str
        One of ``"pft9"``, ``"pft4"``, ``"pft2"``.

    Returns
    -------
    numpy.ndarray of int, shape (9,)
        ``values[group_index(g)]`` expands a grouped vector to one value per PFT.
    """
    try:
        return np.asarray(_GROUP_OF_PFT[grouping], dtype=int)
    except KeyError:
        raise ParameterError(
            f"unknown grouping {grouping!r}; known groupings: {sorted(_GROUP_OF_PFT)}"
        ) from None


def _as_values(name: str, what: str, value: Any, n: int | None) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if n is None:
        if arr.ndim != 0:
            raise ParameterError(
                f"parameter {name!r}: {what} must be a scalar for a scalar parameter, "
                f"got shape {arr.shape}"
            )
        arr = arr.reshape(1)
    else:
        if arr.ndim == 0:
            arr = np.full(n, float(arr))
        elif arr.shape != (n,):
            raise ParameterError(
                f"parameter {name!r}: {what} has {arr.size} values but the parameter has {n} groups"
            )
    if not np.all(np.isfinite(arr)):
        raise ParameterError(f"parameter {name!r}: {what} contains non-finite values {arr.tolist()}")
    return arr


@dataclass(frozen=True)
class Parameter:
    """One parameter family: a scalar, or a vector over named groups.

    Parameters
    ----------
    name : str
        Identifier, e.g. ``"vmax"``.
    default, lower, upper : float or array_like
        Default value and bounds; for a vector parameter either one number (used for every group)
        or one value per group.
    units : str, optional
        Units of the physical value (free text, UDUNITS-style where possible).
    description : str, optional
        What the parameter does.
    groups : str or sequence of str, optional
        ``None`` for a scalar; a grouping name from :data:`GROUPINGS` (``"pft9"``, ``"pft4"``,
        ``"pft2"``); or an explicit list of group labels.
    scale : {"linear", "log"}, default "linear"
        How the unit cube maps to the value: ``"log"`` is uniform in ``log(value)`` (for rates
        spanning orders of magnitude; needs ``lower > 0``).

    Raises
    ------
    ParameterError
        If a bound or default is non-finite, ``lower >= upper``, the default lies outside the
        bounds, or a vector has the wrong length. The message names the parameter and group.
    """

    name: str
    default: Any
    lower: Any
    upper: Any
    units: str = ""
    description: str = ""
    groups: str | Sequence[str] | None = None
    scale: str = "linear"
    group_labels: tuple[str, ...] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ParameterError(
                f"parameter name {self.name!r} is not an identifier (letters, digits, underscore)"
            )
        if self.groups is None:
            labels = None
        elif isinstance(self.groups, str):
            if self.groups not in GROUPINGS:
                raise ParameterError(
                    f"parameter {self.name!r}: unknown grouping {self.groups!r}; "
                    f"use one of {sorted(GROUPINGS)} or a list of group labels"
                )
            labels = GROUPINGS[self.groups]
        else:
            labels = tuple(str(g) for g in self.groups)
            if len(labels) == 0 or len(set(labels)) != len(labels):
                raise ParameterError(
                    f"parameter {self.name!r}: group labels must be non-empty and unique"
                )
        object.__setattr__(self, "group_labels", labels)
        if self.scale not in ("linear", "log"):
            raise ParameterError(
                f"parameter {self.name!r}: scale must be 'linear' or 'log', got {self.scale!r}"
            )
        n = None if labels is None else len(labels)
        lo = _as_values(self.name, "lower", self.lower, n)
        hi = _as_values(self.name, "upper", self.upper, n)
        de = _as_values(self.name, "default", self.default, n)
        for i, label in enumerate(self.labels):
            if not lo[i] < hi[i]:
                raise ParameterError(
                    f"parameter {label!r}: lower bound {lo[i]} is not below upper bound {hi[i]}"
                )
            if self.scale == "log" and not lo[i] > 0:
                raise ParameterError(
                    f"parameter {label!r}: a log-scaled parameter needs lower > 0, got {lo[i]}"
                )
            if not lo[i] <= de[i] <= hi[i]:
                raise ParameterError(
                    f"parameter {label!r}: default {de[i]} outside bounds [{lo[i]}, {hi[i]}]"
                )
        for attr, arr in (("lower", lo), ("upper", hi), ("default", de)):
            arr.setflags(write=False)
            object.__setattr__(self, attr, arr)

    @property
    def size(self) -> int:
        """Number of values (1 for a scalar)."""
        return 1 if self.group_labels is None else len(self.group_labels)

    @property
    def is_scalar(self) -> bool:
        """True for a scalar parameter."""
        return self.group_labels is None

    @property
    def labels(self) -> list[str]:
        """Flat labels of the values: ``name`` or ``name[group]``."""
        if self.group_labels is None:
            return [self.name]
        return [f"{self.name}[{g}]" for g in self.group_labels]

    def per_pft(self, values: np.ndarray) -> np.ndarray:
        """Expand this parameter's values (``(..., size)``) to one value per PFT (``(..., 9)``).

        Scalars are broadcast to all nine PFTs; ``pft4``/``pft2`` vectors are repeated over the PFTs
        of each group.
        """
        values = np.asarray(values, dtype=float)
        if self.group_labels is None:
            return np.repeat(values, len(PFTS), axis=-1)
        if isinstance(self.groups, str):
            return values[..., group_index(self.groups)]
        raise ParameterError(
            f"parameter {self.name!r} has custom groups {self.group_labels}; it has no PFT mapping"
        )

    def to_dict(self) -> dict[str, Any]:
        """TOML/JSON-ready description of the family."""
        out: dict[str, Any] = {"description": self.description, "units": self.units}
        if self.groups is not None:
            out["groups"] = self.groups if isinstance(self.groups, str) else list(self.group_labels)

        def conv(a: np.ndarray) -> Any:
            return float(a[0]) if self.is_scalar else [float(v) for v in a]

        out.update(default=conv(self.default), lower=conv(self.lower), upper=conv(self.upper))
        if self.scale != "linear":
            out["scale"] = self.scale
        return out


_PARAM_KEYS = {"default", "lower", "upper", "units", "description", "groups", "fixed", "scale"}


def split_label(label: str) -> tuple[str, str]:
    """``"vmax[BDL-EVG]"`` -> ``("vmax", "BDL-EVG")``; a scalar's label -> ``(name, "")``.

    The one parser of parameter labels; every module asks here.
    """
    m = _LABEL_RE.match(label)
    if m is None:
        raise ParameterError(f"{label!r} is not a parameter label (name or name[GROUP])")
    return m.group(1), m.group(2) or ""


def family(label: str) -> str:
    """The family (parameter name) of a label: ``"vmax[BDL-EVG]"`` -> ``"vmax"``."""
    return split_label(label)[0]
