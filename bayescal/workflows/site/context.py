"""The site (time-series) route of ``bayescal run``: a site model against observation files.

The context of the site workflow (declared in :mod:`.workflow`).
Stages: ``optimize`` (maximum likelihood with the observation errors alone), ``posterior``
(error model at that point, then emcee on the exact model -- ``posterior.route = "direct"`` --
or on an SVD emulator of the series trained on a Latin hypercube through the runner's store --
``"emulator"``), ``propagate`` (posterior draws, defaults and the optimum through the runner's
store over the whole period; validation on the held-out years), ``report``. docs/site.md.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from bayescal.models.timing import seconds_per_member
from bayescal.workflows.context import Context

from .config import conform_units, read_products, say_scale_mismatch
from .model import check_model_run, check_years_covered, say_opposite, site_model

__all__ = ["SiteContext"]


class SiteContext(Context):
    """The context of the site workflow (:mod:`.workflow`, :mod:`.stages`): the site model, its
    products in the model's units, the calibration and validation years, the error model."""

    workflow_name = "site"

    def conform(self, model):
        """Your own site model (``make_context(config, run_dir, model=...)``) through the contract,
        as a configured ``python`` model is: :class:`~bayescal.models.contract.ConformingModel` with
        the observed variables (and ``model.parameters_file``'s space, if any)."""
        from bayescal.models.contract import ConformingModel
        from bayescal.workflows.config import ConfigError
        from bayescal.workflows.space_file import merged_space

        m = self.config["model"]
        if m["kind"] == "dalec":
            from bayescal.models.dalec import DalecModel

            if isinstance(model, DalecModel):  # the embedded model, made by the caller
                return model
            raise ConfigError("a model given to the site workflow replaces a 'python' or 'external' [model]; "
                              "this config's 'model.kind' = 'dalec' runs the embedded DALEC (set "
                              "model.kind = 'python' with any entry point, or give no model)")
        if isinstance(model, ConformingModel):
            return model
        if not hasattr(model, "space") or not callable(model):
            raise ConfigError(f"the model given ({type(model).__name__}) must be a callable with a 'space' "
                              "(docs/own-model.md)")
        needed = sorted({p["variable"] for p in self.config["observations"]["products"]})
        # the file lists what it changes; the model's own space keeps the rest (its log scales)
        space = merged_space(m, model.space, f"the model given ({type(model).__name__})", "the model") \
            if m.get("parameters_file") else None
        return ConformingModel(model, variables=needed, space=space)

    def make_model(self):
        """The configured site model (:func:`.model.site_model`); an external program works in
        ``external/`` of the run directory."""
        return site_model(self.config, workdir=self.run_dir / "external")

    @cached_property
    def calibration_model(self):
        """The model over the calibration years only (DALEC: drivers cut after them; cheaper)."""
        if self.config["model"]["kind"] != "dalec":
            return self.model
        from bayescal.models.dalec import DalecModel

        m, last = self.model, self.years("calibration")[1]
        return DalecModel(m.drivers.sel(time=slice(None, f"{last}-12-31")), m.kind, space=m.space,
                          diurnal_range=m.diurnal_range, spinup_years=m.spinup_years,
                          spinup_cycles=m.spinup_cycles)

    def calibration_simulator(self, theta: np.ndarray) -> xr.Dataset:
        self._count(np.atleast_2d(theta).shape[0])
        return self.calibration_model(theta)

    def calibration_arrays(self):
        """The embedded DALEC's fast path (``theta -> ({variable: (member, time)}, failed)``,
        counted as :meth:`calibration_simulator` is; :meth:`~bayescal.models.dalec.DalecModel.output_arrays`),
        or None: a python or external model goes through its Dataset and the contract's checks."""
        if self.config["model"]["kind"] != "dalec":
            return None
        fast = self.calibration_model.output_arrays
        variables = sorted(set(self.operator("calibration").variables))

        def arrays(theta: np.ndarray):
            self._count(np.atleast_2d(theta).shape[0])
            return fast(theta, variables)

        return arrays

    def years(self, which: str) -> tuple[int, int]:
        yrs = self.config["site"][f"{which}_years"]
        return int(yrs[0]), int(yrs[1])

    def space(self):
        free = self.config["parameters"]["free"]
        return self.full_space.only(free) if free else self.full_space

    def model_check(self, validation: bool = False, workdir: Path | None = None) -> dict[str, Any]:
        """One run of the model at its defaults (contract, calibration years covered -- and the
        validation years with ``validation=True``, as ``bayescal check`` and the propagate stage
        ask --, seconds): :func:`.model.check_model_run`; the run is made once. ``workdir``:
        an external program runs there, not in the run directory (``bayescal check`` writes none)."""
        if workdir is not None and self._model is None:
            self._model = site_model(self.config, workdir=Path(workdir))
        if "model_check" not in self._cache:
            # timed twice (without a first call's compilation) only for ``bayescal check``'s estimates
            self._cache["model_check"] = check_model_run(self.model, self.config, ("calibration_years",),
                                                         timed=validation)
        if validation:
            check = self._cache["model_check"]
            check_years_covered(check["time"], self.config, ("validation_years",), check["calendar"])
            self.products()  # each product in the model's output units, or a ConfigError naming both
        return self._cache["model_check"]

    def seconds_per_member(self) -> float:
        """As :meth:`Context.seconds_per_member`; the embedded DALEC through the fast path its
        searches and chains run (:meth:`calibration_arrays`)."""
        if self.config["model"]["kind"] != "dalec":
            return super().seconds_per_member()
        variables = sorted(set(self.operator("calibration").variables))
        default = np.asarray(self.model.space.all_default, dtype=float)[None]
        fast = self.calibration_model.output_arrays
        return seconds_per_member(lambda th: fast(th, variables), default, self.model_check()["seconds"])

    def checked_products(self) -> list:
        return [] if self.config["observations"]["twin"] else self.products()

    def products(self) -> list:
        """The observation products (real files, or the twin made from them), in the model's
        output units (DALEC's are known; a python or external model's from its run at the defaults)."""
        if "products" not in self._cache:
            real = read_products(self.config)
            check = self.model_check()
            if self.config["model"]["kind"] != "dalec":
                real = conform_units(real, check["units"], strict=False, unitless=check["unitless"])
                self._say_days_left_out(real, check)
            if not self.config["observations"]["twin"]:
                say_scale_mismatch(real, check["scale"])
                say_opposite(real, check["time"], check.get("series", {}))
            twin = self.config["observations"]["twin"]
            self._cache["products"] = self._twin_products(real) if twin else real
        return self._cache["products"]

    def _say_days_left_out(self, products: list, check: dict) -> None:
        """A warning counting each product's observations of the calibration and validation years
        on days the model's calendar lacks (29 February of a ``noleap`` model): they are left out."""
        import warnings

        import pandas as pd

        from bayescal.models.contract import NO_LEAP_CALENDARS

        if check["calendar"] not in NO_LEAP_CALENDARS:
            return
        days = pd.DatetimeIndex(check["time"])
        (a, b), (c, d) = self.years("calibration"), self.years("validation")
        for p in products:
            t = pd.DatetimeIndex(p.data["time"].values)
            inside = ((t.year >= a) & (t.year <= b)) | ((t.year >= c) & (t.year <= d))
            n = int((inside & p.data.notnull().values & ~t.isin(days)).sum())
            if n:
                src = p.data.attrs.get("source", p.name)
                warnings.warn(f"{p.variable} ({src}): {n} observed day(s) of the calibration "
                              f"and validation years are left out: the model output's "
                              f"calendar {check['calendar']!r} has no such day (29 February)", stacklevel=2)

    def _twin_products(self, real: list) -> list:
        """Products simulated at the truth with the real products' days, gaps and sigma (iid noise);
        a value of a product's week, month or year is the truth's mean over it."""
        import pandas as pd

        from bayescal.observations.products import Product
        from bayescal.operators.timeseries import period_rows

        truth = self.model(self.truth_theta()[None])
        if str(truth["status"].values[0]) != "done":
            raise ValueError(f"the twin truth fails in the model: {truth['reason'].values[0]}")
        rng = np.random.default_rng(self.config["observations"]["twin_seed"])
        out = []
        days = pd.DatetimeIndex(truth["time"].values)
        for p in real:
            t = pd.DatetimeIndex(p.data["time"].values)
            rows, inside = period_rows(t, p.attrs.get("period", "day"), days)
            true = np.full(t.size, np.nan)
            true[inside] = rows @ truth[p.variable].isel(member=0).values
            noisy = true + rng.standard_normal(true.size) * p.sigma.values
            data = p.data.copy(data=np.where(p.data.notnull().values, noisy, np.nan))
            out.append(Product(p.name + "-twin", p.variable, data, p.sigma, attrs=dict(p.attrs)))
        self._cache["truth_run"] = truth
        return out

    def truth_run(self) -> xr.Dataset:
        """The twin's noise-free run at the truth (``observations.twin = true``)."""
        self.products()
        return self._cache["truth_run"]

    def operator(self, which: str = "calibration", aggregate: str | None = None):
        from bayescal.operators.timeseries import SeriesOperator

        return SeriesOperator(self.products(), self._model_time(which), self.years(which),
                              aggregate or self.config["site"]["aggregate"])

    def _model_time(self, which: str = "calibration") -> np.ndarray:
        """The model's daily time axis: DALEC's drivers, else the run at the defaults."""
        if self.config["model"]["kind"] == "dalec":
            model = self.calibration_model if which == "calibration" else self.model
            return model.drivers["time"].values
        return self.model_check()["time"]

    def error_model(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "posterior" / "error_model.json").read_text())
