"""The global (Seiler) route as a declared stage list: what each stage reads, needs and writes.

Each stage's declared keys are what its function (:mod:`.stages`, :mod:`.propagate_stage`) reads
of the config, directly or through the :class:`~.context.GlobalContext`: ``model`` (the
model, the twin), ``observations`` (the twin or product files, the likelihood's summaries),
``run.seed`` wherever it draws random numbers. ``design.batch_size``, ``run.workers`` and
``run.scheduler`` change how the runs are made, not what they are: no stage declares them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bayescal.workflow import RunStore, Stage, Workflow
from bayescal.workflows.validate import model_space

from .files import global_files, model_files
from .history_matching_stage import run_history_matching
from .propagate_stage import run_propagate
from .stages import (
    run_design,
    run_emulate,
    run_equifinality,
    run_optimize,
    run_posterior,
    run_report,
    run_screen,
)

__all__ = ["GLOBAL", "STAGES", "STAGE_HELP", "global_files", "model_files", "n_candidates",
           "run_posterior_stage"]

Config = Mapping[str, Any]


#: the ``[model]`` keys the stages read for a global model of your own (``model.kind`` python or
#: external): not the embedded model's grid, ramp and chunks, nor a site model's drivers and spin-up
OWN_MODEL_KEYS = ("kind", "start", "end", "parameters_file", "entry_point", "options", "python_path",
                  "command", "template", "output", "timeout", "variables")


def model_reads(cfg: Config) -> tuple[str, ...]:
    """The ``[model]`` keys of the stages that run the model: the whole section for the embedded
    model (its stage keys as they have always been; ``chunk_size`` held at its default,
    :func:`~bayescal.workflows.config.config_for_keys`), :data:`OWN_MODEL_KEYS` for your own."""
    if cfg["model"]["kind"] == "global":
        return ("model",)
    return tuple(f"model.{k}" for k in OWN_MODEL_KEYS)


def _with_model(*keys: str):
    """``reads``: the model's keys (:func:`model_reads`) and ``keys``."""
    return lambda cfg: (*model_reads(cfg), *keys)


def _screen_reads(cfg: Config) -> Sequence[str]:
    if not cfg["screen"]["enabled"]:  # the calibrated values are parameters.free
        return (*model_reads(cfg), "parameters.free", "screen.enabled")
    return (*model_reads(cfg), "observations", "parameters", "screen", "run.seed")


def _screen_files(cfg: Config) -> list[str]:
    return global_files(cfg) if cfg["screen"]["enabled"] else model_files(cfg)


def n_candidates(cfg: Config, space=None) -> int:
    """How many values ``parameters.candidates`` names (all of the model's free values without it);
    ``space``: a model's own, else the config's model's."""
    space = model_space(cfg) if space is None else space
    cands = cfg["parameters"]["candidates"]
    return (space.only(cands) if cands else space).n_free


def _screen_runs(cfg: Config, space=None) -> str:
    if not cfg["screen"]["enabled"]:
        return "0"
    return str(cfg["screen"]["trajectories"] * (n_candidates(cfg, space) + 1))


def _optimize_reads(cfg: Config) -> Sequence[str]:
    if cfg["optimize"]["method"] == "none":
        return ("optimize.method",)
    return (*model_reads(cfg), "observations", "optimize", "run.seed")


