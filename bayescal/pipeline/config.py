"""Configuration of ``bayescal run``: the schema, validation whose errors name the key, loading.

Every key is documented in docs/pipeline.md; :func:`validate_config` checks types, ranges, names
and files before any model run, and :func:`load_config` reads a TOML file (UTF-8) and names the
file in every error.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from ..rundir import STAGES

__all__ = ["ConfigError", "SCHEMA", "STAGES", "STAGE_HELP", "STAGE_SECTIONS", "load_config",
           "main_stage_names", "model_space", "truth_theta", "validate_config"]

STAGE_HELP = {
    "screen": "Morris screening of the candidate parameters with SALib; keeps the top_k most influential "
    "(skipped when [screen] enabled = false: [parameters] free is used).",
    "optimize": "optional optimiser on the regionally normalised residual misfit (method = none, ga, dfols, "
    "cma_es, differential_evolution); its best point is the 'optimised' set.",
    "design": "Latin-hypercube ensemble of n_runs members through the resumable runner; misfit and "
    "log regional means of each member.",
    "emulate": "GP emulator of the log misfit (leave-one-out checked) and an SVD emulator of the summaries.",
    "posterior": "emcee on the emulated Gaussian likelihood, with refinement rounds that run the model at "
    "posterior draws; saved as ArviZ InferenceData (posterior/posterior.nc).",
    "equifinality": "identifiability table, posterior correlations and PCA, distance-vs-score clouds and "
    "k alternative parameter sets.",
    "propagate": "posterior draws, defaults, optimum and alternatives through the model; GPP/NBP bands, "
    "Table 3 budget, chi-squared against GCB 2024 NBP.",
    "report": "figures (PNG) and report.html in the run directory.",
}


class ConfigError(ValueError):
    """An invalid configuration; the message names the key."""


# --------------------------------------------------------------------------------- config
#: section -> key -> (type(s), default). ``None`` default with a type: optional.
SCHEMA: dict[str, dict[str, tuple[Any, Any]]] = {
    "run": {"name": (str, "bayescal"), "output": (str, "runs/bayescal"), "seed": (int, 0),
            "workflow": (str, "default"), "workers": (int, 0), "scheduler": (str, "")},
    "model": {
        "n_cells": (int, 60),
        "grid_seed": (int, 3),
        "start": (int, 1990),
        "end": (int, 2022),
        "ramp_start": (int, 1985),
        "chunk_size": (int, 256),
        "parameters_file": (str, None),
        # site models (pipeline/site_config.py)
        "kind": (str, "global"),
        "dalec_type": (str, "deciduous"),
        "drivers": (str, None),
        "diurnal_range": (float, 8.0),
        "spinup_years": (int, 3),
        "spinup_cycles": (int, 5),
        "entry_point": (str, None),
        "options": (dict, {}),
        "command": (list, None),
        "template": (str, None),
        "output": (str, "output.nc"),
        "timeout": (float, 600.0),
        "variables": (list, None),
    },
    "parameters": {"candidates": (list, None), "free": (list, None)},
    "observations": {
        "twin": (bool, True),
        "twin_seed": (int, 11),
        "truth": (dict, {}),
        "variables": (list, ["gpp", "lai", "hfls"]),
        "gcb_nbp": (bool, False),
        "gcb_years": (list, [1990, 2022]),
        "gcb_errors": (str, "correlated"),
        "gcb_block": (int, 10),
        "sigma_floor": (float, 0.03),
        "products": (list, []),
    },
    "site": {
        "calibration_years": (list, None),
        "validation_years": (list, None),
        "aggregate": (str, "daily"),
        "discrepancy": (str, "estimate"),
        "autocorrelation": (bool, True),
        "ml_evaluations": (int, 2000),
    },
    "screen": {"enabled": (bool, True), "trajectories": (int, 8), "top_k": (int, 10)},
    "optimize": {
        "method": (str, "none"),
        "misfit": (str, "residuals"),
        "max_evaluations": (int, 60),
        "pop_size": (int, 20),
        "n_generations": (int, 10),
    },
    "design": {"n_runs": (int, 100), "batch_size": (int, 32)},
    "emulator": {"variance_threshold": (float, 0.999), "n_restarts": (int, 0), "training": (str, "all"),
                 "drop_worst": (float, 0.0), "eof_modes": (int, 3), "network": (list, [12, 12])},
    "oat": {"top_k": (int, 6)},
    "emulator_screen": {"n_points": (int, 10_000_000), "keep": (int, 1000), "refine_rounds": (int, 3)},
    "posterior": {
        "n_steps": (int, 1500),
        "max_steps": (int, 20000),
        "n_walkers": (int, 0),
        "refine_rounds": (int, 2),
        "n_new": (int, 30),
        "left_out": (str, "marginalise"),
        "left_out_runs": (int, 32),
        "route": (str, "direct"),
    },
    "equifinality": {"n_alternatives": (int, 3), "cloud_points": (int, 20000), "seiler_points": (int, 5000),
                     "local_box": (str, "range")},
    "propagate": {"n_draws": (int, 40), "table_years": (list, [2003, 2022])},
    "report": {"title": (str, "bayescal calibration report")},
}
_OPT_METHODS = ("none", "ga", "dfols", "cma_es", "differential_evolution")
STAGE_SECTIONS = {
    "screen": ("model", "parameters", "screen", "observations"),
    "optimize": ("optimize",),
    "design": ("design",),
    "emulate": ("emulator",),
    "posterior": ("posterior",),
    "equifinality": ("equifinality",),
    "propagate": ("propagate",),
    "report": ("report",),
}


def _type_name(t) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true/false",
        list: "a list",
        dict: "a table",
    }[t]


def validate_config(raw: dict[str, Any], base: Path | None = None) -> dict[str, Any]:
    """Check a config against :data:`SCHEMA` and fill in defaults.

    Raises :class:`ConfigError` naming the key for unknown sections or keys, wrong types, missing
    files, out-of-range values and unknown parameter names.
    """
    cfg = _typed_with_defaults(raw)
    _check_executor(cfg)
    if cfg["model"]["kind"] != "global":
        from .site_config import check_site_config

        # a site model fits the files it is given; a twin only when asked for
        cfg["observations"]["twin"] = bool(raw.get("observations", {}).get("twin", False))
        _check_ranges(cfg)
        check_site_config(cfg, base)
        space = model_space(cfg)
        _check_labels(cfg, space)
        return cfg
    defaults = {k: d for k, (_, d) in SCHEMA["site"].items()}
    if any(cfg["site"][k] != defaults[k] for k in defaults):
        raise ConfigError("[site] is for site models ('model.kind' = dalec, python or external)")
    _check_model(cfg, base)
    _check_ranges(cfg)
    _check_observations(cfg, base)
    space = _check_parameters(cfg)
    _check_walkers(cfg, space)
    return cfg


def _typed_with_defaults(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Known sections and keys only, each of its schema type; defaults filled in."""
    cfg: dict[str, dict[str, Any]] = {}
    for section in raw:
        if section not in SCHEMA:
            raise ConfigError(f"unknown section [{section}]; known: {', '.join(SCHEMA)}")
        if not isinstance(raw[section], dict):
            raise ConfigError(f"[{section}] must be a table")
    for section, keys in SCHEMA.items():
        given = raw.get(section, {})
        for key in given:
            if key not in keys:
                raise ConfigError(f"unknown key '{section}.{key}'; known: {', '.join(keys)}")
        cfg[section] = {}
        for key, (typ, default) in keys.items():
            if key not in given:
                cfg[section][key] = copy.deepcopy(default)
                continue
            val = given[key]
            ok = isinstance(val, typ) and not (typ is int and isinstance(val, bool))
            if typ is float and isinstance(val, int) and not isinstance(val, bool):
                val, ok = float(val), True
            if not ok:
                raise ConfigError(
                    f"'{section}.{key}' must be {_type_name(typ)}, got {type(val).__name__} {val!r}"
                )
            cfg[section][key] = val
    return cfg


