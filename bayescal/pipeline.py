"""The whole calibration from one TOML file, stage by stage, resumable.

Stages (each writes ``<run_dir>/<stage>/`` and a ``stage.json`` with the hash of its inputs):

``screen``        Morris screening (SALib) of the candidate parameters; keeps the top ``k``.
``optimize``      optional optimiser (GA, DFO-LS, CMA-ES, differential evolution) on the residual misfit.
``design``        Latin-hypercube ensemble through the runner; misfits and summary outputs.
``emulate``       GP emulator of the misfit (closed-form LOO) and an SVD emulator of the summaries.
``posterior``     Gaussian likelihood on the emulated summaries, emcee, sequential refinement.
``equifinality``  identifiability, correlations, PCA, distance-vs-score clouds, alternative sets.
``propagate``     posterior draws, defaults, optimum and alternatives through the runner; bands,
                  Table 3, GCB 2024 comparison.
``report``        figures and a self-contained HTML page.

Re-running a config skips every stage whose inputs (its config sections and the stages before
it) are unchanged and reruns the first one that changed and everything after it. The runner keeps
finished model runs of an interrupted stage, so a killed run loses nothing that was finished.
"""

from __future__ import annotations

import copy
import hashlib
import json
import resource
import shutil
import sys
import time
import tomllib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["ConfigError", "Pipeline", "PipelineError", "STAGES", "load_config", "validate_config"]

STAGES = ("screen", "optimize", "design", "emulate", "posterior", "equifinality", "propagate", "report")

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


class PipelineError(RuntimeError):
    """A stage cannot go on (e.g. too few finished model runs); the message says what to change."""


class ConfigError(ValueError):
    """An invalid configuration; the message names the key."""


