"""The stage functions of Dagon et al.'s route (:mod:`bayescal.workflows.dagon.context`)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from bayescal.operators.eof import EOFBasis
from bayescal.workflow.rundir import write_json_atomic

if TYPE_CHECKING:
    from .context import DagonContext

__all__ = ["ESTIMATES", "interpret_network", "map_rmse", "run_dagon_design", "run_dagon_report",
           "run_emulate", "run_emulator_screen", "run_errors", "run_oat"]


def run_oat(ctx: DagonContext) -> None:
    from bayescal.analysis.oat import dagon_oat, group_oat_design
    from bayescal.run.ensemble import EnsembleStore

    out = ctx.run_dir / "oat"
    c = ctx.config["oat"]
    cands = ctx.config["parameters"]["candidates"]
    space = ctx.full_space.only(cands) if cands else ctx.full_space
    theta, units = group_oat_design(space, c["unit"])
    store = out / "ensemble"
    ctx.run_members(ctx.simulator, space.to_dataarray(space.expand(theta), full=True), store,
                    batch_size=ctx.config["design"]["batch_size"], keep=list(c["outputs"]),
                    executor=ctx.executor)
    runs = EnsembleStore(store).load()
    fields = {v: (lambda ds, v=v: ds[v].mean("time")) for v in c["outputs"]}
    ranking = dagon_oat(lambda _theta: runs, space, fields, runs["area"].values, unit=c["unit"])
    coords = {k: ("cell", runs[k].values) for k in ("lon", "lat", "area") if k in runs}
    coords["output_units"] = ("output", [runs[v].attrs.get("units", "") for v in c["outputs"]])
    ranking = ranking.assign_coords(coords)
    ranking.to_netcdf(out / "ranking.nc")
    groups = ctx.selection(ranking, space)
    chosen = [lab for labs in groups.values() for lab in labs]
    write_json_atomic(out / "selected.json", {"parameters": chosen, "unit": c["unit"], "groups": groups})
    names = list(groups)
    ctx.say(f"  {len(units)} {c['unit']} units at their bounds "
            f"({theta.shape[0]} runs) on {', '.join(c['outputs'])}; calibrating {len(names)} (by "
            f"{c['select']}; {len(chosen)} values): {', '.join(names[:6])}{' ...' if len(names) > 6 else ''}")


def run_dagon_design(ctx: DagonContext) -> None:
    """Dagon's perturbed-parameter ensemble: a Latin hypercube of ``design.n_runs`` points in the
    calibrated coordinates (one factor per family with ``oat.unit = "family"``)."""
    from bayescal.parameters.design import latin_hypercube
    from bayescal.run.ensemble import EnsembleStore

    out = ctx.run_dir / "design"
    calib = ctx.calibration()
    u = latin_hypercube(calib.unit_space(), ctx.config["design"]["n_runs"], seed=ctx.seed).values
    ctx.run_members(ctx.simulator, calib.design(u), out / "ensemble",
                    batch_size=ctx.config["design"]["batch_size"], executor=ctx.executor,
                    keep=ctx.run_dataset_vars())
    ens = EnsembleStore(out / "ensemble").load()
    status, reason = ens["status"].values.astype(str), ens["reason"].values.astype(str)
    xr.Dataset({"u": (("member", "parameter"), u), "status": ("member", status),
                "reason": ("member", reason)}, coords={"parameter": calib.labels},
               attrs={"unit": ctx.config["oat"]["unit"]}).to_netcdf(out / "training.nc")
    ctx.say(f"  {(status == 'done').sum()} of {len(u)} runs finished ({calib.n_free} coordinates, "
            f"{calib.space.n_free} values)")


#: the network's early-stopping share of the training members: 0.25 of 80 % = 20 % of all
VALIDATION = 0.25
#: Dagon's partial dependence: 10 values evenly over each parameter's range (Sect. 3.2)
PD_GRID = np.linspace(0.0, 1.0, 10)


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Dagon's split of the members: 20 % test here; the network holds out a quarter of the other
    80 % to stop early (:data:`VALIDATION`), so 60 / 20 / 20 as Dagon et al."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(0.2 * n)))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def interpret_network(net, u: np.ndarray, pcs: np.ndarray, test: np.ndarray, name: str,
                      seed: int = 0, n_repeats: int = 10) -> xr.Dataset:
    """Dagon's Figs. 7-8 for one variable's network.

    Parameters
    ----------
    net : fitted emulator
        ``predict(u) -> (points, modes)``.
    u, pcs : ndarray
        The members' unit-cube points (member, parameter) and PCs (member, mode).
    test : ndarray of int
        The held-out members whose MSE is compared (Eq. 4 as the skill).
    name : str
        The variable (prefix of the variables and of the mode dimension).
    seed, n_repeats : int
        The shuffles.

    Returns
    -------
    xarray.Dataset
        ``<name>_mse`` and ``<name>_mse_sd`` (parameter, mode): the test members' MSE with the
        parameter shuffled; ``<name>_baseline_mse`` (mode) unshuffled; ``<name>_partial_dependence``
        (parameter, value, mode): the prediction averaged over every member with the parameter
        fixed at each value of :data:`PD_GRID`.
    """
    from bayescal.emulators.validation import partial_dependence, permutation_importance

    d, n_modes = u.shape[1], pcs.shape[1]
    mse, sd, base = np.empty((d, n_modes)), np.empty((d, n_modes)), np.empty(n_modes)
    pd = np.empty((d, PD_GRID.size, n_modes))
    for m in range(n_modes):
        imp = permutation_importance(net, u[test], pcs[test], n_repeats=n_repeats, seed=seed,
                                     scoring="neg_mean_squared_error", output=m)
        base[m] = -imp.attrs["baseline_score"]
        mse[:, m], sd[:, m] = base[m] + imp["importance"].values, imp["importance_sd"].values
        for j in range(d):
            pd[j, :, m] = partial_dependence(net, u, j, grid=PD_GRID, output=m).values
    mode = f"{name}_mode"
    return xr.Dataset({f"{name}_mse": (("parameter", mode), mse), f"{name}_mse_sd": (("parameter", mode), sd),
                       f"{name}_baseline_mse": (mode, base),
                       f"{name}_partial_dependence": (("parameter", "value", mode), pd)},
                      coords={"value": PD_GRID})


#: Dagon's Fig. 6: the maps whose error against the observations is taken -- the model's, its EOF
#: reconstruction with the kept modes, and the network's predicted PCs reconstructed
ESTIMATES = ("model", "eof", "emulator")


def map_rmse(maps: np.ndarray, observed: np.ndarray, area: np.ndarray, basis: EOFBasis,
             emulated_pcs: np.ndarray) -> np.ndarray:
    """Dagon's Fig. 6 for one variable: each run's area-weighted RMSE over the cells against the
    observations, of its model map, of that map's EOF reconstruction and of the network's PCs
    reconstructed (:data:`ESTIMATES`).

    Parameters
    ----------
    maps : ndarray (run, cell)
        The runs' period-mean maps on the cells of the EOF basis (the observed cells).
    observed : ndarray (cell,)
        The observed period-mean map on the same cells.
    area : ndarray (cell,)
        The cells' areas: the weights, as the EOFs' (squared anomalies area-weighted).
    basis : EOFBasis
        The variable's EOFs: ``basis.reconstruct(basis.project(maps))`` keeps its modes only.
    emulated_pcs : ndarray (run, mode)
        The network's PCs of each run.

    Returns
    -------
    ndarray (estimate, run)
        ``sqrt(sum_c a_c (x_c - o_c)^2 / sum_c a_c)`` with ``x`` the model map, its EOF
        reconstruction and the network's, in the maps' units.
    """
    maps = np.atleast_2d(np.asarray(maps, dtype=float))
    pcs = np.asarray(emulated_pcs, dtype=float).reshape(maps.shape[0], -1)
    w = np.asarray(area, dtype=float) / np.sum(area)
    return np.stack([np.sqrt(((x - observed) ** 2 * w).sum(axis=-1))
                     for x in (maps, basis.reconstruct(basis.project(maps)), basis.reconstruct(pcs))])


def run_errors(ctx: DagonContext, runs: xr.Dataset, u: np.ndarray,
               observed: dict[str, np.ndarray]) -> xr.Dataset:
    """Dagon's Fig. 6 of model ``runs`` (member, ...) at the calibrated coordinates ``u`` (member,
    parameter) against the ``observed`` period-mean maps (variable -> (cell,), NaN where no product
    observes; :meth:`~.context.DagonContext.observed_maps`), in the ``emulate`` stage's EOFs and
    networks (its files).

    Returns
    -------
    xarray.Dataset
        ``rmse`` (variable, estimate, member): :func:`map_rmse` on the variable's observed cells;
        ``cost_model`` and ``cost_emulator`` (member): Eq. 6 on the model's PCs
        (:meth:`~.context.DagonContext.model_cost`) and on the networks' (the ``emulator_screen``'s
        cost); ``observed`` (variable, cell), with ``lon``, ``lat``, ``area`` on cell and
        ``units`` on variable; ``month_weight`` (variable, cell, time): the model's months in its
        period-mean maps (:meth:`~.context.DagonContext.map_weights`).
    """
    eof, cost = ctx.eof_data(), ctx.cost()
    maps, variables = ctx.mean_maps(runs), list(ctx.config["observations"]["variables"])
    area, rmse = runs["area"].values, []
    for v in variables:
        cells = eof[f"{v}_cells"].values.astype(bool)
        rmse.append(map_rmse(maps[v][:, cells], observed[v][cells], area[cells],
                             EOFBasis.from_dataset(eof, v), cost.networks[v].predict(u)))
    same = "units: the variable's"
    return xr.Dataset(
        {"rmse": (("variable", "estimate", "member"), np.stack(rmse),
                  {"long_name": f"area-weighted RMSE against the observed period-mean map ({same})"}),
         "cost_model": ("member", ctx.model_cost(runs), {"long_name": "Eq. 6 on the model's PCs"}),
         "cost_emulator": ("member", cost.predict(u), {"long_name": "Eq. 6 on the networks' PCs"}),
         "observed": (("variable", "cell"), np.stack([observed[v] for v in variables]),
                      {"long_name": f"observed period-mean map ({same})"}),
         "month_weight": (("variable", "cell", "time"),
                          np.stack([ctx.map_weights(v, runs["time"].values) for v in variables]),
                          {"long_name": "weight of each month in the model's period-mean map: the months "
                                        "the products observe (NaN: a cell none observes)"})},
        coords={"variable": variables, "estimate": list(ESTIMATES), "member": runs["member"].values,
                "time": runs["time"].values,
                "units": ("variable", [runs[v].attrs.get("units", "") for v in variables]),
                **{k: ("cell", runs[k].values) for k in ("lon", "lat", "area")}})


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
    parts, interp, val, lines = [], [], [], []
    for v in ctx.config["observations"]["variables"]:
        cells = np.isfinite(obs_mean[v])  # the model masked to the observed cells, as Dagon did
        basis = EOFBasis.fit(maps[v][:, cells], area[cells], n_modes=c["eof_modes"])
        if basis.n_modes < c["eof_modes"]:  # fewer observed cells than the model's (products with gaps)
            warnings.warn(f"'emulator.eof_modes' = {c['eof_modes']}: the {v} maps of {done.size} runs over "
                          f"{int(cells.sum())} observed cells have {basis.n_modes} modes, all kept",
                          UserWarning, stacklevel=2)
        pcs = basis.project(maps[v][:, cells])
        annual = basis.project(np.where(np.isfinite(obs_annual[v][:, cells]), obs_annual[v][:, cells],
                                        basis.mean))
        net = DagonNetwork(hidden=tuple(c["network"]), validation_fraction=VALIDATION,
                           random_state=ctx.seed).fit(u[train], pcs[train])
        net.save(out / f"network_{v}.nc")
        interp.append(interpret_network(net, u, pcs, test, v, seed=ctx.seed))
        pred = net.predict(u[test]).reshape(test.size, -1)
        r2 = 1 - ((pred - pcs[test]) ** 2).sum(0) / ((pcs[test] - pcs[test].mean(0)) ** 2).sum(0)
        rmse = np.sqrt(((pred - pcs[test]) ** 2).mean(0))
        val.append(xr.Dataset({"model": (("run", "pc"), pcs[test]), "emulator": (("run", "pc"), pred)},
                              coords={"pc": np.arange(1, pred.shape[1] + 1)}))
        years_sd = annual.std(axis=0, ddof=1)
        mode = f"{v}_mode"
        # each variable's observed cells on a dimension of its own: products of two variables may
        # observe different cells, and neither need observe all of the model's
        parts.append(basis.to_dataset(v).rename(cell=f"{v}_cell").assign({
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
    labels = ctx.calibration().labels
    xr.merge(parts).assign(u=(("member", "parameter"), u)).assign_coords(
        member=done, parameter=labels).to_netcdf(out / "eof.nc")
    xr.merge(interp).assign_coords(parameter=labels).to_netcdf(out / "interpretation.nc")
    # Dagon's Fig. 5: the test runs' PCs by the model and by the network (NaN beyond a variable's modes)
    xr.concat(val, dim="variable", join="outer").assign_coords(
        variable=ctx.config["observations"]["variables"], run=done[test]).to_netcdf(out / "validation_pcs.nc")
    # Dagon's Fig. 6: every design run's errors against the observations, the held-out ones flagged
    run_errors(ctx, runs.isel(member=done), u, obs_mean).assign_coords(member=done).assign(
        test=("member", np.isin(np.arange(done.size), test))).to_netcdf(out / "rmse.nc")
    ctx.say("  " + "; ".join(lines))


def _verify(ctx: DagonContext, design: xr.DataArray, store) -> tuple[np.ndarray, dict, np.ndarray]:
    """Run a labelled ``design`` through the runner's store: model cost, PCs and status."""
    from bayescal.run.ensemble import EnsembleStore

    ctx.run_members(ctx.simulator, design, store, batch_size=design.sizes["member"],
                    keep=ctx.run_dataset_vars(), executor=ctx.executor)
    runs = EnsembleStore(store).load()
    status = runs["status"].values.astype(str)
    variables = ctx.config["observations"]["variables"]
    if not all(v in runs for v in variables):  # every run failed: no output stored, no cost
        eof, n = ctx.eof_data(), status.size
        pcs = {v: np.full((n, eof.sizes[f"{v}_mode"]), np.nan) for v in variables}
        return np.full(n, np.nan), pcs, status
    return ctx.model_cost(runs), ctx.model_pcs(runs), status


