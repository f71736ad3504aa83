"""Units of observation products and model outputs, through pint, with carbon and water definitions.

Unit strings are parsed by a :mod:`pint` registry that understands the CF/UDUNITS spellings of
FLUXNET, CMIP (CMOR) and ILAMB files (``kg m-2 s-1``, ``gC m-2 d-1``, ``gC/m^2/day``,
``umolCO2 m-2 s-1``, ``mm day-1``, ``W m-2``, ``1``) and adds

* a **carbon** dimension: ``gC`` (= ``g C``, ``g_C``; prefixed ``kgC``, ``PgC``, ...), ``tC``
  (``GtC``), ``molC`` (12.011 gC) and masses of CO2, ``gCO2`` (= ``g CO2``; ``kgCO2``, ``tCO2``),
  each 12.011 / 44.0095 of its mass in carbon;
* context ``carbon`` (variables in :data:`CARBON_VARIABLES`): a mass is a mass of carbon
  (CMIP's ``gpp`` in ``kg m-2 s-1``) and a mole is a mole of CO2 or C, 12.011 gC;
* context ``water`` (variables in :data:`WATER_VARIABLES`): a depth of water is a mass per
  area, 1 mm = 1 kg m-2 (density 1000 kg m-3);
* context ``latent`` (evapotranspiration and latent heat, :data:`LATENT_VARIABLES`): a water
  flux of 1 kg m-2 s-1 carries 2.501e6 W m-2 (latent heat of vaporisation at 0 degC, the
  CMIP/CESM constant).

A conversion is dimensionally checked: ``W m-2`` to ``gC m-2 d-1``, ``kg m-2 s-1`` to
``gC m-2 d-1`` for evapotranspiration, or ``PgC yr-1`` (a total) to ``gC m-2 yr-1`` (per area)
is a :class:`UnitError` that names both units, their dimensions and the variable. A month is
1/12 of a 365.25-day year (pint's ``month``) in a conversion; a product whose values are calendar
months' (or years') totals, in units per ``month`` (``year``), is first put on that nominal month
by :func:`calendar_factor` (a February total of 28 days' flux is not 28/30.44 of a month's).
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

__all__ = ["CARBON_VARIABLES", "LATENT_VARIABLES", "WATER_VARIABLES", "UnitError", "context_for",
           "calendar_factor", "conversion_factor", "convert", "parse_units", "per_period", "registry"]

#: g C per mol (CO2 or C): the carbon of one mole of CO2.
MOLAR_MASS_C = 12.011
#: g CO2 per mol CO2 (IUPAC atomic weights: 12.011 + 2 x 15.999 + rounding, as WMO uses).
MOLAR_MASS_CO2 = 44.0095
#: J kg-1: latent heat of vaporisation at 0 degC (CMIP, CESM's LATVAP).
LATENT_HEAT = 2.501e6
#: kg m-3: density of liquid water.
WATER_DENSITY = 1000.0

#: Variables whose masses and moles are of carbon (model outputs and observation products).
CARBON_VARIABLES = frozenset({
    "gpp", "npp", "nee", "nep", "nbp", "reco", "ra", "rh", "fire", "fluc", "cveg", "csoil", "clitter",
    "cf", "cw", "cr", "clit", "csom", "clab", "fco2", "co2flux",
})
#: Variables of evapotranspiration or latent heat: water and latent-heat contexts.
LATENT_VARIABLES = frozenset({"le", "lh", "hfls", "et", "evspsbl", "evspsblveg", "evspsblsoi", "tran",
                              "evapotrans"})
#: Variables that are water (depths are masses per area).
WATER_VARIABLES = frozenset({"mrso", "mrsos", "mrro", "mrros", "pr", "snw", "swe"}) | LATENT_VARIABLES


class UnitError(ValueError):
    """A unit that is unknown or cannot be converted to the one wanted."""


@lru_cache(maxsize=1)
def registry():
    """The pint UnitRegistry with the carbon, water and latent-heat definitions (built on first use:
    pint takes a moment to load)."""
    import pint

    # CF/UDUNITS spellings read by the registry itself (so pint-xarray's ``quantify`` reads bayescal's
    # files with it), ndarray-like quantities (as pint-xarray requires)
    ureg = pint.UnitRegistry(cache_folder=None, preprocessors=[_normalise], force_ndarray_like=True)
    ureg.define("gram_carbon = [carbon] = gC = g_C")
    ureg.define("gram_nitrogen = [nitrogen] = gN = g_N")  # DALEC's nitrogen use (gC gN-1 d-1)
    ureg.define("photon = 1 = photons")  # a count: mol CO2 mol-1 photon is a quantum yield
    ureg.define("tonne_carbon = 1e6 * gram_carbon = tC = t_C")
    ureg.define(f"mole_carbon = {MOLAR_MASS_C} * gram_carbon = molC = mol_C")
    # a mass of CO2 is its carbon's: 12.011 / 44.0095 of it (NEE in gCO2 m-2 d-1, tCO2 ha-1 yr-1)
    # (spelt gCO_two here: the CF exponent rule of _normalise would read gCO2 as gCO squared)
    ureg.define(f"gram_CO2 = {MOLAR_MASS_C / MOLAR_MASS_CO2} * gram_carbon = gCO_two")
    ureg.define("tonne_CO2 = 1e6 * gram_CO2 = tCO_two")
    ureg.define("fraction_of_one = 1 = frac")
    dens = ["", "/[length]**2", "/[length]**2/[time]", "/[time]", "/[length]**2/[time]**2"]

    carbon = pint.Context("carbon")
    for d in dens:
        carbon.add_transformation(f"[mass]{d}", f"[carbon]{d}", lambda u, x: x * u.gC / u.g)
        carbon.add_transformation(f"[carbon]{d}", f"[mass]{d}", lambda u, x: x * u.g / u.gC)
        carbon.add_transformation(f"[substance]{d}", f"[carbon]{d}",
                                  lambda u, x: x * MOLAR_MASS_C * u.gC / u.mol)
        carbon.add_transformation(f"[carbon]{d}", f"[substance]{d}",
                                  lambda u, x: x * u.mol / (MOLAR_MASS_C * u.gC))
    ureg.add_context(carbon)

    water = pint.Context("water")
    for d in ("", "/[time]"):
        water.add_transformation(f"[length]{d}", f"[mass]/[length]**2{d}",
                                 lambda u, x: x * WATER_DENSITY * u.kg / u.m**3)
        water.add_transformation(f"[mass]/[length]**2{d}", f"[length]{d}",
                                 lambda u, x: x / (WATER_DENSITY * u.kg / u.m**3))
    ureg.add_context(water)

    latent = pint.Context("latent")
    latent.add_transformation("[mass]/[length]**2/[time]", "[mass]/[time]**3",
                              lambda u, x: x * LATENT_HEAT * u.J / u.kg)
    latent.add_transformation("[mass]/[time]**3", "[mass]/[length]**2/[time]",
                              lambda u, x: x / (LATENT_HEAT * u.J / u.kg))
    ureg.add_context(latent)
    return ureg


def __getattr__(name: str):
    if name == "ureg":  # bayescal.readers.units.ureg: the registry, built on first use
        return registry()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

_SUBS = [
    (re.compile(r"[µμ]"), "u"),
    # carbon written apart: "g C", "kg C", "mol C", "g[C]", "gCarbon"
    (re.compile(r"\b([a-zA-Z]?(?:g|t|mol))\s*(?:\[C\]|C\b|Carbon\b|carbon\b)"), r"\1C"),
    # masses of CO2 written apart: "g CO2", "kg CO2", "t CO2", "g[CO2]" (each 12.011/44.0095 of carbon)
    (re.compile(r"\b([a-zA-Z]?(?:g|t))\s*(?:\[CO2\]|CO2\b)"), r"\1CO_two"),
    # moles of CO2: "umolCO2", "umol CO2", "mol(CO2)" are moles (of CO2, 12.011 gC in context carbon)
    (re.compile(r"\b([a-zA-Z]?mol)\s*\(?CO2\)?"), r"\1"),
    # temperatures written apart: "deg C", "degrees C", "deg. C" (a bare "C" is a coulomb)
    (re.compile(r"\bdeg(?:rees?)?\.?\s+([CFK])\b"), r"deg\1"),
    # a count glued to a unit, per: "30min-1", "8day-1" -> /(30 min), not 30 per minute (spaced,
    # "100 s-1" keeps its UDUNITS meaning: a scale factor, 100 per second)
    (re.compile(r"(?<![\w.^*-])(\d+(?:\.\d+)?)([A-Za-z]+)-1\b"), r"/(\1 \2)"),
    # UDUNITS' "(30 min)-1": per (30 min) (pint >= 0.26 cannot read a bracket's power after a unit)
    (re.compile(r"\(([^()]+)\)\s*-1\b"), r"/(\1)"),
    (re.compile(r"\bdays?\b"), "day"),
    (re.compile(r"\byears?\b|\byr\b|\by\b"), "year"),  # FLUXNET: "gC m-2 y-1"
    (re.compile(r"\bmonths?\b|\bmon\b"), "month"),
    # CF/UDUNITS exponents: "m-2" -> "m^-2", "m2" -> "m^2"
    (re.compile(r"(?<=[A-Za-z)])(?<![0-9.][eE])(-?\d+)\b"), r"^\1"),
    (re.compile(r"\*\*"), "^"),
]


def _normalise(unit: str) -> str:
    u = unit.strip()
    for pat, rep in _SUBS:
        u = pat.sub(rep, u)
    return "1 " + u if u.startswith("/") else u  # "30min-1 gC m-2" -> "1 /(30 min) gC m^-2"


@lru_cache(maxsize=512)
def parse_units(unit: str):
    """One of ``unit`` as a pint quantity (magnitude 1 unless the string is scaled, e.g.
    ``1e-3 kg m-2``); a :class:`UnitError` if not understood."""
    if not isinstance(unit, str) or not unit.strip():
        raise UnitError(f"unknown unit {unit!r}: empty")
    import pint

    try:
        return registry().Quantity(_normalise(unit))
    except (pint.errors.UndefinedUnitError, pint.errors.DefinitionSyntaxError, AttributeError, TypeError,
            ValueError, AssertionError, SyntaxError) as err:
        raise UnitError(f"unknown unit {unit!r} ({err})") from None


def context_for(variable: str | None) -> tuple[str, ...]:
    """The pint contexts of a variable: carbon, water (+ latent) or none."""
    if variable is None:
        return ()
    v = variable.lower()
    if v in CARBON_VARIABLES:
        return ("carbon",)
    if v in LATENT_VARIABLES:
        return ("water", "latent")
    if v in WATER_VARIABLES:
        return ("water",)
    return ()


def conversion_factor(from_unit: str, to_unit: str, variable: str | None = None) -> float:
    """Factor ``f`` with ``value[to_unit] = f * value[from_unit]`` for ``variable``.

    Units whose zeros differ (``degC`` and ``K``) have no factor: a :class:`UnitError` (a value and
    its uncertainty would convert by different rules).

    ``variable`` (the model's name: ``gpp``, ``hfls``, ``et``, ...) selects the contexts; without
    one, the carbon context applies when either unit is a carbon unit.
    """
    import pint

    a, b = parse_units(from_unit), parse_units(to_unit)
    contexts = context_for(variable)
    if variable is None and ("[carbon]" in a.dimensionality or "[carbon]" in b.dimensionality):
        contexts = ("carbon",)
    try:
        f = a.to(b.units, *contexts).magnitude / b.magnitude
        zero = registry().Quantity(0.0, a.units).to(b.units, *contexts).magnitude
    except pint.errors.DimensionalityError:
        what = f" for variable {variable!r}" if variable else ""
        ctx = f" (contexts: {', '.join(contexts)})" if contexts else ""
        raise UnitError(f"cannot convert {from_unit!r} ({_dims(a)}) to {to_unit!r} ({_dims(b)}){what}{ctx}: "
                        "different quantities") from None
    if abs(zero) > 1e-12 * max(1.0, abs(f)):  # degC -> K: value and sigma would need different rules
        raise UnitError(f"cannot convert {from_unit!r} to {to_unit!r}: the scales differ by an offset "
                        f"({0:g} {from_unit} = {zero:g} {to_unit}), not a factor; give the values in "
                        f"{to_unit!r}")
    return float(f)


def _dims(u) -> str:
    d = str(u.dimensionality)
    return "dimensionless" if d == "dimensionless" else d


def convert(values, from_unit: str, to_unit: str, variable: str | None = None) -> np.ndarray:
    """``values`` in ``from_unit`` expressed in ``to_unit`` (see :func:`conversion_factor`)."""
    return np.asarray(values, dtype=float) * conversion_factor(from_unit, to_unit, variable)


#: Days of pint's (UDUNITS') month and year: 1/12 of a 365.25-day year, and that year.
NOMINAL_DAYS = {"month": 365.25 / 12, "year": 365.25}


def per_period(unit: str) -> str | None:
    """``"month"`` or ``"year"`` when ``unit`` is a quantity per month or per year (``gC m-2
    month-1``, ``mm mon-1``, ``kg m-2 yr-1``), else None."""
    try:
        exponents = dict(parse_units(unit).units._units)
    except UnitError:
        return None
    found = [k for k in NOMINAL_DAYS if exponents.get(k) == -1]
    return found[0] if found else None


def calendar_factor(unit: str, days) -> np.ndarray:
    """The factor putting totals over calendar periods in ``unit`` on pint's nominal period.

    A value in ``unit`` per month (or per year) that is the total over its own calendar month
    (year) of ``days`` days has, per day, ``value / days``; pint's conversion divides by the
    nominal 30.44 (365.25) days. Multiplying by ``NOMINAL_DAYS / days`` first makes the
    conversion exact: a February total of 28 days' flux converts to that flux per day. Ones
    where ``unit`` is not per month or year.

    Parameters
    ----------
    unit : str
        The values' units.
    days : array_like
        Days of each value's calendar period (``pandas``' or ``xarray``'s ``days_in_month``, or
        365/366 for years), in the period ``unit`` is per.

    Returns
    -------
    numpy.ndarray
        One factor per value.
    """
    days = np.asarray(days, dtype=float)
    period = per_period(unit)
    return np.ones_like(days) if period is None else NOMINAL_DAYS[period] / days
