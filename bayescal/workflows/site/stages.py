"""The stages of the site route (see :mod:`bayescal.workflows.site.context`), one function each
(propagate's in :mod:`~bayescal.workflows.site.propagate_stage`)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from bayescal.optimize.objective import OptimizeError
from bayescal.workflow.engine import RUN_COUNT_FILE
from bayescal.workflow.rundir import write_json_atomic
from bayescal.workflows.context import MIN_DESIGN_RUNS, StageError, require_design_runs

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from .context import SiteContext

__all__ = ["run_site_optimize", "run_site_posterior", "run_site_report"]


def _values(ctx: SiteContext):
    """Unit-cube points -> the calibration series: the model itself (``posterior.route = "direct"``)
    or the SVD emulator the optimize stage trained (``"emulator"``)."""
    from bayescal.emulators import load_emulator
    from bayescal.posterior.site_calibration import emulated_values, model_values

    if ctx.config["posterior"]["route"] == "direct":
        return model_values(ctx.calibration_simulator, ctx.space(), ctx.operator("calibration"),
                            arrays=ctx.calibration_arrays())
    return emulated_values(load_emulator(ctx.run_dir / "optimize" / "output_emulator.nc"))


def _stored_values(ctx: SiteContext, u: np.ndarray, store) -> np.ndarray:
    """The calibration series at unit-cube points, run through the runner's store (NaN rows: failed)."""
    return _stored_runs(ctx, u, store)[0]