def _optimize_runs(cfg: Config, space=None) -> str:
    c = cfg["optimize"]
    if c["method"] == "none":
        return "0"
    pop, gens = c["pop_size"], c["n_generations"]
    if c["method"] == "ga":
        return f"about {pop * gens} ({pop} x {gens} generations)"
    if c["method"] == "differential_evolution":  # as stages._budget: the population in whole d's
        if cfg["screen"]["enabled"]:  # d is the screen's to choose
            return (f"about {pop * (gens + 1)} ({gens + 1} generations of ~{pop}: DE rounds its "
                    "population down to a multiple of the calibrated values, at least one each)")
        d = (model_space(cfg) if space is None else space).only(cfg["parameters"]["free"]).n_free
        per = max(1, pop // d) * d
        return (f"about {per * (gens + 1)} ({gens + 1} generations of {per}: pop_size in whole {d}s, "
                f"at least {d})")
    return f"<= {c['max_evaluations']}"


def run_posterior_stage(ctx) -> None:
    """``posterior.method``: ``"refine"`` (emulator and refinement rounds, :func:`.stages.run_posterior`)
    or ``"history_matching"`` (every value free: waves, then the subspace posterior)."""
    if ctx.config["posterior"].get("method", "refine") == "history_matching":
        run_history_matching(ctx)
    else:
        run_posterior(ctx)


def _posterior_reads(cfg: Config) -> Sequence[str]:
    """The chain's keys; the refinement's (the default method) or history matching's ``hm_*``: each
    method reruns for its own keys only."""
    keys = [*model_reads(cfg), "observations", "parameters.candidates", "run.seed",
            *(f"posterior.{k}" for k in ("n_steps", "max_steps", "n_walkers"))]
    if "method" in cfg["posterior"]:  # which posterior (run_posterior_stage reads it)
        keys.append("posterior.method")
    if cfg["posterior"].get("method", "refine") != "refine":  # history matching (history_matching_stage.py)
        return keys + [f"posterior.{k}" for k in cfg["posterior"] if k.startswith("hm_")]
    keys += ["emulator.variance_threshold",
             *(f"posterior.{k}" for k in ("refine_rounds", "n_new", "left_out"))]
    if cfg["posterior"]["left_out"] == "marginalise":
        keys.append("posterior.left_out_runs")
    return keys


def _posterior_runs(cfg: Config) -> str:
    c = cfg["posterior"]
    if c.get("method", "refine") == "history_matching":  # the waves and one run at the posterior mean
        return str(c["hm_waves"] * c["hm_runs"] + 1)
    left = c["left_out_runs"] if c["left_out"] == "marginalise" else 0
    return f"<= {left + c['refine_rounds'] * c['n_new']}"


def _propagate_runs(cfg: Config) -> str:
    n = 2 * cfg["propagate"]["n_draws"] + 2 + cfg["equifinality"]["n_alternatives"] + 5
    return f"<= {n}"


#: history matching's waves (their designs and runs): kept when only the subspace or the chain changes
#: (hm_floor, hm_max_rank, n_steps, max_steps, n_walkers), hundreds of model runs each
WAVES_STORE = RunStore("waves", reads=_with_model(
    "observations", "parameters.candidates", "run.seed",
    *(f"posterior.hm_{k}" for k in ("runs", "cutoff", "discrepancy", "active", "train", "design"))),
    needs=("screen", "design"), input_files=global_files)

#: the design's runs: the model at the Latin hypercube of the calibrated space
DESIGN_STORE = RunStore("ensemble", reads=_with_model("observations.variables", "design.n_runs", "run.seed"),
                        needs=("screen",), input_files=model_files)

GLOBAL = Workflow("global", description="a global model, gridded (Seiler et al.'s route; the embedded "
                  "model, or your own with run.workflow = \"global\")", stages=(
    Stage("screen", run_screen,
          "Morris screening of the candidate parameters with SALib; keeps the top_k most influential "
          "(skipped when [screen] enabled = false: [parameters] free is used).",
          reads=_screen_reads, input_files=_screen_files, writes=("selected.json", "indices.nc", "morris/"),
          expected_runs=_screen_runs),
    Stage("optimize", run_optimize,
          "optional optimiser on the regionally normalised residual misfit (method = none, ga, dfols, "
          "cma_es, differential_evolution); its best point is the 'optimised' set.",
          reads=_optimize_reads, needs=("screen",), input_files=global_files,
          writes=("history.nc", "runs/", "ga_checkpoint.json", "none.json"),
          expected_runs=_optimize_runs),
    Stage("design", run_design,
          "Latin-hypercube ensemble of n_runs members through the resumable runner; misfit and "
          "log regional means of each member.",
          reads=_with_model("observations", "design.n_runs", "optimize.misfit", "run.seed"),
          needs=("screen",),
          input_files=global_files, writes=("training.nc", "ensemble/"), keeps=(DESIGN_STORE,),
          expected_runs=lambda cfg: str(cfg["design"]["n_runs"])),
    Stage("emulate", run_emulate,
          "GP emulator of the log misfit (leave-one-out checked) and an SVD emulator of the summaries.",
          reads=("emulator.training", "emulator.drop_worst", "emulator.n_restarts", "run.seed"),
          needs=("screen", "optimize", "design"), writes=("misfit_emulator.nc", "misfit_loo.nc"),
          expected_runs=lambda cfg: "0"),
    Stage("posterior", run_posterior_stage,
          "posterior.method = \"refine\" (the default): emcee on the emulated Gaussian likelihood, "
          "with refinement rounds that run the model at posterior draws; or \"history_matching\" (the "
          "main job's): waves of history matching with every value free, then emcee in the "
          "likelihood-informed subspace. Saved as ArviZ InferenceData (posterior/posterior.nc).",
          reads=_posterior_reads, needs=("screen", "design"), input_files=global_files,
          writes=("posterior.nc", "diagnostics.nc", "chains/", "refinement.nc", "left_out.nc", "left_out/",
                  "refine/", "output_emulator.nc", "training.nc",
                  # posterior.method = "history_matching"
                  "waves/", "mean_run/", "history_matching.nc", "chain.h5"),
          keeps=(RunStore("left_out", reads=_with_model("observations.variables", "parameters.candidates",
                                                        "posterior.left_out_runs", "run.seed"),
                          needs=("screen",), input_files=model_files), WAVES_STORE),
          expected_runs=_posterior_runs),
    Stage("equifinality", run_equifinality,
          "identifiability table, the directions the data fix, posterior correlations and PCA, "
          "distance-vs-score clouds and k alternative parameter sets.",
          reads=("equifinality", "emulator.training", "emulator.drop_worst", "run.seed"),
          needs=("screen", "optimize", "design", "emulate", "posterior"), writes=("*.nc",),
          expected_runs=lambda cfg: "0"),
    Stage("propagate", run_propagate,
          "posterior draws, prior draws, defaults, optimum and alternatives through the model; GPP/NBP "
          "bands and their width against the prior's, Table 3 budget, chi-squared against GCB 2024 NBP.",
          reads=_with_model("observations", "propagate", "optimize.misfit", "run.seed"),
          needs=("screen", "optimize", "design", "posterior", "equifinality"), input_files=global_files,
          writes=("outputs.nc", "bands.nc", "prior_bands.nc", "table3.nc", "table3.csv", "gcb_comparison.nc",
                  "spread.nc", "scores.nc", "checks.nc", "summary.json", "ensemble/"),
          expected_runs=_propagate_runs),
    Stage("report", run_report, "figures (PNG) and report.html in the run directory.",
          reads=("report",), needs=("screen", "optimize", "design", "emulate", "posterior", "equifinality",
                                    "propagate"),
          writes=("../figures/", "../report.html"), expected_runs=lambda cfg: "0"),
))

STAGES = GLOBAL.names
STAGE_HELP = {s.name: s.help for s in GLOBAL.stages}
