"""Loading and validating a config: the schema's checks (:mod:`.config`) and the site route's
(:mod:`.site.config`), which both sit below this module -- so neither imports the other back."""

from __future__ import annotations

import tomllib
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .config import (
    SCHEMA,
    ConfigError,
    check_executor,
    check_labels,
    check_model,
    check_observations,
    check_output,
    check_walkers,
    clamp_default_years,
    is_site,
    typed_with_defaults,
)
from .own_model import OWN_KINDS, check_own_model_keys, file_space, python_model
from .ranges import check_ranges
from .site.config import check_gridded_products, check_site_config
from .space_file import merged_space

__all__ = ["load_config", "model_space", "validate_config"]


def validate_config(raw: dict[str, Any], base: Path | None = None, model=None) -> dict[str, Any]:
    """Check a config against :data:`SCHEMA` and fill in defaults.

    Parameters
    ----------
    raw : dict
        The parsed TOML.
    base : Path, optional
        The config file's folder: relative paths (data files, ``run.output``) are relative to it.
    model : optional
        Your own global model (docs/own-model.md), when the config is for it: parameter names
        are checked against ``model.space``, not the embedded model's, and what only the
        embedded model defines (its variables, grid, years and parameter families) is not required;
        the products are read on the model's cells and months by the workflow's context. A config
        naming its own model (``run.workflow = "global"`` with ``model.kind`` python or external)
        is checked the same way against that model's space.

    Returns
    -------
    dict
        The validated config (defaults filled in, paths resolved).

    Raises
    ------
    ConfigError
        Naming the key: unknown sections or keys, wrong types, missing files, out-of-range values,
        unknown parameter names.
    """
    cfg = typed_with_defaults(raw)
    _check_kind_keys(raw, cfg)
    check_executor(cfg)
    check_output(cfg, base)
    _check_product_types(cfg)
    if is_site(cfg):
        # a site model fits the files it is given; a twin only when asked for
        cfg["observations"]["twin"] = bool(raw.get("observations", {}).get("twin", False))
        check_ranges(cfg)
        _warn_route_keys(raw, cfg)
        check_site_config(cfg, base)
        space = model_space(cfg)
        check_labels(cfg, space)
        _refuse_site_candidates(cfg)
        _warn_truth_held(cfg, space)
        free = cfg["parameters"]["free"]
        n_free = (space.only(free) if free else space).n_free
        n_walkers = cfg["posterior"]["n_walkers"]
        if n_walkers and n_walkers < 2 * n_free:
            raise ConfigError(f"'posterior.n_walkers' must be 0 (automatic) or >= 2 x the {n_free} "
                              f"calibrated values ({2 * n_free}), got {n_walkers}")
        return cfg
    defaults = {k: d for k, (_, d) in SCHEMA["site"].items()}
    if any(cfg["site"][k] != defaults[k] for k in defaults) and cfg["run"]["workflow"] != "global":
        raise ConfigError("[site] is for site models ('model.kind' = dalec, python or external)")
    obs = raw.get("observations", {})
    if isinstance(obs, dict) and obs.get("products") and "twin" not in obs:
        cfg["observations"]["twin"] = False  # files given: calibrate against them (docs/pipeline.md)
    if cfg["observations"]["twin"] and cfg["observations"]["products"]:
        raise ConfigError("'observations.products' are not read by a twin ('observations.twin' = true "
                          "simulates its products): set 'observations.twin' = false to calibrate against "
                          "the files, or remove the products")
    embedded = model is None and cfg["model"]["kind"] == "global"
    check_model(cfg, base, embedded=embedded)
    if any(cfg["site"][k] != defaults[k] for k in defaults):
        raise ConfigError("[site] is for site models; a global model's config ('run.workflow' = \"global\") "
                          "has none")
    if cfg["model"]["kind"] in OWN_KINDS:
        check_own_model_keys(cfg, base)
    check_ranges(cfg)
    clamp_default_years(cfg, raw)
    if not cfg["observations"]["twin"]:
        _check_product_names(cfg)
        check_gridded_products(cfg, base, embedded=embedded)
    check_observations(cfg, embedded=embedded)
    space = _check_parameters(cfg, model)
    check_walkers(cfg, space)
    return cfg


_PRODUCT_TYPES = {**dict.fromkeys(("variable", "format", "file", "nc_variable", "sigma_variable",
                                    "mask_variable", "name", "partitioning", "units", "to_units",
                                    "sigma_units"), str),
                  **dict.fromkeys(("relative_sigma", "footprint_deg", "qc_min", "sigma_floor", "fill_value"),
                                  (int, float)), "columns": dict}


