"""Config of a site (time-series) calibration: which model, which observation files, which years.

``[model] kind`` selects the route: ``"global"`` (the embedded global model; config.py checks it)
or a site model -- ``"dalec"`` (embedded DALEC on a FLUXNET file's meteorology), ``"python"``
(an entry point ``"package.module:Factory"`` returning the simulator contract of
docs/own-model.md) or ``"external"`` (a program through :class:`~bayescal.models.external.ExternalModel`).
Every file the config names is opened here, before any model run; errors name the key. DALEC's
drivers are read here too (a gap, duplicated day or missing year, an unknown site without
``model.latitude``, years outside the drivers: errors), and products are converted to DALEC's
output units or refused (:func:`conform_units`). Validation years may not overlap calibration years.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from bayescal.workflows.own_model import check_own_model_keys, resolve_path

from .units import conform_units, model_output_units, output_units, say_scale_mismatch

SITE_KINDS = ("dalec", "python", "external")
PRODUCT_KEYS = {"variable", "format", "file", "partitioning", "qc_min", "sigma_floor", "relative_sigma",
                "units", "to_units", "sigma_units", "fill_value", "name", "period", "columns"}
GRIDDED_KEYS = {"variable", "format", "file", "nc_variable", "sigma_variable", "relative_sigma",
                "mask_variable", "footprint_deg", "name", "units", "sigma_units", "sigma_floor", "fill_value"}
FORMATS = ("fluxnet", "csv")

__all__ = ["FORMATS", "SITE_KINDS", "check_gridded_products", "check_site_config", "conform_units",
           "model_output_units", "output_units", "read_drivers", "read_gridded_products",
           "read_products", "say_scale_mismatch"]


def _years(cfg: dict, key: str) -> tuple[int, int]:
    from bayescal.workflows.config import ConfigError

    yrs = cfg["site"][key]
    ok = isinstance(yrs, list) and len(yrs) == 2 and all(isinstance(y, int) for y in yrs)
    if not ok or yrs[0] > yrs[1]:
        raise ConfigError(f"'site.{key}' must be [first, last] years, got {yrs!r}")
    return yrs[0], yrs[1]


def read_products(cfg: dict, key_prefix: str = "observations.products") -> list:
    """Every product of ``observations.products`` read (file errors name the key), in the model
    output's units where they are known (DALEC; :func:`conform_units`)."""
    from bayescal.readers import ReaderError, read_csv_product, read_fluxnet_product
    from bayescal.workflows.config import ConfigError

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
    units = model_output_units(cfg)
    return out if units is None else conform_units(out, units, key_prefix)


def read_drivers(cfg: dict):
    """The DALEC drivers of ``model.drivers`` at ``model.latitude`` (default: the FLUXNET2015 site
    table); a gap, duplicated day, missing year or unknown site is a ConfigError naming the key."""
    from bayescal.readers import ReaderError, read_fluxnet_drivers
    from bayescal.readers.driver_checks import WeatherError
    from bayescal.workflows.config import ConfigError

    m = cfg["model"]
    try:
        return read_fluxnet_drivers(m["drivers"], lat=m.get("latitude"), key="model.drivers",
                                    check_weather=m.get("check_weather", True))
    except WeatherError as err:
        raise ConfigError(f"{err} (to run on these drivers as they are, set model.check_weather = false)") \
            from None
    except ReaderError as err:
        raise ConfigError(str(err)) from None


