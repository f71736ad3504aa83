"""Config of a site (time-series) calibration: which model, which observation files, which years.

``[model] kind`` selects the route: ``"global"`` (the embedded global model; config.py checks it)
or a site model -- ``"dalec"`` (embedded DALEC on a FLUXNET file's meteorology), ``"python"``
(an entry point ``"package.module:Factory"`` returning the simulator contract of
docs/own-model.md) or ``"external"`` (a program through :class:`~bayescal.models.external.ExternalModel`).
Every file the config names is opened here, before any model run; errors name the key.
"""

from __future__ import annotations

from importlib import import_module, resources
from pathlib import Path
from typing import Any

SITE_KINDS = ("dalec", "python", "external")
PRODUCT_KEYS = {"variable", "format", "file", "partitioning", "qc_min", "sigma_floor", "relative_sigma",
                "units", "to_units", "name"}
GRIDDED_KEYS = {"variable", "format", "file", "nc_variable", "sigma_variable", "relative_sigma",
                "mask_variable", "footprint_deg", "name"}
FORMATS = ("fluxnet", "csv")

__all__ = ["FORMATS", "SITE_KINDS", "check_gridded_products", "check_site_config", "read_gridded_products",
           "read_products", "resolve_path", "site_model"]


def resolve_path(value: str, base: Path | None, key: str) -> str:
    """A path from the config: ``bayescal:data/...`` is package data; relative paths are relative
    to the config file's folder."""
    from .config import ConfigError

    if value.startswith("bayescal:"):
        path = Path(str(resources.files("bayescal") / value.split(":", 1)[1]))
    else:
        path = Path(value)
        if base is not None and not path.is_absolute():
            path = base / path
    if not path.is_file():
        raise ConfigError(f"'{key}': file not found: {path}")
    return str(path)


def _years(cfg: dict, key: str) -> tuple[int, int]:
    from .config import ConfigError

    yrs = cfg["site"][key]
    ok = isinstance(yrs, list) and len(yrs) == 2 and all(isinstance(y, int) for y in yrs)
    if not ok or yrs[0] > yrs[1]:
        raise ConfigError(f"'site.{key}' must be [first, last] years, got {yrs!r}")
    return yrs[0], yrs[1]


def read_products(cfg: dict, key_prefix: str = "observations.products") -> list:
    """Every product of ``observations.products`` read (file errors name the key)."""
    from ..readers import ReaderError, read_csv_product, read_fluxnet_product
    from .config import ConfigError

    out = []
    for i, spec in enumerate(cfg["observations"]["products"]):
        key = f"{key_prefix}[{i}]"
        opts = {k: v for k, v in spec.items() if k not in ("variable", "format", "file")}
        try:
            if spec["format"] == "fluxnet":
                out.append(read_fluxnet_product(spec["file"], spec["variable"], key=key, **opts))
            else:
                out.append(read_csv_product(spec["file"], spec["variable"], key=key, **opts))
        except ReaderError as err:
            raise ConfigError(str(err)) from None
        except TypeError as err:
            raise ConfigError(f"'{key}': {err}") from None
    return out


def _check_products(cfg: dict, base: Path | None, keys: set[str] = PRODUCT_KEYS,
                    formats: tuple[str, ...] = FORMATS) -> None:
    from .config import ConfigError

    prods = cfg["observations"]["products"]
    if not prods:
        raise ConfigError("'observations.products' must list at least one product (or set "
                          "'observations.twin' = true)")
    for i, spec in enumerate(prods):
        key = f"observations.products[{i}]"
        if not isinstance(spec, dict):
            raise ConfigError(f"'{key}' must be a table")
        unknown = sorted(set(spec) - keys)
        if unknown:
            raise ConfigError(f"'{key}': unknown keys {unknown}; known: {sorted(keys)}")
        for req in ("variable", "format", "file"):
            if req not in spec:
                raise ConfigError(f"'{key}.{req}' is required")
        if spec["format"] not in formats:
            raise ConfigError(f"'{key}.format' must be one of {formats}, got {spec['format']!r}")
        spec["file"] = resolve_path(spec["file"], base, f"{key}.file")


def read_gridded_products(cfg: dict, cells, months) -> list:
    """The CF-netCDF products of a global config on the model's cells and months (errors name the key)."""
    from ..models.landcarbon import OUTPUT_VARIABLES
    from ..readers import ReaderError, read_netcdf_product
    from .config import ConfigError

    out = []
    for i, spec in enumerate(cfg["observations"]["products"]):
        key = f"observations.products[{i}]"
        if spec["variable"] not in OUTPUT_VARIABLES:
            raise ConfigError(f"'{key}.variable': the embedded model has no variable {spec['variable']!r}")
        opts = {k: v for k, v in spec.items() if k not in ("variable", "format", "file")}
        try:
            out.append(read_netcdf_product(spec["file"], spec["variable"], cells=cells, months=months,
                                           units=OUTPUT_VARIABLES[spec["variable"]][0], key=key, **opts))
        except ReaderError as err:
            raise ConfigError(str(err)) from None
    return out