# --------------------------------------------------------------------------------- config
#: section -> key -> (type(s), default). ``None`` default with a type: optional.
SCHEMA: dict[str, dict[str, tuple[Any, Any]]] = {
    "run": {"name": (str, "bayescal"), "output": (str, "runs/bayescal"), "seed": (int, 0)},
    "model": {
        "n_cells": (int, 60),
        "grid_seed": (int, 3),
        "start": (int, 1990),
        "end": (int, 2022),
        "ramp_start": (int, 1985),
        "chunk_size": (int, 256),
        "parameters_file": (str, None),
    },
    "parameters": {"candidates": (list, None), "free": (list, None)},
    "observations": {
        "twin": (bool, True),
        "twin_seed": (int, 11),
        "truth": (dict, {}),
        "variables": (list, ["gpp", "lai", "hfls"]),
        "gcb_nbp": (bool, False),
        "gcb_years": (list, [1990, 2022]),
        "sigma_floor": (float, 0.03),
    },
    "screen": {"enabled": (bool, True), "trajectories": (int, 8), "top_k": (int, 10)},
    "optimize": {
        "method": (str, "none"),
        "max_evaluations": (int, 60),
        "pop_size": (int, 20),
        "n_generations": (int, 10),
    },
    "design": {"n_runs": (int, 100), "batch_size": (int, 32)},
    "emulator": {"variance_threshold": (float, 0.999), "n_restarts": (int, 0)},
    "posterior": {
        "n_steps": (int, 1500),
        "max_steps": (int, 20000),
        "n_walkers": (int, 0),
        "refine_rounds": (int, 2),
        "n_new": (int, 30),
        "left_out": (str, "marginalise"),
        "left_out_runs": (int, 32),
    },
    "equifinality": {"n_alternatives": (int, 3), "cloud_points": (int, 20000)},
    "propagate": {"n_draws": (int, 40), "table_years": (list, [2003, 2022])},
    "report": {"title": (str, "bayescal calibration report")},
}
_OPT_METHODS = ("none", "ga", "dfols", "cma_es", "differential_evolution")
_STAGE_SECTIONS = {
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
    m = cfg["model"]
    from .models.drivers import BIOMES
    from .models.drivers import PREINDUSTRIAL_YEAR as first_year

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
    if cfg["optimize"]["method"] not in _OPT_METHODS:
        raise ConfigError(
            f"'optimize.method' must be one of {', '.join(_OPT_METHODS)}, got {cfg['optimize']['method']!r}"
        )
    if not 0 < cfg["emulator"]["variance_threshold"] <= 1:
        raise ConfigError("'emulator.variance_threshold' must be in (0, 1]")
    obs = cfg["observations"]
    if not obs["twin"]:
        raise ConfigError(
            "'observations.twin' = false: gridded real products are not bundled; use twin products "
            "(with 'observations.gcb_nbp' = true for the real GCB 2024 NBP)"
        )
    for label, value in obs["truth"].items():
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
            raise ConfigError(
                f"'observations.truth.{label}' must be a unit-cube value in [0, 1], got {value!r}"
            )
    for section, key in (("observations", "gcb_years"), ("propagate", "table_years")):
        yrs = cfg[section][key]
        if len(yrs) != 2 or not all(isinstance(y, int) for y in yrs) or yrs[0] > yrs[1]:
            raise ConfigError(f"'{section}.{key}' must be [first, last] years, got {yrs!r}")
        if yrs[0] < m["start"] or yrs[1] > m["end"]:
            raise ConfigError(
                f"'{section}.{key}' {yrs} must lie within model.start-model.end ({m['start']}-{m['end']})"
            )
    from .models.landcarbon import OUTPUT_VARIABLES

    for v in obs["variables"]:
        if v not in OUTPUT_VARIABLES:
            raise ConfigError(
                f"'observations.variables': unknown variable {v!r}; known: {list(OUTPUT_VARIABLES)}"
            )
    try:
        space = _model_space(cfg)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - any problem of the user's parameter file, named
        raise ConfigError(
            f"'model.parameters_file' {m['parameters_file']}: {type(err).__name__}: {err}"
        ) from None
    known = set(space.all_labels) | set(space.names)
    for section, key in (("parameters", "candidates"), ("parameters", "free")):
        for name in cfg[section][key] or []:
            if name not in known:
                raise ConfigError(f"'{section}.{key}': unknown parameter {name!r}")
    for label in obs["truth"]:
        if label not in space.all_labels:
            raise ConfigError(f"'observations.truth': unknown parameter {label!r}")
    if not cfg["screen"]["enabled"] and not cfg["parameters"]["free"]:
        raise ConfigError("'parameters.free' is required when 'screen.enabled' = false")
    _check_walkers(cfg, space)
    return cfg


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


def _model_space(cfg: dict):
    from .models.landcarbon import default_parameter_space
    from .parameters import ParameterSpace

    path = cfg["model"]["parameters_file"]
    return ParameterSpace.from_toml(path) if path else default_parameter_space()


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


# ------------------------------------------------------------------------------- pipeline
def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


@dataclass
class StageRecord:
    name: str
    status: str  # "ran" | "reused"
    wall: float = 0.0
    peak_rss_gib: float = 0.0
    runs: int = 0
    warnings: list[str] = field(default_factory=list)


class Pipeline:
    """Runs the stages of a validated config in ``run_dir``.

    Parameters
    ----------
    config : dict
        From :func:`load_config` / :func:`validate_config`.
    run_dir : path, optional
        Default ``config["run"]["output"]``.
    progress : bool
        Progress bars and one line per stage.
    config_text : str
        The TOML text, kept in the run directory and the report.
    model : callable, optional
        Your own simulator instead of the embedded model configured in ``[model]``: a
        ``LandCarbonModel``-compatible object (``space`` attribute; ``model(theta)`` returning
        the observed variables on (member, cell, time) with ``area`` and ``biome`` cell
        coordinates, and ``<variable>_global`` series on (member, year)); see docs/own-model.md.
    """

    def __init__(
        self,
        config: dict[str, Any],
        run_dir: str | Path | None = None,
        progress: bool = True,
        config_text: str = "",
        model=None,
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir if run_dir is not None else config["run"]["output"])
        self.progress = progress
        self.config_text = config_text
        self.records: list[StageRecord] = []
        self._model = model
        self._cache: dict[str, Any] = {}
        self._runs = 0

    # ---------------------------------------------------------------- shared objects
    @property
    def seed(self) -> int:
        return int(self.config["run"]["seed"])

    @property
    def model(self):
        if self._model is None:
            from .models import LandCarbonModel, make_drivers, make_grid

            m = self.config["model"]
            grid = make_grid(n_cells=m["n_cells"], seed=m["grid_seed"])
            drivers = make_drivers(
                grid, start=m["start"], end=m["end"], ramp_start=m["ramp_start"], seed=m["grid_seed"]
            )
            space = _model_space(self.config) if m["parameters_file"] else None
            self._model = LandCarbonModel(grid=grid, drivers=drivers, space=space, chunk_size=m["chunk_size"])
        return self._model

    def _count(self, n: int) -> None:
        self._runs += int(n)

    def simulator(self, theta: np.ndarray) -> xr.Dataset:
        """The model, counting runs."""
        self._count(np.atleast_2d(theta).shape[0])
        return self.model(theta)

    @property
    def full_space(self):
        return self.model.space

    def truth_theta(self) -> np.ndarray:
        space = self.full_space
        theta = space.all_default.copy()
        for label, val in self.config["observations"]["truth"].items():
            j = space.all_labels.index(label)
            lo, hi = space.all_lower[j], space.all_upper[j]
            theta[j] = lo + float(val) * (hi - lo)
        return theta

    def twin(self):
        """Twin observations and the noise-free truth run (cached on disk in the run directory)."""
        if "twin" not in self._cache:
            from .observations import DEFAULT_TWIN_PRODUCTS, ProductSpec, make_twin

            variables = self.config["observations"]["variables"]
            specs = [s for s in DEFAULT_TWIN_PRODUCTS if s.variable in variables]
            missing = set(variables) - {s.variable for s in specs}
            specs += [ProductSpec(v, f"{v.upper()}-twin") for v in sorted(missing)]
            obs, truth = make_twin(
                self.model, self.truth_theta(), specs, seed=self.config["observations"]["twin_seed"]
            )
            self._cache["twin"] = (obs, truth)
        return self._cache["twin"]

    def space(self):
        """The calibrated space (after screening)."""
        sel = json.loads((self.run_dir / "screen" / "selected.json").read_text())["parameters"]
        return self.full_space.only(sel)

    # --------------------------------------------------------------- summaries/likelihood
    def summaries(self, ds: xr.Dataset) -> np.ndarray:
        """Log regional means of the observed variables (+ period-mean NBP blocks with GCB)."""
        from .observations import regional_means

        y = regional_means(ds, self.config["observations"]["variables"]).values
        if self.config["observations"]["gcb_nbp"]:
            y = np.concatenate([y, self._nbp_blocks(ds["nbp_global"])], axis=-1)
        return y

    def _blocks(self) -> list[tuple[int, int]]:
        y0, y1 = self.config["observations"]["gcb_years"]
        edges = list(range(y0, y1 + 1, 10))
        return [(a, min(a + 9, y1)) for a in edges]

    def _nbp_blocks(self, nbp: xr.DataArray) -> np.ndarray:
        return np.stack([nbp.sel(year=slice(a, b)).mean("year").values for a, b in self._blocks()], axis=-1)

    def observed(self) -> tuple[np.ndarray, np.ndarray]:
        from .gcb import load_gcb2024
        from .observations import observed_regional_means

        obs, truth = self.twin()
        o, s = observed_regional_means(
            obs,
            self.config["observations"]["variables"],
            truth["biome"],
            truth["area"],
            floor=self.config["observations"]["sigma_floor"],
        )
        o, s = o.values, s.values
        if self.config["observations"]["gcb_nbp"]:
            gcb = load_gcb2024()
            ob = self._nbp_blocks(gcb["nbp"])
            sb = np.array([float(gcb["nbp_sigma"].sel(year=slice(a, b)).mean()) for a, b in self._blocks()])
            o, s = np.concatenate([o, ob]), np.concatenate([s, sb])
        return o, s

    def run_dataset_vars(self) -> list[str]:
        return list(self.config["observations"]["variables"]) + ["nbp_global"]

    # ---------------------------------------------------------------------- driving
    def _stage_key(self, stage: str, upstream: str) -> str:
        sections = {s: self.config[s] for s in _STAGE_SECTIONS[stage]}
        if stage == "screen":
            sections["run"] = {"seed": self.seed}
        return _hash({"stage": stage, "sections": sections, "upstream": upstream})

    def run(self, stages: tuple[str, ...] = STAGES) -> list[StageRecord]:
        """Run (or reuse) every stage in order; returns what each did."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(self.config, indent=1, default=str))
        if self.config_text:
            (self.run_dir / "config.toml").write_text(self.config_text)
        upstream = ""
        for stage in stages:
            key = self._stage_key(stage, upstream)
            marker = self.run_dir / stage / "stage.json"
            if marker.exists() and json.loads(marker.read_text()).get("key") == key:
                info = json.loads(marker.read_text())
                rec = StageRecord(
                    stage,
                    "reused",
                    info["wall"],
                    info["peak_rss_gib"],
                    info["runs"],
                    info.get("warnings", []),
                )
                self._say(f"[{stage}] up to date (inputs unchanged) - reused")
            else:
                stage_dir = self.run_dir / stage
                started = stage_dir / "started.json"
                if stage_dir.exists() and not (
                    started.exists() and json.loads(started.read_text()).get("key") == key
                ):
                    # results of other inputs: start the stage afresh (an interrupted stage with
                    # the same inputs keeps its finished runs and resumes)
                    shutil.rmtree(stage_dir)
                stage_dir.mkdir(parents=True, exist_ok=True)
                started.write_text(json.dumps({"key": key}))
                marker.unlink(missing_ok=True)
                self._say(f"[{stage}] {STAGE_HELP[stage]}")
                t0, runs0 = time.perf_counter(), self._runs
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    getattr(self, f"_stage_{stage}")()
                msgs = sorted(
                    {
                        f"{w.category.__name__}: {w.message}"
                        for w in caught
                        if not issubclass(w.category, DeprecationWarning | FutureWarning)
                    }
                )
                rec = StageRecord(
                    stage, "ran", time.perf_counter() - t0, _peak_rss_gib(), self._runs - runs0, msgs
                )
                marker.write_text(
                    json.dumps(
                        {
                            "key": key,
                            "wall": rec.wall,
                            "peak_rss_gib": rec.peak_rss_gib,
                            "runs": rec.runs,
                            "warnings": msgs,
                            "finished": time.time(),
                        }
                    )
                )
                self._say(
                    f"[{stage}] done in {rec.wall:.1f} s, {rec.runs} model runs"
                    + (f", {len(msgs)} warnings" if msgs else "")
                )
            self.records.append(rec)
            upstream = key
        return self.records

    def _say(self, msg: str) -> None:
        if self.progress:
            print(msg, flush=True)

    def summary(self) -> str:
        """Per-stage table: status, wall time, peak memory, model runs."""
        lines = [f"{'stage':13s} {'status':7s} {'wall s':>8s} {'peak GiB':>9s} {'runs':>6s}"]
        for r in self.records:
            lines.append(f"{r.name:13s} {r.status:7s} {r.wall:8.1f} {r.peak_rss_gib:9.2f} {r.runs:6d}")
        lines.append(
            f"{'total':13s} {'':7s} {sum(r.wall for r in self.records):8.1f} "
            f"{max((r.peak_rss_gib for r in self.records), default=0):9.2f} "
            f"{sum(r.runs for r in self.records):6d}"
        )
        return "\n".join(lines)

    # ---------------------------------------------------------------------- stages
    def _stage_screen(self) -> None:
        from .sensitivity import analyze, evaluate, sample, screen

        cfg = self.config
        out = self.run_dir / "screen"
        space = self.full_space
        cands = cfg["parameters"]["candidates"]
        if cands:
            space = space.only(cands)
        if cfg["screen"]["enabled"]:
            obs, _ = self.twin()
            from .scores import residuals

            targets: dict[str, Callable] = {
                "misfit": lambda ds: (residuals(ds, obs) ** 2).sum("residual"),
                "gpp": lambda ds: ds.gpp_global.mean("year"),
                "nbp": lambda ds: ds.nbp_global.mean("year"),
                **self._summary_targets(),
            }
            design = sample(space, "morris", cfg["screen"]["trajectories"], seed=self.seed)
            res = evaluate(
                self.simulator,
                design,
                targets,
                store=out / "morris",
                batch_size=cfg["design"]["batch_size"],
                progress=self.progress,
                keep=[*self.run_dataset_vars(), "gpp_global"],
            )
            idx = analyze(space, design, res, on_failure="drop")
            idx.to_netcdf(out / "indices.nc")
            free = set(cfg["parameters"]["free"] or [])
            # what the observations can inform: the largest Morris mu* of any likelihood summary,
            # in units of that summary's sigma (not the misfit's mu* at the defaults, which
            # dropped values the truth moves)
            info = [t for t in idx["target"].values if str(t).startswith("summary:")]
            chosen = screen(idx, threshold=None, top_k=cfg["screen"]["top_k"], targets=info,
                            normalise=False)
            labels = [
                lab for lab in space.labels if lab in chosen or lab in free or lab.partition("[")[0] in free
            ]
        else:
            labels = self.full_space.only(cfg["parameters"]["free"]).labels
        (out / "selected.json").write_text(json.dumps({"parameters": labels}, indent=1))
        self._say(f"  calibrating {len(labels)} parameters: {', '.join(labels)}")

    def _summary_targets(self) -> dict[str, Callable]:
        """One screening target per likelihood summary, in units of its sigma (computed once)."""
        observed, sigma = self.observed()
        cache: dict[int, np.ndarray] = {}

        def target(k: int) -> Callable:
            def f(ds: xr.Dataset) -> xr.DataArray:
                if id(ds) not in cache:
                    cache.clear()
                    cache[id(ds)] = self.summaries(ds) / sigma
                return xr.DataArray(cache[id(ds)][:, k], dims="member")

            return f

        return {f"summary:{k}": target(k) for k in range(observed.size)}

    def _objective(self, workdir: Path):
        from .optimize import ModelObjective

        obs, _ = self.twin()
        return ModelObjective(
            self.simulator, self.space(), obs, workdir=workdir, batch_size=self.config["design"]["batch_size"]
        )

    def _stage_optimize(self) -> None:
        from . import optimize as opt

        c = self.config["optimize"]
        out = self.run_dir / "optimize"
        if c["method"] == "none":
            (out / "none.json").write_text("{}")
            return
        space, obj = self.space(), self._objective(out / "runs")
        if c["method"] == "ga":
            res = opt.genetic_algorithm(
                obj,
                space,
                pop_size=c["pop_size"],
                n_generations=c["n_generations"],
                seed=self.seed,
                checkpoint=out / "ga_checkpoint.json",
            )
        elif c["method"] == "dfols":
            res = opt.dfols(obj, space, max_evaluations=c["max_evaluations"], seed=self.seed)
        elif c["method"] == "cma_es":
            res = opt.cma_es(obj, space, max_evaluations=c["max_evaluations"], seed=self.seed)
        else:
            res = opt.differential_evolution(
                obj,
                space,
                pop_size=max(1, c["pop_size"] // space.n_free),
                max_generations=c["n_generations"],
                seed=self.seed,
            )
        res.history.to_netcdf(out / "history.nc")
        self._say(f"  {c['method']}: best misfit {res.fun:.4g} after {res.n_evaluations} runs")

    def _stage_design(self) -> None:
        from .design import latin_hypercube
        from .ensemble import EnsembleStore, run_ensemble
        from .scores import residuals

        c = self.config["design"]
        out = self.run_dir / "design"
        space = self.space()
        design = latin_hypercube(space, c["n_runs"], seed=self.seed)
        run_ensemble(
            self.simulator,
            space.to_dataarray(space.expand(design.values), full=True),
            out / "ensemble",
            batch_size=c["batch_size"],
            keep=self.run_dataset_vars(),
            progress=self.progress,
        )
        ens = EnsembleStore(out / "ensemble").load()
        ok = ens["status"].values == "done"
        obs, _ = self.twin()
        u = space.to_unit(design.values)
        sub = ens.isel(member=np.flatnonzero(ok))
        misfit = np.full(len(u), np.nan)
        misfit[ok] = (residuals(sub, obs) ** 2).sum("residual").values
        y_ok = self.summaries(sub)
        Y = np.full((len(u), y_ok.shape[-1]), np.nan)
        Y[ok] = y_ok
        xr.Dataset(
            {
                "u": (("member", "parameter"), u),
                "misfit": ("member", misfit),
                "summaries": (("member", "summary"), Y),
                "ok": ("member", ok),
            },
            coords={"parameter": space.labels},
        ).to_netcdf(out / "training.nc")
        self._say(f"  {ok.sum()} of {len(u)} runs finished; best misfit {np.nanmin(misfit):.4g}")

    def _stored_summaries(self, space, points: np.ndarray, store: Path) -> np.ndarray:
        """Summaries of unit-cube points run through the runner's store (NaN rows: failed)."""
        from .ensemble import EnsembleStore, run_ensemble

        run_ensemble(self.simulator, space.to_dataarray(space.expand(space.from_unit(points)), full=True),
                     store, batch_size=self.config["design"]["batch_size"], keep=self.run_dataset_vars(),
                     progress=False)
        ens = EnsembleStore(store).load()
        done = ens["status"].values == "done"
        y = np.full((points.shape[0], self.observed()[0].size), np.nan)
        if done.any():
            y[done] = self.summaries(ens.isel(member=np.flatnonzero(done)))
        return y

    def left_out_space(self):
        """The candidate values that are not calibrated (free), everything else fixed."""
        cands = self.config["parameters"]["candidates"]
        full = self.full_space.only(cands) if cands else self.full_space
        calibrated = set(self.space().labels)
        return self.full_space.only([lab for lab in full.labels if lab not in calibrated])

    def _left_out_spread(self, store: Path) -> np.ndarray:
        """Spread of the summaries over the left-out values' prior (Latin hypercube, runner store)."""
        from .design import latin_hypercube
        from .ensemble import EnsembleStore, run_ensemble

        n = self.config["posterior"]["left_out_runs"]
        n_obs = self.observed()[0].size
        left = self.left_out_space()
        if left.n_free == 0:
            return np.zeros(n_obs)
        design = latin_hypercube(left, n, seed=self.seed + 1)
        run_ensemble(self.simulator, left.to_dataarray(left.expand(design.values), full=True), store,
                     batch_size=self.config["design"]["batch_size"], keep=self.run_dataset_vars(),
                     progress=self.progress)
        ens = EnsembleStore(store).load()
        done = np.flatnonzero(ens["status"].values == "done")
        if done.size < 8:
            raise PipelineError(f"only {done.size} of {n} left-out runs finished in {store}; need >= 8 "
                                "to estimate their spread (or set posterior.left_out = 'fix')")
        sd = self.summaries(ens.isel(member=done)).std(axis=0, ddof=1)
        self._say(f"  {left.n_free} values left out of the calibration; over their prior the summaries "
                  f"spread by a median {np.median(sd / self.observed()[1]):.2f} sigma ({done.size} runs)")
        return sd

    def training(self) -> xr.Dataset:
        """The design runs: unit-cube points, misfit, summaries and which finished."""
        tr = xr.load_dataset(self.run_dir / "design" / "training.nc")
        return tr

    def _stage_emulate(self) -> None:
        from threadpoolctl import threadpool_limits

        from .emulators import GPEmulator

        out = self.run_dir / "emulate"
        tr = self.training()
        ok = tr["ok"].values
        u = tr["u"].values[ok]
        logm = np.log(tr["misfit"].values[ok])
        hist = self.run_dir / "optimize" / "history.nc"
        if hist.exists():
            h = xr.load_dataset(hist)
            good = (h["status"].values == "done") & (h["misfit"].values > 0)
            u = np.vstack([u, h["u"].values[good]])
            logm = np.concatenate([logm, np.log(h["misfit"].values[good])])
            u, first = np.unique(u, axis=0, return_index=True)
            logm = logm[first]
        X = xr.DataArray(u, dims=("member", "parameter"), coords={"parameter": self.space().labels})
        with threadpool_limits(1):
            gp = GPEmulator(n_restarts=self.config["emulator"]["n_restarts"], random_state=self.seed).fit(
                X, logm
            )
        gp.save(out / "misfit_emulator.nc")
        loo = gp.loo()
        loo.to_netcdf(out / "misfit_loo.nc")
        self._say(
            f"  log-misfit GP on {len(u)} runs: LOO R2 {loo.attrs['r2']:.3f}, "
            f"95 % coverage {loo.attrs['coverage_95']:.2f}"
        )

    def _stage_posterior(self) -> None:
        from .emulators import GPEmulator, SVDEmulator
        from .posterior import GaussianLikelihood, refine

        c = self.config["posterior"]
        out = self.run_dir / "posterior"
        space = self.space()
        tr = self.training()
        ok = tr["ok"].values
        observed, sigma = self.observed()
        discrepancy = 0.0
        if c["left_out"] == "marginalise":
            discrepancy = self._left_out_spread(out / "left_out")
        xr.Dataset(
            {"left_out_sd": ("summary", np.broadcast_to(discrepancy, observed.shape)),
             "sigma": ("summary", sigma)},
            attrs={"left_out": c["left_out"], "n_left_out": self.left_out_space().n_free,
                   "description": "left_out_sd: sd of each summary over the prior of the values left "
                   "out of the calibration (calibrated values at their defaults), added to the "
                   "likelihood as discrepancy; zero with left_out = 'fix'"},
        ).to_netcdf(out / "left_out.nc")

        rounds = iter(range(10**6))

        def simulate(points: np.ndarray) -> np.ndarray:
            # through the runner's store, one per round: refine is seeded, so a resumed stage
            # asks for the same points and finds the finished runs there
            return self._stored_summaries(space, points, out / "refine" / f"round{next(rounds)}")

        emulator = SVDEmulator(
            variance_threshold=self.config["emulator"]["variance_threshold"],
            estimator=GPEmulator(n_restarts=0, random_state=self.seed),
            random_state=self.seed,
            residual_sd=0.2 * np.asarray(sigma),  # adds at most 4 % to sigma^2
        )
        res = refine(
            simulate,
            emulator,
            tr["u"].values[ok],
            tr["summaries"].values[ok],
            lambda e: GaussianLikelihood(e, observed, sigma, discrepancy=discrepancy, space=None),
            space,
            n_new=c["n_new"],
            max_rounds=c["refine_rounds"],
            min_steps=c["n_steps"],
            max_steps=c["max_steps"],
            n_walkers=c["n_walkers"] or None,
            seed=self.seed,
            progress=False,
        )
        res.idata.to_netcdf(str(out / "posterior.nc"))
        res.emulator.save(out / "output_emulator.nc")
        res.history.to_netcdf(out / "refinement.nc")
        xr.Dataset(
            {"X": (("member", "parameter"), res.X), "Y": (("member", "summary"), res.Y)},
            coords={"parameter": space.labels},
        ).to_netcdf(out / "training.nc")
        self._say(f"  {res.history.sizes.get('round', 0)} refinement rounds, converged: {res.converged}")

    def posterior_u(self) -> xr.DataArray:
        import arviz as az

        from .posterior import unit_samples

        idata = az.from_netcdf(str(self.run_dir / "posterior" / "posterior.nc"))
        return unit_samples(idata, self.space())

    def misfit_emulator(self):
        from .emulators import load_emulator

        return load_emulator(self.run_dir / "emulate" / "misfit_emulator.nc")

    def optimum_u(self) -> np.ndarray:
        """The optimiser's best point, else the best run of the design and refinement."""
        hist = self.run_dir / "optimize" / "history.nc"
        if hist.exists():
            h = xr.load_dataset(hist)
            return h["u"].values[int(np.nanargmin(h["misfit"].values))]
        tr = self.training()
        return tr["u"].values[int(np.nanargmin(tr["misfit"].values))]

    def _stage_equifinality(self) -> None:
        from .equifinality import alternatives, correlation, distance_score_cloud, identifiability, pca
        from .posterior import Priors

        c = self.config["equifinality"]
        out = self.run_dir / "equifinality"
        space = self.space()
        post = self.posterior_u()
        identifiability(post, Priors(space).sd()).to_netcdf(out / "identifiability.nc")
        correlation(post).to_netcdf(out / "correlation.nc")
        pca(post, variance=0.9).to_netcdf(out / "pca.nc")
        gp = self.misfit_emulator()
        best = self.optimum_u()
        n = c["cloud_points"]
        glob = distance_score_cloud(gp, best, n=n, seed=self.seed)
        loc = distance_score_cloud(gp, best, n=n, local=0.1, seed=self.seed)
        glob.to_netcdf(out / "cloud_global.nc")
        loc.to_netcdf(out / "cloud_local.nc")
        pool = np.vstack([post.values[:: max(1, post.sizes["sample"] // 4000)], best[None]])
        alt = alternatives(pool, gp.predict(pool), k=c["n_alternatives"] + 1)
        # the first alternative is the best of the pool; keep the others as alternatives to the optimum
        alt = alt.isel(alternative=slice(1, None)).assign_coords(parameter=space.labels)
        alt.to_netcdf(out / "alternatives.nc")
        self._say(
            f"  distance-score Spearman: global {glob.attrs['spearman']:.2f}, "
            f"local {loc.attrs['spearman']:.2f}; {alt.sizes['alternative']} alternative sets"
        )

    def _stage_propagate(self) -> None:
        from .gcb import load_gcb2024
        from .propagate import BUDGET_VARIABLES, bands, budget_table, coverage, gcb_comparison, propagate
        from .propagate import spread_decomposition as spread

        c = self.config["propagate"]
        out = self.run_dir / "propagate"
        space = self.space()
        post = self.posterior_u().values
        rng = np.random.default_rng(self.seed)
        draws = post[rng.choice(len(post), size=min(c["n_draws"], len(post)), replace=False)]
        alt = xr.load_dataset(self.run_dir / "equifinality" / "alternatives.nc")["u"].values
        sets = {
            "posterior": draws,
            "default": space.to_unit(space.default)[None],
            "optimised": self.optimum_u()[None],
            "alternative": alt,
        }
        ens = propagate(
            self.simulator,
            space,
            sets,
            out / "ensemble",
            variables=[*BUDGET_VARIABLES, "gpp"],
            batch_size=self.config["design"]["batch_size"],
            progress=self.progress,
        )
        b = bands(ens)
        b.to_netcdf(out / "bands.nc")
        y0, y1 = c["table_years"]
        table = budget_table(ens, (y0, y1))
        table.to_netcdf(out / "table3.nc")
        _table_frame(table).to_csv(out / "table3.csv")
        _, truth = self.twin()
        cov = {v: coverage(b[v], truth[v]) for v in ("gpp_global", "nbp_global")}
        gcb = load_gcb2024()
        m = self.config["model"]
        comp = gcb_comparison(ens, years=(max(1960, m["start"]), m["end"]), gcb=gcb)
        comp.to_netcdf(out / "gcb_comparison.nc")
        obs, _ = self.twin()
        gpp_sd = _product_spread_global(obs, truth)
        sd = spread(ens, {"nbp_global": gcb["nbp_sigma"], "gpp_global": gpp_sd})
        sd.to_netcdf(out / "spread.nc")
        keep = ["gpp", *BUDGET_VARIABLES]
        ens[keep + ["u", "status"]].drop_vars("theta", errors="ignore").to_netcdf(out / "outputs.nc")
        (out / "summary.json").write_text(
            json.dumps(
                {
                    "truth_coverage": cov,
                    "parameter_coverage": self._parameter_coverage(post),
                    "gcb_coverage_band": comp.attrs["coverage_band"],
                    "gcb_median_chi2_per_year": comp.attrs["median_chi2_per_year_posterior"],
                    "n_draws": int(b.attrs["n_draws"]),
                },
                indent=1,
            )
        )
        self._say(
            f"  truth inside the 90 % band: GPP {cov['gpp_global']:.0%}, NBP {cov['nbp_global']:.0%} "
            f"of years; GCB NBP inside band+sigma: {comp.attrs['coverage_band']:.0%}"
        )

    def _parameter_coverage(self, post_u: np.ndarray) -> dict[str, Any]:
        """Twin truth against the 90 % posterior interval of each calibrated value.

        Also lists the values the twin truth moves that are not calibrated: held at their
        defaults they make the calibrated values compensate, which the coverage then shows.
        """
        space = self.space()
        truth_u = space.to_unit(space.reduce(self.truth_theta()))
        q05, q95 = np.quantile(post_u, [0.05, 0.95], axis=0)
        inside = (q05 <= truth_u) & (truth_u <= q95)
        moved = list(self.config["observations"]["truth"])
        return {
            "inside_90": {lab: bool(v) for lab, v in zip(space.labels, inside, strict=True)},
            "fraction_inside_90": float(inside.mean()),
            "outside_90": [lab for lab, v in zip(space.labels, inside, strict=True) if not v],
            "truth_moved_left_out": [lab for lab in moved if lab not in space.labels],
        }

    def _stage_report(self) -> None:
        from .report import write_report

        path = write_report(self)
        self._say(f"  report: {path}")


def _table_frame(table: xr.Dataset):

    df = table["mean"].to_pandas()
    if "difference" in table:
        df.loc["optimised - default"] = table["difference"].to_pandas()
        df.loc["optimised - default (%)"] = table["difference_percent"].to_pandas()
    df.columns = [f"{v} ({u})" for v, u in zip(table["variable"].values, table["units"].values, strict=True)]
    return df


def _product_spread_global(obs, truth: xr.Dataset) -> float:
    """Observational sigma of global GPP: sd of the global means of the GPP products (PgC yr-1)."""
    area = truth["area"]
    vals = []
    for p in obs["gpp"]:
        flux = (p.data * area.sel(cell=p.data["cell"])).sum("cell", skipna=True)  # kg s-1
        vals.append(float(flux.mean("time")) * 86400 * 365.25 / 1e12)
    return float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan")


def main_stage_names() -> str:
    return "\n".join(f"  {s:13s} {STAGE_HELP[s]}" for s in STAGES)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the 'bayescal' command")