def _check_products(cfg: dict, base: Path | None, keys: set[str] = PRODUCT_KEYS,
                    formats: tuple[str, ...] = FORMATS) -> None:
    from bayescal.workflows.config import ConfigError

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
            hint = ""
            if keys is PRODUCT_KEYS and (set(unknown) <= GRIDDED_KEYS or spec.get("format") == "netcdf"):
                hint = (" (gridded CF-netCDF products are read by the global workflow: for a global model "
                        "of your own set [run] workflow = \"global\", docs/own-model.md)")
            from bayescal.workflows.config import did_you_mean

            near = did_you_mean(unknown[0], keys)
            raise ConfigError(f"'{key}': unknown keys {unknown}{near}; known: {sorted(keys)}{hint}")
        for req in ("variable", "format", "file"):
            if req not in spec:
                raise ConfigError(f"'{key}.{req}' is required")
        if spec["format"] not in formats:
            raise ConfigError(f"'{key}.format' must be one of {formats}, got {spec['format']!r}")
        other = [] if keys is not PRODUCT_KEYS else \
            sorted(set(spec) - {"variable", "format", "file"} - set(_reader_keys(spec["format"])))
        if other:
            raise ConfigError(f"'{key}.{other[0]}' is not read for format = {spec['format']!r} (its keys: "
                              f"{sorted(_reader_keys(spec['format']))})")
        _refuse_unused_sigma_keys(spec, key)
        if spec["format"] == "csv" and "units" not in spec:
            raise ConfigError(f"'{key}.units' is required for a CSV product: the units of its 'value' "
                              "column, such as \"gC m-2 d-1\" or \"umol m-2 s-1\" (a CSV file carries none)")
        spec["file"] = resolve_path(spec["file"], base, f"{key}.file")
        defaults = _reader_defaults(spec["format"])
        spec.update({k: v for k, v in defaults.items() if k in keys and k not in spec})
        if spec["format"] == "fluxnet" and "sigma_floor" in spec:  # its variable's default: as left out
            from bayescal.readers.fluxnet import _FLOORS

            if spec["sigma_floor"] == _FLOORS.get(spec.get("variable")):
                del spec["sigma_floor"]
        same = next((j for j in range(i) if prods[j] == spec), None)
        if same is not None:
            raise ConfigError(f"'{key}' repeats 'observations.products[{same}]' (the same file, variable "
                              "and options would count its observations twice)")


def _refuse_unused_sigma_keys(spec: dict, key: str) -> None:
    """``relative_sigma`` where the file gives sigma (FLUXNET NEE and LE: their random
    uncertainty columns; partitioning of a FLUXNET GPP or RECO a variable needs): it would do
    nothing, so it is named (a CSV's sigma column is read with the file)."""
    from bayescal.readers.fluxnet import _PRODUCTS
    from bayescal.workflows.config import ConfigError

    if spec["format"] != "fluxnet" or spec.get("variable") not in _PRODUCTS:
        return
    col, _, sig_col, _ = _PRODUCTS[spec["variable"]]
    if sig_col is not None and "relative_sigma" in spec:
        raise ConfigError(f"'{key}.relative_sigma' does nothing for FLUXNET {spec['variable']}: its sigma is "
                          f"the file's {sig_col} (the random uncertainty; sigma_floor bounds it below); "
                          "leave the key out")
    if "{p}" in col and spec.get("partitioning") not in ("NT", "DT"):
        got = f", got {spec['partitioning']!r}" if "partitioning" in spec else ""
        raise ConfigError(f"'{key}.partitioning' is required for FLUXNET {spec['variable']}: \"NT\" "
                          f"(night-time, Reichstein et al. 2005) or \"DT\" (day-time, Lasslop et al. 2010), "
                          f"the columns {col.format(p='NT')} or {col.format(p='DT')}{got}")


def _warn_same_tower(specs: list[dict], products: list) -> None:
    """A warning for two products of one variable that share observed days and come from the
    same file (GPP of both partitionings) or from FLUXNET files of the same site: the likelihood
    takes their errors as independent, though both come from one tower's NEE, so its data count
    twice and the posterior is too narrow. (The same file, variable and partitioning twice is an
    error: _check_distinct.)"""
    from bayescal.readers.fluxnet import _site

    def source(spec: dict) -> str:
        path = Path(os.path.realpath(spec["file"]))
        site = _site(path) if spec["format"] == "fluxnet" else path.stem
        return f"site {site}" if site != path.stem else f"file {spec['file']}"

    def days(p) -> set:
        return set(p.data["time"].values[p.data.notnull().values])

    seen: dict[tuple[str, str], list[int]] = {}
    for i, (spec, p) in enumerate(zip(specs, products, strict=True)):
        same = seen.setdefault((p.variable, source(spec)), [])
        shared = next(((j, n) for j in same if (n := len(days(p) & days(products[j])))), None)
        same.append(i)
        if shared is not None:
            warnings.warn(f"'observations.products[{i}]' and 'observations.products[{shared[0]}]' are "
                          f"both {p.variable} of {source(spec)} on {shared[1]} of the same days: the "
                          "likelihood takes their errors as independent, so the tower's data count twice "
                          "and the posterior is too narrow; keep one of them (or widen their sigma)",
                          UserWarning, stacklevel=2)


