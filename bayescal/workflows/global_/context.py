"""The global (Seiler) workflow's context: the embedded model, the twin, the likelihood's summaries.

Stages (:mod:`.workflow` declares what each reads, needs and writes):

``screen``        Morris screening (SALib) of the candidate parameters; keeps the top ``k``.
``optimize``      optional optimiser (GA, DFO-LS, CMA-ES, differential evolution) on the residual misfit.
``design``        Latin-hypercube ensemble through the runner; misfits and summary outputs.
``emulate``       GP emulator of the misfit (closed-form LOO) and an SVD emulator of the summaries.
``posterior``     Gaussian likelihood on the emulated summaries, emcee, sequential refinement; or
                  waves of history matching (``posterior.method = "history_matching"``).
``equifinality``  identifiability, correlations, PCA, distance-vs-score clouds, alternative sets.
``propagate``     posterior draws, defaults, optimum and alternatives through the runner; bands,
                  Table 3, GCB 2024 comparison.
``report``        figures and a self-contained HTML page.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import xarray as xr

from bayescal.workflows.context import Context
from bayescal.workflows.validate import model_space

__all__ = ["GlobalContext"]


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class GlobalContext(Context):
    """:class:`~bayescal.workflows.context.Context` of the global workflow.

    Parameters are those of :class:`~bayescal.workflows.context.Context`; ``model`` may be your
    own ``LandCarbonModel``-compatible simulator instead of the embedded one (docs/own-model.md).
    """

    workflow_name = "global"

    def conform(self, model):
        """Your own model through the contract (docs/own-model.md): any dimension order, dict
        output, ``failed``/``failure``, a raising member failing alone; the cells kept."""
        from bayescal.models.contract import ConformingModel

        return ConformingModel(model, series=False)

    def make_model(self):
        """The embedded global model of ``[model]``."""
        from bayescal.models import LandCarbonModel, make_drivers, make_grid

        m = self.config["model"]
        grid = make_grid(n_cells=m["n_cells"], seed=m["grid_seed"])
        drivers = make_drivers(grid, start=m["start"], end=m["end"], ramp_start=m["ramp_start"],
                               seed=m["grid_seed"])
        space = model_space(self.config) if m["parameters_file"] else None
        return LandCarbonModel(grid=grid, drivers=drivers, space=space, chunk_size=m["chunk_size"])

    def twin(self):
        """Twin observations and the noise-free truth run, written to ``twin/`` in the run
        directory the first time and read from there afterwards (while the inputs that made them,
        ``[model]``, ``[observations]`` and the contents of their files, are unchanged)."""
        if "twin" not in self._cache:
            from bayescal.workflow.keys import file_digest

            from .files import global_files

            files = {str(f): file_digest(f) for f in global_files(self.config)}
            inputs = {k: self.config[k] for k in ("model", "observations")}
            # a twin without files (no parameters_file) keeps the key it had before file contents counted
            key = _hash({**inputs, "files": files} if files else inputs)
            found = self.rundir.twin(key)
            if found is None and not self.config["observations"]["twin"]:
                found = self._file_products()
                self.rundir.write_twin(*found, key=key)
            elif found is None:
                from bayescal.observations.products import DEFAULT_TWIN_PRODUCTS, ProductSpec, make_twin

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
        from bayescal.observations.products import Observations
        from bayescal.workflows.site.config import read_gridded_products

        grid = self.model.grid
        months = self.model.drivers["time"].sel(time=slice(str(self.config["model"]["start"]), None)).values
        cells = grid.assign_coords(cell=grid["cell"].values)
        return Observations(read_gridded_products(self.config, cells, months)), grid

    # --------------------------------------------------------------- summaries/likelihood
    @property
    def summary_operator(self):
        """The likelihood's observation operator (:class:`bayescal.operators.summaries.BiomeSummaries`)."""
        from bayescal.operators.summaries import BiomeSummaries

        if "summary_operator" not in self._cache:  # made once: summaries() runs on every ensemble
            o = self.config["observations"]
            years = tuple(o["gcb_years"]) if o["gcb_nbp"] else None
            coverage = None if o["twin"] else self.twin()[0]  # real products: the model follows their gaps
            self._cache["summary_operator"] = BiomeSummaries(
                o["variables"], o["sigma_floor"], years, o["gcb_errors"], o["gcb_block"], coverage=coverage)
        return self._cache["summary_operator"]

    def summaries(self, ds: xr.Dataset) -> np.ndarray:
        """The likelihood's summaries of model output, (member, summary).

        A member with a summary that is not finite (the log mean of a biome whose output
        collapsed to zero, say) gets a row of NaN: the stages count it as failed.
        """
        y = self.summary_operator.of_model(ds)
        y[~np.isfinite(y).all(axis=-1)] = np.nan
        return y

    def observed(self) -> tuple[np.ndarray, np.ndarray]:
        """The observed summaries and their sigma (computed once per pipeline).

        With ``observations.summary_noise`` (a twin), the observed summaries are the truth run's
        plus Gaussian noise of their sigma, drawn from ``twin_seed``: observations made as the
        likelihood assumes, so that coverage and the residuals' mean square can be checked (the
        products' mean is otherwise within a few hundredths of sigma of the truth, docs/posterior.md).
        """
        if "observed" not in self._cache:
            obs, truth = self.twin()
            y, sigma = self.summary_operator.of_observations(obs, truth)
            o = self.config["observations"]
            if o["twin"] and o["summary_noise"]:
                noise = np.random.default_rng([o["twin_seed"], 8]).normal(size=np.shape(sigma))
                y = np.reshape(self.summaries(truth), -1) + np.asarray(sigma) * noise
            self._cache["observed"] = (y, sigma)
        return self._cache["observed"]

    def run_dataset_vars(self) -> list[str]:
        return list(self.config["observations"]["variables"]) + ["nbp_global"]

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
        from bayescal.emulators import load_emulator

        return load_emulator(self.run_dir / "emulate" / "misfit_emulator.nc")

