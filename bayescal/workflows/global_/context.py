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
import pandas as pd
import xarray as xr

from bayescal.workflows.config import ConfigError
from bayescal.workflows.context import Context
from bayescal.workflows.validate import model_space

#: half the embedded grid's land (110 million km2): a model of less is not compared with, nor
#: calibrated against, GCB 2024's global land sink
GLOBAL_LAND_M2 = 0.5 * 110e12

__all__ = ["GlobalContext"]


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class GlobalContext(Context):
    """:class:`~bayescal.workflows.context.Context` of the global workflow.

    Parameters are those of :class:`~bayescal.workflows.context.Context`; ``model`` may be your
    own simulator instead of the embedded one (docs/own-model.md), or the config may name it
    (``run.workflow = "global"``, ``model.kind`` python or external).
    """

    workflow_name = "global"

    def conform(self, model, space=None):
        """Your own model through the contract (docs/own-model.md): any dimension order, dict
        output, ``failed``/``failure``, a raising member failing alone; the cells kept. ``space``
        replaces the model's (``model.parameters_file``)."""
        from bayescal.models.contract import ConformingModel
        from bayescal.workflows.config import check_labels

        check_labels(self.config, space or model.space)  # a config loaded without the model: its names here
        return ConformingModel(model, series=False, space=space)

    @property
    def own_model(self) -> bool:
        """A model of your own (docs/own-model.md): given to the context, or named by ``[model]``
        (``model.kind`` python or external); not the embedded one."""
        return self._given or self.config["model"]["kind"] != "global"

    def model_check(self, validation: bool = False, workdir=None) -> dict[str, Any]:
        """One run at the defaults (:meth:`Context.model_check`); for your own model also what
        the route needs of its output (:meth:`check_own_model`) and, with ``validation`` (``bayescal
        check``), the products read on its cells in its units. ``workdir``: an external program
        runs there, not in the run directory (``bayescal check`` writes none)."""
        from pathlib import Path

        if workdir is not None and self._model is None and self.config["model"]["kind"] != "global":
            self._model = self.make_model(Path(workdir))
        check = super().model_check(validation, workdir)
        if validation and self.own_model:
            self.check_own_model()
            self.checked_products()  # each product in the model's units, or a ConfigError naming both
        return check

    def checked_products(self) -> list:
        if self.config["observations"]["twin"]:
            return []
        if "file_products" not in self._cache:
            self._cache["file_products"] = list(self._file_products()[0])
        return self._cache["file_products"]

    def default_output(self) -> xr.Dataset:
        """The model's output at its defaults (one run, made once per process), conformed."""
        if "default_output" not in self._cache:
            self.model_check()
        return self._cache["default_output"]

    def check_own_model(self) -> None:
        """Your model's output at its defaults against what the global route needs (one run, in
        the first stage, before the others): each observed variable on cells and months,
        ``gpp_global`` and ``nbp_global`` on ``year``, ``model.start``..``model.end`` covered;
        else a ConfigError naming what is missing. Nothing for the embedded model."""
        if not self.own_model:
            return
        ds = self.default_output()
        self.cells_and_months()  # cells with area and biome, a time axis
        m, obs = self.config["model"], self.config["observations"]
        program = m["kind"] == "external"
        output = f" (the program's output file {m['output']!r})" if program else ""
        for v in obs["variables"]:
            if v not in ds or not {"cell", "time"} <= set(ds[v].dims):
                have = sorted(str(n) for n in ds.data_vars if n not in ("status", "reason"))
                raise ConfigError(f"'observations.variables': the model's output{output} has no {v!r} on "
                                  f"(member, cell, time) (it has {have})")
            if not ds[v].attrs.get("units"):  # a product of it could be in any units, a twin's too
                how = (f"give {v!r} a 'units' attribute in the program's output file {m['output']!r}, "
                       "such as 'gC m-2 d-1'") if program else \
                    (f"give it a 'units' attribute (a Dataset) or your model a 'units' mapping such as "
                     f"{{{v!r}: 'gC m-2 d-1'}}")
                raise ConfigError(f"'observations.variables': the model's output {v!r} has no units; {how} "
                                  "(docs/own-model.md)")
        for v in ("gpp_global", "nbp_global"):
            if v not in ds or "year" not in ds[v].dims:
                raise ConfigError(f"the model's output has no {v!r} on (member, year) in PgC yr-1: the "
                                  "global route's bands and GCB comparison need it (docs/own-model.md)")
            _refuse_other_units(v, str(ds[v].attrs.get("units", "")).strip(), output)
        have_years = {int(y) for y in ds["year"].values} & set(pd.DatetimeIndex(ds["time"].values).year)
        gone = sorted(set(range(m["start"], m["end"] + 1)) - have_years)
        if gone:
            more = " ..." if len(gone) > 3 else ""
            raise ConfigError(f"'model.start'-'model.end' ({m['start']}-{m['end']}): the model's output has "
                              f"no year {gone[:3]}{more} (on 'time' and 'year'): set them to the years your "
                              "model simulates")
        land = self.land_area()
        if obs["gcb_nbp"] and land < GLOBAL_LAND_M2:
            raise ConfigError(f"'observations.gcb_nbp' = true: GCB 2024's NBP is the world's land sink, and "
                              f"the model's cells cover {land / 1e12:.3g} million km2 of land (their 'area' "
                              f"in m2; less than half the embedded grid's 110): set gcb_nbp = false")

    def land_area(self) -> float:
        """The land the model's cells cover (m2, their ``area`` summed; NaN areas left out)."""
        return float(np.nansum(self.cells_and_months()[0]["area"].values))

    def has_output(self, variable: str) -> bool:
        """The model gives ``variable`` (the embedded model every one of its own; your model what
        its output at the defaults holds)."""
        return not self.own_model or variable in self.default_output()

    def output_units(self) -> dict[str, str] | None:
        """Units of the model's gridded outputs (variable -> units): None for the embedded model
        (its own table); your model's from its ``units`` mapping or its output at the defaults."""
        if not self.own_model:
            return None
        given = getattr(self.model, "units", None)
        if isinstance(given, dict) and given:
            return {str(k): str(v) for k, v in given.items()}
        ds = self.default_output()
        return {str(v): str(ds[v].attrs["units"]) for v in ds.data_vars if ds[v].attrs.get("units")}

    def cells_and_months(self) -> tuple[xr.Dataset, np.ndarray]:
        """The model's cells (``area``, ``biome``, ``lat`` and ``lon`` on ``cell``; the position is
        needed to map products onto them) and the months of ``model.start``..``model.end``: the
        embedded model's grid and drivers' months, or your model's output at its defaults."""
        start, end = str(self.config["model"]["start"]), str(self.config["model"]["end"])
        if not self.own_model:
            grid, months = self.model.grid, self.model.drivers["time"]
        else:
            ds = self.default_output()
            missing = [c for c in ("cell", "time") if c not in ds.dims] + \
                [c for c in ("area", "biome") if c not in ds.coords]
            if missing:
                raise ConfigError(f"the model's output lacks {missing}: the global route needs outputs on "
                                  "(member, cell, time) with 'area' (m2) and 'biome' coordinates on 'cell' "
                                  f"(docs/own-model.md); its dimensions are {dict(ds.sizes)}")
            grid = xr.Dataset({c: ("cell", ds[c].values) for c in ("lat", "lon", "area", "biome")
                               if c in ds.coords and ds[c].dims == ("cell",)},
                              coords={"cell": ds["cell"].values})
            months = ds["time"]
        if not self.config["observations"]["twin"] and not {"lat", "lon"} <= set(grid.data_vars):
            raise ConfigError("the model's output has no 'lat'/'lon' on 'cell': the observation products' "
                              "grids are mapped to your cells by their centres (docs/own-model.md)")
        return grid, months.sel(time=slice(start, end)).values

    def make_model(self, workdir=None):
        """The model of ``[model]``: the embedded global model, or your own (``model.kind``
        python: the entry point's; external: the program, each member run in its own folder under
        ``workdir``, default the run directory's ``external/``)."""
        from bayescal.models import LandCarbonModel, make_drivers, make_grid
        from bayescal.workflows.own_model import external_model, file_space, python_model
        from bayescal.workflows.space_file import merged_space

        m = self.config["model"]
        if m["kind"] != "global":
            if m["kind"] == "python":
                model = python_model(m)
                # the file lists what it changes; the model's own space keeps the rest (its log scales)
                space = merged_space(m, model.space, f"the model {m['entry_point']!r}", "the model") \
                    if m["parameters_file"] else None
                return self.conform(model, space)
            space = file_space(m)
            return self.conform(external_model(m, space, workdir or self.run_dir / "external", None))
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
            from bayescal.workflows.config import config_for_keys

            keyed = config_for_keys(self.config)
            inputs = {"model": keyed["model"], "observations": self._twin_observations(keyed["observations"])}
            if self.config["observations"].get("truth_from_prior"):  # the values drawn: free's (candidates')
                inputs["parameters"] = {k: self.config["parameters"][k] for k in ("free", "candidates")}
            # a twin without files (no parameters_file) keeps the key it had before file contents counted
            key = _hash({**inputs, "files": files} if files else inputs)
            found = self.rundir.twin(key)
            if found is None:  # written below: the folder must be bayescal's first
                self.engine.claim()
            if found is None:
                self.rundir.write_twin(*self._make_twin(), key=key)
                # what later invocations read, also in this one: the values made in memory can differ
                # from the file's in the last bit, and a resumed run would not equal an uninterrupted one
                found = self.rundir.twin(key)
            self._cache["twin"] = found
        return self._cache["twin"]

    def _twin_observations(self, observations: dict) -> dict:
        """The ``[observations]`` keys the twin (or the files' products) is made from: here all."""
        return observations

    def _make_twin(self):
        """The observations and the truth run (real products: the model's grid in its place)."""
        if not self.config["observations"]["twin"]:
            return self._file_products()
        from bayescal.observations.products import make_twin, twin_specs

        m = self.config["model"]
        specs = twin_specs(self.config["observations"]["variables"], m["start"], m["end"])
        return make_twin(self.model, self.truth_theta(), specs, seed=self.config["observations"]["twin_seed"])

    def _file_products(self):
        """Observations from the config's CF-netCDF files on the model's cells and months, and the
        model's grid in the truth's place (real data have no truth; the grid gives areas, biomes)."""
        from bayescal.observations.products import Observations
        from bayescal.workflows.site.config import read_gridded_products

        grid, months = self.cells_and_months()
        cells = grid.assign_coords(cell=grid["cell"].values)
        products = read_gridded_products(self.config, cells, months, units=self.output_units())
        self._say_scale_mismatch(products)
        return Observations(products), grid

    def _say_scale_mismatch(self, products: list) -> None:
        """A warning for a product typically 30 times the model's values at its defaults or more
        (:func:`~bayescal.workflows.site.units.say_scale_mismatch`): units that convert but are not
        the file's (one product alone has no other to disagree with)."""
        import warnings

        from bayescal.workflows.site.units import say_scale_mismatch

        ds = self.default_output()
        with warnings.catch_warnings(action="ignore", category=RuntimeWarning):  # an all-NaN output: NaN
            scale = {v: float(np.nanmedian(np.abs(ds[v].values))) for v in {p.variable for p in products}
                     if v in ds}
        say_scale_mismatch(products, scale)

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
        with np.errstate(divide="ignore", invalid="ignore"):  # log of a zero mean: NaN row, said below
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
        """The candidate values that are not calibrated (free), everything else fixed; None when
        every candidate is calibrated."""
        cands = self.config["parameters"]["candidates"]
        full = self.full_space.only(cands) if cands else self.full_space
        calibrated = set(self.space().labels)
        left = [lab for lab in full.labels if lab not in calibrated]
        return self.full_space.only(left) if left else None

    def training(self) -> xr.Dataset:
        """The design runs: unit-cube points, misfit, summaries and which finished."""
        return self.rundir.training()

    def posterior_u(self) -> xr.DataArray:
        """Posterior samples of the calibrated values, unit cube, (sample, parameter)."""
        return self.rundir.posterior_u(self.space())

    def misfit_emulator(self):
        from bayescal.emulators import load_emulator

        return load_emulator(self.run_dir / "emulate" / "misfit_emulator.nc")


def _refuse_other_units(variable: str, units: str, output: str) -> None:
    """A global series in units other than GCB 2024's PgC yr-1 (TgC yr-1, say) is a ConfigError
    naming the factor: the bands, Table 3 and the comparison with GCB read it as PgC yr-1."""
    from bayescal.readers import UnitError, conversion_factor

    try:
        factor = conversion_factor(units, "PgC yr-1", variable) if units else 1.0
    except UnitError as err:
        raise ConfigError(f"the model's output{output} {variable!r} has units {units!r}, not a carbon flux "
                          f"in PgC yr-1 as the global route needs ({err}; docs/own-model.md)") from None
    if abs(factor - 1.0) > 1e-9:
        raise ConfigError(f"the model's output{output} {variable!r} is in {units!r}; the global route reads "
                          f"it in PgC yr-1 (GCB 2024's units): give it in PgC yr-1 (its values x {factor:g}) "
                          "with units = 'PgC yr-1' (docs/own-model.md)")