def _reader_keys(fmt: str) -> list[str]:
    """The product keys the reader of a site format takes."""
    import inspect

    from bayescal.readers import read_csv_product, read_fluxnet_product

    reader = {"fluxnet": read_fluxnet_product, "csv": read_csv_product}[fmt]
    params = inspect.signature(reader).parameters.items()
    return [k for k, p in params if p.kind is p.KEYWORD_ONLY and k != "key"]


def _reader_defaults(fmt: str) -> dict:
    """The reader's default options of a product format (written into the validated config, so a
    key left out and a key given at its default are the same config -- and the same stage keys)."""
    import inspect

    from bayescal.readers import read_csv_product, read_fluxnet_product, read_netcdf_product

    reader = {"fluxnet": read_fluxnet_product, "csv": read_csv_product, "netcdf": read_netcdf_product}[fmt]
    return {k: p.default for k, p in inspect.signature(reader).parameters.items()
            if p.kind is p.KEYWORD_ONLY and p.default is not p.empty and p.default is not None and k != "key"}


def read_gridded_products(cfg: dict, cells, months, units: dict[str, str] | None = None) -> list:
    """The CF-netCDF products of a global config on the model's cells and months, in ``units``
    (variable -> units of the model's output; default the embedded model's), errors naming the key."""
    from bayescal.models.landcarbon import OUTPUT_VARIABLES
    from bayescal.readers import ReaderError, read_netcdf_product
    from bayescal.workflows.config import ConfigError

    embedded = units is None
    units = {v: u for v, (u, _) in OUTPUT_VARIABLES.items()} if embedded else units
    out = []
    for i, spec in enumerate(cfg["observations"]["products"]):
        key = f"observations.products[{i}]"
        if spec["variable"] not in units:
            whose = "the embedded model has" if embedded else "your model's output at its defaults has"
            from bayescal.workflows.config import did_you_mean

            raise ConfigError(f"'{key}.variable': {whose} no variable {spec['variable']!r} (with units)"
                              f"{did_you_mean(spec['variable'], units)}; it has {sorted(units)}")
        opts = {k: v for k, v in spec.items() if k not in ("variable", "format", "file", "units")}
        opts["file_units"] = spec.get("units")  # the file's units (the reader's ``units`` are the model's)
        try:
            out.append(read_netcdf_product(spec["file"], spec["variable"], cells=cells, months=months,
                                           units=units[spec["variable"]], key=key, **opts))
        except ReaderError as err:
            said = str(err)
            if not embedded and "cannot convert" in said:  # the file's units, or your model's?
                said += (f"; or are your model's units wrong? Its output gives {spec['variable']!r} in "
                         f"{units[spec['variable']]!r} (the variable's 'units' attribute in its output, or "
                         "the model's 'units' mapping)")
            raise ConfigError(said) from None
    from bayescal.observations.products import say_products_disagree

    say_products_disagree(out, [f"observations.products[{i}]" for i in range(len(out))])
    return out


