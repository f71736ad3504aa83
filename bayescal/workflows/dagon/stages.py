"""The stage functions of Dagon et al.'s route (:mod:`bayescal.workflows.dagon.context`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from bayescal.operators.eof import EOFBasis
from bayescal.workflow.rundir import write_json_atomic

if TYPE_CHECKING:
    from .context import DagonContext

__all__ = ["run_dagon_report", "run_emulate", "run_emulator_screen", "run_oat"]


def run_oat(ctx: DagonContext) -> None:
    from bayescal.analysis.oat import dagon_oat
    from bayescal.analysis.sensitivity import oat_design
    from bayescal.run.ensemble import EnsembleStore, run_ensemble

    out = ctx.run_dir / "oat"
    cands = ctx.config["parameters"]["candidates"]
    space = ctx.full_space.only(cands) if cands else ctx.full_space
    theta = space.expand(oat_design(space))
    store = out / "ensemble"
    run_ensemble(ctx.simulator, space.to_dataarray(theta, full=True), store,
                 batch_size=ctx.config["design"]["batch_size"], keep=ctx.run_dataset_vars(),
                 progress=ctx.progress, executor=ctx.executor)
    runs = EnsembleStore(store).load()
    fields = {v: (lambda ds, v=v: ds[v].mean("time")) for v in ctx.config["observations"]["variables"]}
    ranking = dagon_oat(lambda _theta: runs, space, fields, runs["area"].values)
    ranking.to_netcdf(out / "ranking.nc")
    chosen = ctx.selection(ranking)
    write_json_atomic(out / "selected.json", {"parameters": chosen})
    ctx.say(f"  {space.n_free} values at their bounds ({theta.shape[0]} runs); calibrating {len(chosen)} "
            f"(by {ctx.config['oat']['select']}): {', '.join(chosen[:6])}{' ...' if len(chosen) > 6 else ''}")


#: the network's early-stopping share of the training members: 0.25 of 80 % = 20 % of all
VALIDATION = 0.25


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Dagon's split of the members: 20 % test here; the network holds out a quarter of the other
    80 % to stop early (:data:`VALIDATION`), so 60 / 20 / 20 as Dagon et al."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(0.2 * n)))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def run_emulate(ctx: DagonContext) -> None:
    from bayescal.emulators import DagonNetwork
    from bayescal.run.ensemble import EnsembleStore

    out = ctx.run_dir / "emulate"
    c = ctx.config["emulator"]
    runs = EnsembleStore(ctx.run_dir / "design" / "ensemble").load()
    tr = ctx.training()
    done = np.flatnonzero(tr["status"].values == "done")
    u = tr["u"].values[done]
    maps = ctx.mean_maps(runs.isel(member=done))
    obs_mean, obs_annual = ctx.observed_maps()
    area = runs["area"].values
    train, test = _split(done.size, ctx.seed)
    parts, lines = [], []
    for v in ctx.config["observations"]["variables"]:
        cells = np.isfinite(obs_mean[v])  # the model masked to the observed cells, as Dagon did
        basis = EOFBasis.fit(maps[v][:, cells], area[cells], n_modes=c["eof_modes"])
        pcs = basis.project(maps[v][:, cells])
        annual = basis.project(np.where(np.isfinite(obs_annual[v][:, cells]), obs_annual[v][:, cells],
                                        basis.mean))
        net = DagonNetwork(hidden=tuple(c["network"]), validation_fraction=VALIDATION,
                           random_state=ctx.seed).fit(u[train], pcs[train])
        net.save(out / f"network_{v}.nc")
        pred = net.predict(u[test]).reshape(test.size, -1)
        r2 = 1 - ((pred - pcs[test]) ** 2).sum(0) / ((pcs[test] - pcs[test].mean(0)) ** 2).sum(0)
        rmse = np.sqrt(((pred - pcs[test]) ** 2).mean(0))
        years_sd = annual.std(axis=0, ddof=1)
        mode = f"{v}_mode"
        parts.append(basis.to_dataset(v).assign({
            f"{v}_obs_pc": (mode, basis.project(obs_mean[v][cells])),
            # Eq. 6's sigma: the observed PCs' spread over the years (Dagon), and -- Dagon's stated
            # limitation -- the network's test error, so the cost does not trust the emulator
            # beyond its accuracy
            f"{v}_obs_sd": (mode, np.sqrt(years_sd**2 + rmse**2)), f"{v}_years_sd": (mode, years_sd),
            f"{v}_test_rmse": (mode, rmse),
            f"{v}_test_r2": (mode, r2), f"{v}_cells": ("cell", cells),
            f"{v}_pc": (("member", mode), pcs), f"{v}_test": ("member", np.isin(np.arange(done.size), test)),
        }))
        lines.append(f"{v}: {basis.n_modes} modes ({basis.fraction.sum():.1%} of the variance), "
                     f"test R2 {', '.join(f'{x:.2f}' for x in r2)}")
    xr.merge(parts).assign(u=(("member", "parameter"), u)).assign_coords(
        member=done, parameter=ctx.space().labels).to_netcdf(out / "eof.nc")
    ctx.say("  " + "; ".join(lines))


def _verify(ctx: DagonContext, space, points: np.ndarray, store) -> tuple[np.ndarray, dict, np.ndarray]:
    """Run unit-cube ``points`` through the runner's store: model cost, PCs and status."""
    from bayescal.run.ensemble import EnsembleStore, run_ensemble

    run_ensemble(ctx.simulator, space.to_dataarray(space.expand(space.from_unit(points)), full=True),
                 store, batch_size=len(points), keep=ctx.run_dataset_vars(), progress=False,
                 executor=ctx.executor)
    runs = EnsembleStore(store).load()
    return ctx.model_cost(runs), ctx.model_pcs(runs), runs["status"].values.astype(str)


