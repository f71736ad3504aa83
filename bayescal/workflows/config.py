"""Configuration of ``bayescal run``: the schema and the checks whose errors name the key.

Every key is documented in docs/pipeline.md. :func:`~.validate.validate_config` runs these checks
(types, ranges, names, files, ``run.output``) before any model run, and
:func:`~.validate.load_config` reads a TOML file (UTF-8) and names the file in every error; they
live in :mod:`.validate`, above both this module and :mod:`.site.config`, so neither imports the
other back.
"""

from __future__ import annotations

import copy
import math
import os
import re
from pathlib import Path
from typing import Any

from ..run.cluster import ClusterError, check_run_config

__all__ = ["GLOBAL_ONLY", "ConfigError", "SCHEMA", "check_executor", "check_labels", "check_model",
           "check_observations", "check_output", "check_walkers", "did_you_mean", "expand_path", "is_site",
           "truth_theta", "typed_with_defaults"]


class ConfigError(ValueError):
    """An invalid configuration; the message names the key."""


# --------------------------------------------------------------------------------- config
#: section -> key -> (type(s), default). ``None`` default with a type: optional.
SCHEMA: dict[str, dict[str, tuple[Any, Any]]] = {
    "run": {"name": (str, "bayescal"), "output": (str, "runs/bayescal"), "seed": (int, 0),
            "workflow": (str, "default"), "workers": (int, 0), "scheduler": (str, ""),
            "slurm": (dict, {}), "config_dir": (str, "")},
    "model": {
        "n_cells": (int, 60),
        "grid_seed": (int, 3),
        "start": (int, 1990),
        "end": (int, 2022),
        "ramp_start": (int, 1985),
        "chunk_size": (int, 256),
        "parameters_file": (str, None),
        # site models (workflows/site/config.py)
        "kind": (str, "global"),
        "dalec_type": (str, "deciduous"),
        "drivers": (str, None),
        "latitude": (float, None),  # DALEC: degrees north (default: the FLUXNET2015 site table)
        "check_weather": (bool, True),  # DALEC: refuse implausible drivers (readers/driver_checks.py)
        "diurnal_range": (float, 8.0),
        "spinup_years": (int, 3),
        "spinup_cycles": (int, 5),
        "entry_point": (str, None),
        "options": (dict, {}),
        "python_path": (list, []),  # folders searched for the entry point (and the config's own)
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
        "truth_from_prior": (bool, False),  # twin: every calibrated value's truth drawn from its prior
        "summary_noise": (bool, False),  # twin: observed summaries = truth's + N(0, sigma^2)
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
        "ml_evaluations": (int, 20000),
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
    # Dagon et al.'s route: families perturbed together, screened on the embedded model's outputs
    # among Dagon's seven (GPP, evapotranspiration as latent heat, sensible heat; docs/seeds.md)
    "oat": {"top_k": (int, 6), "select": (str, "effect"), "unit": (str, "family"),
            "outputs": (list, ["gpp", "hfls", "hfss"])},
    "emulator_screen": {"n_points": (int, 10_000_000), "keep": (int, 1000), "refine_rounds": (int, 3)},
    "posterior": {
        "n_steps": (int, 1500),
        "max_steps": (int, 20000),
        "n_walkers": (int, 0),
        "refine_rounds": (int, 6),
        "n_new": (int, 30),
        "left_out": (str, "marginalise"),
        "left_out_runs": (int, 32),
        "route": (str, "direct"),
        "moves": (str, "independence"),  # the site direct route's: independence, de_subspace, de_stretch
        "start": (str, "tempered"),  # the site route's chains: tempered (SMC from the prior) or optimum
        "n_particles": (int, 1000),  # the tempered start's particles
        "emulator_target": (str, "expected"),  # the site emulator route's posterior: expected or mean log L
        # posterior.method = "history_matching" (workflows/global_/history_matching_stage.py)
        "method": (str, "refine"),
        "hm_waves": (int, 4),
        "hm_runs": (int, 250),
        "hm_cutoff": (float, 3.0),
        "hm_discrepancy": (float, 0.0),
        "hm_active": (int, 12),
        "hm_floor": (float, 0.3),
        "hm_max_rank": (int, 0),  # 0: no cap, the rank the floor needs (issue: no floor > 0.3 sigma)
        "hm_train": (str, "all"),
        "hm_design": (str, "random"),
    },
    "equifinality": {"n_alternatives": (int, 3), "cloud_points": (int, 20000), "seiler_points": (int, 5000),
                     "local_box": (str, "range")},
    "propagate": {"n_draws": (int, 40), "table_years": (list, [2003, 2022])},
    "report": {"title": (str, "bayescal calibration report")},
}
_OPT_METHODS = ("none", "ga", "dfols", "cma_es", "differential_evolution")


def _type_name(t) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true/false",
        list: "a list",
        dict: "a table",
    }[t]


