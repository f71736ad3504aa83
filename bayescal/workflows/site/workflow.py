"""The site route as a declared stage list (``model.kind`` = dalec, python or external).

What each stage of :mod:`.stages` reads of the config, directly or through the
:class:`~.site.SiteContext` context: ``model`` (the site model and its files), ``observations``
(the product files, or the twin made from them) -- each without the embedded global model's own
keys (:data:`~bayescal.workflows.config.GLOBAL_ONLY`) --, ``parameters.free`` (the calibrated values), the
years and error-model choices of ``[site]``, ``run.seed`` wherever it draws random numbers.
The emulator route's design runs (``optimize/design/``) depend on the model, the calibrated
values, ``design.n_runs`` and the seed only: they are kept when anything else makes the optimize
stage rerun, and no ``posterior`` key reaches them but the route itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bayescal.workflow import RunStore, Stage, Workflow
from bayescal.workflows.config import CHECK_ONLY_MODEL_KEYS, GLOBAL_ONLY, SCHEMA
from bayescal.workflows.own_model import model_source_files

from .propagate_stage import run_site_propagate
from .stages import run_site_optimize, run_site_posterior, run_site_report

__all__ = ["SITE", "site_files"]

Config = Mapping[str, Any]


def model_files(cfg: Config) -> list[str]:
    """The site model's files: drivers, template, parameters file, a python entry point's source,
    the files an external model's command names."""
    m = cfg["model"]
    return [m[k] for k in ("drivers", "template", "parameters_file") if m.get(k)] + model_source_files(cfg)


def site_files(cfg: Config) -> list[str]:
    """The model's files and the observation products' files (read even for a twin: its days)."""
    return model_files(cfg) + [p["file"] for p in cfg["observations"]["products"]]


def _site_keys(section: str) -> tuple[str, ...]:
    """The keys of a section a site model's stages read: all but the global model's own."""
    left = (*GLOBAL_ONLY[section], *(CHECK_ONLY_MODEL_KEYS if section == "model" else ()))
    return tuple(f"{section}.{k}" for k in SCHEMA[section] if k not in left)


#: the site model and the observations (files, or the twin made from them)
_MODEL, _OBSERVATIONS = _site_keys("model"), _site_keys("observations")
_SERIES = (*_MODEL, *_OBSERVATIONS, "parameters.free", "site.calibration_years", "site.aggregate")


def _optimize_reads(cfg: Config) -> Sequence[str]:
    keys = [*_SERIES, "site.ml_evaluations", "posterior.route", "run.seed"]
    if cfg["posterior"]["route"] == "emulator":
        keys += ["design.n_runs", "emulator.variance_threshold", "emulator.n_restarts"]
    return keys


def _optimize_runs(cfg: Config) -> str:
    n = cfg["site"]["ml_evaluations"]
    if cfg["posterior"]["route"] == "emulator":
        return f"{cfg['design']['n_runs']} (design; the search runs the emulator)"
    return f"<= {n}"


def _posterior_runs(cfg: Config) -> str:
    c = cfg["posterior"]
    if c["route"] == "emulator":
        return (f"1 + up to {c['refine_rounds']} x {c['n_new']} (refinement; the chains run the emulator: "
                f"besides the model's time, each of the up to {c['refine_rounds'] + 2} chains -- one per "
                "round and the final one -- and its emulator fit take one to a few minutes)")
    walkers = c["n_walkers"] or _default_walkers(cfg)
    smc = f", after a tempered SMC of {c['n_particles']} particles" if c["start"] == "tempered" else ""
    return f"{walkers} walkers x {c['n_steps']}..{c['max_steps']} steps{smc}"


def _default_walkers(cfg: Config) -> int | str:
    """The direct route's default ensemble, max(2 d + 2, 32) (even), for the plan's run count."""
    from bayescal.workflows.validate import model_space

    free = cfg["parameters"]["free"]
    try:
        d = model_space(cfg).only(free).n_free if free else model_space(cfg).n_free
    except Exception:  # noqa: BLE001 -- the plan only; the run itself names any problem
        return "max(2 d + 2, 32)"
    n = max(2 * d + 2, 32)
    return n + n % 2


#: the emulator route's design runs: the calibration-years model at a Latin hypercube
DESIGN_STORE = RunStore("design", reads=(*_MODEL, "observations.products[].variable", "parameters.free",
                                         "site.calibration_years", "design.n_runs", "run.seed"),
                        input_files=model_files)

#: the model run at the optimum that the error model is estimated from: kept unless it changes
OPTIMUM_STORE = RunStore("optimum_run", reads=(*_MODEL, "observations.products[].variable",
                                               "parameters.free", "site.calibration_years"),
                         needs=("optimize",), input_files=model_files)

#: what the posterior's chain depends on (all the posterior stage reads but the draws it keeps)
_CHAIN = (*_SERIES, "site.discrepancy", "site.autocorrelation", "posterior.n_steps", "posterior.max_steps",
          "posterior.n_walkers", "posterior.route", "posterior.start", "posterior.n_particles", "run.seed")


def _chain_reads(cfg: Config) -> Sequence[str]:
    """The chain's keys and its moves; on the emulator route also the refinement's (its runs make
    the emulator, and each round's chain chooses the next round's runs)."""
    if cfg["posterior"]["route"] == "emulator":
        return (*_CHAIN, "posterior.moves", "posterior.refine_rounds", "posterior.n_new",
                "emulator.variance_threshold", "emulator.n_restarts")
    return (*_CHAIN, "posterior.moves")


