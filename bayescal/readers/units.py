"""Unit conversion for observation products: a small table, not a units library.

Each known unit string maps to a quantity and a factor to that quantity's base unit (carbon
flux: kgC m-2 s-1; energy flux: W m-2; leaf area: m2 m-2; carbon stock: kgC m-2). Spellings are
normalised (``gC m-2 d-1`` = ``g C m-2 day-1`` = ``gC/m2/d``). A unit the table does not know, or
a conversion between quantities, is an error that names both units.
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["UnitError", "conversion_factor", "convert"]

_DAY, _YEAR = 86400.0, 365.25 * 86400.0
_UMOL_C = 12.011e-9  # kgC per umol CO2


class UnitError(ValueError):
    """A unit that is unknown or cannot be converted to the one wanted."""


_TABLE: dict[str, tuple[str, float]] = {
    "kgcm-2s-1": ("carbon flux", 1.0),
    "kgm-2s-1": ("carbon flux", 1.0),  # the embedded global model's carbon fluxes (kgC)
    "gcm-2s-1": ("carbon flux", 1e-3),
    "gcm-2d-1": ("carbon flux", 1e-3 / _DAY),
    "gm-2d-1": ("carbon flux", 1e-3 / _DAY),
    "gcm-2yr-1": ("carbon flux", 1e-3 / _YEAR),
    "kgcm-2yr-1": ("carbon flux", 1.0 / _YEAR),
    "umolm-2s-1": ("carbon flux", _UMOL_C),
    "umolco2m-2s-1": ("carbon flux", _UMOL_C),
    "wm-2": ("energy flux", 1.0),
    "mjm-2d-1": ("energy flux", 1e6 / _DAY),
    "m2m-2": ("leaf area", 1.0),
    "kgcm-2": ("carbon stock", 1.0),
    "kgm-2": ("carbon stock", 1.0),
    "gcm-2": ("carbon stock", 1e-3),
}


def _key(unit: str) -> str:
    u = unit.strip().lower().replace("µ", "u").replace("day", "d").replace("year", "yr")
    u = re.sub(r"\byr\b|\ba\b", "yr", u)
    u = u.replace("/m2", " m-2").replace("/s", " s-1").replace("/d", " d-1").replace("/yr", " yr-1")
    u = u.replace("**", "").replace("^", "")
    return re.sub(r"\s+", "", u).replace("g c", "gc")


def conversion_factor(from_unit: str, to_unit: str) -> float:
    """Factor ``f`` with ``value[to_unit] = f * value[from_unit]``."""
    a, b = _TABLE.get(_key(from_unit)), _TABLE.get(_key(to_unit))
    for unit, entry in ((from_unit, a), (to_unit, b)):
        if entry is None:
            raise UnitError(f"unknown unit {unit!r}; known: {sorted({k for k in _TABLE})}")
    if a[0] != b[0]:
        raise UnitError(f"cannot convert {from_unit!r} ({a[0]}) to {to_unit!r} ({b[0]})")
    return a[1] / b[1]


def convert(values: np.ndarray, from_unit: str, to_unit: str) -> np.ndarray:
    """``values`` in ``from_unit`` expressed in ``to_unit``."""
    return np.asarray(values, dtype=float) * conversion_factor(from_unit, to_unit)
