"""The pipeline context of ``bayescal run``: the config, the model, the run directory.

:class:`Pipeline` is what every stage function of the global route receives (the site and Dagon
routes subclass it); its :meth:`~Pipeline.run` hands its workflow -- a declared stage list,
:mod:`bayescal.workflows.catalog` -- to the engine (:mod:`bayescal.workflow`), which keys,
reuses, resumes and records the stages. The global route's stages:

``screen``        Morris screening (SALib) of the candidate parameters; keeps the top ``k``.
``optimize``      optional optimiser (GA, DFO-LS, CMA-ES, differential evolution) on the residual misfit.
``design``        Latin-hypercube ensemble through the runner; misfits and summary outputs.
``emulate``       GP emulator of the misfit (closed-form LOO) and an SVD emulator of the summaries.
``posterior``     Gaussian likelihood on the emulated summaries, emcee, sequential refinement.
``equifinality``  identifiability, correlations, PCA, distance-vs-score clouds, alternative sets.
``propagate``     posterior draws, defaults, optimum and alternatives through the runner; bands,
                  Table 3, GCB 2024 comparison.
``report``        figures and a self-contained HTML page.

Re-running a config reuses every stage whose declared inputs (config keys, input files' contents,
the stages it needs) are unchanged and reruns the others. The runner keeps finished model runs
of an interrupted stage, so a killed run loses nothing that was finished.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..run.cluster import ClusterError, check_run_config, make_executor
from ..workflow import Engine, PlannedStage, Workflow, registry, summary_table
from ..workflow.rundir import RunDir, StageRecord, write_json_atomic, write_text_atomic
from .config import ConfigError, truth_theta
from .validate import model_space

__all__ = ["Pipeline", "StageRecord"]


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


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

    #: the registered workflow this context runs unless one is given (:mod:`.workflows`)
    workflow_name = "global"

    def __init__(
        self,
        config: dict[str, Any],
        run_dir: str | Path | None = None,
        progress: bool = True,
        config_text: str = "",
        model=None,
        workflow: Workflow | None = None,
    ) -> None:
        self.config = config
        self.workflow = workflow if workflow is not None else registry.get(self.workflow_name)
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

    def model_runs(self) -> int | None:
        """Model runs made in this process so far; None with a process pool or Dask (the engine
        then counts the member files the stores wrote)."""
        return self._runs if self._serial else None

    @property
    def _serial(self) -> bool:
        """Members run in this process (known from ``[run]`` without starting a cluster)."""
        return check_run_config(self.config["run"]) == "serial"

    def simulator(self, theta: np.ndarray) -> xr.Dataset:
        """The model, counting runs."""
        self._count(np.atleast_2d(theta).shape[0])
        return self.model(theta)

    @property
    def executor(self):
        """Where the runner runs members: :func:`bayescal.run.cluster.make_executor` of ``[run]``
        (in this process, ``run.workers`` processes, a Dask scheduler, or SLURM jobs)."""
        if "executor" not in self._cache:
            try:
                self._cache["executor_handle"] = make_executor(self.config["run"])
            except ClusterError as err:
                raise ConfigError(str(err)) from None
            self._cache["executor"] = self._cache["executor_handle"].executor
        return self._cache["executor"]

    def close(self) -> None:
        """Close the Dask client and cancel SLURM jobs, if any."""
        self._cache.pop("executor", None)
        handle = self._cache.pop("executor_handle", None)
        if handle is not None:
            handle.close()

    @property
    def runner_simulator(self):
        """What the runner calls: :meth:`simulator` in this process; the model itself (picklable)
        for a process pool or Dask, whose runs are counted from the stores' member files."""
        return self.simulator if self._serial else self.model

    @property
    def full_space(self):
        return self.model.space

    def model_check(self, validation: bool = False, workdir: Path | None = None) -> dict[str, Any]:
        """One run of the model at its defaults (``bayescal check``): ``{"seconds": float}``;
        a run that fails there is a ConfigError naming the reason."""
        import time

        if "model_check" not in self._cache:
            t0 = time.perf_counter()
            ds = self.model(np.asarray(self.full_space.all_default, dtype=float)[None])
            seconds = time.perf_counter() - t0
            if "status" in ds and str(ds["status"].values[0]) != "done":
                raise ConfigError(f"the model fails at its defaults: {ds['reason'].values[0]}")
            self._cache["model_check"] = {"seconds": seconds}
        return self._cache["model_check"]

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
                from ..observations.products import DEFAULT_TWIN_PRODUCTS, ProductSpec, make_twin

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
        from ..observations.products import Observations
        from .site.config import read_gridded_products

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
        """The likelihood's observation operator (:class:`bayescal.operators.summaries.BiomeSummaries`)."""
        from ..operators.summaries import BiomeSummaries

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
    @property
    def stage_names(self) -> tuple[str, ...]:
        """This workflow's stages, in order."""
        return self.workflow.names

    @property
    def engine(self) -> Engine:
        """The workflow engine bound to this context."""
        if "engine" not in self._cache:
            self._cache["engine"] = Engine(self.workflow, self)
        return self._cache["engine"]

    def plan(self, stages: tuple[str, ...] | None = None) -> list[PlannedStage]:
        """What :meth:`run` would do with each stage (reuse, resume, rerun, run); writes nothing."""
        return self.engine.plan(stages)

    def run(self, stages: tuple[str, ...] | None = None) -> list[StageRecord]:
        """Run (or reuse) ``stages`` (default: every stage of the workflow) in order.

        Refuses (:class:`~bayescal.workflow.rundir.RunDirRefused`) a non-empty folder bayescal did not
        create, before writing anything. Returns what each stage did.
        """
        self.engine.claim()
        write_json_atomic(self.run_dir / "config.json", self.config)
        self.rundir.write_space(self.full_space)
        if self.config_text:
            write_text_atomic(self.run_dir / "config.toml", self.config_text)
        try:
            records = self.engine.run(None if stages is None else tuple(stages))
        finally:
            self.close()
        self.records.extend(records)
        return records

    def say(self, msg: str) -> None:
        """One line of progress (with ``progress=True``)."""
        if self.progress:
            print(msg, flush=True)

    def summary(self) -> str:
        """Per-stage table: status, wall time, peak memory, model runs."""
        return summary_table(self.records)

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
