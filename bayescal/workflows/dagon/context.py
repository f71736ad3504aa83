"""Dagon et al.'s (2020) CLM5 workflow as a route of ``bayescal run`` (``[run] workflow = "dagon"``):
the context its stages receive (declared in :mod:`.workflow`).

Stages, each through the runner's store:

``oat``              one-at-a-time screening of the candidate values at their bounds; parameter
                     effect and pattern-correlation ranks (:func:`bayescal.analysis.oat.dagon_oat`); the
                     ``oat.top_k`` leading values by effect (``oat.select``; plus
                     ``parameters.free``) are calibrated.
``design``           Latin-hypercube perturbed-parameter ensemble (as the default route's design).
``emulate``          per observed variable: EOFs of the area-weighted anomalies of the members'
                     mean maps (Eq. 3), observations projected on them (Eq. 5), and Dagon's
                     ReLU-tanh network from parameters to PCs, tested on 20 % of the members.
``emulator_screen``  the cost in EOF space (Eq. 6) at ``emulator_screen.n_points`` Sobol' points
                     (10^7 in the paper): histogram and best points; the differential-evolution
                     optimum on the emulator, then verified by a model run beside the defaults.
``report``           PE/PC ranking, EOF maps, cost histogram, optimum against default.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from bayescal.operators.eof import EOFBasis, eof_cost
from bayescal.workflows.global_.context import GlobalContext

__all__ = ["DagonContext", "EOFCost"]


class EOFCost:
    """Dagon's Eq. (6) on emulated PCs: ``predict(u)`` gives the cost at unit-cube points."""

    def __init__(self, networks: dict, observed: dict, obs_sd: dict, fraction: dict):
        self.networks, self.observed, self.obs_sd, self.fraction = networks, observed, obs_sd, fraction

    def predict(self, u: np.ndarray) -> np.ndarray:
        pcs = {v: np.asarray(net.predict(u)).reshape(len(u), -1) for v, net in self.networks.items()}
        return eof_cost(pcs, self.observed, self.obs_sd, self.fraction)


class DagonContext(GlobalContext):
    """The context of Dagon et al.'s workflow (:mod:`.workflow`, :mod:`.stages`): the global context
    (the embedded gridded model, its twin) plus the EOF space and its cost."""

    workflow_name = "dagon"

    def mean_maps(self, ds: xr.Dataset) -> dict[str, np.ndarray]:
        """Period-mean map (member, cell) of each observed variable."""
        return {v: ds[v].mean("time").values for v in self.config["observations"]["variables"]}

    def observed_maps(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Observed period-mean maps (cell,) and annual maps (year, cell) per variable: the mean
        over the variable's products; cells no product observes are NaN."""
        obs, truth = self.twin()
        mean, annual = {}, {}
        for v in self.config["observations"]["variables"]:
            data = [p.data.reindex(cell=truth["cell"].values) for p in obs[v]]
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

    def selection(self, ranking: xr.Dataset) -> list[str]:
        """The ``oat.top_k`` values by ``oat.select`` -- ``"effect"`` (Dagon et al.: the leading
        parameters by effect, the pattern rank breaking ties) or ``"combined"`` (the mean of both
        ranks) --, plus ``parameters.free``, in space order."""
        from bayescal.parameters import family

        k, how = self.config["oat"]["top_k"], self.config["oat"]["select"]
        key = (ranking["pe_rank"].values + ranking["pc_rank"].values / (ranking.sizes["parameter"] + 1.0)
               if how == "effect" else ranking["combined_rank"].values)
        best = set(ranking["parameter"].values[np.argsort(key, kind="stable")][:k].tolist())
        free = set(self.config["parameters"]["free"] or [])
        space = self.full_space
        return [lab for lab in space.labels if lab in best or lab in free or family(lab) in free]
