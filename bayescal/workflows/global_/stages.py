"""The stages of ``bayescal run``, each a function of the pipeline context.

``run_<stage>(ctx)`` reads what earlier stages wrote in ``ctx.run_dir`` and writes its own
directory; :mod:`.workflow` declares what each reads and needs. The context (:class:`~.context.GlobalContext`)
gives the config, the model (every run counted, through the runner's store), the calibrated
space, the twin observations and the likelihood summaries.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from bayescal.parameters import UNIT_CUBE, family
from bayescal.workflow.rundir import write_json_atomic
from bayescal.workflows.context import StageError, require_design_runs

if TYPE_CHECKING:
    from bayescal.workflows.global_.context import GlobalContext

__all__ = ["run_design", "run_emulate", "run_equifinality", "run_optimize",
           "run_posterior", "run_report", "run_screen"]

#: the fewest left-out runs with finite summaries whose spread the likelihood takes (of
#: ``posterior.left_out_runs``, at least 8)
MIN_LEFT_OUT = 5


def run_screen(ctx: GlobalContext) -> None:
    from bayescal.analysis.sensitivity import analyze, evaluate, sample, screen

    cfg = ctx.config
    out = ctx.run_dir / "screen"
    ctx.check_own_model()  # your model's output against the route's needs, before its runs
    if cfg["screen"]["enabled"]:
        cands = cfg["parameters"]["candidates"]
        space = ctx.full_space.only(cands) if cands else ctx.full_space
        obs, _ = ctx.twin()
        from bayescal.operators.scores import residuals

        targets: dict[str, Callable] = {
            "misfit": lambda ds: (residuals(ds, obs) ** 2).sum("residual"),
            "gpp": lambda ds: ds.gpp_global.mean("year"),
            "nbp": lambda ds: ds.nbp_global.mean("year"),
            **_summary_targets(ctx),
        }
        if cfg["screen"]["top_k"] >= len(space.labels):
            ctx.say(f"  screen.top_k = {cfg['screen']['top_k']} keeps all {len(space.labels)} candidate "
                    "values: the screen's runs only order them (screen.enabled = false calibrates every "
                    "value without them)")
        design = sample(space, "morris", cfg["screen"]["trajectories"], seed=ctx.seed)
        res = evaluate(
            ctx.simulator,
            design,
            targets,
            store=out / "morris",
            batch_size=ctx.batch_size(), executor=ctx.executor,
            progress=ctx.progress,
            keep=[*ctx.run_dataset_vars(), "gpp_global"],
        )
        idx = analyze(space, design, res, on_failure="drop")
        idx.to_netcdf(out / "indices.nc")
        _say_failures(ctx, res, idx)
        free = set(cfg["parameters"]["free"] or [])
        # what the observations can inform: the largest Morris mu* of any likelihood summary,
        # in units of that summary's sigma (not the misfit's mu* at the defaults, which
        # dropped values the truth moves)
        info = [t for t in idx["target"].values if str(t).startswith("summary:")]
        chosen = screen(idx, threshold=None, top_k=cfg["screen"]["top_k"], targets=info,
                        normalise=False)
        # the screen's choice among the candidates, plus every value parameters.free names
        # (candidates or not: a family names all its values)
        labels = [lab for lab in ctx.full_space.labels
                  if (lab in chosen and lab in space.labels) or lab in free or family(lab) in free]
    else:
        labels = ctx.full_space.only(cfg["parameters"]["free"]).labels
    write_json_atomic(out / "selected.json", {"parameters": labels})
    more = f", ... ({len(labels) - 8} more: screen/selected.json)" if len(labels) > 8 else ""
    shown = ", ".join(labels[:8]) + more
    ctx.say(f"  calibrating {len(labels)} parameters: {shown}")


def _say_failures(ctx: GlobalContext, res: xr.Dataset, idx: xr.Dataset) -> None:
    """The screen's failed runs by reason, and the trajectories they cost (Morris needs each whole)."""
    from bayescal.run.ensemble import describe_failures

    failed = res["status"].values != "done"
    if failed.any():
        ctx.say(f"  {int(failed.sum())} of {failed.size} Morris runs failed "
                f"({describe_failures(map(str, res['reason'].values[failed]))}): "
                f"{idx.attrs.get('blocks_dropped', '?')} trajectories dropped, the indices from "
                f"{idx.attrs.get('members_used', '?')} runs")


