"""Units of a site model's outputs and its products: each product converted to its model
variable's units (or refused, naming the key), and a warning for a product far off the model's
scale (units that convert but are not the file's)."""

from __future__ import annotations

import numpy as np

__all__ = ["conform_units", "model_output_units", "output_units", "say_scale_mismatch"]


def model_output_units(cfg: dict) -> dict[str, str] | None:
    """The units of the site model's outputs when known without running it (DALEC), else None."""
    if cfg["model"]["kind"] == "dalec":
        from bayescal.models.dalec import OUTPUT_UNITS

        units = dict(OUTPUT_UNITS)
        if cfg["model"]["dalec_type"] == "evergreen":
            units.pop("clab", None)
        return units
    return None


def output_units(ds) -> dict[str, str]:
    """``{variable: units}`` of a model output Dataset's variables that carry a ``units`` attribute
    (for :func:`conform_units` with ``strict=False`` after a run of a python or external model)."""
    return {str(v): str(ds[v].attrs["units"]) for v in ds.data_vars if ds[v].attrs.get("units")}


def conform_units(products: list, units: dict[str, str], key_prefix: str = "observations.products",
                  strict: bool = True, unitless: tuple | list = ()) -> list:
    """Each product in its model variable's units (``units``: variable -> the model output's
    units): converted when the quantities match (dimensionally checked, in the variable's
    context: bayescal.readers.units), else a ConfigError naming the key, file, variable and both
    units. A variable the model does not give is an error too (``strict=False``: passed as it is,
    for outputs whose units are not all known), and so is one it gives without units
    (``unitless``): its product could be in any units."""
    from bayescal.observations.products import Product
    from bayescal.readers import UnitError, conversion_factor, parse_units
    from bayescal.workflows.config import ConfigError

    out = []
    for i, p in enumerate(products):
        key, src = f"{key_prefix}[{i}]", p.data.attrs.get("source", "")
        if p.variable in unitless:
            raise ConfigError(
                f"'{key}': {src}: the model output {p.variable!r} has no units, so the product's "
                f"[{p.units}] can be neither checked nor converted; give the output a 'units' "
                f"attribute (a Dataset) or your model a 'units' mapping such as "
                f"{{{p.variable!r}: {p.units!r}}} (docs/own-model.md)")
        if p.variable not in units and not strict:
            out.append(p)
            continue
        if p.variable not in units:
            raise ConfigError(f"'{key}.variable': the model has no output {p.variable!r} (it gives "
                              f"{sorted(units)}); file {src}")
        want = units[p.variable]
        try:
            parse_units(want)
        except UnitError as err:  # the model's own units string: not the product's fault
            raise ConfigError(f"the model output {p.variable!r} has units {want!r} that cannot be read "
                              f"({err}); write them as CF/UDUNITS units such as 'gC m-2 d-1' or "
                              "'kg m-2 s-1' (docs/own-model.md)") from None
        try:
            f = conversion_factor(p.units, want, p.variable)
        except UnitError as err:
            raise ConfigError(f"'{key}': {src}: the product's units do not match the model output "
                              f"{p.variable!r} [{want}]: {err}") from None
        if p.units == want:
            out.append(p)
            continue
        data = (p.data * f).assign_attrs({**p.data.attrs, "units": want,
                                          "file_units": p.data.attrs.get("file_units", p.units)})
        sigma = None if p.sigma is None else (p.sigma * abs(f)).assign_attrs(units=want)
        out.append(Product(p.name, p.variable, data, sigma, attrs=dict(p.attrs)))
    return out


def say_scale_mismatch(products: list, scale: dict[str, float], factor: float = 30.0) -> None:
    """A warning for each product whose observed values are typically more than ``factor`` times
    larger or smaller than the model's at its defaults (``scale``: variable -> median |value| of
    that run): units that convert but are not the file's (kg for g, per second for per day) put
    a product 1,000 or 86,400 times off, where a poor default is rarely 30 times off."""
    import warnings

    for p in products:
        model = scale.get(p.variable)
        obs = float(np.nanmedian(np.abs(p.data.values))) if p.data.notnull().any() else np.nan
        if not (model and np.isfinite(model) and np.isfinite(obs) and obs > 0):
            continue
        ratio = obs / model
        if 1 / factor <= ratio <= factor:
            continue
        have = p.data.attrs.get("file_units", p.units)
        src = p.data.attrs.get("source", p.name)
        warnings.warn(f"{p.variable} ({src}): the observed values are typically {ratio:.3g} times the "
                      f"model's at its defaults (median |value| {obs:.3g} against {model:.3g} {p.units}): "
                      f"are the file's units [{have}] right, and the model's [{p.units}]?", stacklevel=2)