def _check_executor(cfg: dict) -> None:
    r = cfg["run"]
    if r["workers"] < 0 or (r["workers"] and r["scheduler"]):
        raise ConfigError("'run.workers' must be >= 0, and not given with 'run.scheduler' (one executor)")
    if (r["workers"] or r["scheduler"]) and cfg["model"]["kind"] != "global":
        raise ConfigError("'run.workers' and 'run.scheduler' are for the embedded global model; a site "
                          "model runs in this process")


def _check_model(cfg: dict, base: Path | None) -> None:
    """[model] grid, years and parameter file; [run] seed; [observations] basics."""
    m = cfg["model"]
    from ..models.drivers import BIOMES
    from ..models.drivers import PREINDUSTRIAL_YEAR as first_year

    if m["n_cells"] < 2 * len(BIOMES):
        raise ConfigError(
            f"'model.n_cells' must be >= {2 * len(BIOMES)} (two cells per biome), got {m['n_cells']}"
        )
    if m["chunk_size"] < 1:
        raise ConfigError(f"'model.chunk_size' must be >= 1, got {m['chunk_size']}")
    if m["ramp_start"] < first_year:
        raise ConfigError(
            f"'model.ramp_start' must be >= {first_year} (the drivers' pre-industrial start), "
            f"got {m['ramp_start']}"
        )
    if cfg["run"]["workflow"] not in ("default", "dagon"):
        raise ConfigError(f"'run.workflow' must be 'default' or 'dagon', got {cfg['run']['workflow']!r}")
    if cfg["run"]["workflow"] == "dagon" and cfg["model"]["kind"] != "global":
        raise ConfigError("'run.workflow' = 'dagon' needs the embedded global model ('model.kind' = global)")
    small = cfg["emulator"]["eof_modes"] < 1 or cfg["oat"]["top_k"] < 1
    if small or cfg["emulator_screen"]["n_points"] < 1000:
        raise ConfigError("'emulator.eof_modes' and 'oat.top_k' must be >= 1 and 'emulator_screen.n_points' "
                          ">= 1000")
    net = cfg["emulator"]["network"]
    if len(net) != 2 or not all(isinstance(n, int) and n >= 1 for n in net):
        raise ConfigError(f"'emulator.network' must be two layer widths, e.g. [12, 12], got {net!r}")
    if cfg["run"]["seed"] < 0:
        raise ConfigError(f"'run.seed' must be >= 0, got {cfg['run']['seed']}")
    if not cfg["observations"]["variables"]:
        raise ConfigError("'observations.variables' must name at least one variable, got []")
    if not cfg["observations"]["sigma_floor"] >= 0:
        raise ConfigError(
            f"'observations.sigma_floor' must be >= 0, got {cfg['observations']['sigma_floor']}"
        )
    if not m["ramp_start"] <= m["start"] <= m["end"]:
        raise ConfigError(
            f"'model.start' must lie between model.ramp_start and model.end "
            f"({m['ramp_start']} <= {m['start']} <= {m['end']})"
        )
    if m["start"] < 1959 or m["end"] > 2023:
        raise ConfigError(
            f"'model.start'/'model.end' must lie within 1959-2023 (the drivers' GCB years), "
            f"got {m['start']}-{m['end']}"
        )
    if m["parameters_file"] is not None:
        path = Path(m["parameters_file"])
        if base is not None and not path.is_absolute():
            path = base / path
        if not path.exists():
            raise ConfigError(f"'model.parameters_file': file not found: {path}")
        m["parameters_file"] = str(path)