def typed_with_defaults(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Known sections and keys only, each of its schema type; defaults filled in."""
    cfg: dict[str, dict[str, Any]] = {}
    for section in raw:
        if section not in SCHEMA:
            raise ConfigError(f"unknown section [{section}]{did_you_mean(section, SCHEMA)}; known: "
                              f"{', '.join(SCHEMA)}")
        if not isinstance(raw[section], dict):
            raise ConfigError(f"[{section}] must be a table")
    for section, keys in SCHEMA.items():
        given = raw.get(section, {})
        for key in given:
            if key not in keys:
                near = did_you_mean(f"{section}.{key}", [f"{section}.{k}" for k in keys])
                raise ConfigError(f"unknown key '{section}.{key}'{near}; known: {', '.join(keys)}")
        cfg[section] = {}
        for key, (typ, default) in keys.items():
            if key not in given:
                cfg[section][key] = copy.deepcopy(default)
                continue
            val = given[key]
            ok = isinstance(val, typ) and not (typ is int and isinstance(val, bool))
            if typ is float and isinstance(val, int) and not isinstance(val, bool):
                val, ok = float(val), True
            if ok and typ is float and not math.isfinite(val):
                raise ConfigError(f"'{section}.{key}' must be a finite number, got {val}")
            if not ok:
                raise ConfigError(
                    f"'{section}.{key}' must be {_type_name(typ)}, got {type(val).__name__} {val!r}"
                )
            cfg[section][key] = val
    return cfg


#: keys of [model] and [observations] that only the embedded global model reads: a site model's
#: stages do not declare them, so editing one in a site config reruns nothing
GLOBAL_ONLY: dict[str, tuple[str, ...]] = {
    "model": ("n_cells", "grid_seed", "start", "end", "ramp_start", "chunk_size"),
    "observations": ("summary_noise", "variables", "gcb_nbp", "gcb_years", "gcb_errors", "gcb_block",
                     "sigma_floor"),
}


#: ``[model]`` keys that change how the runs are made, not what they give (like ``design.batch_size``
#: and ``run.workers``): held at their defaults in the config the stage keys are made of
#: (:func:`config_for_keys`), so lowering one after running out of memory keeps every run
#: (``tests/test_model.py`` checks the embedded model's outputs do not depend on ``chunk_size``)
EXECUTION_ONLY_MODEL_KEYS = ("chunk_size",)

#: ``[model]`` keys of a check that passed or stopped the run: no stage's input (left out of the
#: keys, so a stage that reads the whole ``[model]`` keeps the key it had before the switch)
CHECK_ONLY_MODEL_KEYS = ("check_weather",)


def config_for_keys(cfg: dict) -> dict:
    """The config as the stages' keys see it: :data:`EXECUTION_ONLY_MODEL_KEYS` at their defaults
    (a stage that reads the whole ``[model]`` keeps the key it had at the default),
    :data:`CHECK_ONLY_MODEL_KEYS` left out."""
    model = cfg.get("model")
    if not isinstance(model, dict):
        return cfg
    held = {k: SCHEMA["model"][k][1] for k in EXECUTION_ONLY_MODEL_KEYS if k in model}
    kept = {k: v for k, v in model.items() if k not in CHECK_ONLY_MODEL_KEYS}
    return {**cfg, "model": {**kept, **held}}


def is_site(cfg: dict) -> bool:
    """A config of the site workflow: ``model.kind`` dalec, python or external, unless
    ``run.workflow = "global"`` runs a python or external model of your own on the global route."""
    kind = cfg.get("model", {}).get("kind", "global")
    return kind != "global" and cfg.get("run", {}).get("workflow", "default") != "global"


def check_executor(cfg: dict) -> None:
    """``run.workers`` / ``run.scheduler``: one executor (a site model's too: its design,
    refinement and propagation runs go there; the direct route's chain runs in this process)."""
    try:
        check_run_config(cfg["run"])
    except ClusterError as err:
        raise ConfigError(str(err)) from None


def check_model(cfg: dict, base: Path | None, embedded: bool = True) -> None:
    """[model] grid, years and parameter file (the embedded model's grid and drivers' years only
    with ``embedded``); [run] workflow and seed; [observations] basics."""
    m = cfg["model"]
    if embedded:
        _check_embedded_model(m)
    wf = cfg["run"]["workflow"]
    if wf not in ("default", "global", "dagon"):
        raise ConfigError(f"'run.workflow' must be 'default', 'global' or 'dagon', got {wf!r}")
    if wf == "dagon" and m["kind"] != "global":
        raise ConfigError("'run.workflow' = 'dagon' needs the embedded global model ('model.kind' = global)")
    if wf == "global" and m["kind"] not in ("global", "python", "external"):
        raise ConfigError(f"'run.workflow' = 'global' runs the embedded global model or a model of your own "
                          f"('model.kind' = python or external), not 'model.kind' = {m['kind']!r}")
    if cfg["oat"]["select"] not in ("effect", "combined"):
        raise ConfigError(f"'oat.select' must be 'effect' or 'combined', got {cfg['oat']['select']!r}")
    if cfg["oat"]["unit"] not in ("family", "value"):
        raise ConfigError(f"'oat.unit' must be 'family' or 'value', got {cfg['oat']['unit']!r}")
    net = cfg["emulator"]["network"]
    if len(net) != 2 or not all(isinstance(n, int) and 1 <= n <= 10_000 for n in net):
        raise ConfigError(f"'emulator.network' must be two layer widths (1 to 10,000), e.g. [12, 12], "
                          f"got {net!r}")
    if not cfg["observations"]["variables"]:
        raise ConfigError("'observations.variables' must name at least one variable, got []")
    if m["start"] > m["end"]:
        raise ConfigError(f"'model.start' ({m['start']}) must be <= 'model.end' ({m['end']})")
    if m["parameters_file"] is not None:
        path = Path(expand_path(m["parameters_file"], "model.parameters_file"))
        if base is not None and not path.is_absolute():
            path = Path(os.path.normpath(base / path))
        if not path.exists():
            raise ConfigError(f"'model.parameters_file': file not found: {path}")
        if path.is_dir():
            raise ConfigError(f"'model.parameters_file': {path} is a folder, not a file; give the TOML file")
        m["parameters_file"] = str(path)


def _check_embedded_model(m: dict) -> None:
    """The embedded model's grid, chunks and years (its drivers cover 1959-2023 after a ramp)."""
    from ..models.drivers import BIOMES
    from ..models.drivers import PREINDUSTRIAL_YEAR as first_year

    if m["n_cells"] < 2 * len(BIOMES):
        raise ConfigError(
            f"'model.n_cells' must be >= {2 * len(BIOMES)} (two cells per biome), got {m['n_cells']}"
        )
    if m["ramp_start"] < first_year:
        raise ConfigError(
            f"'model.ramp_start' must be >= {first_year} (the drivers' pre-industrial start), "
            f"got {m['ramp_start']}"
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


#: the year windows whose defaults are clamped to the model's years when a config leaves them out
CLAMPED_YEARS = (("observations", "gcb_years"), ("propagate", "table_years"))


def clamped_default_years(cfg: dict, section: str, key: str) -> list[int]:
    """The default window of ``section.key`` (:data:`CLAMPED_YEARS`) within the model's years (a
    run of 2000-2009 compares and tabulates 2003-2009), or all of them if they do not meet."""
    m = cfg["model"]
    y0, y1 = SCHEMA[section][key][1]
    lo, hi = max(y0, m["start"]), min(y1, m["end"])
    return [lo, hi] if lo <= hi else [m["start"], m["end"]]


def clamp_default_years(cfg: dict, raw: dict) -> None:
    """``observations.gcb_years`` and ``propagate.table_years`` left out of the config: their
    defaults within the model's years (:func:`clamped_default_years`); a window given in the
    config is checked as it is (:func:`check_observations`)."""
    for section, key in CLAMPED_YEARS:
        given = raw.get(section, {})
        if not (isinstance(given, dict) and key in given):
            cfg[section][key] = clamped_default_years(cfg, section, key)


def check_observations(cfg: dict, embedded: bool = True) -> None:
    """[observations]: twin, truth values, year windows, variables the model has (the embedded
    model's; your own model's are checked when it runs at its defaults)."""
    m = cfg["model"]
    obs = cfg["observations"]
    for section, key in (("observations", "gcb_years"), ("propagate", "table_years")):
        yrs = cfg[section][key]
        if len(yrs) != 2 or not all(isinstance(y, int) for y in yrs) or yrs[0] > yrs[1]:
            raise ConfigError(f"'{section}.{key}' must be [first, last] years, got {yrs!r}")
        if yrs[0] < m["start"] or yrs[1] > m["end"]:
            raise ConfigError(
                f"'{section}.{key}' {yrs} must lie within model.start-model.end ({m['start']}-{m['end']})"
            )
    if obs["gcb_nbp"] and (obs["gcb_years"][0] < 1959 or obs["gcb_years"][1] > 2023):
        raise ConfigError(f"'observations.gcb_years' {obs['gcb_years']} must lie within GCB 2024's years "
                          "1959-2023 when 'observations.gcb_nbp' = true (its NBP enters the likelihood)")
    from ..models.landcarbon import OUTPUT_VARIABLES

    twice = sorted({str(v) for v in obs["variables"] if obs["variables"].count(v) > 1})
    if twice:
        raise ConfigError(f"'observations.variables' names {twice} more than once: each variable's products "
                          "enter the likelihood once")
    signed = sorted({"nbp", "nee", "nep"} & set(obs["variables"]))
    if signed and cfg["run"]["workflow"] == "dagon":
        raise ConfigError(f"'observations.variables': {signed} change sign; the Dagon route observes "
                          "positive fluxes and states (Dagon et al. calibrate GPP and latent heat): "
                          "observe gpp, hfls, hfss, lai, ...")
    if signed:
        raise ConfigError(f"'observations.variables': {signed} change sign, and the global route's summaries "
                          "are log area-weighted biome means (docs/pipeline.md): calibrate NBP with the "
                          "GCB's global NBP ('observations.gcb_nbp' = true)")
    if embedded and {"hfls", "hfss"} <= set(obs["variables"]):
        import warnings

        warnings.warn("'observations.variables' names hfls and hfss: the embedded model's sensible heat is "
                      "its net radiation (0.7 rsds, fixed by the drivers) minus latent heat, so hfss's maps "
                      "vary only as hfls's do and latent heat counts twice in the fit (docs/model.md)",
                      UserWarning, stacklevel=3)
    for v in obs["variables"] if embedded else ():
        if v not in OUTPUT_VARIABLES:
            raise ConfigError(
                f"'observations.variables': unknown variable {v!r}; known: {list(OUTPUT_VARIABLES)}"
            )
    if cfg["optimize"]["method"] == "none" and cfg["emulator"]["training"] == "optimize":
        raise ConfigError("'emulator.training' = 'optimize' trains on the optimiser's runs: set "
                          "'optimize.method' (it is 'none') or 'emulator.training' = 'all'")
    outputs = cfg["oat"]["outputs"]
    if not outputs or len(set(map(str, outputs))) != len(outputs):
        raise ConfigError(f"'oat.outputs' must name at least one output, each once, got {outputs!r}")
    for v in outputs if embedded else ():
        if v not in OUTPUT_VARIABLES:
            raise ConfigError(f"'oat.outputs': unknown output {v!r}; known: {list(OUTPUT_VARIABLES)}")


_WITHOUT = {"candidates": "without it every value of the model is a candidate",
            "free": "without it the screen, or a site model's every value, decides what is calibrated"}


def check_labels(cfg: dict, space) -> None:
    """Every parameter the config names exists in the model's space."""
    known = set(space.all_labels) | set(space.names)
    for section, key in (("parameters", "candidates"), ("parameters", "free")):
        if cfg[section][key] == []:  # not "all" or "none" by accident: either is said by leaving it out
            raise ConfigError(f"'{section}.{key}' is an empty list: name at least one parameter, or leave "
                              f"the key out ({_WITHOUT[key]})")
        odd = [name for name in cfg[section][key] or [] if not isinstance(name, str)]
        if odd:
            raise ConfigError(f"'{section}.{key}' must list parameter names (strings), got {odd[0]!r}")
        unknown = [name for name in cfg[section][key] or [] if name not in known]
        if len(unknown) == 1:
            close = did_you_mean(unknown[0], known)
            raise ConfigError(f"'{section}.{key}': unknown parameter {unknown[0]!r}{close}")
        if unknown:  # every one named, each with its nearest known names
            hints = "; ".join(f"{n!r}{did_you_mean(n, known).replace('; did you mean', ': did you mean')}"
                              for n in unknown)
            raise ConfigError(f"'{section}.{key}': {len(unknown)} unknown parameters: {hints}")
        _check_no_repeats(f"{section}.{key}", cfg[section][key] or [], space)
        _refuse_fixed(f"{section}.{key}", cfg[section][key] or [], space)
    for label, value in cfg["observations"]["truth"].items():
        if label not in space.all_labels:
            raise ConfigError(f"'observations.truth': unknown parameter {label!r}"
                              f"{did_you_mean(label, space.all_labels)}")
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
            raise ConfigError(f"'observations.truth.{label}' must be a unit-cube value in [0, 1], "
                              f"got {value!r}")


def _refuse_fixed(key: str, names: list[str], space) -> None:
    """A parameter list names no value the space holds fixed (``fixed = true`` in a parameters
    file): it would be calibrated all the same, against what the file says."""
    held = set(space.fixed)
    for name in names if held else ():
        fixed = [label for label in space.only([name]).labels if label in held]
        if fixed:
            more = f" and {len(fixed) - 3} more" if len(fixed) > 3 else ""
            raise ConfigError(f"'{key}' names {name!r}, but the parameter space holds {fixed[:3]}{more} "
                              "fixed (fixed = true in model.parameters_file, or your model's space): remove "
                              f"it from '{key}', or set fixed = false in the file")


def _check_no_repeats(key: str, names: list[str], space) -> None:
    """A parameter list names each value once: no name twice, and no value both by its family's
    name and its own label (``vmax`` and ``vmax[BDL-EVG]``)."""
    seen: dict[str, str] = {}
    for name in names:
        labels = space[name].labels if name in space.names else [name]
        for lab in labels:
            if lab in seen:
                same = "twice" if seen[lab] == name else f"as {seen[lab]!r} and as {name!r}"
                raise ConfigError(f"'{key}' names {lab!r} {same}: name each value once")
            seen[lab] = name


def did_you_mean(name: str, known) -> str:
    """"; did you mean ...?" with the known names closest to a misspelt one ("" if none is)."""
    import difflib

    lower = {str(k).lower(): str(k) for k in sorted(map(str, known), reverse=True)}  # case aside: GPP, gpp
    close = [lower[c] for c in difflib.get_close_matches(str(name).lower(), sorted(lower), n=3, cutoff=0.6)]
    return f"; did you mean {' or '.join(map(repr, close))}?" if close else ""


def check_walkers(cfg: dict, space) -> None:
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


#: ``$NAME`` or ``${NAME}`` in a path of the config
_VARIABLE = re.compile(r"\$(?:(\w+)|\{(\w+)\})")


def expand_path(value: str, key: str) -> str:
    """``~`` and environment variables (``$SCRATCH``, ``${HOME}``) in a path of the config, as a
    shell would expand them; a variable that is not set is a ConfigError naming it and ``key``."""
    unset = sorted({a or b for a, b in _VARIABLE.findall(value) if (a or b) not in os.environ})
    if unset:
        raise ConfigError(f"'{key}' {value!r}: the environment variable {unset[0]} is not set (bayescal "
                          "expands $VARIABLES and ~ in the config's paths)")
    return os.path.expanduser(os.path.expandvars(value))


def check_output(cfg: dict, base: Path | None) -> None:
    """``run.output``: not empty, not a file; a relative path is relative to the config file's folder
    (like every path in the config), so a run does not depend on the working directory."""
    out = cfg["run"]["output"]
    if not out.strip():
        raise ConfigError("'run.output' must name the run directory, got an empty string (a relative "
                          "path is relative to the config file's folder)")
    path = Path(expand_path(out, "run.output"))
    if base is not None and not path.is_absolute():
        path = Path(os.path.normpath(base / path))
    if path.exists() and not path.is_dir():
        raise ConfigError(f"'run.output' {path} is a file; it must be a folder (new, or one bayescal "
                          "created)")
    cfg["run"]["output"] = str(path)
    if base is not None:  # stage keys hash paths under it relative to it: a moved project keeps its runs
        cfg["run"]["config_dir"] = str(base)


def truth_theta(cfg: dict, space):
    """Full parameter vector of the twin truth: defaults with ``observations.truth`` (unit cube,
    on each value's own scale: log-scaled values are uniform in log). With
    ``observations.truth_from_prior``, every value of ``parameters.free`` (else ``candidates``,
    else all) is first drawn uniformly on the unit cube -- its prior -- from ``twin_seed``, so a
    twin can check coverage as simulation-based calibration does; ``truth`` still overrides."""
    import numpy as np

    full = space.unfix()
    u = full.to_unit(space.all_default)
    obs = cfg["observations"]
    if obs.get("truth_from_prior"):
        names = cfg["parameters"]["free"] or cfg["parameters"]["candidates"]
        drawn = full.only(names).labels if names else full.labels
        idx = [space.all_labels.index(label) for label in drawn]
        u[idx] = np.random.default_rng([obs["twin_seed"], 7]).uniform(size=len(idx))
    for label, val in obs["truth"].items():
        u[space.all_labels.index(label)] = float(val)
    return full.from_unit(u)