def check_gridded_products(cfg: dict, base: Path | None, embedded: bool = True) -> None:
    """``observations.twin = false`` with the global model: CF-netCDF products, read once here on the
    embedded model's grid and years (so a file problem stops the run before any model run). For
    your own model (``embedded=False``) only the keys and files: its context reads the products on
    the model's own cells and months, in its units (:meth:`GlobalContext.twin`)."""
    import pandas as pd

    from bayescal.models.drivers import make_grid
    from bayescal.workflows.config import ConfigError, did_you_mean

    _check_products(cfg, base, GRIDDED_KEYS, ("netcdf",))
    m, obs = cfg["model"], cfg["observations"]
    for i, p in enumerate(obs["products"]):  # first: a misspelt variable is named as such
        if p["variable"] not in obs["variables"]:
            near = did_you_mean(p["variable"], obs["variables"])
            add = " Else add" if near else ": add"
            raise ConfigError(f"'observations.products[{i}].variable' {p['variable']!r} is not in "
                              f"'observations.variables' {obs['variables']}{near}{add} it there (the "
                              "likelihood's summaries and the scores use every product) or remove the "
                              "product")
    missing = sorted(set(obs["variables"]) - {p["variable"] for p in obs["products"]})
    if missing:
        raise ConfigError(f"'observations.variables' {missing} have no product in 'observations.products'")
    for key in ("truth", "truth_from_prior", "summary_noise"):
        if obs[key]:
            raise ConfigError(f"'observations.{key}' is for twins; real products have no truth")
    if not embedded:  # the file itself, before your model's first run (its cells and units come then)
        from bayescal.readers import ReaderError
        from bayescal.readers.gridded import check_netcdf_file

        for i, spec in enumerate(obs["products"]):
            opts = {k: v for k, v in spec.items() if k not in ("variable", "format", "file", "units")}
            try:
                check_netcdf_file(spec["file"], spec["variable"], file_units=spec.get("units"),
                                  key=f"observations.products[{i}]", **opts)
            except ReaderError as err:
                raise ConfigError(str(err)) from None
        return
    grid = make_grid(n_cells=m["n_cells"], seed=m["grid_seed"])
    products = read_gridded_products(cfg, grid, pd.date_range(f"{m['start']}-01-01", f"{m['end']}-12-01",
                                                               freq="MS"))
    from bayescal.observations.products import ObservationError, Observations
    from bayescal.operators.summaries import BiomeSummaries

    have = Observations([p for p in products if p.variable in obs["variables"]])
    try:  # every biome of every variable observed by some product (the summaries follow gaps)
        BiomeSummaries(obs["variables"], coverage=have).of_observations(have, grid)
    except ObservationError as err:
        raise ConfigError(f"'observations.products': {err}") from None


def check_site_config(cfg: dict, base: Path | None) -> None:
    """Validate a site config in place (paths resolved); read every file once."""
    from bayescal.workflows.config import ConfigError

    m = cfg["model"]
    if m["kind"] not in SITE_KINDS:
        raise ConfigError(f"'model.kind' must be 'global' or one of {SITE_KINDS}, got {m['kind']!r}")
    wf = cfg["run"]["workflow"]
    if wf not in ("default", "site"):
        raise ConfigError(f"'run.workflow' = {wf!r} does not run a site model (model.kind = {m['kind']!r} "
                          "runs the site workflow): remove run.workflow, or set it to 'global' for a global "
                          "model of your own (model.kind = python or external)")
    if m["kind"] == "dalec":
        _choice(cfg, "model", "dalec_type", ("deciduous", "evergreen"))
        if m["drivers"] is None:
            raise ConfigError("'model.drivers' (a FLUXNET daily file) is required for model.kind = 'dalec'")
        m["drivers"] = resolve_path(m["drivers"], base, "model.drivers")
        lat = m["latitude"]
        if lat is not None and not -90.0 <= lat <= 90.0:
            raise ConfigError(f"'model.latitude' must be in [-90, 90] degrees north, got {lat}")
    elif m.get("latitude") is not None:
        raise ConfigError("'model.latitude' is for model.kind = 'dalec' (the site of its drivers)")
    check_own_model_keys(cfg, base)
    _check_products(cfg, base)
    cal, val = _years(cfg, "calibration_years"), _years(cfg, "validation_years")
    _choice(cfg, "site", "aggregate", ("daily", "weekly", "monthly", "annual"))
    _choice(cfg, "site", "discrepancy", ("estimate", "none"))
    _choice(cfg, "posterior", "route", ("direct", "emulator"))
    _check_site_posterior(cfg)
    if val[0] <= cal[1] and cal[0] <= val[1]:
        raise ConfigError(f"'site.validation_years' {list(val)} overlap 'site.calibration_years' "
                          f"{list(cal)}; validation years are held out: choose years outside the "
                          "calibration years")
    site = _check_drivers(cfg, cal, val) if m["kind"] == "dalec" else None
    _check_twin_keys(cfg["observations"])
    products = read_products(cfg)
    _check_distinct(cfg["observations"]["products"], products)
    _warn_other_site(site, cfg["observations"]["products"])
    if not cfg["observations"]["twin"]:  # a twin's products carry independent noise
        _warn_same_tower(cfg["observations"]["products"], products)
    for i, p in enumerate(products):  # validation (prediction) years may have no observation
        t = p.data["time"].dt.year.values[p.data.notnull().values]
        if not ((t >= cal[0]) & (t <= cal[1])).any():
            raise ConfigError(f"'site.calibration_years' {list(cal)}: product observations.products[{i}] "
                              f"({p.name}) has no observed day in these years")