def _store_reads(cfg: Config) -> Sequence[str]:
    """The chain's keys less the one that only says how far to go, for the posterior's stores:
    ``posterior.max_steps`` on the direct route (a longer run continues the chain, whose steps do
    not depend on it; the stage sets aside a chain longer than it would run) and
    ``posterior.refine_rounds`` on the emulator route (seeded rounds: more rounds continue the
    earlier ones, their runs and chains; the chain after the rounds is redone when its emulator's
    runs differ, :func:`bayescal.posterior.refinement.refine`)."""
    drop = "posterior.refine_rounds" if cfg["posterior"]["route"] == "emulator" else "posterior.max_steps"
    return tuple(k for k in _chain_reads(cfg) if k != drop)


def _posterior_reads(cfg: Config) -> Sequence[str]:
    """The stage's keys: the chain's and, on the emulator route, the final chain's target (not a
    key of the stores: the rounds' runs and chains do not depend on it, and its chain,
    chains/round_final.h5, is only run for target = "expected"). It keeps MAX_DRAWS draws whatever
    ``propagate.n_draws`` is (at most that many), so another number of propagated draws reruns
    the propagation, not this stage."""
    target = ("posterior.emulator_target",) if cfg["posterior"]["route"] == "emulator" else ()
    return (*_chain_reads(cfg), *target)


#: the emcee chain, step by step (HDF5): kept over a rerun of the stage for a new revision of its
#: code, or a damaged output file (a key of its own that equals the stage's, less the emulator
#: route's target)
CHAIN_STORE = RunStore("chain.h5", reads=_store_reads, needs=("optimize",), input_files=site_files)
#: the tempered start's particles (posterior.start = "tempered"): likewise
TEMPERED_STORE = RunStore("tempered.nc", reads=_store_reads, needs=("optimize",), input_files=site_files)
#: its state after each temperature, while it runs (a killed SMC continues from it)
TEMPERED_PROGRESS = RunStore("tempered_progress.nc", reads=_store_reads, needs=("optimize",),
                             input_files=site_files)
#: the direct route's count of the model runs the SMC and the chain made (they are not stored):
#: kept with them, so a resumed chain's record counts every invocation's runs
RUN_COUNT = RunStore("evaluations_progress.json", reads=_store_reads, needs=("optimize",),
                     input_files=site_files)
#: the emulator route's refinement runs and round chains: likewise (refinement is seeded, so a rerun
#: asks for the same points and finds them there, and each round's chain is complete)
REFINE_STORES = tuple(RunStore(p, reads=_store_reads, needs=("optimize",), input_files=site_files)
                      for p in ("refine", "chains"))

#: the posterior draws, the optimum and the defaults over the whole period: kept while the model,
#: the posterior and the draws chosen from it are (a rerun for the validation years or a new
#: revision of the stage's code runs no ensemble member again; a model of your own is checked once)
PROPAGATE_STORE = RunStore("ensemble", reads=(*_MODEL, "observations.products[].variable", "parameters.free",
                                              "propagate.n_draws", "run.seed"),
                           needs=("optimize", "posterior"), input_files=model_files)

SITE = Workflow("site", description="a site model against observation files (model.kind = dalec, python, "
                "external; docs/site.md)", stages=(
    Stage("optimize", run_site_optimize,
          "maximum likelihood (CMA-ES) against the calibration years with the observation errors alone "
          "(with posterior.route = \"emulator\", first the design runs and the SVD emulator of the series).",
          reads=_optimize_reads, input_files=site_files, keeps=(DESIGN_STORE,),
          writes=("selected.json", "history.nc", "design/", "design.nc", "output_emulator.nc",
                  "evaluations.json", "evaluations_progress.json"),
          expected_runs=_optimize_runs),
    Stage("posterior", run_site_posterior,
          "error model (discrepancy, AR(1)) from the model's residuals, then emcee on the exact model "
          "(route = direct) or on an SVD emulator of the series refined by rounds of model runs chosen "
          "by acquisition (route = emulator); ArviZ InferenceData.",
          reads=_posterior_reads,
          needs=("optimize",), input_files=site_files,
          keeps=(OPTIMUM_STORE, CHAIN_STORE, TEMPERED_STORE, TEMPERED_PROGRESS, RUN_COUNT, *REFINE_STORES),
          writes=("error_model.json", "optimum_run/", "chain.h5", "tempered.nc", "tempered_progress.nc",
                  "evaluations_progress.json", "posterior.nc",
                  "diagnostics.nc", "refine/", "chains/", "refinement.nc", "output_emulator.nc",
                  "evaluations.json"),
          expected_runs=_posterior_runs,
          # 1: a chain shorter than 5 tau was given tau = 1 step (and could stop as converged); a
          # walker that never moved made tau NaN (its stores, the chain included, are kept)
          revision=1),
    Stage("propagate", run_site_propagate,
          "posterior draws, defaults and the optimum over the whole period through the runner's "
          "store; posterior-predictive bands and REFLEX metrics on the validation years.",
          reads=(*_MODEL, *_OBSERVATIONS, "parameters.free", "site.validation_years", "propagate.n_draws",
                 "run.seed"),
          needs=("optimize", "posterior"), input_files=site_files, keeps=(PROPAGATE_STORE,),
          writes=("ensemble/", "bands.nc", "summary.json"),
          expected_runs=lambda cfg: f"<= {cfg['propagate']['n_draws'] + 2} (fewer if the posterior keeps "
                                    "fewer draws)",
          # 1: a sparsely observed state (8-day LAI) validated by monthly and annual means, every
          # band's cell_methods; 2: a variable observed only by products of months or years validated
          # on them (its runs are kept: CHANGELOG.md)
          revision=2),
    Stage("report", run_site_report, "figures (PNG) and report.html with the validation panel.",
          reads=("report",), needs=("optimize", "posterior", "propagate"),
          writes=("../figures/", "../report.html"), expected_runs=lambda cfg: "0"),
))