def _pcs(pcs: dict) -> dict[str, list[float]]:
    return {v: np.asarray(p, dtype=float).reshape(-1).tolist() for v, p in pcs.items()}


def _refine(ctx: DagonContext, calib, cost, out, screened: np.ndarray) -> list[dict]:
    """Dagon's DE optimum on the emulator, verified by a model run -- and then better: each verified
    run joins the networks' training set and the optimum is sought again (``refine_rounds``).
    Each round keeps its optimum's PCs by its networks and by the model (Dagon's Fig. 10). DE's
    first population holds the best of the ``screened`` points (the screen's best, and the
    earlier rounds' optima) by the round's networks, so its optimum is never above them."""
    from bayescal.emulators import DagonNetwork, emulator_optimum

    eof = ctx.eof_data()
    X = eof["u"].values
    P = {v: eof[f"{v}_pc"].values for v in cost.networks}
    rounds = []
    for r in range(ctx.config["emulator_screen"]["refine_rounds"] + 1):
        start = screened[int(np.argmin(cost.predict(screened)))]
        u_best, j_emul = emulator_optimum(cost, calib.n_free, seed=ctx.seed + r, x0=start)
        emulated = {v: net.predict(u_best[None]) for v, net in cost.networks.items()}
        j_model, pcs, status = _verify(ctx, calib.design(u_best[None]), out / "verify" / f"round{r}")
        rounds.append({"round": r, "u": u_best.tolist(), "emulated_cost": float(j_emul),
                       "model_cost": float(j_model[0]), "status": status[0],
                       "emulated_pcs": _pcs(emulated), "model_pcs": _pcs({v: p[0] for v, p in pcs.items()})})
        ctx.say(f"  round {r}: DE optimum emulated {j_emul:.3g}, model {j_model[0]:.3g}")
        if r == ctx.config["emulator_screen"]["refine_rounds"] or status[0] != "done":
            break
        X, screened = np.vstack([X, u_best]), np.vstack([screened, u_best])
        for v in cost.networks:
            P[v] = np.vstack([P[v], pcs[v]])
            net = DagonNetwork(hidden=tuple(ctx.config["emulator"]["network"]),
                               validation_fraction=VALIDATION, random_state=ctx.seed)
            cost.networks[v] = net.fit(X, P[v])
    return rounds


