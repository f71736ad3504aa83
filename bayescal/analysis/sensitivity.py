"""Global sensitivity analysis and parameter screening, through SALib and the ensemble runner.

Sample/analyze pairs as in SALib, on a :class:`~bayescal.parameters.ParameterSpace`:

* :func:`sample` draws a Sobol' (Saltelli), Morris or FAST design in the unit cube of the free
  values (SALib's samplers, not re-implemented) and returns full physical parameter vectors;
* :func:`evaluate` runs any simulator over it — the embedded model, an
  :class:`~bayescal.models.external.ExternalModel`, an emulator — directly or through
  :func:`~bayescal.run.ensemble.run_ensemble` (parallel, failure-tolerant, resumable), and reduces each
  member's output to scalar *targets* (global mean GPP, NBP trend, a skill score ...);
* :func:`analyze` computes the indices with SALib for every target at once and returns them as an
  xarray Dataset on (parameter, target, index).

Failed members
--------------
Sobol' and Morris estimators are built from blocks of the design: a Saltelli block is one base
row with its ``d + 2`` (or ``2d + 2``) cross rows, a Morris block one trajectory. A failed member
breaks its block. ``on_failure="raise"`` (the default) refuses to compute indices when any member
failed and says how many; ``on_failure="drop"`` removes every block with a failed member and
analyses the complete blocks that remain — the indices are then those of the model over the
region where it runs, which equals the unconditional answer when failures do not depend on the
parameters, and is stated in the result's attributes. Indices are never computed from a design
with holes. FAST needs the whole design and always refuses.

Groups: ``groups=True`` treats each parameter family (``vmax`` with its nine PFT values, say) as
one factor, as SALib's grouped Sobol' and Morris allow.

Screening: :func:`screen` keeps the parameters whose total index (lower confidence bound, by
default) exceeds a threshold, or the top-k, for any or all targets, and
``space.only(labels)`` gives the reduced space with the rest fixed at their defaults.

The one-at-a-time screen of the CLM5 paper (Dagon et al.) is :func:`one_at_a_time`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from SALib.analyze import fast as fast_analyze
from SALib.analyze import morris as morris_analyze
from SALib.analyze import sobol as sobol_analyze
from SALib.sample import fast_sampler
from SALib.sample import morris as morris_sample
from SALib.sample import sobol as sobol_sample

from ..parameters import ParameterSpace, family
from ..parameters.design import int_seed
from ..run.ensemble import member_status

__all__ = [
    "SensitivityError",
    "salib_problem",
    "sample",
    "evaluate",
    "analyze",
    "screen",
    "oat_design",
    "one_at_a_time",
]

METHODS = ("sobol", "morris", "fast")
#: The index :func:`screen` and the figures use by default, per method.
DEFAULT_INDEX = {"sobol": "ST", "fast": "ST", "morris": "mu_star", "oat": "effect"}
#: The indices :func:`analyze` returns, per method.
_INDEX_NAMES = {"sobol": ["S1", "S1_conf", "ST", "ST_conf"], "fast": ["S1", "S1_conf", "ST", "ST_conf"],
                "morris": ["mu", "mu_star", "mu_star_conf", "sigma"]}


class SensitivityError(ValueError):
    """A sensitivity analysis that cannot give trustworthy indices; the message says why."""


def salib_problem(space: ParameterSpace, groups: bool | Mapping[str, str] = False) -> dict:
    """The SALib problem of the free values, in unit-cube coordinates.

    Parameters
    ----------
    groups : bool or mapping
        ``True``: one group per parameter family; a mapping: label -> group name.
    """
    problem = {"num_vars": space.n_free, "names": space.labels, "bounds": [[0.0, 1.0]] * space.n_free}
    if groups is True:
        problem["groups"] = [family(lab) for lab in space.labels]
    elif isinstance(groups, Mapping):
        missing = [lab for lab in space.labels if lab not in groups]
        if missing:
            raise SensitivityError(f"groups: no group given for {missing[:5]}")
        problem["groups"] = [groups[lab] for lab in space.labels]
    return problem


def _factor_names(problem: dict) -> list[str]:
    return list(dict.fromkeys(problem["groups"])) if problem.get("groups") else list(problem["names"])


def sample(
    space: ParameterSpace,
    method: str,
    n: int,
    seed: int | np.random.Generator | None = None,
    groups: bool | Mapping[str, str] = False,
    calc_second_order: bool = False,
    num_levels: int = 4,
) -> xr.DataArray:
    """A sensitivity design, as full physical parameter vectors on (member, parameter).

    Parameters
    ----------
    method : {"sobol", "morris", "fast"}
    n : int
        Sobol': base sample size N (a power of two; N (D + 2) members, N (2D + 2) with second order,
        D the number of factors); Morris: trajectories, at least 2 (N (D + 1) members); FAST:
        samples per factor, at least 65 (N D members).
    seed : int or numpy.random.Generator, optional
        SALib takes an int: a Generator gives one (its next draw).
    groups, calc_second_order, num_levels
        As in SALib.

    Returns
    -------
    xarray.DataArray
        Full vectors (``space.all_labels``), with the unit-cube design and the settings in
        ``attrs`` / the ``u`` coordinate so that :func:`analyze` can rebuild the problem.
    """
    if method not in METHODS:
        raise SensitivityError(f"unknown method {method!r}; use one of {METHODS}")
    problem = salib_problem(space, groups)
    grouped = bool(problem.get("groups"))  # before sampling: SALib's samplers may add "groups"
    least = {"sobol": 1, "morris": 2, "fast": 65}[method]  # FAST: N > 4 M^2 with SALib's M = 4
    if not isinstance(n, (int, np.integer)) or n < least:
        raise SensitivityError(f"{method}: n must be an integer >= {least}, got {n!r}")
    seed = int_seed(seed)
    if method == "sobol":
        if n & (n - 1):
            raise SensitivityError(f"Sobol' base sample size must be a power of two, got {n}")
        u = sobol_sample.sample(dict(problem), n, calc_second_order=calc_second_order, seed=seed)
    elif method == "morris":
        u = morris_sample.sample(dict(problem), n, num_levels=num_levels, seed=seed)
    else:
        if grouped:
            raise SensitivityError("FAST does not support groups")
        u = fast_sampler.sample(dict(problem), n, seed=seed)
    u = np.clip(u, 0.0, 1.0)
    da = space.to_dataarray(space.expand(space.from_unit(u)), full=True)
    u_full = np.full((u.shape[0], space.n_values), np.nan)  # the exact unit-cube design, NaN if fixed
    u_full[:, space.free_index] = u
    da = da.assign_coords(u=(("member", "parameter"), u_full))
    da.attrs = {
        "method": method,
        "n": int(n),
        "seed": -1 if seed is None else int(seed),
        "groups": int(grouped),
        "calc_second_order": int(calc_second_order),
        "num_levels": int(num_levels),
        "free_labels": "\n".join(space.labels),
    }
    return da


def evaluate(
    simulator: Callable[[np.ndarray], xr.Dataset],
    design: xr.DataArray,
    targets: Mapping[str, Callable[[xr.Dataset], xr.DataArray]],
    store: str | Path | None = None,
    executor=None,
    batch_size: int = 32,
    progress: bool = False,
    keep: Sequence[str] | None = None,
) -> xr.Dataset:
    """Run ``simulator`` over ``design`` and reduce each member to scalar targets.

    Parameters
    ----------
    simulator : callable
        ``simulator(theta) -> Dataset`` (the embedded model, an external model, an emulator).
    design : xarray.DataArray
        From :func:`sample` (full vectors on member, parameter).
    targets : mapping of name to callable
        Each maps the simulation Dataset (member, ...) to a DataArray on ``member``.
    store : path, optional
        Run through :func:`~bayescal.run.ensemble.run_ensemble` into this store (parallel, resumable,
        failures kept); the targets are computed from the stored outputs.
    executor, batch_size, progress
        Passed to the runner (``executor`` needs ``store``).
    keep : sequence of str, optional
        Output variables the store keeps (default all; name the ones the targets use, e.g.
        ``["gpp_global", "nbp_global"]``, to keep the store small).

    Returns
    -------
    xarray.Dataset
        ``y`` on (member, target) — NaN for failed members — and ``status``/``reason`` on member.
    """
    if not targets:
        raise SensitivityError("give at least one target")
    if store is not None:
        from ..run.ensemble import EnsembleStore, run_ensemble

        run_ensemble(simulator, design, store, executor=executor, batch_size=batch_size,
                     progress=progress, keep=keep)
        ds = EnsembleStore(store).load()
    else:
        if executor is not None:
            raise SensitivityError("an executor needs a store (the runner writes there)")
        parts = []
        theta = design.values
        for lo in range(0, theta.shape[0], batch_size):
            parts.append(simulator(theta[lo : lo + batch_size]))
        ds = xr.concat(parts, dim="member", join="outer").assign_coords(member=np.arange(theta.shape[0]))
    status, reason = member_status(ds)
    names = list(targets)
    y = np.empty((design.sizes["member"], len(names)))
    for j, name in enumerate(names):
        values = targets[name](ds)
        if not isinstance(values, xr.DataArray) or values.dims != ("member",):
            raise SensitivityError(f"target {name!r} must give a DataArray on ('member',)")
        y[:, j] = values.values
    nonfinite = (status == "done") & ~np.isfinite(y).all(axis=1)
    reason = np.where(nonfinite, "non-finite target", reason)
    status = np.where(nonfinite, "failed", status)
    y[status != "done"] = np.nan
    return xr.Dataset(
        {"y": (("member", "target"), y), "status": ("member", status), "reason": ("member", reason)},
        coords={"member": np.arange(y.shape[0]), "target": names},
    )


def _blocks(method: str, n_rows: int, n_factors: int, second: bool) -> np.ndarray:
    """Block index of every design row (Saltelli base row or Morris trajectory)."""
    if method == "sobol":
        size = 2 * n_factors + 2 if second else n_factors + 2
    elif method == "morris":
        size = n_factors + 1
    else:
        return np.zeros(n_rows, dtype=int)
    if n_rows % size:
        raise SensitivityError(f"design of {n_rows} rows is not made of {method} blocks of {size}")
    return np.arange(n_rows) // size


def analyze(
    space: ParameterSpace,
    design: xr.DataArray,
    result: xr.Dataset,
    on_failure: str = "raise",
    num_resamples: int = 200,
    seed: int | np.random.Generator | None = 0,
) -> xr.Dataset:
    """Sensitivity indices of every target with SALib.

    Parameters
    ----------
    space : ParameterSpace
        The space the design was drawn in (its free labels must match).
    design : xarray.DataArray
        From :func:`sample`.
    result : xarray.Dataset
        From :func:`evaluate`.
    on_failure : {"raise", "drop"}
        What to do with failed members (see the module notes).
    num_resamples, seed
        Bootstrap settings of the confidence intervals (a Generator seed: its next draw).

    Returns
    -------
    xarray.Dataset
        ``indices`` on (parameter, target, index): Sobol' ``S1, S1_conf, ST, ST_conf``; Morris
        ``mu, mu_star, mu_star_conf, sigma``; FAST ``S1, S1_conf, ST, ST_conf``. ``parameter`` holds
        the factors (labels, or family names with groups). ``S2`` (parameter, parameter2, target)
        with second order. Attributes record the method, the members used and dropped.
    """
    method, seed = design.attrs["method"], int_seed(seed)
    if design.attrs["free_labels"].split("\n") != space.labels:
        raise SensitivityError("the design was drawn in another parameter space (free labels differ)")
    problem = salib_problem(space, bool(design.attrs["groups"]))
    factors = _factor_names(problem)
    second = bool(design.attrs["calc_second_order"])
    u = design["u"].values[:, space.free_index]
    y = result["y"].values
    failed = result["status"].values != "done"
    blocks = _blocks(method, u.shape[0], len(factors), second)
    dropped = 0
    if failed.any():
        frac = failed.mean()
        if on_failure == "raise" or method == "fast":
            raise SensitivityError(
                f"{failed.sum()} of {failed.size} members ({frac:.0%}) failed; {method} indices "
                "need complete designs. Pass on_failure='drop' to analyse only the complete "
                f"{'Saltelli blocks' if method == 'sobol' else 'trajectories'} (FAST cannot)."
            )
        if on_failure != "drop":
            raise SensitivityError(f"on_failure must be 'raise' or 'drop', got {on_failure!r}")
        bad_blocks = np.unique(blocks[failed])
        keep = ~np.isin(blocks, bad_blocks)
        dropped = int(bad_blocks.size)
        if keep.sum() == 0:
            from ..run.ensemble import describe_failures

            reasons = result["reason"].values[failed] if "reason" in result else ()
            said = describe_failures(map(str, reasons), most=3)
            unit = "Saltelli block" if method == "sobol" else "trajectory"
            raise SensitivityError(f"every {unit} has a failed member ({failed.sum()} of {failed.size} failed"
                                   f"{': ' + said if said else ''}); nothing left to analyse: make the model "
                                   "run at those values, or narrow the bounds where it fails")
        u, y = u[keep], y[keep]
    names = list(result["target"].values)
    index_names = _INDEX_NAMES[method]
    out = np.empty((len(factors), len(names), len(index_names)))
    s2 = np.full((len(factors), len(factors), len(names)), np.nan) if second else None
    for j in range(len(names)):
        yj = y[:, j]
        if method == "sobol":
            r = sobol_analyze.analyze(dict(problem), yj, calc_second_order=second,
                                      num_resamples=num_resamples, seed=seed)
            if second:
                s2[:, :, j] = r["S2"]
        elif method == "morris":
            r = morris_analyze.analyze(dict(problem), u, yj, num_resamples=num_resamples,
                                       num_levels=int(design.attrs["num_levels"]), seed=seed)
        else:
            r = fast_analyze.analyze(dict(problem), yj, num_resamples=num_resamples, seed=seed)
        for k, name in enumerate(index_names):
            out[:, j, k] = np.asarray(r[name], dtype=float)
    ds = xr.Dataset(
        {"indices": (("parameter", "target", "index"), out)},
        coords={"parameter": factors, "target": names, "index": index_names},
        attrs={"method": method, "members_used": int(u.shape[0]), "blocks_dropped": dropped,
               "failure_handling": on_failure if failed.any() else "none",
               "note": "" if not dropped else
               "indices over the region where the model runs (blocks with failed members dropped)"},
    )
    if second:
        ds["S2"] = (("parameter", "parameter2", "target"), s2)
        ds = ds.assign_coords(parameter2=factors)
    return ds


def screen(
    indices: xr.Dataset,
    threshold: float | None = 0.05,
    top_k: int | None = None,
    index: str | None = None,
    use_conf: bool = True,
    targets: Sequence[str] | None = None,
    require_all: bool = False,
    normalise: bool = True,
) -> list[str]:
    """The influential parameters: above a threshold on the total index, or the top-k.

    Parameters
    ----------
    indices : xarray.Dataset
        From :func:`analyze` or :func:`one_at_a_time`.
    threshold : float, optional
        Keep a parameter when its index (minus its confidence half-width with ``use_conf``)
        exceeds this for any target (all targets with ``require_all``).
    top_k : int, optional
        Instead keep the k highest by the largest index over targets (or, with ``require_all``,
        the smallest over targets).
    index : str, optional
        Which index: ``ST`` (Sobol', FAST), ``mu_star`` (Morris, normalised by its maximum per
        target), ``rank_effect`` (one-at-a-time). Default by method.
    targets : sequence of str, optional
        Targets to use (default all).
    normalise : bool
        Divide Morris / one-at-a-time indices by their maximum per target (default), so targets
        in different units count alike. ``False`` keeps them as they are, for targets already
        in common units (e.g. summaries divided by their observation sigma).

    Returns
    -------
    list of str
        Labels (or family names) in decreasing importance; pass them to ``space.only``.
    """
    method = indices.attrs.get("method", "sobol")
    index = index or DEFAULT_INDEX[method]
    ind = indices["indices"]
    if targets is not None:
        ind = ind.sel(target=list(targets))
    values = ind.sel(index=index)
    scale = values.max("parameter") if method in ("morris", "oat") and normalise else 1.0
    values = values / scale  # comparable across targets
    conf_name = f"{index}_conf"
    if use_conf and conf_name in ind["index"].values and method not in ("morris", "oat"):
        lower = values - ind.sel(index=conf_name)
    elif use_conf and method == "morris":
        mu_star = ind.sel(index="mu_star")
        lower = (mu_star - ind.sel(index="mu_star_conf")) / scale
    else:
        lower = values
    agg = lower.min("target") if require_all else lower.max("target")
    score_for_order = values.min("target") if require_all else values.max("target")
    if top_k is not None:
        order = np.argsort(-score_for_order.values)[:top_k]
        return [str(ind["parameter"].values[i]) for i in order]
    if threshold is None:
        raise SensitivityError("give a threshold or top_k")
    keep = np.flatnonzero(agg.values > threshold)
    keep = keep[np.argsort(-score_for_order.values[keep])]
    return [str(ind["parameter"].values[i]) for i in keep]


def oat_design(space: ParameterSpace) -> np.ndarray:
    """One-at-a-time design (2 d + 1, d) of free values: the defaults, then each value at its lower
    (row ``1 + 2 i``) and upper (row ``2 + 2 i``) bound with the others at their defaults."""
    d = space.n_free
    theta = np.tile(space.default, (2 * d + 1, 1))
    idx = np.arange(d)
    theta[1 + 2 * idx, idx] = space.lower
    theta[2 + 2 * idx, idx] = space.upper
    return theta


def one_at_a_time(
    simulator: Callable[[np.ndarray], xr.Dataset],
    space: ParameterSpace,
    targets: Mapping[str, Callable[[xr.Dataset], xr.DataArray]],
    maps: Mapping[str, Callable[[xr.Dataset], xr.DataArray]] | None = None,
) -> xr.Dataset:
    """The CLM5 paper's one-at-a-time screen (Dagon et al.).

    Each free value is set to its lower and then its upper bound with the others at their
    defaults (2 d + 1 runs). The *parameter effect* on a target is ``|X(max) - X(min)|``; the
    parameters are ranked per target and the ranks averaged across targets (``mean_rank``, 1 =
    most influential). With ``maps`` (callables giving a field on (member, cell), e.g. mean GPP
    per cell), the effect maps ``X(max) - X(min)`` of the parameters are compared by their pattern
    correlation (``pattern_correlation`` on parameter x parameter2 per map).

    Returns
    -------
    xarray.Dataset
        ``indices`` (parameter, target, index=["effect", "rank"]), ``mean_rank`` (parameter), and
        ``pattern_correlation`` when maps are given. Failed runs give NaN effects.
    """
    d = space.n_free
    theta = oat_design(space)
    idx = np.arange(d)
    ds = simulator(space.expand(theta))
    failed = member_status(ds)[0] != "done"
    names = list(targets)
    effect = np.empty((d, len(names)))
    for j, name in enumerate(names):
        x = np.where(failed, np.nan, targets[name](ds).values)
        effect[:, j] = np.abs(x[2 + 2 * idx] - x[1 + 2 * idx])
    ranks = np.empty_like(effect)
    for j in range(len(names)):
        order = np.argsort(-np.nan_to_num(effect[:, j], nan=-np.inf))
        ranks[order, j] = np.arange(1, d + 1)
    out = xr.Dataset(
        {"indices": (("parameter", "target", "index"), np.stack([effect, ranks], axis=-1)),
         "mean_rank": ("parameter", ranks.mean(axis=1))},
        coords={"parameter": space.labels, "target": names, "index": ["effect", "rank"]},
        attrs={"method": "oat", "runs": int(theta.shape[0]), "failed_runs": int(failed.sum())},
    )
    for name, fn in (maps or {}).items():
        field = fn(ds)
        if "member" not in field.dims:
            raise SensitivityError(f"map {name!r} must have a 'member' dimension")
        f = field.transpose("member", ...).values.reshape(theta.shape[0], -1)
        eff = f[2 + 2 * idx] - f[1 + 2 * idx]
        eff = eff - np.nanmean(eff, axis=1, keepdims=True)
        norm = np.sqrt(np.nansum(eff**2, axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = (np.nan_to_num(eff) @ np.nan_to_num(eff).T) / np.outer(norm, norm)
        out[f"pattern_correlation_{name}"] = (("parameter", "parameter2"), corr)
    if maps:
        out = out.assign_coords(parameter2=space.labels)
    return out
