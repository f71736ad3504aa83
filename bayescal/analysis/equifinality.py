"""Equifinality: where the data leave parameters free, and which trade-offs keep the fit.

All analyses work in unit-cube coordinates of the free parameters, so parameters with different
units and ranges are comparable.

* :func:`correlation` and :func:`strongest_pairs` — posterior correlation structure.
* :func:`pca` — principal components of posterior (or near-optimal) samples: how many
  directions hold 90 % of the variance, and their loadings.
* :func:`normalized_distance` — Seiler's Eq. 18, ``d = sqrt(sum (u_i - u*_i)^2) / sqrt(p)``.
* :func:`distance_score_cloud` — emulated score against distance to the optimum for a global or
  a local (+/- 10 %) Latin hypercube (Seiler Fig. 6b, c).
* :func:`top_fraction_pca` — Seiler's procedure: best 10 % of runs -> their range -> Latin
  hypercube of 5,000 -> emulate -> best 10 % -> PCA.
* :func:`alternatives` — k distinct parameter sets of near-optimal score (Seiler's five).
* :func:`identifiability` — posterior sd / prior sd per parameter; ``constrained`` below 0.5.
* :func:`constrained_directions` — the combinations of parameters the data fix: the directions
  along which the posterior sd is below half the prior's, however spread over many values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from scipy.stats import qmc

from ..parameters import UNIT_CUBE

__all__ = [
    "correlation",
    "strongest_pairs",
    "pca",
    "normalized_distance",
    "distance_score_cloud",
    "top_fraction_pca",
    "seiler_alternatives",
    "alternatives",
    "identifiability",
    "constrained_directions",
]


def _samples(u: Any) -> tuple[np.ndarray, list[str]]:
    if isinstance(u, xr.DataArray):
        labels = [str(v) for v in u["parameter"].values] if "parameter" in u.coords else None
        arr = u.transpose(..., "parameter").values if "parameter" in u.dims else u.values
    else:
        arr, labels = np.asarray(u, dtype=float), None
    arr = np.atleast_2d(arr)
    return arr, labels or [f"x{j}" for j in range(arr.shape[1])]


def correlation(u: Any) -> xr.DataArray:
    """Correlation matrix of samples (sample, parameter) on (parameter, parameter2)."""
    x, labels = _samples(u)
    c = np.corrcoef(x, rowvar=False)
    return xr.DataArray(
        c,
        dims=("parameter", "parameter2"),
        coords={"parameter": labels, "parameter2": labels},
        name="correlation",
    )


def strongest_pairs(corr: xr.DataArray, k: int = 10) -> list[tuple[str, str, float]]:
    """The ``k`` parameter pairs with the largest absolute correlation, strongest first."""
    c = corr.values
    i, j = np.triu_indices_from(c, 1)
    order = np.argsort(-np.abs(c[i, j]))[:k]
    labels = corr["parameter"].values
    return [(str(labels[i[o]]), str(labels[j[o]]), float(c[i[o], j[o]])) for o in order]


def pca(u: Any, variance: float = 0.9) -> xr.Dataset:
    """Principal components of samples in unit-cube space.

    Returns ``explained_variance_ratio`` on ``component``, ``loadings`` on (component,
    parameter) (unit vectors), and attribute ``n_components`` = the fewest components holding
    ``variance`` of the total.
    """
    x, labels = _samples(u)
    xc = x - x.mean(0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    ratio = s**2 / np.sum(s**2)
    n = int(np.searchsorted(np.cumsum(ratio), variance - 1e-12) + 1)
    return xr.Dataset(
        {"explained_variance_ratio": ("component", ratio), "loadings": (("component", "parameter"), vt)},
        coords={"component": np.arange(1, len(ratio) + 1), "parameter": labels},
        attrs={"n_components": n, "variance": variance},
    )


def normalized_distance(u: Any, u_star: Any) -> np.ndarray:
    """Seiler's Eq. 18: Euclidean distance in the unit cube divided by sqrt(number of parameters)."""
    x, _ = _samples(u)
    ref = np.asarray(u_star, dtype=float).reshape(-1)
    if ref.size != x.shape[1]:
        raise ValueError(f"reference point has {ref.size} parameters, samples have {x.shape[1]}")
    return np.sqrt(((x - ref) ** 2).sum(1)) / np.sqrt(x.shape[1])