def _check_ranges(cfg: dict) -> None:
    """Counts and sizes with a lower bound; the posterior's and optimiser's choices."""
    for section, key, lo in (
        ("screen", "trajectories", 2),
        ("screen", "top_k", 1),
        ("design", "n_runs", 10),
        ("design", "batch_size", 1),
        ("posterior", "n_steps", 100),
        ("posterior", "refine_rounds", 1),
        ("posterior", "n_new", 1),
        ("equifinality", "n_alternatives", 1),
        ("equifinality", "cloud_points", 100),
        ("equifinality", "seiler_points", 100),
        ("propagate", "n_draws", 2),
        ("optimize", "max_evaluations", 2),
        ("optimize", "pop_size", 2),
        ("optimize", "n_generations", 1),
    ):
        if cfg[section][key] < lo:
            raise ConfigError(f"'{section}.{key}' must be >= {lo}, got {cfg[section][key]}")
    if cfg["posterior"]["max_steps"] < cfg["posterior"]["n_steps"]:
        raise ConfigError(
            f"'posterior.max_steps' ({cfg['posterior']['max_steps']}) must be >= 'posterior.n_steps' "
            f"({cfg['posterior']['n_steps']})"
        )
    if cfg["posterior"]["left_out"] not in ("marginalise", "fix"):
        raise ConfigError(
            f"'posterior.left_out' must be 'marginalise' or 'fix', got {cfg['posterior']['left_out']!r}"
        )
    if cfg["posterior"]["left_out"] == "marginalise" and cfg["posterior"]["left_out_runs"] < 8:
        raise ConfigError(
            "'posterior.left_out_runs' must be >= 8 to estimate a spread, got "
            f"{cfg['posterior']['left_out_runs']}"
        )
    if cfg["equifinality"]["local_box"] not in ("range", "value"):
        raise ConfigError("'equifinality.local_box' must be 'range' or 'value', got "
                          f"{cfg['equifinality']['local_box']!r}")
    e = cfg["emulator"]
    if e["training"] not in ("all", "optimize"):
        raise ConfigError(f"'emulator.training' must be 'all' or 'optimize', got {e['training']!r}")
    if not 0.0 <= e["drop_worst"] < 1.0:
        raise ConfigError(f"'emulator.drop_worst' must be in [0, 1), got {e['drop_worst']}")
    if cfg["observations"]["gcb_block"] < 1:
        raise ConfigError("'observations.gcb_block' must be >= 1 (years per GCB NBP mean), got "
                          f"{cfg['observations']['gcb_block']}")
    if cfg["observations"]["gcb_errors"] not in ("correlated", "independent"):
        raise ConfigError("'observations.gcb_errors' must be 'correlated' or 'independent', got "
                          f"{cfg['observations']['gcb_errors']!r}")
    if cfg["optimize"]["misfit"] not in ("residuals", "score", "seiler"):
        raise ConfigError(
            f"'optimize.misfit' must be 'residuals', 'score' or 'seiler', got {cfg['optimize']['misfit']!r}"
        )
    if cfg["optimize"]["method"] not in _OPT_METHODS:
        raise ConfigError(
            f"'optimize.method' must be one of {', '.join(_OPT_METHODS)}, got {cfg['optimize']['method']!r}"
        )
    if not 0 < cfg["emulator"]["variance_threshold"] <= 1:
        raise ConfigError("'emulator.variance_threshold' must be in (0, 1]")


