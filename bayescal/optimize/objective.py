"""The objective an optimiser minimises: a simulator's misfit against observations, through the runner.

Any callable ``objective(u (k, d))`` returning misfits ``(k,)``, residual vectors ``(k, m)`` or an
``xarray.Dataset`` with ``misfit`` (and optionally ``residuals``, ``status``, ``reason``) is an
objective; :func:`evaluate` normalises the three forms. NaN marks a failed member.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from ..observations.products import Observations, Product
from ..operators.scores import residuals as residual_vector
from ..operators.scores import score
from ..parameters import ParameterSpace
from ..run.ensemble import EnsembleStore, run_ensemble

__all__ = ["ModelObjective", "OptimizeError", "evaluate"]


class OptimizeError(ValueError):
    """Invalid optimiser input (names the argument that is wrong)."""


# ----------------------------------------------------------------------------- objective
class ModelObjective:
    """Misfit of a simulator against observation products, evaluated through the runner.

    Parameters
    ----------
    simulator : callable
        ``simulator(theta (k, n_values)) -> Dataset`` (e.g. ``LandCarbonModel``).
    space : ParameterSpace
        Maps unit-cube points of its free parameters to full parameter vectors.
    observations : Observations or sequence of Product
        The products to fit.
    measure : {"residuals", "score", "seiler"}, default "residuals"
        ``"residuals"``: Oliver et al.'s regionally normalised residual vector
        (:func:`bayescal.operators.scores.residuals`), misfit = sum of squares (what DFO-LS needs);
        ``"score"``: ``1 - overall`` AMBER/ILAMB score, variables weighted equally;
        ``"seiler"``: ``1 - overall`` with every dataset weighted equally (Seiler's GA fitness).
    regions : xarray.DataArray, optional
        Region of each cell for the residuals (default the ``biome`` coordinate).
    workdir : path, optional
        Keep every batch as an :class:`~bayescal.run.ensemble.EnsembleStore` named by a hash of its
        points; a repeated batch (a resumed optimisation) is read, not run. Default: a temporary
        directory per batch.
    executor : None, int or distributed.Client
        As in :func:`~bayescal.run.ensemble.run_ensemble`.
    batch_size : int, default 32
        Members per simulator call.
    """

    def __init__(
        self,
        simulator: Callable[[np.ndarray], xr.Dataset],
        space: ParameterSpace,
        observations: Observations | Sequence[Product],
        measure: str = "residuals",
        regions: xr.DataArray | None = None,
        workdir: str | Path | None = None,
        executor=None,
        batch_size: int = 32,
    ) -> None:
        if measure not in ("residuals", "score", "seiler"):
            raise OptimizeError(f"measure must be 'residuals', 'score' or 'seiler', got {measure!r}")
        self.simulator = simulator
        self.space = space
        self.observations = (observations if isinstance(observations, Observations)
                             else Observations(observations))
        self.measure = measure
        self.regions = regions
        self.workdir = None if workdir is None else Path(workdir)
        self.executor = executor
        self.batch_size = batch_size

    def _run(self, theta: np.ndarray, where: Path) -> xr.Dataset:
        keep = self.observations.variables
        run_ensemble(self.simulator, theta, where, executor=self.executor, batch_size=self.batch_size,
                     keep=keep, progress=False)
        return EnsembleStore(where).load()

    def __call__(self, u: np.ndarray) -> xr.Dataset:
        """Misfit (and residuals) of unit-cube points ``u`` (k, d)."""
        u = np.atleast_2d(np.asarray(u, dtype=float))
        if u.shape[1] != self.space.n_free:
            raise OptimizeError(f"objective: points have {u.shape[1]} values, the space has "
                                f"{self.space.n_free} free parameters")
        theta = self.space.expand(self.space.from_unit(np.clip(u, 0.0, 1.0)))
        if self.workdir is None:
            with tempfile.TemporaryDirectory() as tmp:
                ens = self._run(theta, Path(tmp) / "batch")
        else:
            key = hashlib.sha1(np.ascontiguousarray(theta).tobytes()).hexdigest()[:16]
            ens = self._run(theta, self.workdir / f"batch_{key}")
        return self.measure_runs(ens)

    def measure_runs(self, ens: xr.Dataset) -> xr.Dataset:
        """The misfit (and residuals) of model runs already made, with this objective's measure.

        ``ens`` holds the observed variables and ``status``/``reason`` on ``member``; runs not
        ``done`` get NaN. Returns ``misfit``, ``status``, ``reason`` (and ``residuals`` for the
        residual measure) on ``member``.
        """
        status = ens["status"].values.astype(str)
        reason = ens["reason"].values.astype(str)
        n = status.size
        out = xr.Dataset({"status": ("member", status), "reason": ("member", reason)})
        ok = status == "done"
        if self.measure == "residuals":
            if ok.any():
                r = residual_vector(ens.isel(member=np.flatnonzero(ok)), self.observations, self.regions)
                full = np.full((n, r.sizes["residual"]), np.nan)
                full[ok] = r.values
                out["residuals"] = (("member", "residual"), full)
                out["misfit"] = ("member", (full**2).sum(axis=1))
            else:
                out["misfit"] = ("member", np.full(n, np.nan))
        else:
            mis = np.full(n, np.nan)
            if ok.any():
                weighting = "datasets" if self.measure == "seiler" else "variables"
                sub = ens.isel(member=np.flatnonzero(ok))
                mis[ok] = score(sub, self.observations, weighting=weighting)["misfit"].values
            out["misfit"] = ("member", mis)
        return out



def evaluate(
    objective: Callable, u: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """Call ``objective`` and normalise its answer to (misfit, residuals, status, reason)."""
    out = objective(u)
    k = u.shape[0]
    res = None
    if isinstance(out, xr.Dataset):
        mis = np.asarray(out["misfit"].values, dtype=float)
        if "residuals" in out:
            res = np.asarray(out["residuals"].values, dtype=float)
        status = out["status"].values.astype(str) if "status" in out else None
        reason = out["reason"].values.astype(str) if "reason" in out else None
    else:
        arr = np.asarray(out, dtype=float)
        if arr.ndim == 2 and arr.shape[0] == k:
            res = arr
            mis = (arr**2).sum(axis=1)
        elif arr.shape == (k,):
            mis = arr
        else:
            raise OptimizeError(f"objective returned shape {arr.shape} for {k} points; expected ({k},) "
                                f"misfits or ({k}, m) residuals")
        status = reason = None
    if mis.shape != (k,):
        raise OptimizeError(f"objective returned {mis.shape} misfits for {k} points")
    bad = ~np.isfinite(mis)
    if status is None:
        status = np.where(bad, "failed", "done")
    status = np.where(bad, "failed", status)
    if reason is None:
        reason = np.where(bad, "non-finite misfit", "")
    return mis, res, status, reason

