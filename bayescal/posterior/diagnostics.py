"""Convergence diagnostics and emulator-trust checks of a posterior."""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from typing import Any

import arviz as az
import numpy as np
import xarray as xr

from .errors import PosteriorWarning
from .inference_data import get_group

__all__ = ["diagnose", "emulator_trust", "integrated_time"]


def _some(labels: list[str], shown: int = 5) -> str:
    """The first ``shown`` labels, and how many more there are."""
    more = f" and {len(labels) - shown} more" if len(labels) > shown else ""
    return f"{labels[:shown]}{more}"


def _rhat_expected(attrs: dict) -> float:
    """``sqrt(1 + 4 tau_max / N)`` from a posterior's chain attributes (1.0 without them)."""
    try:
        kept = float(attrs["n_steps"]) - float(attrs.get("burn", 0))
        tau = float(attrs["tau_max"])
    except (KeyError, TypeError, ValueError):
        return 1.0
    if not (kept > 0 and np.isfinite(tau) and tau > 0):
        return 1.0
    # at least 50 tau (the chains' own stopping rule): a shorter chain's bound is not looser
    return float(np.sqrt(1.0 + 4.0 * tau / max(kept, 50.0 * tau)))


@contextmanager
def _arviz_quiet():
    """ArviZ's (0.2x) logger held at ERROR for the block, then as it was (its own ``Logger``
    object, ``arviz._log``, is not the one ``logging.getLogger("arviz")`` returns)."""
    logger = getattr(az, "_log", None) or logging.getLogger("arviz")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def diagnose(idata: Any, rhat_max: float = 1.01, ess_min: float = 400) -> xr.Dataset:
    """R-hat, bulk and tail ESS per parameter value; warns when any is out of bounds.

    ``idata`` is an InferenceData of ArviZ 0.2x or 1.x (or a posterior Dataset). Walkers are
    treated as chains (as ``arviz.from_emcee`` does); emcee's walkers are not independent, so
    also look at the autocorrelation times in the posterior's attributes (kept in the result's).

    The R-hat bound is ``rhat_max`` or, if larger, what converged chains of this length show:
    split R-hat is about ``sqrt(1 + 2 tau / N)`` for stationary chains of ``N`` kept steps with
    autocorrelation time ``tau`` (each half-chain's mean has variance ``var * 2 tau / N``), so a
    chain of 50 tau is at 1.02 however well it mixes (Vehtari et al. 2021's 1.01 assumes each
    chain's ESS is in the hundreds). With ``tau_max``, ``n_steps`` and ``burn`` in the
    posterior's attributes the bound is ``max(rhat_max, sqrt(1 + 4 tau_max / max(N, 50 tau_max)))``:
    twice the excess a converged chain of that length shows, at most 1.039 (a chain shorter than
    50 tau is not given a looser bound; it is warned of as short besides), which walkers stuck in
    another part of the posterior still exceed. ``tests/test_posterior.py`` checks both on AR(1)
    chains.
    """
    post = idata if isinstance(idata, xr.Dataset) else get_group(idata, "posterior")
    rhat_max = max(rhat_max, _rhat_expected(post.attrs))
    with _arviz_quiet():  # its "shape validation failed" log lines for a few draws: our warning says it
        rhat = az.rhat(post)
        ess_b = az.ess(post, method="bulk")
        ess_t = az.ess(post, method="tail")
    rows = []
    for var in post.data_vars:
        r, eb, et = rhat[var], ess_b[var], ess_t[var]
        if r.ndim:
            dim = r.dims[0]
            for k in range(r.sizes[dim]):
                rows.append((f"{var}[{r[dim].values[k]}]", float(r[k]), float(eb[k]), float(et[k])))
        else:
            rows.append((var, float(r), float(eb), float(et)))
    labels, r, eb, et = zip(*rows, strict=True)
    ds = xr.Dataset(
        {
            "r_hat": ("parameter", list(r)),
            "ess_bulk": ("parameter", list(eb)),
            "ess_tail": ("parameter", list(et)),
        },
        coords={"parameter": list(labels)},
    )
    bad_r = [lab for lab, v in zip(labels, r, strict=True) if not v <= rhat_max]
    bad_e = [lab for lab, v in zip(labels, eb, strict=True) if not v >= ess_min]
    if bad_r or bad_e:
        n_draws = post.sizes.get("draw", 0)
        few = (f"R-hat and ESS not computable: {n_draws} draw(s) kept per walker (ArviZ needs 4); "
               if not np.isfinite(np.asarray(r, float)).any() else "")
        warnings.warn(
            (few or ((f"R-hat > {rhat_max:.4g} for {_some(bad_r)}; " if bad_r else "")
                     + (f"bulk ESS < {ess_min:g} for {_some(bad_e)}; " if bad_e else "")))
            + "run the chains longer before trusting these estimates",
            PosteriorWarning,
            stacklevel=2,
        )
    for k in ("n_steps", "n_walkers", "burn", "thin", "tau_max", "tau_min", "tau_from"):
        if k in post.attrs:
            ds.attrs[k] = post.attrs[k]
    ds.attrs.update(rhat_max=rhat_max, ess_min=ess_min, ok=int(not (bad_r or bad_e)),
                    n_draws=int(post.sizes.get("chain", 1) * post.sizes.get("draw", 0)))
    ds["r_hat"].attrs["long_name"] = "rank-normalised split R-hat (walkers as chains)"
    ds["ess_bulk"].attrs["long_name"] = "bulk effective sample size"
    ds["ess_tail"].attrs["long_name"] = "tail effective sample size"
    return ds