def _stored_runs(ctx: SiteContext, u: np.ndarray, store) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_stored_values` and which runs failed as the model's own failure at their values
    (:func:`~bayescal.run.ensemble.model_failures`: not a timeout or a kill)."""
    from bayescal.run.ensemble import EnsembleStore, model_failures

    space, op = ctx.space(), ctx.operator("calibration")
    theta = space.to_dataarray(space.expand(space.from_unit(u)), full=True)
    # in this process, counted; else the model itself goes to the workers (their runs counted from the store)
    simulator = ctx.calibration_simulator if ctx.model_runs() is not None else ctx.calibration_model
    ctx.run_members(simulator, theta, store, keep=sorted(set(op.variables)),
                    batch_size=ctx.config["design"]["batch_size"], executor=ctx.executor)
    ens = EnsembleStore(store).load()
    done = ens["status"].values == "done"
    y = np.full((u.shape[0], op.y.size), np.nan)
    if done.any():
        y[done] = op.of_model(ens.isel(member=np.flatnonzero(done)))
    not_finite = done & ~np.isfinite(y).all(axis=1)  # a run whose series is not: failed at its values too
    return y, model_failures(ens["status"].values, ens["reason"].values) | not_finite


def _emulator(ctx: SiteContext):
    from bayescal.emulators import GPEmulator, SVDEmulator

    c = ctx.config["emulator"]
    # truncation at most 0.2 sigma per value: it adds at most 4 % to sigma^2 (as the global route)
    return SVDEmulator(variance_threshold=c["variance_threshold"],
                       estimator=GPEmulator(n_restarts=c["n_restarts"], random_state=ctx.seed),
                       random_state=ctx.seed, residual_sd=0.2 * ctx.operator("calibration").sigma)


def _train_emulator(ctx: SiteContext) -> None:
    """route = "emulator": an SVD emulator of the calibration series from a design through the store."""
    from bayescal.parameters.design import latin_hypercube

    space = ctx.space()
    u = space.to_unit(latin_hypercube(space, ctx.config["design"]["n_runs"], seed=ctx.seed).values)
    store = ctx.run_dir / "optimize" / "design"
    Y, models = _stored_runs(ctx, u, store)
    done = np.isfinite(Y).all(axis=1)
    if done.sum() < MIN_DESIGN_RUNS:
        from bayescal.run.ensemble import EnsembleStore

        ens = EnsembleStore(store).load()
        require_design_runs(int(done.sum()), len(u), ens["reason"].values[ens["status"].values != "done"],
                            store)
    em = _emulator(ctx).fit(u[done], Y[done])
    em.save(ctx.run_dir / "optimize" / "output_emulator.nc")
    # the runs the model failed too: the posterior keeps no mass where it does not run (refine)
    xr.Dataset({"X": (("member", "parameter"), u[done]), "Y": (("member", "observation"), Y[done]),
                "X_failed": (("failed_member", "parameter"), u[models])},
               coords={"parameter": space.labels}).to_netcdf(ctx.run_dir / "optimize" / "design.nc")
    ctx.say(f"  SVD emulator of {Y.shape[1]} values ({em.n_components_} components) from "
            f"{int(done.sum())} runs")


def run_site_optimize(ctx: SiteContext) -> None:
    from bayescal.posterior.site_calibration import maximum_likelihood

    space = ctx.space()
    write_json_atomic(ctx.run_dir / "optimize" / "selected.json", {"parameters": space.labels})
    if ctx.config["posterior"]["route"] == "emulator":
        _train_emulator(ctx)
    values = _values(ctx)
    try:
        res = maximum_likelihood(values, space, ctx.operator("calibration"), seed=ctx.seed,
                                 max_evaluations=ctx.config["site"]["ml_evaluations"], say=ctx.say)
    except OptimizeError as err:  # every run of a generation failed: the model's reasons, not a traceback
        from bayescal.run.ensemble import describe_failures

        why = describe_failures(getattr(values, "failures", {}), most=3)
        raise StageError(f"the maximum-likelihood search cannot go on ({err}){': ' + why if why else ''}. "
                         "Make the model run near its defaults (the search starts there), or narrow "
                         "the parameters' bounds") from None
    res.history.to_netcdf(ctx.run_dir / "optimize" / "history.nc")
    ctx.say(f"  maximum likelihood after {res.n_evaluations} evaluations: -log L = {res.fun:.6g}")
    h = res.history
    last = h["batch"].values == h["batch"].values[-1]  # CMA-ES's last generation: one batch
    if res.n_evaluations >= ctx.config["site"]["ml_evaluations"]:  # stopped by the budget, not converged
        _say_if_still_improving(h["best_misfit"].values, ctx.config["site"]["ml_evaluations"],
                                h["misfit"].values[last])
    elif ctx.config["posterior"]["route"] == "direct":  # the emulator's -log L: its best is not a run
        _say_if_settled_above(h["misfit"].values, last)
    from bayescal.run.ensemble import count_reasons

    failed = h["status"].values != "done" if "status" in h else np.zeros(0, bool)
    why = count_reasons(str(r) for r in h["reason"].values[failed])  # alike together
    if failed.any():
        top = ", ".join(f"{n} x {r!r}" for r, n in why.most_common(3))
        ctx.say(f"  {int(failed.sum())} of {failed.size} model runs failed ({top}; optimize/history.nc)")
    if ctx.config["posterior"]["route"] == "direct":  # the search's runs, counted for the report
        write_json_atomic(ctx.run_dir / "optimize" / "evaluations.json",
                          {"runs": int(res.n_evaluations), "inside": "the search",
                           "failed": dict(why)})
        if ctx.model_runs() is None:  # workers: the record counts files, and the search ran here
            write_json_atomic(ctx.run_dir / "optimize" / RUN_COUNT_FILE, {"runs": int(res.n_evaluations)})


def _say_if_settled_above(misfit: np.ndarray, last: np.ndarray) -> None:
    """A warning when the search converged more than 10 nats above its best run (a mode it left,
    or a lucky draw it never came back to): that run is the optimum used."""
    done = np.isfinite(misfit)
    if not (done & last).any() or not done.any():
        return
    best, settled = float(np.min(misfit[done])), float(np.median(misfit[done & last]))
    if settled - best > 10.0:
        at = int(np.flatnonzero(misfit == best)[0]) + 1
        gap = settled - best
        warnings.warn(f"the maximum-likelihood search converged at -log L {settled:.6g}, {gap:.3g} above "
                      f"its best run (evaluation {at} of {misfit.size}, -log L {best:.6g}; "
                      "optimize/history.nc): the likelihood has another mode there, or that run was a lucky "
                      "draw the search never came back to. That run is the optimum the error model is "
                      "estimated at (and the chains start from with posterior.start = 'optimum')",
                      RuntimeWarning, stacklevel=2)


def _say_if_still_improving(best: np.ndarray, budget: int, last_generation: np.ndarray | None = None) -> None:
    """A warning when the search (stopped by its budget) had not converged: its best -log L fell
    by more than a nat over its last fifth, or its last generation's -log L (its finished runs)
    still spread over more than 10 nats above their best (a converged one's differ by a few; a
    stalled search's best stays put while they spread over thousands). Its point is then not the
    maximum, and it starts the error model, the emulator's rounds and the propagated ensemble's
    optimum run."""
    best = best[np.isfinite(best)]
    if best.size < 10:
        return
    drop = float(best[-(best.size // 5) - 1] - best[-1])
    last = [] if last_generation is None else last_generation[np.isfinite(last_generation)]
    spread = float(np.quantile(last, 0.9) - np.min(last)) if len(last) >= 4 else 0.0
    fell = f"-log L fell by {drop:.3g} over its last {best.size // 5} of {best.size} evaluations"
    spread_out = f"its last {len(last)} evaluations' -log L spread over {spread:.3g} above their best"
    why = fell if drop > 1.0 else spread_out if spread > 10.0 else ""
    if why:
        warnings.warn(f"the maximum-likelihood search had not converged when its budget ran out: {why} "
                      f"(optimize/history.nc), so its optimum is not the maximum; raise site.ml_evaluations "
                      f"({budget})", RuntimeWarning, stacklevel=2)


def _optimum_run(ctx: SiteContext, required: bool = True) -> np.ndarray:
    """The calibration series of one model run at the maximum-likelihood point (through the
    store); a failed run a StageError when ``required`` (the direct route's point was a run that
    finished), else a warning and no row (the emulator's point: the emulator was wrong there)."""
    store = ctx.run_dir / "posterior" / "optimum_run"
    y = _stored_values(ctx, ctx.optimum_u()[None], store)
    if np.isfinite(y).all():
        return y
    from bayescal.run.ensemble import EnsembleStore

    why = str(EnsembleStore(store).load()["reason"].values[0]) or "a value is not finite"
    if required:
        raise StageError(f"the model fails at the maximum-likelihood point ({why}; {store}), though it "
                         "finished there in the search: a value that is not finite on a day the "
                         "likelihood does not read (the store keeps every day), or a model that is not "
                         "deterministic?")
    warnings.warn(f"the model fails at the emulator's maximum-likelihood point ({why}; {store}): the "
                  "emulator is wrong there; the refinement's runs go on from the design's", UserWarning,
                  stacklevel=2)
    return y[:0]


class _ErrorModel:
    """The AR(1) error model from the *model's* residuals (docs/site.md): at the optimum's run on
    the direct route; on the emulator route at the best run so far (highest likelihood with the
    observation errors alone), updated as refinement adds runs -- never from emulator output, so
    the emulator's error does not pass for model-data discrepancy."""

    def __init__(self, ctx: SiteContext) -> None:
        from bayescal.operators.timeseries import SeriesLikelihood

        self.ctx, self.op = ctx, ctx.operator("calibration")
        self._obs_only = SeriesLikelihood(self.op)
        self.best, self.best_ll = None, -np.inf

    def add(self, Y: np.ndarray) -> None:
        ll = self._obs_only(Y)  # -inf for a failed run (NaN row)
        if ll.size and ll.max() > self.best_ll:
            self.best, self.best_ll = Y[int(np.argmax(ll))], float(ll.max())

    def likelihood(self):
        from bayescal.operators.timeseries import SeriesLikelihood, estimate_error_model

        s, rho = estimate_error_model(self.op, self.best)
        c = self.ctx.config["site"]
        return SeriesLikelihood(self.op, s * (c["discrepancy"] != "none"), rho * c["autocorrelation"])

    def save(self, emulator_sd: np.ndarray | None = None) -> None:
        from bayescal.operators.timeseries import MIN_RHO_PAIRS, consecutive_pairs

        like, op, pairs = self.likelihood(), self.op, consecutive_pairs(self.op)
        em_sd = np.zeros(op.y.size) if emulator_sd is None else emulator_sd
        info = [{"product": p.name, "variable": p.variable, "discrepancy": float(like.discrepancy[k]),
                 "rho": float(like.rho[k]), "rho_pairs": int(pairs[k]),
                 "sigma_median": float(np.median(op.sigma[op.product_index == k])),
                 "units": p.units, "emulator_sd_median": float(np.median(em_sd[op.product_index == k])),
                 "n_values": int((op.product_index == k).sum())} for k, p in enumerate(op.products)]
        write_json_atomic(self.ctx.run_dir / "posterior" / "error_model.json", info)
        self.ctx.say("  error model: " + "; ".join(
            f"{i['product']} s={i['discrepancy']:.3g} rho="
            + (f"{i['rho']:.2f}" if i["rho_pairs"] >= MIN_RHO_PAIRS
               else f"0 (not estimable: {i['rho_pairs']} consecutive pairs)")
            for i in info))
        self._warn_sigma_too_large()

    def _warn_sigma_too_large(self) -> None:
        """A product whose best-fitting run's residuals are far below its sigma (rms < sigma / 3):
        the sigma is likely in other units or overstated, and the posterior is too wide for it."""
        op = self.op
        r = np.asarray(self.best, float).reshape(-1) - op.y
        for k, p in enumerate(op.products):
            i = op.product_index == k
            rms, sig = float(np.sqrt(np.mean(r[i] ** 2))), float(np.sqrt(np.mean(op.sigma[i] ** 2)))
            if rms < sig / 3:
                warnings.warn(f"product {p.name!r}: the best run's residuals (rms {rms:.3g} {p.units}) are "
                              f"far below the observations' sigma (rms {sig:.3g}): is the sigma in the "
                              "values' units (a CSV's 'sigma_units')? A sigma too large leaves the posterior "
                              "too wide", UserWarning, stacklevel=2)


def _refine(ctx: SiteContext, errors: _ErrorModel):
    """route = "emulator": the design and optimum runs, then rounds of model runs chosen by
    acquisition (:func:`~bayescal.posterior.refinement.refine`), each round through its store."""
    from bayescal.posterior.refinement import refine
    from bayescal.posterior.site_calibration import MAX_DRAWS, EmulatedSeriesLikelihood

    c, out = ctx.config["posterior"], ctx.run_dir / "posterior"
    design = xr.load_dataset(ctx.run_dir / "optimize" / "design.nc")
    optimum = _optimum_run(ctx, required=False)
    X = np.vstack([design["X"].values, ctx.optimum_u()[None][:len(optimum)]])
    Y = np.vstack([design["Y"].values, optimum])
    errors.add(Y)
    rounds = iter(range(10**6))
    _say_rounds_resumed(ctx, out / "chains")

    def simulate(u: np.ndarray) -> np.ndarray:
        # refine is seeded: a resumed stage asks for the same points and finds them in the store
        y, models = _stored_runs(ctx, u, out / "refine" / f"round{next(rounds)}")
        errors.add(y)
        return y, models

    # the rounds sample the emulator's mean; the posterior, by default its expected log L (docs/site.md)
    final = None if c["emulator_target"] == "mean" else \
        (lambda em: EmulatedSeriesLikelihood(em, errors.likelihood(), target="expected"))
    res = refine(simulate, _emulator(ctx), X, Y, lambda em: EmulatedSeriesLikelihood(em, errors.likelihood()),
                 ctx.space(), n_new=c["n_new"], max_rounds=c["refine_rounds"], min_steps=c["n_steps"],
                 max_steps=max(c["max_steps"], c["n_steps"]), n_walkers=c["n_walkers"] or None, seed=ctx.seed,
                 progress=ctx.progress, backend_dir=out / "chains", max_draws=MAX_DRAWS, moves=c["moves"],
                 n_particles=c["n_particles"] if c["start"] == "tempered" else 0, final_likelihood=final,
                 failed=design["X_failed"].values if "X_failed" in design else None)
    res.emulator.save(out / "output_emulator.nc")
    if final is not None:
        res.history.attrs["final_target"] = ("a chain on the final emulator's expected log-likelihood, "
                                             "averaged over its predictive sd (posterior.emulator_target = "
                                             "'expected')")
    res.history.to_netcdf(out / "refinement.nc")
    h = res.history
    err = h["heldout_error"].dropna("round")
    checked = "" if err.size == 0 else (f"; at round {int(err['round'][-1])}'s new runs the emulator's log L "
                                        f"was off by {float(err[-1]):.3g} nats rms")
    n = h.sizes["round"]
    ctx.say(f"  rounds 0-{n - 1} (a batch of new runs after each but the last), {res.X.shape[0]} model runs "
            "in the emulator; "
            f"q90 of sd[log L] {float(h['sd_loglik_q90'][-1]):.2f} nats{checked}; converged: {res.converged}")
    if not res.converged:  # in the report's warnings, not only in its refinement table
        warnings.warn(f"the emulator's refinement did not converge in {n - 1} rounds of new runs "
                      f"(posterior.refine_rounds; {res.X.shape[0]} model "
                      f"runs): q90 of sd[log L] {float(h['sd_loglik_q90'][-1]):.3g} nats over the posterior "
                      f"(converged: < 0.3){checked}; the posterior is the emulator's more than the model's: "
                      "raise posterior.refine_rounds, posterior.n_new or design.n_runs", UserWarning,
                      stacklevel=2)
    return res


def run_site_posterior(ctx: SiteContext) -> None:
    from bayescal.posterior import diagnose, save_inference_data
    from bayescal.posterior.site_calibration import (
        MAX_DRAWS,
        model_values,
        sample_posterior,
        series_log_likelihood,
    )

    space, c = ctx.space(), ctx.config["posterior"]
    out = ctx.run_dir / "posterior"
    errors = _ErrorModel(ctx)
    if c["route"] == "emulator":  # the posterior: chains/round_final.h5 (or the last round<r>.h5)
        res = _refine(ctx, errors)
        errors.save(res.emulator.predict(_posterior_mode(res.idata, space)[None], return_std=True)[1][0])
        idata = res.idata
    else:
        errors.add(_optimum_run(ctx))
        errors.save()
        values = model_values(ctx.calibration_simulator, space, errors.op, arrays=ctx.calibration_arrays())
        flush = _count_across_invocations(values, out / RUN_COUNT_FILE)
        loglik = series_log_likelihood(values, errors.likelihood())
        n_walkers = c["n_walkers"] or max(2 * space.n_free + 2, 32)
        _set_aside_a_longer_chain(ctx, out / "chain.h5", max(c["n_steps"], c["max_steps"] or 0))
        resumed = _say_resumed(ctx, out / "chain.h5")
        try:  # every step saved to chain.h5: a killed stage continues its chain where it stopped
            sampler = sample_posterior(loglik, space, ctx.optimum_u(), n_walkers=n_walkers + n_walkers % 2,
                                       n_steps=c["n_steps"], max_steps=c["max_steps"], seed=ctx.seed,
                                       backend=out / "chain.h5", progress=ctx.progress, moves=c["moves"],
                                       start=c["start"], n_particles=c["n_particles"],
                                       tempered=out / "tempered.nc")
        finally:  # Ctrl-C, SIGTERM: every run counted (a SIGKILL loses the last 0.2 s)
            flush()
        tau = float(np.nanmax(sampler.autocorr_time()))
        adapting = f" (the first {sampler.discard} adapting the moves)" if sampler.discard else ""
        ctx.say(f"  emcee: {n_walkers} walkers x {sampler.iteration} steps{adapting}, max tau {tau:.0f}; "
                "pointwise log-likelihood and predictive draws at the retained draws")
        # MAX_DRAWS whatever propagate.n_draws (<= MAX_DRAWS, validated): it chooses among these
        idata = sampler.to_inference_data(max_draws=MAX_DRAWS)
        # the chain's model runs are not stored (hundreds of thousands): their count and failures
        # are, over every invocation (a step redone after a kill counts again: it ran twice; a
        # killed one's last 0.2 s of runs may be missing)
        write_json_atomic(out / "evaluations.json", {"runs": values.runs, "failed": dict(values.failures),
                                                     "resumed_at_step": resumed})
        # the count kept for a rerun (a damaged file, a revision), now written as a record is
        write_json_atomic(out / RUN_COUNT_FILE, {"runs": values.runs, "failed": dict(values.failures)})
    save_inference_data(idata, out / "posterior.nc")
    diagnose(idata).to_netcdf(out / "diagnostics.nc")


def _count_across_invocations(values, path: Path) -> Callable[[], None]:
    """``values``' run and failure counts start from a stopped invocation's (saved at ``path``)
    and are saved there as the SMC and the chain run, at most every 0.2 s: written and renamed,
    without the fsync of a record (a killed process loses nothing the kernel has, but up to its
    last 0.2 s of runs). Returns the function that saves them now (the engine counts a resumed
    stage's earlier runs from this file)."""
    import json
    import os
    import time
    from collections import Counter

    from bayescal.workflow.rundir import read_json_record

    # a stopped invocation's count, else a finished one's (a damaged output file reran the stage)
    done = read_json_record(path) or read_json_record(path.with_name("evaluations.json")) or {}
    values.runs, values.failures = int(done.get("runs", 0)), Counter(done.get("failed", {}))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    last = [-1.0]

    def save(v, now: bool = False) -> None:  # at most every 0.2 s: a shared file system's renames cost
        if now or time.monotonic() - last[0] >= 0.2:
            try:
                tmp.write_text(json.dumps({"runs": v.runs, "failed": dict(v.failures)}))
            except OSError as err:  # a full disk: no torn file left, the error naming the file
                tmp.unlink(missing_ok=True)
                raise OSError(err.errno, err.strerror or str(err), str(path)) from err
            os.replace(tmp, path)
            last[0] = time.monotonic()

    values.after = save
    return lambda: save(values, now=True)


def _chain_steps(chain) -> int:
    """The steps an emcee HDF5 chain holds (0: none, or unreadable: the sampler starts afresh)."""
    import emcee

    try:
        return int(emcee.backends.HDFBackend(str(chain), read_only=True).iteration) if chain.exists() else 0
    except (KeyError, AttributeError, OSError, ValueError):
        return 0


def _say_rounds_resumed(ctx: SiteContext, chains) -> None:
    """One line when a stopped emulator route is continued: the rounds' chains it holds (their
    rounds' model runs are in their stores)."""
    order = lambda f: (f.stem == "round_final", len(f.stem), f.stem)  # noqa: E731 - round2 before round10
    steps = {f.stem: _chain_steps(f) for f in sorted(chains.glob("round*.h5"), key=order)}
    held = [f"{name} {n} steps" for name, n in steps.items() if n]
    if held:
        ctx.say(f"  resumed: the chains of a stopped run are continued ({', '.join(held)}); the rounds' "
                "model runs are in their stores")


def _say_resumed(ctx: SiteContext, chain) -> int:
    """One line when a stopped run's chain, or a shorter run's (a lower ``posterior.max_steps``),
    is continued (its steps are in ``chain``); the step it continues from (0: a new chain)."""
    steps = _chain_steps(chain)
    if steps:
        ctx.say(f"  chain resumed at step {steps} ({chain.name} holds the steps of a stopped run, or of a "
                "run with a lower posterior.max_steps)")
    elif chain.with_name("tempered_progress.nc").exists() and not chain.with_name("tempered.nc").exists():
        ctx.say("  tempered SMC resumed (tempered_progress.nc holds the temperatures a stopped run finished)")
    return steps


def _set_aside_a_longer_chain(ctx: SiteContext, chain, longest: int) -> None:
    """A kept chain longer than this run would make (``posterior.max_steps`` lowered) is not this
    run's: moved to the run directory's ``.stale/`` (the chain starts afresh; the runs it made stay
    in the stage's count, as every run made for it)."""
    from bayescal.workflow import set_aside

    steps = _chain_steps(chain)
    if steps > longest:
        moved = set_aside(ctx.run_dir, chain)
        ctx.say(f"  {chain.name} holds {steps} steps, more than posterior.max_steps: moved to "
                f"{moved.relative_to(ctx.run_dir)}; the chain starts afresh")


def _posterior_mode(idata, space) -> np.ndarray:
    """The retained draw with the highest log posterior (unit cube): the final chain's start."""
    from bayescal.posterior import get_group, unit_samples

    u = unit_samples(idata, space).values
    return u[int(np.argmax(get_group(idata, "sample_stats")["lp"].values.reshape(-1)))]


def run_site_report(ctx: SiteContext) -> None:
    from bayescal.report.site import write_site_report

    write_site_report(ctx.rundir)