def _check_site_posterior(cfg: dict) -> None:
    """The site posterior's and propagation's choices and sizes; a key its start does not read is
    a warning."""
    from bayescal.posterior.site_calibration import MAX_DRAWS, SITE_MOVES
    from bayescal.workflows.config import SCHEMA, ConfigError

    if cfg["propagate"]["n_draws"] > MAX_DRAWS:
        raise ConfigError(f"'propagate.n_draws' must be <= {MAX_DRAWS} (the posterior draws a site run keeps "
                          f"and propagates a choice of), got {cfg['propagate']['n_draws']}")
    _choice(cfg, "posterior", "moves", SITE_MOVES)
    _choice(cfg, "posterior", "start", ("tempered", "optimum"))
    _choice(cfg, "posterior", "emulator_target", ("expected", "mean"))
    if cfg["posterior"]["start"] == "tempered" and cfg["posterior"]["n_particles"] < 100:
        raise ConfigError(f"'posterior.n_particles' must be >= 100 for start = 'tempered', got "
                          f"{cfg['posterior']['n_particles']}")
    n, default = cfg["posterior"]["n_particles"], SCHEMA["posterior"]["n_particles"][1]
    if cfg["posterior"]["start"] == "optimum" and n != default:  # read only by the tempered start
        warnings.warn(f"'posterior.n_particles' ({n}) does nothing with "
                      "posterior.start = 'optimum' (the chains start at the maximum-likelihood point): "
                      "remove it, or set start = 'tempered'", UserWarning, stacklevel=2)


def _check_distinct(specs: list[dict], products: list) -> None:
    """Each product once: its own name (the report's and the error model's rows), and no file's
    variable read twice (with another qc_min, say: the same days would count twice)."""
    from bayescal.workflows.config import ConfigError

    names: dict[str, int] = {}
    read: dict[tuple, int] = {}
    for i, (spec, p) in enumerate(zip(specs, products, strict=True)):
        j = names.setdefault(p.name, i)
        if j != i:
            raise ConfigError(f"'observations.products[{i}]' is named {p.name!r} as "
                              f"'observations.products[{j}]' is: give each product its own 'name'")
        what = (os.path.realpath(spec["file"]), p.variable, spec.get("partitioning"))
        j = read.setdefault(what, i)
        if j != i:
            raise ConfigError(f"'observations.products[{i}]' reads {p.variable} from {spec['file']} as "
                              f"'observations.products[{j}]' does: its days would count twice")


def _check_twin_keys(obs: dict) -> None:
    """The twin keys a site config can use: ``truth`` and ``truth_from_prior`` on a twin only;
    ``summary_noise`` never (it perturbs the global workflow's summaries; a site twin's products
    already carry each product's sigma as noise)."""
    from bayescal.workflows.config import ConfigError

    if obs["summary_noise"]:
        raise ConfigError("'observations.summary_noise' is for the global workflow's summaries; a site "
                          "twin's products already carry each product's sigma as noise: remove the key")
    for key in ("truth", "truth_from_prior"):
        if obs[key] and not obs["twin"]:
            raise ConfigError(f"'observations.{key}' is for twins (observations.twin = true); "
                              "real products have no truth")


def _check_drivers(cfg: dict, cal: tuple[int, int], val: tuple[int, int]) -> str:
    """DALEC's drivers read now (not at stage start): every day once, the site's latitude, and
    the calibration and validation years inside them; returns the drivers' site ("" if unknown)."""
    from bayescal.workflows.config import ConfigError

    m = cfg["model"]
    given = m.get("latitude")
    d = read_drivers(cfg)
    # the latitude the model runs at, in the validated config (config.json, the report): the site
    # table's, or the one given -- the same value either way, the same stage keys
    m["latitude"] = float(d.attrs["lat"])
    years = d["time"].dt.year.values
    first, last = int(years[0]), int(years[-1])
    day0, day1 = (str(d["time"].values[i])[:10] for i in (0, -1))
    for (a, b), key in ((cal, "calibration_years"), (val, "validation_years")):
        partial = (b == last and day1[5:] != "12-31") or (a == first and day0[5:] != "01-01")
        if a < first or b > last or partial:
            raise ConfigError(f"'site.{key}' {[a, b]} outside the drivers' days {day0} to {day1} "
                              f"('model.drivers' {m['drivers']}): every day of these years is needed")
    if m["spinup_years"] < 1 or first + m["spinup_years"] - 1 > last:
        raise ConfigError(f"'model.spinup_years' = {m['spinup_years']}: must be >= 1 and at most the "
                          f"drivers' {last - first + 1} years")
    from bayescal.readers.fluxnet import file_site

    site = file_site(m["drivers"]) or ""  # a file not named FLX_<site>_...: no site to compare
    _warn_vegetation(site, m["dalec_type"])
    _warn_latitude(site, given)
    return site