def emulator_trust(
    u: Any, X_train: np.ndarray, likelihood: Any = None, ratio_max: float = 1.0, fraction_max: float = 0.1
) -> dict[str, float]:
    """Where does posterior mass sit relative to the emulator's training data?

    Returns the fractions of posterior samples (unit cube) that lie outside the training
    design's bounding box, that are farther from any training point than 95 % of training
    points are from their nearest neighbour (a cheap proxy for "outside the training hull"),
    and, with a likelihood that has ``emulator_ratio``, whose emulator sd exceeds ``ratio_max``
    times the likelihood's own scale. Warns when any fraction exceeds ``fraction_max``.
    """
    u = np.asarray(u.values if isinstance(u, xr.DataArray) else u, dtype=float)
    X = np.asarray(X_train, dtype=float)
    lo, hi = X.min(0), X.max(0)
    outside_box = float(np.mean(np.any((u < lo) | (u > hi), axis=1)))
    d_train = _nearest(X, X, exclude_self=True)
    d_post = _nearest(u, X)
    far = float(np.mean(d_post > np.quantile(d_train, 0.95)))
    out = {"outside_box": outside_box, "far_from_training": far}
    if likelihood is not None and hasattr(likelihood, "emulator_ratio"):
        out["emulator_uncertain"] = float(np.mean(likelihood.emulator_ratio(u) > ratio_max))
    bad = {k: v for k, v in out.items() if v > fraction_max}
    if bad:
        warnings.warn(
            f"posterior mass where the emulator is not trustworthy: {bad}; add simulator runs there "
            "(refine) before trusting the posterior",
            PosteriorWarning,
            stacklevel=2,
        )
    return out


def _nearest(A: np.ndarray, B: np.ndarray, exclude_self: bool = False, chunk: int = 2048) -> np.ndarray:
    out = np.empty(A.shape[0])
    b2 = (B * B).sum(1)
    for i in range(0, A.shape[0], chunk):
        a = A[i : i + chunk]
        d2 = (a * a).sum(1)[:, None] + b2[None] - 2 * a @ B.T
        if exclude_self:
            d2[np.arange(a.shape[0]), np.arange(i, i + a.shape[0])] = np.inf
        out[i : i + chunk] = np.sqrt(np.maximum(d2.min(1), 0))
    return out


def integrated_time(chain: np.ndarray, c: float = 5.0, max_bytes: float = 2e7) -> np.ndarray:
    """Integrated autocorrelation time per parameter of an ensemble chain (steps, walkers, params).

    emcee's estimate (:func:`emcee.autocorr.integrated_time` with ``tol=0``: the walkers' mean
    normalised autocorrelation function, Sokal's window with ``c``), with the FFTs of all walkers
    of a block of parameters at once instead of one series at a time: a 92-parameter chain of
    186 walkers made 17,000 calls to emcee's per estimate, 2.4x slower (6,000 steps x 186 walkers x
    20 parameters: 2.28 s against 0.96 s; ``tests/test_posterior.py`` checks the two agree). Blocks
    hold at most ``max_bytes`` of transforms (a few parameters: the work stays in cache). A walker
    that stays put through the chain counts as fully correlated (its normalised autocorrelation 1 at
    every lag), so it lengthens tau where emcee's estimate is NaN: the 50-tau rule then says the
    chain has not converged instead of leaving the value out. Where no lag is beyond ``c`` tau
    (the chain shorter than ``c`` tau), tau is the last lag's estimate; emcee's is 1 there.
    """
    x = np.asarray(chain, dtype=float)
    n_t, n_w, n_d = x.shape
    n_fft = 2 * (1 << max(0, int(np.ceil(np.log2(n_t)))))
    block = max(1, int(max_bytes // (16 * (n_fft // 2 + 1) * n_w)))
    tau = np.empty(n_d)
    for d0 in range(0, n_d, block):
        y = np.ascontiguousarray(np.moveaxis(x[:, :, d0:d0 + block], 0, -1))  # (walker, param, step)
        f = np.fft.rfft(y - y.mean(axis=-1, keepdims=True), n=n_fft, axis=-1)
        acf = np.fft.irfft(f.real**2 + f.imag**2, n=n_fft, axis=-1)[..., :n_t]
        moved = (y.max(axis=-1) > y.min(axis=-1))[..., None]
        with np.errstate(invalid="ignore", divide="ignore"):
            acf = acf / acf[..., :1]
        # a walker that never moved in the window (emcee's estimate: NaN) is as correlated as can be
        acf = np.where(moved, acf, 1.0).mean(axis=0).T  # (n_t, block): the walkers' mean
        taus = 2.0 * np.cumsum(acf, axis=0) - 1.0
        inside = np.arange(n_t)[:, None] < c * taus
        # emcee's window is argmin(inside) if inside.any(); but lag 0 is always inside, so a chain
        # never past c tau got emcee's tau of lag 0, 1 step: here it gets the longest, as it should
        window = np.where(inside.all(axis=0), n_t - 1, np.argmin(inside, axis=0))
        tau[d0:d0 + block] = taus[window, np.arange(taus.shape[1])]
    return tau