def _check_product_types(cfg: dict) -> None:
    """Each key of ``observations.products`` of its type (before any file is read with it)."""
    for i, spec in enumerate(cfg["observations"]["products"] or []):
        for k, v in (spec.items() if isinstance(spec, dict) else ()):
            want = _PRODUCT_TYPES.get(k)
            if want is not None and (not isinstance(v, want) or isinstance(v, bool)):
                kind = {str: "a string", dict: "a table such as {time = \"date\", value = \"GPP\"}"}.get(
                    want, "a number")
                raise ConfigError(f"'observations.products[{i}].{k}' must be {kind}, got {v!r}")
            if want is str and k == "name" and not v.strip():
                raise ConfigError(f"'observations.products[{i}].name' must not be empty (leave it out: "
                                  "the file's stem)")
            if want not in (str, dict, None) and not np.isfinite(v):
                raise ConfigError(f"'observations.products[{i}].{k}' must be a finite number, got {v}")


def _check_product_names(cfg: dict) -> None:
    """The gridded products of a variable have distinct names (a name defaults to the file's stem)."""
    seen: dict[tuple[str, str], int] = {}
    for i, spec in enumerate(cfg["observations"]["products"]):
        if not isinstance(spec, dict) or "file" not in spec or "variable" not in spec:
            continue  # named by check_gridded_products
        name = spec.get("name") or Path(spec["file"]).stem
        j = seen.setdefault((spec["variable"], name), i)
        if j != i:
            raise ConfigError(f"'observations.products[{i}]': {spec['variable']!r} product {name!r} is also "
                              f"'observations.products[{j}]' (a name defaults to its file's stem): give "
                              "each product of a variable its own 'name'")


def _check_parameters(cfg: dict, model=None):
    """The parameter space (the user's file, named if it is broken; your own model's ``space``)
    and every label the config names."""
    m = cfg["model"]
    try:
        space = model.space if model is not None else model_space(cfg)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - any problem of the user's parameter file, named
        raise ConfigError(
            f"'model.parameters_file' {m['parameters_file']}: {type(err).__name__}: {err}"
        ) from None
    if m["kind"] == "global" and m["parameters_file"] and model is None:
        from ..models.landcarbon import default_parameter_space

        missing = sorted(set(default_parameter_space().names) - set(space.names))
        if missing:
            raise ConfigError(f"'model.parameters_file' {m['parameters_file']}: the embedded model needs the "
                              f"parameter families {missing}, which the file does not define")
    try:
        check_labels(cfg, space)
    except ConfigError as err:
        embedded = model is None and m["kind"] == "global"
        own = "" if not embedded else (" (the embedded model's; for your own model name it in [model] "
                                       "with run.workflow = \"global\", or pass it: load_config(path, "
                                       "model=MyModel()))")
        raise ConfigError(f"{err}{own}") from None
    if not cfg["screen"]["enabled"] and not cfg["parameters"]["free"] and cfg["run"]["workflow"] != "dagon":
        raise ConfigError("'parameters.free' is required when 'screen.enabled' = false")
    if cfg["run"]["workflow"] == "dagon":
        from ..analysis.oat import oat_groups

        cands, unit = cfg["parameters"]["candidates"], cfg["oat"]["unit"]
        n_units = len(oat_groups(space.only(cands) if cands else space, unit))
        if cfg["oat"]["top_k"] > n_units:
            raise ConfigError(f"'oat.top_k' = {cfg['oat']['top_k']} keeps more than the {n_units} units "
                              f"(oat.unit = {unit!r}) the screen ranks: set it to at most {n_units}")
    return space


#: ``[model]`` keys only one kind of model reads: given to another kind they would do nothing
#: (and, being stage inputs, rerun its stages when edited)
_KIND_KEYS = {
    "dalec": ("dalec_type", "drivers", "latitude", "check_weather", "diurnal_range", "spinup_years",
              "spinup_cycles"),
    "python": ("entry_point", "options", "python_path"),
    "external": ("command", "template", "output", "timeout", "variables"),
}


#: keys only the site workflow's emulator route reads
_EMULATOR_ROUTE_KEYS = ("design.n_runs", "emulator.variance_threshold", "emulator.n_restarts",
                        "posterior.refine_rounds", "posterior.n_new", "posterior.emulator_target")


def _warn_truth_held(cfg: dict, space) -> None:
    """A site twin's truth that moves a value ``parameters.free`` leaves out (or the space fixes):
    the calibration holds it at its default, so the model it calibrates is not the one that made
    the data (a warning naming the values; the report's parameter table has only the calibrated ones)."""
    obs, free = cfg["observations"], cfg["parameters"]["free"]
    if not obs["twin"]:
        return
    calibrated = set((space.only(free) if free else space).labels)  # a value fixed in its space: not one
    default = space.unfix().to_unit(space.all_default)
    held = [lab for lab, u in obs["truth"].items()
            if lab not in calibrated and abs(float(u) - default[space.all_labels.index(lab)]) > 1e-9]
    if held:
        warnings.warn(f"'observations.truth' moves {held}, which the calibration holds at their defaults "
                      "(left out of 'parameters.free', or fixed in the parameter space), so its model is not "
                      "the one that made the twin's data (calibrate them, or leave them out of the truth)",
                      UserWarning, stacklevel=3)