def _refine(ctx: DagonContext, space, cost, out) -> list[dict]:
    """Dagon's DE optimum on the emulator, verified by a model run -- and then better: each verified
    run joins the networks' training set and the optimum is sought again (``refine_rounds``)."""
    from bayescal.emulators import DagonNetwork, emulator_optimum

    eof = ctx.eof_data()
    X = eof["u"].values
    P = {v: eof[f"{v}_pc"].values for v in cost.networks}
    rounds = []
    for r in range(ctx.config["emulator_screen"]["refine_rounds"] + 1):
        u_best, j_emul = emulator_optimum(cost, space.n_free, seed=ctx.seed + r)
        j_model, pcs, status = _verify(ctx, space, u_best[None], out / "verify" / f"round{r}")
        rounds.append({"round": r, "u": u_best.tolist(), "emulated_cost": float(j_emul),
                       "model_cost": float(j_model[0]), "status": status[0]})
        ctx.say(f"  round {r}: DE optimum emulated {j_emul:.3g}, model {j_model[0]:.3g}")
        if r == ctx.config["emulator_screen"]["refine_rounds"] or status[0] != "done":
            break
        X = np.vstack([X, u_best])
        for v in cost.networks:
            P[v] = np.vstack([P[v], pcs[v]])
            net = DagonNetwork(hidden=tuple(ctx.config["emulator"]["network"]),
                               validation_fraction=VALIDATION, random_state=ctx.seed)
            cost.networks[v] = net.fit(X, P[v])
    return rounds


def run_emulator_screen(ctx: DagonContext) -> None:
    from bayescal.emulators import emulator_screen

    out = ctx.run_dir / "emulator_screen"
    c = ctx.config["emulator_screen"]
    space, cost = ctx.space(), ctx.cost()
    screen = emulator_screen(cost, space.n_free, n=c["n_points"], k=c["keep"], seed=ctx.seed,
                             labels=space.labels)
    screen.to_netcdf(out / "screen.nc")
    u_default = space.to_unit(space.default)
    j_default, _, _ = _verify(ctx, space, u_default[None], out / "verify" / "default")
    j_default_emul = float(cost.predict(u_default[None])[0])
    rounds = _refine(ctx, space, cost, out)
    done = [r for r in rounds if r["status"] == "done"]
    best = min(done, key=lambda r: r["model_cost"]) if done else rounds[0]
    result = {
        "parameters": space.labels, "default_u": u_default.tolist(), "optimum_u": best["u"],
        "emulated_cost": {"default": j_default_emul, "optimum": rounds[0]["emulated_cost"]},
        "model_cost": {"default": float(j_default[0]), "optimum": best["model_cost"]},
        "rounds": rounds,
        "screen": {"n": int(screen.attrs["n"]), "min": float(screen.attrs["min"]),
                   "mean": float(screen.attrs["mean"])},
    }
    write_json_atomic(out / "optimum.json", result)
    ctx.say(f"  {screen.attrs['n']:,} emulated points: cost min {screen.attrs['min']:.3g}, mean "
            f"{screen.attrs['mean']:.3g}; default: model {j_default[0]:.3g}; best verified optimum "
            f"(round {best['round']}): model {best['model_cost']:.3g}")


def run_dagon_report(ctx: DagonContext) -> None:
    from bayescal.report.dagon import write_dagon_report

    ctx.say(f"  report: {write_dagon_report(ctx.run_dir)}")
