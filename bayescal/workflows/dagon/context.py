"""Dagon et al.'s (2020) CLM5 workflow as a route of ``bayescal run`` (``[run] workflow = "dagon"``):
the context its stages receive (declared in :mod:`.workflow`).

Stages, each through the runner's store:

``oat``              one-at-a-time screening of the candidates at their bounds -- each family's
                     values together (``oat.unit = "family"``, Dagon) or each value alone -- on the
                     outputs ``oat.outputs``; parameter effect and pattern-correlation ranks
                     (:func:`bayescal.analysis.oat.dagon_oat`); the ``oat.top_k`` leading units by
                     effect (``oat.select``; plus ``parameters.free``) are calibrated.
``design``           Latin-hypercube perturbed-parameter ensemble of the calibrated coordinates
                     (:class:`Scaling`: one scaling factor per family, as Dagon's PPE).
``emulate``          per observed variable: EOFs of the area-weighted anomalies of the members'
                     mean maps (Eq. 3), observations projected on them (Eq. 5), Dagon's ReLU-tanh
                     network from parameters to PCs, tested on 20 % of the members, and its
                     permutation importance and partial dependence (Figs. 7-8).
``emulator_screen``  the cost in EOF space (Eq. 6) at ``emulator_screen.n_points`` Sobol' points
                     (10^7 in the paper): histogram and best points; the differential-evolution
                     optimum on the emulator, then verified by a model run beside the defaults.
``report``           the paper's figures (:mod:`bayescal.report.dagon`).
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from bayescal.operators.eof import EOFBasis, eof_cost
from bayescal.workflows.global_.context import GlobalContext

__all__ = ["DagonContext", "EOFCost", "Scaling"]


class Scaling:
    """The calibrated coordinates of Dagon's route: one unit-cube factor per group of values.

    A group is a family's calibrated values (``oat.unit = "family"``): the factor puts each of them
    at the same position of its own range, Dagon's "uniform linear parameter scalings" that keep
    PFT-specific ranges "without increasing the dimensionality" (Sect. 2.4). With
    ``oat.unit = "value"`` each value is its own group (the unit cube of the values).

    Parameters
    ----------
    space : ParameterSpace
        The calibrated values free, everything else fixed.
    groups : dict name -> list of labels
        The groups (every free label of ``space`` in exactly one).
    """

    def __init__(self, space, groups: dict[str, list[str]]):
        index = {lab: i for i, lab in enumerate(space.labels)}
        self.space, self.labels = space, list(groups)
        self.columns = [np.array([index[lab] for lab in labs], dtype=int) for labs in groups.values()]
        if sorted(np.concatenate(self.columns).tolist()) != list(range(space.n_free)):
            raise ValueError("Scaling: every calibrated value must be in exactly one group")

    @property
    def n_free(self) -> int:
        """The number of calibrated coordinates (groups)."""
        return len(self.labels)

    def value_unit(self, u: np.ndarray) -> np.ndarray:
        """Unit-cube values of the calibrated values (k, n values) at factors ``u`` (k, groups)."""
        u = np.atleast_2d(np.asarray(u, dtype=float))
        out = np.empty((u.shape[0], self.space.n_free))
        for g, cols in enumerate(self.columns):
            out[:, cols] = u[:, [g]]
        return out

    def theta(self, u: np.ndarray) -> np.ndarray:
        """Full parameter vectors (k, all values) of the model at factors ``u`` (k, groups)."""
        return self.space.expand(self.space.from_unit(self.value_unit(u)))

    def design(self, u: np.ndarray):
        """``theta(u)`` as the runner's labelled design (member, parameter)."""
        return self.space.to_dataarray(self.theta(u), full=True)

    @property
    def default_u(self) -> np.ndarray:
        """Each group's factor nearest the defaults: the mean unit-cube position of its values'
        defaults (exact when they share one, as every single value does)."""
        u = self.space.to_unit(self.space.default)
        return np.array([u[cols].mean() for cols in self.columns])

    @property
    def default_exact(self) -> bool:
        """Whether :attr:`default_u` gives the defaults exactly."""
        u = self.space.to_unit(self.space.default)
        return bool(all(np.ptp(u[cols]) < 1e-12 for cols in self.columns))

    def unit_space(self):
        """The factors as a parameter space on [0, 1] (for the Latin hypercube), one parameter per
        factor named for its label (``vmax[BDL-EVG]``, with ``oat.unit = "value"``, as
        ``vmax_BDL_EVG_``: a parameter's name is an identifier)."""
        import re

        from bayescal.parameters import Parameter, ParameterSpace

        names = [lab if lab.isidentifier() else re.sub(r"\W", "_", lab) + f"_{k}"
                 for k, lab in enumerate(self.labels)]
        return ParameterSpace([Parameter(name, float(d), 0.0, 1.0)
                               for name, d in zip(names, self.default_u, strict=True)])