def _refuse_site_candidates(cfg: dict) -> None:
    """``parameters.candidates`` (the global screen's pool) in a site config: the site workflow
    has no screen and calibrates ``parameters.free`` (or every value); a twin drawn from the prior
    alone draws its truth for them."""
    obs = cfg["observations"]
    if cfg["parameters"]["candidates"] and not (obs["twin"] and obs.get("truth_from_prior")):
        raise ConfigError("'parameters.candidates' is not read by the site workflow (it has no screen; it "
                          "calibrates 'parameters.free', or every value without it): remove it, or name the "
                          "values to calibrate in 'parameters.free'")


def _warn_route_keys(raw: dict, cfg: dict) -> None:
    """A warning for the emulator route's keys in a site config on the direct route: they do
    nothing there (kept, not refused: switching the route back uses them)."""
    import warnings

    if cfg["posterior"]["route"] == "emulator":
        return
    given = [k for k in _EMULATOR_ROUTE_KEYS
             if isinstance(raw.get(k.split(".")[0]), dict) and k.split(".")[1] in raw[k.split(".")[0]]]
    if given:
        warnings.warn(f"{', '.join(repr(k) for k in given)} {'is' if len(given) == 1 else 'are'} read only "
                      f"with posterior.route = 'emulator'; this config's route is "
                      f"{cfg['posterior']['route']!r}, so {'it does' if len(given) == 1 else 'they do'} "
                      "nothing", UserWarning, stacklevel=3)


def _check_kind_keys(raw: dict, cfg: dict) -> None:
    """ConfigError for a ``[model]`` key the config sets, away from its default, that its
    ``model.kind`` does not read (a validated config validated again passes: its other kinds'
    keys hold their defaults)."""
    given = raw.get("model") if isinstance(raw.get("model"), dict) else {}
    kind, schema = cfg["model"]["kind"], SCHEMA["model"]
    if kind not in (*_KIND_KEYS, "global"):  # a misspelt kind: its own check names it
        return
    for other, keys in _KIND_KEYS.items():
        stray = [k for k in keys if k in given and given[k] != schema[k][1]] if other != kind else []
        if stray:
            mine = f"this config's model.kind is {kind!r}" if "kind" in given else \
                "this config leaves model.kind unset (the embedded global model)"
            raise ConfigError(f"'model.{stray[0]}' is read only with model.kind = {other!r}; {mine}: set "
                              f"model.kind = {other!r}, or remove {', '.join(f'model.{k}' for k in stray)}")


def model_space(cfg: dict):
    """The parameter space of the configured model (the built-in one or ``model.parameters_file``)."""
    from ..models.dalec import dalec_parameter_space
    from ..models.landcarbon import default_parameter_space

    m = cfg["model"]
    if m["parameters_file"] and m["kind"] == "dalec":
        return merged_space(m, dalec_parameter_space(m["dalec_type"]), f"DALEC-{m['dalec_type']}", "DALEC")
    if m["parameters_file"] and m["kind"] == "python":
        return merged_space(m, python_model(m).space, f"the model {m['entry_point']!r}", "the model")
    embedded = m["kind"] == "global"
    if m["parameters_file"] and embedded and not _lists_every_value(m, default_parameter_space()):
        return merged_space(m, default_parameter_space(), "the embedded global model", "the embedded model")
    if m["parameters_file"]:  # the whole space: an external program's, or the embedded model's written out
        return file_space(m)
    if m["kind"] == "dalec":
        return dalec_parameter_space(m["dalec_type"])
    if m["kind"] == "python":
        return python_model(m).space
    return default_parameter_space()


def _lists_every_value(m: dict, builtin) -> bool:
    """Whether ``model.parameters_file`` names every value of ``builtin`` (the whole space, as
    ``ParameterSpace.to_toml`` writes it: bounds may widen) or only some (those it changes:
    narrowed, :func:`~bayescal.workflows.space_file.merged_space`)."""
    import tomllib

    try:
        given = tomllib.loads(Path(m["parameters_file"]).read_text()).get("parameters") or {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return True  # file_space names the problem
    return isinstance(given, dict) and set(builtin.names) <= set(given)


def load_config(path: str | Path, model=None) -> dict[str, Any]:
    """Read and validate a TOML config (errors name the file and the key); ``model``: your own
    global model, whose space the config's parameter names are checked against
    (:func:`validate_config`)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    if not path.is_file():
        raise ConfigError(f"config path {path} is not a file (a directory?); give the TOML file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); TOML files are UTF-8") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from err
    try:
        # the folder as an absolute path: the config's relative paths (and so the stages' keys) are
        # the same from whatever directory bayescal is started
        return validate_config(raw, base=path.parent.resolve(), model=model)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