def _summary_targets(ctx: GlobalContext) -> dict[str, Callable]:
    """One screening target per likelihood summary, in units of its sigma (computed once)."""
    observed, sigma = ctx.observed()
    cache: dict[int, np.ndarray] = {}

    def target(k: int) -> Callable:
        def f(ds: xr.Dataset) -> xr.DataArray:
            if id(ds) not in cache:
                cache.clear()
                cache[id(ds)] = ctx.summaries(ds) / sigma
            return xr.DataArray(cache[id(ds)][:, k], dims="member")

        return f

    return {f"summary:{k}": target(k) for k in range(observed.size)}


def _objective(ctx: GlobalContext, workdir: Path):
    from bayescal.optimize import ModelObjective

    obs, _ = ctx.twin()
    return ModelObjective(
        ctx.simulator, ctx.space(), obs, measure=ctx.config["optimize"]["misfit"], workdir=workdir,
        batch_size=ctx.batch_size(), executor=ctx.executor,
    )


class _Reported:
    """The objective, with a progress line per batch of runs, or every 5 s (optimisers print nothing here)."""

    def __init__(self, objective, progress) -> None:
        self.objective, self.progress = objective, progress

    def __getattr__(self, name: str):
        return getattr(self.objective, name)

    def __call__(self, u: np.ndarray):
        out = self.objective(u)
        self.progress.update(out["misfit"].values)
        return out