def _check_observations(cfg: dict, base: Path | None) -> None:
    """[observations]: twin, truth values, year windows, variables the model has."""
    m = cfg["model"]
    obs = cfg["observations"]
    if not obs["twin"]:
        from .site_config import check_gridded_products

        check_gridded_products(cfg, base)
    for section, key in (("observations", "gcb_years"), ("propagate", "table_years")):
        yrs = cfg[section][key]
        if len(yrs) != 2 or not all(isinstance(y, int) for y in yrs) or yrs[0] > yrs[1]:
            raise ConfigError(f"'{section}.{key}' must be [first, last] years, got {yrs!r}")
        if yrs[0] < m["start"] or yrs[1] > m["end"]:
            raise ConfigError(
                f"'{section}.{key}' {yrs} must lie within model.start-model.end ({m['start']}-{m['end']})"
            )
    from ..models.landcarbon import OUTPUT_VARIABLES

    for v in obs["variables"]:
        if v not in OUTPUT_VARIABLES:
            raise ConfigError(
                f"'observations.variables': unknown variable {v!r}; known: {list(OUTPUT_VARIABLES)}"
            )


def _check_parameters(cfg: dict):
    """The parameter space (the user's file, named if it is broken) and every label the config names."""
    m = cfg["model"]
    try:
        space = model_space(cfg)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - any problem of the user's parameter file, named
        raise ConfigError(
            f"'model.parameters_file' {m['parameters_file']}: {type(err).__name__}: {err}"
        ) from None
    _check_labels(cfg, space)
    if not cfg["screen"]["enabled"] and not cfg["parameters"]["free"]:
        raise ConfigError("'parameters.free' is required when 'screen.enabled' = false")
    return space