def distance_score_cloud(
    emulator: Any,
    u_star: Any,
    n: int = 50_000,
    local: float | None = None,
    seed: int | np.random.Generator | None = 0,
    relative_to: str = "range",
    space: Any = None,
) -> xr.Dataset:
    """Emulated score vs Eq. 18 distance to ``u_star`` for a Latin hypercube of ``n`` points.

    ``local=None`` samples the whole unit cube (Seiler's global cloud); ``local=0.1`` samples a
    box around the optimum clipped to the bounds (the local cloud): ``u_star +/- 10 %`` of each
    parameter's range (``relative_to="range"``) or its physical value ``x* (1 +/- 10 %)``
    (``relative_to="value"``, needs the ``space``; Seiler's "±10 %" read as of the value).
    Returns ``distance``,
    ``mean`` and ``sd`` on ``point``, and the Spearman correlation of distance and mean as an
    attribute (near 0 = equifinality; strongly monotone = a global optimum).
    """
    from scipy.stats import spearmanr

    ref = np.asarray(u_star, dtype=float).reshape(-1)
    d = ref.size
    lo, hi = np.zeros(d), np.ones(d)
    if local is not None and relative_to == "range":
        lo, hi = np.clip(ref - local, 0, 1), np.clip(ref + local, 0, 1)
    elif local is not None and relative_to == "value":
        if space is None:
            raise ValueError("relative_to='value' needs the parameter space")
        x = space.from_unit(ref)
        a, b = np.clip(np.sort([x * (1 - local), x * (1 + local)], axis=0), space.lower, space.upper)
        lo, hi = space.to_unit(a), space.to_unit(b)
    elif local is not None:
        raise ValueError(f"relative_to must be 'range' or 'value', got {relative_to!r}")
    u = lo + qmc.LatinHypercube(d=d, seed=seed).random(n) * (hi - lo)
    mean, sd = emulator.predict(u, return_std=True)
    dist = normalized_distance(u, ref)
    rho = spearmanr(dist, mean).statistic
    return xr.Dataset(
        {
            "distance": ("point", dist),
            "mean": ("point", np.asarray(mean)),
            "sd": ("point", np.asarray(sd)),
            "u": (("point", "parameter"), u, UNIT_CUBE),
        },
        attrs={"spearman": float(rho), "local": "global" if local is None else float(local),
               "relative_to": relative_to},
    )


def top_fraction_pca(
    emulator: Any,
    u_runs: Any,
    scores: Any,
    fraction: float = 0.1,
    n: int = 5000,
    lower_is_better: bool = True,
    variance: float = 0.9,
    seed: int | np.random.Generator | None = 0,
) -> xr.Dataset:
    """Seiler's procedure: best ``fraction`` of the runs -> the range they span -> Latin
    hypercube of ``n`` -> emulated -> best ``fraction`` -> :func:`pca`.

    Returns the PCA Dataset with the selected points (``u_top``, best first), their emulated
    scores (``score_top``) and the box (``box_lower``, ``box_upper``) added. Seiler's five
    alternative sets are the first five of ``u_top`` (:func:`seiler_alternatives`).
    """
    x, labels = _samples(u_runs)
    y = np.asarray(scores, dtype=float).reshape(-1)
    sign = 1.0 if lower_is_better else -1.0
    k = max(2, int(round(fraction * len(y))))
    best = x[np.argsort(sign * y)[:k]]
    lo, hi = best.min(0), best.max(0)
    hi = np.where(hi > lo, hi, np.minimum(lo + 1e-6, 1))
    u = lo + qmc.LatinHypercube(d=x.shape[1], seed=seed).random(n) * (hi - lo)
    pred = np.asarray(emulator.predict(u)).reshape(-1)
    m = max(2, int(round(fraction * n)))
    order = np.argsort(sign * pred, kind="stable")[:m]
    top = u[order]
    out = pca(xr.DataArray(top, dims=("sample", "parameter"), coords={"parameter": labels}), variance)
    out["u_top"] = (("sample", "parameter"), top)
    out["score_top"] = ("sample", pred[order])
    out["box_lower"] = ("parameter", lo)
    out["box_upper"] = ("parameter", hi)
    return out


def seiler_alternatives(top: xr.Dataset, u_star: Any, k: int = 5) -> xr.Dataset:
    """Seiler's alternative sets: the ``k`` best emulated sets of the :func:`top_fraction_pca`
    ensemble, with their Eq. 18 distance to the optimum ``u_star``."""
    if top.sizes["sample"] < k:
        raise ValueError(f"the top-fraction ensemble has {top.sizes['sample']} sets; need {k}")
    u = top["u_top"].values[:k]
    return xr.Dataset(
        {"u": (("alternative", "parameter"), u, UNIT_CUBE),
         "score": ("alternative", top["score_top"].values[:k]),
         "distance": ("alternative", normalized_distance(u, np.asarray(u_star, float)))},
        coords={"alternative": np.arange(1, k + 1), "parameter": top["parameter"].values},
        attrs={"procedure": "Seiler: top 10 % of runs -> box -> LHS -> emulator -> top 10 % -> best k"},
    )


