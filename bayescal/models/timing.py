"""How long a model's run takes, for ``bayescal check``'s estimates: one run at the defaults, and
its time per member in the batches the runner and the chains give it (whose members are checked
to finish as the single run did)."""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import xarray as xr

from .contract import ModelOutputError

__all__ = ["seconds_per_member", "timed_run"]


def timed_run(model: Any, theta: np.ndarray, again_below: float = 10.0) -> tuple[Any, float]:
    """``model(theta)`` and the seconds one run takes, for ``bayescal check``'s estimates.

    A run under ``again_below`` seconds is timed once more and the shorter time kept: a first
    call may compile (numba's cold cache takes seconds for DALEC) or read its files. Pass
    ``again_below = 0`` for a model whose second call would not run again (an external program's
    outputs are kept by parameter values: the second call only reads them).

    Parameters
    ----------
    model : callable
        ``model(theta)``.
    theta : ndarray, shape (1, n_values)
        Where to run it.
    again_below : float
        Seconds under which the run is timed a second time.

    Returns
    -------
    output, seconds : (the model's output, float)
    """
    t0 = time.perf_counter()
    out = model(theta)
    seconds = time.perf_counter() - t0
    if seconds < again_below:
        t0 = time.perf_counter()
        model(theta)
        seconds = min(seconds, time.perf_counter() - t0)
    return out, seconds


def seconds_per_member(model: Any, theta: np.ndarray, one: float, batch: int = 32) -> float:
    """Seconds per member when the runner hands ``model`` batches, for ``bayescal check``'s estimates.

    ``one`` is a single run's time. A model that takes under 0.5 s is timed once more on ``batch``
    copies of ``theta`` (1, n_values) in one call: a vectorised model (DALEC, the embedded global
    model) runs a batch in little more than one run's time, and a chain's walkers or a design are
    batches. A slower model is taken at ``one``: its runs cost what they cost. The batch's members
    are copies of a run that finished: all failing in the batch is a :class:`ModelOutputError` with
    a reason (a model that runs a batch otherwise than one run), some failing a warning.
    """
    if one >= 0.5:
        return one
    theta = np.asarray(theta, dtype=float)
    model(theta)  # a first call may compile or read files: not a member's cost
    t0 = time.perf_counter()
    out = model(np.repeat(theta, batch, axis=0))
    seconds = (time.perf_counter() - t0) / batch
    if isinstance(out, xr.Dataset) and "status" in out:
        failed = np.flatnonzero(out["status"].values != "done")
        if failed.size:
            reason = str(out["reason"].values[failed[0]]) if "reason" in out else ""
            said = (f"{failed.size} of its {batch} members failed, though each is the run at the defaults "
                    f"that finished alone (member {failed[0]}: {reason})")
            if failed.size == batch:
                raise ModelOutputError(said)
            warnings.warn(f"the model given a batch of {batch} copies of its defaults: {said}", UserWarning,
                          stacklevel=2)
    return min(one, seconds)
