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

import hashlib
import json
import resource
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..rundir import RunDir, StageRecord
from .config import STAGE_HELP, STAGE_SECTIONS, STAGES, model_space, truth_theta
from .stages import STAGE_FUNCTIONS

__all__ = ["Pipeline", "StageRecord"]


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _files_since(stage_dir: Path, since: float) -> int:
    """Member files the runner's stores under ``stage_dir`` wrote since ``since`` (epoch s)."""
    return sum(1 for f in stage_dir.rglob("member_*.nc") if f.stat().st_mtime >= since)


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


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

    #: the stages this pipeline runs, their functions, the config sections each depends on
    stage_names: tuple[str, ...] = STAGES
    stage_functions = STAGE_FUNCTIONS
    stage_sections = STAGE_SECTIONS
    stage_help = STAGE_HELP

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
        self.rundir = RunDir(self.run_dir)
        self._cache: dict[str, Any] = {}
        self._runs = 0

    # ---------------------------------------------------------------- shared objects
    @property
    def seed(self) -> int:
        return int(self.config["run"]["seed"])

    @property
    def model(self):
        if self._model is None:
            from ..models import LandCarbonModel, make_drivers, make_grid

            m = self.config["model"]
            grid = make_grid(n_cells=m["n_cells"], seed=m["grid_seed"])
            drivers = make_drivers(
                grid, start=m["start"], end=m["end"], ramp_start=m["ramp_start"], seed=m["grid_seed"]
            )
            space = model_space(self.config) if m["parameters_file"] else None
            self._model = LandCarbonModel(grid=grid, drivers=drivers, space=space, chunk_size=m["chunk_size"])
        return self._model

    def _count(self, n: int) -> None:
        self._runs += int(n)

    def simulator(self, theta: np.ndarray) -> xr.Dataset:
        """The model, counting runs."""
        self._count(np.atleast_2d(theta).shape[0])
        return self.model(theta)

    @property
    def executor(self):
        """Where the runner runs members: None (in this process), a pool of ``run.workers``
        processes, or the Dask cluster at ``run.scheduler``."""
        if "executor" not in self._cache:
            r = self.config["run"]
            if r.get("scheduler"):
                from distributed import Client

                self._cache["executor"] = Client(r["scheduler"])
            else:
                self._cache["executor"] = r.get("workers") or None
        return self._cache["executor"]

    @property
    def runner_simulator(self):
        """What the runner calls: :meth:`simulator` in this process; the model itself (picklable)
        for a process pool or Dask, whose runs are counted from the stores' member files."""
        return self.simulator if self.executor is None else self.model

    @property
    def full_space(self):
        return self.model.space

    def truth_theta(self) -> np.ndarray:
        """Full parameter vector of the twin truth (defaults with ``observations.truth`` applied)."""
        return truth_theta(self.config, self.full_space)

    def twin(self):
        """Twin observations and the noise-free truth run, written to ``twin/`` in the run
        directory the first time and read from there afterwards (while the inputs that made them,
        ``[model]`` and ``[observations]``, are unchanged)."""
        if "twin" not in self._cache:
            key = _hash({k: self.config[k] for k in ("model", "observations")})
            found = self.rundir.twin(key)
            if found is None and not self.config["observations"]["twin"]:
                found = self._file_products()
                self.rundir.write_twin(*found, key=key)
            elif found is None:
                from ..observations import DEFAULT_TWIN_PRODUCTS, ProductSpec, make_twin

                variables = self.config["observations"]["variables"]
                specs = [s for s in DEFAULT_TWIN_PRODUCTS if s.variable in variables]
                missing = set(variables) - {s.variable for s in specs}
                specs += [ProductSpec(v, f"{v.upper()}-twin") for v in sorted(missing)]
                found = make_twin(
                    self.model, self.truth_theta(), specs, seed=self.config["observations"]["twin_seed"]
                )
                self.rundir.write_twin(*found, key=key)
            self._cache["twin"] = found
        return self._cache["twin"]

    def _file_products(self):
        """Observations from the config's CF-netCDF files on the model's cells and months, and the
        model's grid in the truth's place (real data have no truth; the grid gives areas, biomes)."""
        from ..observations import Observations
        from .site_config import read_gridded_products

        grid = self.model.grid
        months = self.model.drivers["time"].sel(time=slice(str(self.config["model"]["start"]), None)).values
        cells = grid.assign_coords(cell=grid["cell"].values)
        return Observations(read_gridded_products(self.config, cells, months)), grid

    def space(self):
        """The calibrated space (after screening)."""
        return self.full_space.only(self.rundir.selected())

    # --------------------------------------------------------------- summaries/likelihood
    @property
    def summary_operator(self):
        """The likelihood's observation operator (:class:`bayescal.summaries.BiomeSummaries`)."""
        from ..summaries import BiomeSummaries

        o = self.config["observations"]
        years = tuple(o["gcb_years"]) if o["gcb_nbp"] else None
        return BiomeSummaries(o["variables"], o["sigma_floor"], years, o["gcb_errors"], o["gcb_block"])

    def summaries(self, ds: xr.Dataset) -> np.ndarray:
        """The likelihood's summaries of model output, (member, summary).

        A member with a summary that is not finite (the log mean of a biome whose output
        collapsed to zero, say) gets a row of NaN: the stages count it as failed.
        """
        y = self.summary_operator.of_model(ds)
        y[~np.isfinite(y).all(axis=-1)] = np.nan
        return y

    def observed(self) -> tuple[np.ndarray, np.ndarray]:
        """The observed summaries and their sigma (computed once per pipeline)."""
        if "observed" not in self._cache:
            obs, truth = self.twin()
            self._cache["observed"] = self.summary_operator.of_observations(obs, truth)
        return self._cache["observed"]

    def run_dataset_vars(self) -> list[str]:
        return list(self.config["observations"]["variables"]) + ["nbp_global"]

    # ---------------------------------------------------------------------- driving
    def _stage_key(self, stage: str, upstream: str) -> str:
        sections = {s: self.config[s] for s in self.stage_sections[stage]}
        if stage == "screen":
            sections["run"] = {"seed": self.seed}
        return _hash({"stage": stage, "sections": sections, "upstream": upstream})

    def run(self, stages: tuple[str, ...] = STAGES) -> list[StageRecord]:
        """Run (or reuse) every stage in order; returns what each did."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(self.config, indent=1, default=str))
        self.rundir.write_space(self.full_space)
        if self.config_text:
            (self.run_dir / "config.toml").write_text(self.config_text)
        upstream = ""
        for stage in [s for s in stages if s in self.stage_names]:
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
                self.say(f"[{stage}] up to date (inputs unchanged) - reused")
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
                self.say(f"[{stage}] {self.stage_help[stage]}")
                t0, runs0, started_at = time.perf_counter(), self._runs, time.time()
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    self.stage_functions[stage](self)
                msgs = sorted(
                    {
                        f"{w.category.__name__}: {w.message}"
                        for w in caught
                        if not issubclass(w.category, DeprecationWarning | FutureWarning)
                    }
                )
                runs = self._runs - runs0 if self.executor is None else _files_since(stage_dir, started_at)
                rec = StageRecord(stage, "ran", time.perf_counter() - t0, _peak_rss_gib(), runs, msgs)
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
                self.say(
                    f"[{stage}] done in {rec.wall:.1f} s, {rec.runs} model runs"
                    + (f", {len(msgs)} warnings" if msgs else "")
                )
            self.records.append(rec)
            upstream = key
        return self.records

    def say(self, msg: str) -> None:
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
    def left_out_space(self):
        """The candidate values that are not calibrated (free), everything else fixed."""
        cands = self.config["parameters"]["candidates"]
        full = self.full_space.only(cands) if cands else self.full_space
        calibrated = set(self.space().labels)
        return self.full_space.only([lab for lab in full.labels if lab not in calibrated])

    def training(self) -> xr.Dataset:
        """The design runs: unit-cube points, misfit, summaries and which finished."""
        return self.rundir.training()

    def posterior_u(self) -> xr.DataArray:
        """Posterior samples of the calibrated values, unit cube, (sample, parameter)."""
        return self.rundir.posterior_u(self.space())

    def misfit_emulator(self):
        from ..emulators import load_emulator

        return load_emulator(self.run_dir / "emulate" / "misfit_emulator.nc")

    def optimum_u(self) -> np.ndarray:
        """The optimiser's best point, else the best run of the design."""
        return self.rundir.optimum_u()