def _check_labels(cfg: dict, space) -> None:
    """Every parameter the config names exists in the model's space."""
    known = set(space.all_labels) | set(space.names)
    for section, key in (("parameters", "candidates"), ("parameters", "free")):
        for name in cfg[section][key] or []:
            if name not in known:
                raise ConfigError(f"'{section}.{key}': unknown parameter {name!r}")
    for label, value in cfg["observations"]["truth"].items():
        if label not in space.all_labels:
            raise ConfigError(f"'observations.truth': unknown parameter {label!r}")
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
            raise ConfigError(
                f"'observations.truth.{label}' must be a unit-cube value in [0, 1], got {value!r}"
            )


def _check_walkers(cfg: dict, space) -> None:
    """emcee needs at least two walkers per calibrated value; the most the screen can keep."""
    n_walkers = cfg["posterior"]["n_walkers"]
    if n_walkers == 0:
        return
    free = space.only(cfg["parameters"]["free"]).n_free if cfg["parameters"]["free"] else 0
    d_max = free + cfg["screen"]["top_k"] if cfg["screen"]["enabled"] else free
    if n_walkers < 2 * d_max or n_walkers % 2:
        raise ConfigError(
            f"'posterior.n_walkers' must be 0 (automatic) or an even number >= 2 x the calibrated values "
            f"(up to {d_max} here, so >= {2 * d_max}), got {n_walkers}"
        )


def model_space(cfg: dict):
    """The parameter space of the configured model (the built-in one or ``model.parameters_file``)."""
    from ..models.dalec import dalec_parameter_space
    from ..models.landcarbon import default_parameter_space
    from ..parameters import ParameterSpace

    m = cfg["model"]
    if m["parameters_file"]:
        return ParameterSpace.from_toml(m["parameters_file"])
    if m["kind"] == "dalec":
        return dalec_parameter_space(m["dalec_type"])
    if m["kind"] == "python":
        from .site_config import site_model

        return site_model(cfg).space
    return default_parameter_space()


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and validate a TOML config (errors name the file and the key)."""
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
        return validate_config(raw, base=path.parent)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def main_stage_names() -> str:
    return "\n".join(f"  {s:13s} {STAGE_HELP[s]}" for s in STAGES)


def truth_theta(cfg: dict, space):
    """Full parameter vector of the twin truth: defaults with ``observations.truth`` (unit cube,
    on each value's own scale: log-scaled values are uniform in log)."""
    full = space.unfix()
    u = full.to_unit(space.all_default)
    for label, val in cfg["observations"]["truth"].items():
        u[space.all_labels.index(label)] = float(val)
    return full.from_unit(u)
