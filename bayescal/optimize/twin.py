"""Twin-experiment metrics of Oliver et al.: baseline misfit, evaluations to reach it, parameter recovery."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from ..observations.products import Observations
from ..operators.scores import residuals as residual_vector
from ..operators.scores import score
from .objective import OptimizeError

__all__ = ["baseline_misfit", "evaluations_to_baseline", "recovery"]


def baseline_misfit(
    truth: xr.Dataset,
    realisations: Sequence[Observations],
    measure: str = "residuals",
    regions: xr.DataArray | None = None,
) -> xr.DataArray:
    """Misfit of the noise alone (Oliver et al. Sect. 2.5): the true run against noisy products.

    Parameters
    ----------
    truth : xarray.Dataset
        Noise-free simulation at the true parameters (with or without a ``member`` dimension).
    realisations : sequence of Observations
        Noisy products, one set per noise realisation (e.g. ``make_twin`` with different seeds).
    measure : {"residuals", "score"}

    Returns
    -------
    xarray.DataArray
        Misfit per realisation; ``attrs["mean"]`` is the baseline (their average).
    """
    if not realisations:
        raise OptimizeError("baseline_misfit: give at least one noise realisation")
    sim = truth if "member" in truth.dims else truth.expand_dims(member=[0])
    vals = []
    for obs in realisations:
        if measure == "residuals":
            vals.append(float((residual_vector(sim, obs, regions) ** 2).sum("residual").values[0]))
        elif measure == "score":
            vals.append(float(score(sim, obs)["misfit"].values[0]))
        else:
            raise OptimizeError(f"measure must be 'residuals' or 'score', got {measure!r}")
    out = xr.DataArray(np.array(vals), dims="realisation", name="baseline_misfit")
    out.attrs["mean"] = float(np.mean(vals))
    return out


def _select_start(history: xr.Dataset, start: int | None) -> xr.Dataset:
    if start is None:
        return history
    return history.isel(member=np.flatnonzero(history["start"].values == start))


def evaluations_to_baseline(history: xr.Dataset, baseline: float, start: int | None = None) -> int | None:
    """Number of evaluations until the misfit first reaches ``baseline`` (None if never).

    With ``start``, only that DFO-LS start's evaluations are counted.
    """
    h = _select_start(history, start)
    mis = h["misfit"].values
    hit = np.flatnonzero(np.isfinite(mis) & (mis <= baseline))
    return int(hit[0] + 1) if hit.size else None


def recovery(
    history: xr.Dataset,
    truth_u: np.ndarray,
    tolerance: float = 0.05,
    start: int | None = None,
) -> xr.Dataset:
    """Parameter recovery (Oliver et al.): recovered once every later improving evaluation stays close.

    Improving ("successful") evaluations are those that lower the best misfit so far. A parameter
    counts as recovered at the first improving evaluation after which every improving evaluation
    lies within ``tolerance`` (fraction of the parameter's range) of the truth.

    Returns
    -------
    xarray.Dataset
        ``recovered`` (parameter, bool), ``evaluations`` (parameter; evaluations needed, NaN if
        not recovered) and ``final_error`` (unit-cube distance of the best point to the truth).
    """
    h = _select_start(history, start)
    truth_u = np.asarray(truth_u, dtype=float)
    u = h["u"].values
    if truth_u.shape != (u.shape[1],):
        raise OptimizeError(f"truth_u must have {u.shape[1]} values, got {truth_u.shape}")
    mis = np.where(np.isfinite(h["misfit"].values), h["misfit"].values, np.inf)
    prev = np.concatenate([[np.inf], np.minimum.accumulate(mis)[:-1]])
    improving = np.flatnonzero(mis < prev)
    close = np.abs(u[improving] - truth_u) <= tolerance  # (n_improving, d)
    # from the end: all later improving evaluations close
    tail_ok = np.flip(np.logical_and.accumulate(np.flip(close, axis=0), axis=0), axis=0)
    recovered = tail_ok[-1] if improving.size else np.zeros(u.shape[1], dtype=bool)
    evals = np.full(u.shape[1], np.nan)
    # tail_ok is monotone in time (once all later ones are close it stays so): first True per column
    evals[recovered] = improving[np.argmax(tail_ok[:, recovered], axis=0)] + 1
    err = np.abs(u[improving[-1]] - truth_u) if improving.size else np.full(u.shape[1], np.nan)
    return xr.Dataset(
        {"recovered": ("parameter", recovered), "evaluations": ("parameter", evals),
         "final_error": ("parameter", err)},
        coords={"parameter": h["parameter"].values},
        attrs={"tolerance": tolerance, "n_recovered": int(recovered.sum())},
    )