def alternatives(
    u: Any, scores: Any, k: int = 5, tolerance: float | None = None, lower_is_better: bool = True
) -> xr.Dataset:
    """``k`` mutually distant parameter sets whose score is within ``tolerance`` of the best.

    Greedy farthest-point selection starting from the best point among candidates with
    ``score <= best + tolerance`` (default tolerance: the 5 % quantile spread of the scores).
    Returns ``u`` on (alternative, parameter), their ``score``, and the smallest pairwise Eq. 18
    distance as attribute ``min_distance``.
    """
    x, labels = _samples(u)
    y = np.asarray(scores, dtype=float).reshape(-1)
    s = y if lower_is_better else -y
    best = int(np.argmin(s))
    if tolerance is None:
        tolerance = float(np.quantile(s, 0.05) - s[best])
    cand = np.flatnonzero(s <= s[best] + tolerance)
    if cand.size < k:
        raise ValueError(f"only {cand.size} candidates within tolerance {tolerance:g} of the best; need {k}")
    chosen = [best]
    dmin = normalized_distance(x[cand], x[best])
    for _ in range(k - 1):
        j = int(cand[np.argmax(dmin)])
        chosen.append(j)
        dmin = np.minimum(dmin, normalized_distance(x[cand], x[j]))
    pair = min(
        normalized_distance(x[a][None], x[b])[0] for i, a in enumerate(chosen) for b in chosen[i + 1 :]
    )
    return xr.Dataset(
        {"u": (("alternative", "parameter"), x[chosen], UNIT_CUBE), "score": ("alternative", y[chosen])},
        coords={"alternative": np.arange(1, k + 1), "parameter": labels},
        attrs={"tolerance": tolerance, "min_distance": float(pair)},
    )


def identifiability(posterior_u: Any, prior_sd: Any, threshold: float = 0.5) -> xr.Dataset:
    """Posterior sd / prior sd per parameter (unit-cube coordinates).

    ``constrained`` where the ratio is below ``threshold`` (the data halve the uncertainty or
    better); ratios near 1 mean the data leave the parameter free.
    """
    x, labels = _samples(posterior_u)
    psd = np.broadcast_to(np.asarray(prior_sd, dtype=float), (x.shape[1],))
    ratio = x.std(0) / psd
    q = np.quantile(x, [0.05, 0.5, 0.95], axis=0)
    return xr.Dataset(
        {
            "posterior_sd": ("parameter", x.std(0)),
            "prior_sd": ("parameter", psd),
            "ratio": ("parameter", ratio),
            "constrained": ("parameter", ratio < threshold),
            "q05": ("parameter", q[0]),
            "q50": ("parameter", q[1]),
            "q95": ("parameter", q[2]),
        },
        coords={"parameter": labels},
        attrs={"threshold": threshold, "units": "unit cube"},
    )


def constrained_directions(posterior_u: Any, prior_sd: Any, threshold: float = 0.5) -> xr.Dataset:
    """The directions the data fix: eigen-directions of the posterior covariance in prior-sd units.

    With ``W = diag(1 / prior_sd)``, the eigenvalues of ``W C W`` (``C`` the posterior covariance,
    unit cube) are the posterior variance along each direction over the prior's; their square roots,
    ``sd_ratio``, sorted from the most constrained. A direction with ``sd_ratio < threshold`` is
    fixed by the data even when no single value is (every marginal can stay near its prior while a
    combination of many values is pinned: equifinality).

    Returns
    -------
    xarray.Dataset
        ``sd_ratio`` on ``direction`` (1 = the most constrained) and ``loadings`` on (direction,
        parameter): unit vectors in prior-sd coordinates, the sign fixed so that the largest loading
        is positive. Attributes ``n_constrained`` (directions below ``threshold``), ``threshold``.
    """
    x, labels = _samples(posterior_u)
    psd = np.broadcast_to(np.asarray(prior_sd, dtype=float), (x.shape[1],))
    z = (x - x.mean(0)) / psd
    lam, vec = np.linalg.eigh(z.T @ z / max(x.shape[0] - 1, 1))
    ratio = np.sqrt(np.clip(lam, 0.0, None))
    vec = vec.T  # (direction, parameter), ascending sd ratio from eigh
    lead = np.argmax(np.abs(vec), axis=1)
    vec *= np.sign(vec[np.arange(vec.shape[0]), lead])[:, None]
    return xr.Dataset(
        {"sd_ratio": ("direction", ratio), "loadings": (("direction", "parameter"), vec)},
        coords={"direction": np.arange(1, ratio.size + 1), "parameter": labels},
        attrs={"n_constrained": int((ratio < threshold).sum()), "threshold": threshold,
               "units": "prior sd"},
    )
