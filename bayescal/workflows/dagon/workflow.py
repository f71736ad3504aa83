"""Dagon et al.'s (2020) route as a declared stage list (``[run] workflow = "dagon"``).

What each stage of :mod:`.stages` reads of the config, directly or through the
:class:`~.context.DagonContext` context. The one-at-a-time runs depend on the model, the
candidates, the screened unit and outputs only -- not on the design -- and are kept when
``oat.top_k``, ``oat.select`` or ``parameters.free`` change the selection; the verification run of
the defaults is kept while the model and the selection are unchanged.
"""

from __future__ import annotations

from bayescal.workflow import RunStore, Stage, Workflow
from bayescal.workflows.global_.workflow import global_files, model_files
from bayescal.workflows.validate import model_space

from .context import OBSERVED
from .stages import run_dagon_design, run_dagon_report, run_emulate, run_emulator_screen, run_oat

__all__ = ["DAGON"]

#: what the one-at-a-time runs are made of (their store is kept while these are unchanged)
OAT_RUNS = ("model", "parameters.candidates", "oat.unit", "oat.outputs")


def _oat_runs(cfg) -> str:
    """2 G + 1: G the screened units (families or values) of ``parameters.candidates``."""
    from bayescal.analysis.oat import oat_groups

    space, cands = model_space(cfg), cfg["parameters"]["candidates"]
    return str(2 * len(oat_groups(space.only(cands) if cands else space, cfg["oat"]["unit"])) + 1)


DAGON = Workflow("dagon", description="Dagon et al. (2020): one-at-a-time screening, EOF network emulator, "
                 "emulated cost (run.workflow = dagon)", stages=(
    Stage("oat", run_oat,
          "one-at-a-time screening at the bounds (each family's values together, oat.unit = family, "
          "or each value) on oat.outputs: Dagon's parameter-effect and pattern-correlation ranks; "
          "keeps the oat.top_k leading units by effect (oat.select = combined: by both ranks).",
          reads=("model", "parameters", "oat"), input_files=model_files,
          keeps=(RunStore("ensemble", reads=OAT_RUNS, input_files=model_files),),
          writes=("ranking.nc", "selected.json", "ensemble/"), expected_runs=_oat_runs),
    Stage("design", run_dagon_design,
          "Latin-hypercube ensemble of n_runs members in the calibrated coordinates (one scaling "
          "factor per family with oat.unit = family) through the resumable runner.",
          reads=("model", "observations.variables", "design.n_runs", "run.seed"), needs=("oat",),
          input_files=model_files,
          keeps=(RunStore("ensemble", reads=("model", "observations.variables", "design.n_runs", "run.seed"),
                          needs=("oat",), input_files=model_files),),
          writes=("training.nc", "ensemble/"), expected_runs=lambda cfg: str(cfg["design"]["n_runs"])),
    Stage("emulate", run_emulate,
          "EOFs of each variable's mean maps, observations projected on them, and Dagon's "
          "ReLU-tanh network from parameters to PCs (tested on 20 % of the members); its "
          "permutation importance and partial dependence; every member's RMSE against the "
          "observations by the model, its EOF reconstruction and the network, and their costs.",
          reads=("model", *OBSERVED, "emulator.eof_modes", "emulator.network", "run.seed"),
          needs=("oat", "design"), input_files=global_files,
          writes=("eof.nc", "network_<variable>.nc", "interpretation.nc", "validation_pcs.nc", "rmse.nc"),
          revision=1,  # 1: the model's maps over the months the products observe (and after it, the screen)
          expected_runs=lambda cfg: "0"),
    Stage("emulator_screen", run_emulator_screen,
          "the cost in EOF space at n_points Sobol' points; differential-evolution optimum "
          "on the emulator, verified by a model run.",
          reads=("model", "observations.variables", "emulator_screen", "emulator.network", "run.seed"),
          needs=("oat", "emulate"), input_files=model_files,
          keeps=(RunStore("verify/default", reads=("model", "observations.variables"), needs=("oat",),
                          input_files=model_files),),
          writes=("screen.nc", "optimum.json", "verify/"),
          revision=1,  # 1: DE starts from the screen's best point (its optimum was above it)
          expected_runs=lambda cfg: f"<= {cfg['emulator_screen']['refine_rounds'] + 2}"),
    Stage("report", run_dagon_report,
          "figures (PNG) and report.html under the paper's numbers: PE maps and ranks, EOF maps, "
          "RMSE scatter, importance, partial dependence, cost histogram, pair plot, PCs, bias maps, "
          "optimum vs default.",
          reads=("report",), needs=("oat", "design", "emulate", "emulator_screen"),
          writes=("../figures/", "../report.html"), expected_runs=lambda cfg: "0"),
))