def _budget(ctx: GlobalContext) -> int | None:
    """The optimiser's run budget, for the progress lines (DE's is its generations' upper bound)."""
    c, d = ctx.config["optimize"], ctx.space().n_free
    return {"ga": c["pop_size"] * c["n_generations"], "dfols": c["max_evaluations"],
            "cma_es": c["max_evaluations"],
            "differential_evolution": max(1, c["pop_size"] // d) * d * (c["n_generations"] + 1)
            }.get(c["method"])


def _optimiser_calls(ctx: GlobalContext, out: Path) -> dict[str, Callable]:
    """Config method name -> call of the optimiser with that section's settings."""
    from bayescal import optimize as opt

    c, space = ctx.config["optimize"], ctx.space()
    return {
        "ga": lambda obj: opt.genetic_algorithm(
            obj, space, pop_size=c["pop_size"], n_generations=c["n_generations"], seed=ctx.seed,
            checkpoint=out / "ga_checkpoint.json"),
        "dfols": lambda obj: opt.dfols(obj, space, max_evaluations=c["max_evaluations"], seed=ctx.seed),
        "cma_es": lambda obj: opt.cma_es(obj, space, max_evaluations=c["max_evaluations"], seed=ctx.seed),
        "differential_evolution": lambda obj: opt.differential_evolution(
            obj, space, pop_size=max(1, c["pop_size"] // space.n_free),
            max_generations=c["n_generations"], seed=ctx.seed),
    }


def run_optimize(ctx: GlobalContext) -> None:
    c = ctx.config["optimize"]
    out = ctx.run_dir / "optimize"
    if c["method"] == "none":
        write_json_atomic(out / "none.json", {})
        return
    from bayescal.optimize.progress import BudgetProgress

    # a line per batch; DFO-LS runs one model run at a time: a line at most every 5 s (and the one
    # that spends the budget)
    every = 5.0 if c["method"] == "dfols" else 0.0
    objective = _Reported(_objective(ctx, out / "runs"), BudgetProgress(ctx.say, _budget(ctx), every=every))
    res = _optimiser_calls(ctx, out)[c["method"]](objective)
    res.history.to_netcdf(out / "history.nc")
    ctx.say(f"  {c['method']}: best misfit {res.fun:.4g} after {res.n_evaluations} runs")


def run_design(ctx: GlobalContext) -> None:
    from bayescal.parameters.design import latin_hypercube
    from bayescal.run.ensemble import EnsembleStore

    c = ctx.config["design"]
    out = ctx.run_dir / "design"
    ctx.observed()  # the products read (a file problem named) before the design's runs
    space = ctx.space()
    design = latin_hypercube(space, c["n_runs"], seed=ctx.seed)
    ctx.run_members(
        ctx.simulator,
        space.to_dataarray(space.expand(design.values), full=True),
        out / "ensemble",
        batch_size=c["batch_size"],
        executor=ctx.executor,
        keep=ctx.run_dataset_vars(),
    )
    ens = EnsembleStore(out / "ensemble").load()
    ok = ens["status"].values == "done"
    # object arrays: a fixed-width "<U4" of "done" would cut "failed" and its reason short
    status, reason = (np.array([str(x) for x in ens[v].values], dtype=object) for v in ("status", "reason"))
    obs, _ = ctx.twin()
    u = space.to_unit(design.values)
    require_design_runs(int(ok.sum()), len(u), reason[~ok], out / "ensemble")
    Y = np.full((len(u), ctx.observed()[0].size), np.nan)
    Y[ok] = ctx.summaries(ens.isel(member=np.flatnonzero(ok)))
    collapsed = ok & np.isnan(Y).any(axis=1)
    status[collapsed], reason[collapsed] = "failed", "a likelihood summary is not finite"
    ok &= ~collapsed
    require_design_runs(int(ok.sum()), len(u), reason[~ok], out / "ensemble")
    # the optimiser's measure (optimize.misfit), so the emulator may train on both sets of runs
    misfit = np.full(len(u), np.nan)
    measured = _objective(ctx, None).measure_runs(ens.isel(member=np.flatnonzero(ok)))
    misfit[ok] = measured["misfit"].values
    xr.Dataset(
        {
            "u": (("member", "parameter"), u, UNIT_CUBE),
            "misfit": ("member", misfit),
            "summaries": (("member", "summary"), Y),
            "status": ("member", status),
            "reason": ("member", reason),
        },
        coords={"parameter": space.labels},
    ).to_netcdf(out / "training.nc")
    from bayescal.run.ensemble import count_reasons, describe_failures

    why = count_reasons(str(r) for r in reason[status != "done"])
    failed = f" ({describe_failures(why, most=3)}: design/training.nc)" if why else ""
    ctx.say(f"  {ok.sum()} of {len(u)} runs usable{failed}; best misfit {np.nanmin(misfit):.4g}")


def _stored_summaries(ctx: GlobalContext, space, points: np.ndarray, store: Path) -> np.ndarray:
    """Summaries of unit-cube points run through the runner's store (NaN rows: failed)."""
    return _stored_runs(ctx, space, points, store)[0]


def _stored_runs(ctx: GlobalContext, space, points: np.ndarray, store: Path) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_stored_summaries` and which runs failed as the model's own failure
    (:func:`~bayescal.run.ensemble.model_failures`: not a timeout or a kill)."""
    from bayescal.run.ensemble import EnsembleStore, model_failures

    ctx.run_members(ctx.simulator, space.to_dataarray(space.expand(space.from_unit(points)), full=True),
                    store, batch_size=ctx.config["design"]["batch_size"], keep=ctx.run_dataset_vars(),
                    executor=ctx.executor)
    ens = EnsembleStore(store).load()
    done = ens["status"].values == "done"
    y = np.full((points.shape[0], ctx.observed()[0].size), np.nan)
    if done.any():
        y[done] = ctx.summaries(ens.isel(member=np.flatnonzero(done)))
    # a run whose summary is not finite failed at its values too (as the design counts it)
    return y, model_failures(ens["status"].values, ens["reason"].values) | (done & np.isnan(y).any(axis=1))


def _left_out_spread(ctx: GlobalContext, store: Path) -> np.ndarray:
    """Spread of the summaries over the left-out values' prior (Latin hypercube, runner store)."""
    from bayescal.parameters.design import latin_hypercube
    from bayescal.run.ensemble import EnsembleStore

    n = ctx.config["posterior"]["left_out_runs"]
    n_obs = ctx.observed()[0].size
    left = ctx.left_out_space()
    if left is None:  # every candidate value is calibrated
        return np.zeros(n_obs)
    design = latin_hypercube(left, n, seed=ctx.seed + 1)
    ctx.run_members(ctx.simulator, left.to_dataarray(left.expand(design.values), full=True), store,
                    batch_size=ctx.config["design"]["batch_size"], keep=ctx.run_dataset_vars(),
                    executor=ctx.executor)
    ens = EnsembleStore(store).load()
    done = np.flatnonzero(ens["status"].values == "done")
    y = ctx.summaries(ens.isel(member=done)) if done.size else np.zeros((0, n_obs))
    y = y[np.isfinite(y).all(axis=1)]
    if y.shape[0] < MIN_LEFT_OUT:  # a spread of fewer is no estimate
        raise StageError(f"only {y.shape[0]} of {n} left-out runs finished with finite summaries in {store} "
                         f"({done.size} finished; the others' reasons are in their member files); need >= "
                         f"{MIN_LEFT_OUT}: raise posterior.left_out_runs, or set posterior.left_out = 'fix'")
    if y.shape[0] < n:  # a run that fails or whose summaries are not finite: the spread of the others
        warnings.warn(f"{n - y.shape[0]} of {n} left-out runs failed or gave summaries that are not finite "
                      f"(posterior/left_out); their spread is estimated from {y.shape[0]}: raise "
                      "posterior.left_out_runs for a steadier one", UserWarning, stacklevel=2)
    sd = y.std(axis=0, ddof=1)
    ctx.say(f"  {left.n_free} values left out of the calibration; over their prior the summaries "
              f"spread by a median {np.median(sd / ctx.observed()[1]):.2f} sigma ({y.shape[0]} runs)")
    return sd


def _misfit_training(ctx: GlobalContext) -> tuple[np.ndarray, np.ndarray]:
    """The misfit emulator's training runs: unit-cube points and log misfits.

    The finished runs of the design and of the optimiser (``emulator.training = "all"``) or of
    the optimiser only (``"optimize"``, Seiler's GA runs), once each, less the worst
    ``emulator.drop_worst`` of them (Seiler: 0.25).
    """
    c = ctx.config["emulator"]
    parts = []
    if c["training"] == "all":
        tr = ctx.training()
        parts.append((tr["u"].values, tr["misfit"].values, tr["status"].values.astype(str)))
    hist = ctx.run_dir / "optimize" / "history.nc"
    if hist.exists():
        h = xr.load_dataset(hist)
        parts.append((h["u"].values, h["misfit"].values, h["status"].values.astype(str)))
    elif c["training"] == "optimize":
        raise StageError("emulator.training = 'optimize' needs an optimiser: set optimize.method")
    u = np.vstack([p[0] for p in parts])
    misfit = np.concatenate([p[1] for p in parts])
    ok = np.concatenate([p[2] for p in parts]) == "done"
    ok &= misfit > 0
    u, misfit = u[ok], misfit[ok]
    u, first = np.unique(u, axis=0, return_index=True)
    misfit = misfit[first]
    if c["drop_worst"] > 0:
        keep = np.argsort(misfit, kind="stable")[: int(np.ceil((1.0 - c["drop_worst"]) * misfit.size))]
        u, misfit = u[np.sort(keep)], misfit[np.sort(keep)]
    return u, np.log(misfit)


def run_emulate(ctx: GlobalContext) -> None:
    from threadpoolctl import threadpool_limits

    from bayescal.emulators import GPEmulator

    out = ctx.run_dir / "emulate"
    u, logm = _misfit_training(ctx)
    X = xr.DataArray(u, dims=("member", "parameter"), coords={"parameter": ctx.space().labels})
    with threadpool_limits(1):
        gp = GPEmulator(n_restarts=ctx.config["emulator"]["n_restarts"], random_state=ctx.seed).fit(
            X, logm
        )
    gp.save(out / "misfit_emulator.nc")
    loo = gp.loo()
    loo.to_netcdf(out / "misfit_loo.nc")
    ctx.say(
        f"  log-misfit GP on {len(u)} runs: LOO R2 {loo.attrs['r2']:.3f}, "
        f"95 % coverage {loo.attrs['coverage_95']:.2f}"
    )


def _summary_coords(ctx: GlobalContext) -> dict:
    """The likelihood summaries' labels for the InferenceData: ``summary`` ("gpp:boreal",
    "nbp_global:1960-1969"), ``variable``, ``region`` (biome or years), ``products`` and
    ``units`` (log biome means: ln of the products' units; GCB NBP blocks: PgC yr-1)."""
    from bayescal.observations.products import observed_regional_means

    obs, truth = ctx.twin()
    op = ctx.summary_operator
    o, _ = observed_regional_means(obs, list(op.variables), truth["biome"], truth["area"],
                                   floor=op.sigma_floor)
    labels = [str(x) for x in o["summary"].values] + [f"nbp_global:{a}-{b}" for a, b in op.blocks()]
    if len(labels) != ctx.observed()[0].size:
        return {}
    var = [lab.split(":", 1)[0] for lab in labels]
    prods = {v: obs[v] for v in op.variables}
    return {
        "summary": labels,
        "variable": var,
        "region": [lab.split(":", 1)[1] for lab in labels],
        "products": ["+".join(p.name for p in prods[v]) if v in prods else "GCB 2024" for v in var],
        "units": [f"ln({prods[v][0].units})" if v in prods else "PgC yr-1" for v in var],
    }


def run_posterior(ctx: GlobalContext) -> None:
    from bayescal.emulators import GPEmulator, SVDEmulator
    from bayescal.posterior import GaussianLikelihood, diagnose, save_inference_data
    from bayescal.posterior.refinement import refine
    from bayescal.run.ensemble import model_failures

    c = ctx.config["posterior"]
    out = ctx.run_dir / "posterior"
    space = ctx.space()
    tr = ctx.training()
    ok = tr["status"].values == "done"
    observed, sigma = ctx.observed()
    discrepancy = 0.0
    if c["left_out"] == "marginalise":
        discrepancy = _left_out_spread(ctx, out / "left_out")
    xr.Dataset(
        {"left_out_sd": ("summary", np.broadcast_to(discrepancy, observed.shape)),
         "sigma": ("summary", sigma)},
        attrs={"left_out": c["left_out"], "n_left_out": getattr(ctx.left_out_space(), "n_free", 0),
               "description": "left_out_sd: sd of each summary over the prior of the values left "
               "out of the calibration (calibrated values at their defaults), added to the "
               "likelihood as discrepancy; zero with left_out = 'fix'"},
    ).to_netcdf(out / "left_out.nc")

    rounds = iter(range(10**6))

    def simulate(points: np.ndarray) -> np.ndarray:
        # through the runner's store, one per round: refine is seeded, so a resumed stage
        # asks for the same points and finds the finished runs there
        return _stored_runs(ctx, space, points, out / "refine" / f"round{next(rounds)}")

    emulator = SVDEmulator(
        variance_threshold=ctx.config["emulator"]["variance_threshold"],
        estimator=GPEmulator(n_restarts=0, random_state=ctx.seed),
        random_state=ctx.seed,
        residual_sd=0.2 * np.asarray(sigma),  # adds at most 4 % to sigma^2
    )
    coords = _summary_coords(ctx)
    units = coords.pop("units", None)
    res = refine(
        simulate,
        emulator,
        tr["u"].values[ok],
        tr["summaries"].values[ok],
        lambda e: GaussianLikelihood(e, observed, sigma, discrepancy=discrepancy, space=None,
                                     dim="summary", coords=coords, units=units),
        space,
        n_new=c["n_new"],
        max_rounds=c["refine_rounds"],
        min_steps=c["n_steps"],
        max_steps=c["max_steps"],
        n_walkers=c["n_walkers"] or None,
        seed=ctx.seed,
        progress=ctx.progress,
        backend_dir=out / "chains",  # each round's chain, step by step: a killed stage resumes
        # the design's runs the model failed: no posterior mass, no new run there
        failed=tr["u"].values[model_failures(tr["status"].values, tr["reason"].values)],
    )
    save_inference_data(res.idata, out / "posterior.nc")
    # R-hat and ESS for the report (warns, into the stage's record, when out of bounds)
    diagnose(res.idata).to_netcdf(out / "diagnostics.nc")
    res.emulator.save(out / "output_emulator.nc")
    res.history.to_netcdf(out / "refinement.nc")
    xr.Dataset(
        {"X": (("member", "parameter"), res.X), "Y": (("member", "summary"), res.Y)},
        coords={"parameter": space.labels},
    ).to_netcdf(out / "training.nc")
    n_rounds = res.history.sizes.get("round", 0)  # round 0: the emulator of the design, before any new run
    ctx.say(f"  emulator fitted {n_rounds} times (the design, then {max(n_rounds - 1, 0)} refinement "
            f"rounds of new runs), converged: {res.converged}")


def run_equifinality(ctx: GlobalContext) -> None:
    from bayescal.analysis.equifinality import (
        alternatives,
        constrained_directions,
        correlation,
        distance_score_cloud,
        identifiability,
        pca,
        seiler_alternatives,
        top_fraction_pca,
    )
    from bayescal.posterior import Priors

    c = ctx.config["equifinality"]
    out = ctx.run_dir / "equifinality"
    space = ctx.space()
    post = ctx.posterior_u()
    identifiability(post, Priors(space).sd()).to_netcdf(out / "identifiability.nc")
    directions = constrained_directions(post, Priors(space).sd())
    directions.to_netcdf(out / "directions.nc")
    correlation(post).to_netcdf(out / "correlation.nc")
    pca(post, variance=0.9).to_netcdf(out / "pca.nc")
    gp = ctx.misfit_emulator()
    best = ctx.optimum_u()
    n = c["cloud_points"]
    glob = distance_score_cloud(gp, best, n=n, seed=ctx.seed)
    loc = distance_score_cloud(gp, best, n=n, local=0.1, seed=ctx.seed, relative_to=c["local_box"],
                               space=space)
    glob.to_netcdf(out / "cloud_global.nc")
    loc.to_netcdf(out / "cloud_local.nc")
    pool = np.vstack([post.values[:: max(1, post.sizes["sample"] // 4000)], best[None]])
    alt = alternatives(pool, gp.predict(pool), k=c["n_alternatives"] + 1)
    # the first alternative is the best of the pool; keep the others as alternatives to the optimum
    alt = alt.isel(alternative=slice(1, None)).assign_coords(parameter=space.labels)
    alt.to_netcdf(out / "alternatives.nc")
    # Seiler's procedures beside the posterior's: top 10 % of the runs -> box -> LHS -> emulator ->
    # top 10 % -> PCA, and the five best of that ensemble as alternative sets
    top = top_fraction_pca(gp, *_misfit_training(ctx), fraction=0.1, n=c["seiler_points"], seed=ctx.seed)
    top = top.assign_coords(parameter=space.labels)  # as pca.nc's: the two align value by value
    top.to_netcdf(out / "top_fraction_pca.nc")
    seiler_alternatives(top, best, k=min(5, top.sizes["sample"])).assign_coords(
        parameter=space.labels).to_netcdf(out / "alternatives_seiler.nc")
    ctx.say(
        f"  distance-score Spearman: global {glob.attrs['spearman']:.2f}, "
        f"local {loc.attrs['spearman']:.2f}; {alt.sizes['alternative']} alternative sets; the data fix "
        f"{directions.attrs['n_constrained']} of {space.n_free} directions; PCA "
        f"components for 90 %: posterior {pca(post).attrs['n_components']}, Seiler's top 10 % "
        f"{top.attrs['n_components']}"
    )


def run_report(ctx: GlobalContext) -> None:
    from bayescal.report import write_report

    path = write_report(ctx)
    ctx.say(f"  report: {path}")