def check_gridded_products(cfg: dict, base: Path | None) -> None:
    """``observations.twin = false`` with the global model: CF-netCDF products, read once here on the
    configured grid and years (so a file problem stops the run before any model run)."""
    import pandas as pd

    from ..models.drivers import make_grid
    from .config import ConfigError

    _check_products(cfg, base, GRIDDED_KEYS, ("netcdf",))
    m, obs = cfg["model"], cfg["observations"]
    products = read_gridded_products(cfg, make_grid(n_cells=m["n_cells"], seed=m["grid_seed"]),
                                     pd.date_range(f"{m['start']}-01-01", f"{m['end']}-12-01", freq="MS"))
    missing = sorted(set(obs["variables"]) - {p.variable for p in products})
    if missing:
        raise ConfigError(f"'observations.variables' {missing} have no product in 'observations.products'")
    if obs["truth"]:
        raise ConfigError("'observations.truth' is for twins; real products have no truth")


def check_site_config(cfg: dict, base: Path | None) -> None:
    """Validate a site config in place (paths resolved); read every file once."""
    from .config import ConfigError

    m = cfg["model"]
    if m["kind"] not in SITE_KINDS:
        raise ConfigError(f"'model.kind' must be 'global' or one of {SITE_KINDS}, got {m['kind']!r}")
    if m["kind"] == "dalec":
        _choice(cfg, "model", "dalec_type", ("deciduous", "evergreen"))
        if m["drivers"] is None:
            raise ConfigError("'model.drivers' (a FLUXNET daily file) is required for model.kind = 'dalec'")
        m["drivers"] = resolve_path(m["drivers"], base, "model.drivers")
    if m["kind"] == "python" and (not m["entry_point"] or ":" not in m["entry_point"]):
        raise ConfigError(f"'model.entry_point' must be 'package.module:Factory', got {m['entry_point']!r}")
    if m["kind"] == "external":
        for k in ("command", "template", "output", "parameters_file"):
            if not m[k]:
                raise ConfigError(f"'model.{k}' is required for model.kind = 'external'")
        m["template"] = resolve_path(m["template"], base, "model.template")
    if m["parameters_file"] is not None:
        m["parameters_file"] = resolve_path(m["parameters_file"], base, "model.parameters_file")
    _check_products(cfg, base)
    cal, val = _years(cfg, "calibration_years"), _years(cfg, "validation_years")
    _choice(cfg, "site", "aggregate", ("daily", "weekly", "monthly", "annual"))
    _choice(cfg, "site", "discrepancy", ("estimate", "none"))
    _choice(cfg, "posterior", "route", ("direct", "emulator"))
    products = read_products(cfg)

    for years, key in ((cal, "calibration_years"), (val, "validation_years")):
        for i, p in enumerate(products):
            t = p.data["time"].dt.year.values[p.data.notnull().values]
            if not ((t >= years[0]) & (t <= years[1])).any():
                raise ConfigError(f"'site.{key}' {list(years)}: product observations.products[{i}] "
                                  f"({p.name}) has no observed day in these years")


def _choice(cfg: dict, section: str, key: str, options: tuple[str, ...]) -> None:
    from .config import ConfigError

    if cfg[section][key] not in options:
        raise ConfigError(f"'{section}.{key}' must be one of {options}, got {cfg[section][key]!r}")


def site_model(cfg: dict, workdir: Path | None = None) -> Any:
    """The configured site simulator (it has a ``space`` and returns series on (member, time))."""
    from ..parameters import ParameterSpace
    from .config import ConfigError

    m = cfg["model"]
    space = ParameterSpace.from_toml(m["parameters_file"]) if m["parameters_file"] else None
    if m["kind"] == "dalec":
        from ..models.dalec import DalecModel
        from ..readers import read_fluxnet_drivers

        drivers = read_fluxnet_drivers(m["drivers"], key="model.drivers")
        return DalecModel(drivers, m["dalec_type"], space=space, diurnal_range=m["diurnal_range"],
                          spinup_years=m["spinup_years"], spinup_cycles=m["spinup_cycles"])
    if m["kind"] == "python":
        mod, _, attr = m["entry_point"].partition(":")
        try:
            factory = getattr(import_module(mod), attr)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"'model.entry_point' {m['entry_point']!r}: {err}") from None
        model = factory(**m["options"])
        if not hasattr(model, "space") or not callable(model):
            raise ConfigError(f"'model.entry_point' {m['entry_point']!r} must return a callable with a "
                              "'space' (docs/own-model.md)")
        return model
    from ..models.external import ExternalModel

    return ExternalModel(command=list(m["command"]), template=m["template"], space=space,
                         workdir=workdir or Path(cfg["run"]["output"]) / "external",
                         output=m["output"], timeout=m["timeout"], variables=m["variables"])
