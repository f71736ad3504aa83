"""The posterior stage by history matching (``posterior.method = "history_matching"``).

Every calibrated value stays free: waves of history matching (:mod:`bayescal.posterior.history_matching`)
from the design's runs, each wave's runs through the runner's store (``posterior/waves/wave<k>/``;
its design is saved first as ``wave<k>_design.npy``, so a killed stage resumes with the same
points and keeps every finished run), then emcee in the likelihood-informed subspace of the
final wave's emulator. Writes what the default posterior stage writes (``posterior.nc``,
``diagnostics.nc``, ``refinement.nc`` with one row per wave, ``left_out.nc`` with no value left
out, ``training.nc``) and ``history_matching.nc``: per wave, the runs and the fraction of the
prior not ruled out; per summary, the complement's noise floor, the parameter-only 90 %
predictive interval against the observational one, and the standardised residual of a model
run at the posterior mean.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

if TYPE_CHECKING:
    from bayescal.workflows.global_.context import GlobalContext

__all__ = ["run_history_matching"]


def run_history_matching(ctx: GlobalContext) -> None:
    """History matching, then the subspace posterior, for the pipeline context ``ctx``."""
    from bayescal.emulators.active import ActiveGPEmulator
    from bayescal.posterior.history_matching import history_match, informed_subspace, subspace_posterior

    from .stages import _stored_summaries, _summary_coords

    c = ctx.config["posterior"]
    out = ctx.run_dir / "posterior"
    (out / "waves").mkdir(parents=True, exist_ok=True)
    space = ctx.space()
    observed, sigma = ctx.observed()
    disc = c["hm_discrepancy"] * np.asarray(sigma)
    tr = ctx.training()
    ok = (tr["status"].values == "done") & np.isfinite(tr["summaries"].values).all(1)

    def simulate(points: np.ndarray, wave: int) -> np.ndarray:
        return _stored_summaries(ctx, space, points, out / "waves" / f"wave{wave}")

    hm = history_match(
        simulate, lambda w: ActiveGPEmulator(n_active=c["hm_active"], random_state=ctx.seed + w),
        tr["u"].values[ok], tr["summaries"].values[ok], observed, sigma, disc,
        n_waves=c["hm_waves"], runs_per_wave=c["hm_runs"], cutoff=c["hm_cutoff"],
        choose=lambda w, design: _saved_design(out / "waves" / f"wave{w}_design.npy", design),
        seed=ctx.seed, say=ctx.say, train=c["hm_train"], design=c["hm_design"])
    em = hm.emulator
    ll = _loglik(em.predict(hm.samples), observed, sigma, disc)
    best = hm.samples[np.argsort(-ll)[:64]]
    sub = informed_subspace(em, best, sigma, disc, floor=c["hm_floor"], max_rank=c["hm_max_rank"] or None)
    ctx.say(f"  informed subspace: {sub.rank} of {space.n_free} directions; the others add at most "
            f"{np.max(sub.complement_sd / sigma):.2f} sigma to a summary (median "
            f"{np.median(sub.complement_sd / sigma):.2f})")
    post = subspace_posterior(em, observed, sigma, sub, hm.samples, disc, n_walkers=c["n_walkers"] or None,
                              min_steps=c["n_steps"], max_steps=c["max_steps"], seed=ctx.seed,
                              backend_path=out / "chain.h5", progress=ctx.progress)
    _write_posterior(ctx, out, space, post, _pointwise_groups(ctx, em, post, observed, sigma, disc))
    checks = _checks(ctx, out, space, em, post, observed, sigma, disc)
    labels = (_summary_coords(ctx) or {}).get("summary", [f"summary {k}" for k in range(len(observed))])
    _write_tables(out, space, hm, sub, post, checks, sigma, labels)
    ctx.say(f"  {len(hm.X)} runs; chain {post.n_steps} steps, tau {np.nanmax(post.tau):.0f} "
            f"({'converged' if post.converged else 'shorter than 50 tau'}); 90 % predictive / "
            f"observational interval: median {np.median(checks['predictive_ratio']):.2f}; residual "
            f"mean square at the posterior mean {np.mean(checks['residual'] ** 2):.2f}")
    _warn_checks(checks)


def _warn_checks(checks: dict[str, np.ndarray]) -> None:
    """A warning (kept in the stage's record and the report) when the posterior does not carry the
    data: the median 90 % predictive / observational interval above 1, or the residuals' mean
    square at the posterior mean outside 0.5-2 (the observations' sigma, the discrepancy or the
    emulator then disagree with the runs)."""
    med, ms = float(np.median(checks["predictive_ratio"])), float(np.mean(checks["residual"] ** 2))
    if not np.isfinite(ms):  # the run at the posterior mean failed (its reason is in its store)
        warnings.warn("history matching: the model run at the posterior mean failed (posterior/mean_run): "
                      "the residual check could not be made", stacklevel=2)
        ms = 1.0
    if med > 1:
        warnings.warn(f"history matching: the posterior's median 90 % predictive interval is {med:.2f} "
                      "times the observational one (goal <= 1): the data leave it wide", stacklevel=2)
    if not 0.5 <= ms <= 2:
        warnings.warn(f"history matching: the standardised residuals at the posterior mean have mean "
                      f"square {ms:.2f} (goal 0.5-2): check the products' sigma and the discrepancy",
                      stacklevel=2)


def _saved_design(path, design: np.ndarray) -> np.ndarray:
    """The wave's design as first chosen (saved before it runs; renamed into place)."""
    if path.exists():
        return np.load(path)
    tmp = path.with_name(f".{path.name}.tmp.npy")
    np.save(tmp, design)
    os.replace(tmp, path)
    return design


def _loglik(mean: np.ndarray, observed, sigma, disc) -> np.ndarray:
    return -0.5 * (((observed - mean) ** 2) / (np.asarray(sigma) ** 2 + disc**2)).sum(1)


def _pointwise_groups(ctx: GlobalContext, em, post, observed, sigma, disc) -> dict[str, xr.Dataset]:
    """``log_likelihood``, ``posterior_predictive``, ``observed_data`` and ``constant_data`` on the
    named ``summary`` dimension (labels, variable, region, products, units), with the variance
    the chain used: sigma^2 + discrepancy^2 + emulator sd^2 + the complement's spread^2."""
    from .stages import _summary_coords

    coords = _summary_coords(ctx) or {"summary": np.arange(np.size(observed))}
    dim_coords = {k: ("summary", np.asarray(v)) for k, v in coords.items() if k != "summary"}
    dim_coords["summary"] = np.asarray(coords["summary"])
    units = dict(dim_coords).get("units")
    unit = "see the units coordinate" if units is not None else ""
    sd = {"sigma": np.broadcast_to(np.asarray(sigma, float), np.shape(observed)),
          "discrepancy": np.broadcast_to(np.asarray(disc, float), np.shape(observed)),
          "emulator_sd": post.emulator_sd, "complement_sd": post.subspace.complement_sd}
    v = sum(x**2 for x in sd.values())
    n_chain, n_draw, d = post.u.shape
    m = np.asarray(em.predict(np.clip(post.u.reshape(-1, d), 0.0, 1.0)), float)
    ll = -0.5 * ((np.asarray(observed) - m) ** 2 / v + np.log(2 * np.pi * v))
    pp = m + np.sqrt(v) * np.random.default_rng(ctx.seed + 1).standard_normal(m.shape)
    sample = {"chain": np.arange(n_chain), "draw": np.arange(n_draw)}
    dims = ("chain", "draw", "summary")

    def on_summary(x: np.ndarray, long_name: str) -> xr.DataArray:
        shape = (n_chain, n_draw, -1) if x.ndim == 2 else x.shape
        return xr.DataArray(x.reshape(shape), dims=dims if x.ndim == 2 else ("summary",),
                            coords={**(sample if x.ndim == 2 else {}), **dim_coords},
                            attrs={"units": unit, "long_name": long_name})

    return {
        "log_likelihood": xr.Dataset({"y": on_summary(ll, "pointwise log-likelihood")}),
        "posterior_predictive": xr.Dataset({"y": on_summary(pp, "posterior-predictive draw")}),
        "observed_data": xr.Dataset({"y": on_summary(np.asarray(observed, float), "observed value")}),
        "constant_data": xr.Dataset({k: on_summary(np.asarray(x, float), f"{k} of each summary")
                                     for k, x in sd.items()}),
    }


def _write_posterior(ctx: GlobalContext, out, space, post, groups: dict[str, xr.Dataset]) -> None:
    from bayescal.posterior import diagnose, make_inference_data, save_inference_data
    from bayescal.posterior.inference_data import family_dataset

    n_chain, n_draw = post.u.shape[:2]
    coords = {"chain": np.arange(n_chain), "draw": np.arange(n_draw)}
    posterior = family_dataset(space, post.u, sample=coords)
    posterior.attrs.update(burn=post.burn, thin=post.thin, n_steps=post.n_steps, n_walkers=n_chain,
                           tau_max=float(np.nanmax(post.tau)), tau_min=float(np.nanmin(post.tau)),
                           sampler="emcee in the likelihood-informed subspace", rank=post.subspace.rank)
    rng = np.random.default_rng(ctx.seed)
    prior = family_dataset(space, rng.random((1, 2000, space.n_free)))
    # the prior is uniform on the unit cube (density 1): the log posterior is the log-likelihood
    stats = xr.Dataset({
        "lp": (("chain", "draw"), post.loglik, {"long_name": "log posterior (unit cube)"}),
        "loglik": (("chain", "draw"), post.loglik, {"long_name": "emulated log-likelihood"}),
        "log_prior": (("chain", "draw"), np.zeros_like(post.loglik), {"long_name": "log prior (unit cube)"}),
    }, coords=coords)
    bounds = xr.Dataset({"lower": ("parameter", space.lower, {"long_name": "lower bound"}),
                         "upper": ("parameter", space.upper, {"long_name": "upper bound"})},
                        coords={"parameter": space.labels})
    groups = {**groups, "constant_data": xr.merge([groups["constant_data"], bounds])}
    idata = make_inference_data({"posterior": posterior, "sample_stats": stats, "prior": prior, **groups})
    save_inference_data(idata, out / "posterior.nc")
    diagnose(idata).to_netcdf(out / "diagnostics.nc")


def _checks(ctx: GlobalContext, out, space, em, post, observed, sigma, disc) -> dict[str, np.ndarray]:
    """Per summary: the parameter-only 90 % predictive interval (emulator mean at posterior
    samples) over the observational one, and the standardised residual of a model run at the
    posterior mean (through the runner's store)."""
    u = post.u.reshape(-1, post.u.shape[-1])
    u = u[np.random.default_rng(ctx.seed).choice(len(u), size=min(2000, len(u)), replace=False)]
    q05, q95 = np.quantile(em.predict(u), [0.05, 0.95], axis=0)
    ratio = (q95 - q05) / (2 * 1.6448536 * np.asarray(sigma))
    from .stages import _stored_summaries

    y = _stored_summaries(ctx, space, post.u.reshape(-1, post.u.shape[-1]).mean(0)[None], out / "mean_run")[0]
    return {"predictive_ratio": ratio, "residual": (y - observed) / np.asarray(sigma)}


def _write_tables(out, space, hm, sub, post, checks, sigma, labels) -> None:
    """history_matching.nc, refinement.nc (one row per wave), left_out.nc, training.nc."""
    u = post.u.reshape(-1, post.u.shape[-1])
    waves = hm.waves.copy()
    waves["predictive_ratio"] = ("summary", checks["predictive_ratio"])
    waves["residual"] = ("summary", checks["residual"])
    waves["complement_sd"] = ("summary", sub.complement_sd / np.asarray(sigma))
    waves["eigenvalue"] = ("direction", sub.eigenvalues)
    waves["sd_ratio"] = ("parameter", u.std(0) * np.sqrt(12.0))
    waves = waves.assign_coords(parameter=space.labels, summary=labels)
    waves.attrs.update(subspace_rank=sub.rank, n_steps=post.n_steps, tau_max=float(np.nanmax(post.tau)),
                       converged=int(post.converged))
    waves.to_netcdf(out / "history_matching.nc")
    rounds = xr.Dataset({"n_train": ("round", hm.waves["n_runs"].values),
                         "nroy_fraction": ("round", hm.waves["nroy_fraction"].values),
                         "emulator_sd": ("round", hm.waves["emulator_sd"].values)},
                        coords={"round": hm.waves["wave"].values})
    rounds.attrs.update(acquisition="history matching: each wave's runs spread over the region not ruled out",
                        criterion=hm.waves.attrs["rule"], tol="-", sd_loglik_max="-",
                        converged=int(post.converged))
    rounds.to_netcdf(out / "refinement.nc")
    xr.Dataset({"left_out_sd": ("summary", np.zeros(len(sigma))), "sigma": ("summary", np.asarray(sigma))},
               attrs={"left_out": "none", "n_left_out": 0,
                      "description": "history matching calibrates every value: none left out"}
               ).to_netcdf(out / "left_out.nc")
    xr.Dataset({"X": (("member", "parameter"), hm.X), "Y": (("member", "summary"), hm.Y),
                "wave": ("member", hm.wave)}, coords={"parameter": space.labels}
               ).to_netcdf(out / "training.nc")
