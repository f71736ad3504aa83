"""Dagon et al.'s (2020) route as a declared stage list (``[run] workflow = "dagon"``).

What each stage of :mod:`.stages` reads of the config, directly or through the
:class:`~.dagon.DagonContext` context. The one-at-a-time runs depend on the model, the
candidates and the stored variables only -- not on the design -- and are kept when
``oat.top_k`` or ``parameters.free`` change the selection; the verification run of the defaults
is kept while the model and the selection are unchanged.
"""

from __future__ import annotations

from bayescal.workflow import RunStore, Stage, Workflow
from bayescal.workflows.global_.stages import run_design
from bayescal.workflows.global_.workflow import DESIGN_STORE, global_files, model_files, n_candidates

from .stages import run_dagon_report, run_emulate, run_emulator_screen, run_oat

__all__ = ["DAGON"]


def _oat_runs(cfg) -> str:
    return str(2 * n_candidates(cfg) + 1)


DAGON = Workflow("dagon", description="Dagon et al. (2020): one-at-a-time screening, EOF network emulator, "
                 "emulated cost (run.workflow = dagon)", stages=(
    Stage("oat", run_oat,
          "one-at-a-time screening at the bounds: Dagon's parameter-effect and pattern-correlation "
          "ranks; keeps the oat.top_k leading values by effect (oat.select = combined: by both ranks).",
          reads=("model", "parameters", "observations.variables", "oat.top_k", "oat.select"),
          input_files=model_files,
          keeps=(RunStore("ensemble", reads=("model", "parameters.candidates", "observations.variables"),
                          input_files=model_files),),
          writes=("ranking.nc", "selected.json", "ensemble/"), expected_runs=_oat_runs),
    Stage("design", run_design,
          "Latin-hypercube ensemble of n_runs members through the resumable runner.",
          reads=("model", "observations", "design.n_runs", "optimize.misfit", "run.seed"), needs=("oat",),
          input_files=global_files, keeps=(RunStore(DESIGN_STORE.path, DESIGN_STORE.reads, ("oat",),
                                                    DESIGN_STORE.input_files),),
          writes=("training.nc", "ensemble/"), expected_runs=lambda cfg: str(cfg["design"]["n_runs"])),
    Stage("emulate", run_emulate,
          "EOFs of each variable's mean maps, observations projected on them, and Dagon's "
          "ReLU-tanh network from parameters to PCs (tested on 20 % of the members).",
          reads=("model", "observations", "emulator.eof_modes", "emulator.network", "run.seed"),
          needs=("oat", "design"), input_files=global_files, writes=("eof.nc", "network_<variable>.nc"),
          expected_runs=lambda cfg: "0"),
    Stage("emulator_screen", run_emulator_screen,
          "the cost in EOF space at n_points Sobol' points; differential-evolution optimum "
          "on the emulator, verified by a model run.",
          reads=("model", "observations.variables", "emulator_screen", "emulator.network", "run.seed"),
          needs=("oat", "emulate"), input_files=model_files,
          keeps=(RunStore("verify/default", reads=("model", "observations.variables"), needs=("oat",),
                          input_files=model_files),),
          writes=("screen.nc", "optimum.json", "verify/"),
          expected_runs=lambda cfg: f"<= {cfg['emulator_screen']['refine_rounds'] + 2}"),
    Stage("report", run_dagon_report,
          "figures (PNG) and report.html: ranks, EOF maps, cost histogram, optimum vs default.",
          reads=("report",), needs=("oat", "design", "emulate", "emulator_screen"),
          writes=("../figures/", "../report.html"), expected_runs=lambda cfg: "0"),
))