def _values(calib, u_opt) -> dict:
    """The calibrated values in physical units: defaults, the optimum's, bounds and units."""
    from bayescal.parameters import family

    space = calib.space
    return {"labels": space.labels, "default": space.default.tolist(),
            "optimum": space.from_unit(calib.value_unit(u_opt))[0].tolist(),
            "lower": space.lower.tolist(), "upper": space.upper.tolist(),
            "units": [space[family(lab)].units for lab in space.labels]}


def run_emulator_screen(ctx: DagonContext) -> None:
    from bayescal.emulators import emulator_screen
    from bayescal.run.ensemble import EnsembleStore

    out = ctx.run_dir / "emulator_screen"
    c = ctx.config["emulator_screen"]
    calib, cost = ctx.calibration(), ctx.cost()
    screen = emulator_screen(cost, calib.n_free, n=c["n_points"], k=c["keep"], seed=ctx.seed,
                             labels=calib.labels)
    screen.to_netcdf(out / "screen.nc")
    u_default = calib.default_u
    default = calib.space.to_dataarray(calib.space.expand(calib.space.default[None]), full=True)
    j_default, pcs_default, st = _verify(ctx, default, out / "verify" / "default")  # the true defaults
    j_default_emul = float(cost.predict(u_default[None])[0])
    emul_default = {v: net.predict(u_default[None]) for v, net in cost.networks.items()}
    # Dagon's Fig. 6's black x: the default run's errors (the networks' at ``u_default``) against
    # the observed maps the emulate stage stored (not in its files from before it did)
    err, stored = None, ctx.run_dir / "emulate" / "rmse.nc"
    if st[0] == "done" and stored.exists():
        observed = xr.load_dataset(stored)["observed"]
        err = run_errors(ctx, EnsembleStore(out / "verify" / "default").load(), u_default[None],
                         {str(v): observed.sel(variable=v).values for v in observed["variable"].values})
    rounds = _refine(ctx, calib, cost, out, screen["u"].values)
    done = [r for r in rounds if r["status"] == "done"]
    best = min(done, key=lambda r: r["model_cost"]) if done else rounds[0]
    result = {
        "parameters": calib.labels, "unit": ctx.config["oat"]["unit"], "default_u": u_default.tolist(),
        "default_u_exact": calib.default_exact, "optimum_u": best["u"], "optimum_round": best["round"],
        # the chosen optimum's, and round 0's (Dagon's single DE optimum on the emulator)
        "emulated_cost": {"default": j_default_emul, "optimum": best["emulated_cost"],
                          "round_0": rounds[0]["emulated_cost"]},
        "model_cost": {"default": float(j_default[0]), "optimum": best["model_cost"]},
        "default_pcs": {"model": _pcs({v: p[0] for v, p in pcs_default.items()}),
                        "emulated": _pcs(emul_default)},
        "default_rmse": {} if err is None else {
            str(v): dict(zip(ESTIMATES, err["rmse"].sel(variable=v).values[:, 0].tolist(), strict=True))
            for v in err["variable"].values},
        "values": _values(calib, np.asarray(best["u"])),
        "rounds": rounds,
        "screen": {"n": int(screen.attrs["n"]), "min": float(screen.attrs["min"]),
                   "mean": float(screen.attrs["mean"])},
    }
    write_json_atomic(out / "optimum.json", result)
    _warn_if_worse(j_default[0], best, len(rounds))
    ctx.say(f"  {screen.attrs['n']:,} emulated points: cost min {screen.attrs['min']:.3g}, mean "
            f"{screen.attrs['mean']:.3g}; default: model {j_default[0]:.3g} (Eq. 6 in this design's EOFs); "
            "best verified optimum "
            f"(round {best['round']}): model {best['model_cost']:.3g}")


def _warn_if_worse(j_default: float, best: dict, n_rounds: int) -> None:
    """A warning (into the stage's record and the report) when no verified optimum fits better
    than the defaults: the emulator's optimum is then not the model's."""
    if best["status"] != "done":
        warnings.warn(f"every verified optimum failed ({n_rounds} emulator optima): the networks' optimum "
                      "lies where the model does not run; see emulator_screen/verify/ for the reasons",
                      UserWarning, stacklevel=2)
        return
    if not np.isfinite(j_default) or best["model_cost"] <= j_default:
        return
    warnings.warn(f"no verified optimum beats the defaults: the model's cost at the best of {n_rounds} "
                  f"emulator optima (round {best['round']}) is {best['model_cost']:.4g}, at the defaults "
                  f"{j_default:.4g}. The networks' optimum is not the model's; try more design runs "
                  "(design.n_runs) or refinement rounds (emulator_screen.refine_rounds).", UserWarning,
                  stacklevel=2)


def run_dagon_report(ctx: DagonContext) -> None:
    from bayescal.report.dagon import write_dagon_report

    ctx.say(f"  report: {write_dagon_report(ctx.run_dir)}")