class EOFCost:
    """Dagon's Eq. (6) on emulated PCs: ``predict(u)`` gives the cost at unit-cube points."""

    def __init__(self, networks: dict, observed: dict, obs_sd: dict, fraction: dict):
        self.networks, self.observed, self.obs_sd, self.fraction = networks, observed, obs_sd, fraction

    def predict(self, u: np.ndarray) -> np.ndarray:
        pcs = {v: np.asarray(net.predict(u)).reshape(len(u), -1) for v, net in self.networks.items()}
        return eof_cost(pcs, self.observed, self.obs_sd, self.fraction)


#: the [observations] keys the route reads: its twin's (or its files') maps of the variables; the
#: global route's likelihood keys (gcb_*, sigma_floor, summary_noise) are not read (refused if set)
OBSERVED = tuple(f"observations.{k}" for k in ("twin", "twin_seed", "truth", "truth_from_prior", "variables",
                                                "products"))


class DagonContext(GlobalContext):
    """The context of Dagon et al.'s workflow (:mod:`.workflow`, :mod:`.stages`): the global context
    (the embedded gridded model, its twin) plus the EOF space and its cost."""

    workflow_name = "dagon"

    def _twin_observations(self, observations: dict) -> dict:
        """Only the keys this route reads (:data:`OBSERVED`): the global route's likelihood keys
        are refused here, and the clamped ``gcb_years`` would otherwise key the twin."""
        return {key: observations[key] for key in (k.removeprefix("observations.") for k in OBSERVED)}

    def mean_maps(self, ds: xr.Dataset) -> dict[str, np.ndarray]:
        """Period-mean map (member, cell) of each observed variable over the months its products
        observe in each cell (:meth:`map_weights`; NaN where none does): the model's map is the
        observed one's counterpart month for month (a product without winter months is compared
        with the model's summer)."""
        out = {}
        for v in self.config["observations"]["variables"]:
            w = self.map_weights(v, ds["time"].values)
            out[v] = np.einsum("mct,ct->mc", ds[v].transpose("member", "cell", "time").values, w)
        return out

    def map_weights(self, variable: str, months: np.ndarray) -> np.ndarray:
        """Weights (cell, month) of the model's ``months`` that give the observed period-mean map's
        counterpart: each product's mean over the months it observes in a cell, averaged over the
        products observing the cell (:meth:`observed_maps`); NaN in a cell none observes. Products
        observing every month weigh each ``1 / len(months)``."""
        cache = self._cache.setdefault("map_weights", {})
        key = (variable, tuple(np.asarray(months).tolist()))
        if key not in cache:
            obs, truth = self.twin()
            total, n = 0.0, 0.0
            for p in obs[variable]:
                seen = p.data.notnull().transpose("cell", "time").reindex(cell=truth["cell"].values,
                                                                           time=months, fill_value=False)
                count = seen.sum("time").values[:, None]
                total = total + np.where(count > 0, seen.values / np.maximum(count, 1), 0.0)
                n = n + (count > 0)
            cache[key] = np.where(n > 0, total / np.maximum(n, 1), np.nan)
        return cache[key]

    def observed_maps(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Observed period-mean maps (cell,) and annual maps (year, cell) per variable: the mean
        over the variable's products; cells no product observes are NaN."""
        obs, truth = self.twin()
        mean, annual = {}, {}
        for v in self.config["observations"]["variables"]:
            data = [p.data.reindex(cell=truth["cell"].values) for p in obs[v]]
            with warnings.catch_warnings(action="ignore", category=RuntimeWarning):  # a cell none observes
                mean[v] = np.nanmean(np.stack([d.mean("time", skipna=True).values for d in data]), axis=0)
            yearly = xr.concat([d.groupby("time.year").mean(skipna=True) for d in data], "product",
                               join="outer")  # products may cover different years
            annual[v] = yearly.mean("product", skipna=True).transpose("year", "cell").values
        return mean, annual

    def eof_data(self) -> xr.Dataset:
        return xr.load_dataset(self.run_dir / "emulate" / "eof.nc")

    def _targets(self, ds: xr.Dataset) -> tuple[dict, dict, dict]:
        """Eq. (6)'s observed PCs, their sigma and the modes' variance fractions, per variable."""
        variables = self.config["observations"]["variables"]
        return tuple({v: ds[f"{v}_{name}"].values for v in variables}
                     for name in ("obs_pc", "obs_sd", "fraction"))

    def cost(self) -> EOFCost:
        """The emulated cost of Eq. (6) from the ``emulate`` stage's files."""
        from bayescal.emulators import load_emulator

        nets = {v: load_emulator(self.run_dir / "emulate" / f"network_{v}.nc")
                for v in self.config["observations"]["variables"]}
        return EOFCost(nets, *self._targets(self.eof_data()))

    def model_pcs(self, ds: xr.Dataset, eof: xr.Dataset | None = None) -> dict[str, np.ndarray]:
        """The model's own PCs (member, mode) of its runs ``ds`` in the ensemble's EOFs."""
        eof = self.eof_data() if eof is None else eof
        maps = self.mean_maps(ds)
        return {v: EOFBasis.from_dataset(eof, v).project(maps[v][:, eof[f"{v}_cells"].values])
                for v in self.config["observations"]["variables"]}

    def model_cost(self, ds: xr.Dataset) -> np.ndarray:
        """Eq. (6) on the model's own PCs of its runs ``ds`` (member, ...)."""
        eof = self.eof_data()
        return eof_cost(self.model_pcs(ds, eof), *self._targets(eof))

    def selection(self, ranking: xr.Dataset, space) -> dict[str, list[str]]:
        """The calibrated groups: the ``oat.top_k`` leading units of the screen by ``oat.select`` --
        ``"effect"`` (Dagon et al.: by parameter effect, the pattern rank breaking ties) or
        ``"combined"`` (the mean of both ranks) --, plus ``parameters.free``; each a group name
        (a family or a label, as ``oat.unit``) -> its values among the screened ``space``'s (a free
        entry's from the whole space), in the model's order."""
        from bayescal.parameters import family

        k, how, unit = self.config["oat"]["top_k"], self.config["oat"]["select"], self.config["oat"]["unit"]
        key = (ranking["pe_rank"].values + ranking["pc_rank"].values / (ranking.sizes["parameter"] + 1.0)
               if how == "effect" else ranking["combined_rank"].values)
        best = set(ranking["parameter"].values[np.argsort(key, kind="stable")][:k].tolist())
        chosen = {lab for lab in space.labels if (family(lab) if unit == "family" else lab) in best}
        free = set(self.config["parameters"]["free"] or [])
        full = self.full_space
        chosen |= {lab for lab in full.labels if lab in free or family(lab) in free}
        groups: dict[str, list[str]] = {}
        for lab in full.labels:
            if lab in chosen:
                groups.setdefault(family(lab) if unit == "family" else lab, []).append(lab)
        return groups

    def calibration(self) -> Scaling:
        """The calibrated coordinates (``oat/selected.json``: its ``groups``; a run directory of
        an older bayescal has none, and each value is its own group)."""
        import json

        if "calibration" not in self._cache:
            sel = json.loads((self.run_dir / "oat" / "selected.json").read_text())
            groups = sel.get("groups") or {lab: [lab] for lab in sel["parameters"]}
            self._cache["calibration"] = Scaling(self.space(), groups)
        return self._cache["calibration"]