def _warn_latitude(site: str, given: float | None) -> None:
    """A warning when ``model.latitude`` is more than a degree from the site table's latitude of
    the drivers' site (another hemisphere flips DALEC's phenology calendar; light and day length
    follow it too)."""
    from bayescal.readers import site_info

    info = site_info(site) if site and given is not None else None
    if info is None or abs(float(info["latitude"]) - given) <= 1.0:
        return
    flip = " (the other hemisphere: DALEC's phenology counts its year from 1 July south of the equator)" \
        if (info["latitude"] < 0) != (given < 0) else ""
    warnings.warn(f"'model.latitude' = {given} but site {site} of 'model.drivers' is at "
                  f"{info['latitude']:.2f} in the FLUXNET2015 site table{flip}: leave the key out to use "
                  "the table's", UserWarning, stacklevel=2)


def _warn_other_site(site: str | None, specs: list[dict]) -> None:
    """A warning for a FLUXNET product of another site than the drivers' (one of the two paths
    edited when an example was copied): the model runs on one site's weather and is compared with
    another's fluxes."""
    from bayescal.readers.fluxnet import file_site

    if not site:
        return
    for i, spec in enumerate(specs):
        other = file_site(spec["file"]) if spec["format"] == "fluxnet" else None
        if other and other != site:
            warnings.warn(f"'observations.products[{i}]' is site {other}'s file ({spec['file']}) but "
                          f"'model.drivers' is site {site}'s: the model runs on {site}'s weather and is "
                          f"compared with {other}'s fluxes", UserWarning, stacklevel=2)


#: IGBP classes of the FLUXNET2015 site table that each embedded DALEC describes
_DALEC_IGBP = {"deciduous": ("DBF", "MF", "DNF"), "evergreen": ("ENF", "EBF", "MF")}
_IGBP_NAMES = {"GRA": "grassland", "CRO": "cropland", "WET": "wetland", "OSH": "open shrubland",
               "CSH": "closed shrubland", "SAV": "savanna", "WSA": "woody savanna", "SNO": "snow and ice",
               "ENF": "evergreen needleleaf forest", "EBF": "evergreen broadleaf forest",
               "DBF": "deciduous broadleaf forest", "DNF": "deciduous needleleaf forest",
               "MF": "mixed forest"}


def _warn_vegetation(site: str, dalec_type: str) -> None:
    """A warning when the FLUXNET2015 site table's IGBP class of the drivers' site is not one the
    configured DALEC describes (a forest of its leaf habit): the calibration runs, but expect a
    poor fit and posterior (e.g. DALEC-deciduous at a grassland)."""
    from bayescal.readers import site_info

    info = site_info(site) if site else None
    igbp = str(info["igbp"]) if info else ""
    if not igbp or igbp in _DALEC_IGBP[dalec_type]:
        return
    other = [k for k, v in _DALEC_IGBP.items() if igbp in v]
    hint = (f"model.dalec_type = \"{other[0]}\" describes it" if other else "a model of this vegetation "
            "can run as model.kind = \"python\" or \"external\" (docs/own-model.md)")
    warnings.warn(f"'model.drivers': site {site} is {igbp} ({_IGBP_NAMES.get(igbp, 'IGBP class')}) in the "
                  f"FLUXNET2015 site table, but DALEC-{dalec_type} is a model of "
                  f"{', '.join(_DALEC_IGBP[dalec_type])} forest: expect a poor fit; {hint}", UserWarning,
                  stacklevel=2)


def _choice(cfg: dict, section: str, key: str, options: tuple[str, ...]) -> None:
    from bayescal.workflows.config import ConfigError

    if cfg[section][key] not in options:
        raise ConfigError(f"'{section}.{key}' must be one of {options}, got {cfg[section][key]!r}")
